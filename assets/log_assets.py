"""The logs: inbox drops staged, decision and outcome logs into the lake by UTC day, and their
daily statistics."""

import datetime as dt
import warnings
from collections import Counter

import dagster as dg
from pydantic import Field

from routing_pipelines import logs, plan
from routing_pipelines.assets import names
from routing_pipelines.lake import QUARANTINE, Lake
from routing_pipelines.learning import statistics
from routing_pipelines.resources import RoutingHome, progress
from routing_runtime import safe_fs
from routing_runtime.faults import crashpoint

_SINGLE_RUN = dg.BackfillPolicy.single_run()
# A run covers every day not yet learned in one process; backfill policies are marked beta.
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*backfill_policy.*")
POOL = names.LEARNING_POOL


@dg.asset(name=names.INBOX, kinds={"parquet", "polars"}, group_name="logs", pool=POOL)
def inbox(context: dg.AssetExecutionContext, routing_home: RoutingHome) -> dg.MaterializeResult:
    """Every new drop in inbox/routing_decisions and inbox/model_performance, split by UTC day into
    lake/_staged, recorded in routing.db, then moved to inbox/<table>/ingested; drops whose staged
    rows were lost are staged again from there. Fails, naming the drop, when evidence is gone."""
    with routing_home.open_store() as db:
        reports = {table: logs.stage_inbox(routing_home.path, db, table) for table in logs.TABLES}
        missing = [problem for table in logs.TABLES for problem in logs.restage_missing(routing_home.path, db, table)]
    if missing:
        raise dg.Failure(description="evidence is missing: " + "; ".join(missing))
    for table, report in reports.items():
        if report.files:
            progress(context, f"{table}: staged {report.files} inbox files ({report.rows} rows, {report.quarantined} quarantined)")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": sum(r.rows for r in reports.values()),
        "staged": dg.MetadataValue.json({t: {"files": r.files, "rows": r.rows, "quarantined": r.quarantined,
                                             "reasons": dict(r.reasons.most_common())} for t, r in reports.items()}),
        "problems": dg.MetadataValue.json([p for r in reports.values() for p in r.problems] + safe_fs.drain_set_aside()),
    })


def daily_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """The daily-partitioned assets over ``partitions`` (they start where the home's evidence starts)."""

    def log_asset(table: str, rows: str) -> dg.AssetsDefinition:
        plan_op, ingest_op, summary_op = ingest_ops(table)

        @dg.graph_asset(
            name=table, partitions_def=partitions, backfill_policy=_SINGLE_RUN,
            ins={names.INBOX: dg.AssetIn(key=names.INBOX, dagster_type=dg.Nothing)},
            kinds={"sqlite", "parquet", "polars"}, group_name="logs",
            description=(
                f"Every {rows} of the day (from routing.db and staged inbox drops), validated, as Parquet in"
                f" lake/{table}/day=…; rows that fail validation go to lake/quarantine with a reason. The"
                " run's days are split into chunks (config `chunks`), each ingested by its own step."
            ),
        )
        def log(inbox):
            return summary_op(plan_op(inbox).map(ingest_op).collect())

        return log

    routing_decisions = log_asset(logs.DECISIONS, "routing decision")
    model_performance = log_asset(logs.PERFORMANCE, "reported outcome")

    @dg.asset(
        name=names.DAILY_MODEL_STATS, partitions_def=partitions, backfill_policy=_SINGLE_RUN, deps=[names.MODEL_PERFORMANCE],
        kinds={"parquet", "polars"}, group_name="learning", pool=POOL,
        check_specs=[dg.AssetCheckSpec(names.LOG_VALIDITY_CHECK, asset=names.DAILY_MODEL_STATS, description=(
            "Warns when a day of the run was held out of learning (more than half of its outcome rows"
            " quarantined) or above 5% of the run's outcome rows were quarantined. The rest is learned and"
            " published: one broken drop never blocks every later run."
        ))],
    )
    def daily_model_stats(context: dg.AssetExecutionContext, routing_home: RoutingHome) -> dg.MaterializeResult:
        """Additive sufficient statistics per (day, model, task type): outcome counts, Σq, Σq², log-latency
        and log-cost sums. Days add up, so the nightly run only computes new days."""
        lake = routing_home.lake
        cells = valid = invalid = 0
        held = []
        with routing_home.open_store() as db:
            build = plan.days_to_build(routing_home.path, db, context.partition_keys)
            max_share = db.registry().learning.max_quarantined_share
        for day, source in build:
            frame = lake.read_partition(logs.PERFORMANCE, day)
            frame = frame if frame is not None else logs.empty(logs.PERFORMANCE)
            bad = invalid_rows(lake, day)
            reason = held_reason(lake, day, frame.height, bad, accepted=bool(source and source["accepted"]), max_share=max_share)
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
            valid += frame.height
            invalid += bad
        share = invalid / (valid + invalid) if valid + invalid else 0.0
        check = dg.AssetCheckResult(
            check_name=names.LOG_VALIDITY_CHECK, passed=not held and share <= 0.05, severity=dg.AssetCheckSeverity.WARN,
            metadata={"valid_rows": valid, "quarantined_rows": invalid, "quarantined_share": round(share, 4),
                      "held_days": dg.MetadataValue.json(held)},
            description="; ".join(held) if held else (None if share <= 0.05 else f"{share:.1%} of outcome rows quarantined"),
        )
        return dg.MaterializeResult(
            metadata={"dagster/row_count": cells, "days": len(build), "held_days": dg.MetadataValue.json(held)},
            check_results=[check],
        )

    return [routing_decisions, model_performance, daily_model_stats]


