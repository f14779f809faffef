"""The nightly pipeline as Dagster runs it: ingest, quarantine, idempotency, checks, schedule."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import pytest

dg = pytest.importorskip("dagster")
pl = pytest.importorskip("polars")

from routing_pipelines.assets import names  # noqa: E402
from routing_pipelines.lake import QUARANTINE, Lake  # noqa: E402
from routing_pipelines.definitions import build_definitions, run_config  # noqa: E402
from routing_pipelines.learn import learn  # noqa: E402
from routing_runtime import ModelRouter  # noqa: E402
from routing_runtime.store import Store  # noqa: E402
from routing_runtime.admin import initialise  # noqa: E402

DAY = dt.date(2026, 5, 4)


def at(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(DAY, dt.time(hour, minute))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    initialise(home)
    with ModelRouter.open(home, seed=5) as router:
        for i in range(40):
            d = router.select_model("math" if i % 2 else "debugging", "balanced", at=at(9, i))
            router.record_performance(d.decision_id, "success" if i % 3 else "failure", quality_score=None,
                                      latency_ms=900 + i, tokens_used=1000, cost_usd=0.001, at=at(9, i))
        # Something from the day before, which must not leak into DAY's partition.
        d = router.select_model("general", at=at(0) - dt.timedelta(minutes=1))
        router.record_performance(d.decision_id, "success", at=at(0) - dt.timedelta(minutes=1))
    return home


def drop(home: Path, table: str, name: str, content: str | pl.DataFrame) -> Path:
    path = home / "inbox" / table / name
    if isinstance(content, str):
        path.write_text(content)
    else:
        content.write_parquet(path)
    return path


def materialize_ingest(home: Path, day: dt.date = DAY) -> dg.ExecuteInProcessResult:
    """The inbox step and one day of both log assets, as the UI's Materialize would run them."""
    job = build_definitions(home).resolve_job_def(names.NIGHTLY_JOB)
    return job.execute_in_process(
        partition_key=day.isoformat(), instance=dg.DagsterInstance.ephemeral(),
        asset_selection=[dg.AssetKey(n) for n in (names.INBOX, names.ROUTING_DECISIONS, names.MODEL_PERFORMANCE)],
    )


def test_ingest_reads_the_day_from_the_database(home: Path):
    result = materialize_ingest(home)
    assert result.success
    decisions = Lake(home).read_partition(names.ROUTING_DECISIONS, DAY)
    outcomes = Lake(home).read_partition(names.MODEL_PERFORMANCE, DAY)
    assert decisions.height == 40 and outcomes.height == 40
    assert outcomes["recorded_at"].dt.date().unique().to_list() == [DAY]
    assert set(outcomes.columns) >= {
        "model_id", "task_type", "outcome", "quality_score", "latency_ms", "tokens_used", "cost_usd", "decision_id",
    }
    metadata = result.asset_materializations_for_node(names.MODEL_PERFORMANCE)[0].metadata
    assert metadata["dagster/row_count"].value == 40 and metadata["quarantined_rows"].value == 0


def test_drops_are_ingested_once_and_bad_rows_are_quarantined_with_a_reason(home: Path):
    good = {"model_id": "gpt-4o", "task_type": "math", "outcome": "success", "quality_score": 0.9, "latency_ms": 1200,
            "tokens_used": 800, "cost_usd": 0.002, "recorded_at": "2026-05-04T12:00:00Z"}
    lines = [
        json.dumps({**good, "id": "drop-1"}),
        "{this is not json",
        json.dumps({**good, "id": "drop-2", "quality_score": 1.7}),
        json.dumps({**good, "id": "drop-3", "recorded_at": "2026-05-04T13:30:00+02:00"}),
        json.dumps({**good, "id": "drop-4", "model_id": "no-such-model"}),
        json.dumps({**good, "id": "drop-5", "latency_ms": "fast"}),
        json.dumps({**good, "id": "drop-6", "outcome": "great"}),
    ]
    jsonl = drop(home, "model_performance", "host-a.jsonl", "\n".join(lines) + "\n")
    parquet = drop(home, "model_performance", "host-b.parquet", pl.DataFrame({
        "id": ["pq-1", "pq-2"], "model_id": ["gpt-4o-mini", "gpt-4o-mini"], "task_type": ["general", "general"],
        "outcome": ["partial", "failure"], "quality_score": [0.5, -0.2], "latency_ms": [300.0, 200.0],
        "tokens_used": [100, 100], "cost_usd": [0.0001, 0.0001],
        "recorded_at": [dt.datetime(2026, 5, 4, 8), dt.datetime(2026, 5, 4, 9)],
    }))

    assert materialize_ingest(home).success
    assert not jsonl.exists() and not parquet.exists()
    assert len(list((home / "inbox" / "model_performance" / "ingested").glob("host-a-*.jsonl"))) == 1
    outcomes = Lake(home).read_partition(names.MODEL_PERFORMANCE, DAY)
    ids = set(outcomes["id"])
    assert {"drop-1", "drop-3", "pq-1"} <= ids
    assert not ids & {"drop-2", "drop-4", "drop-5", "drop-6", "pq-2"}
    # An offset timestamp is converted to UTC.
    assert outcomes.filter(pl.col("id") == "drop-3")["recorded_at"][0] == dt.datetime(2026, 5, 4, 11, 30)

    quarantined = pl.concat([
        Lake(home).read_partition(names.MODEL_PERFORMANCE, DAY, QUARANTINE).select("reason"),
        pl.read_parquet(sorted((home / "lake" / "quarantine" / "model_performance" / "undated").glob("*.parquet"))).select("reason"),
    ])
    reasons = " | ".join(quarantined["reason"])
    for expected in ("malformed JSON line", "quality_score: outside [0, 1]", "model_id: not a registered model",
                     "latency_ms: cannot convert", "outcome: not success, partial or failure"):
        assert expected in reasons


