"""Sufficient statistics: per (day, model, task type), additive across days and partitions.

Quality is ``quality_score`` where given, else implied by the outcome (success 1, partial 0.5,
failure 0). Positive latencies and costs are summarised on the log scale (log-normal models);
zero-cost calls are counted apart. ``n_tied`` counts the outcomes tied to a routing decision:
the publication gate trusts a posterior only as far as such outcomes back it.
"""

from __future__ import annotations

import datetime as dt
import math

import polars as pl

KEYS = ["model_id", "task_type"]
SUM_COLUMNS = [
    "n", "n_tied", "n_success", "n_partial", "n_failure", "sum_q", "sum_q2",
    "n_latency", "sum_log_latency", "sum_log_latency2",
    "n_cost", "n_cost_positive", "sum_log_cost", "sum_log_cost2", "sum_cost", "n_tokens", "sum_tokens",
]
#: Bumped whenever a column is added: the partitions built before are rebuilt by the next run.
STATS_VERSION = 2
STATS_SCHEMA = {"model_id": pl.String, "task_type": pl.String, **{c: pl.Float64 for c in SUM_COLUMNS}}


def exact_sum(values: pl.Expr) -> pl.Expr:
    """The correctly rounded sum (``math.fsum``) of a group's non-null values, 0 for none.

    ``Expr.sum`` adds floats in whatever order Polars' threads split the rows, so its last bits
    vary from run to run; this one does not, so one worker and two, or a busy machine and an idle
    one, publish the same rules to the last bit. NaN anywhere, or infinities of both signs, give NaN.

    >>> frame = pl.DataFrame({"k": ["a", "a", "a", "b"], "x": [1e16, 1.0, -1e16, None]})
    >>> frame.group_by("k", maintain_order=True).agg(exact_sum(pl.col("x"))).rows()
    [('a', 1.0), ('b', 0.0)]
    """
    return values.map_batches(_fsum, return_dtype=pl.Float64, returns_scalar=True)


def exact_mean(values: pl.Expr) -> pl.Expr:
    """``exact_sum`` over the count of non-null values; null where there are none.

    >>> pl.DataFrame({"x": [0.5, 1.0, None]}).select(exact_mean(pl.col("x"))).item()
    0.75
    """
    count = values.count()
    return pl.when(count > 0).then(exact_sum(values) / count)


def _fsum(values: pl.Series) -> pl.Series:
    array = values.drop_nulls().cast(pl.Float64).to_numpy()
    try:
        total = math.fsum(array)
    except ValueError:  # inf + -inf
        total = math.nan
    return pl.Series([total], dtype=pl.Float64)


def implied_quality() -> pl.Expr:
    """``quality_score`` where reported, else what the outcome implies (1, 0.5, 0)."""
    return pl.coalesce(
        pl.col("quality_score"),
        pl.col("outcome").replace_strict({"success": 1.0, "partial": 0.5, "failure": 0.0}, default=None, return_dtype=pl.Float64),
    )


def daily_stats(performance: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Sufficient statistics of one day's valid ``model_performance`` rows."""
    q = implied_quality()
    # Log-normal fits see positive values only: a free (zero-cost) call is counted as such, and a
    # zero latency is no measurement, rather than log(tiny) wrecking the fit.
    has_latency = pl.col("latency_ms") > 0
    has_cost = pl.col("cost_usd").is_not_null()
    charged = pl.col("cost_usd") > 0
    log_latency = pl.when(has_latency).then(pl.col("latency_ms").log())
    log_cost = pl.when(charged).then(pl.col("cost_usd").log())
    performance = performance.lazy()
    # Rows without a decision_id column (outcomes from elsewhere) are tied to no decision.
    tied = pl.col("decision_id").is_not_null() if "decision_id" in performance.collect_schema().names() else pl.lit(False)
    stats = performance.group_by(KEYS).agg(
        pl.len().cast(pl.Float64).alias("n"),
        tied.sum().cast(pl.Float64).alias("n_tied"),
        (pl.col("outcome") == "success").sum().cast(pl.Float64).alias("n_success"),
        (pl.col("outcome") == "partial").sum().cast(pl.Float64).alias("n_partial"),
        (pl.col("outcome") == "failure").sum().cast(pl.Float64).alias("n_failure"),
        exact_sum(q).alias("sum_q"),
        exact_sum(q * q).alias("sum_q2"),
        has_latency.sum().cast(pl.Float64).alias("n_latency"),
        exact_sum(log_latency).alias("sum_log_latency"),
        exact_sum(log_latency * log_latency).alias("sum_log_latency2"),
        has_cost.sum().cast(pl.Float64).alias("n_cost"),
        charged.sum().cast(pl.Float64).alias("n_cost_positive"),
        exact_sum(log_cost).alias("sum_log_cost"),
        exact_sum(log_cost * log_cost).alias("sum_log_cost2"),
        exact_sum(pl.col("cost_usd")).alias("sum_cost"),
        pl.col("tokens_used").is_not_null().sum().cast(pl.Float64).alias("n_tokens"),
        pl.col("tokens_used").sum().cast(pl.Float64).alias("sum_tokens"),
    )
    return stats.collect().cast(STATS_SCHEMA).fill_null(0.0).sort(KEYS)


def merge(stats: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Add statistics up over days (or partitions, or hosts): the sum is the statistic of the union."""
    return stats.lazy().group_by(KEYS).agg(exact_sum(pl.col(c)) for c in SUM_COLUMNS).collect().sort(KEYS)


def forgetting_weight(age_days: pl.Expr, half_life_days: float | pl.Expr) -> pl.Expr:
    """2^(-age / half-life): yesterday's evidence counts fully, two half-lives ago a quarter."""
    return (2.0 ** (-age_days / half_life_days)).alias("weight")


def weighted_totals(daily: pl.LazyFrame, as_of: dt.date, half_life_days: float) -> pl.DataFrame:
    """Exponentially forgotten totals per (model, task) from daily statistics with a ``day`` column
    (and optionally a ``change_weight`` column, see ``changes.discount_before_changes``, and a
    ``half_life_days`` column, see ``changes.with_half_lives``, which overrides
    ``half_life_days`` row by row).

    Adds ``n_raw`` (unweighted count) and ``last_day`` (latest day with evidence).
    """
    age = (pl.lit(as_of) - pl.col("day")).dt.total_days().cast(pl.Float64)
    names = daily.collect_schema().names()
    weight = forgetting_weight(age, pl.col("half_life_days") if "half_life_days" in names else half_life_days)
    if "change_weight" in names:
        weight = (weight * pl.col("change_weight")).alias("weight")
    return (
        daily.filter(pl.col("day") <= as_of)
        .with_columns(weight)
        .group_by(KEYS)
        .agg(
            *[exact_sum(pl.col(c) * pl.col("weight")).alias(c) for c in SUM_COLUMNS],
            pl.col("n").sum().alias("n_raw"),
            pl.col("day").max().alias("last_day"),
        )
        .collect()
        .sort(KEYS)
    )
