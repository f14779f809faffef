"""The learning math alone: sufficient statistics, forgetting, posteriors against hand-computed values."""

from __future__ import annotations

import datetime as dt
import math

import pytest

pl = pytest.importorskip("polars")
np = pytest.importorskip("numpy")
sps = pytest.importorskip("scipy.stats")

from routing_pipelines.learning import posteriors, statistics  # noqa: E402
from routing_runtime.registry import LearningSettings, ModelRegistry  # noqa: E402
from routing_runtime.types import Cell, TaskType  # noqa: E402

REGISTRY = ModelRegistry.from_toml("""
[learning]
prior_pseudo_count = 10
[[models]]
id = "a"
specialized_for = []
input_cost_per_1k = 0.001
output_cost_per_1k = 0.002
prior_quality = 0.8
typical_latency_ms = 1000
[[models]]
id = "b"
specialized_for = ["math"]
input_cost_per_1k = 0.001
output_cost_per_1k = 0.001
prior_quality = 0.9
typical_latency_ms = 2000
""")


def outcomes(n: int, seed: int, day: dt.date) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    outcome = rng.choice(["success", "partial", "failure"], n)
    quality = np.where(rng.random(n) < 0.5, rng.random(n), np.nan)
    return pl.DataFrame({
        "model_id": rng.choice(["a", "b"], n), "task_type": rng.choice(["math", "general"], n), "outcome": outcome,
        "quality_score": quality, "latency_ms": rng.lognormal(7, 0.5, n), "tokens_used": rng.integers(10, 3000, n),
        "cost_usd": rng.lognormal(-7, 0.3, n), "day": [day] * n,
    }).with_columns(pl.col("quality_score").fill_nan(None))


def test_daily_statistics_add_up_to_one_pass_over_all_days():
    days = [dt.date(2026, 3, d) for d in range(1, 6)]
    frames = [outcomes(500, seed, day) for seed, day in enumerate(days)]
    per_day = pl.concat([statistics.daily_stats(f) for f in frames])
    merged = statistics.merge(per_day)
    one_pass = statistics.daily_stats(pl.concat(frames))
    assert merged.select(statistics.KEYS).equals(one_pass.select(statistics.KEYS))
    for column in statistics.SUM_COLUMNS:
        assert np.allclose(merged[column].to_numpy(), one_pass[column].to_numpy()), column


def test_quality_defaults_to_the_outcome_when_no_score_is_given():
    frame = pl.DataFrame({
        "model_id": ["a"] * 3, "task_type": ["math"] * 3, "outcome": ["success", "partial", "failure"],
        "quality_score": [None, None, 0.9], "latency_ms": [100.0, None, 100.0], "tokens_used": [10, 20, None],
        "cost_usd": [0.01, 0.01, None],
    })
    row = statistics.daily_stats(frame).row(0, named=True)
    assert row["n"] == 3 and row["sum_q"] == pytest.approx(1.0 + 0.5 + 0.9)
    assert row["n_latency"] == 2 and row["n_cost"] == 2 and row["n_tokens"] == 2 and row["sum_tokens"] == 30


def test_forgetting_halves_the_weight_every_half_life():
    daily = pl.DataFrame({
        "model_id": ["a", "a"], "task_type": ["math", "math"], "day": [dt.date(2026, 3, 15), dt.date(2026, 3, 1)],
        **{c: [1.0, 1.0] for c in statistics.SUM_COLUMNS},
    })
    totals = statistics.weighted_totals(daily.lazy(), dt.date(2026, 3, 15), half_life_days=14)
    assert totals["n"][0] == pytest.approx(1.0 + 0.5)
    assert totals["n_raw"][0] == 2
    assert totals["last_day"][0] == dt.date(2026, 3, 15)


def totals_for(rows: dict[tuple[str, str], dict[str, float]]) -> pl.DataFrame:
    schema = {**statistics.STATS_SCHEMA, "n_raw": pl.Float64}
    records = []
    for (model, task), values in rows.items():
        record = {"model_id": model, "task_type": task, **{c: 0.0 for c in statistics.SUM_COLUMNS}, "n_raw": 0.0}
        record.update(values)
        records.append(record)
    return pl.DataFrame(records, schema=schema)


def test_quality_posterior_matches_the_hand_computed_beta():
    totals = totals_for({("a", "general"): {"n": 20.0, "sum_q": 12.0, "n_raw": 20.0}})
    post = posteriors.compute_posteriors(totals, REGISTRY).filter(
        (pl.col("model_id") == "a") & (pl.col("task_type") == "general")
    ).row(0, named=True)
    # No other generalist has evidence: the prior is the registry's 0.8 worth 10 observations.
    a, b = 0.8 * 10 + 12.0, 0.2 * 10 + 8.0
    assert post["quality_alpha"] == pytest.approx(a) and post["quality_beta"] == pytest.approx(b)
    assert post["quality_mean"] == pytest.approx(a / (a + b))
    assert post["quality_ci_low"] == pytest.approx(sps.beta.ppf(0.05, a, b))
    assert post["quality_ci_high"] == pytest.approx(sps.beta.ppf(0.95, a, b))


