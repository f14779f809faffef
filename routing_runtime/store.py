"""``routing.db``: the SQLite schema, its versioned migrations and connection settings.

Schema version 1 is the user's story as written (three tables); version 2 adds what the
design needs. ``migrate`` brings any older database up to date in place without losing rows.
"""

from __future__ import annotations

import os
import sqlite3
import time
from datetime import datetime, timezone

DB_NAME = "routing.db"
BUSY_TIMEOUT_MS = 10_000

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

#: Migration ``i`` brings a database from user_version ``i`` to ``i + 1``.
MIGRATIONS: tuple[str, ...] = (_STORY_SCHEMA, _DESIGN_SCHEMA, _EXCLUDED_COLUMN, _LEARNING_LEDGER)
SCHEMA_VERSION = len(MIGRATIONS)


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


def connect(path: str | os.PathLike) -> sqlite3.Connection:
    """Open ``routing.db`` for many concurrent processes: WAL, busy timeout, foreign keys.

    The connection is in autocommit mode; multi-statement writes use ``transaction``.
    ``synchronous=NORMAL`` in WAL mode makes every commit durable against a process crash
    (a power loss may drop the last commits, never corrupt the file).
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


def connect_readonly(path: str | os.PathLike) -> sqlite3.Connection:
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

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")


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
