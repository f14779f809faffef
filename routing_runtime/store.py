"""``routing.db``: the one place that holds SQL for a home.

:class:`Store` owns a home's database: opening it (read-write or read-only, the schema check,
versioned migrations) and one method per thing the product stores or asks: decisions and
outcomes (the router), rule sets (publishing, loading, the publication marker), the registry,
settings (the learned frontier, the last learn, the Dagster instance's PostgreSQL), the learning
ledger (inbox drops, learned days, accepted quarantine), the rows of a day for ingest, what
``routing sync`` shipped to the hub and the rule sets it took from there, and what
``routing status`` shows. Nothing outside this module imports ``sqlite3`` or writes SQL, so
another store (a hub) replaces one module.

Schema version 1 is the user's story as written (three tables); version 2 adds what the
design needs; 3 to 5 add the excluded models, the learning ledger and the hub's segments.
``migrate`` brings any older database up to date in place without losing rows.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import time
from collections import namedtuple
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone

from routing_runtime import safe_fs
from routing_runtime.compiled_rules import (
    CODE_VERSION, STORED_RULE_FIELDS, RuleSet, UnusableRuleSet, check_usable, parse_rule_set, registry_order,
    skipped_note, with_registry,
)
from routing_runtime.home import DB_NAME, NotInitialisedError
from routing_runtime.rules import RuleRow

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from pathlib import Path

    from routing_runtime.registry import ModelRegistry

__all__ = ["DB_NAME", "LOG_COLUMNS", "SCHEMA_VERSION", "HubSegment", "Store", "StoreError", "utc_timestamp"]

BUSY_TIMEOUT_MS = 10_000
#: What a failed database operation raises (locked past the busy timeout, a corrupt or unreadable
#: file): callers catch this name, never the database module's.
StoreError = sqlite3.Error

_STORY_SCHEMA = """
CREATE TABLE model_routing_rules (
    id TEXT PRIMARY KEY,
    task_type TEXT NOT NULL,
    model_id TEXT NOT NULL,
    priority INTEGER NOT NULL,
    is_specialized INTEGER DEFAULT 0,
    min_quality_score REAL,
    max_cost_per_1k REAL,
    is_enabled INTEGER DEFAULT 1
);
CREATE TABLE routing_decisions (
    id TEXT PRIMARY KEY,
    agent_execution_id TEXT NOT NULL,
    task_type TEXT NOT NULL,
    selected_model TEXT NOT NULL,
    selection_reason TEXT,
    alternatives_considered TEXT,
    created_at DATETIME DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE model_performance (
    id TEXT PRIMARY KEY,
    model_id TEXT NOT NULL,
    task_type TEXT NOT NULL,
    outcome TEXT NOT NULL,
    quality_score REAL,
    latency_ms INTEGER,
    tokens_used INTEGER,
    cost_usd REAL,
    recorded_at DATETIME DEFAULT CURRENT_TIMESTAMP
);
"""

_DESIGN_SCHEMA = """
CREATE TABLE models (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    specialized_for TEXT NOT NULL,          -- JSON array of task types
    input_cost_per_1k REAL NOT NULL,
    output_cost_per_1k REAL NOT NULL,
    prior_quality REAL NOT NULL,
    off_specialty_prior_quality REAL,
    typical_latency_ms REAL NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    updated_at TEXT NOT NULL
);
CREATE TABLE task_policies (
    task_type TEXT PRIMARY KEY,
    min_quality_score REAL NOT NULL,
    max_cost_per_1k REAL,
    typical_input_tokens INTEGER NOT NULL,
    typical_output_tokens INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE rule_sets (
    version INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    as_of TEXT,                              -- last UTC day of evidence, NULL for registry rules
    source TEXT NOT NULL,                    -- 'registry', 'learned' or 'legacy'
    inputs TEXT NOT NULL,                    -- JSON: days, row counts, registry, settings
    code_version TEXT NOT NULL
);
ALTER TABLE model_routing_rules ADD COLUMN rule_set_version INTEGER REFERENCES rule_sets(version);
ALTER TABLE model_routing_rules ADD COLUMN preference TEXT;
ALTER TABLE model_routing_rules ADD COLUMN is_eligible INTEGER NOT NULL DEFAULT 1;
ALTER TABLE model_routing_rules ADD COLUMN selection_probability REAL;
ALTER TABLE model_routing_rules ADD COLUMN expected_quality REAL;
ALTER TABLE model_routing_rules ADD COLUMN expected_cost_usd REAL;
ALTER TABLE model_routing_rules ADD COLUMN expected_latency_ms REAL;
ALTER TABLE model_routing_rules ADD COLUMN expected_cost_per_1k REAL;
CREATE INDEX model_routing_rules_by_version ON model_routing_rules (rule_set_version, task_type, preference, priority);

ALTER TABLE routing_decisions ADD COLUMN preference TEXT;
ALTER TABLE routing_decisions ADD COLUMN propensity REAL;
ALTER TABLE routing_decisions ADD COLUMN rule_set_version INTEGER;
CREATE INDEX routing_decisions_by_created_at ON routing_decisions (created_at);

ALTER TABLE model_performance ADD COLUMN decision_id TEXT REFERENCES routing_decisions(id);
ALTER TABLE model_performance ADD COLUMN preference TEXT;
CREATE INDEX model_performance_by_recorded_at ON model_performance (recorded_at);
CREATE INDEX model_performance_by_decision ON model_performance (decision_id);

-- Rules of a database created before rule-set versions become a 'legacy' set, kept, never served.
INSERT INTO rule_sets (version, created_at, as_of, source, inputs, code_version)
    SELECT 0, strftime('%Y-%m-%d %H:%M:%f', 'now'), NULL, 'legacy', '{"migrated_from_schema": 1}', 'schema-1'
    WHERE EXISTS (SELECT 1 FROM model_routing_rules);
UPDATE model_routing_rules SET rule_set_version = 0 WHERE rule_set_version IS NULL;

CREATE VIEW current_routing_rules AS
    SELECT * FROM model_routing_rules
    WHERE rule_set_version = (SELECT MAX(version) FROM rule_sets WHERE source != 'legacy');
"""

# Fallback decisions (made with `exclude`) come from a conditional policy: off-policy evaluation
# must know which ones they were.
_EXCLUDED_COLUMN = """
ALTER TABLE routing_decisions ADD COLUMN excluded TEXT;  -- JSON array of excluded model ids, NULL if none
"""

# What learning needs to never drop evidence silently and to finish what an interrupted run began:
# every staged inbox drop, and what each day's lake partitions were last built from.
_LEARNING_LEDGER = """
CREATE TABLE inbox_drops (
    stem TEXT PRIMARY KEY,                   -- staged name: the drop's safe name and content digest
    table_name TEXT NOT NULL,
    original_name TEXT NOT NULL,
    ingested_name TEXT NOT NULL,             -- its name in inbox/<table>/ingested/
    days TEXT NOT NULL,                      -- JSON array of the UTC days it has rows on
    rows INTEGER NOT NULL,
    quarantined INTEGER NOT NULL,            -- rows quarantined while staging (unreadable, undated)
    reasons TEXT NOT NULL,                   -- JSON {reason: rows}
    staged_at TEXT NOT NULL
);
CREATE TABLE learned_days (
    day TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,               -- JSON: database rows per table, staged drops, acceptance
    decisions_quarantined INTEGER NOT NULL,
    performance_quarantined INTEGER NOT NULL,
    held TEXT,                               -- why the day's outcomes are held out of learning, NULL if not
    learned_at TEXT NOT NULL
);
CREATE TABLE accepted_quarantine (
    day TEXT PRIMARY KEY,
    accepted_at TEXT NOT NULL
);
"""

# What `routing sync` shipped to the hub: a segment is planned here (in its own transaction) before
# its rows are uploaded, and marked once the hub holds it, so a sync killed anywhere in between
# uploads the same rows under the same name again (at-least-once delivery, exactly-once effect).
_HUB_SEGMENTS = """
CREATE TABLE hub_segments (
    table_name TEXT NOT NULL,
    name TEXT NOT NULL,                      -- <first rowid>-<last rowid>, zero-padded: its name in the hub inbox
    first_rowid INTEGER NOT NULL,
    last_rowid INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    planned_at TEXT NOT NULL,
    shipped_at TEXT,                         -- NULL until the hub holds it
    PRIMARY KEY (table_name, name)
);
-- A sync every second makes a segment a second: each sync reads the last one and the unshipped ones by index.
CREATE INDEX hub_segments_by_last_rowid ON hub_segments (table_name, last_rowid);
CREATE INDEX hub_segments_unshipped ON hub_segments (table_name, first_rowid) WHERE shipped_at IS NULL;
"""

#: Migration ``i`` brings a database from user_version ``i`` to ``i + 1``.
MIGRATIONS: tuple[str, ...] = (_STORY_SCHEMA, _DESIGN_SCHEMA, _EXCLUDED_COLUMN, _LEARNING_LEDGER, _HUB_SEGMENTS)
SCHEMA_VERSION = len(MIGRATIONS)


#: Keys of the ``settings`` table the learning run writes.
LEARNED_THROUGH = "learned_through"
LAST_LEARN = "last_learn"
#: Keys ``routing init --hub`` writes: the hub's URL and this home's name on it.
HUB_URL = "hub_url"
HOST_ID = "host_id"
#: Set when a rule set was imported from the hub: from then on the home's versions are the hub's.
HUB_RULE_SET = "hub_rule_set_version"
#: Key of the ``settings`` table ``routing init --dagster-postgres`` writes: the Dagster instance's
#: PostgreSQL URL (absent: the instance keeps SQLite under the home's dagster_home/).
DAGSTER_POSTGRES_URL = "dagster_postgres_url"
#: The log tables and the column that dates their rows.
TIME_COLUMN = {"routing_decisions": "created_at", "model_performance": "recorded_at"}
#: The columns of each log table that learning reads and ``routing sync`` ships, in order, with the
#: kind of value: ``text``, ``real``, ``integer`` or ``timestamp`` (stored ISO text, see
#: :func:`utc_timestamp`). ``routing_pipelines.logs.SCHEMAS`` gives each its Polars type.
LOG_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "routing_decisions": (
        ("id", "text"), ("agent_execution_id", "text"), ("task_type", "text"), ("selected_model", "text"),
        ("selection_reason", "text"), ("alternatives_considered", "text"), ("created_at", "timestamp"),
        ("preference", "text"), ("propensity", "real"), ("rule_set_version", "integer"), ("excluded", "text"),
    ),
    "model_performance": (
        ("id", "text"), ("model_id", "text"), ("task_type", "text"), ("outcome", "text"),
        ("quality_score", "real"), ("latency_ms", "real"), ("tokens_used", "integer"), ("cost_usd", "real"),
        ("recorded_at", "timestamp"), ("decision_id", "text"), ("preference", "text"),
    ),
}
#: Versions far above any real count (a poisoned row near 2**63) are stepped over, not added to.
_VERSION_CEILING = 2**62

# The router's hot path: prepared once, executed per call.
_INSERT_DECISION = (
    "INSERT INTO routing_decisions (id, agent_execution_id, task_type, selected_model, selection_reason,"
    " alternatives_considered, created_at, preference, propensity, rule_set_version, excluded)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_OUTCOME = (
    "INSERT INTO model_performance (id, model_id, task_type, outcome, quality_score, latency_ms,"
    " tokens_used, cost_usd, recorded_at, decision_id, preference) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
#: The common case of an outcome in one statement (one commit): the decision's first outcome, when
#: the decision exists and is not marked as a provider error. No row inserted: the caller takes
#: the checked path, which says what is wrong (or finds the same outcome already recorded).
_INSERT_FIRST_OUTCOME = (
    "INSERT INTO model_performance (id, model_id, task_type, outcome, quality_score, latency_ms,"
    " tokens_used, cost_usd, recorded_at, decision_id, preference)"
    " SELECT ?, selected_model, task_type, ?, ?, ?, ?, ?, ?, id, preference FROM routing_decisions"
    " WHERE id = ? AND instr(COALESCE(selection_reason, ''), ?) = 0"
    " AND NOT EXISTS (SELECT 1 FROM model_performance WHERE decision_id = ?)"
)
_SELECT_DECISION = (
    "SELECT agent_execution_id, task_type, preference, selected_model, excluded, selection_reason"
    " FROM routing_decisions WHERE id = ?"
)
_SELECT_FIRST_OUTCOME = (
    "SELECT id, outcome, quality_score, latency_ms, tokens_used, cost_usd FROM model_performance"
    " WHERE decision_id = ? ORDER BY rowid LIMIT 1"
)
_PUBLISHED_MARKER = "SELECT COUNT(*), MAX(version) FROM rule_sets WHERE version < ?"
_PUBLISHED_VERSIONS = "SELECT version FROM rule_sets WHERE source != 'legacy' ORDER BY version DESC"
_UPSERT_SETTING = "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"


class StoredDecision(namedtuple(
    "StoredDecision", "agent_execution_id task_type preference selected_model excluded selection_reason",
)):
    """A recorded decision as stored (``excluded`` is JSON text or None)."""

    __slots__ = ()


class StoredOutcome(namedtuple("StoredOutcome", "id outcome quality_score latency_ms tokens_used cost_usd")):
    """The first outcome recorded for a decision, as stored."""

    __slots__ = ()


class HubSegment(namedtuple("HubSegment", "table name first_rowid last_rowid rows")):
    """A planned segment of ``table``'s rows for the hub: rowids ``first_rowid``..``last_rowid``
    (``rows`` of them), shipped as ``name``."""

    __slots__ = ()


class InboxDrop(namedtuple("InboxDrop", "stem table_name original_name ingested_name days")):
    """A staged inbox drop of the ledger: its staged ``stem``, table, names and UTC ``days`` (ISO text)."""

    __slots__ = ()


class LearnedDay(namedtuple(
    "LearnedDay", "day fingerprint decisions_quarantined performance_quarantined held",
)):
    """A day the published rules were built from: what its partitions were built from, its
    quarantine counts, and why its outcomes were held out of learning (None if not)."""

    __slots__ = ()


def utc_timestamp(at: datetime | None = None) -> str:
    """A UTC timestamp as stored: ``YYYY-MM-DD HH:MM:SS.ffffff`` (sorts as text, SQLite-compatible).

    ``at`` may be naive (taken as UTC) or aware (converted); anything else raises ValueError.
    """
    if at is None:
        at = datetime.now(timezone.utc)
    elif not isinstance(at, datetime):
        raise ValueError(f"at={at!r} must be a datetime (UTC)")
    elif at.tzinfo is not None:
        at = at.astimezone(timezone.utc)
    return at.replace(tzinfo=None).isoformat(" ", "microseconds")


class Store:
    """One home's ``routing.db``: every read and write of it, each a method named for what it does.

    Safe to share between threads of one process (callers serialise, as the router does with
    its lock); many processes may open the same file. Multi-statement writes run in
    :meth:`transaction`; each method alone is atomic.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._execute = conn.execute  # bound once: the router's hot path skips an attribute lookup

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: str | os.PathLike, *, read_only: bool = False) -> Store:
        """Open (read-write: create) the database file at ``path``, with no schema check: for
        ``routing init`` (which migrates it), ``routing status`` (which reports any version) and
        reads of a database already checked; everything else uses :meth:`open_home`."""
        from pathlib import Path  # here, not at import: keeps `import routing_runtime` cheap

        return cls(_connect_readonly(path) if read_only else connect(path), Path(path))

    @classmethod
    def open_home(cls, home: Path, *, read_only: bool = False, needed_by: str = "this router") -> Store:
        """Open the initialised ``home``'s database at the current schema.

        Raises :class:`NotInitialisedError` naming ``routing init`` when there is no database,
        or when its schema is not the one ``needed_by`` (who is asking, for the message) uses.
        A read-write open refuses a link in place of the database (SQLite would write through it).
        """
        path = home / DB_NAME
        if not path.exists():
            raise NotInitialisedError(f"{home} is not initialised: run `routing init --home {home}`")
        if not read_only:
            safe_fs.refuse_linked_database(home, DB_NAME)
        store = cls.open(path, read_only=read_only)
        version = store.schema_version()
        if version != SCHEMA_VERSION:
            store.close()
            raise NotInitialisedError(
                f"{path} has schema version {version}, {needed_by} needs {SCHEMA_VERSION}:"
                f" run `routing init --home {home}` to upgrade it"
            )
        return store

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def schema_version(self) -> int:
        return self._conn.execute("PRAGMA user_version").fetchone()[0]

    def migrate(self, target: int = SCHEMA_VERSION) -> int:
        """Bring the schema up to ``target`` (see :func:`migrate`); returns the version reached."""
        return migrate(self._conn, target)

    def transaction(self) -> transaction:
        """``with store.transaction():`` runs the block in one ``BEGIN IMMEDIATE`` write transaction."""
        return transaction(self._conn)

    def snapshot(self) -> _Snapshot:
        """``with store.snapshot():`` reads the block from one consistent snapshot."""
        return _Snapshot(self._conn)

    def data_version(self) -> int:
        """Changes whenever another connection commits (SQLite's ``data_version``): a cheap poll."""
        return self._execute("PRAGMA data_version").fetchone()[0]

    # ------------------------------------------------------------------ decisions and outcomes

    def record_decision(self, row: tuple) -> None:
        """Insert a decision: (id, agent_execution_id, task_type, selected_model, selection_reason,
        alternatives_considered, created_at, preference, propensity, rule_set_version, excluded)."""
        self._execute(_INSERT_DECISION, row)

    def record_outcome(self, row: tuple) -> None:
        """Insert an outcome: (id, model_id, task_type, outcome, quality_score, latency_ms,
        tokens_used, cost_usd, recorded_at, decision_id, preference)."""
        self._execute(_INSERT_OUTCOME, row)

    def record_first_outcome(self, row: tuple, decision_id: str, refused_mark: str) -> bool:
        """Insert the first outcome of ``decision_id`` in one statement: ``row`` is (id, outcome,
        quality_score, latency_ms, tokens_used, cost_usd, recorded_at); model, task type and
        preference come from the decision. False (nothing written) when the decision is unknown,
        its reason holds ``refused_mark``, or it has an outcome already."""
        return self._execute(_INSERT_FIRST_OUTCOME, (*row, decision_id, refused_mark, decision_id)).rowcount == 1

    def decision(self, decision_id: str) -> StoredDecision | None:
        row = self._execute(_SELECT_DECISION, (decision_id,)).fetchone()
        return None if row is None else StoredDecision(*row)

    def first_outcome(self, decision_id: str) -> StoredOutcome | None:
        """The first outcome recorded for ``decision_id``, or None."""
        row = self._execute(_SELECT_FIRST_OUTCOME, (decision_id,)).fetchone()
        return None if row is None else StoredOutcome(*row)

    def append_to_selection_reason(self, decision_id: str, text: str) -> None:
        self._execute(
            "UPDATE routing_decisions SET selection_reason = COALESCE(selection_reason, '') || ? WHERE id = ?",
            (text, decision_id),
        )

    # ------------------------------------------------------------------ rule sets

    def published_marker(self) -> tuple[int, int | None]:
        """(rule sets stored, the newest version below the ceiling new versions count from): it
        changes with every publication, also one below a poisoned huge version."""
        return self._execute(_PUBLISHED_MARKER, (_VERSION_CEILING,)).fetchone()

    def serving_marker(self) -> tuple:
        """What decides which rules a router serves: the publication marker and the registry's
        last change. A router reloads its rules when this changes."""
        return (*self.published_marker(), self._execute("SELECT MAX(updated_at) FROM models").fetchone()[0])

    def publish_rule_set(
        self, rows: Iterable[RuleRow], *, source: str, as_of: str | None = None, inputs: Mapping | None = None,
        precondition: Callable[[Store], None] | None = None, learned_through: str | None = None,
        learned_days: Sequence[LearnedDay] = (),
    ) -> int:
        """Publish ``rows`` as the next rule-set version in one transaction; return the version.

        Readers see the previous version until the commit, then the new one, never a mix. The
        version is above every version either table has seen, so rows left behind by a deleted
        ``rule_sets`` row never collide with the new ones. ``precondition(store)`` runs inside
        the write transaction (no other writer meanwhile) and may raise to publish nothing.

        A learning run passes what the rules were learned from, committed with them:
        ``learned_through`` advances the learned frontier (never backwards: a backfill of an
        earlier day leaves it), ``learned_days`` records each day's inputs in the ledger.
        """
        rows = list(rows)
        if not rows:
            raise ValueError("rows is empty: a rule set needs at least one model")
        with self.transaction():
            if precondition is not None:
                precondition(self)
            version = self._execute(
                "SELECT MAX(COALESCE((SELECT MAX(version) FROM rule_sets WHERE version < ?), 0),"
                " COALESCE((SELECT MAX(rule_set_version) FROM model_routing_rules WHERE rule_set_version < ?), 0)) + 1",
                (_VERSION_CEILING, _VERSION_CEILING),
            ).fetchone()[0]
            self._execute(
                "INSERT INTO rule_sets (version, created_at, as_of, source, inputs, code_version) VALUES (?, ?, ?, ?, ?, ?)",
                (version, utc_timestamp(), as_of, source, json.dumps(dict(inputs or {}), sort_keys=True, default=str), CODE_VERSION),
            )
            self._insert_rule_rows(version, rows)
            if learned_through is not None:
                self._execute(
                    "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)",
                    (LEARNED_THROUGH, learned_through),
                )
            if learned_days:
                now = utc_timestamp()
                self._conn.executemany(
                    "INSERT OR REPLACE INTO learned_days (day, fingerprint, decisions_quarantined, performance_quarantined,"
                    " held, learned_at) VALUES (?, ?, ?, ?, ?, ?)",
                    [(*d, now) for d in learned_days],
                )
        return version

    def _insert_rule_rows(self, version: int, rows: Iterable[RuleRow]) -> None:
        self._conn.executemany(
            "INSERT INTO model_routing_rules (id, rule_set_version, " + ", ".join(STORED_RULE_FIELDS) + ")"
            " VALUES (" + ", ".join("?" * (len(STORED_RULE_FIELDS) + 2)) + ")",
            [(
                f"v{version}:{r.task_type.value}:{r.preference.value}:{r.model_id}", version,
                r.task_type.value, r.preference.value, r.model_id, r.priority, int(r.is_specialized),
                int(r.is_enabled), int(r.is_eligible), r.min_quality_score, r.max_cost_per_1k,
                r.selection_probability, r.expected_quality, r.expected_cost_usd, r.expected_latency_ms,
                r.expected_cost_per_1k,
            ) for r in rows],
        )

    def import_rule_set(self, rule_set: RuleSet, *, code_version: str, hub_url: str) -> bool:
        """Store ``rule_set`` (checked usable by the caller) under its own ``version``, the hub's
        number, in one transaction; ``inputs`` gain ``"hub": hub_url``. Returns False, storing
        nothing, when that version is already stored (another sync imported it meanwhile).

        From then on the home takes its versions from the hub (:meth:`has_hub_rule_set`).
        """
        version = rule_set.version
        if not isinstance(version, int) or isinstance(version, bool) or not 0 < version < _VERSION_CEILING:
            raise ValueError(f"rule_set.version={version!r} must be a positive integer below {_VERSION_CEILING}")
        with self.transaction():
            if self._execute(
                "SELECT EXISTS (SELECT 1 FROM rule_sets WHERE version = ?)"
                " OR EXISTS (SELECT 1 FROM model_routing_rules WHERE rule_set_version = ?)",
                (version, version),
            ).fetchone()[0]:
                return False
            self._execute(
                "INSERT INTO rule_sets (version, created_at, as_of, source, inputs, code_version) VALUES (?, ?, ?, ?, ?, ?)",
                (version, rule_set.created_at, rule_set.as_of, rule_set.source,
                 json.dumps({**rule_set.inputs, "hub": hub_url}, sort_keys=True, default=str), code_version),
            )
            self._insert_rule_rows(version, rule_set.rows)
            self._execute(_UPSERT_SETTING, (HUB_RULE_SET, str(version)))
        return True

    def has_hub_rule_set(self) -> bool:
        """Whether a rule set was imported from the hub: the home's versions are the hub's since."""
        return self._execute("SELECT 1 FROM settings WHERE key = ?", (HUB_RULE_SET,)).fetchone() is not None

    def rule_set_document(self, version: int) -> dict | None:
        """Rule set ``version`` as stored, for the hub (``rules/v<N>.json``): version, created_at,
        as_of, source, inputs, code_version and ``rows`` (one object of :data:`STORED_RULE_FIELDS`
        per model and cell); None when it does not exist. Values are not checked here: the
        host that imports it checks them."""
        with self.snapshot():
            meta = self._execute(
                "SELECT created_at, as_of, source, inputs, code_version FROM rule_sets WHERE version = ?", (version,),
            ).fetchone()
            raw = self._execute(
                "SELECT " + ", ".join(STORED_RULE_FIELDS) + " FROM model_routing_rules WHERE rule_set_version = ?"
                " ORDER BY task_type, preference, priority, model_id",
                (version,),
            ).fetchall()
        if meta is None:
            return None
        created_at, as_of, source, inputs, code_version = meta
        try:
            inputs = json.loads(inputs)
        except (TypeError, ValueError):
            pass  # kept as stored: the importing host finds it unusable and says so
        return {
            "version": version, "created_at": created_at, "as_of": as_of, "source": source, "inputs": inputs,
            "code_version": code_version, "rows": [dict(zip(STORED_RULE_FIELDS, r)) for r in raw],
        }

    def load_rule_set(self, version: int | None = None, home: object = None) -> RuleSet:
        """The rule set ``version`` (default: the newest published), read in one snapshot.

        Raises :class:`UnusableRuleSet` when it cannot be served (see :func:`check_usable`);
        :meth:`load_usable_rule_set` falls back instead.
        """
        with self.snapshot():
            if version is None:
                versions = self.published_versions()
                if not versions:
                    raise NotInitialisedError(f"no rule set is published in {home or 'routing.db'}: run `routing init`")
                version = versions[0]
            rule_set = self._read_rule_set(version)
        if rule_set is None:
            raise LookupError(f"rule_set_version={version!r} does not exist")
        check_usable(rule_set)
        return rule_set

    def load_usable_rule_set(self, home: object = None) -> tuple[RuleSet, str]:
        """What a router serves: the newest usable rule set, else rules in registry order.

        Returns ``(rule_set, note)``; ``note`` is ``""`` when the newest published set is served,
        else it says what was skipped and what is served instead, e.g. ``"rule set v7 unusable
        (row v7:math:balanced:big: selection_probability='NaN' ...), serving v6"`` or ``"no usable
        rule set (...), registry order"``. The registry-order set has ``version`` None and source
        ``"registry-order"``: rules built from the ``models`` and ``task_policies`` tables, as
        ``routing init`` would publish them. Raises only when even those cannot be built (no
        models stored: run ``routing init``).
        """
        problems: list[tuple[int, str]] = []
        with self.snapshot():
            registered = dict(self._execute("SELECT id, enabled FROM models"))
            for version in self.published_versions():
                try:
                    stored = self._read_rule_set(version)  # listed in this same snapshot
                    if stored is None:
                        raise UnusableRuleSet(f"rule set v{version} is listed but has no header row")
                    rule_set = with_registry(stored, registered)
                    check_usable(rule_set)
                    return rule_set, skipped_note(problems, f"serving v{version}")
                except UnusableRuleSet as exc:
                    problems.append((version, str(exc).removeprefix(f"rule set v{version}: ")))
        fallback = registry_order(self.registry, home, utc_timestamp())
        return fallback, skipped_note(problems, "registry order") if problems else "no rule set published, registry order"

    def rule_set_headers(self) -> list[tuple[int, str, str | None, str, str]]:
        """(version, created_at, as_of, source, inputs JSON text) of every stored rule set, newest
        first, as stored: ``routing history`` lists also the sets a router would skip."""
        return self._execute(
            "SELECT version, created_at, as_of, source, inputs FROM rule_sets ORDER BY version DESC"
        ).fetchall()

    def published_versions(self) -> list[int]:
        """Versions a router may serve (every set but the legacy one), newest first."""
        return [v for (v,) in self._execute(_PUBLISHED_VERSIONS)]

    def _read_rule_set(self, version: int) -> RuleSet | None:
        """Rule set ``version`` parsed strictly (inside the caller's snapshot); None if absent."""
        meta = self._execute("SELECT created_at, as_of, source, inputs FROM rule_sets WHERE version = ?", (version,)).fetchone()
        if meta is None:
            return None
        raw = self._execute(
            "SELECT id, " + ", ".join(STORED_RULE_FIELDS) + " FROM model_routing_rules WHERE rule_set_version = ?"
            " ORDER BY task_type, preference, priority",
            (version,),
        ).fetchall()
        return parse_rule_set(version, meta, raw)

    # ------------------------------------------------------------------ registry

    def has_models(self) -> bool:
        """Whether a registry was ever applied (``routing init``)."""
        return self._execute("SELECT EXISTS (SELECT 1 FROM models)").fetchone()[0] == 1

    def model_counts(self) -> tuple[int, int]:
        """(enabled models, all models) of the stored registry."""
        return self._execute("SELECT COALESCE(SUM(enabled), 0), COUNT(*) FROM models").fetchone()

    def upsert_registry(self, registry: ModelRegistry) -> None:
        """Store ``registry``'s models, task policies and learning settings (inside the caller's
        transaction); models and policies it does not name are kept."""
        from dataclasses import asdict

        now = utc_timestamp()
        self._conn.executemany(
            """INSERT INTO models (id, provider, specialized_for, input_cost_per_1k, output_cost_per_1k, prior_quality,
                   off_specialty_prior_quality, typical_latency_ms, enabled, updated_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (id) DO UPDATE SET provider = excluded.provider, specialized_for = excluded.specialized_for,
                   input_cost_per_1k = excluded.input_cost_per_1k, output_cost_per_1k = excluded.output_cost_per_1k,
                   prior_quality = excluded.prior_quality, off_specialty_prior_quality = excluded.off_specialty_prior_quality,
                   typical_latency_ms = excluded.typical_latency_ms, enabled = excluded.enabled, updated_at = excluded.updated_at""",
            [(m.id, m.provider, json.dumps([t.value for t in m.specialized_for]), m.input_cost_per_1k, m.output_cost_per_1k,
              m.prior_quality, m.off_specialty_prior_quality, m.typical_latency_ms, int(m.enabled), now) for m in registry.models],
        )
        self._conn.executemany(
            """INSERT INTO task_policies
                   (task_type, min_quality_score, max_cost_per_1k, typical_input_tokens, typical_output_tokens, updated_at)
               VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT (task_type) DO UPDATE SET min_quality_score = excluded.min_quality_score,
                   max_cost_per_1k = excluded.max_cost_per_1k, typical_input_tokens = excluded.typical_input_tokens,
                   typical_output_tokens = excluded.typical_output_tokens, updated_at = excluded.updated_at""",
            [(t.value, p.min_quality_score, p.max_cost_per_1k, p.typical_input_tokens, p.typical_output_tokens, now)
             for t, p in registry.task_policies.items()],
        )
        self._conn.executemany(
            _UPSERT_SETTING, [("learning", json.dumps(asdict(registry.learning))), ("registry_source", registry.source)],
        )

    def registry(self) -> ModelRegistry:
        """The effective registry: every model and task policy ``routing init`` has stored."""
        from routing_runtime.registry import LearningSettings, ModelRegistry, TaskPolicy
        from routing_runtime.types import TaskType

        models = [
            _stored_model(r)
            for r in self._execute(
                "SELECT id, provider, specialized_for, input_cost_per_1k, output_cost_per_1k, prior_quality,"
                " off_specialty_prior_quality, typical_latency_ms, enabled FROM models ORDER BY rowid"
            )
        ]
        policies = {
            TaskType(r[0]): TaskPolicy(min_quality_score=r[1], max_cost_per_1k=r[2], typical_input_tokens=r[3], typical_output_tokens=r[4])
            for r in self._execute(
                "SELECT task_type, min_quality_score, max_cost_per_1k, typical_input_tokens, typical_output_tokens FROM task_policies"
            )
        }
        settings = self.settings()
        learning = LearningSettings(**json.loads(settings["learning"])) if "learning" in settings else LearningSettings()
        return ModelRegistry.from_models(models, policies, learning, settings.get("registry_source", "routing.db"))

    # ------------------------------------------------------------------ settings

    def settings(self) -> dict[str, str]:
        return dict(self._execute("SELECT key, value FROM settings"))

    def learned_through(self) -> dt.date | None:
        """The last day the published rules learned (the learned frontier), or None."""
        row = self._execute("SELECT value FROM settings WHERE key = ?", (LEARNED_THROUGH,)).fetchone()
        if row is None:
            return None
        try:
            return dt.date.fromisoformat(row[0])
        except ValueError:
            raise ValueError(
                f"settings.learned_through = {str(row[0])[:40]!r} in {self.path} is not a date:"
                " set it to the last day learned (YYYY-MM-DD), or delete that row to learn from the first day with evidence"
            ) from None

    def record_last_learn(self, document: Mapping) -> None:
        """What the last learn did, for ``routing status``."""
        self._execute(_UPSERT_SETTING, (LAST_LEARN, json.dumps(document)))

    def last_learn(self) -> dict | None:
        row = self._execute("SELECT value FROM settings WHERE key = ?", (LAST_LEARN,)).fetchone()
        return None if row is None else json.loads(row[0])

    def set_dagster_postgres_url(self, url: str) -> None:
        """Keep the home's Dagster instance in PostgreSQL at ``url`` (checked by the caller)."""
        self._execute(_UPSERT_SETTING, (DAGSTER_POSTGRES_URL, url))

    def dagster_postgres_url(self) -> str | None:
        """The PostgreSQL URL of the home's Dagster instance, or None (SQLite in the home)."""
        row = self._execute("SELECT value FROM settings WHERE key = ?", (DAGSTER_POSTGRES_URL,)).fetchone()
        return None if row is None else str(row[0])
    # ------------------------------------------------------------------ the hub

    def hub_tie(self) -> tuple[str, str] | None:
        """(hub URL, this home's host id) when ``routing init --hub`` tied the home to a hub."""
        settings = self.settings()
        if HUB_URL not in settings:
            return None
        return settings[HUB_URL], settings[HOST_ID]

    def tie_to_hub(self, url: str, host_id: str) -> None:
        """Tie the home to the hub at ``url`` under ``host_id`` (kept when the hub changes)."""
        with self.transaction():
            self._conn.executemany(_UPSERT_SETTING, [(HUB_URL, url), (HOST_ID, host_id)])

    def plan_hub_segment(self, table: str, max_rows: int) -> HubSegment | None:
        """Plan the next segment of ``table`` to ship, in its own transaction: the rows above the
        last planned segment, at most ``max_rows`` of them; None when there are none. Its name
        follows from its rowids alone, so shipping it again writes the same object."""
        _time_column(table)
        with self.transaction():
            after = self._execute(
                "SELECT COALESCE(MAX(last_rowid), 0) FROM hub_segments WHERE table_name = ?", (table,),
            ).fetchone()[0]
            first, last, rows = self._execute(
                f"SELECT MIN(rowid), MAX(rowid), COUNT(*) FROM (SELECT rowid FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT ?)",
                (after, max_rows),
            ).fetchone()
            if not rows:
                return None
            segment = HubSegment(table, f"{first:012d}-{last:012d}", first, last, rows)
            self._execute(
                "INSERT INTO hub_segments (table_name, name, first_rowid, last_rowid, rows, planned_at) VALUES (?, ?, ?, ?, ?, ?)",
                (table, segment.name, first, last, rows, utc_timestamp()),
            )
        return segment

    def unshipped_hub_segments(self, table: str) -> list[HubSegment]:
        """Segments of ``table`` planned but not yet marked shipped (a sync was cut short), in order."""
        return [HubSegment(table, *r) for r in self._execute(
            "SELECT name, first_rowid, last_rowid, rows FROM hub_segments WHERE table_name = ? AND shipped_at IS NULL"
            " ORDER BY first_rowid", (table,),
        )]

    def hub_segment_rows(self, segment: HubSegment) -> list[tuple]:
        """The rows of ``segment`` (their :data:`LOG_COLUMNS`, as stored), in rowid order."""
        columns = ", ".join(name for name, _ in LOG_COLUMNS[segment.table])
        return self._execute(
            f"SELECT {columns} FROM {segment.table} WHERE rowid BETWEEN ? AND ? ORDER BY rowid",
            (segment.first_rowid, segment.last_rowid),
        ).fetchall()

    def mark_hub_segment_shipped(self, segment: HubSegment) -> None:
        """The hub holds ``segment``: the next sync does not ship it again."""
        self._execute(
            "UPDATE hub_segments SET shipped_at = ? WHERE table_name = ? AND name = ? AND shipped_at IS NULL",
            (utc_timestamp(), segment.table, segment.name),
        )

    # ------------------------------------------------------------------ the learning ledger

    def has_inbox_drop(self, stem: str) -> bool:
        return self._execute("SELECT 1 FROM inbox_drops WHERE stem = ?", (stem,)).fetchone() is not None

    def record_inbox_drop(
        self, *, stem: str, table: str, original_name: str, ingested_name: str, days: Iterable[str], rows: int,
        quarantined: int, reasons: Mapping[str, int],
    ) -> None:
        """Record a staged drop once (a second record of the same ``stem`` changes nothing)."""
        with self.transaction():
            self._execute(
                "INSERT OR IGNORE INTO inbox_drops (stem, table_name, original_name, ingested_name, days, rows, quarantined,"
                " reasons, staged_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (stem, table, original_name, ingested_name, json.dumps(sorted(days)), rows, quarantined,
                 json.dumps(dict(reasons)), utc_timestamp()),
            )

    def inbox_drops(self, table: str | None = None) -> list[InboxDrop]:
        """Every recorded drop (of ``table``), by stem."""
        where, args = (" WHERE table_name = ?", (table,)) if table is not None else ("", ())
        return [
            InboxDrop(stem, table_name, original, ingested, json.loads(days))
            for stem, table_name, original, ingested, days in self._execute(
                "SELECT stem, table_name, original_name, ingested_name, days FROM inbox_drops" + where + " ORDER BY stem", args,
            ).fetchall()
        ]

    def forget_inbox_drop(self, stem: str) -> None:
        self._execute("DELETE FROM inbox_drops WHERE stem = ?", (stem,))

    def accept_quarantine(self, days: Iterable[dt.date]) -> None:
        """Learn the valid rows of ``days`` even when most of their rows were quarantined."""
        with self.transaction():
            self._conn.executemany(
                "INSERT OR REPLACE INTO accepted_quarantine (day, accepted_at) VALUES (?, ?)",
                [(d.isoformat(), utc_timestamp()) for d in days],
            )

    def accepted_quarantine_days(self) -> list[str]:
        return [day for (day,) in self._execute("SELECT day FROM accepted_quarantine")]

    def learned_fingerprints(self) -> dict[str, str]:
        """Per learned day (ISO text): what its partitions were built from when rules were published."""
        return dict(self._execute("SELECT day, fingerprint FROM learned_days"))

    # ------------------------------------------------------------------ logs, for ingest

    def log_rows(self, table: str, day: dt.date, columns: Sequence[str]) -> list[tuple]:
        """The ``columns`` of ``table``'s rows stamped on UTC ``day``, read through the timestamp index."""
        time_column = _time_column(table)
        if not all(c.isidentifier() for c in columns):
            raise ValueError(f"columns={list(columns)!r} must be column names")
        return self._execute(
            f"SELECT {', '.join(columns)} FROM {table} WHERE {time_column} >= ? AND {time_column} < ?",
            (day.isoformat(), (day + dt.timedelta(days=1)).isoformat()),
        ).fetchall()

    def log_day_counts(self, table: str, days: tuple[dt.date, dt.date] | None = None) -> dict[str, int]:
        """Rows of ``table`` per UTC day (the timestamp's first ten characters, as stored: an
        undatable row gives text that is not a date), for all days or the ``days`` range (first, last)."""
        column = _time_column(table)
        where = ""
        bounds: tuple[str, ...] = ()
        if days is not None:
            where, bounds = f" WHERE {column} >= ? AND {column} < ?", (days[0].isoformat(), (days[1] + dt.timedelta(days=1)).isoformat())
        return dict(self._execute(f"SELECT substr({column}, 1, 10), COUNT(*) FROM {table}{where} GROUP BY 1", bounds))

    # ------------------------------------------------------------------ status

    def log_summary(self) -> dict[str, dict]:
        """Per log table: its ``rows`` and the ``last`` timestamp."""
        return {
            table: dict(zip(("rows", "last"), self._execute(f"SELECT COUNT(*), MAX({column}) FROM {table}").fetchone()))
            for table, column in TIME_COLUMN.items()
        }

    def classification_summary(self, classified_mark: str, low_confidence_mark: str) -> dict[str, int]:
        """How many decisions were made for a classified prompt, and how many of those with low
        confidence (their ``selection_reason`` holds the router's marks)."""
        classified, low = self._execute(
            "SELECT COALESCE(SUM(instr(selection_reason, ?) > 0), 0), COALESCE(SUM(instr(selection_reason, ?) > 0), 0)"
            " FROM routing_decisions", (classified_mark, low_confidence_mark),
        ).fetchone()
        return {"classified": classified + low, "low_confidence": low}

    def quarantine_summary(self) -> tuple[dict[str, int], list[dict]]:
        """Rows quarantined per table (learned days plus undatable rows of staged drops), and the
        days held out of learning with the reason; nothing before the learning ledger (schema 4)."""
        if self.schema_version() < 4:
            return {}, []
        decisions, performance = self._execute(
            "SELECT COALESCE(SUM(decisions_quarantined), 0), COALESCE(SUM(performance_quarantined), 0) FROM learned_days"
        ).fetchone()
        quarantined = {"routing_decisions": decisions, "model_performance": performance}
        for table, n in self._execute("SELECT table_name, SUM(quarantined) FROM inbox_drops GROUP BY table_name"):
            quarantined[table] = quarantined.get(table, 0) + n
        held = [{"day": day, "reason": reason} for day, reason in self._execute(
            "SELECT day, held FROM learned_days WHERE held IS NOT NULL ORDER BY day"
        )]
        return quarantined, held


