"""``routing sync``: hosts ship their logs to the hub and take the hub's rule sets.

End to end through the CLI in temporary homes; most tests use a folder hub (``tmp_path/hub``),
one runs against a real S3 server (SeaweedFS, started here). Every check that "nothing was lost
or doubled" reads the segments on the hub and counts rows by id.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from routing_runtime import ModelRouter
from routing_runtime.admin import initialise
from routing_runtime.faults import CRASH_EXIT_CODE
from routing_runtime.hub import CURRENT_RULES, Hub, rule_set_key
from routing_runtime.store import Store
from routing_runtime.sync import SyncError, push_rule_sets, ship

from conftest import BASE_MODELS_TOML

SHIP_POINTS = ["sync:after_plan", "sync:after_put", "sync:after_mark"]
PULL_POINTS = ["sync:pull_after_fetch", "sync:after_import"]


def routing(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """The ``routing`` CLI in a subprocess (the environment of this test, plus ``env``)."""
    return subprocess.run(
        [sys.executable, "-m", "routing_runtime.cli", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def sync_json(home: Path, env: dict | None = None) -> dict:
    result = routing("sync", "--home", str(home), "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def make_traffic(home: Path, decisions: int, outcomes: int, seed: int = 7) -> None:
    """``decisions`` selections and outcomes for the first ``outcomes`` of them."""
    with ModelRouter.open(home, seed=seed) as router:
        for i in range(decisions):
            decision = router.select_model(["debugging", "math", "code_generation"][i % 3], "balanced", f"agent-{i}")
            if i < outcomes:
                router.record_performance(decision.decision_id, "success", 0.8, 900.0, 400, 0.002)


def local_ids(home: Path, table: str) -> list[str]:
    conn = sqlite3.connect(home / "routing.db")
    try:
        return sorted(r[0] for r in conn.execute(f"SELECT id FROM {table}"))
    finally:
        conn.close()


def unshipped_segments(home: Path) -> int:
    conn = sqlite3.connect(home / "routing.db")
    try:
        return conn.execute("SELECT COUNT(*) FROM hub_segments WHERE shipped_at IS NULL").fetchone()[0]
    finally:
        conn.close()


def hub_ids(hub: Hub, table: str) -> list[str]:
    """Every row id in the hub's inbox segments of ``table`` (all hosts), duplicates kept."""
    import pyarrow.parquet as pq

    ids: list[str] = []
    for obj in hub.list("inbox"):
        if f"/{table}/" in obj.key:
            ids += pq.read_table(io.BytesIO(hub.get(obj.key))).column("id").to_pylist()
    return sorted(ids)


def assert_hub_holds_exactly(hub: Hub, home: Path) -> None:
    for table in ("routing_decisions", "model_performance"):
        assert hub_ids(hub, table) == local_ids(home, table), table


def learner_publishes(learner: Path, hub: Hub, *, source: str = "learned") -> int:
    """The learner publishes a new version (v1's rows, as learned) and pushes it; returns it."""
    with Store.open_home(learner) as store:
        version = store.publish_rule_set(store.load_rule_set(1).rows, source=source, as_of="2026-11-30")
        push_rule_sets(learner, hub, store)
    return version


@pytest.fixture
def hub_dir(tmp_path) -> Path:
    path = tmp_path / "hub"
    path.mkdir()
    return path


@pytest.fixture
def host(tmp_path, hub_dir) -> Path:
    path = tmp_path / "host"
    result = routing("init", "--home", str(path), "--hub", str(hub_dir))
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture
def learner(tmp_path, hub_dir) -> Path:
    path = tmp_path / "learner"
    initialise(path, hub=str(hub_dir))
    return path


# ---------------------------------------------------------------------- shipping


def test_sync_ships_every_row_once_then_nothing(host, hub_dir):
    make_traffic(host, 30, 20)
    assert sync_json(host) == {"shipped": {"routing_decisions": 30, "model_performance": 20}, "rule_set_version": 1}
    assert sync_json(host) == {"shipped": {"routing_decisions": 0, "model_performance": 0}, "rule_set_version": 1}
    make_traffic(host, 5, 5, seed=8)
    assert sync_json(host)["shipped"] == {"routing_decisions": 5, "model_performance": 5}
    hub = Hub.parse(str(hub_dir))
    assert_hub_holds_exactly(hub, host)
    assert len(hub_ids(hub, "routing_decisions")) == 35


