"""Logs in: rows of ``routing.db`` and files dropped in ``inbox/``, validated, by UTC day.

Pure functions over Polars frames; the Dagster assets call them. A drop file is *staged* once
(split by day into ``lake/_staged``, recorded in ``routing.db``'s ``inbox_drops``, then moved to
``inbox/<table>/ingested``), so that a day can be re-materialised any number of times with the
same result, and a lost staged file can be staged again from the ingested drop.

Every lake partition carries the *fingerprint* of what it was built from (database rows of the
day, staged drops, accepted quarantine); a day whose fingerprint changed, or whose partition is
missing, is built again by the next run whatever interrupted the previous one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from routing_pipelines.lake import QUARANTINE, STAGED, Lake
from routing_runtime import safe_fs
from routing_runtime.faults import crashpoint
from routing_runtime.hub import INBOX, Hub
from routing_runtime.store import DB_NAME, LOG_COLUMNS, TIME_COLUMN, Store
from routing_runtime.types import OUTCOME_LIMITS, Outcome, RoutingPreference, TaskType

DECISIONS = "routing_decisions"
PERFORMANCE = "model_performance"
TABLES = (DECISIONS, PERFORMANCE)
#: The first day the daily partitions cover.
FIRST_DAY = dt.datetime(2020, 1, 1)
DROP_SUFFIXES = (".parquet", ".jsonl")
#: Larger drops are set aside unread (reading one costs about 15 times its size in memory).
MAX_DROP_BYTES = 256 << 20
#: Quarantine reasons that say a row was counted once, not that it was wrong.
DUPLICATE_PREFIX = "duplicate: "

#: Each log column's Polars type, by the kind ``routing_runtime.store.LOG_COLUMNS`` gives it (the
#: one list of the columns learning reads and ``routing sync`` ships).
_KIND_TYPES: dict[str, pl.DataType] = {
    "text": pl.String, "real": pl.Float64, "integer": pl.Int64, "timestamp": pl.Datetime("us"),
}
SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    table: {column: _KIND_TYPES[kind] for column, kind in columns} for table, columns in LOG_COLUMNS.items()
}
QUARANTINE_SCHEMA = {"raw": pl.String, "reason": pl.String}
_TASKS = [t.value for t in TaskType]
_OUTCOMES = [o.value for o in Outcome]
_PREFERENCES = [p.value for p in RoutingPreference]


@dataclass(frozen=True)
class DayBatch:
    """One table's rows of one day, split into valid rows and quarantined rows (with ``reason``)."""

    valid: pl.DataFrame
    quarantined: pl.DataFrame

    def reasons(self) -> Counter:
        if not self.quarantined.height:
            return Counter()
        return Counter(dict(self.quarantined["reason"].value_counts().rows()))

    @property
    def invalid_rows(self) -> int:
        """Quarantined for being wrong (duplicates, counted once, are not wrong)."""
        if not self.quarantined.height:
            return 0
        return int((~self.quarantined["reason"].str.starts_with(DUPLICATE_PREFIX)).sum())


def empty(table: str) -> pl.DataFrame:
    return pl.DataFrame(schema=SCHEMAS[table])


# ----------------------------------------------------------------------------- reading

def read_db_day(db: Path, table: str, day: dt.date) -> pl.DataFrame:
    """Rows of ``table`` in ``routing.db`` stamped on UTC ``day``."""
    time_column = TIME_COLUMN[table]
    with Store.open(db, read_only=True) as store:
        rows = store.log_rows(table, day, list(SCHEMAS[table]))
    raw_schema = {c: (pl.String if c == time_column else t) for c, t in SCHEMAS[table].items()}
    frame = pl.DataFrame(rows, schema=raw_schema, orient="row")
    return frame.with_columns(_parse_time(pl.col(time_column)))


