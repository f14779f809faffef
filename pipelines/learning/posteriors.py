"""Conjugate Bayesian posteriors per (model, task type), and the specialist/generalist comparison.

* quality: :class:`~routing_pipelines.learning.families.BetaQuality`, prior mean from the
  registry, shrunk toward the pooled specialist or generalist group of the task type (empirical
  Bayes), worth at most ``prior_pseudo_count`` observations: fewer where the task type's
  outcomes show the registry's priors to be off (:func:`prior_counts`); then sharpened by the
  model's lead over that group on its other task types, together worth at most
  ``cross_task_prior_count`` (:func:`cross_task_priors`);
* outcomes: :class:`~routing_pipelines.learning.families.DirichletOutcomes` (reported);
* latency and cost per request:
  :class:`~routing_pipelines.learning.families.NormalInverseGammaLog`, prior centred on the
  registry's typical latency and list-price cost.

Every estimate in the frame has its central credible interval (``credible_level``):
``quality_ci_low/high``, ``latency_ci_low/high_ms``, ``cost_ci_low/high_usd``,
``cost_per_1k_ci_low/high_usd`` (at the expected tokens per request), ``p_<outcome>_ci_low/high``.
:func:`families` reads the families back from the frame.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import NamedTuple

import numpy as np
import polars as pl

from routing_pipelines.learning import changes, statistics
from routing_pipelines.learning.families import OUTCOMES, BetaQuality, DirichletOutcomes, NormalInverseGammaLog
from routing_runtime.registry import ModelRegistry
from routing_runtime.types import TaskType


class PosteriorFamilies(NamedTuple):
    """The families of a posterior frame, row-aligned with it."""

    quality: BetaQuality
    latency: NormalInverseGammaLog
    cost: NormalInverseGammaLog


def families(posteriors: pl.DataFrame) -> PosteriorFamilies:
    """The quality, latency and cost families stored in a frame from :func:`compute_posteriors`.

    >>> import datetime as dt
    >>> frame, _ = posteriors_as_of(None, dt.date(2026, 1, 1), ModelRegistry.load_default())
    >>> fam = families(frame)
    >>> bool((fam.latency.mean == frame["latency_mean_ms"].to_numpy()).all())
    True
    """
    return PosteriorFamilies(
        quality=BetaQuality.from_frame(posteriors, "quality"),
        latency=NormalInverseGammaLog.from_frame(posteriors, "latency"),
        cost=NormalInverseGammaLog.from_frame(posteriors, "cost", scale=posteriors["cost_charged_share"].to_numpy()),
    )


def posteriors_as_of(daily: pl.LazyFrame | None, as_of: dt.date, registry: ModelRegistry) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The whole learning step from daily statistics (with a ``day`` column) up to ``as_of``:
    change points, forgetting, posteriors. Returns (posteriors, change points)."""
    settings = registry.learning
    if daily is None:
        detected = pl.DataFrame(schema=changes.CHANGES_SCHEMA)
        totals = pl.DataFrame(schema={**statistics.STATS_SCHEMA, "n_raw": pl.Float64, "last_day": pl.Date})
    else:
        daily = daily.filter(pl.col("day") <= as_of)
        collected = daily.collect()
        detected = changes.detect_changes(collected, settings)
        # The drift test compares evidence since each cell's last change point only.
        since_change = changes.discount_before_changes(collected.lazy(), detected, settings).filter(pl.col("change_weight") >= 1.0)
        drift = changes.drifting(since_change.collect(), as_of, settings)
        discounted = changes.with_half_lives(changes.discount_before_changes(daily, detected, settings), drift, settings)
        totals = statistics.weighted_totals(discounted, as_of, settings.half_life_days)
    # The day of each cell's last change point travels with its posterior: the off-policy
    # evaluation judges a task type on the days since its models last changed.
    last_change = detected.group_by(statistics.KEYS).agg(pl.col("changed_on").max().alias("last_change"))
    frame = compute_posteriors(totals, registry).join(last_change, on=statistics.KEYS, how="left", maintain_order="left")
    return frame, detected


#: A model needs this many effective observations on a task type to say how far its registry
#: prior was; a task type needs this many such models before its prior weight is learned.
PRIOR_FIT_MIN_N = 30.0
PRIOR_FIT_MIN_MODELS = 3
#: The least a learned prior is worth (observations): it still keeps an untried model's mean.
PRIOR_COUNT_MIN = 1.0