def test_segments_are_bounded_and_named_by_their_rowids(host, hub_dir):
    make_traffic(host, 17, 0)
    hub = Hub.parse(str(hub_dir))
    with Store.open_home(host) as store:
        assert ship(host, hub, store, segment_rows=7) == {"routing_decisions": 17, "model_performance": 0}
        host_id = store.hub_tie()[1]
    names = [o.key for o in hub.list(f"inbox/{host_id}/routing_decisions")]
    assert names == [f"inbox/{host_id}/routing_decisions/{a:012d}-{b:012d}.parquet" for a, b in ((1, 7), (8, 14), (15, 17))]
    assert_hub_holds_exactly(hub, host)


def test_shipped_segments_read_as_inbox_drops(host, hub_dir):
    """The learner reads a segment as it reads a drop: every row valid, timestamps parsed."""
    from routing_pipelines.logs import read_drop

    make_traffic(host, 6, 6)
    sync_json(host)
    hub = Hub.parse(str(hub_dir))
    for table in ("routing_decisions", "model_performance"):
        (segment,) = [o for o in hub.list("inbox") if f"/{table}/" in o.key]
        rows, quarantined = read_drop(hub.get(segment.key), "segment.parquet", table, "s")
        assert rows.height == 6 and quarantined.height == 0
        assert rows[{"routing_decisions": "created_at", "model_performance": "recorded_at"}[table]].null_count() == 0


def test_a_row_with_a_value_of_another_type_still_ships(host, hub_dir):
    """A value written by hand (text in a number column) ships as text: the learner quarantines
    it by name; the sync never wedges on it."""
    from routing_pipelines.logs import read_drop

    make_traffic(host, 3, 3)
    conn = sqlite3.connect(host / "routing.db")
    conn.execute("UPDATE model_performance SET latency_ms = 'slow' WHERE rowid = 2")
    conn.commit()
    conn.close()
    assert sync_json(host)["shipped"] == {"routing_decisions": 3, "model_performance": 3}
    hub = Hub.parse(str(hub_dir))
    (segment,) = [o for o in hub.list("inbox") if "/model_performance/" in o.key]
    rows, quarantined = read_drop(hub.get(segment.key), "segment.parquet", "model_performance", "s")
    assert rows.height == 2 and quarantined["reason"].to_list() == ["latency_ms: cannot convert to Float64"]


