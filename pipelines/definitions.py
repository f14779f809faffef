"""Dagster Definitions: the nightly learning job, its 02:00 UTC schedule, the ROUTING_HOME resource."""


import datetime as dt
import os

import dagster as dg

from assets import names
from assets.ingest import daily_model_stats, log_validity, model_performance, routing_decisions
from assets.learning import (
    candidate_routing_rules, model_posteriors, model_routing_rules, policy_evaluation, posterior_sanity, rules_coverage,
    specialist_vs_generalist,
)
from assets.resources import RoutingHome
from pipelines.ingest import DECISIONS, FIRST_DAY, PERFORMANCE, pending_days, stage_inbox

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


def learning_range(routing_home: RoutingHome, as_of: dt.date) -> tuple[dt.date, dt.date]:
    """Days to ingest: from the day after the last learned one (on a new home, the first day with
    logs) to ``as_of``, reaching back to the earliest day that received late drops.

    Stages the inbox first (each drop once, idempotent) so that the days of dropped rows are known.
    """
    for table in (DECISIONS, PERFORMANCE):
        stage_inbox(routing_home.path, table)
    learned = routing_home.learned_through()
    start = learned + dt.timedelta(days=1) if learned is not None else _first_log_day(routing_home) or as_of
    late = [d for table in (DECISIONS, PERFORMANCE) for d in pending_days(routing_home.path, table) if d <= as_of]
    return max(min([start, as_of, *late]), FIRST_DAY.date()), as_of


def _first_log_day(routing_home: RoutingHome) -> dt.date | None:
    conn = routing_home.connect()
    try:
        first = conn.execute(
            "SELECT MIN(d) FROM (SELECT MIN(created_at) AS d FROM routing_decisions UNION ALL SELECT MIN(recorded_at) FROM model_performance)"
        ).fetchone()[0]
    finally:
        conn.close()
    return dt.date.fromisoformat(first[:10]) if first else None


def run_tags(start: dt.date, end: dt.date) -> dict[str, str]:
    return {names.RANGE_START_TAG: start.isoformat(), names.RANGE_END_TAG: end.isoformat(), names.AS_OF_TAG: end.isoformat()}


@dg.schedule(
    name=names.NIGHTLY_SCHEDULE, job=nightly_learning, cron_schedule="0 2 * * *", execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def nightly_schedule(context: dg.ScheduleEvaluationContext, routing_home: RoutingHome) -> dg.RunRequest:
    """At 02:00 UTC: learn from every day not yet learned, up to and including yesterday."""
    as_of = context.scheduled_execution_time.astimezone(dt.timezone.utc).date() - dt.timedelta(days=1)
    start, end = learning_range(routing_home, as_of)
    return dg.RunRequest(run_key=f"learn-{end}", tags=run_tags(start, end))


def build_definitions(home: str | os.PathLike | None = None) -> dg.Definitions:
    """Definitions for one ROUTING_HOME (default: $ROUTING_HOME, else ./.routing)."""
    from routing_runtime.home import resolve_home

    return dg.Definitions(
        assets=ASSETS, asset_checks=CHECKS, jobs=[nightly_learning], schedules=[nightly_schedule],
        resources={"routing_home": RoutingHome(home=str(resolve_home(home)))},
        executor=dg.in_process_executor,
    )


defs = build_definitions()
