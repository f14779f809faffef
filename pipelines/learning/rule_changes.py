"""What changed between two rule sets, and the posterior movements that explain it.

An analyst reading a new rule set asks two things: which cells (task type × preference) send
their traffic elsewhere now, and why. The first table answers the first; each changed cell links
to its row in the second, which shows how the posteriors of the old and the new top model moved
between the two learning days (quality, cost, latency, evidence).
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from routing_runtime.rules import RuleRow
from routing_runtime.types import RoutingPreference, TaskType

#: Posterior columns shown for each model of a changed cell: (label, column, format).
MOVED = (
    ("quality", "quality_mean", "{:.3f}"),
    ("cost $", "cost_mean_usd", "{:.6f}"),
    ("latency ms", "latency_mean_ms", "{:.0f}"),
    ("outcomes", "n_raw", "{:.0f}"),
)


def _top(rows: Iterable[RuleRow]) -> RuleRow | None:
    return max(rows, key=lambda r: r.selection_probability, default=None)


def _cells(rows: Iterable[RuleRow]) -> dict[tuple[TaskType, RoutingPreference], list[RuleRow]]:
    cells: dict[tuple[TaskType, RoutingPreference], list[RuleRow]] = {}
    for r in rows:
        cells.setdefault((r.task_type, r.preference), []).append(r)
    return cells


def _anchor(task: TaskType, preference: RoutingPreference) -> str:
    return f"{task.value}-{preference.value}".replace("_", "-")


def change_markdown(
    previous: Iterable[RuleRow] | None, rows: Iterable[RuleRow],
    before: pl.DataFrame | None = None, after: pl.DataFrame | None = None,
) -> str:
    """The change table, then one line per changed cell with the posterior deltas of its old
    and new top models (``before``/``after``: the posteriors each rule set was built from).

    >>> from routing_runtime.types import RoutingPreference as P, TaskType as T
    >>> def row(model, p):
    ...     return RuleRow(T.MATH, P.QUALITY, model, 1, False, True, True, 0.7, None, p, 0.8, 0.001, 900.0, 0.01)
    >>> table = change_markdown([row("a", 0.9)], [row("b", 0.9)]).splitlines()
    >>> print(next(line for line in table if line.startswith("| math | quality")))
    | math | quality | a (90%) | b (90%) | [**yes**](#math-quality) |
    """
    old_cells = _cells(previous or [])
    new_cells = _cells(rows)
    lines = ["| task type | preference | previous top | new top | changed |", "|---|---|---|---|---|"]
    changed = []
    for task in TaskType:
        for preference in RoutingPreference:
            old, new = _top(old_cells.get((task, preference), [])), _top(new_cells.get((task, preference), []))
            label = lambda r: f"{r.model_id} ({r.selection_probability:.0%})" if r else "-"  # noqa: E731
            moved = previous is not None and old is not None and new is not None and old.model_id != new.model_id
            mark = f"[**yes**](#{_anchor(task, preference)})" if moved else ""
            lines.append(f"| {task.value} | {preference.value} | {label(old)} | {label(new)} | {mark} |")
            if moved:
                changed.append((task, preference, old.model_id, new.model_id))
    if not changed:
        return "\n".join(lines)
    lines += ["", "### Why: the posteriors of the old and new top model, previous → now", ""]
    lines += ["| cell | model | " + " | ".join(label for label, _, _ in MOVED) + " |", "|---|---|" + "---|" * len(MOVED)]
    for task, preference, old_model, new_model in changed:
        for model in (old_model, new_model):
            cells = [_delta(before, after, task, model, column, fmt) for _, column, fmt in MOVED]
            cell = f'<a id="{_anchor(task, preference)}"></a>{task.value}/{preference.value}'
            lines.append(f"| {cell} | {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _value(frame: pl.DataFrame | None, task: TaskType, model: str, column: str) -> float | None:
    if frame is None or column not in frame.columns:
        return None
    hit = frame.filter((pl.col("task_type") == task.value) & (pl.col("model_id") == model))
    return hit[column][0] if hit.height else None


def _delta(before: pl.DataFrame | None, after: pl.DataFrame | None, task: TaskType, model: str, column: str, fmt: str) -> str:
    old, new = _value(before, task, model, column), _value(after, task, model, column)
    show = lambda v: "?" if v is None else fmt.format(v)  # noqa: E731
    return f"{show(old)} → {show(new)}"
