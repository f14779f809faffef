"""The off-policy estimators (:mod:`routing_pipelines.learning.estimators`) against simulator
ground truth: how far their values land from the true value of a target policy, and how often
their 95% intervals cover it.

Ground truth: a shipped scenario's registry and true model behaviour (``stationary`` by default)
on one task type (by default the one with the most enabled models, the first in ``TaskType``
order on a tie: ``code_generation``, 7 models, in every shipped scenario). Per replicate ``r``
(``numpy.random.default_rng(base_seed + r)``):

* a logged and a target policy over the task's enabled models, each ``Dirichlet(2, …)`` mixed
  with a 5% exploration floor spread evenly (every propensity ≥ 5%/K, as the router's rules
  keep it); the target is redrawn until its top model differs from the logged policy's;
* ``rows`` logged decisions from the logged policy, each with an outcome drawn from that
  model's truth with the distributions of :func:`~routing_pipelines.simulation.simulator.draw_outcome`
  (vectorised; the success/partial/failure cuts are its own :func:`~routing_pipelines.simulation.simulator.outcome_cuts`);
* the direct model for doubly robust: the pipeline's real posteriors from those rows
  (``statistics.daily_stats`` → ``statistics.weighted_totals`` of the one day →
  ``posteriors.compute_posteriors``);
* the estimates: ``evaluation.logged_feedback`` joins the decisions to their outcomes and
  ``evaluation.off_policy_estimates`` judges the target on all four objectives, one preference
  cell each over the same logged rows (quality; cost_efficient: cost per request; balanced:
  quality per dollar; latency).

True values of a policy ``π`` (per request): quality ``Σ π(a)·q_a``; latency
``Σ π(a)·median_a·exp(s_a²/2)`` (log-normal mean); cost ``Σ π(a)·cost_a·E[tokens_a] / typical``,
with ``E[tokens]`` of ``max(1, int(X))``, ``X`` log-normal, computed exactly as
``1 + Σ_{k≥2} P(X ≥ k)``; quality per dollar: true ``E_π[q] / E_π[c]`` (total quality over total
spend, what the balanced objective estimates). The paired improvement is judged against the true
``±(V_target / V_logged − 1)`` (positive = better; lower is better for cost and latency).

No Dagster: numpy, scipy and polars only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import stats

from routing_pipelines.learning import evaluation, posteriors, statistics
from routing_pipelines.learning.estimators import OBJECTIVES, Objective
from routing_pipelines.simulation.scenarios import load_scenario
from routing_pipelines.simulation.simulator import TOKENS_SPREAD, Scenario, outcome_cuts, true_cost
from routing_runtime.registry import ModelRegistry
from routing_runtime.types import RoutingPreference, TaskType

DEFAULT_SCENARIO = "stationary"
#: Share of each policy spread evenly over the models, as the router's exploration floor.
FLOOR = 0.05
#: Dirichlet concentration of the random policies: 2 gives varied, rarely degenerate mixtures.
CONCENTRATION = 2.0
LEVEL = 0.95
#: The estimates judged: the logged policy's own value, the target by SNIPS and by doubly robust,
#: and the target's paired relative improvement over the logged policy (by SNIPS, what the
#: publication gate judges by, and by doubly robust).
ESTIMATES = ("logged", "snips", "dr", "improvement", "dr_improvement")
#: The true value each estimate is judged against (a column of the records).
TRUTH_OF = {"logged": "true_logged", "snips": "true_target", "dr": "true_target", "improvement": "true_improvement",
            "dr_improvement": "true_improvement"}
PREFERENCES = tuple(OBJECTIVES)


@dataclass(frozen=True)
class TaskTruth:
    """The true behaviour of one task type's enabled models, as arrays in ``models`` order."""

    task: TaskType
    models: tuple[str, ...]
    quality: np.ndarray
    success_below: np.ndarray     # outcome cuts of a uniform draw (simulator.outcome_cuts)
    partial_below: np.ndarray
    latency_median: np.ndarray
    latency_spread: np.ndarray
    tokens_median: np.ndarray     # the task's typical tokens × the model's tokens factor
    typical_tokens: int
    typical_cost: np.ndarray      # true cost of a request of the typical tokens (USD)
    expected_cost: np.ndarray     # E[cost per request] (USD)
    expected_latency: np.ndarray  # E[latency] (ms)