def db_day_counts(store: Store, table: str, days: tuple[dt.date, dt.date] | None = None) -> dict[dt.date, int]:
    """Rows of ``table`` in ``routing.db`` per UTC day, for all days or the ``days`` range
    (first, last), read through the timestamp index."""
    counts = {}
    for day, n in store.log_day_counts(table, days).items():
        try:
            counts[dt.date.fromisoformat(day)] = n
        except (TypeError, ValueError):
            continue  # an undatable row: validation quarantines it when its day is read
    return counts


_TIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M%:z", "%Y-%m-%d %H:%M%z", "%Y-%m-%d %H:%M", "%Y-%m-%d",
)


def _parse_time(expr: pl.Expr) -> pl.Expr:
    """ISO-8601 text (naive = UTC, ``Z`` or an offset; ``T`` or a space, either case; with or
    without seconds; date only) to naive UTC microseconds, row by row whatever the other rows
    look like; bad text to null."""
    text = expr.str.strip_chars().str.to_uppercase().str.replace("T", " ").str.replace(r"Z$", "+00:00")
    parsed = [text.str.to_datetime(f, strict=False, time_unit="us", time_zone="UTC") for f in _TIME_FORMATS]
    return pl.coalesce(parsed).dt.replace_time_zone(None)


def read_drop(content: bytes, name: str, table: str, source_id: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A dropped ``*.parquet`` or ``*.jsonl`` file's bytes as (rows in the table's schema,
    quarantined rows).

    Values that do not convert to the column's type, malformed JSON lines and unreadable files
    are quarantined with a reason; the good rows around them are kept. A UTF-8 byte-order mark
    is accepted. Rows without an ``id`` get ``<source_id>-<row>`` (a digest of the content).
    """
    schema = SCHEMAS[table]
    label = safe_fs.display_name(name)
    bad: list[dict] = []
    if name.lower().endswith(".parquet"):
        try:
            raw = pl.read_parquet(io.BytesIO(content))
        except Exception as exc:  # noqa: BLE001 - any unreadable file is quarantined whole
            return empty(table), _quarantine_rows([{"raw": label}], f"unreadable parquet file: {exc}"[:500])
    else:
        records = []
        text = content.decode("utf-8-sig", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                bad.append({"raw": f"{label}:{number}: {line.strip()[:500]}", "reason": f"malformed JSON line: {str(exc)[:200]}"})
                continue
            records.append({k: (None if v is None else v if isinstance(v, str) else json.dumps(v)) for k, v in record.items()})
        raw = pl.DataFrame(records, infer_schema_length=None) if records else pl.DataFrame()
        raw = raw.with_columns(pl.all().cast(pl.String)) if raw.width else raw

    if "decision_id" in raw.columns and table == DECISIONS and "id" not in raw.columns:
        raw = raw.rename({"decision_id": "id"})
    if "id" not in raw.columns:
        # Drops from other hosts may carry no row id: derive a stable one from content and row.
        raw = raw.with_row_index("_row").with_columns((pl.lit(source_id + "-") + pl.col("_row").cast(pl.String)).alias("id")).drop("_row")
    raw = raw.with_row_index("_row")

    converted, failures = [], []
    for column, dtype in schema.items():
        source = pl.col(column) if column in raw.columns else pl.lit(None)
        if column == TIME_COLUMN[table]:
            is_text = column in raw.columns and raw.schema[column] == pl.String
            value = _parse_time(source.cast(pl.String)) if is_text else source.cast(dtype, strict=False)
        else:
            value = source.cast(dtype, strict=False)
        converted.append(value.alias(column))
        if column in raw.columns:
            failures.append(pl.when(source.is_not_null() & value.is_null()).then(pl.lit(f"{column}: cannot convert to {dtype}")))
    reason = pl.coalesce(failures) if failures else pl.lit(None, pl.String)
    frame = raw.select(pl.col("_row"), *converted, reason.alias("reason"))
    bad_rows = frame.filter(pl.col("reason").is_not_null())
    quarantined = bad_rows.select(pl.format("{}:{}", pl.lit(label), pl.col("_row")).alias("raw"), "reason")
    if bad:
        quarantined = pl.concat([quarantined, pl.DataFrame(bad, schema=QUARANTINE_SCHEMA)])
    return frame.filter(pl.col("reason").is_null()).drop("_row", "reason"), quarantined


def _quarantine_rows(rows: list[dict], reason: str) -> pl.DataFrame:
    return pl.DataFrame([{**r, "reason": reason} for r in rows], schema=QUARANTINE_SCHEMA)


# ----------------------------------------------------------------------------- staging

@dataclass
class StagingReport:
    """What one pass over an inbox folder did."""

    files: int = 0
    rows: int = 0
    quarantined: int = 0
    reasons: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


def _undated_reason(table: str) -> str:
    return f"{TIME_COLUMN[table]}: missing, unparseable, before {FIRST_DAY:%Y-%m-%d} or in the future"


def _split_drop(content: bytes, name: str, table: str, digest: str) -> tuple[dict[dt.date, pl.DataFrame], pl.DataFrame]:
    """A drop's rows by UTC day, and its quarantined rows (unreadable, unconvertible, undated)."""
    time_column = TIME_COLUMN[table]
    try:
        rows, quarantined = read_drop(content, name, table, digest)
    except Exception as exc:  # noqa: BLE001 - a drop nobody can read is quarantined whole, never a wedge
        message = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        return {}, _quarantine_rows([{"raw": safe_fs.display_name(name)}], f"unreadable drop ({message})")
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    in_range = pl.col(time_column).is_between(FIRST_DAY, now + dt.timedelta(days=1)).fill_null(False)
    undated = rows.filter(~in_range)
    if undated.height:
        quarantined = pl.concat([quarantined, undated.select(pl.col("id").alias("raw"), pl.lit(_undated_reason(table)).alias("reason"))])
    rows = rows.filter(in_range)
    by_day = {
        day: part.drop("_day")
        for (day,), part in rows.with_columns(pl.col(time_column).dt.date().alias("_day")).partition_by("_day", as_dict=True).items()
    }
    return by_day, quarantined


