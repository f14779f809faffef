"""The ROUTING_HOME resource: paths, the effective registry, learning state."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import sys
from pathlib import Path

import dagster as dg

from routing_pipelines.assets.names import AS_OF_TAG, RANGE_END_TAG, RANGE_START_TAG
from routing_runtime import store
from routing_runtime.admin import registry_from_db
from routing_runtime.registry import ModelRegistry

LEARNED_THROUGH = "learned_through"


class RoutingHome(dg.ConfigurableResource):
    """A router's ``ROUTING_HOME``: ``routing.db``, ``inbox/`` and ``lake/``."""

    home: str

    @property
    def path(self) -> Path:
        return Path(self.home).expanduser().resolve()

    def connect(self) -> sqlite3.Connection:
        db = self.path / store.DB_NAME
        if not db.exists():
            raise FileNotFoundError(f"{self.path} is not initialised: run `routing init --home {self.path}`")
        conn = store.connect(db)
        if (version := store.schema_version(conn)) != store.SCHEMA_VERSION:
            conn.close()
            raise RuntimeError(
                f"{db} has schema version {version}, the pipeline needs {store.SCHEMA_VERSION}:"
                f" run `routing init --home {self.path}` to upgrade it"
            )
        return conn

    def registry(self) -> ModelRegistry:
        conn = self.connect()
        try:
            return registry_from_db(conn)
        finally:
            conn.close()

    def learned_through(self) -> dt.date | None:
        conn = self.connect()
        try:
            row = conn.execute("SELECT value FROM settings WHERE key = ?", (LEARNED_THROUGH,)).fetchone()
        finally:
            conn.close()
        if row is None:
            return None
        try:
            return dt.date.fromisoformat(row[0])
        except ValueError:
            raise ValueError(
                f"settings.learned_through = {row[0][:40]!r} in {self.path / store.DB_NAME} is not a date:"
                " set it to the last day learned (YYYY-MM-DD), or delete that row to learn from the first day with evidence"
            ) from None


def progress(context, message: str) -> None:
    """Log to Dagster and, when `routing learn` runs on a terminal, show the line there too."""
    context.log.info(message)
    if os.environ.get("ROUTING_PROGRESS"):
        print(f"  {message}", file=sys.stderr, flush=True)


def as_of_day(context) -> dt.date:
    """The run's learning day: its ``routing/as_of`` tag, else its partition range end, else yesterday."""
    tags = context.run.tags
    value = tags.get(AS_OF_TAG) or tags.get(RANGE_END_TAG)
    if value:
        return dt.date.fromisoformat(value)
    return dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)


def run_partition_keys(context) -> list[str]:
    """The days a run covers, from its partition-range tags or its single partition tag."""
    tags = context.run.tags
    if RANGE_START_TAG in tags:
        start, end = dt.date.fromisoformat(tags[RANGE_START_TAG]), dt.date.fromisoformat(tags[RANGE_END_TAG])
        return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
    return [tags["dagster/partition"]] if "dagster/partition" in tags else []
