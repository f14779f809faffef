"""Daily-partitioned ingest: decision and outcome logs into the lake, and their statistics."""


import datetime as dt
import json
import warnings
from collections import Counter

import dagster as dg

from routing_pipelines.assets import names
from routing_pipelines.resources import RoutingHome, progress, run_partition_keys
from routing_pipelines import logs, plan
from routing_pipelines.learning import statistics
from routing_pipelines.lake import QUARANTINE, Lake
from routing_runtime import safe_fs
from routing_runtime.faults import crashpoint

DAILY = dg.DailyPartitionsDefinition(start_date=logs.FIRST_DAY, end_offset=1, timezone="UTC")
_SINGLE_RUN = dg.BackfillPolicy.single_run()
# A run covers every day not yet learned in one process; backfill policies are marked beta.
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*backfill_policy.*")


def _ingest(context: dg.AssetExecutionContext, routing_home: RoutingHome, table: str) -> dg.MaterializeResult:
    conn = routing_home.connect()
    try:
        staged = logs.stage_inbox(routing_home.path, conn, table)
        missing = logs.restage_missing(routing_home.path, conn, table)
        if missing:
            raise dg.Failure(description="evidence is missing: " + "; ".join(missing))
        build = plan.days_to_build(routing_home.path, conn, context.partition_keys)
    finally:
        conn.close()
    if staged.files:
        progress(context, f"{table}: staged {staged.files} inbox files ({staged.rows} rows, {staged.quarantined} quarantined)")
    known = {m.id for m in routing_home.registry().models}
    rows = quarantined = 0
    reasons = Counter(staged.reasons)
    per_day = []
    for day, source in build:
        batch = logs.ingest_day(routing_home.path, table, day, source, known)
        rows += batch.valid.height
        quarantined += batch.quarantined.height
        day_reasons = batch.reasons()
        reasons += day_reasons
        top = "; ".join(f"{r} ({n})" for r, n in day_reasons.most_common(3))
        per_day.append(f"| {day} | {batch.valid.height} | {batch.quarantined.height} | {top} |")
    progress(context, f"{table}: {len(build)} days with evidence, {rows} rows, {quarantined + staged.quarantined} quarantined")
    table_md = "| day | rows | quarantined | top reasons |\n|---|---|---|---|\n" + "\n".join(per_day[-31:])
    return dg.MaterializeResult(metadata={
        "dagster/row_count": rows,
        "quarantined_rows": quarantined + staged.quarantined,
        "quarantine_reasons": dg.MetadataValue.json(dict(reasons.most_common())),
        "inbox_files_staged": staged.files,
        "problems": dg.MetadataValue.json(staged.problems + safe_fs.drain_set_aside()),
        "days": dg.MetadataValue.md(table_md),
        "path": dg.MetadataValue.path(str(Lake(routing_home.path).table_dir(table))),
    })


@dg.asset(
    name=names.ROUTING_DECISIONS, partitions_def=DAILY, backfill_policy=_SINGLE_RUN, kinds={"sqlite", "parquet", "polars"},
    group_name="logs",
)
def routing_decisions(context: dg.AssetExecutionContext, routing_home: RoutingHome) -> dg.MaterializeResult:
    """Every routing decision of the day (from routing.db and inbox drops), validated, as Parquet
    in lake/routing_decisions/day=…; rows that fail validation go to lake/quarantine with a reason."""
    return _ingest(context, routing_home, logs.DECISIONS)


@dg.asset(
    name=names.MODEL_PERFORMANCE, partitions_def=DAILY, backfill_policy=_SINGLE_RUN, kinds={"sqlite", "parquet", "polars"},
    group_name="logs",
)
def model_performance(context: dg.AssetExecutionContext, routing_home: RoutingHome) -> dg.MaterializeResult:
    """Every reported outcome of the day (from routing.db and inbox drops), validated, as Parquet
    in lake/model_performance/day=…; rows that fail validation go to lake/quarantine with a reason."""
    return _ingest(context, routing_home, logs.PERFORMANCE)