def test_rematerializing_a_day_gives_the_same_result(home: Path):
    drop(home, "routing_decisions", "d.jsonl", json.dumps({
        "id": "remote-1", "agent_execution_id": "x", "task_type": "planning", "selected_model": "gpt-4o",
        "created_at": "2026-05-04 15:00:00", "preference": "quality", "propensity": 0.9,
    }) + "\n")
    assert materialize_ingest(home).success
    first = {t: Lake(home).read_partition(t, DAY).sort("id") for t in (names.ROUTING_DECISIONS, names.MODEL_PERFORMANCE)}
    assert "remote-1" in set(first[names.ROUTING_DECISIONS]["id"])
    assert materialize_ingest(home).success
    for table, frame in first.items():
        assert Lake(home).read_partition(table, DAY).sort("id").equals(frame)


def test_learning_publishes_a_new_rule_set_with_its_inputs(home: Path):
    result = learn(home, DAY, quiet=True)
    assert result.success
    checks = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
              for e in result.dagster_result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert checks == {names.LOG_VALIDITY_CHECK: True, names.POSTERIOR_SANITY_CHECK: True, names.RULES_COVERAGE_CHECK: True,
                      names.PUBLICATION_GATE_CHECK: True}
    conn = sqlite3.connect(home / "routing.db")
    version, source, as_of, inputs = conn.execute("SELECT version, source, as_of, inputs FROM rule_sets ORDER BY version DESC").fetchone()
    assert (version, source, as_of) == (2, "learned", DAY.isoformat())
    recorded = json.loads(inputs)
    assert recorded["outcomes_seen"] == 41
    # The inputs name the code, the evidence days and the gate's figures.
    assert recorded["code_version"].startswith("routing_runtime ") and "routing_pipelines " in recorded["code_version"]
    assert recorded["days"][-1] == DAY.isoformat() and recorded["evaluation_days"][-1] == DAY.isoformat()
    assert recorded["gate"]["status"] == "passed" and recorded["gate"]["enforced"] is True
    assert recorded["gate"]["cells_evaluated"] > len(recorded["off_policy"]) > 0
    assert result.gate == recorded["gate"]
    assert conn.execute("SELECT value FROM settings WHERE key = 'learned_through'").fetchone()[0] == DAY.isoformat()
    assert (home / "lake" / names.MODEL_ROUTING_RULES / "version=2.parquet").exists()
    # The first learning run starts at the first day with logs.
    assert Lake(home).read_partition(names.MODEL_PERFORMANCE, DAY - dt.timedelta(days=1)).height == 1
    # The run is recorded in the Dagster instance under ROUTING_HOME, for `routing ui`.
    assert any((home / "dagster_home").iterdir())
    metadata = next(e for e in result.dagster_result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"
                    and e.asset_key == dg.AssetKey(names.MODEL_ROUTING_RULES)).event_specific_data.materialization.metadata
    assert "| math | balanced |" in metadata["changes"].value
    evaluation = next(e for e in result.dagster_result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"
                      and e.asset_key == dg.AssetKey(names.POLICY_EVALUATION)).event_specific_data.materialization.metadata
    assert evaluation["gate"].value == "passed" and "| all | balanced | quality_per_usd |" in evaluation["estimates"].value