def _write_staged(lake: Lake, table: str, stem: str, by_day: dict[dt.date, pl.DataFrame], quarantined: pl.DataFrame) -> None:
    for day, part in by_day.items():
        lake.write_staged(table, day, stem, part)
    if quarantined.height:
        lake.write_undated_quarantine(table, stem, quarantined)


def stage_inbox(home: Path, store: Store, table: str) -> StagingReport:
    """Stage every new drop of ``table``: split its rows by day into ``lake/_staged``, quarantine
    what cannot be read or dated, record it in ``inbox_drops``, then move the file to
    ``inbox/<table>/ingested``.

    Safe to repeat after a kill at any point: staged names derive from the drop's name and
    content, and a drop already recorded is only moved. Links are set aside, never read; files
    that are not ``*.parquet``/``*.jsonl`` are left where they are and reported.
    """
    report = StagingReport()
    inbox = safe_fs.ensure_dir(home, "inbox", table)
    done = safe_fs.ensure_dir(home, "inbox", table, "ingested")
    lake = Lake(home)
    for name in safe_fs.special_entries(inbox, skip=("ingested",)):
        report.problems.append(f"inbox/{table}/{safe_fs.display_name(name)}: not a regular file (a folder, pipe or device), left in place")
    for path in safe_fs.list_files(home, inbox):
        label = f"inbox/{table}/{safe_fs.display_name(path.name)}"
        if not path.name.lower().endswith(DROP_SUFFIXES):
            report.problems.append(f"{label}: not a *.parquet or *.jsonl drop, left in place")
            continue
        try:
            if path.lstat().st_size > MAX_DROP_BYTES:
                safe_fs.set_aside(home, path, f"larger than {MAX_DROP_BYTES >> 20} MiB: split it into smaller drops")
                continue
            content = safe_fs.read_bytes(path, single_link=True)
        except safe_fs.UnsafePathError as exc:
            safe_fs.set_aside(home, path, str(exc))
            continue
        except OSError as exc:
            report.problems.append(f"{label}: cannot be read ({exc.strerror or exc}), left in place")
            continue
        digest = hashlib.sha1(content).hexdigest()[:16]
        suffix = ".parquet" if path.name.lower().endswith(".parquet") else ".jsonl"
        stem = f"{safe_fs.safe_name(path.name[: -len(suffix)], 120)}-{digest}"
        ingested_name = f"{stem}{suffix}"
        if not store.has_inbox_drop(stem):
            by_day, quarantined = _split_drop(content, path.name, table, digest)
            _write_staged(lake, table, stem, by_day, quarantined)
            crashpoint("stage:after_staged_files")
            reasons = Counter(dict(quarantined["reason"].value_counts().rows())) if quarantined.height else Counter()
            rows = sum(part.height for part in by_day.values())
            store.record_inbox_drop(
                stem=stem, table=table, original_name=safe_fs.display_name(path.name), ingested_name=ingested_name,
                days=[str(d) for d in by_day], rows=rows, quarantined=quarantined.height, reasons=reasons,
            )
            report.files += 1
            report.rows += rows
            report.quarantined += quarantined.height
            report.reasons += reasons
            crashpoint("stage:before_move")
        elif safe_fs.is_regular_file(done / ingested_name):
            report.problems.append(f"{label}: the same name and content as a drop ingested before, counted once")
        os.replace(path, done / ingested_name)
        os.chmod(done / ingested_name, safe_fs.file_mode(home))
    hub = _hub(store)
    if hub is not None:
        _stage_segments(hub, store, lake, table, report)
    return report


