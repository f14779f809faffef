"""The off-policy estimators: unit behaviour on small hand-made rows, and a seeded smaller version
of ``benchmarks/bench_estimators.py`` (200 replicates × 2,000 logged rows of the ``stationary``
scenario's synthetic truth) pinning their error and interval coverage per objective."""

from __future__ import annotations

import doctest
import math
import random
import re

import pytest

np = pytest.importorskip("numpy")
pl = pytest.importorskip("polars")
pytest.importorskip("scipy")

from routing_pipelines.learning.estimators import (  # noqa: E402
    OBJECTIVES, SNIPS, CellRows, DoublyRobust, Logged, compare, effective_sample_size,
)
from routing_pipelines.simulation import estimator_validation as ev  # noqa: E402
from routing_pipelines.simulation.scenarios import load_scenario  # noqa: E402
from routing_pipelines.simulation.simulator import draw_outcome  # noqa: E402
from routing_runtime.types import RoutingPreference, TaskType  # noqa: E402

QUALITY, COST, BALANCED, LATENCY = (OBJECTIVES[p] for p in RoutingPreference)
ESTIMATORS = (Logged(), SNIPS(), DoublyRobust())


def logged_sample(n: int, seed: int) -> tuple[CellRows, np.ndarray]:
    """``n`` rows logged by a 3-model policy with a different target, quality / cost / latency
    rewards and a rough direct model (so doubly robust is not IPS); also the logged model index."""
    rng = np.random.default_rng(seed)
    logged, target = np.array([0.6, 0.3, 0.1]), np.array([0.1, 0.3, 0.6])
    quality, cost, latency = np.array([0.5, 0.7, 0.9]), np.array([0.001, 0.004, 0.01]), np.array([800.0, 1500.0, 2500.0])
    chosen = rng.choice(3, size=n, p=logged)
    observed = {
        "quality": (rng.random(n) < quality[chosen]).astype(float),
        "cost": cost[chosen] * np.exp(rng.normal(0.0, 0.3, n)),
        "latency": latency[chosen] * np.exp(rng.normal(0.0, 0.35, n)),
    }
    # The direct model is off by 10-20% on purpose: it only has to be reasonable.
    direct = {"quality": quality * 0.9, "cost": cost * 1.2, "latency": latency * 0.85}
    rows = CellRows(logged[chosen], target[chosen], observed, {k: v[chosen] for k, v in direct.items()},
                    {k: np.full(n, float(target @ v)) for k, v in direct.items()})
    return rows, chosen


def subset(rows: CellRows, index: np.ndarray) -> CellRows:
    pick = lambda d: {k: v[index] for k, v in d.items()}  # noqa: E731
    return CellRows(rows.propensity[index], rows.target[index], pick(rows.observed), pick(rows.predicted), pick(rows.expected))


# --------------------------------------------------------------------------- invalid and degenerate input

@pytest.mark.parametrize("field, values, message", [
    ("propensity", [0.5, 0.0, 0.5], "propensity = 0.0 in row 1 is outside (0, 1]"),
    ("propensity", [0.5, 0.5, 1.5], "propensity = 1.5 in row 2 is outside (0, 1]"),
    ("propensity", [math.nan, 0.5, 0.5], "propensity = nan in row 0 is outside (0, 1]"),
    ("propensity", [-0.2, 0.5, 0.5], "propensity = -0.2 in row 0"),
    ("target", [0.5, -0.1, 0.5], "target = -0.1 in row 1 is outside [0, 1]"),
    ("target", [0.5, 0.5, 1.2], "target = 1.2 in row 2 is outside [0, 1]"),
])
def test_an_invalid_probability_is_refused_naming_the_row_and_the_value(field, values, message):
    arrays = {"propensity": np.full(3, 0.5), "target": np.full(3, 0.5), field: np.array(values)}
    rows = CellRows.from_arrays(**arrays, quality=np.array([1.0, 0.0, 1.0]))
    for estimator in ESTIMATORS:
        with pytest.raises(ValueError, match=re.escape(message)):
            estimator.estimate(rows, QUALITY)
    with pytest.raises(ValueError, match=field):
        compare(rows, QUALITY)


def test_a_missing_reward_is_skipped_as_if_the_row_were_not_there():
    rows, _ = logged_sample(400, seed=3)
    holes = rows._replace(observed={**rows.observed, "cost": np.where(np.arange(400) % 7 == 0, np.nan, rows.observed["cost"])})
    kept = np.flatnonzero(np.arange(400) % 7 != 0)
    for objective in (COST, BALANCED):
        for estimator in ESTIMATORS:
            assert estimator.estimate(holes, objective) == pytest.approx(estimator.estimate(subset(rows, kept), objective))
        assert compare(holes, objective).n == kept.size
    # Quality was reported on every row: its estimates use them all.
    assert compare(holes, QUALITY).n == 400


