"""A traffic simulator with known ground truth, driving the product only through its public
interface: ``ModelRouter.select_model`` / ``record_performance`` with ``at=`` timestamps,
``routing init`` for registry changes and ``routing learn`` each simulated night.

Everything it produces is synthetic: the "true" qualities, latencies and costs are what a
scenario says, so that tests and the demo can check the router against a known best model.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from routing_runtime import ModelRouter, RoutingPreference, TaskType
from routing_runtime.admin import initialise
from routing_runtime.registry import ModelConfig, ModelRegistry
from routing_runtime.rules import NO_ELIGIBLE_FALLBACK, PREFERENCES, meets_thresholds

EVENT_KINDS = ("quality_drop", "add_model", "price_change", "disable_model")


@dataclass
class ModelTruth:
    """What a model really does.

    ``quality``: mean quality per task type; ``partial_share``: the share of partial outcomes
    (at most; success and failure make up the rest around the mean); ``latency_ms`` and
    ``latency_spread``: median and log-scale spread of a log-normal latency; ``tokens_factor``:
    tokens per request relative to the task's typical request (log-normal, spread 0.3); cost is the
    list price of those tokens times ``cost_factor``.
    """

    quality: dict[TaskType, float]
    latency_ms: float
    cost_factor: float = 1.0
    partial_share: float = 0.2
    latency_spread: float = 0.35
    tokens_factor: float = 1.0


@dataclass(frozen=True)
class Event:
    """Something that happens before the traffic of ``day`` (1-based)."""

    day: int
    kind: str
    model_id: str
    task_types: tuple[TaskType, ...] = ()  # quality_drop: the tasks (empty: every task)
    value: float | None = None             # quality_drop: new quality; price_change: price factor
    model: ModelConfig | None = None       # add_model: its registry entry
    truth: ModelTruth | None = None        # add_model: its true behaviour


@dataclass
class Scenario:
    name: str
    description: str
    registry: ModelRegistry
    truth: dict[str, ModelTruth]
    days: int = 14
    requests_per_day: int = 1600
    start: dt.date = dt.date(2026, 1, 1)
    task_mix: dict[TaskType, float] = field(default_factory=lambda: {t: 1.0 for t in TaskType})
    preference_mix: dict[RoutingPreference, float] = field(default_factory=lambda: {p: 1.0 for p in RoutingPreference})
    events: list[Event] = field(default_factory=list)


@dataclass
class DayResult:
    day: int
    date: dt.date
    rule_set_version: int
    traffic: Counter          # (task, preference, model) -> requests
    quality: float            # realised mean quality of the day
    cost_usd: float           # realised total cost of the day
    oracle_quality: float     # what always choosing the true best would have given
    oracle_cost_usd: float


@dataclass
class SimulationResult:
    scenario: Scenario
    days: list[DayResult]
    truth_by_day: list[dict[str, ModelTruth]]
    registry_by_day: list[ModelRegistry]

    def share(self, day_index: int, task: TaskType, preference: RoutingPreference, model_id: str) -> float:
        traffic = self.days[day_index].traffic
        total = sum(n for (t, p, _), n in traffic.items() if t is task and p is preference)
        return traffic[(task, preference, model_id)] / total if total else 0.0

    def top_model(self, day_index: int, task: TaskType, preference: RoutingPreference) -> str | None:
        traffic = self.days[day_index].traffic
        cell = {m: n for (t, p, m), n in traffic.items() if t is task and p is preference}
        return max(cell, key=cell.__getitem__) if cell else None


def true_cost(registry: ModelRegistry, truth: ModelTruth, model: ModelConfig, task: TaskType) -> float:
    return registry.policy(task).cost_per_request(model) * truth.cost_factor


def true_best(registry: ModelRegistry, truth: dict[str, ModelTruth], task: TaskType, preference: RoutingPreference) -> str:
    """The model the definition of the preference picks (README.md, "What each preference means")
    when the truth is known."""
    policy = registry.policy(task)
    enabled = [m for m in registry.models if m.enabled and m.id in truth]

    def score(preference: RoutingPreference, m: ModelConfig) -> float:
        t = truth[m.id]
        return PREFERENCES[preference].objective(t.quality[task], true_cost(registry, t, m, task), t.latency_ms)

    eligible = [
        m for m in enabled
        if not PREFERENCES[preference].uses_thresholds
        or meets_thresholds(policy, truth[m.id].quality[task], true_cost(registry, truth[m.id], m, task) / policy.typical_tokens * 1000)
    ]
    pool = eligible or enabled
    return max(pool, key=lambda m: score(preference if eligible else NO_ELIGIBLE_FALLBACK, m)).id


def _apply(event: Event, registry: ModelRegistry, truth: dict[str, ModelTruth]) -> ModelRegistry:
    if event.kind == "quality_drop":
        tasks = event.task_types or tuple(TaskType)
        for task in tasks:
            truth[event.model_id].quality[task] = event.value
        return registry
    if event.kind == "add_model":
        truth[event.model_id] = dataclasses.replace(event.truth, quality=dict(event.truth.quality))
        return registry.replace_model(event.model)
    model = registry.get(event.model_id)
    if event.kind == "price_change":
        truth[event.model_id].cost_factor = 1.0  # the list price now is the true price
        return registry.replace_model(dataclasses.replace(
            model, input_cost_per_1k=model.input_cost_per_1k * event.value, output_cost_per_1k=model.output_cost_per_1k * event.value,
        ))
    if event.kind == "disable_model":
        return registry.replace_model(dataclasses.replace(model, enabled=False))
    raise ValueError(f"event kind={event.kind!r} is not one of {', '.join(EVENT_KINDS)}")


def simulate(
    scenario: Scenario, home: str | Path, *, seed: int = 0, learn: Callable[[Path, dt.date], None] | None = None,
    on_day: Callable[[DayResult], None] | None = None,
) -> SimulationResult:
    """Run ``scenario`` in a fresh ``home``: traffic each day, learning each night.

    ``learn(home, day)`` defaults to the real nightly job (``routing_pipelines.learn.learn``).
    """
    if learn is None:
        from routing_pipelines.learn import learn as run_job

        def learn(home_path: Path, day: dt.date) -> None:
            result = run_job(home_path, day, quiet=True)
            if not result.success:
                raise RuntimeError(f"learning run for {day} failed")

    home = Path(home)
    registry = scenario.registry
    truth = {m: dataclasses.replace(t, quality=dict(t.quality)) for m, t in scenario.truth.items()}
    registry_file = home / "simulated_registry.toml"
    home.mkdir(parents=True, exist_ok=True)
    registry_file.write_text(registry.to_toml())
    initialise(home, registry_file)

    rng = random.Random(seed)
    tasks, task_weights = zip(*scenario.task_mix.items())
    prefs, pref_weights = zip(*scenario.preference_mix.items())
    days, truths, registries = [], [], []
    with ModelRouter.open(home, seed=seed) as router:
        for day in range(1, scenario.days + 1):
            date = scenario.start + dt.timedelta(days=day - 1)
            todays = [e for e in scenario.events if e.day == day]
            for event in todays:
                registry = _apply(event, registry, truth)
            if any(e.kind != "quality_drop" for e in todays):
                registry_file.write_text(registry.to_toml())
                initialise(home, registry_file)
            version = router.rule_set.version
            by_id = {m.id: m for m in registry.models}
            traffic: Counter = Counter()
            quality_sum = cost_sum = oracle_quality = oracle_cost = 0.0
            best_cache: dict = {}
            for i in range(scenario.requests_per_day):
                task = rng.choices(tasks, task_weights)[0]
                pref = rng.choices(prefs, pref_weights)[0]
                at = dt.datetime.combine(date, dt.time()) + dt.timedelta(seconds=86_399 * i / scenario.requests_per_day)
                decision = router.select_model(task, pref, at=at)
                q, latency, cost, tokens, outcome = draw_outcome(rng, registry, truth, by_id[decision.model_id], task)
                router.record_performance(decision.decision_id, outcome, None, latency, tokens, cost, at=at)
                traffic[(task, pref, decision.model_id)] += 1
                quality_sum += q
                cost_sum += cost
                best = best_cache.get((task, pref)) or best_cache.setdefault((task, pref), true_best(registry, truth, task, pref))
                oracle_quality += truth[best].quality[task]
                oracle_cost += true_cost(registry, truth[best], by_id[best], task)
            learn(home, date)
            n = scenario.requests_per_day
            result = DayResult(day, date, version, traffic, quality_sum / n, cost_sum, oracle_quality / n, oracle_cost)
            days.append(result)
            truths.append({m: dataclasses.replace(t, quality=dict(t.quality)) for m, t in truth.items()})
            registries.append(registry)
            if on_day:
                on_day(result)
    return SimulationResult(scenario, days, truths, registries)


#: Log-scale spread of the tokens of a request around its model's typical count.
TOKENS_SPREAD = 0.3


def outcome_cuts(quality: float, partial_share: float) -> tuple[float, float]:
    """Where a uniform draw ``u`` turns from success to partial and from partial to failure:
    success when ``u`` is below the first cut, partial below the second, failure above.

    The outcome mix lies around the true quality: mostly success or failure, some partial (worth
    0.5), so the mean quality of the outcomes is ``quality``.
    """
    partial = min(partial_share, quality, 1 - quality)
    return quality - partial / 2, quality + partial / 2


def draw_outcome(rng: random.Random, registry: ModelRegistry, truth: dict[str, ModelTruth], model: ModelConfig, task: TaskType):
    t = truth[model.id]
    q = t.quality[task]
    u = rng.random()
    success_below, partial_below = outcome_cuts(q, t.partial_share)
    if u < success_below:
        outcome = "success"
    elif u < partial_below:
        outcome = "partial"
    else:
        outcome = "failure"
    latency = t.latency_ms * math.exp(rng.gauss(0.0, t.latency_spread))
    policy = registry.policy(task)
    tokens = max(1, int(policy.typical_tokens * t.tokens_factor * math.exp(rng.gauss(0.0, TOKENS_SPREAD))))
    cost = true_cost(registry, t, model, task) * tokens / policy.typical_tokens
    return q, latency, cost, tokens, outcome