def expected_tokens(median: float, spread: float = TOKENS_SPREAD) -> float:
    """``E[max(1, int(X))]`` for ``X = median·exp(N(0, spread²))``: ``1 + Σ_{k≥2} P(X ≥ k)``,
    summed until the tail is below 1e-16 (exact up to rounding; the simulator truncates tokens to
    an integer, which costs about half a token against ``E[X]``).

    >>> round(expected_tokens(1600.0) - 1600.0 * math.exp(0.3 ** 2 / 2), 2)
    -0.5
    """
    top = int(math.ceil(median * math.exp(spread * 9.0))) + 2  # P(X ≥ top) < 1e-18
    k = np.arange(2, top + 1, dtype=float)
    return 1.0 + float(stats.lognorm.sf(k, s=spread, scale=median).sum())


def enabled_models(scenario: Scenario) -> list[str]:
    """The scenario's enabled registry models that have a truth, in registry order."""
    return [m.id for m in scenario.registry.models if m.enabled and m.id in scenario.truth]


def task_truth(scenario: Scenario, task: TaskType) -> TaskTruth:
    """The true behaviour of ``task``'s enabled models (every enabled model serves every task)."""
    ids = enabled_models(scenario)
    if len(ids) < 2:
        raise ValueError(f"scenario={scenario.name!r} has {len(ids)} enabled model(s) with a truth: an off-policy "
                         "comparison needs at least 2; enable more models in its registry")
    registry = scenario.registry
    policy = registry.policy(task)
    truths = [scenario.truth[m] for m in ids]
    cuts = np.array([outcome_cuts(t.quality[task], t.partial_share) for t in truths])
    tokens_median = np.array([policy.typical_tokens * t.tokens_factor for t in truths])
    typical_cost = np.array([true_cost(registry, t, registry.get(m), task) for m, t in zip(ids, truths)])
    latency_median = np.array([t.latency_ms for t in truths])
    latency_spread = np.array([t.latency_spread for t in truths])
    return TaskTruth(
        task=task, models=tuple(ids), quality=np.array([t.quality[task] for t in truths]),
        success_below=cuts[:, 0], partial_below=cuts[:, 1],
        latency_median=latency_median, latency_spread=latency_spread,
        tokens_median=tokens_median, typical_tokens=policy.typical_tokens, typical_cost=typical_cost,
        expected_cost=typical_cost * np.array([expected_tokens(m) for m in tokens_median]) / policy.typical_tokens,
        expected_latency=latency_median * np.exp(latency_spread ** 2 / 2),
    )


def default_task(scenario: Scenario) -> TaskType:
    """The task type with the most enabled models (the first in ``TaskType`` order on a tie)."""
    counts = {task: len(enabled_models(scenario)) for task in TaskType}
    return max(TaskType, key=lambda task: counts[task])


def policy_value(truth: TaskTruth, policy: np.ndarray, objective: Objective) -> float:
    """The true value of ``policy`` (probabilities in ``truth.models`` order) on ``objective``."""
    means = {"quality": truth.quality, "cost": truth.expected_cost, "latency": truth.expected_latency}
    value = float(policy @ means[objective.numerator])
    return value if objective.denominator is None else value / float(policy @ means[objective.denominator])


def draw_policy(rng: np.random.Generator, k: int, floor: float = FLOOR, concentration: float = CONCENTRATION) -> np.ndarray:
    """``(1 − floor)·Dirichlet(concentration, …) + floor / k``: every probability ≥ floor / k."""
    return (1.0 - floor) * rng.dirichlet(np.full(k, concentration)) + floor / k


