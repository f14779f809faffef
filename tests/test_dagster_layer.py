"""The Dagster layer as an operator and an analyst meet it: run config instead of tags, values
through the lake IO manager, Materialize from the UI, the schedule's read-only tick, one run per
home whoever launches it, runs of `routing learn` listed with the job."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

dg = pytest.importorskip("dagster")
pl = pytest.importorskip("polars")

from dagster._core.storage.tags import REPOSITORY_LABEL_TAG  # noqa: E402

from routing_pipelines.assets import names  # noqa: E402
from routing_pipelines.definitions import build_definitions, run_config  # noqa: E402
from routing_pipelines.lake import Lake  # noqa: E402
from routing_pipelines.learn import INSTANCE_CONFIG, dagster_instance, learn  # noqa: E402
from routing_pipelines.logs import pending_days  # noqa: E402
from routing_runtime import ModelRouter  # noqa: E402
from routing_runtime.admin import initialise  # noqa: E402

D1 = dt.date(2026, 6, 1)
D3 = dt.date(2026, 6, 3)
ROW = {"model_id": "gpt-4o", "task_type": "math", "outcome": "success", "quality_score": 0.9, "latency_ms": 1200,
       "tokens_used": 800, "cost_usd": 0.002}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    initialise(home)
    with ModelRouter.open(home, seed=3) as router:
        for day in range(3):
            for i in range(20):
                at = dt.datetime.combine(D1 + dt.timedelta(days=day), dt.time(9, i))
                d = router.select_model("math" if i % 2 else "code_generation", "balanced", at=at)
                router.record_performance(d.decision_id, "success" if i % 3 else "failure", latency_ms=800 + i,
                                          tokens_used=900, cost_usd=0.001, at=at)
    return home


def job(home: Path):
    return build_definitions(home).resolve_job_def(names.NIGHTLY_JOB)


def rule_versions(home: Path) -> list[int]:
    import sqlite3

    conn = sqlite3.connect(home / "routing.db")
    try:
        return [v for (v,) in conn.execute("SELECT version FROM rule_sets ORDER BY version")]
    finally:
        conn.close()


def test_materialize_model_routing_rules_alone_publishes_the_current_candidate(home: Path):
    assert learn(home, D3, quiet=True).success
    before = rule_versions(home)
    result = job(home).execute_in_process(
        asset_selection=[dg.AssetKey(names.MODEL_ROUTING_RULES)], instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    (event,) = result.asset_materializations_for_node(names.MODEL_ROUTING_RULES)
    assert rule_versions(home) == [*before, before[-1] + 1]
    assert event.metadata["as_of"].value == str(D3) and event.metadata["rule_set_version"].value == before[-1] + 1
    assert event.tags["dagster/data_version"] == f"v{before[-1] + 1} as of {D3}"


def test_materialize_a_learning_step_before_any_learn_says_what_to_materialize_first(home: Path):
    result = job(home).execute_in_process(
        asset_selection=[dg.AssetKey(names.MODEL_ROUTING_RULES)], instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    message = str(failure.step_failure_data.error.to_string())
    assert "materialize candidate_routing_rules first" in message


def test_materialize_model_posteriors_without_config_learns_as_of_the_newest_statistics_day(home: Path):
    assert learn(home, D3, quiet=True).success
    result = job(home).execute_in_process(
        asset_selection=[dg.AssetKey(names.MODEL_POSTERIORS)], instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    assert result.asset_materializations_for_node(names.MODEL_POSTERIORS)[0].metadata["as_of"].value == str(D3)


def test_as_of_comes_from_run_config_and_a_bad_day_is_named(home: Path):
    assert learn(home, D3, quiet=True).success
    result = job(home).execute_in_process(
        asset_selection=[dg.AssetKey(names.MODEL_POSTERIORS)], instance=dg.DagsterInstance.ephemeral(),
        run_config=run_config(D1),
    )
    assert result.asset_materializations_for_node(names.MODEL_POSTERIORS)[0].metadata["as_of"].value == str(D1)
    bad = job(home).execute_in_process(
        asset_selection=[dg.AssetKey(names.MODEL_POSTERIORS)], instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
        run_config={"ops": {names.MODEL_POSTERIORS: {"config": {"as_of": "June 3rd"}}}},
    )
    assert not bad.success
    assert "as_of='June 3rd' is not a date" in " ".join(e.step_failure_data.error.to_string() for e in bad.all_events if e.is_step_failure)


def test_checks_receive_the_value_they_check(home: Path):
    assert learn(home, D3, quiet=True).success
    lake = Lake(home)
    broken = lake.read_value(names.MODEL_POSTERIORS)[1].with_columns(pl.lit(float("nan")).alias("quality_mean"))
    lake.write_value(names.MODEL_POSTERIORS, D3, broken)
    defs = build_definitions(home)
    check = dg.AssetCheckKey(dg.AssetKey(names.MODEL_POSTERIORS), names.POSTERIOR_SANITY_CHECK)
    result = dg.materialize(
        [*defs.assets, *defs.asset_checks], selection=dg.AssetSelection.checks(check),
        resources=defs.resources, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
    )
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.metadata["as_of"].value == str(D3)
    assert evaluation.metadata["problems"].value == broken.height


def test_the_schedule_tick_stages_nothing_and_plans_the_days_of_waiting_drops(home: Path):
    assert learn(home, D3, quiet=True).success
    late = home / "inbox" / "model_performance" / "late.jsonl"
    late.write_text(json.dumps({**ROW, "id": "late-1", "recorded_at": "2026-06-01T22:00:00Z"}) + "\n")
    assert pending_days(home) == {D1}
    schedule = build_definitions(home).resolve_schedule_def(names.NIGHTLY_SCHEDULE)
    request = schedule(dg.build_schedule_context(scheduled_execution_time=dt.datetime(2026, 6, 4, 2, tzinfo=dt.timezone.utc)))
    assert late.exists(), "the tick moved a drop"
    assert request.partition_key_range == dg.PartitionKeyRange(str(D1), str(D3))
    assert request.run_config == run_config(D3)


def test_pending_days_never_read_through_a_linked_inbox(home: Path, tmp_path: Path):
    outside = tmp_path / "outside" / "model_performance"
    outside.mkdir(parents=True)
    (outside / "x.jsonl").write_text(json.dumps({**ROW, "id": "x", "recorded_at": "2026-06-01T22:00:00Z"}) + "\n")
    for child in (home / "inbox").iterdir():
        if child.is_dir():
            for f in child.rglob("*"):
                if f.is_file():
                    f.unlink()
    import shutil

    shutil.rmtree(home / "inbox")
    (home / "inbox").symlink_to(tmp_path / "outside")
    assert pending_days(home) == set()


def test_partitions_start_at_the_homes_first_evidence(home: Path, tmp_path: Path):
    partitions = build_definitions(home).resolve_assets_def(names.MODEL_PERFORMANCE).partitions_def
    assert partitions.get_first_partition_key() == str(D1)
    empty = tmp_path / "empty"
    initialise(empty)
    first = build_definitions(empty).resolve_assets_def(names.MODEL_PERFORMANCE).partitions_def.get_first_partition_key()
    assert first == str(dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1))


def test_every_step_is_in_the_learning_pool_and_the_instance_allows_one_run_in_it(home: Path):
    defs = build_definitions(home)
    graph = defs.resolve_asset_graph()
    pools = {key.to_user_string(): graph.get(key).pools for key in graph.get_all_asset_keys()}
    assert all(p == {names.LEARNING_POOL} for p in pools.values()), pools
    with dagster_instance(home):
        pass
    assert (home / "dagster_home" / "dagster.yaml").read_text() == INSTANCE_CONFIG
    assert "granularity: run" in INSTANCE_CONFIG and "default_limit: 1" in INSTANCE_CONFIG


def test_runs_of_routing_learn_are_listed_with_the_job_of_the_ui_code_location(home: Path):
    result = learn(home, D3, quiet=True)
    with dagster_instance(home) as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(
            job_name=names.NIGHTLY_JOB, tags={REPOSITORY_LABEL_TAG: names.REPOSITORY_LABEL},
        ))
    assert [r.run_id for r in runs] == [result.run_id]
    from routing_pipelines.ui import workspace_file

    # The location `routing ui` serves has the name the runs are labelled with.
    assert f"location_name: {names.CODE_LOCATION}" in workspace_file(home).read_text()


def _paused_dagster_run(home: Path) -> subprocess.Popen:
    """A run of the nightly job as the daemon or the UI would start it, in its own process,
    paused after it wrote the posteriors (holding the home)."""
    code = (
        "import sys, datetime as dt\n"
        "from routing_pipelines.definitions import build_definitions, run_config\n"
        "from routing_pipelines.learn import dagster_instance\n"
        "home = sys.argv[1]\n"
        "from pathlib import Path\n"
        "with dagster_instance(Path(home)) as instance:\n"
        "    job = build_definitions(home).resolve_job_def('nightly_learning')\n"
        "    r = job.execute_in_process(instance=instance, run_config=run_config(dt.date(2026, 6, 3)), partition_key='2026-06-03')\n"
        "    print('ok' if r.success else 'failed')\n"
    )
    env = {**os.environ, "ROUTING_PAUSE_AT": "model_posteriors:after_write", "ROUTING_PAUSE_SECONDS": "10"}
    return subprocess.Popen([sys.executable, "-c", code, str(home)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_value(home: Path, asset: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not (home / "lake" / asset / "current.json").exists():
        assert time.monotonic() < deadline, f"the run never wrote {asset}"
        time.sleep(0.2)


def test_routing_learn_refuses_while_a_daemon_launched_run_holds_the_home(home: Path):
    run = _paused_dagster_run(home)
    try:
        _wait_for_value(home, names.MODEL_POSTERIORS)
        cli = subprocess.run([sys.executable, "-m", "routing_runtime.cli", "learn", "--home", str(home), "--as-of", str(D3)],
                             capture_output=True, text=True, timeout=120)
        assert cli.returncode == 2, cli.stderr
        assert "another learning run is using" in cli.stderr and "routing learn" in cli.stderr
    finally:
        out, err = run.communicate(timeout=120)
    assert out.strip() == "ok", err


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_dagster_run_fails_at_once_while_routing_learn_holds_the_home(home: Path, workers: str):
    # With 2 workers the paused step runs in a child process, admitted with the run's lease; the
    # other run has no such lease and is refused all the same.
    env = {**os.environ, "ROUTING_PAUSE_AT": "model_posteriors:after_write", "ROUTING_PAUSE_SECONDS": "10"}
    cli = subprocess.Popen([sys.executable, "-m", "routing_runtime.cli", "learn", "--home", str(home), "--as-of", str(D3), "--json",
                            "--workers", workers],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_value(home, names.MODEL_POSTERIORS)
        result = job(home).execute_in_process(
            instance=dg.DagsterInstance.ephemeral(), run_config=run_config(D3), partition_key=str(D3), raise_on_error=False,
        )
        assert not result.success
        (init,) = [e for e in result.all_events if e.event_type_value == "RESOURCE_INIT_FAILURE"]
        assert "another learning run is using" in init.event_specific_data.error.to_string()
        assert not any(e.event_type_value == "STEP_START" for e in result.all_events), "a step ran while the home was held"
    finally:
        out, err = cli.communicate(timeout=120)
    assert json.loads(out)["status"] == "published", err


def test_a_day_without_new_evidence_is_nothing_new_and_never_loads_dagster(home: Path):
    assert learn(home, D3, quiet=True).success
    probe = (
        "import json, sys\n"
        "from routing_pipelines.learn import learn\n"
        "r = learn(sys.argv[1], quiet=True)\n"
        "print(json.dumps([r.status, r.rule_set_version, 'dagster' in sys.modules]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe, str(home)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    status, version, loaded = json.loads(proc.stdout)
    assert (status, version, loaded) == ("nothing_new", rule_versions(home)[-1], False)


@pytest.mark.parametrize("kind", ["parquet-datetime", "parquet-text", "jsonl"])
def test_planning_reads_the_days_of_a_drop_as_staging_splits_it(kind: str):
    from routing_pipelines.logs import _split_drop, drop_days

    times = ["2026-06-01T23:59:59Z", "2026-06-02 00:00:00", "not a time", None, "2019-12-31T00:00:00Z", "2026-06-03T10:00:00+02:00"]
    rows = [{**ROW, "id": f"r{i}", "recorded_at": t} for i, t in enumerate(times)]
    if kind == "jsonl":
        name, content = "d.jsonl", "\n".join(json.dumps(r) for r in rows).encode()
    else:
        frame = pl.DataFrame(rows)
        if kind == "parquet-datetime":
            frame = frame.with_columns(pl.col("recorded_at").str.to_datetime(strict=False, time_zone="UTC"))
        import io

        buffer = io.BytesIO()
        frame.write_parquet(buffer)
        name, content = "d.parquet", buffer.getvalue()
    staged, _ = _split_drop(content, name, "model_performance", "x")
    assert drop_days(content, name, "model_performance") == set(staged) != set()