def test_prior_is_shrunk_toward_the_other_models_of_the_group():
    # "b" is a generalist on general; its evidence moves the prior of "a" (leave-one-out).
    totals = totals_for({("b", "general"): {"n": 40.0, "sum_q": 10.0, "n_raw": 40.0}})
    post = posteriors.compute_posteriors(totals, REGISTRY)
    a_general = post.filter((pl.col("model_id") == "a") & (pl.col("task_type") == "general")).row(0, named=True)
    weight = 10 / (10 + 10)  # group evidence capped at the pseudo-count
    assert a_general["prior_mean"] == pytest.approx((1 - weight) * 0.8 + weight * 0.25)
    b_general = post.filter((pl.col("model_id") == "b") & (pl.col("task_type") == "general")).row(0, named=True)
    assert b_general["prior_mean"] == pytest.approx(REGISTRY.get("b").prior_quality_for(REGISTRY_TASK_GENERAL))


REGISTRY_TASK_GENERAL = __import__("routing_runtime").TaskType.GENERAL


def test_latency_posterior_matches_the_normal_inverse_gamma_update():
    logs = np.log(np.array([800.0, 1200.0, 950.0, 1500.0]))
    totals = totals_for({("a", "general"): {
        "n": 4.0, "sum_q": 3.0, "n_raw": 4.0, "n_latency": 4.0, "sum_log_latency": logs.sum(), "sum_log_latency2": (logs**2).sum(),
    }})
    post = posteriors.compute_posteriors(totals, REGISTRY).filter(
        (pl.col("model_id") == "a") & (pl.col("task_type") == "general")
    ).row(0, named=True)
    mu0, kappa0, alpha0, beta0 = math.log(1000.0) - 0.25 / 2, 1.0, 2.0, 0.25
    n, mean = 4, logs.mean()
    kappa = kappa0 + n
    mu = (kappa0 * mu0 + n * mean) / kappa
    alpha = alpha0 + n / 2
    beta = beta0 + ((logs - mean) ** 2).sum() / 2 + kappa0 * n * (mean - mu0) ** 2 / (2 * kappa)
    assert post["latency_mu"] == pytest.approx(mu)
    assert post["latency_alpha"] == pytest.approx(alpha)
    assert post["latency_beta"] == pytest.approx(beta)
    assert post["latency_mean_ms"] == pytest.approx(math.exp(mu + beta / (alpha - 1) / 2))
    scale = math.sqrt(beta / (alpha * kappa))
    assert post["latency_ci_low_ms"] == pytest.approx(math.exp(sps.t.ppf(0.05, 2 * alpha, mu, scale) + beta / (alpha - 1) / 2))


def test_without_evidence_the_posterior_is_the_registry_prior():
    empty = totals_for({})
    post = posteriors.compute_posteriors(empty, REGISTRY)
    assert post.height == 2 * len(TaskType)
    b_math = post.filter((pl.col("model_id") == "b") & (pl.col("task_type") == "math")).row(0, named=True)
    assert b_math["quality_mean"] == pytest.approx(0.9) and b_math["n_raw"] == 0
    assert b_math["is_specialized"] is True
    # The prior's log-normal mean is the list price and the typical latency.
    assert b_math["cost_mean_usd"] == pytest.approx(REGISTRY.policy(REGISTRY_TASK_MATH).cost_per_request(REGISTRY.get("b")))
    assert b_math["latency_mean_ms"] == pytest.approx(2000.0)


REGISTRY_TASK_MATH = __import__("routing_runtime").TaskType.MATH


def test_specialist_comparison_reports_the_probability_that_the_specialist_is_better():
    totals = totals_for({
        ("b", "math"): {"n": 100.0, "sum_q": 95.0, "n_raw": 100.0},
        ("a", "math"): {"n": 100.0, "sum_q": 60.0, "n_raw": 100.0},
    })
    table = posteriors.specialist_comparison(posteriors.compute_posteriors(totals, REGISTRY), seed=1)
    math_row = table.filter(pl.col("task_type") == "math").row(0, named=True)
    assert math_row["best_specialist"] == "b" and math_row["best_generalist"] == "a"
    assert math_row["p_specialist_better"] > 0.99
    assert table.filter(pl.col("task_type") == "general")["best_specialist"][0] is None


def test_learned_rules_follow_each_preference_definition():
    from routing_pipelines.learning import candidates
    from routing_runtime import RoutingPreference, TaskType

    registry = ModelRegistry.from_toml("""
[defaults]
min_quality_score = 0.7
[[models]]
id = "cheap-weak"
input_cost_per_1k = 0.0001
output_cost_per_1k = 0.0001
prior_quality = 0.6
typical_latency_ms = 300
[[models]]
id = "cheap-ok"
input_cost_per_1k = 0.0002
output_cost_per_1k = 0.0002
prior_quality = 0.75
typical_latency_ms = 2000
[[models]]
id = "fast-good"
input_cost_per_1k = 0.002
output_cost_per_1k = 0.002
prior_quality = 0.85
typical_latency_ms = 500
[[models]]
id = "best"
input_cost_per_1k = 0.01
output_cost_per_1k = 0.01
prior_quality = 0.95
typical_latency_ms = 3000
""")
    # Plenty of evidence that agrees with the priors.
    rows = {}
    for model, q in (("cheap-weak", 0.6), ("cheap-ok", 0.75), ("fast-good", 0.85), ("best", 0.95)):
        rows[(model, "general")] = {"n": 2000.0, "sum_q": 2000 * q, "n_raw": 2000.0}
    post = posteriors.compute_posteriors(totals_for(rows), registry)
    rules = candidates.candidate_rules(post, registry, seed=0).learned

    def top(preference):
        cell = [r for r in rules if r.task_type is TaskType.GENERAL and r.preference is preference]
        assert abs(sum(r.selection_probability for r in cell) - 1) < 1e-6
        return max(cell, key=lambda r: r.selection_probability).model_id, min(cell, key=lambda r: r.priority).model_id

    assert top(RoutingPreference.QUALITY) == ("best", "best")
    assert top(RoutingPreference.COST_EFFICIENT) == ("cheap-ok", "cheap-ok")      # cheap-weak is below 0.7
    assert top(RoutingPreference.LATENCY) == ("fast-good", "fast-good")           # cheap-weak is faster but ineligible
    balanced = {r.model_id: r.expected_quality / r.expected_cost_usd for r in rules
                if r.task_type is TaskType.GENERAL and r.preference is RoutingPreference.BALANCED and r.is_eligible}
    assert top(RoutingPreference.BALANCED)[1] == max(balanced, key=balanced.__getitem__) == "cheap-ok"
    ineligible = [r for r in rules if r.model_id == "cheap-weak" and r.task_type is TaskType.GENERAL
                  and r.preference is not RoutingPreference.QUALITY]
    assert all(not r.is_eligible and r.selection_probability == 0 for r in ineligible)


