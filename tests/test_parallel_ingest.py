"""`routing learn --workers N`: the run's steps in N processes (Dagster's multiprocess executor),
each table's days ingested in N chunks at once, with the same result as one process; and the home
lock that admits the steps of the run holding it and nobody else."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

dg = pytest.importorskip("dagster")
pl = pytest.importorskip("polars")

from routing_pipelines.assets import names  # noqa: E402
from routing_pipelines.lake import MAIN, QUARANTINE, Lake  # noqa: E402
from routing_pipelines.learn import dagster_instance, learn  # noqa: E402
from routing_pipelines.resources import run_lease  # noqa: E402
from routing_pipelines.run_lock import HomeBusyError, exclusive  # noqa: E402
from routing_runtime import ModelRouter  # noqa: E402
from routing_runtime.admin import initialise  # noqa: E402

D1 = dt.date(2026, 6, 1)
DAYS = 4
LAST = D1 + dt.timedelta(days=DAYS - 1)
PARTITIONED = [(names.ROUTING_DECISIONS, MAIN), (names.MODEL_PERFORMANCE, MAIN), (names.MODEL_PERFORMANCE, QUARANTINE),
               (names.DAILY_MODEL_STATS, MAIN)]


@pytest.fixture
def days_home(tmp_path: Path) -> Path:
    """Four days of decisions and outcomes, one outcome a day with an unknown outcome (quarantined)."""
    home = tmp_path / "home"
    initialise(home)
    with ModelRouter.open(home, seed=7) as router:
        for day in range(DAYS):
            for i in range(12):
                at = dt.datetime.combine(D1 + dt.timedelta(days=day), dt.time(10, i))
                d = router.select_model(("math", "code_generation", "debugging")[i % 3], "balanced", at=at)
                router.record_performance(d.decision_id, "success" if i % 4 else "failure", quality_score=(i % 5) / 5,
                                          latency_ms=700 + 10 * i, tokens_used=600, cost_usd=0.001, at=at)
    conn = sqlite3.connect(home / "routing.db")
    conn.execute("UPDATE model_performance SET outcome = 'sideways' WHERE rowid IN"
                 " (SELECT MIN(rowid) FROM model_performance GROUP BY substr(recorded_at, 1, 10))")
    conn.commit()
    conn.close()
    return home


def lake_contents(home: Path) -> dict:
    lake = Lake(home)
    contents = {}
    for table, area in PARTITIONED:
        for day in lake.partition_days(table, area):
            frame = lake.read_partition(table, day, area)
            contents[(table, area, day)] = None if frame is None else frame.sort(frame.columns)
    return contents


def rule_rows(home: Path) -> tuple[list, list]:
    conn = sqlite3.connect(home / "routing.db")
    try:
        sets = conn.execute("SELECT version, as_of, source, inputs FROM rule_sets ORDER BY version").fetchall()
        rules = conn.execute(
            "SELECT rule_set_version, task_type, preference, model_id, priority, is_specialized, min_quality_score,"
            " max_cost_per_1k, is_enabled, is_eligible, selection_probability FROM model_routing_rules"
            " ORDER BY rule_set_version, task_type, preference, priority, model_id").fetchall()
    finally:
        conn.close()
    # What a rule set was built from, less the id of the Dagster run that built it.
    inputs = [{k: v for k, v in json.loads(i).items() if k != "dagster_run_id"} for *_, i in sets]
    return [(*row[:3], inp) for row, inp in zip(sets, inputs)], rules


def test_two_workers_learn_exactly_what_one_worker_learns(days_home: Path, tmp_path: Path):
    twin = tmp_path / "twin"
    shutil.copytree(days_home, twin)
    one = learn(days_home, LAST, quiet=True)
    assert one.success, one.problems
    cli = subprocess.Popen([sys.executable, "-m", "routing_runtime.cli", "learn", "--home", str(twin), "--as-of", str(LAST),
                            "--workers", "2", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = cli.communicate(timeout=300)
    assert cli.returncode == 0, err
    two = json.loads(out)
    assert (two["status"], two["tables"], two["problems"]) == ("published", one.tables, one.problems)
    assert one.tables[names.MODEL_PERFORMANCE]["quarantined"] == DAYS

    first, second = lake_contents(days_home), lake_contents(twin)
    assert first.keys() == second.keys()
    assert {day for _, _, day in first} == {D1 + dt.timedelta(days=d) for d in range(DAYS)}
    for key, frame in first.items():
        assert frame is not None and second[key] is not None and frame.equals(second[key]), key
    assert rule_rows(days_home) == rule_rows(twin)
    assert rule_rows(twin)[1], "the run published no rules"

    # The days were ingested by two steps per table, each in a process of its own (not the CLI's).
    with dagster_instance(twin) as instance:
        run = instance.get_run_by_id(two["dagster_run_id"])
        assert run.run_config["execution"]["config"]["max_concurrent"] == 2
        assert run.run_config["resources"]["routing_home"]["config"]["lease"]
        workers = {e.step_key: e.dagster_event.event_specific_data.metadata["pid"].value
                   for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_WORKER_STARTED)}
    for table in (names.ROUTING_DECISIONS, names.MODEL_PERFORMANCE):
        chunks = {k: pid for k, pid in workers.items() if k.startswith(f"{table}.{table}_ingest[")}
        assert sorted(chunks) == [f"{table}.{table}_ingest[chunk_{i}]" for i in range(2)]
        assert str(cli.pid) not in chunks.values() and len(set(chunks.values())) == 2


def test_materialize_the_log_tables_in_chunks_ingests_every_day_once(days_home: Path, tmp_path: Path):
    # In one process: three chunks over four days are steps of 2, 1 and 1 days; the partitions are
    # those of one chunk.
    from routing_pipelines.definitions import build_definitions, partition_range_tags

    twin = tmp_path / "twin"
    shutil.copytree(days_home, twin)
    tables = (names.ROUTING_DECISIONS, names.MODEL_PERFORMANCE)
    runs = {}
    for home, chunks in ((days_home, 1), (twin, 3)):
        defs = build_definitions(home)
        result = dg.materialize(
            [*defs.assets, *defs.asset_checks], selection=[names.INBOX, *tables],
            resources=defs.resources, tags=partition_range_tags(D1, LAST),
            run_config={"ops": {t: {"ops": {f"{t}_chunks": {"config": {"chunks": chunks}}}} for t in tables}},
        )
        assert result.success
        runs[chunks] = result
    plan_step = f"{names.MODEL_PERFORMANCE}.{names.MODEL_PERFORMANCE}_chunks"
    keys = [e.step_output_data.mapping_key for e in runs[3].all_events
            if e.event_type_value == "STEP_OUTPUT" and e.step_key == plan_step]
    assert keys == ["chunk_0", "chunk_1", "chunk_2"]
    chunk_days = [len(days) for days in runs[3].output_for_node(plan_step).values()]
    assert chunk_days == [2, 1, 1]
    for result in runs.values():
        (summary,) = {e.step_key: e for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"
                      and e.asset_key.path[-1] == names.MODEL_PERFORMANCE}.values()
        metadata = summary.event_specific_data.materialization.metadata
        assert (metadata["dagster/row_count"].value, metadata["quarantined_rows"].value) == (DAYS * 11, DAYS)
    first, second = lake_contents(days_home), lake_contents(twin)
    assert first.keys() == second.keys() and all(first[k].equals(second[k]) for k in first)


def test_workers_below_one_are_refused_naming_the_option(days_home: Path):
    with pytest.raises(ValueError, match=r"--workers=0: give 1"):
        learn(days_home, LAST, quiet=True, workers=0)


STEP = r"""
import sys
from pathlib import Path
from routing_pipelines.run_lock import HomeBusyError, exclusive
home, lease = Path(sys.argv[1]), sys.argv[2] or None
try:
    with exclusive(home, "a step", lease=lease):
        print("in", flush=True)
        sys.stdin.readline()