# What a staged segment's ``ingested_name`` starts with: it stays on the hub, where it is read again
# if its staged rows are lost.
HUB_SOURCE = "hub:"


def _hub(store: Store) -> tuple[Hub, str] | None:
    """The hub this home learns from and its own host id (its own segments are its database's
    rows, ingested from there), or None for a home of its own."""
    tie = store.hub_tie()
    return (Hub.parse(tie[0]), tie[1]) if tie else None


def _new_segments(hub: tuple[Hub, str], store: Store, table: str) -> list[tuple[str, str]]:
    """(hub key, stem) of every segment of ``table`` the hosts shipped that is not staged yet.

    A segment's name says which rows it holds and is never reused for other rows (hosts plan a
    segment before they ship it), so a segment shipped twice is staged once, by name, without
    reading it again."""
    client, own_host = hub
    found = []
    for obj in client.list(INBOX):
        parts = obj.key.split("/")
        if len(parts) != 4 or parts[2] != table or not parts[3].endswith(".parquet") or parts[1] == own_host:
            continue
        # The table is in the stem: stems are unique across tables, and hosts may name a
        # decisions segment and an outcomes segment alike.
        stem = f"hub-{safe_fs.safe_name(parts[1], 90)}-{table}-{safe_fs.safe_name(parts[3][: -len('.parquet')], 90)}"
        if not store.has_inbox_drop(stem):
            found.append((obj.key, stem))
    return found


def _stage_segments(hub: tuple[Hub, str], store: Store, lake: Lake, table: str, report: StagingReport) -> None:
    """Stage every new segment of ``table`` on the hub, as :func:`stage_inbox` does a drop.

    A fleet ships many small segments, and on an object store each costs its round trips, not
    its bytes: they go eight at a time, fetched and staged in threads (the S3 client releases
    the GIL), each recorded only once its staged files are written."""
    from concurrent.futures import ThreadPoolExecutor

    segments = _new_segments(hub, store, table)
    with ThreadPoolExecutor(max_workers=_AHEAD) as pool:
        for start in range(0, len(segments), _AHEAD):
            batch = segments[start:start + _AHEAD]
            contents = list(pool.map(lambda segment: hub[0].get(segment[0]), batch))
            split = [_split_drop(content, key, table, hashlib.sha1(content).hexdigest()[:16])
                     for (key, _stem), content in zip(batch, contents)]
            list(pool.map(lambda item: _write_staged(lake, table, item[0][1], *item[1]), zip(batch, split)))
            crashpoint("stage:after_staged_segment")
            for (key, stem), (by_day, quarantined) in zip(batch, split):
                reasons = Counter(dict(quarantined["reason"].value_counts().rows())) if quarantined.height else Counter()
                rows = sum(part.height for part in by_day.values())
                store.record_inbox_drop(
                    stem=stem, table=table, original_name=key, ingested_name=HUB_SOURCE + key,
                    days=[str(d) for d in by_day], rows=rows, quarantined=quarantined.height, reasons=reasons,
                )
                report.files += 1
                report.rows += rows
                report.quarantined += quarantined.height
                report.reasons += reasons