@dg.asset(
    name=names.DAILY_MODEL_STATS, partitions_def=DAILY, backfill_policy=_SINGLE_RUN, deps=[names.MODEL_PERFORMANCE],
    kinds={"parquet", "polars"}, group_name="learning",
)
def daily_model_stats(context: dg.AssetExecutionContext, routing_home: RoutingHome) -> dg.MaterializeResult:
    """Additive sufficient statistics per (day, model, task type): outcome counts, Σq, Σq², log-latency
    and log-cost sums. Days add up, so the nightly run only computes new days."""
    lake = Lake(routing_home.path)
    cells = 0
    held = []
    conn = routing_home.connect()
    try:
        build = plan.days_to_build(routing_home.path, conn, context.partition_keys)
    finally:
        conn.close()
    max_share = routing_home.registry().learning.max_quarantined_share
    for day, source in build:
        frame = lake.read_partition(logs.PERFORMANCE, day)
        frame = frame if frame is not None else logs.empty(logs.PERFORMANCE)
        reason = held_reason(lake, day, frame.height, accepted=bool(source and source["accepted"]), max_share=max_share)
        stats = statistics.daily_stats(frame.head(0) if reason else frame)
        lake.write_partition(
            names.DAILY_MODEL_STATS, day, stats,
            built_from=plan.stats_fingerprint(lake.built_from(logs.PERFORMANCE, day), reason),
        )
        crashpoint("stats:after_day")
        if reason:
            held.append(f"{day}: {reason}")
            progress(context, f"held {day} out of learning: {reason}")
        cells += stats.height
    return dg.MaterializeResult(metadata={
        "dagster/row_count": cells, "days": len(build), "held_days": dg.MetadataValue.json(held),
    })


def held_reason(lake: Lake, day: dt.date, valid_rows: int, *, accepted: bool, max_share: float) -> str | None:
    """Why ``day``'s outcomes are held out of learning (more than ``max_share`` of its rows failed
    validation: its logging is broken), or None. An accepted quarantine (``routing learn --accept-quarantine DAY``)
    learns the valid rows."""
    quarantined = lake.read_partition(logs.PERFORMANCE, day, QUARANTINE)
    if quarantined is None or accepted:
        return None
    batch = logs.DayBatch(valid=quarantined.head(0), quarantined=quarantined)
    invalid = batch.invalid_rows
    total = valid_rows + invalid
    if not total or invalid / total <= max_share:
        return None
    top = "; ".join(f"{r} ({n})" for r, n in batch.reasons().most_common(2) if not r.startswith(logs.DUPLICATE_PREFIX))
    return (
        f"{invalid} of {total} outcome rows quarantined ({top}); fix the drop and drop it again"
        f" (rows with the same ids replace the bad ones), or `routing learn --accept-quarantine {day}`"
    )


@dg.asset_check(asset=names.DAILY_MODEL_STATS, name=names.LOG_VALIDITY_CHECK)
def log_validity(context: dg.AssetCheckExecutionContext, routing_home: RoutingHome) -> dg.AssetCheckResult:
    """Warns when a day of the run was held out of learning (more than half of its outcome rows
    quarantined) or above 5% of the run's outcome rows were quarantined. The rest is learned and
    published: one broken drop never blocks every later run."""
    lake = Lake(routing_home.path)
    valid = invalid = 0
    held = []
    for key in run_partition_keys(context):
        built = lake.built_from(names.DAILY_MODEL_STATS, key)
        if built is None:
            continue
        good = lake.read_partition(logs.PERFORMANCE, key)
        bad = lake.read_partition(logs.PERFORMANCE, key, QUARANTINE)
        valid += good.height if good is not None else 0
        invalid += logs.DayBatch(valid=bad.head(0), quarantined=bad).invalid_rows if bad is not None else 0
        if reason := json.loads(built).get("held"):
            held.append(f"{key}: {reason}")
    share = invalid / (valid + invalid) if valid + invalid else 0.0
    return dg.AssetCheckResult(
        passed=not held and share <= 0.05,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"valid_rows": valid, "quarantined_rows": invalid, "quarantined_share": round(share, 4),
                  "held_days": dg.MetadataValue.json(held)},
        description="; ".join(held) if held else (None if share <= 0.05 else f"{share:.1%} of outcome rows quarantined"),
    )