def test_a_sudden_change_is_detected_on_its_day_and_discounts_the_evidence_before_it():
    from routing_pipelines.learning import changes

    def day(d: int, n: float, q: float, latency: float) -> dict:
        log = math.log(latency)
        return {"model_id": "a", "task_type": "math", "day": dt.date(2026, 3, d), "n": n, "sum_q": n * q,
                "sum_q2": n * (q * q + 0.04), "n_latency": n, "sum_log_latency": n * log,
                "sum_log_latency2": n * (log * log + 0.1), "n_cost": 0.0, "n_cost_positive": 0.0, "sum_log_cost": 0.0,
                "sum_log_cost2": 0.0}

    steady = [day(d, 200, 0.9, 1000) for d in range(1, 8)]
    noisy = steady + [day(8, 200, 0.86, 1100)]       # within noise and below the practical shift
    assert changes.detect_changes(pl.DataFrame(noisy), LearningSettings(half_life_days=30)).height == 0
    broken = steady + [day(8, 200, 0.45, 1000), day(9, 200, 0.45, 3000)]
    found = changes.detect_changes(pl.DataFrame(broken), LearningSettings(half_life_days=30))
    assert found.select("changed_on", "what").rows() == [(dt.date(2026, 3, 8), "quality"), (dt.date(2026, 3, 9), "latency")]
    assert found["after"][1] == pytest.approx(3000, rel=0.01)
    weights = changes.discount_before_changes(pl.DataFrame(broken).lazy(), found, LearningSettings()).collect()
    assert weights.filter(pl.col("day") < dt.date(2026, 3, 9))["change_weight"].unique().to_list() == [LearningSettings().change_discount]
    assert weights.filter(pl.col("day") == dt.date(2026, 3, 9))["change_weight"].to_list() == [1.0]
    # Re-running over the same days finds the same change points.
    assert changes.detect_changes(pl.DataFrame(broken), LearningSettings(half_life_days=30)).equals(found)
    # The thresholds are learning settings: stricter ones see no change, a looser one sees the noise.
    strict = LearningSettings(half_life_days=30, change_min_day_count=500)
    assert changes.detect_changes(pl.DataFrame(broken), strict).height == 0
    detected = changes.detect_changes(pl.DataFrame(broken), LearningSettings(half_life_days=30, change_min_ratio_shift=4.0))
    assert detected["what"].to_list() == ["quality"]
    loose = LearningSettings(half_life_days=30, change_z_threshold=1.0, change_min_quality_shift=0.01)
    assert changes.detect_changes(pl.DataFrame(noisy), loose)["what"].to_list() == ["quality"]
    kept = changes.discount_before_changes(pl.DataFrame(broken).lazy(), found, LearningSettings(change_discount=0.5)).collect()
    assert kept.filter(pl.col("day") < dt.date(2026, 3, 9))["change_weight"].unique().to_list() == [0.5]


def test_registry_rules_share_the_traffic_between_tied_models():
    """Regression: with equal priors the first model id took 95% of day one's traffic."""
    from routing_runtime import RoutingPreference, TaskType
    from routing_runtime.rules import build_rules, registry_estimates

    registry = ModelRegistry.from_toml("\n".join(
        f'[[models]]\nid = "m{i}"\ninput_cost_per_1k = 0.001\noutput_cost_per_1k = 0.001\nprior_quality = 0.8\ntypical_latency_ms = 1000\n'
        for i in range(4)
    ))
    cell = [r for r in build_rules(registry_estimates(registry), registry)
            if r.task_type is TaskType.MATH and r.preference is RoutingPreference.QUALITY]
    assert [r.selection_probability for r in cell] == pytest.approx([0.25] * 4)


