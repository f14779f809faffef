"""Dagster Definitions of one home: wiring only (the assets, their checks, the nightly job, its
02:00 UTC schedule, the resources)."""

import datetime as dt
import os

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from routing_pipelines.assets import names
from routing_pipelines.assets.learning_assets import (
    candidate_routing_rules, model_posteriors, model_routing_rules, policy_evaluation, posterior_sanity, publication_gate,
    rules_coverage, specialist_vs_generalist,
)
from routing_pipelines.assets.log_assets import daily_assets, inbox
from routing_pipelines.plan import learning_range
from routing_pipelines.resources import LakeIOManager, RoutingHome
from routing_runtime.home import resolve_home

LEARNING_ASSETS = [model_posteriors, specialist_vs_generalist, candidate_routing_rules, policy_evaluation, model_routing_rules]
CHECKS = [posterior_sanity, rules_coverage, publication_gate]


def daily_partitions(first_day: dt.date) -> dg.DailyPartitionsDefinition:
    """One partition per UTC day from the home's first day with evidence to today."""
    return dg.DailyPartitionsDefinition(start_date=first_day.isoformat(), end_offset=1, timezone="UTC")


def nightly_job(assets: list, executor: dg.ExecutorDefinition = dg.in_process_executor):
    # By default one process, steps in order: on a 2-core machine a process per step costs seconds
    # for steps that take milliseconds. `routing learn --workers N` and clusters pass another executor.
    return dg.define_asset_job(
        names.NIGHTLY_JOB, selection=dg.AssetSelection.assets(*assets), executor_def=executor,
        description="Stage the inbox, ingest the logs of every day not yet learned, update posteriors, publish new routing rules.",
    )


def run_config(as_of: dt.date, chunks: int = 1, *, enforce_gate: bool = True) -> dict:
    """The run config of a learning run as of ``as_of`` whose day ingest is split into ``chunks``
    steps per table (the ingest graphs' first op: see :func:`routing_pipelines.assets.log_assets.ingest_ops`),
    with the publication gate binding or not (``--no-gate``)."""
    ops: dict = {names.MODEL_POSTERIORS: {"config": {"as_of": as_of.isoformat()}},
                 names.POLICY_EVALUATION: {"config": {"enforce": enforce_gate}}}
    if chunks != 1:
        for table in (names.ROUTING_DECISIONS, names.MODEL_PERFORMANCE):
            ops[table] = {"ops": {f"{table}_chunks": {"config": {"chunks": chunks}}}}
    return {"ops": ops}


def partition_range_tags(start: dt.date, end: dt.date) -> dict[str, str]:
    """How Dagster 1.13 asks for one run over a range of partitions (what the UI's single-run
    backfill sends too; neither ``RunRequest`` nor ``execute_in_process`` takes a range yet).
    Written, never read by our code: the assets get their days from ``context.partition_keys``."""
    return {ASSET_PARTITION_RANGE_START_TAG: start.isoformat(), ASSET_PARTITION_RANGE_END_TAG: end.isoformat()}


def build_definitions(
    home: str | os.PathLike | None = None, first_day: dt.date | None = None, *,
    executor: dg.ExecutorDefinition = dg.in_process_executor,
) -> dg.Definitions:
    """Definitions for one ROUTING_HOME (default: $ROUTING_HOME, else ./.routing), with partitions
    from ``first_day`` (default: the home's first day with evidence, else yesterday). ``executor``
    runs the nightly job (README.md, "Parallel ingest": multiprocess, k8s or celery)."""
    home_path = resolve_home(home)
    routing_home = RoutingHome(home=str(home_path))
    if first_day is None:
        first_day = routing_home.first_evidence_day() or dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    daily = daily_assets(daily_partitions(first_day))
    assets = [inbox, *daily, *LEARNING_ASSETS]
    job = nightly_job(assets, executor)

    @dg.schedule(
        name=names.NIGHTLY_SCHEDULE, job=job, cron_schedule="0 2 * * *", execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    def nightly_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        """At 02:00 UTC: learn from every day not yet learned, up to and including yesterday. The
        tick only reads (the run's first step stages the inbox), and never takes the home: a
        run in progress only delays the one it requests."""
        as_of = context.scheduled_execution_time.astimezone(dt.timezone.utc).date() - dt.timedelta(days=1)
        planned = learning_range(home_path, as_of, first_day=first_day)
        if planned.nothing_new:
            return dg.SkipReason(f"nothing new to learn up to {as_of}")
        return dg.RunRequest(
            run_key=f"learn-{planned.end}-{planned.start}", run_config=run_config(planned.end),
            tags=partition_range_tags(planned.start, planned.end),
        )

    return dg.Definitions(
        assets=assets, asset_checks=CHECKS, jobs=[job], schedules=[nightly_schedule],
        resources={"routing_home": routing_home, "io_manager": LakeIOManager(home=str(home_path)),
                   names.STEP_IO_MANAGER: dg.FilesystemIOManager()},
        executor=executor,
    )


def parallel_nightly_job(home: str, first_day: str) -> dg.JobDefinition:
    """The nightly job of ``home`` on Dagster's multiprocess executor (``max_concurrent`` from the
    run config): what `routing learn --workers N` runs. Module-level, with string arguments, so
    each step's process rebuilds the same job (:func:`dagster.build_reconstructable_job`)."""
    definitions = build_definitions(home, dt.date.fromisoformat(first_day), executor=dg.multiprocess_executor)
    return definitions.resolve_job_def(names.NIGHTLY_JOB)


defs = build_definitions()