def test_the_code_version_digests_the_learning_modules_and_nothing_else_of_a_checkout():
    """Regression: the digest read every *.py under the checkout (tests, scripts, .venv: 13,000
    files, 0.6 s a learn), so editing a test between two learns made their rule sets differ."""
    import routing_pipelines
    from routing_pipelines.assets import learning_assets

    sources = learning_assets.learning_sources()
    root = Path(__file__).resolve().parents[1]
    assert {"routing_pipelines.learn", "routing_pipelines.learning.candidates", "routing_pipelines.assets.learning_assets",
            "routing_pipelines.assets.names"} <= sources.keys()
    assert all(name == "routing_pipelines" or name.startswith("routing_pipelines.") for name in sources)
    assert all(not path.resolve().is_relative_to(root / folder) for path in sources.values()
               for folder in ("tests", "scripts", "benchmarks", ".venv"))
    assert sources["routing_pipelines.learn"] == Path(routing_pipelines.learn.__file__)
    assert learning_assets.code_version() == learning_assets.code_version.__wrapped__()


def test_a_failing_blocking_check_keeps_the_previous_rule_set(home: Path):
    # `routing init` refuses a registry with every model disabled, so disable them in routing.db.
    conn = sqlite3.connect(home / "routing.db")
    with conn:
        conn.execute("UPDATE models SET enabled = 0")
    before = conn.execute("SELECT MAX(version) FROM rule_sets").fetchone()[0]
    conn.close()
    result = learn(home, DAY, quiet=True)
    assert not result.success
    failed = [e.asset_check_evaluation_data.check_name for e in result.dagster_result.all_events
              if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.asset_check_evaluation_data.passed]
    assert failed == [names.RULES_COVERAGE_CHECK]
    conn = sqlite3.connect(home / "routing.db")
    assert conn.execute("SELECT MAX(version) FROM rule_sets").fetchone()[0] == before


def test_corrupt_statistics_fail_posterior_sanity_and_block_publication(home: Path):
    assert learn(home, DAY, quiet=True).success
    stats_dir = home / "lake" / names.DAILY_MODEL_STATS
    frame = Lake(home).read_partition(names.DAILY_MODEL_STATS, DAY)
    Lake(home).write_partition(names.DAILY_MODEL_STATS, DAY + dt.timedelta(days=1),
                         frame.with_columns(pl.lit(float("inf")).alias("sum_log_latency")))
    assert stats_dir.exists()
    job = build_definitions(home).resolve_job_def(names.NIGHTLY_JOB)
    result = job.execute_in_process(
        asset_selection=[dg.AssetKey(n) for n in (names.MODEL_POSTERIORS, names.CANDIDATE_ROUTING_RULES, names.MODEL_ROUTING_RULES,
                                                  names.POLICY_EVALUATION)],
        run_config=run_config(DAY + dt.timedelta(days=1)), instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
    )
    assert not result.success
    failed = [e.asset_check_evaluation_data.check_name for e in result.all_events
              if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.asset_check_evaluation_data.passed]
    assert failed == [names.POSTERIOR_SANITY_CHECK]
    conn = sqlite3.connect(home / "routing.db")
    assert conn.execute("SELECT MAX(version) FROM rule_sets").fetchone()[0] == 2


def test_the_schedule_learns_every_day_not_yet_learned_at_0200_utc(home: Path):
    assert learn(home, DAY - dt.timedelta(days=1), quiet=True).success
    context = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2026, 5, 7, 2, 0, tzinfo=dt.timezone.utc))
    nightly_schedule = build_definitions(home).resolve_schedule_def(names.NIGHTLY_SCHEDULE)
    request = nightly_schedule(context)
    assert request.partition_key_range == dg.PartitionKeyRange(DAY.isoformat(), "2026-05-06")
    assert request.run_config == run_config(dt.date(2026, 5, 6))
    assert nightly_schedule.cron_schedule == "0 2 * * *" and nightly_schedule.execution_timezone == "UTC"
    assert nightly_schedule.default_status == dg.DefaultScheduleStatus.RUNNING


