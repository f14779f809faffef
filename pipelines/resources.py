"""Dagster resources of a home: the ROUTING_HOME resource, the lake IO manager, the learning day."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
from pathlib import Path

import dagster as dg

from pydantic import Field

from routing_pipelines.assets import names
from routing_pipelines import logs, plan
from routing_pipelines.lake import Lake
from routing_pipelines.learning.values import LakeValue
from routing_pipelines.run_lock import exclusive
from routing_runtime.faults import crashpoint
from routing_runtime.registry import ModelRegistry
from routing_runtime.store import DB_NAME, Store


class RoutingHome(dg.ConfigurableResource):
    """A router's ``ROUTING_HOME``: ``routing.db``, ``inbox/`` and ``lake/``."""

    home: str
    lease: str = Field(default="", description=(
        "Set by `routing learn` on the run it starts while it holds the home: the lock's lease, which"
        " admits this run's steps in other processes (pipelines/run_lock.py). Empty: the run id."
    ))

    @property
    def path(self) -> Path:
        return Path(self.home).expanduser().resolve()

    @property
    def lake(self) -> Lake:
        return Lake(self.path)

    @contextlib.contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext):
        # Whoever launched the run (the daemon, the UI, `routing learn`), it holds the home for its
        # whole length: two runs never interleave their writes.
        # The steps of one run in other processes (multiprocess executor) share it: each step is
        # admitted with its run's lease (pipelines/run_lock.py).
        run = context.run
        with exclusive(self.path, f"dagster run {run.run_id[:8] if run else '?'}", reentrant=True,
                       lease=run_lease(run.run_id, self.lease, run.parent_run_id) if run else None):
            yield self

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

    def first_evidence_day(self) -> dt.date | None:
        """The home's first day with evidence; None for a home not initialised yet (the
        Definitions still load, so the UI can say what to do)."""
        if not (self.path / DB_NAME).exists():
            return None
        with Store.open_home(self.path, read_only=True, needed_by="the pipeline") as db:
            return plan.first_evidence_day(self.path, db, logs.pending_days(self.path))


def run_lease(run_id: str, lease: str, parent_run_id: str | None) -> str:
    """The lease a run's steps are admitted with: the ``lease`` that `routing learn` configures on
    its run, else the run id. A re-execution (it copies its parent's run config) has its own id:
    it never shares the lease of the run it re-executes."""
    return lease or run_id if parent_run_id is None else run_id


def progress(context, message: str) -> None:
    """Log to Dagster and, when `routing learn` runs on a terminal, show the line there too."""
    context.log.info(message)
    if os.environ.get("ROUTING_PROGRESS"):
        print(f"  {message}", file=sys.stderr, flush=True)


class LakeIOManager(dg.ConfigurableIOManager):
    """Hands each learning step's value (a :class:`~routing_pipelines.learning.values.LakeValue`)
    to the steps that take it, through the home's lake: written once as
    ``lake/<asset>/as_of=DAY.parquet`` and made current, read by every consumer. A step never
    builds a path of another step's output."""

    home: str
    lease: str = Field(default="", description=(
        "Set by `routing learn` on the run it starts while it holds the home: the lock's lease, which"
        " admits this run's steps in other processes (pipelines/run_lock.py). Empty: the run id."
    ))

    def _lake(self) -> Lake:
        return Lake(Path(self.home).expanduser().resolve())

    def handle_output(self, context: dg.OutputContext, obj: LakeValue) -> None:
        if not isinstance(obj, LakeValue):
            raise TypeError(f"{context.asset_key.to_user_string()} returned {type(obj).__name__}: learning steps return a LakeValue")
        asset = context.asset_key.path[-1]
        path = self._lake().write_value(asset, obj.as_of, obj.to_frame())
        crashpoint(f"{asset}:after_write")
        context.add_output_metadata({"as_of": str(obj.as_of), "path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> LakeValue:
        asset = context.asset_key.path[-1]
        value_type = context.dagster_type.typing_type
        if not (isinstance(value_type, type) and issubclass(value_type, LakeValue)):
            raise TypeError(f"{asset}: annotate the input with its LakeValue type, not {value_type!r}")
        as_of, frame = self._lake().read_value(asset)
        return value_type.from_frame(as_of, frame)


class PublicationGate(dg.Config):
    """Whether the gate's verdict binds (`routing learn --no-gate` sets ``enforce`` false)."""

    enforce: bool = Field(
        default=True,
        description="True: a candidate worse than the logged policy with confidence is not published, and models on"
        " evidence not tied to decisions are held to the rules in force. False: publish the candidate as learned;"
        " the rule set records what the gate found.",
    )


class LearningDay(dg.Config):
    """Which day the posteriors (and so the rules) are learned as of."""

    as_of: str | None = Field(
        default=None,
        description="YYYY-MM-DD: learn from every statistic up to the end of this UTC day. Empty: the newest day"
        " with statistics in the lake (`routing learn` always sets it).",
    )

    def day(self, routing_home: RoutingHome) -> dt.date:
        if self.as_of:
            try:
                return dt.date.fromisoformat(self.as_of)
            except ValueError:
                raise dg.Failure(description=f"as_of={self.as_of!r} is not a date: use YYYY-MM-DD") from None
        days = routing_home.lake.partition_days(names.DAILY_MODEL_STATS)
        if not days:
            raise dg.Failure(description=(
                f"no {names.DAILY_MODEL_STATS} partition in the lake yet, so there is no day to learn as of:"
                " materialize the log assets and statistics for some days first (or run `routing learn`),"
                " or set as_of in the run config"
            ))
        return max(days)
