"""The vocabulary shared by the runtime, the learning pipeline and the logs."""

from __future__ import annotations

import enum
from collections import namedtuple  # not typing.NamedTuple: importing typing costs the runtime 3 ms


class TaskType(str, enum.Enum):
    """What a request asks for; routing rules are kept per task type."""

    CODE_GENERATION = "code_generation"
    CODE_REVIEW = "code_review"
    DEBUGGING = "debugging"
    PLANNING = "planning"
    DOCUMENTATION = "documentation"
    TESTING = "testing"
    MATH = "math"
    GENERAL = "general"


class RoutingPreference(str, enum.Enum):
    """What the caller optimises for.

    * ``quality``: highest expected quality, thresholds ignored.
    * ``cost_efficient``: lowest expected cost among eligible models.
    * ``balanced``: highest expected quality per dollar among eligible models.
    * ``latency``: lowest expected latency among eligible models.
    """

    QUALITY = "quality"
    COST_EFFICIENT = "cost_efficient"
    BALANCED = "balanced"
    LATENCY = "latency"


class Cell(namedtuple("Cell", "task_type preference")):
    """One (task type, preference) cell: the unit rules, traffic and evaluations are kept per.

    A named tuple, so it equals and hashes like the bare ``(task_type, preference)`` pair.

    >>> cell = Cell(TaskType.MATH, RoutingPreference.LATENCY)
    >>> cell.label
    'math/latency'
    >>> cell == (TaskType.MATH, RoutingPreference.LATENCY)
    True
    """

    __slots__ = ()
    task_type: TaskType
    preference: RoutingPreference

    @property
    def label(self) -> str:
        """``task/preference``, the form messages and reports name a cell by."""
        return f"{self.task_type.value}/{self.preference.value}"


def all_cells() -> list[Cell]:
    """Every cell, task types outer and preferences inner, in enum order.

    >>> cells = all_cells()
    >>> len(cells) == len(TaskType) * len(RoutingPreference), cells[0].label
    (True, 'code_generation/quality')
    """
    return [Cell(task, preference) for task in TaskType for preference in RoutingPreference]


class Outcome(str, enum.Enum):
    """How a routed request ended, as reported by the agent."""

    SUCCESS = "success"
    PARTIAL = "partial"
    FAILURE = "failure"


#: Quality implied by an outcome when the agent reports no ``quality_score``.
OUTCOME_QUALITY: dict[Outcome, float] = {
    Outcome.SUCCESS: 1.0,
    Outcome.PARTIAL: 0.5,
    Outcome.FAILURE: 0.0,
}


def outcome_for_quality(quality: float | None) -> Outcome:
    """The outcome a quality in [0, 1] implies, for integrations that score answers: none given
    or ≥ 0.75 success, ≥ 0.25 partial, else failure (the inverse of :data:`OUTCOME_QUALITY`'s
    nearest levels).

    >>> [outcome_for_quality(q).value for q in (None, 0.9, 0.5, 0.1)]
    ['success', 'success', 'partial', 'failure']
    """
    if quality is None or quality >= 0.75:
        return Outcome.SUCCESS
    return Outcome.PARTIAL if quality >= 0.25 else Outcome.FAILURE


#: The largest value an outcome may report: beyond these a number is a unit or logging bug (a
#: latency in microseconds, a cost in cents), and one such row would swamp a model's estimates.
OUTCOME_LIMITS: dict[str, float] = {
    "latency_ms": 86_400_000.0,     # one day
    "cost_usd": 1_000.0,            # per request
    "tokens_used": 100_000_000,
}


def parse_enum(enum_type, value: object, field: str):
    """Return ``value`` as a member of ``enum_type``, or raise ValueError naming ``field``.

    >>> parse_enum(TaskType, "math", "task_type")
    <TaskType.MATH: 'math'>
    """
    if isinstance(value, enum_type):
        return value
    try:
        return enum_type(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum_type)
        raise ValueError(f"{field}={value!r} is not one of: {allowed}") from None