def test_off_policy_estimates_recover_a_policy_value_from_logs_of_another():
    from routing_pipelines.learning import evaluation

    rng = np.random.default_rng(7)
    n = 30_000
    truth = {"a": 0.3, "b": 0.6, "c": 0.9}
    logging = {"a": 0.5, "b": 0.3, "c": 0.2}
    models = rng.choice(list(logging), size=n, p=list(logging.values()))
    quality = (rng.random(n) < np.vectorize(truth.get)(models)).astype(float)
    day = dt.date(2026, 1, 5)
    decisions = pl.DataFrame({
        "id": [str(i) for i in range(n)], "day": [day] * n, "task_type": "math", "preference": "quality",
        "selected_model": models, "propensity": np.vectorize(logging.get)(models), "excluded": [None] * n,
        "selection_reason": [None] * n,
    }, schema_overrides={"excluded": pl.String, "selection_reason": pl.String})
    performance = pl.DataFrame({
        "decision_id": [str(i) for i in range(n)], "quality_score": quality, "outcome": np.where(quality > 0, "success", "failure"),
        "cost_usd": 0.001, "latency_ms": 1000.0,
    })
    # Fallbacks after an exclusion (propensity 1 under a conditional policy) must be left out.
    fallbacks = 500
    decisions = pl.concat([decisions, pl.DataFrame({
        "id": [f"f{i}" for i in range(fallbacks)], "day": day, "task_type": "math", "preference": "quality", "selected_model": "a",
        "propensity": 1.0, "excluded": '["c"]', "selection_reason": "quality: …; fallback of 0; provider error: 429"})])
    performance = pl.concat([performance, pl.DataFrame({
        "decision_id": [f"f{i}" for i in range(fallbacks)], "quality_score": 1.0, "outcome": "success",
        "cost_usd": 0.001, "latency_ms": 1000.0})])
    target = pl.DataFrame({"task_type": "math", "preference": "quality", "model_id": ["a", "b", "c"],
                           "selection_probability": [0.05, 0.05, 0.9]})
    # A direct model that is wrong on purpose (the same quality for every model): doubly robust
    # must still recover the value, through the propensities.
    direct = pl.DataFrame({"task_type": "math", "model_id": ["a", "b", "c"], "quality_mean": 0.5,
                           "cost_mean_usd": 0.001, "latency_mean_ms": 1000.0})
    feedback = evaluation.logged_feedback(decisions.lazy(), performance.lazy()).collect()
    estimates = evaluation.off_policy_estimates(feedback, target, direct)
    cell = estimates.filter(pl.col("task_type") == "math").row(0, named=True)
    true_value = 0.05 * 0.3 + 0.05 * 0.6 + 0.9 * 0.9
    logged_value = 0.5 * 0.3 + 0.3 * 0.6 + 0.2 * 0.9
    assert cell["n"] == n
    assert cell["objective"] == "quality"
    assert cell["logged_value"] == pytest.approx(logged_value, abs=0.01)
    for name in ("snips", "dr"):
        assert cell[f"{name}_value"] == pytest.approx(true_value, rel=0.02), name
        assert cell[f"{name}_low"] < true_value < cell[f"{name}_high"], name
    assert cell["improvement_value"] == pytest.approx(true_value / logged_value - 1, abs=0.03)
    assert cell["improvement_low"] < true_value / logged_value - 1 < cell["improvement_high"]
    assert 0 < cell["effective_sample_size"] < n
    pooled = estimates.filter(pl.col("task_type") == "all")
    assert pooled.height == 1 and pooled["n"].item() == n


def test_two_workers_learn_exactly_what_one_worker_learns_forecast_bits():
    # CI regression: with two workers the published forecast differed from one worker's in its
    # last bit, because sums ran over join output whose order varies with threads. Every figure
    # must be the same, to the bit, whatever order the rows arrive in.
    from routing_pipelines.learning import evaluation

    rng = np.random.default_rng(11)
    n, models = 4_000, ["a", "b", "c", "d", "e"]
    chosen = rng.choice(models, size=n)
    feedback = pl.DataFrame({
        "decision_id": [f"{i:05d}" for i in range(n)], "day": dt.date(2026, 1, 5),
        "task_type": rng.choice(["math", "general"], size=n), "preference": rng.choice(["quality", "balanced"], size=n),
        "model_id": chosen, "propensity": 0.2, "quality": rng.random(n), "cost": rng.random(n) / 1000,
        "latency": rng.random(n) * 3000 + 100,
    })
    policy = pl.DataFrame([(t, p, m, w) for t in ("math", "general") for p in ("quality", "balanced")
                           for m, w in zip(models, rng.dirichlet(np.ones(5)) / 3 + 0.0 + np.array([0, 0, 0, 0, 2 / 3]))],
                          schema=["task_type", "preference", "model_id", "selection_probability"], orient="row")
    direct = pl.DataFrame([(t, m, rng.random(), rng.random() / 1000, rng.random() * 3000) for t in ("math", "general") for m in models],
                          schema=["task_type", "model_id", "quality_mean", "cost_mean_usd", "latency_mean_ms"], orient="row")
    first = evaluation.off_policy_estimates(feedback, policy, direct)
    for seed in range(5):
        shuffled = [frame.sample(fraction=1.0, shuffle=True, seed=seed) for frame in (feedback, policy, direct)]
        assert evaluation.off_policy_estimates(*shuffled).equals(first), seed


def test_two_workers_learn_exactly_what_one_worker_learns_posterior_bits():
    # CI regression (again, after the forecast fix above): on a busy machine the published
    # figures differed in their last bits between one worker and two. Polars' own float sums add
    # in whatever order its threads split the rows; every sum on the way from outcomes to
    # posteriors is exact, so no row order, layout or thread count can change a bit.
    days = [dt.date(2026, 3, d) for d in range(1, 6)]
    raw = pl.concat([outcomes(3_000, seed, day) for seed, day in enumerate(days)])

    def learned(frame: pl.DataFrame) -> tuple[pl.DataFrame, ...]:
        daily = pl.concat([statistics.daily_stats(frame.filter(pl.col("day") == day)).with_columns(day=pl.lit(day))
                           for day in days])
        posterior, _ = posteriors.posteriors_as_of(daily.lazy(), days[-1], REGISTRY)
        return daily, statistics.merge(daily.drop("day")), posterior

    first = learned(raw)
    for seed in range(3):
        again = learned(raw.sample(fraction=1.0, shuffle=True, seed=seed))
        for one, other in zip(first, again):
            assert other.equals(one), seed


