"""The values the learning steps hand each other: each one a day's result with its frame.

Every value knows the day it is *as of* and how it is stored as one Parquet frame, so the lake
(:class:`routing_pipelines.lake.Lake`) keeps one file per value and day, and a step never
locates another step's output itself: Dagster's IO manager hands it over.

>>> import datetime as dt, polars as pl
>>> value = Posteriors(dt.date(2026, 11, 30), pl.DataFrame({"model_id": ["m"], "n_raw": [3]}))
>>> Posteriors.from_frame(value.as_of, value.to_frame()) == value
True
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import polars as pl

from routing_pipelines.learning.candidates import rules_frame
from routing_runtime.rules import RuleRow
from routing_runtime.types import RoutingPreference, TaskType


@dataclasses.dataclass(frozen=True, eq=False)
class LakeValue:
    """A step's result as of a day, stored as one frame."""

    as_of: dt.date
    frame: pl.DataFrame

    def to_frame(self) -> pl.DataFrame:
        return self.frame

    @classmethod
    def from_frame(cls, as_of: dt.date, frame: pl.DataFrame):
        return cls(as_of, frame)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.as_of == other.as_of and self.to_frame().equals(other.to_frame())


class Posteriors(LakeValue):
    """Posteriors per (model, task type) as of a day (columns: see :mod:`.posteriors`)."""


    @property
    def outcomes_seen(self) -> int:
        return int(self.frame["n_raw"].sum()) if self.frame.height else 0


class SpecialistComparison(LakeValue):
    """Per task type: the best specialist against the best generalist."""



class PolicyEvaluation(LakeValue):
    """Off-policy estimates of the candidate rules on the logged traffic (see :mod:`.evaluation`)."""


    def overall(self) -> dict | None:
        """The ``all`` row, or None when no logged decision could be evaluated."""
        rows = self.frame.filter(pl.col("task_type") == "all")
        return rows.row(0, named=True) if rows.height and rows["n"][0] else None


_REGISTRY_COLUMN = "registry_fingerprint"


@dataclasses.dataclass(frozen=True, eq=False)
class CandidateRules(LakeValue):
    """The next rule set, not yet published, and the registry it was built for (publishing
    refuses it when the registry changed meanwhile)."""

    rows: tuple[RuleRow, ...] = ()
    registry_fingerprint: str = ""

    @classmethod
    def build(cls, as_of: dt.date, rows: list[RuleRow], registry_fingerprint: str) -> CandidateRules:
        return cls(as_of, rules_frame(rows), tuple(rows), registry_fingerprint)

    def to_frame(self) -> pl.DataFrame:
        return self.frame.with_columns(pl.lit(self.registry_fingerprint, pl.String).alias(_REGISTRY_COLUMN))

    @classmethod
    def from_frame(cls, as_of: dt.date, frame: pl.DataFrame) -> CandidateRules:
        fingerprint = frame[_REGISTRY_COLUMN][0] if frame.height and _REGISTRY_COLUMN in frame.columns else ""
        rules = frame.drop(_REGISTRY_COLUMN, strict=False)
        rows = tuple(
            RuleRow(**{**r, "task_type": TaskType(r["task_type"]), "preference": RoutingPreference(r["preference"])})
            for r in rules.iter_rows(named=True)
        )
        return cls(as_of, rules, rows, fingerprint)
