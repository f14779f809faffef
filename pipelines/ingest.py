"""Logs in: rows of ``routing.db`` and files dropped in ``inbox/``, validated, by UTC day.

Pure functions over Polars frames; the Dagster assets call them. A drop file is *staged* once
(split by day into ``lake/_staged``, then moved to ``inbox/<table>/ingested``), so that a day
can be re-materialised any number of times with the same result.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipelines import lake
from routing_runtime.types import Outcome, RoutingPreference, TaskType

DECISIONS = "routing_decisions"
PERFORMANCE = "model_performance"
STAGED = "_staged"
#: The first day the daily partitions cover.
FIRST_DAY = dt.datetime(2020, 1, 1)

SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    DECISIONS: {
        "id": pl.String, "agent_execution_id": pl.String, "task_type": pl.String, "selected_model": pl.String,
        "selection_reason": pl.String, "alternatives_considered": pl.String, "created_at": pl.Datetime("us"),
        "preference": pl.String, "propensity": pl.Float64, "rule_set_version": pl.Int64, "excluded": pl.String,
    },
    PERFORMANCE: {
        "id": pl.String, "model_id": pl.String, "task_type": pl.String, "outcome": pl.String,
        "quality_score": pl.Float64, "latency_ms": pl.Float64, "tokens_used": pl.Int64, "cost_usd": pl.Float64,
        "recorded_at": pl.Datetime("us"), "decision_id": pl.String, "preference": pl.String,
    },
}
TIME_COLUMN = {DECISIONS: "created_at", PERFORMANCE: "recorded_at"}
_TASKS = [t.value for t in TaskType]
_OUTCOMES = [o.value for o in Outcome]
_PREFERENCES = [p.value for p in RoutingPreference]


@dataclass(frozen=True)
class DayBatch:
    """One table's rows of one day, split into valid rows and quarantined rows (with ``reason``)."""

    valid: pl.DataFrame
    quarantined: pl.DataFrame


def empty(table: str) -> pl.DataFrame:
    return pl.DataFrame(schema=SCHEMAS[table])


# ----------------------------------------------------------------------------- reading

def read_db_day(db: Path, table: str, day: dt.date) -> pl.DataFrame:
    """Rows of ``table`` in ``routing.db`` stamped on UTC ``day``."""
    columns = list(SCHEMAS[table])
    time_column = TIME_COLUMN[table]
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute(
            f"SELECT {', '.join(columns)} FROM {table} WHERE {time_column} >= ? AND {time_column} < ?",
            (day.isoformat(), (day + dt.timedelta(days=1)).isoformat()),
        ).fetchall()
    finally:
        conn.close()
    raw_schema = {c: (pl.String if c == time_column else t) for c, t in SCHEMAS[table].items()}
    frame = pl.DataFrame(rows, schema=raw_schema, orient="row")
    return frame.with_columns(_parse_time(pl.col(time_column)))


_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d")


def _parse_time(expr: pl.Expr) -> pl.Expr:
    """ISO-8601 text (naive = UTC, ``Z`` or an offset; ``T`` or a space; date only) to naive UTC
    microseconds, row by row whatever the other rows look like; bad text to null."""
    text = expr.str.strip_chars().str.replace("T", " ").str.replace(r"Z$", "+00:00")
    parsed = [text.str.to_datetime(f, strict=False, time_unit="us", time_zone="UTC") for f in _TIME_FORMATS]
    return pl.coalesce(parsed).dt.replace_time_zone(None)


