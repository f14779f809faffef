"""Routing rules: what each preference means, and how a rule set is built from estimates.

Pure functions over plain data, shared by ``routing init`` (estimates from registry priors)
and the nightly learning run (estimates from posteriors, probabilities from Thompson sampling).
:data:`PREFERENCES` is the one place a preference's meaning is written: the runtime's ranking,
the learning run's Thompson sampling, the simulator's truth and the benchmarks all read it.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterable, Mapping

from routing_runtime.types import Cell, RoutingPreference, TaskType, all_cells

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from routing_runtime.registry import ModelRegistry, TaskPolicy

#: Costs below this (USD per request) count as this much in a quality-per-dollar ratio, so a
#: free model ranks by its quality among free models instead of dividing by zero.
MIN_COST_USD = 1e-12


def _at_least(value, floor: float):
    """``max(value, floor)`` for a number, element-wise for a NumPy array or Polars series."""
    return max(value, floor) if isinstance(value, (int, float)) else value.clip(floor)


class PreferenceSpec(namedtuple("PreferenceSpec", "objective uses_thresholds summary")):
    """What one :class:`RoutingPreference` means.

    ``objective(quality, cost_usd, latency_ms)``: higher is better; it takes numbers or
    NumPy arrays (element-wise, as Thompson sampling applies it to posterior draws).
    ``uses_thresholds``: only eligible models (``min_quality_score``, ``max_cost_per_1k``) are
    ranked by the objective; ``False`` ranks every enabled model. ``summary``: the objective in
    words, as selection reasons say it.

    >>> spec = PREFERENCES[RoutingPreference.BALANCED]
    >>> spec.objective(0.8, 0.002, 900.0)
    400.0
    >>> spec.description
    'highest expected quality per dollar among eligible models'
    >>> PREFERENCES[RoutingPreference.QUALITY].description
    'highest expected quality, thresholds ignored'
    """

    __slots__ = ()

    objective: Callable
    uses_thresholds: bool
    summary: str

    @property
    def description(self) -> str:
        """One line for help texts: the objective and whether thresholds apply."""
        return f"{self.summary} among eligible models" if self.uses_thresholds else f"{self.summary}, thresholds ignored"


#: The meaning of every preference (README, "What each preference means"). Adding a member
#: to :class:`RoutingPreference` needs an entry here; the check below fails loudly otherwise.
PREFERENCES: Mapping[RoutingPreference, PreferenceSpec] = {
    RoutingPreference.QUALITY: PreferenceSpec(
        lambda quality, cost, latency: quality, False, "highest expected quality"),
    RoutingPreference.COST_EFFICIENT: PreferenceSpec(
        lambda quality, cost, latency: -cost, True, "lowest expected cost"),
    RoutingPreference.BALANCED: PreferenceSpec(
        lambda quality, cost, latency: quality / _at_least(cost, MIN_COST_USD), True, "highest expected quality per dollar"),
    RoutingPreference.LATENCY: PreferenceSpec(
        lambda quality, cost, latency: -latency, True, "lowest expected latency"),
}


def check_preferences_complete(specs: Mapping[RoutingPreference, PreferenceSpec] = PREFERENCES) -> None:
    """Raise ``RuntimeError`` unless ``specs`` covers :class:`RoutingPreference` exactly.

    >>> check_preferences_complete()
    >>> check_preferences_complete({})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    RuntimeError: routing_runtime.rules.PREFERENCES has no spec for quality, cost_efficient, balanced, latency: ...
    """
    missing = [p.value for p in RoutingPreference if p not in specs]
    extra = [str(p) for p in specs if p not in set(RoutingPreference)]
    if missing:
        raise RuntimeError(
            f"routing_runtime.rules.PREFERENCES has no spec for {', '.join(missing)}:"
            " add a PreferenceSpec (objective, uses_thresholds, summary) for each there"
        )
    if extra:
        raise RuntimeError(f"routing_runtime.rules.PREFERENCES has specs for unknown preferences: {', '.join(extra)}")


check_preferences_complete()


# Plain named tuples rather than dataclasses: `import routing_runtime` stays cheap.
class ModelEstimate(namedtuple(
    "ModelEstimate",
    "model_id task_type expected_quality expected_cost_usd expected_latency_ms expected_cost_per_1k is_specialized is_enabled",
    defaults=(True,),
)):
    """What we expect of one model on one task type: quality (0..1), cost per request (USD),
    latency (ms), cost per 1k tokens (USD, for ``max_cost_per_1k``), specialisation, enabled."""

    __slots__ = ()


class RuleRow(namedtuple(
    "RuleRow",
    "task_type preference model_id priority is_specialized is_enabled is_eligible min_quality_score"
    " max_cost_per_1k selection_probability expected_quality expected_cost_usd expected_latency_ms"
    " expected_cost_per_1k",
)):
    """One row of ``model_routing_rules``: a model's place for a (task type, preference)."""

    __slots__ = ()


