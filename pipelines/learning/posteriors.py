"""Conjugate Bayesian posteriors per (model, task type), and the specialist/generalist comparison.

* quality: Beta(a, b) with fractional successes a += Σw·q, b += Σw·(1 − q); prior mean from the
  registry, shrunk toward the pooled specialist or generalist group of the task type (empirical
  Bayes), worth ``prior_pseudo_count`` observations;
* outcomes: Dirichlet over success / partial / failure (reported);
* latency and cost per request: log-normal with a Normal-Inverse-Gamma posterior on the log scale,
  prior centred on the registry's typical latency and list-price cost.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
from scipy import stats as sps

from routing_pipelines.learning import changes, statistics
from routing_runtime.registry import ModelRegistry
from routing_runtime.types import TaskType

CREDIBLE = 0.90
# Log-scale priors: a typical spread of a factor ~1.6 (sd 0.5), worth one observation for the
# mean and two for the variance, so a day of evidence dominates.
_LOG_PRIOR_KAPPA = 1.0
_LOG_PRIOR_ALPHA = 2.0
_LOG_PRIOR_SD = 0.5


def _nig(n, s1, s2, typical_log):
    """Normal-Inverse-Gamma posterior parameters from weighted count, Σx, Σx² of log values.

    The prior is centred so that its log-normal mean equals the registry's typical value
    (``mu0 = log(typical) − sd²/2``) with prior expected variance ``sd²``.
    """
    kappa0, alpha0 = _LOG_PRIOR_KAPPA, _LOG_PRIOR_ALPHA
    beta0 = (alpha0 - 1) * _LOG_PRIOR_SD**2
    mu0 = typical_log - _LOG_PRIOR_SD**2 / 2
    mean = np.where(n > 0, s1 / np.maximum(n, 1e-12), mu0)
    ss = np.maximum(s2 - n * mean**2, 0.0)
    kappa = kappa0 + n
    mu = (kappa0 * mu0 + n * mean) / kappa
    alpha = alpha0 + n / 2
    beta = beta0 + ss / 2 + kappa0 * n * (mean - mu0) ** 2 / (2 * kappa)
    return mu, kappa, alpha, beta


def posteriors_as_of(daily: pl.LazyFrame | None, as_of: dt.date, registry: ModelRegistry) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The whole learning step from daily statistics (with a ``day`` column) up to ``as_of``:
    change points, forgetting, posteriors. Returns (posteriors, change points)."""
    half_life = registry.learning.half_life_days
    if daily is None:
        detected = pl.DataFrame(schema=changes.CHANGES_SCHEMA)
        totals = pl.DataFrame(schema={**statistics.STATS_SCHEMA, "n_raw": pl.Float64, "last_day": pl.Date})
    else:
        daily = daily.filter(pl.col("day") <= as_of)
        detected = changes.detect_changes(daily.collect(), half_life)
        totals = statistics.weighted_totals(changes.discount_before_changes(daily, detected), as_of, half_life)
    return compute_posteriors(totals, registry), detected


