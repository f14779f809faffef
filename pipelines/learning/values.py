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
import json

import polars as pl

from routing_pipelines.learning.candidates import Candidate, Hold, rules_frame
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



_GATE_COLUMN = "gate"


@dataclasses.dataclass(frozen=True, eq=False)
class PolicyEvaluation(LakeValue):
    """Off-policy estimates of the rules to publish on the logged traffic (see
    :mod:`.evaluation`) and the gate's verdict on them (see :mod:`.gate`), stored with the frame."""

    gate: dict = dataclasses.field(default_factory=dict)

    def to_frame(self) -> pl.DataFrame:
        # The verdict rides in a column; an evaluation without rows keeps it in a row of nulls.
        frame = self.frame if self.frame.height else pl.concat([self.frame, pl.DataFrame([{}], schema=self.frame.schema)])
        return frame.with_columns(pl.lit(json.dumps(self.gate, sort_keys=True), pl.String).alias(_GATE_COLUMN))

    @classmethod
    def from_frame(cls, as_of: dt.date, frame: pl.DataFrame) -> PolicyEvaluation:
        gate = json.loads(frame[_GATE_COLUMN][0]) if frame.height and _GATE_COLUMN in frame.columns else {}
        return cls(as_of, frame.drop(_GATE_COLUMN, strict=False).filter(pl.col("task_type").is_not_null()), gate)

    def overall(self) -> list[dict]:
        """Per preference, the estimates over every task type."""
        return self.frame.filter(pl.col("task_type") == "all").to_dicts()

    @property
    def blocked(self) -> bool:
        return self.gate.get("status") == "blocked"


_REGISTRY_COLUMN = "registry_fingerprint"
_VARIANT_COLUMN = "rule_variant"
_HOLDS_COLUMN = "holds"


@dataclasses.dataclass(frozen=True, eq=False)
class CandidateRules(LakeValue):
    """The next rule set, not yet published: as the gate publishes it (``rows``: thin-evidence
    moves held to a safe step, ``holds`` says which), as learned (``learned_rows``, what
    ``--no-gate`` publishes), and the registry it was built for (publishing refuses it when the
    registry changed meanwhile). ``frame`` is the gated rows."""

    rows: tuple[RuleRow, ...] = ()
    registry_fingerprint: str = ""
    learned_rows: tuple[RuleRow, ...] = ()
    holds: tuple[Hold, ...] = ()

    @classmethod
    def build(cls, as_of: dt.date, candidate: Candidate, registry_fingerprint: str) -> CandidateRules:
        return cls(as_of, rules_frame(candidate.gated), tuple(candidate.gated), registry_fingerprint,
                   tuple(candidate.learned), tuple(candidate.holds))

    def rows_to_publish(self, *, gated: bool) -> tuple[RuleRow, ...]:
        return self.rows if gated else self.learned_rows

    def to_frame(self) -> pl.DataFrame:
        holds = json.dumps([h.to_json() for h in self.holds])
        return pl.concat([
            self.frame.with_columns(pl.lit("gated").alias(_VARIANT_COLUMN)),
            rules_frame(list(self.learned_rows)).with_columns(pl.lit("learned").alias(_VARIANT_COLUMN)),
        ]).with_columns(pl.lit(self.registry_fingerprint, pl.String).alias(_REGISTRY_COLUMN), pl.lit(holds).alias(_HOLDS_COLUMN))

    @classmethod
    def from_frame(cls, as_of: dt.date, frame: pl.DataFrame) -> CandidateRules:
        fingerprint = frame[_REGISTRY_COLUMN][0] if frame.height and _REGISTRY_COLUMN in frame.columns else ""
        holds = tuple(Hold.from_json(h) for h in json.loads(frame[_HOLDS_COLUMN][0])) if frame.height else ()

        def variant(name: str) -> pl.DataFrame:
            return frame.filter(pl.col(_VARIANT_COLUMN) == name).drop(_REGISTRY_COLUMN, _VARIANT_COLUMN, _HOLDS_COLUMN)

        def rows(rules: pl.DataFrame) -> tuple[RuleRow, ...]:
            return tuple(
                RuleRow(**{**r, "task_type": TaskType(r["task_type"]), "preference": RoutingPreference(r["preference"])})
                for r in rules.iter_rows(named=True)
            )
        gated = variant("gated")
        return cls(as_of, gated, rows(gated), fingerprint, rows(variant("learned")), holds)