def test_a_home_not_tied_to_a_hub_is_told_how(tmp_path):
    home = tmp_path / "alone"
    initialise(home)
    result = routing("sync", "--home", str(home))
    assert result.returncode == 2
    assert "is not tied to a hub: run `routing init --home" in result.stderr and "--hub URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_without_the_hub_extra_the_sync_names_it(host):
    without_pyarrow = "import sys; sys.modules['pyarrow'] = None; from routing_runtime.cli import main; sys.exit(main(sys.argv[1:]))"
    result = subprocess.run([sys.executable, "-c", without_pyarrow, "sync", "--home", str(host)], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "needs the [hub] extra" in result.stderr and "pip install 'routing-runtime[hub]'" in result.stderr


@pytest.mark.parametrize("point", SHIP_POINTS + PULL_POINTS)
def test_a_sync_killed_anywhere_loses_and_doubles_nothing(point, host, learner, hub_dir):
    hub = Hub.parse(str(hub_dir))
    make_traffic(host, 12, 9)
    version = learner_publishes(learner, hub)
    killed = routing("sync", "--home", str(host), "--json", env={"ROUTING_CRASH_AT": point})
    assert killed.returncode == CRASH_EXIT_CODE, (killed.stdout, killed.stderr)
    make_traffic(host, 4, 4, seed=9)  # and the host went on working meanwhile
    after = sync_json(host)
    assert after["rule_set_version"] == version == 2
    assert_hub_holds_exactly(hub, host)
    assert len(hub_ids(hub, "routing_decisions")) == 16 and len(hub_ids(hub, "model_performance")) == 13
    assert sync_json(host)["shipped"] == {"routing_decisions": 0, "model_performance": 0}
    with Store.open_home(host) as store:
        assert store.published_versions() == [2, 1]
        assert store.rule_set_document(2)["inputs"]["hub"] == str(hub_dir)


def test_hub_down_fails_clearly_then_the_next_sync_delivers(host, hub_dir, tmp_path):
    hub = Hub.parse(str(hub_dir))
    make_traffic(host, 10, 10)
    sync_json(host)
    make_traffic(host, 5, 3, seed=3)
    away = tmp_path / "hub-away"
    hub_dir.rename(away)  # the shared filesystem is not mounted
    down = routing("sync", "--home", str(host), "--json")
    assert down.returncode == 1 and down.stdout == ""
    assert down.stderr.count("\n") == 1 and "does not exist" in down.stderr and "Traceback" not in down.stderr
    away.rename(hub_dir)
    assert sync_json(host)["shipped"] == {"routing_decisions": 5, "model_performance": 3}
    assert_hub_holds_exactly(hub, host)


# ---------------------------------------------------------------------- rule sets


def test_pull_takes_the_hubs_version_and_a_running_router_switches_within_a_second(host, learner, hub_dir):
    hub = Hub.parse(str(hub_dir))
    with Store.open_home(learner) as store:  # the learner is ahead: v2 and v3 here, v3 on the hub
        store.publish_rule_set(store.load_rule_set(1).rows, source="learned", as_of="2026-11-29")
    version = learner_publishes(learner, hub)
    assert version == 3
    with ModelRouter.open(host, seed=1) as router:
        assert router.select_model("math").rule_set_version == 1
        assert sync_json(host)["rule_set_version"] == 3
        synced = time.monotonic()
        while router.select_model("math").rule_set_version != 3:
            assert time.monotonic() - synced < 1.0, "the running router did not switch within a second"
            time.sleep(0.02)
    with Store.open_home(host) as store:
        assert store.published_versions() == [3, 1]
        mine, theirs = store.rule_set_document(3), hub.get_json(rule_set_key(3))
        assert mine["source"] == "learned" and mine["as_of"] == "2026-11-30" and mine["created_at"] == theirs["created_at"]
        assert mine["rows"] == theirs["rows"]


def test_init_on_a_host_that_took_hub_rules_publishes_nothing_locally(host, learner, hub_dir, write_registry):
    learner_publishes(learner, Hub.parse(str(hub_dir)))
    sync_json(host)
    changed = write_registry(BASE_MODELS_TOML.replace("prior_quality = 0.72", "prior_quality = 0.75"))
    result = routing("init", "--home", str(host), "--registry", str(changed))
    assert result.returncode == 0, result.stderr
    with Store.open_home(host) as store:
        assert store.published_versions() == [2, 1]  # no local v3 to collide with the hub's next one


@pytest.mark.parametrize("corruption", ["probability", "unknown model", "missing rows", "not json", "wrong version"])
def test_a_rule_set_the_router_could_not_serve_is_not_imported(corruption, host, learner, hub_dir):
    hub = Hub.parse(str(hub_dir))
    learner_publishes(learner, hub)
    key = rule_set_key(2)
    document = hub.get_json(key)
    if corruption == "probability":
        document["rows"][3]["selection_probability"] = "NaN"
    elif corruption == "unknown model":
        document["rows"][0]["model_id"] = "not-registered-here"
    elif corruption == "missing rows":
        document["rows"] = document["rows"][:5]
    elif corruption == "wrong version":
        document["version"] = 7
    hub.put(key, b"{not json" if corruption == "not json" else json.dumps(document).encode())
    with ModelRouter.open(host, seed=1) as router:
        result = routing("sync", "--home", str(host), "--json")
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert "not imported; this home keeps serving v1" in result.stderr or "not valid JSON" in result.stderr
        time.sleep(0.3)
        assert router.select_model("math").rule_set_version == 1
    with Store.open_home(host) as store:
        assert store.published_versions() == [1]


def test_a_host_whose_own_version_is_not_the_hubs_is_refused(host, learner, hub_dir, write_registry):
    """A host that published v2 itself (a registry change before it took any hub rules) cannot
    take the hub's v2 under that number: the sync says so, and what to do."""
    changed = write_registry(BASE_MODELS_TOML)
    assert routing("init", "--home", str(host), "--registry", str(changed)).returncode == 0
    learner_publishes(learner, Hub.parse(str(hub_dir)))
    result = routing("sync", "--home", str(host))
    assert result.returncode == 1
    assert "this home's rule set v2" in result.stderr and "takes its versions from the hub" in result.stderr


def test_push_writes_every_version_then_the_pointer_last(learner, hub_dir):
    class Recording(type(Hub.parse(str(hub_dir)))):
        def put(self, key: str, data: bytes) -> None:
            written.append(key)
            super().put(key, data)

    written: list[str] = []
    hub = Recording(str(hub_dir))
    with Store.open_home(learner) as store:
        store.publish_rule_set(store.load_rule_set(1).rows, source="learned", as_of="2026-11-30")
        assert push_rule_sets(learner, hub, store) == [1, 2]
        assert push_rule_sets(learner, hub, store) == []
        store.publish_rule_set(store.load_rule_set(1).rows, source="learned", as_of="2026-12-01")
        assert push_rule_sets(learner, hub, store) == [3]
    assert written == [rule_set_key(1), rule_set_key(2), CURRENT_RULES, rule_set_key(3), CURRENT_RULES]
    assert hub.get_json(CURRENT_RULES) == {"version": 3}


def test_two_learners_on_one_hub_are_refused(tmp_path, learner, hub_dir):
    hub = Hub.parse(str(hub_dir))
    learner_publishes(learner, hub)  # hub at v2
    other = tmp_path / "other-learner"
    initialise(other, hub=str(hub_dir))
    with Store.open_home(other) as store:
        with pytest.raises(SyncError, match=r"serves rule set v2, above this home's newest v1: another learner"):
            push_rule_sets(other, hub, store)
        for day in ("2026-11-28", "2026-11-29"):
            store.publish_rule_set(store.load_rule_set(1).rows, source="learned", as_of=day)
        with pytest.raises(SyncError, match=r"rule set v2 is not this home's v2: another learner"):
            push_rule_sets(other, hub, store)
    assert hub.get_json(CURRENT_RULES) == {"version": 2}


# ---------------------------------------------------------------------- --every


def test_every_syncs_until_sigterm_and_rides_out_a_hub_outage(host, hub_dir, tmp_path):
    hub = Hub.parse(str(hub_dir))
    make_traffic(host, 4, 4)
    process = subprocess.Popen(
        [sys.executable, "-m", "routing_runtime.cli", "sync", "--home", str(host), "--every", "0.2", "--ship-every", "0.2", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        first = json.loads(process.stdout.readline())
        assert first["shipped"] == {"routing_decisions": 4, "model_performance": 4}
        away = tmp_path / "hub-away"
        hub_dir.rename(away)
        make_traffic(host, 3, 1, seed=5)
        time.sleep(0.8)  # a few periods with the hub gone
        away.rename(hub_dir)
        deadline = time.monotonic() + 10
        shipped = 0
        while shipped < 3:
            assert time.monotonic() < deadline
            shipped += json.loads(process.stdout.readline())["shipped"]["routing_decisions"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        errors = process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
    assert "does not exist" in errors and "Traceback" not in errors
    assert_hub_holds_exactly(hub, host)


def test_every_pulls_each_period_but_ships_once_per_ship_period(host, hub_dir):
    # A loop shipping every second would put tens of thousands of tiny segments a day on the hub
    # for the learner to read one by one: by default it ships every 30 s and pulls every period.
    make_traffic(host, 4, 4)
    process = subprocess.Popen(
        [sys.executable, "-m", "routing_runtime.cli", "sync", "--home", str(host), "--every", "0.2", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert json.loads(process.stdout.readline())["shipped"] == {"routing_decisions": 4, "model_performance": 4}
        make_traffic(host, 3, 3, seed=5)
        later = [json.loads(process.stdout.readline()) for _ in range(4)]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert all(line["shipped"] == {"routing_decisions": 0, "model_performance": 0} for line in later)
    assert json.loads(routing("sync", "--home", str(host), "--json").stdout)["shipped"] == {
        "routing_decisions": 3, "model_performance": 3}


# ---------------------------------------------------------------------- a real S3 server
#
def test_sync_through_s3_and_a_hub_stopped_mid_sync(seaweed, tmp_path, monkeypatch):
    for key, value in seaweed.env.items():
        monkeypatch.setenv(key, value)
    url = seaweed.new_bucket_url()
    host, learner = tmp_path / "host", tmp_path / "learner"
    assert routing("init", "--home", str(host), "--hub", url).returncode == 0
    initialise(learner, hub=url)
    hub = Hub.parse(url)
    make_traffic(host, 20, 15)
    refused = routing("sync", "--home", str(host), env={"AWS_SECRET_ACCESS_KEY": "not-the-secret"})
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert "refused our credentials" in refused.stderr and "AWS_SECRET_ACCESS_KEY" in refused.stderr
    assert sync_json(host) == {"shipped": {"routing_decisions": 20, "model_performance": 15}, "rule_set_version": 1}
    assert learner_publishes(learner, hub) == 2
    make_traffic(host, 6, 6, seed=11)

    # The hub goes down while a sync is between planning a segment and uploading it: the sync is
    # frozen there (SIGSTOP) for as long as the server takes to stop, then let go.
    paused = subprocess.Popen(
        [sys.executable, "-m", "routing_runtime.cli", "sync", "--home", str(host), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "ROUTING_PAUSE_AT": "sync:after_plan", "ROUTING_PAUSE_SECONDS": "2"},
    )
    deadline = time.monotonic() + 30
    while not unshipped_segments(host):
        assert time.monotonic() < deadline and paused.poll() is None, "the sync never planned a segment"
        time.sleep(0.02)
    paused.send_signal(signal.SIGSTOP)
    seaweed.stop()
    paused.send_signal(signal.SIGCONT)
    out, err = paused.communicate(timeout=120)
    assert paused.returncode == 1 and out == "", (out, err)
    assert err.count("\n") == 1 and "cannot connect" in err and "AWS_ENDPOINT_URL" in err, err
    assert unshipped_segments(host) == 1

    seaweed.start()
    assert sync_json(host) == {"shipped": {"routing_decisions": 6, "model_performance": 6}, "rule_set_version": 2}
    assert_hub_holds_exactly(hub, host)
    assert len(hub_ids(hub, "routing_decisions")) == 26 and len(hub_ids(hub, "model_performance")) == 21
    assert sync_json(host)["shipped"] == {"routing_decisions": 0, "model_performance": 0}


def test_a_learner_learns_what_routing_sync_shipped_and_hosts_serve_its_rules(tmp_path, host, learner, hub_dir):
    """Host → hub → learner → hub → host, with the real pieces: the learner ingests the host's
    segments as shipped (every row once, also after a second sync) and the host serves the
    version the learner pushed."""
    import datetime as dt

    pytest.importorskip("dagster")
    from routing_pipelines.learn import learn

    day = dt.date(2026, 5, 1)
    with ModelRouter.open(host, seed=3) as router:
        for i in range(24):
            at = dt.datetime.combine(day, dt.time(9)) + dt.timedelta(minutes=5 * i)
            d = router.select_model(("math", "general")[i % 2], "balanced", at=at)
            router.record_performance(d.decision_id, "success", quality_score=0.8, latency_ms=900, tokens_used=1000,
                                      cost_usd=0.001, at=at + dt.timedelta(seconds=3))
    sync_json(host)
    result = learn(learner, day, quiet=True)
    assert result.status == "published", result.problems
    assert result.tables["routing_decisions"]["ingested"] == 24 and result.tables["model_performance"]["ingested"] == 24
    hub = Hub.parse(str(hub_dir))
    # `routing learn` put its rule set on the hub itself: nothing is left to push.
    assert hub.get_json("rules/current.json") == {"version": result.rule_set_version}
    with Store.open_home(learner) as store:
        assert push_rule_sets(learner, hub, store) == []
    assert sync_json(host) == {"shipped": {"routing_decisions": 0, "model_performance": 0},
                               "rule_set_version": result.rule_set_version}


def test_every_waits_its_ship_period_when_the_pull_after_a_ship_fails(host, hub_dir):
    # Found in the fleet benchmark: a pull that failed after a successful ship (a slow hub)
    # made the loop ship again the next second, a new small segment every second.
    hub = Hub.parse(str(hub_dir))
    make_traffic(host, 4, 4)
    hub.put("rules/current.json", b'{"version": "not a number"}')
    process = subprocess.Popen(
        [sys.executable, "-m", "routing_runtime.cli", "sync", "--home", str(host), "--every", "0.2", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        time.sleep(1.0)
        make_traffic(host, 3, 3, seed=5)
        time.sleep(1.5)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        errors = process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
    assert "not a positive integer" in errors
    assert len([o for o in hub.list("inbox") if o.key.endswith(".parquet")]) == 2  # one segment per table