@pytest.mark.parametrize("case", ["empty", "every reward missing", "target never picks a logged model", "nothing was charged"])
def test_degenerate_rows_give_nan_not_an_exception(case):
    n = 0 if case == "empty" else 5
    quality = np.full(n, math.nan if case == "every reward missing" else 1.0)
    cost = np.zeros(n) if case == "nothing was charged" else np.full(n, 0.01)
    target = np.zeros(n) if case == "target never picks a logged model" else np.full(n, 0.5)
    rows = CellRows.from_arrays(propensity=np.full(n, 0.5), target=target, quality=quality, cost=cost)
    objective = BALANCED if case == "nothing was charged" else QUALITY
    estimators = ESTIMATORS if case != "target never picks a logged model" else (SNIPS(),)
    for estimator in estimators:
        estimate = estimator.estimate(rows, objective)
        assert math.isnan(estimate.value) and math.isnan(estimate.low) and math.isnan(estimate.high)
    comparison = compare(rows, objective)
    assert math.isnan(comparison.snips.value)
    if case != "target never picks a logged model":
        assert math.isnan(comparison.dr.value) and math.isnan(comparison.improvement.value)
    else:
        # Doubly robust still has its direct model (here 0): a value, not an error.
        assert comparison.dr.value == 0.0 and comparison.effective_sample_size == 0.0


# --------------------------------------------------------------------------- identities

@pytest.mark.parametrize("objective", [QUALITY, COST, BALANCED, LATENCY], ids=lambda o: o.name)
def test_snips_is_the_on_policy_mean_when_the_target_is_the_logged_policy(objective):
    rows, _ = logged_sample(1000, seed=11)
    on_policy = rows._replace(target=rows.propensity)
    snips, logged = SNIPS().estimate(on_policy, objective), Logged().estimate(on_policy, objective)
    assert snips.value == pytest.approx(logged.value, rel=1e-12)
    assert snips.standard_error == pytest.approx(logged.standard_error, rel=1e-12)
    assert effective_sample_size(on_policy.weights) == pytest.approx(1000)


def test_doubly_robust_with_a_zero_direct_model_is_ips():
    rows, _ = logged_sample(1000, seed=12)
    bare = CellRows.from_arrays(rows.propensity, rows.target, **rows.observed)
    for component, objective in (("quality", QUALITY), ("latency", LATENCY)):
        terms = rows.weights * rows.observed[component]
        estimate = DoublyRobust().estimate(bare, objective)
        assert estimate.value == pytest.approx(terms.mean(), rel=1e-12)
        assert estimate.standard_error == pytest.approx(terms.std(ddof=1) / math.sqrt(len(terms)), rel=1e-12)


@pytest.mark.parametrize("weights, expected", [
    ([1.0, 1.0, 1.0, 1.0], 4.0),            # equal weights: every row counts
    ([2.0, 2.0, 2.0, 2.0], 4.0),            # the scale does not matter
    ([5.0, 0.0, 0.0, 0.0], 1.0),            # one row carries it all
    ([1.0, 2.0, 3.0], 36.0 / 14.0),         # (Σw)² / Σw²
    ([0.0, 0.0], 0.0),                      # no weight at all: worth nothing
    ([], 0.0),
])
def test_effective_sample_size(weights, expected):
    assert effective_sample_size(np.array(weights, dtype=float)) == pytest.approx(expected)


def test_delta_method_standard_errors_agree_with_a_bootstrap():
    """The ratio (quality per dollar) by SNIPS and DR and the paired improvement: each standard
    error from the influence function within 15% of the bootstrap's over the same rows."""
    rows, _ = logged_sample(2000, seed=5)
    rng = np.random.default_rng(6)
    draws = [rng.integers(0, 2000, 2000) for _ in range(1500)]
    figures = {
        "snips": (lambda r: SNIPS().estimate(r, BALANCED)),
        "dr": (lambda r: DoublyRobust().estimate(r, BALANCED)),
        "improvement": (lambda r: compare(r, BALANCED).improvement),
    }
    for name, figure in figures.items():
        delta = figure(rows).standard_error
        boot = np.std([figure(subset(rows, index)).value for index in draws], ddof=1)
        assert delta == pytest.approx(boot, rel=0.15), name


# --------------------------------------------------------------------------- the validation's own parts

def test_validation_doctests_pass():
    assert doctest.testmod(ev, optionflags=doctest.ELLIPSIS).failed == 0


def test_default_task_has_enough_models():
    scenario = load_scenario("stationary")
    task = ev.default_task(scenario)
    assert task is TaskType.CODE_GENERATION and len(ev.task_truth(scenario, task).models) >= 4


def test_policies_keep_the_floor_and_targets_change_the_top_model():
    rng = np.random.default_rng(0)
    for _ in range(200):
        logged, target = ev.draw_policies(rng, 7)
        assert logged.sum() == pytest.approx(1.0) and target.sum() == pytest.approx(1.0)
        assert min(logged.min(), target.min()) >= ev.FLOOR / 7
        assert logged.argmax() != target.argmax()