def _time_column(table: str) -> str:
    try:
        return TIME_COLUMN[table]
    except KeyError:
        raise ValueError(f"table={table!r} is not a log table: one of {', '.join(TIME_COLUMN)}") from None


def _stored_model(row: tuple):
    """A ``models`` row checked as a registry file's entry is: a value written there by hand
    (text in a number column) is named with the fix, never a crash deep in learning."""
    from routing_runtime.registry import RegistryError, model_from_table

    names = ("id", "provider", "specialized_for", "input_cost_per_1k", "output_cost_per_1k", "prior_quality",
             "off_specialty_prior_quality", "typical_latency_ms", "enabled")
    table = {k: v for k, v in zip(names, row) if v is not None}
    try:
        table["specialized_for"] = json.loads(table.get("specialized_for", "[]"))
        table["enabled"] = {0: False, 1: True}.get(table.get("enabled", 1), table.get("enabled"))
        return model_from_table(table, "routing.db: models")
    except (ValueError, TypeError) as exc:
        raise RegistryError(f"{exc}: run `routing init --registry FILE` to store a valid registry") from None


# ---------------------------------------------------------------------- connections and migrations


def connect(path: str | os.PathLike) -> sqlite3.Connection:
    """Open ``routing.db`` for many concurrent processes: WAL, busy timeout, foreign keys.

    The connection is in autocommit mode; multi-statement writes use ``transaction``.
    ``synchronous=NORMAL`` in WAL mode makes every commit durable against a process crash
    (a power loss may drop the last commits, never corrupt the file). Benchmarks and tests use
    it for a connection set up exactly as the router's.
    """
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    # Switching a new file to WAL needs a moment alone with it; processes creating it at once retry.
    for attempt in range(50):
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            break
        except sqlite3.OperationalError:
            if attempt == 49:
                raise
            time.sleep(0.05)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _connect_readonly(path: str | os.PathLike) -> sqlite3.Connection:
    """A read-only connection that works on a read-only home too (``routing rules``, ``status``).

    The path goes into a ``file:`` URI percent-encoded, so any home name works. Where SQLite
    cannot create its WAL index (a read-only folder), the file is opened as immutable.
    """
    from pathlib import Path

    uri = Path(path).resolve().as_uri()
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False, isolation_level=None)
    try:
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:
        conn.close()
        conn = sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=False, isolation_level=None)
    return conn