def draw_policies(rng: np.random.Generator, k: int, floor: float = FLOOR,
                  concentration: float = CONCENTRATION) -> tuple[np.ndarray, np.ndarray]:
    """A logged and a target policy whose top models differ."""
    logged = draw_policy(rng, k, floor, concentration)
    while True:
        target = draw_policy(rng, k, floor, concentration)
        if int(target.argmax()) != int(logged.argmax()):
            return logged, target


def draw_logs(rng: np.random.Generator, truth: TaskTruth, logged: np.ndarray, n: int, day: dt.date) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``n`` decisions of the logged policy and their outcomes, as the store's ``routing_decisions``
    and ``model_performance`` tables hold them (the columns the learning reads)."""
    chosen = np.minimum(np.searchsorted(np.cumsum(logged), rng.random(n), side="right"), len(logged) - 1)
    u = rng.random(n)
    outcome = np.where(u < truth.success_below[chosen], "success", np.where(u < truth.partial_below[chosen], "partial", "failure"))
    latency = truth.latency_median[chosen] * np.exp(rng.standard_normal(n) * truth.latency_spread[chosen])
    tokens = np.maximum(1, (truth.tokens_median[chosen] * np.exp(rng.standard_normal(n) * TOKENS_SPREAD)).astype(np.int64))
    cost = truth.typical_cost[chosen] * tokens / truth.typical_tokens
    ids = pl.Series("id", np.arange(n)).cast(pl.String)
    models = pl.Series("model_id", np.array(truth.models)[chosen])
    decisions = pl.DataFrame({
        "id": ids, "task_type": truth.task.value, "preference": RoutingPreference.QUALITY.value, "selected_model": models,
        "propensity": logged[chosen], "excluded": pl.Series([None] * n, dtype=pl.String),
        "selection_reason": pl.Series([None] * n, dtype=pl.String),
    }).with_columns(pl.lit(day).alias("day"))
    performance = pl.DataFrame({
        "decision_id": ids, "model_id": models, "task_type": truth.task.value, "outcome": outcome,
        "quality_score": pl.Series([None] * n, dtype=pl.Float64), "latency_ms": latency, "cost_usd": cost, "tokens_used": tokens,
    })
    return decisions, performance


def direct_model(performance: pl.DataFrame, registry: ModelRegistry, day: dt.date) -> pl.DataFrame:
    """The pipeline's posteriors from one day of ``model_performance`` rows, as of that day."""
    daily = statistics.daily_stats(performance).with_columns(pl.lit(day).alias("day"))
    totals = statistics.weighted_totals(daily.lazy(), day, registry.learning.half_life_days)
    return posteriors.compute_posteriors(totals, registry)


def policy_frame(truth: TaskTruth, policy: np.ndarray) -> pl.DataFrame:
    """``policy`` as candidate rules: the same mixture in every preference cell of the task."""
    return pl.DataFrame({
        "task_type": truth.task.value,
        "preference": [p.value for p in PREFERENCES for _ in truth.models],
        "model_id": list(truth.models) * len(PREFERENCES),
        "selection_probability": np.tile(policy, len(PREFERENCES)),
    })


