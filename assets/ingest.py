"""Daily-partitioned ingest: decision and outcome logs into the lake, and their statistics."""


import datetime as dt
import warnings

import dagster as dg

from assets import names
from assets.resources import RoutingHome, progress, run_partition_keys
from pipelines import ingest, lake, statistics

DAILY = dg.DailyPartitionsDefinition(start_date=ingest.FIRST_DAY, end_offset=1, timezone="UTC")
_SINGLE_RUN = dg.BackfillPolicy.single_run()
# A run covers every day not yet learned in one process; backfill policies are marked beta.
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*backfill_policy.*")


def _ingest(context: dg.AssetExecutionContext, routing_home: RoutingHome, table: str) -> dg.MaterializeResult:
    staged = ingest.stage_inbox(routing_home.path, table)
    if staged["files"]:
        progress(context, f"{table}: staged {staged['files']} inbox files ({staged['rows']} rows, {staged['quarantined']} quarantined)")
    known = {m.id for m in routing_home.registry().models}
    rows = quarantined = 0
    per_day = []
    for key in context.partition_keys:
        batch = ingest.ingest_day(routing_home.path, table, dt.date.fromisoformat(key), known)
        rows += batch.valid.height
        quarantined += batch.quarantined.height
        reasons = batch.quarantined["reason"].value_counts(sort=True).head(3).rows() if batch.quarantined.height else []
        per_day.append(f"| {key} | {batch.valid.height} | {batch.quarantined.height} | {'; '.join(f'{r} ({n})' for r, n in reasons)} |")
    progress(context, f"{table}: {len(context.partition_keys)} days, {rows} rows, {quarantined} quarantined")
    table_md = "| day | rows | quarantined | top reasons |\n|---|---|---|---|\n" + "\n".join(per_day[-31:])
    return dg.MaterializeResult(metadata={
        "dagster/row_count": rows,
        "quarantined_rows": quarantined,
        "inbox_files_staged": staged["files"],
        "days": dg.MetadataValue.md(table_md),
        "path": dg.MetadataValue.path(str(routing_home.lake / table)),
    })


@dg.asset(
    name=names.ROUTING_DECISIONS, partitions_def=DAILY, backfill_policy=_SINGLE_RUN, kinds={"sqlite", "parquet", "polars"},
    group_name="logs",
)
def routing_decisions(context: dg.AssetExecutionContext, routing_home: RoutingHome) -> dg.MaterializeResult:
    """Every routing decision of the day (from routing.db and inbox drops), validated, as Parquet
    in lake/routing_decisions/day=…; rows that fail validation go to lake/quarantine with a reason."""
    return _ingest(context, routing_home, ingest.DECISIONS)


@dg.asset(
    name=names.MODEL_PERFORMANCE, partitions_def=DAILY, backfill_policy=_SINGLE_RUN, kinds={"sqlite", "parquet", "polars"},
    group_name="logs",
)
def model_performance(context: dg.AssetExecutionContext, routing_home: RoutingHome) -> dg.MaterializeResult:
    """Every reported outcome of the day (from routing.db and inbox drops), validated, as Parquet
    in lake/model_performance/day=…; rows that fail validation go to lake/quarantine with a reason."""
    return _ingest(context, routing_home, ingest.PERFORMANCE)


@dg.asset(
    name=names.DAILY_MODEL_STATS, partitions_def=DAILY, backfill_policy=_SINGLE_RUN, deps=[names.MODEL_PERFORMANCE],
    kinds={"parquet", "polars"}, group_name="learning",
)
def daily_model_stats(context: dg.AssetExecutionContext, routing_home: RoutingHome) -> dg.MaterializeResult:
    """Additive sufficient statistics per (day, model, task type): outcome counts, Σq, Σq², log-latency
    and log-cost sums. Days add up, so the nightly run only computes new days."""
    cells = 0
    for key in context.partition_keys:
        frame = lake.read_partition(routing_home.lake, ingest.PERFORMANCE, key)
        stats = statistics.daily_stats(frame if frame is not None else ingest.empty(ingest.PERFORMANCE))
        lake.write_partition(routing_home.lake, names.DAILY_MODEL_STATS, key, stats)
        cells += stats.height
    return dg.MaterializeResult(metadata={"dagster/row_count": cells, "days": len(context.partition_keys)})


@dg.asset_check(asset=names.MODEL_PERFORMANCE, name=names.LOG_VALIDITY_CHECK, blocking=True)
def log_validity(context: dg.AssetCheckExecutionContext, routing_home: RoutingHome) -> dg.AssetCheckResult:
    """Fails (and blocks learning) when more than half of the run's outcome rows were quarantined;
    warns above 5%."""
    valid = quarantined = 0
    for key in run_partition_keys(context):
        good = lake.read_partition(routing_home.lake, ingest.PERFORMANCE, key)
        bad = lake.read_partition(routing_home.lake / lake.QUARANTINE, ingest.PERFORMANCE, key)
        valid += good.height if good is not None else 0
        quarantined += bad.height if bad is not None else 0
    share = quarantined / (valid + quarantined) if valid + quarantined else 0.0
    return dg.AssetCheckResult(
        passed=share <= 0.5,
        severity=dg.AssetCheckSeverity.ERROR if share > 0.5 else dg.AssetCheckSeverity.WARN,
        metadata={"valid_rows": valid, "quarantined_rows": quarantined, "quarantined_share": round(share, 4)},
        description=None if share <= 0.05 else f"{share:.1%} of outcome rows quarantined",
    )
