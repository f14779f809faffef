"""One place per preference and per cell: ``routing_runtime.rules.PREFERENCES`` and
``routing_runtime.types.Cell`` are what every chooser reads, so changing a spec changes them all."""

from __future__ import annotations

import datetime as dt
from itertools import product

import pytest

from routing_runtime import ModelRegistry, RoutingPreference, TaskType
from routing_runtime.rules import PREFERENCES, ModelEstimate, PreferenceSpec, check_preferences_complete, rank
from routing_runtime.types import Cell, all_cells

QUALITY, LATENCY = RoutingPreference.QUALITY, RoutingPreference.LATENCY


def test_the_spec_table_covers_the_preference_enum_exactly():
    assert set(PREFERENCES) == set(RoutingPreference)
    assert all(isinstance(spec, PreferenceSpec) for spec in PREFERENCES.values())
    check_preferences_complete()


def test_a_preference_without_a_spec_fails_naming_it_and_where_to_add_it():
    incomplete = {p: s for p, s in PREFERENCES.items() if p is not LATENCY}
    with pytest.raises(RuntimeError, match=r"PREFERENCES has no spec for latency: add a PreferenceSpec"):
        check_preferences_complete(incomplete)


def test_objectives_are_the_designed_ones_on_numbers_and_arrays():
    np = pytest.importorskip("numpy")
    q, c, lat = 0.8, 0.002, 900.0
    assert [PREFERENCES[p].objective(q, c, lat) for p in RoutingPreference] == [0.8, -0.002, 400.0, -900.0]
    # A free model divides by the cost floor, not by zero, alone or in an array of draws.
    assert PREFERENCES[RoutingPreference.BALANCED].objective(0.5, 0.0, 1.0) == 0.5 / 1e-12
    arrays = PREFERENCES[RoutingPreference.BALANCED].objective(np.array([0.5, 0.8]), np.array([0.0, 0.002]), np.array([1.0, 2.0]))
    assert arrays.tolist() == [0.5 / 1e-12, 400.0]
    assert [p.value for p in RoutingPreference if not PREFERENCES[p].uses_thresholds] == ["quality"]


def test_cells_are_named_tuples_of_every_task_and_preference():
    cells = all_cells()
    assert cells == list(product(TaskType, RoutingPreference))
    assert all(isinstance(c, Cell) for c in cells)
    assert {Cell(TaskType.MATH, LATENCY): 1}[(TaskType.MATH, LATENCY)] == 1
    assert Cell(TaskType.MATH, LATENCY).label == "math/latency"


@pytest.fixture
def latency_means_quality(monkeypatch):
    """Redefine one preference in the table: every chooser must follow."""
    monkeypatch.setitem(PREFERENCES, LATENCY, PREFERENCES[QUALITY])


def _estimate(model_id: str, quality: float, latency: float) -> ModelEstimate:
    return ModelEstimate(model_id, TaskType.MATH, quality, 0.001, latency, 0.001, False)


def test_the_runtime_ranking_reads_the_table(latency_means_quality):
    policy = ModelRegistry.load_default().policy(TaskType.MATH)
    # By latency "fast" wins and "weak" (below min_quality_score) is ineligible; by quality,
    # thresholds ignored, "slow" wins and "weak" is eligible.
    estimates = [_estimate("fast", 0.9, 100.0), _estimate("slow", 0.99, 9000.0), _estimate("weak", 0.1, 50.0)]
    ranked = rank(estimates, policy, LATENCY)
    assert [e.model_id for e, _ in ranked] == ["slow", "fast", "weak"]
    assert all(ok for _, ok in ranked)


def test_thompson_sampling_reads_the_table(latency_means_quality):
    pytest.importorskip("polars")
    from routing_pipelines.learning.candidates import best_probabilities
    from routing_pipelines.learning.posteriors import posteriors_as_of

    registry = ModelRegistry.load_default()
    posteriors, _ = posteriors_as_of(None, dt.date(2026, 1, 1), registry)
    best = best_probabilities(posteriors, registry, draws=500, seed=1)
    for task in TaskType:
        assert best[Cell(task, LATENCY)] == best[Cell(task, QUALITY)]


def test_the_simulators_truth_reads_the_table(latency_means_quality):
    pytest.importorskip("polars")
    from routing_pipelines.simulation.simulator import ModelTruth, true_best

    registry = ModelRegistry.load_default()
    truth = {m.id: ModelTruth({t: 0.5 + 0.05 * i for t in TaskType}, latency_ms=100.0 * (10 - i)) for i, m in enumerate(registry.models)}
    for task in TaskType:
        assert true_best(registry, truth, task, LATENCY) == true_best(registry, truth, task, QUALITY)


def test_thompson_sampling_takes_its_draws_and_plausibility_from_the_learning_settings():
    pytest.importorskip("polars")
    import dataclasses

    from routing_pipelines.learning.candidates import best_probabilities
    from routing_pipelines.learning.posteriors import posteriors_as_of

    registry = ModelRegistry.load_default()
    posteriors, _ = posteriors_as_of(None, dt.date(2026, 1, 1), registry)
    few = dataclasses.replace(registry, learning=dataclasses.replace(registry.learning, thompson_draws=300))
    assert best_probabilities(posteriors, few, seed=2) == best_probabilities(posteriors, registry, draws=300, seed=2)
    assert best_probabilities(posteriors, few, seed=2) != best_probabilities(posteriors, registry, seed=2)
    # Requiring eligibility in every draw leaves only models certain to pass the thresholds.
    strict = dataclasses.replace(registry, learning=dataclasses.replace(registry.learning, plausibly_eligible=1.0))
    loose_cells = best_probabilities(posteriors, registry, seed=2)
    strict_cells = best_probabilities(posteriors, strict, seed=2)
    assert sum(map(len, strict_cells.values())) < sum(map(len, loose_cells.values()))