def test_vectorised_draws_follow_draw_outcome():
    """The vectorised outcomes have the simulator's distributions: outcome shares, mean latency,
    tokens and cost of one model, against ``draw_outcome`` called row by row."""
    scenario = load_scenario("stationary")
    task = TaskType.CODE_GENERATION
    truth = ev.task_truth(scenario, task)
    n = 20_000
    for model_id in ("gpt-4o", "codestral-2508"):
        j = truth.models.index(model_id)
        _, vectorised = ev.draw_logs(np.random.default_rng(1), truth, np.eye(len(truth.models))[j], n, scenario.start)
        rng = random.Random(1)
        model = scenario.registry.get(model_id)
        rows = [draw_outcome(rng, scenario.registry, scenario.truth, model, task) for _ in range(n)]
        one_by_one = pl.DataFrame([r[1:] for r in rows], schema=["latency_ms", "cost_usd", "tokens_used", "outcome"], orient="row")
        assert (vectorised["model_id"] == model_id).all()
        for outcome in ("success", "partial", "failure"):
            ours, theirs = ((frame["outcome"] == outcome).mean() for frame in (vectorised, one_by_one))
            assert ours == pytest.approx(theirs, abs=0.02), (model_id, outcome)
        for column in ("latency_ms", "cost_usd", "tokens_used"):
            assert vectorised[column].mean() == pytest.approx(one_by_one[column].mean(), rel=0.02), (model_id, column)


def test_true_values_are_what_a_large_sample_of_the_policy_averages_to():
    scenario = load_scenario("stationary")
    truth = ev.task_truth(scenario, TaskType.CODE_GENERATION)
    policy = ev.draw_policy(np.random.default_rng(2), len(truth.models))
    n = 200_000
    _, rows = ev.draw_logs(np.random.default_rng(3), truth, policy, n, scenario.start)
    quality = rows["outcome"].replace_strict({"success": 1.0, "partial": 0.5, "failure": 0.0}, return_dtype=pl.Float64)
    for objective, sample in ((QUALITY, quality), (COST, rows["cost_usd"]), (LATENCY, rows["latency_ms"])):
        se = sample.std() / math.sqrt(n)
        assert abs(sample.mean() - ev.policy_value(truth, policy, objective)) < 4 * se, objective.name
    ratio = quality.mean() / rows["cost_usd"].mean()
    assert ratio == pytest.approx(ev.policy_value(truth, policy, BALANCED), rel=0.01)


# --------------------------------------------------------------------------- the seeded validation

#: 200 replicates × 2,000 rows: the issue's 2% at 10,000 rows scales to about 4.5% at 2,000
#: (errors shrink as 1/√n); coverage over 200 replicates has its own margin ±3%.
REPLICATES, ROWS = 200, 2000
MAX_MEDIAN_ERROR = 0.04
COVERAGE_BAND = (0.90, 0.99)


@pytest.fixture(scope="module")
def validation() -> ev.Validation:
    return ev.validate(REPLICATES, ROWS, seed=0)


def test_the_validation_ran_every_replicate_on_every_objective(validation):
    assert validation.task is TaskType.CODE_GENERATION and len(validation.models) == 7
    assert validation.records.height == REPLICATES * len(RoutingPreference)
    assert (validation.records["n"] == ROWS).all()
    assert validation.summary["failed"].sum() == 0


@pytest.mark.parametrize("preference", list(RoutingPreference), ids=lambda p: p.value)
def test_off_policy_values_land_near_the_true_value(validation, preference):
    summary = validation.summary.filter(pl.col("preference") == preference.value)
    for row in summary.filter(pl.col("estimate").is_in(["snips", "dr"])).iter_rows(named=True):
        assert row["median_error"] <= MAX_MEDIAN_ERROR, row
        # No error is systematic: the mean signed error over 200 replicates has an sd of about
        # 0.04 half-widths; a bias of a fifth of one is far beyond chance.
        assert abs(row["bias"]) < row["mean_half_width"] / 5, row


@pytest.mark.parametrize("preference", list(RoutingPreference), ids=lambda p: p.value)
def test_intervals_cover_the_true_value_about_95_percent_of_the_time(validation, preference):
    summary = validation.summary.filter(pl.col("preference") == preference.value)
    for row in summary.iter_rows(named=True):  # the logged mean, SNIPS, DR and the paired improvement
        assert COVERAGE_BAND[0] <= row["coverage"] <= COVERAGE_BAND[1], row


def test_the_same_seed_gives_the_same_figures(validation):
    again = ev.validate(3, ROWS, seed=0).records
    first = validation.records.filter(pl.col("replicate") < 3)
    assert again.select(pl.col(pl.String)).equals(first.select(pl.col(pl.String)))
    np.testing.assert_allclose(again.select(pl.selectors.numeric()).to_numpy(), first.select(pl.selectors.numeric()).to_numpy(), rtol=1e-9)
