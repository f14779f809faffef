"""Posterior families (``routing_pipelines.learning.families``): closed forms against SciPy,
draws against their means, invalid input named, and the posterior frame built from them."""

from __future__ import annotations

import datetime as dt
import math

import pytest

np = pytest.importorskip("numpy")
pl = pytest.importorskip("polars")
sps = pytest.importorskip("scipy.stats")

from routing_pipelines.learning import posteriors  # noqa: E402
from routing_pipelines.learning.families import (  # noqa: E402
    LOG_PRIOR_ALPHA, LOG_PRIOR_KAPPA, LOG_PRIOR_SD, BetaQuality, DirichletOutcomes, NormalInverseGammaLog,
)
from routing_runtime.registry import ModelRegistry  # noqa: E402


def _beta(**overrides):
    args = {"n": [10.0], "sum_q": [7.0], "prior_mean": [0.6], "prior_count": 5.0} | overrides
    return BetaQuality.from_totals(args.pop("n"), args.pop("sum_q"), **args)


def _nig(**overrides):
    args = {"n": [4.0], "sum_log": [28.0], "sum_log2": [196.5], "typical_log": [7.0]} | overrides
    return NormalInverseGammaLog.from_totals(args.pop("n"), args.pop("sum_log"), args.pop("sum_log2"), **args)


def _dirichlet(**overrides):
    args = {"n_success": [5.0], "n_partial": [1.0], "n_failure": [2.0], "prior_mean": [0.7], "prior_count": 4.0} | overrides
    return DirichletOutcomes.from_totals(args.pop("n_success"), args.pop("n_partial"), args.pop("n_failure"), **args)


@pytest.mark.parametrize("build, field, value, message", [
    (_beta, "n", [-1.0], r"n\[0\] = -1.0 must be finite and >= 0"),
    (_beta, "sum_q", [math.nan], r"sum_q\[0\] = nan must be finite"),
    (_beta, "prior_mean", [0.0], r"prior_mean\[0\] = 0.0 must be finite and > 0.0 and <= 1.0"),
    (_beta, "prior_count", 0.0, r"prior_count\[0\] = 0.0 must be finite and > 0.0"),
    (_nig, "n", [1.0, -2.0], r"n\[1\] = -2.0 must be finite and >= 0"),
    (_nig, "sum_log", [math.inf], r"sum_log\[0\] = inf must be finite"),
    (_nig, "sum_log2", [-0.5], r"sum_log2\[0\] = -0.5 must be finite and >= 0"),
    (_nig, "typical_log", [math.nan], r"typical_log\[0\] = nan must be finite"),
    (_nig, "scale", [-1.0], r"scale\[0\] = -1.0 must be finite and >= 0"),
    (_dirichlet, "n_partial", [-3.0], r"n_partial\[0\] = -3.0 must be finite and >= 0"),
    (_dirichlet, "n_failure", [math.nan], r"n_failure\[0\] = nan must be finite"),
    (_dirichlet, "prior_mean", [1.5], r"prior_mean\[0\] = 1.5 must be finite and >= 0.0 and <= 1.0"),
])
def test_invalid_totals_are_refused_naming_the_argument_and_element(build, field, value, message):
    with pytest.raises(ValueError, match=message):
        build(**{field: value})


@pytest.mark.parametrize("family", [_beta(), _nig(), _dirichlet()])
@pytest.mark.parametrize("level", [0.0, 1.0, 1.5])
def test_an_interval_level_outside_zero_one_is_refused(family, level):
    with pytest.raises(ValueError, match=rf"level={level!r} must be within \(0, 1\)"):
        family.interval(level)


def test_beta_quality_is_the_conjugate_update_and_matches_scipy():
    q = _beta()
    a, b = 0.6 * 5 + 7, 0.4 * 5 + 3
    assert q.alpha.tolist() == pytest.approx([a]) and q.beta.tolist() == pytest.approx([b])
    assert q.mean.tolist() == pytest.approx([sps.beta.mean(a, b)])
    low, high = q.interval(0.9)
    assert (low[0], high[0]) == pytest.approx(sps.beta.interval(0.9, a, b))
    draws = q.sample(np.random.default_rng(1), 20_000)
    assert draws.shape == (20_000, 1) and draws.mean() == pytest.approx(q.mean[0], abs=0.005)