def compute_posteriors(totals: pl.DataFrame, registry: ModelRegistry) -> pl.DataFrame:
    """One row per (enabled or not) registry model × task type, evidence or none.

    ``totals`` are forgotten sufficient statistics (``statistics.weighted_totals``).
    """
    k = registry.learning.prior_pseudo_count
    grid = []
    for task in TaskType:
        policy = registry.policy(task)
        for m in registry.models:
            cost = policy.cost_per_request(m)
            grid.append({
                "model_id": m.id, "task_type": task.value, "is_specialized": m.is_specialized(task),
                "is_enabled": m.enabled, "prior_quality": m.prior_quality_for(task),
                "prior_log_latency": math.log(m.typical_latency_ms), "prior_log_cost": math.log(max(cost, 1e-9)),
                "prior_tokens": float(policy.typical_tokens),
            })
    frame = pl.DataFrame(grid).join(totals, on=["model_id", "task_type"], how="left").fill_null(0.0)
    frame = frame.with_columns(pl.col("n_raw").cast(pl.Float64))

    # Empirical Bayes: the pooled quality of the *other* models of the same group (specialists or
    # generalists) on the task, so a model's own evidence is not counted twice.
    group = frame.group_by("task_type", "is_specialized").agg(
        pl.col("sum_q").sum().alias("group_sum_q"), pl.col("n").sum().alias("group_n_all"),
    )
    frame = frame.join(group, on=["task_type", "is_specialized"], how="left").with_columns(
        (pl.col("group_n_all") - pl.col("n")).alias("group_n"),
        (pl.col("group_sum_q") - pl.col("sum_q")).alias("group_sum_q"),
    ).with_columns(
        pl.when(pl.col("group_n") > 1e-9).then(pl.col("group_sum_q") / pl.col("group_n"))
        .otherwise(pl.col("prior_quality")).alias("group_quality"),
    )
    capped = pl.min_horizontal(pl.col("group_n"), pl.lit(k))
    group_weight = capped / (pl.lit(k) + capped)
    frame = frame.with_columns(
        ((1 - group_weight) * pl.col("prior_quality") + group_weight * pl.col("group_quality")).clip(0.01, 0.99).alias("prior_mean"),
    )

    d = {c: frame[c].to_numpy() for c in frame.columns if frame[c].dtype.is_numeric()}
    a = d["prior_mean"] * k + d["sum_q"]
    b = (1 - d["prior_mean"]) * k + (d["n"] - d["sum_q"])
    tail = (1 - CREDIBLE) / 2
    lat_mu, lat_kappa, lat_alpha, lat_beta = _nig(d["n_latency"], d["sum_log_latency"], d["sum_log_latency2"], d["prior_log_latency"])
    cost_mu, cost_kappa, cost_alpha, cost_beta = _nig(d["n_cost_positive"], d["sum_log_cost"], d["sum_log_cost2"], d["prior_log_cost"])
    # Share of calls that cost anything; the prior (list prices) says all, worth k observations.
    charged = (d["n_cost_positive"] + k) / (d["n_cost"] + k)

    def lognormal_mean(mu, alpha, beta):
        return np.exp(mu + (beta / (alpha - 1)) / 2)

    def lognormal_ci(mu, kappa, alpha, beta, q):
        scale = np.sqrt(beta / (alpha * kappa))
        return np.exp(sps.t.ppf(q, 2 * alpha, loc=mu, scale=scale) + (beta / (alpha - 1)) / 2)

    dirichlet = np.stack([
        d["prior_mean"] * k / 2 + d["n_success"] + 0.5,
        np.full_like(a, 0.5) + d["n_partial"],
        (1 - d["prior_mean"]) * k / 2 + d["n_failure"] + 0.5,
    ])
    dirichlet_mean = dirichlet / dirichlet.sum(axis=0)
    tokens = np.where(d["n_tokens"] > 0, (d["sum_tokens"] + d["prior_tokens"]) / (d["n_tokens"] + 1), d["prior_tokens"])
    cost_mean = charged * lognormal_mean(cost_mu, cost_alpha, cost_beta)
    return frame.select("model_id", "task_type", "is_specialized", "is_enabled", "prior_quality", "prior_mean", "n_raw", "n").with_columns(
        pl.Series("n_effective", d["n"]),
        pl.Series("quality_alpha", a), pl.Series("quality_beta", b),
        pl.Series("quality_mean", a / (a + b)),
        pl.Series("quality_ci_low", sps.beta.ppf(tail, a, b)), pl.Series("quality_ci_high", sps.beta.ppf(1 - tail, a, b)),
        pl.Series("p_success", dirichlet_mean[0]), pl.Series("p_partial", dirichlet_mean[1]), pl.Series("p_failure", dirichlet_mean[2]),
        pl.Series("latency_mu", lat_mu), pl.Series("latency_kappa", lat_kappa),
        pl.Series("latency_alpha", lat_alpha), pl.Series("latency_beta", lat_beta),
        pl.Series("latency_mean_ms", lognormal_mean(lat_mu, lat_alpha, lat_beta)),
        pl.Series("latency_ci_low_ms", lognormal_ci(lat_mu, lat_kappa, lat_alpha, lat_beta, tail)),
        pl.Series("latency_ci_high_ms", lognormal_ci(lat_mu, lat_kappa, lat_alpha, lat_beta, 1 - tail)),
        pl.Series("cost_mu", cost_mu), pl.Series("cost_kappa", cost_kappa),
        pl.Series("cost_alpha", cost_alpha), pl.Series("cost_beta", cost_beta),
        pl.Series("cost_mean_usd", cost_mean),
        pl.Series("cost_charged_share", charged),
        pl.Series("cost_ci_low_usd", charged * lognormal_ci(cost_mu, cost_kappa, cost_alpha, cost_beta, tail)),
        pl.Series("cost_ci_high_usd", charged * lognormal_ci(cost_mu, cost_kappa, cost_alpha, cost_beta, 1 - tail)),
        pl.Series("tokens_mean", tokens),
        pl.Series("cost_per_1k_usd", cost_mean / np.maximum(tokens, 1.0) * 1000.0),
    ).drop("n").sort("task_type", "model_id")


def specialist_comparison(posteriors: pl.DataFrame, draws: int = 4000, seed: int = 0) -> pl.DataFrame:
    """Per task type: the best specialist against the best generalist by posterior quality, and
    the probability that the specialist is better (the learned specialist/generalist preference)."""
    rng = np.random.default_rng(seed)
    rows = []
    for task in TaskType:
        sub = posteriors.filter((pl.col("task_type") == task.value) & pl.col("is_enabled"))
        best = {}
        for specialized in (True, False):
            group = sub.filter(pl.col("is_specialized") == specialized).sort("quality_mean", descending=True)
            best[specialized] = group.row(0, named=True) if group.height else None
        spec, gen = best[True], best[False]
        p_better = None
        if spec and gen:
            p_better = float(np.mean(
                rng.beta(spec["quality_alpha"], spec["quality_beta"], draws) > rng.beta(gen["quality_alpha"], gen["quality_beta"], draws)
            ))
        rows.append({
            "task_type": task.value,
            "best_specialist": spec["model_id"] if spec else None,
            "specialist_quality": spec["quality_mean"] if spec else None,
            "specialist_n": spec["n_raw"] if spec else None,
            "best_generalist": gen["model_id"] if gen else None,
            "generalist_quality": gen["quality_mean"] if gen else None,
            "generalist_n": gen["n_raw"] if gen else None,
            "p_specialist_better": p_better,
        })
    return pl.DataFrame(rows, schema={
        "task_type": pl.String, "best_specialist": pl.String, "specialist_quality": pl.Float64, "specialist_n": pl.Float64,
        "best_generalist": pl.String, "generalist_quality": pl.Float64, "generalist_n": pl.Float64, "p_specialist_better": pl.Float64,
    })