def prior_counts(frame: pl.DataFrame, most: float) -> pl.Expr:
    """Per row of ``frame`` (columns task_type, prior_quality, n, sum_q), the pseudo-count its
    registry prior is worth: empirical Bayes on how far the task type's priors are from outcomes.

    Model by model, the registry's prior quality p is off from the observed quality q̂ by
    (q̂ − p)², of which q̂(1 − q̂)/n is sampling noise; the rest, averaged over the task type's
    models with at least PRIOR_FIT_MIN_N observations, is the variance τ² of true qualities
    around their priors. A Beta prior of mean p worth k observations has variance
    p(1 − p)/(k + 1), so k = p̄(1 − p̄)/τ² − 1, kept within [PRIOR_COUNT_MIN, ``most``]. With fewer
    than PRIOR_FIT_MIN_MODELS such models, ``most``. Registry priors that are right keep their
    weight; priors that are off (a registry that says 0.5 for every model) stop slowing learning.

    >>> frame = pl.DataFrame({"task_type": ["math"] * 3, "prior_quality": [0.5] * 3,
    ...                       "n": [400.0] * 3, "sum_q": [40.0, 120.0, 280.0]})
    >>> [round(k, 2) for k in frame.select(prior_counts(frame, 10.0)).to_series()]
    [2.14, 2.14, 2.14]
    >>> frame.select(prior_counts(frame.head(2), 10.0)).to_series().to_list()
    [10.0, 10.0, 10.0]
    """
    observed = pl.col("sum_q") / pl.col("n")
    fit = (
        frame.filter(pl.col("n") >= PRIOR_FIT_MIN_N)
        .group_by("task_type")
        .agg(
            pl.len().alias("models"),
            statistics.exact_mean((observed - pl.col("prior_quality")) ** 2 - observed * (1 - observed) / pl.col("n")).alias("tau2"),
            statistics.exact_mean(pl.col("prior_quality")).alias("p"),
        )
        .filter(pl.col("models") >= PRIOR_FIT_MIN_MODELS)
        .select("task_type", (pl.col("p") * (1 - pl.col("p")) / pl.col("tau2").clip(1e-12) - 1).clip(PRIOR_COUNT_MIN, most).alias("k"))
    )
    learned = dict(fit.iter_rows())
    return pl.col("task_type").replace_strict(learned, default=most, return_dtype=pl.Float64).alias("prior_count")