def test_free_calls_and_zero_latencies_do_not_wreck_the_cost_and_latency_estimates():
    """Regression: cost 0 was fitted as log(1e-9) and latency 0 as log(1 ms), so a few free
    calls made a model look thousands of times more expensive."""
    n = 200
    frame = pl.DataFrame({
        "model_id": ["a"] * n, "task_type": ["general"] * n, "outcome": ["success"] * n, "quality_score": [None] * n,
        "latency_ms": [0.0 if i % 10 == 0 else 900.0 for i in range(n)], "tokens_used": [1000] * n,
        "cost_usd": [0.0 if i % 2 == 0 else 0.005 for i in range(n)],
    }).with_columns(pl.col("quality_score").cast(pl.Float64))
    stats = statistics.daily_stats(frame).with_columns(pl.lit(dt.date(2026, 3, 1)).alias("day"))
    post, _ = posteriors.posteriors_as_of(stats.lazy(), dt.date(2026, 3, 1), REGISTRY)
    row = post.filter((pl.col("model_id") == "a") & (pl.col("task_type") == "general")).row(0, named=True)
    assert row["cost_mean_usd"] == pytest.approx(0.0025, rel=0.1)          # half the calls were free
    assert row["latency_mean_ms"] == pytest.approx(900, rel=0.1)


def test_with_no_eligible_model_learned_rules_send_everything_to_the_highest_quality():
    """Regression: Thompson draws still split the traffic when no model was eligible by its mean."""
    from routing_pipelines.learning import candidates
    from routing_runtime import RoutingPreference, TaskType

    registry = ModelRegistry.from_toml("""
[tasks.math]
min_quality_score = 0.8
[[models]]
id = "weak-cheap"
input_cost_per_1k = 0.0001
output_cost_per_1k = 0.0001
prior_quality = 0.55
typical_latency_ms = 500
[[models]]
id = "good-expensive"
input_cost_per_1k = 0.01
output_cost_per_1k = 0.01
prior_quality = 0.69
typical_latency_ms = 900
""")
    post = posteriors.compute_posteriors(totals_for({}), registry)
    cell = [r for r in candidates.candidate_rules(post, registry, seed=0).learned
            if r.task_type is TaskType.MATH and r.preference is RoutingPreference.COST_EFFICIENT]
    assert {r.model_id: r.selection_probability for r in cell} == {"good-expensive": 1.0, "weak-cheap": 0.0}


def test_off_policy_estimates_of_restricted_decisions_renormalise_the_target_alike():
    # A LiteLLM group reaches only some registry models: its decisions are drawn among them
    # (`within`) with the renormalised propensity, and `excluded` names the rest. The estimate is
    # the target's value under the same restrictions: renormalised over the same models.
    from routing_pipelines.learning import evaluation

    rng = np.random.default_rng(13)
    n = 40_000
    truth = {"a": 0.3, "b": 0.6, "c": 0.9}
    logging = {"a": 0.5, "b": 0.3, "c": 0.2}
    restricted = rng.random(n) < 0.4  # these reached only a and b
    within = {"a": 0.5 / 0.8, "b": 0.3 / 0.8}
    models = np.where(
        restricted, rng.choice(list(within), size=n, p=list(within.values())), rng.choice(list(logging), size=n, p=list(logging.values())),
    )
    propensity = np.where(restricted, np.vectorize(lambda m: within.get(m, 0.0))(models), np.vectorize(logging.get)(models))
    quality = (rng.random(n) < np.vectorize(truth.get)(models)).astype(float)
    ids = [f"{i:06d}" for i in range(n)]
    decisions = pl.DataFrame({
        "id": ids, "day": dt.date(2026, 1, 5), "task_type": "math", "preference": "quality", "selected_model": models,
        "propensity": propensity, "excluded": ['["c"]' if r else None for r in restricted],
        "selection_reason": ["quality: … among the 2 allowed candidates" if r else None for r in restricted],
    }, schema_overrides={"excluded": pl.String, "selection_reason": pl.String})
    performance = pl.DataFrame({"decision_id": ids, "quality_score": quality, "outcome": "success", "cost_usd": 0.001,
                                "latency_ms": 1000.0})
    target = {"a": 0.1, "b": 0.5, "c": 0.4}
    policy = pl.DataFrame({"task_type": "math", "preference": "quality", "model_id": list(target),
                           "selection_probability": list(target.values())})
    direct = pl.DataFrame({"task_type": "math", "model_id": list(truth), "quality_mean": 0.5, "cost_mean_usd": 0.001,
                           "latency_mean_ms": 1000.0})
    feedback = evaluation.logged_feedback(decisions.lazy(), performance.lazy()).collect()
    cell = evaluation.off_policy_estimates(feedback, policy, direct).filter(pl.col("task_type") == "math").row(0, named=True)
    free = sum(target[m] * truth[m] for m in truth)
    kept = (target["a"] * truth["a"] + target["b"] * truth["b"]) / (target["a"] + target["b"])
    true_value = restricted.mean() * kept + (1 - restricted.mean()) * free
    assert cell["n"] == n  # the restricted decisions are evaluated, not dropped
    for name in ("snips", "dr"):
        assert cell[f"{name}_value"] == pytest.approx(true_value, rel=0.02), name
        assert cell[f"{name}_low"] < true_value < cell[f"{name}_high"], name
    # Ignoring the restriction (the unrestricted target on restricted logs) would be far off.
    assert abs(free - true_value) > 0.04