def read_drop(path: Path, table: str, source_id: str | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A dropped ``*.parquet`` or ``*.jsonl`` file as (rows in the table's schema, quarantined rows).

    Values that do not convert to the column's type, malformed JSON lines and unreadable files
    are quarantined with a reason; the good rows around them are kept. Rows without an ``id`` get
    ``<source_id>-<row>`` (default: a digest of the file's content).
    """
    schema = SCHEMAS[table]
    bad: list[dict] = []
    if path.suffix == ".parquet":
        try:
            raw = pl.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is quarantined whole
            return empty(table), _quarantine_rows([{"raw": path.name}], f"unreadable parquet file: {exc}")
    else:
        records = []
        with path.open(encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    if not isinstance(record, dict):
                        raise ValueError("not a JSON object")
                except ValueError as exc:
                    bad.append({"raw": f"{path.name}:{number}: {line.strip()[:500]}", "reason": f"malformed JSON line: {exc}"})
                    continue
                records.append({k: (None if v is None else v if isinstance(v, str) else json.dumps(v)) for k, v in record.items()})
        raw = pl.DataFrame(records, infer_schema_length=None) if records else pl.DataFrame()
        raw = raw.with_columns(pl.all().cast(pl.String)) if raw.width else raw

    if "decision_id" in raw.columns and table == DECISIONS and "id" not in raw.columns:
        raw = raw.rename({"decision_id": "id"})
    if "id" not in raw.columns:
        # Drops from other hosts may carry no row id: derive a stable one from content and row.
        digest = source_id or hashlib.sha1(path.read_bytes()).hexdigest()[:16]
        raw = raw.with_row_index("_row").with_columns((pl.lit(digest + "-") + pl.col("_row").cast(pl.String)).alias("id")).drop("_row")
    raw = raw.with_row_index("_row")

    converted, failures = [], []
    for column, dtype in schema.items():
        source = pl.col(column) if column in raw.columns else pl.lit(None)
        if column == TIME_COLUMN[table]:
            value = _parse_time(source.cast(pl.String)) if column in raw.columns and raw.schema[column] == pl.String else source.cast(dtype, strict=False)
        else:
            value = source.cast(dtype, strict=False)
        converted.append(value.alias(column))
        if column in raw.columns:
            failures.append(pl.when(source.is_not_null() & value.is_null()).then(pl.lit(f"{column}: cannot convert to {dtype}")))
    frame = raw.select(pl.col("_row"), *converted, pl.coalesce(failures).alias("reason") if failures else pl.lit(None, pl.String).alias("reason"))
    bad_rows = frame.filter(pl.col("reason").is_not_null())
    quarantined = bad_rows.select(pl.format("{}:{}", pl.lit(path.name), pl.col("_row")).alias("raw"), "reason")
    if bad:
        quarantined = pl.concat([quarantined, pl.DataFrame(bad, schema={"raw": pl.String, "reason": pl.String})])
    return frame.filter(pl.col("reason").is_null()).drop("_row", "reason"), quarantined


def _quarantine_rows(rows: list[dict], reason: str) -> pl.DataFrame:
    return pl.DataFrame([{**r, "reason": reason} for r in rows], schema={"raw": pl.String, "reason": pl.String})


def stage_inbox(home: Path, table: str) -> dict[str, int]:
    """Stage every new drop of ``table``: split its rows by day into ``lake/_staged``, quarantine
    what cannot be read or dated, then move the file to ``inbox/<table>/ingested``.

    Returns counts: files, rows staged, rows quarantined. Safe to repeat after a crash: staged
    file names derive from the drop's name and content.
    """
    inbox = home / "inbox" / table
    done = inbox / "ingested"
    counts = {"files": 0, "rows": 0, "quarantined": 0}
    if not inbox.is_dir():
        return counts
    lake_root = home / "lake"
    time_column = TIME_COLUMN[table]
    # Hidden files are uploads in progress: writers drop `.name.tmp` and rename it into place.
    drops = sorted(p for p in inbox.iterdir() if p.is_file() and p.suffix in (".parquet", ".jsonl") and not p.name.startswith("."))
    for path in drops:
        digest = hashlib.sha1(path.read_bytes()).hexdigest()[:16]
        stem = f"{path.stem}-{digest}"
        rows, quarantined = read_drop(path, table, digest)
        in_range = pl.col(time_column).is_between(FIRST_DAY, dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(days=1))
        undated = rows.filter(~in_range.fill_null(False))
        if undated.height:
            reason = f"{time_column}: missing, unparseable, before {FIRST_DAY:%Y-%m-%d} or in the future"
            quarantined = pl.concat([quarantined, undated.select(pl.col("id").alias("raw"), pl.lit(reason).alias("reason"))])
        rows = rows.filter(in_range.fill_null(False))
        for (day,), part in rows.with_columns(pl.col(time_column).dt.date().alias("_day")).partition_by("_day", as_dict=True).items():
            lake.write_file(lake_root / STAGED / table / f"day={day}" / f"{stem}.parquet", part.drop("_day"), fast=True)
        if quarantined.height:
            lake.write_file(lake_root / lake.QUARANTINE / table / "undated" / f"{stem}.parquet", quarantined)
        done.mkdir(exist_ok=True)
        os.replace(path, done / f"{stem}{path.suffix}")
        counts["files"] += 1
        counts["rows"] += rows.height
        counts["quarantined"] += quarantined.height
    return counts


def read_staged_day(home: Path, table: str, day: dt.date) -> pl.DataFrame:
    staged = lake.read_partition(home / "lake" / STAGED, table, day)
    return staged.cast(SCHEMAS[table]) if staged is not None else empty(table)


def pending_days(home: Path, table: str) -> list[dt.date]:
    """Days with staged drops that their lake partition does not include yet (new or late data)."""
    root = home / "lake" / STAGED / table
    pending = []
    for staged in sorted(root.glob("day=*")) if root.is_dir() else []:
        ingested = lake.partition_dir(home / "lake", table, staged.name[4:])
        newest = max((f.stat().st_mtime_ns for f in staged.glob("*.parquet")), default=0)
        if not ingested.exists() or ingested.stat().st_mtime_ns < newest:
            pending.append(dt.date.fromisoformat(staged.name[4:]))
    return pending


# ----------------------------------------------------------------------------- validation

def validate(frame: pl.DataFrame, table: str, known_models: set[str]) -> DayBatch:
    """Split rows into valid and quarantined (first failed rule as ``reason``); duplicate ids
    keep their first row."""
    frame = frame.unique(subset="id", keep="first", maintain_order=True)
    finite_nonneg = lambda c: pl.col(c).is_not_null() & (~pl.col(c).is_finite() | (pl.col(c) < 0))  # noqa: E731
    models = sorted(known_models)
    if table == PERFORMANCE:
        rules = [
            (pl.col("id").is_null(), "id: missing"),
            (pl.col("recorded_at").is_null(), "recorded_at: missing or unparseable timestamp"),
            (~pl.col("task_type").is_in(_TASKS) | pl.col("task_type").is_null(), "task_type: unknown task type"),
            (~pl.col("model_id").is_in(models) | pl.col("model_id").is_null(), "model_id: not a registered model"),
            (~pl.col("outcome").is_in(_OUTCOMES) | pl.col("outcome").is_null(), "outcome: not success, partial or failure"),
            (pl.col("quality_score").is_not_null() & ~pl.col("quality_score").is_between(0.0, 1.0), "quality_score: outside [0, 1]"),
            (finite_nonneg("latency_ms"), "latency_ms: negative or not finite"),
            (pl.col("tokens_used").is_not_null() & (pl.col("tokens_used") < 0), "tokens_used: negative"),
            (finite_nonneg("cost_usd"), "cost_usd: negative or not finite"),
            (pl.col("preference").is_not_null() & ~pl.col("preference").is_in(_PREFERENCES), "preference: unknown preference"),
        ]
    else:
        rules = [
            (pl.col("id").is_null(), "id: missing"),
            (pl.col("created_at").is_null(), "created_at: missing or unparseable timestamp"),
            (~pl.col("task_type").is_in(_TASKS) | pl.col("task_type").is_null(), "task_type: unknown task type"),
            (~pl.col("selected_model").is_in(models) | pl.col("selected_model").is_null(), "selected_model: not a registered model"),
            (pl.col("preference").is_not_null() & ~pl.col("preference").is_in(_PREFERENCES), "preference: unknown preference"),
            (pl.col("propensity").is_not_null() & ~pl.col("propensity").is_between(0.0, 1.0, closed="right"), "propensity: outside (0, 1]"),
        ]
    reason = pl.when(rules[0][0]).then(pl.lit(rules[0][1]))
    for condition, text in rules[1:]:
        reason = reason.when(condition).then(pl.lit(text))
    checked = frame.with_columns(reason.otherwise(None).alias("reason"))
    return DayBatch(
        valid=checked.filter(pl.col("reason").is_null()).drop("reason"),
        quarantined=checked.filter(pl.col("reason").is_not_null()),
    )


def ingest_day(home: Path, table: str, day: dt.date, known_models: set[str]) -> DayBatch:
    """Materialise one day of ``table``: database rows plus staged drops, validated, written to
    ``lake/<table>/day=…`` and ``lake/quarantine/<table>/day=…``. Idempotent."""
    db_rows = read_db_day(home / "routing.db", table, day)
    frame = pl.concat([db_rows, read_staged_day(home, table, day)], how="vertical_relaxed")
    batch = validate(frame, table, known_models)
    lake_root = home / "lake"
    lake.write_partition(lake_root, table, day, batch.valid)
    lake.write_partition(lake_root / lake.QUARANTINE, table, day, batch.quarantined)
    return batch
