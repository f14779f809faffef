"""The learner on a hub: it ingests the segments hosts shipped, keeps its lake on the hub (nothing
of it under its own home), and counts every row once however often a segment arrives.

Segments are written here the way `routing sync` writes them (one Parquet file of a host's rows,
named by the rows it holds), so these tests pin the learner's side alone; tests/test_fleet.py
runs real hosts against a real S3 server.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("dagster")
import polars as pl

from routing_pipelines import logs
from routing_pipelines.learn import learn
from routing_pipelines.lake import Lake
from routing_runtime import ModelRouter
from routing_runtime.admin import initialise
from routing_runtime.faults import CRASH_EXIT_CODE
from routing_runtime.hub import Hub, inbox_key

D1, D2 = dt.date(2026, 5, 1), dt.date(2026, 5, 2)


def host_rows(tmp_path: Path, name: str, day: dt.date, n: int = 24) -> dict[str, pl.DataFrame]:
    """A host home with ``n`` decisions and outcomes on ``day``; its rows per table."""
    home = tmp_path / name
    initialise(home)
    with ModelRouter.open(home, seed=day.toordinal()) as router:
        for i in range(n):
            at = dt.datetime.combine(day, dt.time(9)) + dt.timedelta(minutes=5 * i)
            d = router.select_model(("math", "general")[i % 2], "balanced", at=at)
            router.record_performance(d.decision_id, "success", quality_score=0.8, latency_ms=900, tokens_used=1000,
                                      cost_usd=0.001, at=at + dt.timedelta(seconds=3))
    return {t: logs.read_db_day(home / "routing.db", t, day) for t in logs.TABLES}


def ship(hub: Hub, host: str, segment: str, rows: dict[str, pl.DataFrame]) -> None:
    for table, frame in rows.items():
        buffer = io.BytesIO()
        frame.with_columns(pl.col(logs.TIME_COLUMN[table]).cast(pl.String)).write_parquet(buffer)
        hub.put(inbox_key(host, table, segment), buffer.getvalue())


@pytest.fixture
def learner(tmp_path) -> tuple[Path, Hub]:
    (tmp_path / "hub").mkdir()
    home = tmp_path / "learner"
    result = initialise(home, hub=str(tmp_path / "hub"))
    assert result.hub == str(tmp_path / "hub")
    return home, Hub.parse(str(tmp_path / "hub"))


def test_learner_ingests_every_hosts_segments_into_the_hub_lake_and_none_into_its_home(tmp_path, learner):
    home, hub = learner
    first, second = host_rows(tmp_path, "host-a", D1), host_rows(tmp_path, "host-b", D1, n=10)
    ship(hub, "host-a", "000001-000024", first)
    ship(hub, "host-b", "000001-000010", second)

    result = learn(home, D1, quiet=True)

    assert result.status == "published", result.problems
    # Both tables, though the hosts name their decision and outcome segments alike.
    assert result.tables["routing_decisions"]["ingested"] == 34
    assert result.tables["model_performance"]["ingested"] == 34
    assert not (home / "lake").exists(), "the learner's lake lives on the hub"
    lake = Lake(home)
    assert lake.location("routing_decisions") == str(tmp_path / "hub" / "lake" / "routing_decisions")
    decisions = pl.scan_parquet(str(tmp_path / "hub" / "lake" / "routing_decisions"), hive_partitioning=True).collect()
    assert sorted(decisions["id"]) == sorted([*first["routing_decisions"]["id"], *second["routing_decisions"]["id"]])


def test_segment_shipped_again_is_counted_once(tmp_path, learner):
    home, hub = learner
    rows = host_rows(tmp_path, "host-a", D1)
    ship(hub, "host-a", "000001-000024", rows)
    assert learn(home, D1, quiet=True).status == "published"
    # A host killed after its upload ships the same segment again; another lost its record of a
    # segment and shipped the same rows under a new name: both count once.
    ship(hub, "host-a", "000001-000024", rows)
    ship(hub, "host-a", "000001-000024-again", rows)
    result = learn(home, D1, quiet=True)

    performance = Lake(home).read_partition("model_performance", D1)
    assert performance.height == 24
    assert performance["id"].n_unique() == 24
    reasons = result.tables["model_performance"]["reasons"]
    assert set(reasons) <= {r for r in reasons if r.startswith(logs.DUPLICATE_PREFIX)}


def test_learner_leaves_its_own_segments_to_its_database(tmp_path, learner):
    # A learner that also serves requests and ships them would otherwise count them twice.
    home, hub = learner
    with ModelRouter.open(home, seed=3) as router:
        d = router.select_model("math", "balanced", at=dt.datetime.combine(D1, dt.time(10)))
        router.record_performance(d.decision_id, "success", quality_score=0.9, at=dt.datetime.combine(D1, dt.time(10, 1)))
    own = json.loads(hub.get(next(o.key for o in hub.list("hosts"))))["host_id"]
    ship(hub, own, "000001-000001", {t: logs.read_db_day(home / "routing.db", t, D1) for t in logs.TABLES})

    result = learn(home, D1, quiet=True)

    assert result.tables["routing_decisions"] == {"ingested": 1, "quarantined": 0, "reasons": {}}


def test_lost_staged_segment_is_staged_again_from_the_hub(tmp_path, learner):
    home, hub = learner
    ship(hub, "host-a", "000001-000024", host_rows(tmp_path, "host-a", D1))
    assert learn(home, D1, quiet=True).status == "published"
    staged = tmp_path / "hub" / "lake" / "_staged"
    for path in staged.rglob("*.parquet"):
        path.unlink()
    ship(hub, "host-a", "000025-000034", host_rows(tmp_path, "host-a2", D2, n=10))

    result = learn(home, D2, quiet=True)

    assert result.status == "published", result.problems
    assert Lake(home).read_partition("routing_decisions", D1).height == 24
    assert Lake(home).read_partition("routing_decisions", D2).height == 10


def test_rules_published_here_but_not_on_the_hub_are_put_there_by_the_next_learn(tmp_path, learner):
    # A learner killed between publishing here and putting the rules on the hub: hosts would
    # never get that version. The next learn puts it there, even with nothing new to learn.
    home, hub = learner
    ship(hub, "host-a", "000001-000024", host_rows(tmp_path, "host-a", D1))
    killed = subprocess.run(
        [sys.executable, "-m", "routing_runtime.cli", "learn", "--home", str(home), "--as-of", str(D1)],
        env={**os.environ, "ROUTING_CRASH_AT": "publish:after_snapshot"}, capture_output=True, text=True, timeout=300,
    )
    assert killed.returncode == CRASH_EXIT_CODE, killed.stderr
    assert hub.get_json("rules/current.json") == {"version": 1}  # the registry rules the first learn put there

    result = learn(home, quiet=True)

    assert result.status == "nothing_new"
    assert hub.get_json("rules/current.json") == {"version": 2}
    assert any("put rule set(s) v2 on the hub" in p for p in result.problems)