def test_first_learn_on_a_new_home_ingests_every_dropped_day_and_late_drops_are_picked_up(tmp_path: Path):
    """Regression: the first run learned only the --as-of day of a home fed by inbox drops."""
    home = tmp_path / "drops-only"
    initialise(home)
    row = {"model_id": "gpt-4o", "task_type": "math", "outcome": "success", "latency_ms": 1000.0, "tokens_used": 500, "cost_usd": 0.001}
    for day in (1, 2, 3):
        line = json.dumps({**row, "id": f"d{day}", "recorded_at": f"2026-05-0{day}T10:00:00Z"}) + "\n"
        drop(home, "model_performance", f"day{day}.jsonl", line)
    assert learn(home, dt.date(2026, 5, 3), quiet=True).success
    for day in (1, 2, 3):
        assert Lake(home).read_partition(names.MODEL_PERFORMANCE, dt.date(2026, 5, day))["id"].to_list() == [f"d{day}"]

    drop(home, "model_performance", "late.jsonl", json.dumps({**row, "id": "late", "recorded_at": "2026-05-01T23:00:00Z"}) + "\n")
    drop(home, "model_performance", "ancient.jsonl", json.dumps({**row, "id": "old", "recorded_at": "1999-01-01T00:00:00Z"}) + "\n")
    assert learn(home, dt.date(2026, 5, 4), quiet=True).success
    assert sorted(Lake(home).read_partition(names.MODEL_PERFORMANCE, dt.date(2026, 5, 1))["id"]) == ["d1", "late"]
    conn = sqlite3.connect(home / "routing.db")
    inputs = json.loads(conn.execute("SELECT inputs FROM rule_sets ORDER BY version DESC").fetchone()[0])
    assert inputs["outcomes_seen"] == 4


def test_learn_refuses_a_future_day_and_a_second_concurrent_run(home: Path):
    from routing_pipelines.run_lock import exclusive

    with pytest.raises(ValueError, match="in the future"):
        learn(home, dt.date.today() + dt.timedelta(days=3), quiet=True)
    with exclusive(home):
        with pytest.raises(RuntimeError, match="another learning run is using"):
            learn(home, DAY, quiet=True)
    assert learn(home, DAY, quiet=True).success


def test_learn_on_an_uninitialised_home_says_how_to_initialise(tmp_path: Path):
    from routing_runtime.home import NotInitialisedError

    with pytest.raises(NotInitialisedError, match="routing init"):
        learn(tmp_path / "nothing-here", DAY, quiet=True)


def test_two_drops_with_the_same_name_and_no_ids_are_both_kept(home: Path):
    """Regression: ids derived from the file name made a second `outcomes.jsonl` replace the first."""
    from routing_pipelines import logs

    row = {"task_type": "math", "outcome": "success", "recorded_at": "2026-05-04T12:00:00Z"}
    for model in ("gpt-4o", "codestral-2508"):
        drop(home, "model_performance", "outcomes.jsonl", "\n".join(json.dumps({**row, "model_id": model}) for _ in range(3)) + "\n")
        with Store.open(home / "routing.db") as db:
            logs.stage_inbox(home, db, "model_performance")
    drop(home, "model_performance", ".upload-in-progress.jsonl", json.dumps({**row, "model_id": "gpt-4o"}))
    assert materialize_ingest(home).success
    outcomes = Lake(home).read_partition(names.MODEL_PERFORMANCE, DAY)
    dropped = outcomes.filter(pl.col("decision_id").is_null())["model_id"].to_list()
    assert sorted(dropped) == ["codestral-2508"] * 3 + ["gpt-4o"] * 3
    assert len(list((home / "inbox" / "model_performance" / "ingested").iterdir())) == 2
    assert (home / "inbox" / "model_performance" / ".upload-in-progress.jsonl").exists()


def test_a_drop_mixing_timestamp_forms_keeps_every_valid_row(home: Path):
    """Regression: the format of the first timestamp was applied to the whole file."""
    row = {"model_id": "gpt-4o", "task_type": "math", "outcome": "success"}
    stamps = ["2026-05-04T10:00:00Z", "2026-05-04T11:00:00", "2026-05-04 12:00:00.123456", "2026-05-04T15:30:00+02:00"]
    drop(home, "model_performance", "mixed.jsonl", "\n".join(
        json.dumps({**row, "id": f"t{i}", "recorded_at": s}) for i, s in enumerate(stamps)) + "\n")
    assert materialize_ingest(home).success
    outcomes = Lake(home).read_partition(names.MODEL_PERFORMANCE, DAY).filter(pl.col("id").str.starts_with("t"))
    assert outcomes.sort("id")["recorded_at"].dt.hour().to_list() == [10, 11, 12, 13]


def test_init_after_learning_with_the_same_registry_publishes_nothing(home: Path):
    """Regression: learned rule sets carried no registry fingerprint, so every `routing init`
    republished them (and added the exploration floor a second time)."""
    assert learn(home, DAY, quiet=True).success
    result = initialise(home)
    assert (result.rule_set_version, result.published) == (2, False)