#: Segments fetched and staged at once.
_AHEAD = 8


def _drop_content(home: Path, store: Store, table: str, ingested_name: str) -> bytes:
    """A recorded drop's bytes, from ``inbox/<table>/ingested`` or, for a segment, the hub.
    :class:`FileNotFoundError` (an :class:`OSError`) when it is gone."""
    if ingested_name.startswith(HUB_SOURCE):
        hub = _hub(store)
        if hub is None:
            raise FileNotFoundError(f"{ingested_name}: the home is no longer tied to a hub")
        return hub[0].get(ingested_name[len(HUB_SOURCE):])
    return safe_fs.read_bytes(home / "inbox" / table / "ingested" / ingested_name)


def pending_days(home: Path) -> set[dt.date]:
    """The UTC days of the rows in drops still waiting in the inbox, read without staging or
    moving anything (the schedule plans a run with it; the run's first step stages them).
    Unreadable, linked or oversized drops add no day: staging reports them."""
    days: set[dt.date] = set()
    # No inbox, or a link in its place: staging sets it aside, nothing is read through it.
    local_inbox = home / "inbox" in safe_fs.list_dirs(home, "inbox")
    for table in TABLES if local_inbox else ():
        for path in safe_fs.list_files(home, home / "inbox" / table, DROP_SUFFIXES, set_aside_links=False):
            try:
                if path.lstat().st_size > MAX_DROP_BYTES:
                    continue
                content = safe_fs.read_bytes(path, single_link=True)
            except OSError:
                continue
            days |= drop_days(content, path.name, table)
    with Store.open_home(home, read_only=True, needed_by="learning") as store:
        hub = _hub(store)
        if hub is not None:
            for table in TABLES:
                for key, _stem in _new_segments(hub, store, table):
                    days |= drop_days(hub[0].get(key), key, table)
    return days


def drop_days(content: bytes, name: str, table: str) -> set[dt.date]:
    """The UTC days a drop has rows on, as staging will split it; of a Parquet drop only the
    time column is read (planning should not cost a second full read of every drop)."""
    time_column = TIME_COLUMN[table]
    if name.lower().endswith(".parquet"):
        try:
            times = pl.read_parquet(io.BytesIO(content), columns=[time_column]).to_series()
        except Exception:  # noqa: BLE001 - unreadable or without a time column: staging quarantines it
            return set()
        parsed = _parse_time(pl.col(time_column).cast(pl.String)) if times.dtype == pl.String else pl.col(time_column)
        frame = pl.DataFrame({time_column: times}).select(parsed.cast(SCHEMAS[table][time_column], strict=False))
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        in_range = pl.col(time_column).is_between(FIRST_DAY, now + dt.timedelta(days=1)).fill_null(False)
        return set(frame.filter(in_range)[time_column].dt.date().unique().to_list())
    by_day, _ = _split_drop(content, name, table, "pending")
    return set(by_day)


def restage_missing(home: Path, store: Store, table: str) -> list[str]:
    """Stage again, from ``inbox/<table>/ingested``, every recorded drop whose staged files are
    gone (a deleted lake). Returns problems: drops whose evidence cannot be found anywhere."""
    lake = Lake(home)
    problems = []
    for stem, _table, original, ingested_name, days in store.inbox_drops(table):
        missing = _days_not_staged(lake, table, stem, days)
        if not missing:
            continue
        try:
            content = _drop_content(home, store, table, ingested_name)
        except OSError:
            problems.append(
                f"inbox drop {original!r} ({table}) is missing: its rows for {', '.join(missing)} are neither in"
                f" lake/{STAGED} nor in inbox/{table}/ingested/{ingested_name}; restore the file there, or run"
                f" `routing learn --forget-missing` to learn without it"
            )
            continue
        by_day, quarantined = _split_drop(content, original, table, stem.rsplit("-", 1)[-1])
        _write_staged(lake, table, stem, by_day, quarantined)
    return problems