class IngestChunks(dg.Config):
    """How many steps ingest the run's days of one table."""

    chunks: int = Field(default=1, ge=1, description=(
        "Split the run's days into at most this many chunks of consecutive days, each ingested by its own"
        " step (steps run at once on the multiprocess, k8s or celery executor). `routing learn --workers N`"
        " sets N."
    ))


def ingest_ops(table: str) -> tuple[dg.OpDefinition, dg.OpDefinition, dg.OpDefinition]:
    """The three ops of ``table``'s graph: plan the run's days into chunks, ingest one chunk (mapped:
    a step per chunk), sum the chunks into the asset's materialization. Days are independent (each
    writes only its own partitions), so chunks may run in any order or at once."""

    @dg.op(name=f"{table}_chunks", ins={"after": dg.In(dg.Nothing)}, pool=POOL,
           out=dg.DynamicOut(list, io_manager_key=names.STEP_IO_MANAGER))
    def plan_chunks(context: dg.OpExecutionContext, config: IngestChunks, routing_home: RoutingHome):
        """The days of the run that have evidence, as up to ``chunks`` runs of consecutive days."""
        with routing_home.open_store() as db:
            build = plan.days_to_build(routing_home.path, db, context.partition_keys)
        for index, chunk in enumerate(split(build, config.chunks)):
            yield dg.DynamicOutput([(str(day), source) for day, source in chunk], mapping_key=f"chunk_{index}")

    @dg.op(name=f"{table}_ingest", pool=POOL, out=dg.Out(dict, io_manager_key=names.STEP_IO_MANAGER))
    def ingest_chunk(context: dg.OpExecutionContext, routing_home: RoutingHome, days: list) -> dict:
        """Ingest each day of the chunk; its counts for the summary."""
        known = {m.id for m in routing_home.registry().models}
        rows = quarantined = 0
        reasons: Counter = Counter()
        per_day = []
        for day, source in days:
            batch = logs.ingest_day(routing_home.path, table, dt.date.fromisoformat(day), source, known)
            rows += batch.valid.height
            quarantined += batch.quarantined.height
            day_reasons = batch.reasons()
            reasons += day_reasons
            top = "; ".join(f"{r} ({n})" for r, n in day_reasons.most_common(3))
            per_day.append(f"| {day} | {batch.valid.height} | {batch.quarantined.height} | {top} |")
        return {"days": len(days), "rows": rows, "quarantined": quarantined, "reasons": dict(reasons),
                "per_day": per_day, "problems": safe_fs.drain_set_aside()}

    @dg.op(name=f"{table}_summary", pool=POOL, out=dg.Out(dg.Nothing))
    def summary(context: dg.OpExecutionContext, routing_home: RoutingHome, chunks: list) -> dg.Output:
        """The table's materialization over the run's days: what `routing learn` reads (row counts,
        quarantine reasons, problems) and what the UI shows."""
        reasons: Counter = Counter()
        for chunk in chunks:
            reasons += Counter(chunk["reasons"])
        rows, quarantined = sum(c["rows"] for c in chunks), sum(c["quarantined"] for c in chunks)
        per_day = sorted(line for c in chunks for line in c["per_day"])
        progress(context, f"{table}: {sum(c['days'] for c in chunks)} days with evidence in {len(chunks)} chunk(s),"
                          f" {rows} rows, {quarantined} quarantined")
        table_md = "| day | rows | quarantined | top reasons |\n|---|---|---|---|\n" + "\n".join(per_day[-31:])
        return dg.Output(None, metadata={
            "dagster/row_count": rows,
            "quarantined_rows": quarantined,
            "quarantine_reasons": dg.MetadataValue.json(dict(reasons.most_common())),
            "problems": dg.MetadataValue.json([p for c in chunks for p in c["problems"]] + safe_fs.drain_set_aside()),
            "days": dg.MetadataValue.md(table_md),
            "path": dg.MetadataValue.path(routing_home.lake.location(table)),
        })

    return plan_chunks, ingest_chunk, summary


def split(items: list, chunks: int) -> list[list]:
    """``items`` in at most ``chunks`` runs of consecutive items whose lengths differ by one at most
    (none empty; one empty chunk when there are no items, so the graph still has its steps)."""
    if not items:
        return [[]]
    count = min(chunks, len(items))
    size, longer = divmod(len(items), count)
    runs, start = [], 0
    for index in range(count):
        end = start + size + (index < longer)
        runs.append(items[start:end])
        start = end
    return runs


def invalid_rows(lake: Lake, day: dt.date) -> int:
    """The outcome rows of ``day`` that failed validation (duplicates of a valid row not counted)."""
    quarantined = lake.read_partition(logs.PERFORMANCE, day, QUARANTINE)
    if quarantined is None:
        return 0
    return logs.DayBatch(valid=quarantined.head(0), quarantined=quarantined).invalid_rows


def held_reason(lake: Lake, day: dt.date, valid_rows: int, invalid: int, *, accepted: bool, max_share: float) -> str | None:
    """Why ``day``'s outcomes are held out of learning (more than ``max_share`` of its rows failed
    validation: its logging is broken), or None. An accepted quarantine (``routing learn --accept-quarantine DAY``)
    learns the valid rows."""
    total = valid_rows + invalid
    if accepted or not total or invalid / total <= max_share:
        return None
    quarantined = lake.read_partition(logs.PERFORMANCE, day, QUARANTINE)
    batch = logs.DayBatch(valid=quarantined.head(0), quarantined=quarantined)
    top = "; ".join(f"{r} ({n})" for r, n in batch.reasons().most_common(2) if not r.startswith(logs.DUPLICATE_PREFIX))
    return (
        f"{invalid} of {total} outcome rows quarantined ({top}); fix the drop and drop it again"
        f" (rows with the same ids replace the bad ones), or `routing learn --accept-quarantine {day}`"
    )