def test_normal_inverse_gamma_log_is_the_conjugate_update_and_matches_scipy():
    x = np.log([900.0, 1100.0, 1000.0, 1300.0])
    fam = NormalInverseGammaLog.from_totals([4.0], [x.sum()], [(x * x).sum()], typical_log=[math.log(1000.0)], scale=[0.5])
    # Textbook Normal-Inverse-Gamma update from the prior (mu0, kappa0, alpha0, beta0).
    mu0, k0, a0, b0 = math.log(1000.0) - LOG_PRIOR_SD**2 / 2, LOG_PRIOR_KAPPA, LOG_PRIOR_ALPHA, (LOG_PRIOR_ALPHA - 1) * LOG_PRIOR_SD**2
    n, xbar = len(x), x.mean()
    kappa, mu, alpha = k0 + n, (k0 * mu0 + n * xbar) / (k0 + n), a0 + n / 2
    beta = b0 + ((x - xbar) ** 2).sum() / 2 + k0 * n * (xbar - mu0) ** 2 / (2 * (k0 + n))
    assert [fam.mu[0], fam.kappa[0], fam.alpha[0], fam.beta[0]] == pytest.approx([mu, kappa, alpha, beta])
    variance = sps.invgamma.mean(alpha, scale=beta)
    assert fam.mean[0] == pytest.approx(0.5 * math.exp(mu + variance / 2))
    low, high = fam.interval(0.9)
    t_low, t_high = sps.t.interval(0.9, 2 * alpha, loc=mu, scale=math.sqrt(beta / (alpha * kappa)))
    assert (low[0], high[0]) == pytest.approx((0.5 * math.exp(t_low + variance / 2), 0.5 * math.exp(t_high + variance / 2)))
    draws = fam.sample(np.random.default_rng(2), 40_000)
    assert draws.shape == (40_000, 1) and float(np.median(draws)) == pytest.approx(fam.mean[0], rel=0.02)


def test_without_evidence_the_log_normal_mean_is_the_registrys_typical_value():
    fam = NormalInverseGammaLog.from_totals([0.0, 0.0], [0.0, 0.0], [0.0, 0.0], typical_log=np.log([800.0, 2500.0]))
    assert fam.mean.tolist() == pytest.approx([800.0, 2500.0])


def test_dirichlet_outcomes_match_scipy_and_their_marginal_betas():
    d = _dirichlet()
    alpha = np.array([0.7 * 2 + 5 + 0.5, 0.5 + 1, 0.3 * 2 + 2 + 0.5])
    assert d.concentration[:, 0] == pytest.approx(alpha)
    assert d.mean[:, 0] == pytest.approx(sps.dirichlet.mean(alpha))
    low, high = d.interval(0.8)
    for i in range(3):
        assert (low[i, 0], high[i, 0]) == pytest.approx(sps.beta.interval(0.8, alpha[i], alpha.sum() - alpha[i]))
    draws = d.sample(np.random.default_rng(3), 20_000)
    assert draws.shape == (20_000, 3, 1) and draws.sum(axis=1) == pytest.approx(1.0)
    assert draws.mean(axis=0)[:, 0] == pytest.approx(sps.dirichlet.mean(alpha), abs=0.005)


def test_families_round_trip_through_frame_columns():
    q = BetaQuality.from_totals([3.0, 9.0], [2.0, 8.0], prior_mean=[0.5, 0.8], prior_count=2.0)
    frame = pl.DataFrame(q.columns("quality"))
    assert frame.columns == ["quality_alpha", "quality_beta"]
    assert BetaQuality.from_frame(frame, "quality").mean.tolist() == pytest.approx(q.mean.tolist())


def test_the_posterior_frame_has_an_interval_around_every_estimate():
    registry = ModelRegistry.load_default()
    frame, _ = posteriors.posteriors_as_of(None, dt.date(2026, 1, 1), registry)
    for mean, low, high in [
        ("quality_mean", "quality_ci_low", "quality_ci_high"),
        ("latency_mean_ms", "latency_ci_low_ms", "latency_ci_high_ms"),
        ("cost_mean_usd", "cost_ci_low_usd", "cost_ci_high_usd"),
        ("cost_per_1k_usd", "cost_per_1k_ci_low_usd", "cost_per_1k_ci_high_usd"),
        *[(f"p_{o}", f"p_{o}_ci_low", f"p_{o}_ci_high") for o in ("success", "partial", "failure")],
    ]:
        assert frame.filter((pl.col(low) > pl.col(mean)) | (pl.col(mean) > pl.col(high))).height == 0, mean
    fam = posteriors.families(frame)
    assert fam.cost.mean.tolist() == pytest.approx(frame["cost_mean_usd"].to_list())
    assert fam.latency.mean.tolist() == pytest.approx(frame["latency_mean_ms"].to_list())


def test_the_credible_level_is_a_learning_setting():
    import dataclasses

    registry = ModelRegistry.load_default()
    wide = dataclasses.replace(registry, learning=dataclasses.replace(registry.learning, credible_level=0.99))
    narrow, _ = posteriors.posteriors_as_of(None, dt.date(2026, 1, 1), registry)
    broad, _ = posteriors.posteriors_as_of(None, dt.date(2026, 1, 1), wide)
    assert (broad["quality_ci_high"] - broad["quality_ci_low"] > narrow["quality_ci_high"] - narrow["quality_ci_low"]).all()
