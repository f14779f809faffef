"""From posteriors to a candidate rule set: batched Thompson sampling and the runtime's ranking."""

from __future__ import annotations

import numpy as np
import polars as pl

from routing_pipelines.learning.posteriors import families as posterior_families
from routing_runtime.registry import ModelRegistry
from routing_runtime.rules import PREFERENCES, ModelEstimate, RuleRow, build_rules, meets_thresholds, registry_estimates
from routing_runtime.compiled_rules import RuleSet
from routing_runtime.types import Cell, TaskType, all_cells


def estimates_from_posteriors(posteriors: pl.DataFrame) -> dict[TaskType, list[ModelEstimate]]:
    estimates: dict[TaskType, list[ModelEstimate]] = {t: [] for t in TaskType}
    for r in posteriors.iter_rows(named=True):
        task = TaskType(r["task_type"])
        estimates[task].append(ModelEstimate(
            model_id=r["model_id"], task_type=task, expected_quality=r["quality_mean"],
            expected_cost_usd=r["cost_mean_usd"], expected_latency_ms=r["latency_mean_ms"],
            expected_cost_per_1k=r["cost_per_1k_usd"], is_specialized=r["is_specialized"], is_enabled=r["is_enabled"],
        ))
    return estimates


def best_probabilities(
    posteriors: pl.DataFrame, registry: ModelRegistry, *, draws: int | None = None, seed: int = 0,
) -> dict[Cell, dict[str, float]]:
    """P(model is the best eligible one) per cell, by sampling the posteriors ``draws`` times
    (default: the registry's ``thompson_draws``). A model eligible in fewer draws than the
    registry's ``plausibly_eligible`` share gets no traffic, not even exploration."""
    rng = np.random.default_rng(seed)
    draws = draws or registry.learning.thompson_draws
    plausibly_eligible = registry.learning.plausibly_eligible
    result: dict[Cell, dict[str, float]] = {}
    for task in TaskType:
        sub = posteriors.filter(pl.col("task_type") == task.value)
        if sub.height == 0:
            continue
        ids = sub["model_id"].to_list()
        family = posterior_families(sub)
        quality = family.quality.sample(rng, draws)
        cost = family.cost.sample(rng, draws)
        latency = family.latency.sample(rng, draws)
        policy = registry.policy(task)
        enabled = sub["is_enabled"].to_numpy()
        cost_per_1k = cost / sub["tokens_mean"].to_numpy() * 1000.0
        # Eligibility is judged per draw, so a model whose quality is uncertain near the threshold
        # keeps a chance (and the exploration floor) instead of being cut off by one unlucky day.
        meets_threshold = meets_thresholds(policy, quality, cost_per_1k) & enabled
        for preference, spec in PREFERENCES.items():
            objective = spec.objective(quality, cost, latency)
            eligible = meets_threshold if spec.uses_thresholds else np.broadcast_to(enabled, objective.shape)
            plausible = eligible.mean(axis=0) >= plausibly_eligible
            usable = eligible & plausible
            draws_with_choice = usable.any(axis=1)
            if not draws_with_choice.any():
                continue
            winners = np.where(usable, objective, -np.inf)[draws_with_choice].argmax(axis=1)
            wins = np.bincount(winners, minlength=len(ids)) / draws_with_choice.sum()
            result[Cell(task, preference)] = {m: float(w) for m, w, ok in zip(ids, wins, plausible) if ok}
    return result


def candidate_rules(posteriors: pl.DataFrame, registry: ModelRegistry, *, seed: int = 0) -> list[RuleRow]:
    """The next rule set. A task type without any evidence keeps the registry's rules (its top
    model and the floor): sampling wide priors would scatter its traffic for no reason."""
    estimates = estimates_from_posteriors(posteriors)
    best = best_probabilities(posteriors, registry, seed=seed)
    seen = dict(posteriors.group_by("task_type").agg(pl.col("n_raw").sum()).iter_rows())
    priors = registry_estimates(registry)
    for task in TaskType:
        if not seen.get(task.value):
            estimates[task] = priors[task]
            best = {cell: p for cell, p in best.items() if cell.task_type is not task}
    return build_rules(estimates, registry, best)


def rules_frame(rows: list[RuleRow]) -> pl.DataFrame:
    return pl.DataFrame([
        {**{f: getattr(r, f) for f in RuleRow._fields}, "task_type": r.task_type.value, "preference": r.preference.value}
        for r in rows
    ])


def coverage_problems(rows: list[RuleRow]) -> list[str]:
    """Every cell must send all its traffic to enabled models, and have one."""
    problems = []
    by_cell = rows_by_cell(rows)
    for cell in all_cells():
        cell_rows = by_cell.get(cell, [])
        total = sum(r.selection_probability for r in cell_rows)
        if not any(r.is_enabled and r.selection_probability > 0 for r in cell_rows):
            problems.append(f"{cell.label}: no enabled model receives traffic")
        elif abs(total - 1.0) > 1e-3:
            problems.append(f"{cell.label}: selection probabilities sum to {total:.4f}")
        if any(not r.is_enabled and r.selection_probability > 0 for r in cell_rows):
            problems.append(f"{cell.label}: a disabled model receives traffic")
    return problems


def rows_by_cell(rows: list[RuleRow]) -> dict[Cell, list[RuleRow]]:
    """Rule rows grouped by their cell, in their given order.

    >>> from routing_runtime.registry import ModelRegistry
    >>> rows = build_rules(registry_estimates(ModelRegistry.load_default()), ModelRegistry.load_default())
    >>> cells = rows_by_cell(rows)
    >>> sorted(cells) == sorted(all_cells()), cells[all_cells()[0]][0].priority
    (True, 1)
    """
    grouped: dict[Cell, list[RuleRow]] = {}
    for r in rows:
        grouped.setdefault(Cell(r.task_type, r.preference), []).append(r)
    return grouped


def rules_change_markdown(previous: RuleSet | None, rows: list[RuleRow]) -> str:
    """Per task type and preference: the top model and its share, before and after."""
    def top(cells):
        best = max(cells, key=lambda r: r.selection_probability, default=None)
        return f"{best.model_id} ({best.selection_probability:.0%})" if best else "-"

    lines = ["| task type | preference | previous top | new top | changed |", "|---|---|---|---|---|"]
    new_cells, old_cells = rows_by_cell(rows), rows_by_cell(previous.rows) if previous else {}
    for cell in all_cells():
        new = top(new_cells.get(cell, []))
        old = top(old_cells.get(cell, [])) if previous else "-"
        changed = "**yes**" if old.split(" ")[0] != new.split(" ")[0] else ""
        lines.append(f"| {cell.task_type.value} | {cell.preference.value} | {old} | {new} | {changed} |")
    return "\n".join(lines)
