"""Dagster Definitions: the nightly learning job, its 02:00 UTC schedule, the ROUTING_HOME resource."""


import datetime as dt
import os

import dagster as dg

from routing_pipelines.assets import names
from routing_pipelines.assets.log_assets import daily_model_stats, log_validity, model_performance, routing_decisions
from routing_pipelines.assets.learning_assets import (
    candidate_routing_rules, model_posteriors, model_routing_rules, policy_evaluation, posterior_sanity, rules_coverage,
    specialist_vs_generalist,
)
from routing_pipelines.resources import RoutingHome
from routing_pipelines.logs import TABLES, restage_missing, stage_inbox
from routing_pipelines.plan import LearningPlan, plan_run

ASSETS = [
    routing_decisions, model_performance, daily_model_stats, model_posteriors, specialist_vs_generalist,
    candidate_routing_rules, policy_evaluation, model_routing_rules,
]
CHECKS = [log_validity, posterior_sanity, rules_coverage]

# One process, steps in order: on a 2-core machine a process per step costs seconds for
# steps that take milliseconds.
nightly_learning = dg.define_asset_job(
    names.NIGHTLY_JOB, selection=dg.AssetSelection.assets(*ASSETS), executor_def=dg.in_process_executor,
    description="Ingest the logs of every day not yet learned, update posteriors, publish new routing rules.",
)


def learning_range(routing_home: RoutingHome, as_of: dt.date, *, explicit: bool = False) -> LearningPlan:
    """The next run's days (see :func:`routing_pipelines.plan.plan_run`). Stages the inbox first (each
    drop once, idempotent) so that the days of dropped rows are known."""
    db = routing_home.open_store()
    try:
        problems = []
        for table in TABLES:
            problems += stage_inbox(routing_home.path, db, table).problems
            problems += restage_missing(routing_home.path, db, table)
        result = plan_run(routing_home.path, db, as_of, db.learned_through(), explicit=explicit)
    finally:
        db.close()
    result.problems = problems + result.problems
    return result


def run_tags(start: dt.date, end: dt.date) -> dict[str, str]:
    return {names.RANGE_START_TAG: start.isoformat(), names.RANGE_END_TAG: end.isoformat(), names.AS_OF_TAG: end.isoformat()}


@dg.schedule(
    name=names.NIGHTLY_SCHEDULE, job=nightly_learning, cron_schedule="0 2 * * *", execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def nightly_schedule(context: dg.ScheduleEvaluationContext, routing_home: RoutingHome) -> dg.RunRequest | dg.SkipReason:
    """At 02:00 UTC: learn from every day not yet learned, up to and including yesterday."""
    as_of = context.scheduled_execution_time.astimezone(dt.timezone.utc).date() - dt.timedelta(days=1)
    planned = learning_range(routing_home, as_of)
    if planned.nothing_new:
        return dg.SkipReason(f"nothing new to learn up to {as_of}")
    return dg.RunRequest(run_key=f"learn-{planned.end}-{planned.start}", tags=run_tags(planned.start, planned.end))


def build_definitions(home: str | os.PathLike | None = None) -> dg.Definitions:
    """Definitions for one ROUTING_HOME (default: $ROUTING_HOME, else ./.routing)."""
    from routing_runtime.home import resolve_home

    return dg.Definitions(
        assets=ASSETS, asset_checks=CHECKS, jobs=[nightly_learning], schedules=[nightly_schedule],
        resources={"routing_home": RoutingHome(home=str(resolve_home(home)))},
        executor=dg.in_process_executor,
    )


defs = build_definitions()
