"""The Dagster definitions as the UI and the daemon load them: every asset, its real upstream
edges, the checks and the asset each one checks, the nightly job's selection and its schedule.

The expected graph is written out by name (what an analyst sees in the UI), so that an edge added,
lost or moved is a failing test here, not a surprise in the asset graph.
"""

from __future__ import annotations

from pathlib import Path

import pytest

dg = pytest.importorskip("dagster")

from routing_pipelines.definitions import build_definitions  # noqa: E402

#: Asset -> the assets it reads (its parents in the asset graph).
UPSTREAM = {
    "inbox": set(),
    "routing_decisions": {"inbox"},
    "model_performance": {"inbox"},
    "daily_model_stats": {"model_performance"},
    "model_posteriors": {"daily_model_stats"},
    "specialist_vs_generalist": {"model_posteriors"},
    "candidate_routing_rules": {"model_posteriors"},
    "policy_evaluation": {"candidate_routing_rules", "model_posteriors", "routing_decisions", "model_performance"},
    "model_routing_rules": {"candidate_routing_rules", "policy_evaluation", "model_posteriors"},
}
#: Asset check -> the asset it checks.
CHECKS = {
    "log_validity": "daily_model_stats",
    "posterior_sanity": "model_posteriors",
    "rules_coverage": "candidate_routing_rules",
    "publication_gate": "policy_evaluation",
}
JOB = "nightly_learning"
SCHEDULE = "nightly_learning_0200_utc"


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def defs(home: Path):
    return build_definitions(home)


def test_the_definitions_load_for_the_given_home(defs, home: Path):
    dg.Definitions.validate_loadable(defs)
    assert defs.resources["routing_home"].home == str(home.resolve())


def test_the_module_level_definitions_load():
    # What `dagster dev -m routing_pipelines.definitions -a defs` and workspace.yaml load.
    from routing_pipelines.definitions import defs as module_defs

    dg.Definitions.validate_loadable(module_defs)
    assert {k.to_user_string() for k in module_defs.resolve_asset_graph().get_all_asset_keys()} == set(UPSTREAM)


def test_every_asset_and_its_upstream_assets(defs):
    graph = defs.resolve_asset_graph()
    edges = {key.to_user_string(): {p.to_user_string() for p in graph.get(key).parent_keys} for key in graph.get_all_asset_keys()}
    assert edges == UPSTREAM
    assert all(graph.get(dg.AssetKey(name)).is_materializable for name in UPSTREAM)


def test_the_checks_and_the_asset_each_one_checks(defs):
    graph = defs.resolve_asset_graph()
    assert {check.name: check.asset_key.to_user_string() for check in graph.asset_check_keys} == CHECKS
    # Each check is attached to its asset (shown on the asset's page, run with it).
    for name, asset in CHECKS.items():
        assert name in {c.name for c in graph.get(dg.AssetKey(asset)).check_keys}


def test_the_nightly_job_runs_every_asset_and_check_in_one_process(defs):
    job = defs.resolve_job_def(JOB)
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == set(UPSTREAM)
    assert {c.name for c in job.asset_layer.asset_graph.asset_check_keys} == set(CHECKS)
    assert job.executor_def.name == "in_process"


@pytest.mark.parametrize("table", ["routing_decisions", "model_performance"])
def test_each_log_table_is_ingested_by_a_graph_that_fans_out_over_chunks_of_days(defs, table: str):
    # plan -> (one mapped step per chunk of days) -> summary: the summary is the asset, the days
    # are the range of the run (one run over every partition: single-run backfill).
    asset = defs.resolve_assets_def(table)
    graph = asset.node_def
    assert isinstance(graph, dg.GraphDefinition)
    chunks, ingest, summary = f"{table}_chunks", f"{table}_ingest", f"{table}_summary"
    assert {node.name for node in graph.nodes} == {chunks, ingest, summary}
    assert graph.node_named(chunks).definition.output_defs[0].is_dynamic
    assert graph.dependency_structure.is_dynamic_mapped(ingest)
    fan_in = graph.dependency_structure.input_to_upstream_outputs_for_node(summary)
    assert [o.node.name for outputs in fan_in.values() for o in outputs] == [ingest]
    assert asset.backfill_policy == dg.BackfillPolicy.single_run()
    assert isinstance(asset.partitions_def, dg.DailyPartitionsDefinition)


def test_the_nightly_job_runs_on_the_executor_the_definitions_are_given(home: Path):
    # What `routing learn --workers N` rebuilds in each step's process, and what a cluster passes.
    from routing_pipelines.definitions import parallel_nightly_job

    assert parallel_nightly_job(str(home), "2026-06-01").executor_def.name == "multiprocess"
    job = build_definitions(home, executor=dg.multiprocess_executor).resolve_job_def(JOB)
    assert job.executor_def.name == "multiprocess"


def test_the_schedule_runs_the_job_at_0200_utc_and_is_on_by_default(defs):
    schedule = defs.resolve_schedule_def(SCHEDULE)
    assert schedule.job_name == JOB
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 2 * * *", "UTC")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.required_resource_keys == set()  # the tick reads the home itself: it never takes the run lock
    assert [s.name for s in defs.schedules] == [SCHEDULE]