def generalists(ids, header: str, prior_quality: float = 0.5) -> ModelRegistry:
    """A registry of generalists ``ids`` at one price and latency, after the TOML ``header``."""
    return ModelRegistry.from_toml(header + "".join(f"""
[[models]]
id = "{m}"
input_cost_per_1k = 0.001
output_cost_per_1k = 0.001
prior_quality = {prior_quality}
typical_latency_ms = 1000
""" for m in ids))


THREE_GENERALISTS = generalists(("m1", "m2", "m3"), """
[defaults]
min_quality_score = 0.0
[learning]
prior_pseudo_count = 10
exploration_floor = 0.05
exploration_floor_evidence = 500
""")


@pytest.mark.parametrize("qualities, expected", [
    # Registry priors of 0.5 against outcomes of 0.1 / 0.3 / 0.7: τ² ≈ 0.0796, k = 0.25/τ² − 1.
    ((0.1, 0.3, 0.7), 2.14),
    # Outcomes that agree with the priors (within sampling noise): the registry's weight is kept.
    ((0.5, 0.5, 0.52), 10.0),
])
def test_the_prior_weight_is_learned_from_how_far_priors_are_from_outcomes(qualities, expected):
    totals = totals_for({(m, "math"): {"n": 400.0, "sum_q": 400.0 * q, "n_raw": 400.0} for m, q in zip(("m1", "m2", "m3"), qualities)})
    post = posteriors.compute_posteriors(totals, THREE_GENERALISTS)
    math_rows = post.filter(pl.col("task_type") == "math")
    assert math_rows["prior_count"].round(2).to_list() == [expected] * 3
    # The Beta posterior carries that weight; other task types (no evidence) keep the registry's.
    row = math_rows.row(0, named=True)
    assert row["quality_alpha"] + row["quality_beta"] == pytest.approx(expected + 400.0, abs=0.01)
    assert set(post.filter(pl.col("task_type") != "math")["prior_count"]) == {10.0}


def test_too_few_models_with_evidence_keep_the_registry_prior_weight():
    totals = totals_for({(m, "math"): {"n": 400.0, "sum_q": 400.0 * q, "n_raw": 400.0} for m, q in (("m1", 0.1), ("m2", 0.9))}
                        | {("m3", "math"): {"n": 29.0, "sum_q": 1.0, "n_raw": 29.0}})
    post = posteriors.compute_posteriors(totals, THREE_GENERALISTS)
    assert set(post["prior_count"]) == {10.0}


def test_the_exploration_floor_shrinks_with_a_task_types_evidence():
    from routing_pipelines.learning import candidates
    from routing_runtime import RoutingPreference, TaskType

    # m2 is a little worse than m1 (P(best) about 0.2), m3 out of contention, on two task types
    # with 8,000 and 100 observations per model.
    counts = {"math": 8000.0, "general": 100.0}
    qualities = {"m1": 0.5, "m2": 0.4934, "m3": 0.2}
    totals = totals_for({(m, t): {"n": n, "sum_q": n * q, "n_raw": n} for t, n in counts.items() for m, q in qualities.items()})
    post = posteriors.compute_posteriors(totals, THREE_GENERALISTS)
    floors = candidates.exploration_floors(post, THREE_GENERALISTS)
    assert floors[TaskType.MATH] == pytest.approx(0.05 * (500 / 24000) ** 0.5)
    assert floors[TaskType.GENERAL] == floors[TaskType.TESTING] == 0.05
    rules = candidates.candidate_rules(post, THREE_GENERALISTS, seed=0).learned
    best = candidates.best_probabilities(post, THREE_GENERALISTS, seed=0)
    for task in (TaskType.MATH, TaskType.GENERAL):
        cell = Cell(task, RoutingPreference.QUALITY)
        pool = [m for m, p in best[cell].items() if p > 0]
        shares = {r.model_id: r.selection_probability for r in rules if (r.task_type, r.preference) == cell}
        floor = floors[task]
        for m in pool:  # P(best) mixed with the task type's own floor, spread over the contenders
            assert shares[m] == pytest.approx(floor / len(pool) + (1 - floor) * best[cell][m], abs=2e-6), (task, m)
    math_m2 = best[Cell(TaskType.MATH, RoutingPreference.QUALITY)]["m2"]
    assert 0.05 < math_m2 < 0.5  # m2 is in contention, so the floor matters for it


def _with_learning(registry, **settings):
    import dataclasses

    return dataclasses.replace(registry, learning=dataclasses.replace(registry.learning, **settings))