except HomeBusyError as exc:
    print("busy:", exc, flush=True)
"""


def _step(home: Path, lease: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", STEP, str(home), lease], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(step: subprocess.Popen) -> None:
    step.stdin.write("\n")
    step.stdin.flush()
    step.communicate(timeout=60)


def test_the_lock_admits_the_steps_of_the_holders_run_and_no_other_run(home: Path):
    with exclusive(home) as lease:
        admitted = _step(home, lease)
        try:
            assert admitted.stdout.readline().strip() == "in", admitted.stderr.read()
            for other in ("another-run-id", ""):  # another run's step; `routing learn` or any process
                refused = _step(home, other)
                line, err = refused.communicate(timeout=60)
                assert line.startswith("busy: another learning run is using"), err
        finally:
            _finish(admitted)


def test_a_step_left_running_by_a_killed_holder_keeps_the_next_run_out_until_it_ends(home: Path):
    with exclusive(home) as lease:
        orphan = _step(home, lease)
        assert orphan.stdout.readline().strip() == "in", orphan.stderr.read()
    try:  # the holder is gone (its lock released); its step still writes
        with pytest.raises(HomeBusyError, match="a step of the previous run is still finishing"):
            with exclusive(home):
                pass
    finally:
        _finish(orphan)
    with exclusive(home):
        pass


def test_a_re_execution_never_shares_the_lease_of_the_run_it_re_executes():
    assert run_lease("run-1", "token", None) == "token"
    assert run_lease("run-2", "token", "run-1") == "run-2"
    assert run_lease("run-3", "", None) == "run-3"


def test_a_learner_on_a_hub_with_two_workers_ingests_every_hosts_segments_once(tmp_path: Path):
    # The child steps reach the hub lake as the learner does (here a shared folder).
    from routing_runtime.hub import Hub
    from test_hub_learner import host_rows, ship

    (tmp_path / "hub").mkdir()
    home = tmp_path / "learner"
    initialise(home, hub=str(tmp_path / "hub"))
    first, second = host_rows(tmp_path, "host-a", D1), host_rows(tmp_path, "host-b", D1, n=10)
    hub = Hub.parse(str(tmp_path / "hub"))
    ship(hub, "host-a", "000001-000024", first)
    ship(hub, "host-b", "000001-000010", second)

    result = learn(home, D1, quiet=True, workers=2)

    assert result.status == "published", result.problems
    assert result.tables[names.ROUTING_DECISIONS]["ingested"] == result.tables[names.MODEL_PERFORMANCE]["ingested"] == 34
    assert not (home / "lake").exists(), "the learner's lake lives on the hub"
    decisions = pl.scan_parquet(str(tmp_path / "hub" / "lake" / "routing_decisions"), hive_partitioning=True).collect()
    assert sorted(decisions["id"]) == sorted([*first["routing_decisions"]["id"], *second["routing_decisions"]["id"]])