class transaction:
    """``with transaction(conn):`` runs the block in one ``BEGIN IMMEDIATE`` write transaction."""

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")


class _Snapshot:
    """A read transaction: every read in the block sees one committed state."""

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN")

    def __exit__(self, *exc) -> None:
        self.conn.execute("COMMIT")


def schema_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Apply the missing migrations up to ``target``, each in its own write transaction, reading
    the version inside it, so that processes upgrading at once apply each step once. A database
    made from the story's schema by hand (tables, but user_version 0) counts as version 1."""
    while True:
        with transaction(conn):
            current = schema_version(conn)
            if current == 0 and conn.execute(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'"
                " AND name IN ('model_routing_rules', 'routing_decisions', 'model_performance')"
            ).fetchone()[0] == 3:
                current = 1
                conn.execute("PRAGMA user_version = 1")
            if current > SCHEMA_VERSION:
                raise RuntimeError(
                    f"routing.db has schema version {current}, newer than this routing_runtime ({SCHEMA_VERSION}); upgrade the package"
                )
            if current >= target:
                return current
            for statement in _statements(MIGRATIONS[current]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {current + 1}")


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (executescript would commit mid-transaction)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line.split("--", 1)[0] if "--" in line and "'" not in line else line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    return [s for s in statements if s]