def meets_thresholds(policy: TaskPolicy, quality, cost_per_1k):
    """Quality at least ``min_quality_score`` and cost per 1k tokens at most ``max_cost_per_1k``
    (when set): a bool for numbers, element-wise for NumPy arrays of posterior draws.

    >>> from routing_runtime.registry import TaskPolicy
    >>> policy = TaskPolicy(min_quality_score=0.7, max_cost_per_1k=0.01, typical_input_tokens=1000, typical_output_tokens=500)
    >>> meets_thresholds(policy, 0.8, 0.005), meets_thresholds(policy, 0.8, 0.02), meets_thresholds(policy, 0.6, 0.005)
    (True, False, False)
    """
    ok = quality >= policy.min_quality_score
    if policy.max_cost_per_1k is not None:
        ok = ok & (cost_per_1k <= policy.max_cost_per_1k)
    return ok


def is_eligible(estimate: ModelEstimate, policy: TaskPolicy, preference: RoutingPreference) -> bool:
    """Enabled and, for a preference that uses them, within the task's thresholds."""
    if not estimate.is_enabled:
        return False
    if not PREFERENCES[preference].uses_thresholds:
        return True
    return bool(meets_thresholds(policy, estimate.expected_quality, estimate.expected_cost_per_1k))


def _sort_key(preference: RoutingPreference):
    objective = PREFERENCES[preference].objective

    # Specialists win ties, then higher quality, then the id, so the order is deterministic.
    def key(e: ModelEstimate):
        score = objective(e.expected_quality, e.expected_cost_usd, e.expected_latency_ms)
        return (-score, not e.is_specialized, -e.expected_quality, e.model_id)
    return key


#: With no eligible model, the enabled ones rank by this preference's objective (highest Q).
NO_ELIGIBLE_FALLBACK = RoutingPreference.QUALITY


def rank(estimates: Iterable[ModelEstimate], policy: TaskPolicy, preference: RoutingPreference) -> list[tuple[ModelEstimate, bool]]:
    """Priority order with eligibility: eligible models by the preference's objective, then
    enabled but ineligible models by quality (last resorts), then disabled models."""
    estimates = list(estimates)
    eligible = sorted((e for e in estimates if is_eligible(e, policy, preference)), key=_sort_key(preference))
    ineligible = sorted(
        (e for e in estimates if e.is_enabled and not is_eligible(e, policy, preference)),
        key=_sort_key(NO_ELIGIBLE_FALLBACK),
    )
    disabled = sorted((e for e in estimates if not e.is_enabled), key=lambda e: e.model_id)
    return [(e, True) for e in eligible] + [(e, False) for e in ineligible] + [(e, False) for e in disabled]