def cross_task_priors(model: np.ndarray, task: np.ndarray, specialised: np.ndarray, n: np.ndarray, sum_q: np.ndarray,
                      group_quality: np.ndarray, prior_mean: np.ndarray, prior_count: np.ndarray,
                      most: float) -> tuple[np.ndarray, np.ndarray]:
    """The quality prior of each (model, task type) sharpened by the model's record on its other
    task types: empirical Bayes on how consistently models stand above or below their group.

    A model's lead over its group (``group_quality``: the pooled other specialists or generalists)
    on its other task types of the same standing (a specialist's specialties, or its other tasks; a
    generalist's all), precision-weighted, predicts its lead on this one. How far such predictions
    miss on the task type's models with PRIOR_FIT_MIN_N observations or more, less the sampling
    noise, is their variance. The prediction and the existing prior (``prior_mean``, worth
    ``prior_count`` observations) are combined as two independent normal estimates: the combined
    prior sits at their precision-weighted mean, and is worth what their combined precision says,
    capped at ``most`` observations (``cross_task_prior_count``; 0: off) and never fewer than
    ``prior_count``. The cap bounds the prior's weight against the outcomes to come, not where it
    sits: blending the prediction back toward a registry prior it outweighs (0.5 for every model
    on the real-data replay) cost 0.6 points there (0.924 against 0.930 of the best fixed model).
    A task type with fewer than PRIOR_FIT_MIN_MODELS judged models, and a model with no other task
    type of PRIOR_FIT_MIN_N observations, keep their prior.

    So a model that is better than its peers wherever it was tried is trusted sooner where it was
    tried little (the runner-up that must take over a cell when its top model collapses), and
    where models' standing differs from task to task the predictions miss and weigh little.

    >>> models, tasks = np.array(list("abcd") * 2), np.array(["x"] * 4 + ["y"] * 4)
    >>> n = np.array([400.0] * 7 + [5.0])                          # d is barely tried on y ...
    >>> q = np.array([0.6, 0.7, 0.8, 0.9, 0.55, 0.65, 0.75, 0.6])  # ... but leads its peers on x
    >>> group = np.array([0.8, 0.77, 0.73, 0.7, 0.7, 0.65, 0.6, 0.65])  # each one's peers, pooled
    >>> prior = dict(prior_mean=np.full(8, 0.7), prior_count=np.full(8, 5.0))
    >>> mean, count = cross_task_priors(models, tasks, np.zeros(8, bool), n, q * n, group, **prior, most=30.0)
    >>> round(float(mean[7]), 2), round(float(count[7]), 1)        # d's prior on y: up, and firmer
    (0.84, 30.0)
    >>> float(cross_task_priors(models, tasks, np.zeros(8, bool), n, q * n, group, **prior, most=0.0)[0][7])
    0.7
    """
    mean, count = prior_mean.astype(float), prior_count.astype(float)
    if most <= 0:
        return mean, count
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        observed = np.where(n > 0, sum_q / np.maximum(n, 1e-12), group_quality)
        noise = np.clip(observed * (1 - observed), 0.01, None) / np.maximum(n, 1e-12)
        lead = observed - group_quality
    # Corrupt statistics (a non-finite sum) stay in their own row, for posterior_sanity to name.
    sound = np.isfinite(lead) & np.isfinite(noise) & np.isfinite(mean) & np.isfinite(count)
    fitted = sound & (n >= PRIOR_FIT_MIN_N)
    rows_of: dict[tuple, list[int]] = {}
    for i in np.flatnonzero(fitted):
        rows_of.setdefault((model[i], bool(specialised[i])), []).append(int(i))
    predicted, predicted_var = np.full(len(n), np.nan), np.full(len(n), np.nan)
    for i in np.flatnonzero(sound):
        others = [j for j in rows_of.get((model[i], bool(specialised[i])), ()) if j != i]
        if others:
            # math.fsum: the same bits whatever the order, like statistics.exact_sum.
            precision = math.fsum(1.0 / noise[j] for j in others)
            predicted[i] = math.fsum(lead[j] / noise[j] for j in others) / precision
            predicted_var[i] = 1.0 / precision
    for t in dict.fromkeys(task.tolist()):
        on_task = task == t
        judged = np.flatnonzero(on_task & fitted & ~np.isnan(predicted))
        if len(judged) < PRIOR_FIT_MIN_MODELS:
            continue
        spread = max(math.fsum((lead[j] - predicted[j]) ** 2 - noise[j] - predicted_var[j] for j in judged) / len(judged), 1e-4)
        for i in np.flatnonzero(on_task & ~np.isnan(predicted)):
            estimate, estimate_var = group_quality[i] + predicted[i], spread + predicted_var[i]
            prior_var = mean[i] * (1 - mean[i]) / (count[i] + 1)
            combined_var = 1.0 / (1.0 / prior_var + 1.0 / estimate_var)
            # Where the prior sits is the precision-weighted combination; how much it is worth is
            # capped at `most`, however precise the prediction looked (its spread has a floor).
            combined = float(np.clip(combined_var * (mean[i] / prior_var + estimate / estimate_var), 0.01, 0.99))
            count[i] = float(np.clip(combined * (1 - combined) / combined_var - 1, count[i], max(count[i], most)))
            mean[i] = combined
    return mean, count