def forget_missing(home: Path, store: Store) -> list[str]:
    """Drop the records of staged drops whose evidence is gone everywhere (an operator's choice)."""
    forgotten = []
    for table in TABLES:
        for problem, stem in _missing_drops(home, store, table):
            store.forget_inbox_drop(stem)
            forgotten.append(problem)
    return forgotten


def _missing_drops(home: Path, store: Store, table: str) -> list[tuple[str, str]]:
    lake = Lake(home)
    missing = []
    for stem, _table, original, ingested_name, days in store.inbox_drops(table):
        if _days_not_staged(lake, table, stem, days) and not _drop_exists(home, store, table, ingested_name):
            missing.append((f"forgot inbox drop {original!r} ({table}): its evidence was lost", stem))
    return missing


def _drop_exists(home: Path, store: Store, table: str, ingested_name: str) -> bool:
    try:
        _drop_content(home, store, table, ingested_name)
    except OSError:
        return False
    return True


def _days_not_staged(lake: Lake, table: str, stem: str, days: list[str]) -> list[str]:
    """The days of a recorded drop (``inbox_drops.days``) whose staged file is gone."""
    return [d for d in days if not lake.has_staged(table, d, stem)]


def read_staged_day(lake: Lake, table: str, day: dt.date, stems: list[str]) -> pl.DataFrame:
    """The staged rows of ``day`` from exactly the drops ``stems`` (what the fingerprint says)."""
    try:
        staged = lake.read_staged(table, day, stems)
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"staged rows of {table} for {day} are missing ({exc}): run `routing learn` again to stage them"
            " from inbox/<table>/ingested"
        ) from None
    return staged.cast(SCHEMAS[table]) if staged is not None else empty(table)


# ----------------------------------------------------------------------------- what is stale

def source_fingerprints(store: Store, days: tuple[dt.date, dt.date] | None = None) -> dict[dt.date, dict]:
    """Per UTC day with evidence (all, or those of the ``days`` range): database rows per table,
    the staged drops per table, and whether its quarantine was accepted. A partition built from
    these is up to date."""
    result: dict[dt.date, dict] = {}

    def entry(day: dt.date) -> dict:
        return result.setdefault(day, {t: {"db": 0, "drops": []} for t in TABLES} | {"accepted": False})

    for table in TABLES:
        for day, n in db_day_counts(store, table, days).items():
            entry(day)[table]["db"] = n
    for drop in store.inbox_drops():
        for day in map(dt.date.fromisoformat, drop.days):
            if days is None or days[0] <= day <= days[1]:
                entry(day)[drop.table_name]["drops"].append(drop.stem)
    for day in store.accepted_quarantine_days():
        if dt.date.fromisoformat(day) in result:
            result[dt.date.fromisoformat(day)]["accepted"] = True
    return result


def fingerprint_text(fingerprint: dict) -> str:
    return json.dumps(fingerprint, sort_keys=True)


# ----------------------------------------------------------------------------- validation

