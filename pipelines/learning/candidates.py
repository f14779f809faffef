"""From posteriors to a candidate rule set: batched Thompson sampling and the runtime's ranking."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import polars as pl

from routing_pipelines.learning import statistics
from routing_pipelines.learning.posteriors import families as posterior_families
from routing_runtime.registry import ModelRegistry
from routing_runtime.rules import PREFERENCES, ModelEstimate, RuleRow, build_rules, meets_thresholds, registry_estimates
from routing_runtime.compiled_rules import RuleSet
from routing_runtime.types import Cell, RoutingPreference, TaskType, all_cells


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
    excluded: frozenset[tuple[str, str]] = frozenset(),
) -> dict[Cell, dict[str, float]]:
    """P(model is the best eligible one) per cell, by sampling the posteriors ``draws`` times
    (default: the registry's ``thompson_draws``). A model eligible in fewer draws than the
    registry's ``plausibly_eligible`` share gets no traffic, not even exploration. The
    ``excluded`` (task type, model) pairs never win: the probabilities are then those of being
    best among the others, from the same draws."""
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
        candidates_allowed = np.array([(task.value, m) not in excluded for m in ids])
        for preference, spec in PREFERENCES.items():
            objective = spec.objective(quality, cost, latency)
            eligible = meets_threshold if spec.uses_thresholds else np.broadcast_to(enabled, objective.shape)
            plausible = eligible.mean(axis=0) >= plausibly_eligible
            usable = eligible & plausible & candidates_allowed
            draws_with_choice = usable.any(axis=1)
            if not draws_with_choice.any():
                continue
            winners = np.where(usable, objective, -np.inf)[draws_with_choice].argmax(axis=1)
            wins = np.bincount(winners, minlength=len(ids)) / draws_with_choice.sum()
            # The most promising are ranked among every plausible model, excluded or not, so the
            # gated rules (``excluded``) spare the same models as the learned ones.
            ranked = [i for i in range(len(ids)) if plausible[i]]
            spared = most_promising([ids[i] for i in ranked], objective[:, ranked], registry.learning.always_explored)
            result[Cell(task, preference)] = without_long_shots(
                {ids[i]: float(wins[i]) for i in ranked if candidates_allowed[i]}, registry.learning.min_best_probability, spared,
            )
    return result


def most_promising(ids: list[str], objective: np.ndarray, count: int) -> frozenset[str]:
    """The ``count`` models of ``ids`` with the highest posterior mean of the cell's objective
    (``objective``: posterior draws x models; a draw that is not finite is left out of the mean).

    >>> draws = np.array([[0.9, 0.5, 0.1], [0.7, 0.6, np.inf], [0.8, 0.7, np.nan]])
    >>> sorted(most_promising(["a", "b", "c"], draws, 2))
    ['a', 'b']
    >>> most_promising(["a", "b", "c"], draws, 0)
    frozenset()
    """
    finite = np.isfinite(objective)
    counted = finite.sum(axis=0)
    means = np.where(counted > 0, np.where(finite, objective, 0.0).sum(axis=0) / np.maximum(counted, 1), -np.inf)
    return frozenset(ids[i] for i in np.argsort(-means, kind="stable")[:count])


def without_long_shots(best: dict[str, float], least: float, spared: frozenset[str] = frozenset()) -> dict[str, float]:
    """P(best) of one cell without the long shots: the models below ``least`` (the registry's
    ``min_best_probability``) that are not ``spared`` (the cell's ``always_explored`` most
    promising, :func:`most_promising`) leave the cell's contention, and the others are scaled up
    to sum as before. A long shot then gets neither its Thompson share nor the exploration floor,
    which ``build_rules`` spreads over the models in contention, and the publication gate does
    not hold it either. With ``least`` 0, with no long shot (as in a cell of at most
    ``always_explored`` models), or when nothing would be left, ``best`` itself.

    >>> without_long_shots({"a": 0.9, "b": 0.095, "c": 0.005}, 0.01)
    {'a': 0.9045226130653267, 'b': 0.09547738693467336}
    >>> without_long_shots({"a": 0.9, "b": 0.095, "c": 0.005}, 0.01, spared=frozenset({"a", "c"}))
    {'a': 0.9, 'b': 0.095, 'c': 0.005}
    >>> without_long_shots({"a": 0.9, "b": 0.095, "c": 0.005}, 0.0)
    {'a': 0.9, 'b': 0.095, 'c': 0.005}
    """
    long_shots = {m for m, p in best.items() if p < least and m not in spared}
    kept = sum(p for m, p in best.items() if m not in long_shots)
    if least <= 0 or not long_shots or kept <= 0:
        return best
    total = sum(best.values())
    return {m: p * total / kept for m, p in best.items() if m not in long_shots}


def exploration_floors(posteriors: pl.DataFrame, registry: ModelRegistry) -> dict[TaskType, float]:
    """Per task type, the exploration floor its evidence still calls for: the registry's
    ``exploration_floor`` while the task type has at most ``exploration_floor_evidence``
    effective (forgotten) observations (500 by default), then shrinking as
    √(``exploration_floor_evidence`` / n); with ``exploration_floor_evidence`` 0, the floor as it is.

    Thompson sampling explores on its own where posteriors are wide; the floor is insurance
    (models out of favour stay watched, the logs keep off-policy support), and a fixed one is a
    fixed cost on a stationary cell: 5% spread over 19 models gave up 3.7% of the best model's
    quality on the math replay. Forgetting bounds n, so the floor never reaches 0: with 300
    requests a day, n levels off near 13,000 at a 30-day half-life (a floor of about 1%) and near
    78,000 at the 180-day half-life of steady cells (about 0.4%). The floor is
    also what gathered the runners-up's evidence before a collapse of the top model: without the
    cross-task prior (``posteriors.cross_task_priors``), shrinking it made the drift scenario's
    worst cell follow in up to 5 nights instead of 2-3.

    >>> import dataclasses
    >>> frame = pl.DataFrame({"task_type": ["math", "math", "debugging"], "n_effective": [1500.0, 500.0, 100.0]})
    >>> default = ModelRegistry.load_default()
    >>> floors = exploration_floors(frame, default)
    >>> round(floors[TaskType.MATH], 4), floors[TaskType.DEBUGGING], floors[TaskType.TESTING]
    (0.025, 0.05, 0.05)
    >>> fixed = dataclasses.replace(default, learning=dataclasses.replace(default.learning, exploration_floor_evidence=0.0))
    >>> set(exploration_floors(frame, fixed).values())
    {0.05}
    """
    settings = registry.learning
    if not settings.exploration_floor_evidence:
        return dict.fromkeys(TaskType, settings.exploration_floor)
    evidence = dict(posteriors.group_by("task_type").agg(statistics.exact_sum(pl.col("n_effective"))).iter_rows())
    return {
        task: settings.exploration_floor * min(1.0, (settings.exploration_floor_evidence / max(evidence.get(task.value, 0.0), 1e-9)) ** 0.5)
        for task in TaskType
    }


class Hold(NamedTuple):
    """A model held to the rules in force in a cell: the candidate as learned gives it more
    traffic than the rules in force, on evidence mostly not tied to decisions."""

    cell: Cell
    model_id: str
    learned_share: float
    logged_share: float
    published_share: float
    untied_share: float

    def to_json(self) -> dict:
        return {"task_type": self.cell.task_type.value, "preference": self.cell.preference.value, "model_id": self.model_id,
                **{f: round(getattr(self, f), 6) for f in _HOLD_SHARES}}

    @classmethod
    def from_json(cls, document: dict) -> Hold:
        cell = Cell(TaskType(document["task_type"]), RoutingPreference(document["preference"]))
        return cls(cell, document["model_id"], *(float(document[f]) for f in _HOLD_SHARES))


_HOLD_SHARES = ("learned_share", "logged_share", "published_share", "untied_share")


class Candidate(NamedTuple):
    """The next rule set as learned, and held to a safe step (what the gate publishes)."""

    learned: list[RuleRow]
    gated: list[RuleRow]
    holds: list[Hold]


def untied_shares(posteriors: pl.DataFrame, registry: ModelRegistry) -> dict[tuple[str, str], float]:
    """Per (task type, model): the share of its posterior's weight (the registry prior's
    pseudo-count included) that comes from outcomes not tied to a routing decision, which
    off-policy evaluation cannot check. The pseudo-count the model's record on its other task
    types adds (``posteriors.cross_task_priors``) is left out of the weight: those outcomes may be
    untied as well, and counting them as checked would let untied evidence past the gate."""
    untied = (pl.col("n_effective") - pl.col("n_tied_effective")).clip(0.0)
    weight = pl.col("registry_prior_count") + pl.col("n_effective")
    shares = posteriors.select("task_type", "model_id", (untied / weight).alias("share"))
    return {(t, m): share for t, m, share in shares.iter_rows()}


def candidate_rules(
    posteriors: pl.DataFrame, registry: ModelRegistry, *, seed: int = 0, in_force: list[RuleRow] | None = None,
) -> Candidate:
    """The next rule set. A task type without any evidence keeps the registry's rules (its top
    model and the floor): sampling wide priors would scatter its traffic for no reason.

    The gated rules take a safe step from ``in_force`` (the rules serving the logged traffic),
    in the manner of safe policy improvement with baseline bootstrapping: a model whose posterior
    rests mostly on outcomes not tied to decisions (above ``gate_max_untied_share``) keeps at most
    its share in force; the rest of the cell goes to the others by their probability of being
    best among themselves.
    """
    estimates = estimates_from_posteriors(posteriors)
    best = best_probabilities(posteriors, registry, seed=seed)
    seen = dict(posteriors.group_by("task_type").agg(pl.col("n_raw").sum()).iter_rows())
    priors = registry_estimates(registry)
    for task in TaskType:
        if not seen.get(task.value):
            estimates[task] = priors[task]
            best = {cell: p for cell, p in best.items() if cell.task_type is not task}
    floors = exploration_floors(posteriors, registry)
    learned = build_rules(estimates, registry, best, floors)
    shares = untied_shares(posteriors, registry)
    unvouched = frozenset(key for key, share in shares.items() if share > registry.learning.gate_max_untied_share)
    in_force_share = {(Cell(r.task_type, r.preference), r.model_id): r.selection_probability for r in in_force or []}
    learned_share = {(Cell(r.task_type, r.preference), r.model_id): r.selection_probability for r in learned}
    pushed = {
        cell: [m for m, p in cell_best.items() if (cell.task_type.value, m) in unvouched and p > 0
               and learned_share.get((cell, m), 0.0) > in_force_share.get((cell, m), 0.0) + _SHARE_TOLERANCE]
        for cell, cell_best in best.items()
    }
    pushed = {cell: models for cell, models in pushed.items() if models}
    if not pushed:
        return Candidate(learned, learned, [])
    among_vouched = best_probabilities(posteriors, registry, seed=seed, excluded=unvouched)
    safe = dict(best)
    for cell in pushed:
        floor = floors[cell.task_type]
        held = {m: p for m, p in best[cell].items() if (cell.task_type.value, m) in unvouched}
        others = among_vouched.get(cell) or {}
        if not others:  # nothing the logs vouch for: the cell keeps the rules in force
            safe[cell] = {m: p for (c, m), p in in_force_share.items() if c == cell}
            continue
        # The exploration floor comes on top of P(best) (``build_rules``): a held model's P(best)
        # is set so that with the floor it gets its share in force, never more (else it would
        # creep up night after night); one in force at the floor keeps being tried, one below it
        # (out of contention) stays out.
        pool = len({*held, *(m for m, p in others.items() if p > 0)})
        floor_share = floor / pool if pool > 1 else 0.0
        kept = {}
        for m, p in held.items():
            share = in_force_share.get((cell, m), 0.0)
            if share + _SHARE_TOLERANCE >= floor_share:  # below the floor, it leaves the cell's contention
                kept[m] = max(_SHARE_TOLERANCE, min(p, (share - floor_share) / (1.0 - floor_share * pool)))
        rest = max(0.0, 1.0 - sum(kept.values()))
        safe[cell] = {**kept, **{m: rest * p for m, p in others.items()}}
    gated = build_rules(estimates, registry, safe, floors)
    gated_share = {(Cell(r.task_type, r.preference), r.model_id): r.selection_probability for r in gated}
    holds = [
        Hold(cell, m, learned_share.get((cell, m), 0.0), in_force_share.get((cell, m), 0.0), gated_share.get((cell, m), 0.0),
             shares[(cell.task_type.value, m)])
        for cell, models in sorted(pushed.items(), key=lambda item: item[0].label) for m in models
    ]
    return Candidate(learned, gated, holds)


#: Share changes below this are rounding, not a move.
_SHARE_TOLERANCE = 1e-6


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