def compute_posteriors(totals: pl.DataFrame, registry: ModelRegistry) -> pl.DataFrame:
    """One row per (enabled or not) registry model × task type, evidence or none.

    ``totals`` are forgotten sufficient statistics (``statistics.weighted_totals``). They are
    not validated here: corrupt statistics (an infinite sum) give non-finite posteriors, which the
    ``posterior_sanity`` check names per model and task type and which block publication.
    """
    most = registry.learning.prior_pseudo_count
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
    frame = frame.with_columns(prior_counts(frame, most))
    k = pl.col("prior_count")

    # Empirical Bayes: the pooled quality of the *other* models of the same group (specialists or
    # generalists) on the task, so a model's own evidence is not counted twice.
    group = frame.group_by("task_type", "is_specialized").agg(
        statistics.exact_sum(pl.col("sum_q")).alias("group_sum_q"), statistics.exact_sum(pl.col("n")).alias("group_n_all"),
    )
    frame = frame.join(group, on=["task_type", "is_specialized"], how="left").with_columns(
        (pl.col("group_n_all") - pl.col("n")).alias("group_n"),
        (pl.col("group_sum_q") - pl.col("sum_q")).alias("group_sum_q"),
    ).with_columns(
        pl.when(pl.col("group_n") > 1e-9).then(pl.col("group_sum_q") / pl.col("group_n"))
        .otherwise(pl.col("prior_quality")).alias("group_quality"),
    )
    capped = pl.min_horizontal(pl.col("group_n"), k)
    group_weight = capped / (k + capped)
    frame = frame.with_columns(
        ((1 - group_weight) * pl.col("prior_quality") + group_weight * pl.col("group_quality")).clip(0.01, 0.99).alias("prior_mean"),
    )

    d = {c: frame[c].to_numpy() for c in frame.columns if frame[c].dtype.is_numeric()}
    # The registry prior's own worth, before the record elsewhere adds to it: the publication
    # gate weighs a posterior's untied outcomes against it (that record may be untied too).
    frame = frame.with_columns(pl.col("prior_count").alias("registry_prior_count"))
    d["prior_mean"], d["prior_count"] = cross_task_priors(
        frame["model_id"].to_numpy(), frame["task_type"].to_numpy(), frame["is_specialized"].to_numpy(), d["n"], d["sum_q"],
        d["group_quality"], d["prior_mean"], d["prior_count"], registry.learning.cross_task_prior_count)
    frame = frame.with_columns(pl.Series("prior_mean", d["prior_mean"]), pl.Series("prior_count", d["prior_count"]))
    level = registry.learning.credible_level
    quality = BetaQuality.from_totals(d["n"], d["sum_q"], prior_mean=d["prior_mean"], prior_count=d["prior_count"], validate=False)
    latency = NormalInverseGammaLog.from_totals(
        d["n_latency"], d["sum_log_latency"], d["sum_log_latency2"], typical_log=d["prior_log_latency"], validate=False)
    # Share of calls that cost anything; the prior (list prices) says all, worth k observations.
    charged = (d["n_cost_positive"] + most) / (d["n_cost"] + most)
    cost = NormalInverseGammaLog.from_totals(
        d["n_cost_positive"], d["sum_log_cost"], d["sum_log_cost2"], typical_log=d["prior_log_cost"], scale=charged, validate=False)
    outcomes = DirichletOutcomes.from_totals(
        d["n_success"], d["n_partial"], d["n_failure"], prior_mean=d["prior_mean"], prior_count=d["prior_count"], validate=False)
    tokens = np.where(d["n_tokens"] > 0, (d["sum_tokens"] + d["prior_tokens"]) / (d["n_tokens"] + 1), d["prior_tokens"])
    cost_mean = cost.mean

    def estimate(name: str, family, unit: str = "") -> dict[str, np.ndarray]:
        low, high = family.interval(level)
        return {f"{name}_mean{unit}": family.mean, f"{name}_ci_low{unit}": low, f"{name}_ci_high{unit}": high}

    outcome_low, outcome_high = outcomes.interval(level)
    outcome_columns = {}
    for i, outcome in enumerate(OUTCOMES):
        outcome_columns |= {
            f"p_{outcome}": outcomes.mean[i], f"p_{outcome}_ci_low": outcome_low[i], f"p_{outcome}_ci_high": outcome_high[i],
        }
    columns = {
        "n_effective": d["n"],
        "n_tied_effective": d["n_tied"],
        **quality.columns("quality"), **estimate("quality", quality),
        **outcome_columns,
        **latency.columns("latency"), **estimate("latency", latency, "_ms"),
        **cost.columns("cost"), **estimate("cost", cost, "_usd"),
        "cost_charged_share": charged,
        "tokens_mean": tokens,
        **{f"cost_per_1k{suffix}_usd": values / np.maximum(tokens, 1.0) * 1000.0
           for suffix, values in zip(("", "_ci_low", "_ci_high"), (cost_mean, *cost.interval(level)))},
    }
    kept = ("model_id", "task_type", "is_specialized", "is_enabled", "prior_quality", "prior_mean", "prior_count", "registry_prior_count",
            "n_raw", "n")
    return frame.select(kept).with_columns(
        pl.Series(name, values) for name, values in columns.items()
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
            spec_q, gen_q = (BetaQuality.from_frame(row, "quality") for row in (spec, gen))
            p_better = float(np.mean(spec_q.sample(rng, draws) > gen_q.sample(rng, draws)))
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