def test_a_long_shot_gets_no_traffic_below_min_best_probability_and_the_floor_otherwise():
    from routing_pipelines.learning import candidates
    from routing_runtime import RoutingPreference, TaskType

    # On math m1 and m2 are close and m3 a long shot: P(best) about 0.7 / 0.3 / 0.003.
    qualities = {"m1": 0.5, "m2": 0.49, "m3": 0.44}
    totals = totals_for({(m, "math"): {"n": 1000.0, "sum_q": 1000.0 * q, "n_raw": 1000.0} for m, q in qualities.items()})
    default = _with_learning(THREE_GENERALISTS, exploration_floor_evidence=0.0)
    assert default.learning.min_best_probability == 0.01 and default.learning.always_explored == 0
    cutting, sparing = default, _with_learning(default, always_explored=8)
    post = posteriors.compute_posteriors(totals, default)
    cell = Cell(TaskType.MATH, RoutingPreference.QUALITY)

    def shares(registry):
        rules = candidates.candidate_rules(post, registry, seed=0).learned
        return {r.model_id: r.selection_probability for r in rules if (r.task_type, r.preference) == cell}

    as_is = candidates.best_probabilities(post, _with_learning(default, min_best_probability=0.0), seed=0)[cell]
    assert 0 < as_is["m3"] < 0.01 and as_is["m2"] > 0.1
    # Three models are fewer than always_explored: the long shot keeps its share and a third of the floor.
    kept = shares(sparing)
    assert kept["m3"] == pytest.approx(0.05 / 3 + 0.95 * as_is["m3"], abs=2e-6)
    assert shares(_with_learning(default, always_explored=3)) == kept
    for registry in (cutting, _with_learning(default, always_explored=2)):  # m3 is not among the spared
        cut = shares(registry)
        assert cut["m3"] == 0.0
        scale = 1.0 / (as_is["m1"] + as_is["m2"])
        for m in ("m1", "m2"):  # the rest scaled up, and the floor shared by the two contenders
            assert cut[m] == pytest.approx(0.05 / 2 + 0.95 * as_is[m] * scale, abs=2e-6), m
        assert sum(cut.values()) == pytest.approx(1.0, abs=1e-5)
        assert candidates.coverage_problems(candidates.candidate_rules(post, registry, seed=0).learned) == []


def test_a_many_arm_cell_keeps_exploring_its_most_promising_models_and_drops_the_long_shots_beyond_them():
    # Regression (issue 12): with 19 models on the real-data replay, most of the floor and of
    # Thompson sampling's own tail went to models that had no chance of being best.
    from routing_pipelines.learning import candidates
    from routing_runtime import RoutingPreference, TaskType

    qualities = {f"m{i:02d}": 0.60 - 0.01 * i for i in range(12)}  # m00 best; from m03 on, P(best) < 1%
    registry = _with_learning(generalists(qualities, "[defaults]\nmin_quality_score = 0.0\n"), always_explored=8)
    totals = totals_for({(m, "math"): {"n": 2000.0, "sum_q": 2000.0 * q, "n_raw": 2000.0} for m, q in qualities.items()})
    post = posteriors.compute_posteriors(totals, registry)
    cell = Cell(TaskType.MATH, RoutingPreference.QUALITY)
    as_is = candidates.best_probabilities(post, _with_learning(registry, min_best_probability=0.0), seed=0)[cell]
    best = candidates.best_probabilities(post, registry, seed=0)[cell]
    long_shots = {m for m, p in as_is.items() if p < 0.01}
    spared = {f"m{i:02d}" for i in range(8)}  # the eight with the highest posterior mean quality
    assert long_shots - spared and long_shots & spared, as_is
    assert not (long_shots - spared) & set(best)  # out of the cell's contention
    assert all(best[m] > 0.0 for m in spared if as_is[m] > 0)
    assert sum(best.values()) == pytest.approx(sum(as_is.values()))
    rules = candidates.candidate_rules(post, registry, seed=0).learned
    share = {r.model_id: r.selection_probability for r in rules if (r.task_type, r.preference) == cell}
    assert all(share[m] == 0.0 for m in long_shots - spared)
    assert sum(share.values()) == pytest.approx(1.0, abs=1e-5)


def test_a_slipping_cell_is_forgotten_at_the_half_life_and_a_steady_one_at_the_steady_half_life():
    # Regression (issue 12): a fixed 30-day half-life widened the posteriors of steady cells too,
    # which cost the replay 1–2% of the best model's quality; forgetting now follows drift.
    settings = THREE_AB.learning
    assert settings.steady_half_life_days != settings.half_life_days
    days = [dt.date(2026, 1, 1) + dt.timedelta(days=d) for d in range(14)]
    rows = []
    for i, day in enumerate(days):
        for model, q in (("a", 0.8), ("b", 0.8 if i < 7 else 0.8 - 0.03 * (i - 6))):  # b slips from day 8
            n = 100.0
            rows.append({"model_id": model, "task_type": "math", "day": day, **{c: 0.0 for c in statistics.SUM_COLUMNS},
                         "n": n, "sum_q": n * q, "sum_q2": n * q})
    daily = pl.DataFrame(rows, schema={**statistics.STATS_SCHEMA, "day": pl.Date})
    post, detected = posteriors.posteriors_as_of(daily.lazy(), days[-1], THREE_AB)
    assert detected.height == 0  # no single day jumps: no change point
    effective = dict(post.filter(pl.col("task_type") == "math").select("model_id", "n_effective").iter_rows())
    ages = np.arange(13, -1, -1)
    assert effective["a"] == pytest.approx(100 * (2.0 ** (-ages / settings.steady_half_life_days)).sum())
    assert effective["b"] == pytest.approx(100 * (2.0 ** (-ages / settings.half_life_days)).sum())


THREE_AB = generalists(("a", "b"), "[learning]\nsteady_half_life_days = 180\n", prior_quality=0.8)


def _record(rows: dict[str, dict[str, float]], n: float) -> dict[tuple[str, str], dict[str, float]]:
    """Totals of ``n`` outcomes per (model, task type) at the given qualities."""
    return {(m, t): {"n": n, "sum_q": n * q, "n_raw": n} for m, by_task in rows.items() for t, q in by_task.items()}