def build_rules(
    estimates: Mapping[TaskType, Iterable[ModelEstimate]],
    registry: ModelRegistry,
    best_probabilities: Mapping[Cell, Mapping[str, float]] | None = None,
    floors: Mapping[TaskType, float] | None = None,
) -> list[RuleRow]:
    """Rule rows for every (task type, preference).

    ``best_probabilities[Cell(task, preference)][model]`` is the probability that the model is the
    best eligible one (e.g. from Thompson sampling, where eligibility itself is uncertain); without
    it the top-ranked model is taken as best. Selection probabilities mix it with the exploration
    floor: ``floors[task]`` where given, else the registry's. With no eligible model at all, the
    highest-quality enabled model gets all traffic.
    """
    rows: list[RuleRow] = []
    by_task = {task: list(estimates.get(task, ())) for task in TaskType}
    for cell in all_cells():
        task, preference = cell
        policy = registry.policy(task)
        ranked = rank(by_task[task], policy, preference)
        top = [e for e, ok in ranked if ok]
        if top:
            enabled_ids = {e.model_id for e, _ in ranked if e.is_enabled}
            cell_best = (best_probabilities or {}).get(cell) or {}
            best = {m: p for m, p in cell_best.items() if m in enabled_ids}
            key = _sort_key(preference)
            tied = [e.model_id for e in top if key(e)[0] == key(top[0])[0]]
            floor = (floors or {}).get(task, registry.learning.exploration_floor)
            probabilities = _selection_probabilities([e.model_id for e in top], best, floor, tied)
        else:
            # No model eligible by its expected values: the highest-quality enabled one, alone.
            fallback = next((e.model_id for e, _ in ranked if e.is_enabled), None)
            probabilities = {fallback: 1.0} if fallback else {}
        for priority, (e, ok) in enumerate(ranked, start=1):
            rows.append(RuleRow(
                task_type=task, preference=preference, model_id=e.model_id, priority=priority,
                is_specialized=e.is_specialized, is_enabled=e.is_enabled, is_eligible=ok,
                min_quality_score=policy.min_quality_score, max_cost_per_1k=policy.max_cost_per_1k,
                selection_probability=round(probabilities.get(e.model_id, 0.0), 6),
                expected_quality=e.expected_quality, expected_cost_usd=e.expected_cost_usd,
                expected_latency_ms=e.expected_latency_ms, expected_cost_per_1k=e.expected_cost_per_1k,
            ))
    return rows


def _selection_probabilities(
    eligible: list[str], best: Mapping[str, float] | None, floor: float, tied: list[str],
) -> dict[str, float]:
    """Mix P(best) with the exploration floor.

    With posterior probabilities, the floor is spread over the models still in contention (those
    ``best`` names: plausibly eligible and winning at least one posterior draw), so clearly worse
    models stop costing traffic. Without them (registry rules), the top-ranked models (``tied``
    share the mass evenly) get the rest and the floor is spread over every eligible model.
    """
    if best:
        pool = [m for m, p in best.items() if p > 0] or list(best)
        mass = {m: max(0.0, float(best[m])) for m in pool}
    else:
        pool = list(eligible)
        mass = {m: 1.0 for m in tied} if tied else {}
    if not pool:
        return {}
    total = sum(mass.values())
    if total <= 0:
        mass, total = {pool[0]: 1.0}, 1.0
    share = floor / len(pool) if len(pool) > 1 else 0.0
    spread = share * len(pool)
    return {m: (1.0 - spread) * mass.get(m, 0.0) / total + share for m in pool}


def registry_estimates(registry: ModelRegistry) -> dict[TaskType, list[ModelEstimate]]:
    """Estimates before any evidence: registry priors and list prices."""
    estimates: dict[TaskType, list[ModelEstimate]] = {}
    for task in TaskType:
        policy = registry.policy(task)
        estimates[task] = [
            ModelEstimate(
                model_id=m.id,
                task_type=task,
                expected_quality=m.prior_quality_for(task),
                expected_cost_usd=policy.cost_per_request(m),
                expected_latency_ms=m.typical_latency_ms,
                expected_cost_per_1k=policy.cost_per_request(m) / policy.typical_tokens * 1000.0,
                is_specialized=m.is_specialized(task),
                is_enabled=m.enabled,
            )
            for m in registry.models
        ]
    return estimates
