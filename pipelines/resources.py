"""The ROUTING_HOME resource: paths, the effective registry, learning state."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

import dagster as dg

from routing_pipelines.assets.names import AS_OF_TAG, RANGE_END_TAG, RANGE_START_TAG
from routing_runtime.registry import ModelRegistry
from routing_runtime.store import DB_NAME, Store


class RoutingHome(dg.ConfigurableResource):
    """A router's ``ROUTING_HOME``: ``routing.db``, ``inbox/`` and ``lake/``."""

    home: str

    @property
    def path(self) -> Path:
        return Path(self.home).expanduser().resolve()

    def open_store(self) -> Store:
        """The home's :class:`Store` (close it after use); the home must be initialised at the current schema."""
        if not (self.path / DB_NAME).exists():
            raise FileNotFoundError(f"{self.path} is not initialised: run `routing init --home {self.path}`")
        return Store.open_home(self.path, needed_by="the pipeline")

    def registry(self) -> ModelRegistry:
        with self.open_store() as db:
            return db.registry()

    def learned_through(self) -> dt.date | None:
        with self.open_store() as db:
            return db.learned_through()


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