FOUR_GENERALISTS = generalists(("a", "b", "c", "d"), "[defaults]\nmin_quality_score = 0.0\n", prior_quality=0.7)


def test_a_model_better_than_its_peers_everywhere_is_trusted_sooner_where_it_was_tried_little():
    # Regression (issue 12): after a collapse of the top model the runners-up had 15-20 outcomes
    # each on the task type, too few to order two models 0.06 apart: the drift scenario's worst
    # cell took up to 4 nights (up to 7 with the floor shrinking), though the better runner-up
    # led its peers by as much on every other task type.
    elsewhere = {"a": 0.60, "b": 0.70, "c": 0.80, "d": 0.90}
    record = _record({m: {"general": q, "planning": q - 0.05, "math": q - 0.1} for m, q in elsewhere.items()}, 400.0)
    record |= _record({"a": {"debugging": 0.60}, "b": {"debugging": 0.70}, "c": {"debugging": 0.80}}, 400.0)
    record |= _record({"d": {"debugging": 0.80}}, 10.0)  # d: tried 10 times, unluckily at c's level
    post = posteriors.compute_posteriors(totals_for(record), FOUR_GENERALISTS)
    off = posteriors.compute_posteriors(totals_for(record), _with_learning(FOUR_GENERALISTS, cross_task_prior_count=0.0))

    def on(frame, model):
        return frame.filter((pl.col("model_id") == model) & (pl.col("task_type") == "debugging")).row(0, named=True)

    assert on(post, "d")["prior_count"] == 30.0 > on(off, "d")["prior_count"]
    assert on(post, "d")["prior_mean"] > 0.8 > on(off, "d")["prior_mean"]
    assert on(post, "d")["quality_mean"] > on(post, "c")["quality_mean"] > on(off, "d")["quality_mean"]
    # Models with a long record of their own keep it: their prior moves them little.
    assert on(post, "c")["quality_mean"] == pytest.approx(on(off, "c")["quality_mean"], abs=0.01)


def test_where_models_stand_differently_on_each_task_type_their_record_elsewhere_weighs_little():
    elsewhere = {"a": 0.60, "b": 0.70, "c": 0.80, "d": 0.90}

    def d_on_math(math: dict[str, float], cross_task_prior_count: float = 30.0) -> dict:
        record = _record({m: {"general": q, "planning": q} for m, q in elsewhere.items()}, 400.0)
        record |= _record({m: {"math": q} for m, q in math.items()}, 400.0) | _record({"d": {"math": 0.55}}, 10.0)
        registry = _with_learning(FOUR_GENERALISTS, cross_task_prior_count=cross_task_prior_count)
        post = posteriors.compute_posteriors(totals_for(record), registry)
        return post.filter((pl.col("model_id") == "d") & (pl.col("task_type") == "math")).row(0, named=True)

    same_order, other_order = {"a": 0.60, "b": 0.70, "c": 0.80}, {"a": 0.80, "b": 0.50, "c": 0.75}
    consistent, inconsistent = d_on_math(same_order), d_on_math(other_order)
    shift = {name: row["quality_mean"] - d_on_math(math, 0.0)["quality_mean"]
             for name, row, math in (("consistent", consistent, same_order), ("inconsistent", inconsistent, other_order))}
    assert consistent["prior_count"] == 30.0 and inconsistent["prior_count"] < 15.0
    assert shift["consistent"] > 0.1 and 0 <= shift["inconsistent"] < shift["consistent"] / 4, shift


def test_a_record_elsewhere_does_not_dilute_the_untied_share_the_gate_holds_a_model_by():
    # Regression (review of the cross-task prior): the pseudo-count it adds came from outcomes on
    # other task types, untied ones included; counted as checked weight, it let a model whose
    # debugging evidence was all untied past gate_max_untied_share (0.667 -> 0.400).
    from routing_pipelines.learning import candidates

    record = _record({m: {"general": q, "planning": q, "math": q} for m, q in {"a": 0.6, "b": 0.7, "c": 0.8, "d": 0.9}.items()}, 400.0)
    record |= _record({m: {"debugging": q} for m, q in {"a": 0.6, "b": 0.7, "c": 0.8}.items()}, 400.0)
    record |= _record({"d": {"debugging": 0.8}}, 20.0)
    tied = {key: {**values, "n_tied": values["n"]} for key, values in record.items() if key[0] != "d"}
    totals = totals_for(record | tied)
    shares = {}
    for count in (0.0, 30.0):
        registry = _with_learning(FOUR_GENERALISTS, cross_task_prior_count=count)
        post = posteriors.compute_posteriors(totals, registry)
        shares[count] = candidates.untied_shares(post, registry)[("debugging", "d")]
    assert shares[30.0] == pytest.approx(shares[0.0]) == pytest.approx(20 / 30)


def test_a_corrupt_sum_stays_in_its_own_row_for_posterior_sanity_to_name():
    # Regression (review of the cross-task prior): one infinite sum made the whole task type's
    # spread NaN and its peers' leads infinite on every task type: 17 rows flagged, not 1.
    record = _record({m: {"general": q, "planning": q, "math": q} for m, q in {"a": 0.6, "b": 0.7, "c": 0.8, "d": 0.9}.items()}, 400.0)
    record[("a", "math")] = {**record[("a", "math")], "sum_q": float("inf")}
    post = posteriors.compute_posteriors(totals_for(record), FOUR_GENERALISTS)
    broken = post.filter(~pl.col("quality_mean").is_finite()).select("model_id", "task_type").rows()
    assert broken == [("a", "math")]