def replicate(truth: TaskTruth, registry: ModelRegistry, seed: int, rows: int, day: dt.date) -> list[dict]:
    """One replicate: per preference, the true values and what ``off_policy_estimates`` said."""
    rng = np.random.default_rng(seed)
    logged, target = draw_policies(rng, len(truth.models))
    decisions, performance = draw_logs(rng, truth, logged, rows, day)
    direct = direct_model(performance, registry, day)
    feedback = evaluation.logged_feedback(decisions.lazy(), performance.lazy()).collect()
    # The same logged rows in each preference cell: each cell is judged on its own objective.
    feedback = pl.concat([feedback.with_columns(pl.lit(p.value).alias("preference")) for p in PREFERENCES])
    estimates = evaluation.off_policy_estimates(feedback, policy_frame(truth, target), direct, LEVEL)
    records = []
    for row in estimates.filter(pl.col("task_type") == truth.task.value).iter_rows(named=True):
        objective = OBJECTIVES[RoutingPreference(row["preference"])]
        v_target, v_logged = policy_value(truth, target, objective), policy_value(truth, logged, objective)
        sign = 1.0 if objective.higher_is_better else -1.0
        records.append({
            "replicate": seed, "preference": row["preference"], "objective": objective.name, "n": row["n"],
            "effective_sample_size": row["effective_sample_size"],
            "true_logged": v_logged, "true_target": v_target, "true_improvement": sign * (v_target / v_logged - 1.0),
            **{k: row[k] for k in row if k.split("_")[0] in ESTIMATES},
        })
    return records


@dataclass
class Validation:
    """What :func:`validate` measured: one record per replicate and preference, and the summary."""

    scenario: str
    task: TaskType
    models: tuple[str, ...]
    replicates: int
    rows: int
    seed: int
    records: pl.DataFrame
    summary: pl.DataFrame

    def as_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("records", "summary")}
        return data | {"task": self.task.value, "models": list(self.models), "summary": self.summary.to_dicts()}


def validate(replicates: int, rows: int, seed: int = 0, scenario: str = DEFAULT_SCENARIO, task: TaskType | None = None,
             progress: Callable[[int], None] | None = None) -> Validation:
    """``replicates`` seeded replicates (seeds ``seed`` … ``seed + replicates − 1``) of ``rows``
    logged decisions each; ``progress(done)`` is called after each replicate."""
    if replicates < 1 or rows < 2:
        raise ValueError(f"replicates={replicates} and rows={rows} must be at least 1 and 2")
    world = load_scenario(scenario)
    task = task or default_task(world)
    truth = task_truth(world, task)
    records: list[dict] = []
    for r in range(replicates):
        records.extend(replicate(truth, world.registry, seed + r, rows, world.start))
        if progress:
            progress(r + 1)
    frame = pl.DataFrame(records)
    return Validation(world.name, task, truth.models, replicates, rows, seed, frame, summarise(frame))


def summarise(records: pl.DataFrame) -> pl.DataFrame:
    """Per preference and estimate: errors, coverage and interval width over the replicates.

    For the values (logged, snips, dr) errors and half-widths are relative to the true value
    ``|V̂ − V| / |V|``; for the improvement (already relative) they are absolute differences of
    relative improvements; ``bias`` is their signed mean. ``coverage``: share of replicates whose interval holds the truth.
    """
    out = []
    for preference in PREFERENCES:
        cell = records.filter(pl.col("preference") == preference.value)
        for estimate in ESTIMATES:
            truth = cell[TRUTH_OF[estimate]].to_numpy()
            value, low, high = (cell[f"{estimate}_{part}"].cast(pl.Float64).fill_null(math.nan).to_numpy()
                                for part in ("value", "low", "high"))
            scale = np.ones_like(truth) if estimate.endswith("improvement") else np.abs(truth)
            signed = (value - truth) / scale
            error = np.abs(signed)
            out.append({
                "preference": preference.value, "objective": OBJECTIVES[preference].name, "estimate": estimate,
                "replicates": cell.height, "failed": int((~np.isfinite(value) | ~np.isfinite(low)).sum()),
                "median_error": float(np.nanmedian(error)), "mean_error": float(np.nanmean(error)), "bias": float(np.nanmean(signed)),
                "coverage": float(np.mean((low <= truth) & (truth <= high))),
                "mean_half_width": float(np.nanmean((high - low) / 2 / scale)),
                "median_ess": float(cell["effective_sample_size"].median()),
            })
    return pl.DataFrame(out)