def validate(frame: pl.DataFrame, table: str, known_models: set[str]) -> DayBatch:
    """Split rows into valid and quarantined (first failed rule as ``reason``).

    Rows sharing an ``id`` count once: a valid row is kept over invalid ones (a re-dropped, fixed
    file replaces the bad rows), the others are quarantined as duplicates. Outcomes sharing a
    ``decision_id`` count once too: the first recorded is kept.
    """
    out_of_range = lambda c: pl.col(c).is_not_null() & (~pl.col(c).is_finite() | ~pl.col(c).is_between(0, OUTCOME_LIMITS[c]))  # noqa: E731
    models = sorted(known_models)
    if table == PERFORMANCE:
        rules = [
            (pl.col("id").is_null(), "id: missing"),
            (pl.col("recorded_at").is_null(), "recorded_at: missing or unparseable timestamp"),
            (~pl.col("task_type").is_in(_TASKS) | pl.col("task_type").is_null(), "task_type: unknown task type"),
            (~pl.col("model_id").is_in(models) | pl.col("model_id").is_null(), "model_id: not a registered model"),
            (~pl.col("outcome").is_in(_OUTCOMES) | pl.col("outcome").is_null(), "outcome: not success, partial or failure"),
            (pl.col("quality_score").is_not_null() & ~pl.col("quality_score").is_between(0.0, 1.0), "quality_score: outside [0, 1]"),
            (out_of_range("latency_ms"), f"latency_ms: negative, not finite or above {OUTCOME_LIMITS['latency_ms']:g}"),
            (pl.col("tokens_used").is_not_null() & ~pl.col("tokens_used").is_between(0, OUTCOME_LIMITS["tokens_used"]),
             f"tokens_used: negative or above {OUTCOME_LIMITS['tokens_used']:g}"),
            (out_of_range("cost_usd"), f"cost_usd: negative, not finite or above {OUTCOME_LIMITS['cost_usd']:g}"),
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
    checked = frame.with_row_index("_row").with_columns(reason.otherwise(None).alias("reason"))
    # Valid rows first within an id, then arrival order: the kept row of each id is the first valid one.
    checked = checked.sort(pl.col("reason").is_not_null(), "_row")
    first = pl.col("id").is_null() | pl.col("id").is_first_distinct()
    checked = checked.with_columns(
        pl.when(first).then(pl.col("reason"))
        .otherwise(pl.lit(DUPLICATE_PREFIX + "id seen in an earlier row, counted once")).alias("reason")
    )
    if table == PERFORMANCE:
        valid = pl.col("reason").is_null()
        checked = checked.sort(~valid, "recorded_at", "_row", nulls_last=True).with_columns(
            pl.when(valid & pl.col("decision_id").is_not_null() & ~pl.col("decision_id").is_first_distinct().over(valid))
            .then(pl.lit(DUPLICATE_PREFIX + "another outcome of this decision came first, counted once"))
            .otherwise(pl.col("reason")).alias("reason")
        )
    checked = checked.sort("_row").drop("_row")
    return DayBatch(
        valid=checked.filter(pl.col("reason").is_null()).drop("reason"),
        quarantined=checked.filter(pl.col("reason").is_not_null()),
    )


def table_fingerprint(source: dict | None, table: str) -> str:
    """What a partition of ``table`` for a day with ``source`` inputs (an entry of
    :func:`source_fingerprints`, None for no evidence) records as built from."""
    if source is None:
        source = {t: {"db": 0, "drops": []} for t in TABLES} | {"accepted": False}
    return fingerprint_text({"source": source[table], "accepted": source["accepted"]})


def ingest_day(home: Path, table: str, day: dt.date, source: dict | None, known_models: set[str]) -> DayBatch:
    """Materialise one day of ``table``: database rows plus the staged drops ``source`` names,
    validated, written to ``lake/<table>/day=…`` and ``lake/quarantine/<table>/day=…``.
    Idempotent; the quarantine is written first, so a partition that records its inputs has
    its quarantine beside it."""
    lake = Lake(home)
    db_rows = read_db_day(home / DB_NAME, table, day)
    staged = read_staged_day(lake, table, day, source[table]["drops"] if source else [])
    frame = pl.concat([db_rows, staged], how="vertical_relaxed")
    batch = validate(frame, table, known_models)
    lake.write_partition(table, day, batch.quarantined, QUARANTINE)
    crashpoint(f"ingest:{table}:between_quarantine_and_rows")
    lake.write_partition(table, day, batch.valid, built_from=table_fingerprint(source, table))
    return batch
