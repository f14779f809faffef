"""The whole loop against a ground truth these tests define: simulated agents route and report
through the public API, `routing learn` runs each night, and the router must find the true best
model of every (task type, preference), drop a model whose quality collapses, adopt a better one."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

pytest.importorskip("dagster")

from routing_pipelines.simulation.simulator import Event, ModelTruth, Scenario, simulate, true_best
from routing_runtime import RoutingPreference, TaskType
from routing_runtime.registry import ModelConfig, ModelRegistry

CODE = {TaskType.CODE_GENERATION, TaskType.CODE_REVIEW, TaskType.DEBUGGING, TaskType.TESTING}


def quality(default: float, **overrides: float) -> dict[TaskType, float]:
    values = {t: default for t in TaskType}
    values.update({TaskType(k): v for k, v in overrides.items()})
    return values


# Synthetic ground truth for the shipped registry, with clear gaps between the best and the rest.
TRUTH = {
    "codestral-2508": ModelTruth({t: 0.95 if t in CODE else 0.6 for t in TaskType}, latency_ms=800),
    "qwen2.5-math-72b-instruct": ModelTruth(quality(0.5, math=0.92), latency_ms=2000),
    "claude-sonnet-4-5": ModelTruth(quality(0.9, math=0.85), latency_ms=2600),
    "gpt-4o": ModelTruth(quality(0.84), latency_ms=1500),
    "claude-haiku-4-5": ModelTruth(quality(0.78), latency_ms=900),
    "gpt-4o-mini": ModelTruth(quality(0.62), latency_ms=700),
    "deepseek-chat": ModelTruth(quality(0.77, math=0.7), latency_ms=2500),
}


def scenario(days: int, events: list[Event] = ()) -> Scenario:
    return Scenario("test", "synthetic ground truth", ModelRegistry.load_default(), TRUTH, days=days,
                    requests_per_day=1600, events=list(events))


def test_the_router_converges_to_the_true_best_model_of_every_cell(tmp_path: Path):
    result = simulate(scenario(12), tmp_path / "home", seed=3)
    last_two = (len(result.days) - 2, len(result.days) - 1)
    shares = {}
    for task in TaskType:
        for preference in RoutingPreference:
            best = true_best(result.registry_by_day[-1], result.truth_by_day[-1], task, preference)
            shares[(task.value, preference.value, best)] = sum(result.share(d, task, preference, best) for d in last_two) / 2
    weak = {cell: round(share, 2) for cell, share in shares.items() if share <= 0.5}
    assert not weak, f"cells where the true best got at most half the traffic: {weak}"
    assert result.days[-1].rule_set_version == 12  # registry set + one per night


def test_a_model_whose_quality_collapses_loses_its_traffic_within_three_nights(tmp_path: Path):
    drop = Event(day=6, kind="quality_drop", model_id="codestral-2508", task_types=(TaskType.CODE_GENERATION,), value=0.45)
    result = simulate(scenario(10, [drop]), tmp_path / "home", seed=4)
    before = result.share(4, TaskType.CODE_GENERATION, RoutingPreference.QUALITY, "codestral-2508")
    assert before > 0.6
    # Nights 6, 7 and 8 have learned from the collapse (a change point on day 6 discounts the
    # evidence before it): on day 9 it has lost the cells it led, including latency, where it is
    # now below min_quality_score.
    for preference in (RoutingPreference.QUALITY, RoutingPreference.LATENCY):
        assert result.share(8, TaskType.CODE_GENERATION, preference, "codestral-2508") < 0.2, preference
    assert result.top_model(8, TaskType.CODE_GENERATION, RoutingPreference.QUALITY) == "claude-sonnet-4-5"


def test_a_better_new_model_wins_its_task_within_four_nights(tmp_path: Path):
    newcomer = ModelConfig(
        id="qwen3-math-next", provider="example", specialized_for=(TaskType.MATH,), input_cost_per_1k=0.0008,
        output_cost_per_1k=0.0008, prior_quality=0.85, typical_latency_ms=1800,
    )
    truth = ModelTruth(quality(0.5, math=0.98), latency_ms=1800)
    add = Event(day=5, kind="add_model", model_id=newcomer.id, model=newcomer, truth=truth)
    result = simulate(scenario(9, [add]), tmp_path / "home", seed=5)
    assert result.share(3, TaskType.MATH, RoutingPreference.QUALITY, newcomer.id) == 0
    # Nights 5 to 8 have seen it: on day 9 it carries the math/quality traffic.
    assert result.top_model(8, TaskType.MATH, RoutingPreference.QUALITY) == newcomer.id
    assert result.share(8, TaskType.MATH, RoutingPreference.QUALITY, newcomer.id) > 0.5


def test_a_disabled_model_gets_no_traffic_from_the_next_request_on(tmp_path: Path):
    disable = Event(day=3, kind="disable_model", model_id="deepseek-chat")
    result = simulate(dataclasses.replace(scenario(4, [disable]), requests_per_day=800), tmp_path / "home", seed=6)
    assert sum(n for (t, p, m), n in result.days[1].traffic.items() if m == "deepseek-chat") > 0
    for day in (2, 3):
        assert sum(n for (t, p, m), n in result.days[day].traffic.items() if m == "deepseek-chat") == 0
