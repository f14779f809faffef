"""Off-policy evaluation: what the candidate rules would have achieved on the logged traffic.

Every decision logs the probability its model had (``propensity``), so the quality a different
policy would have obtained can be estimated from the same logs by importance weighting:
IPS = mean(q · π(a|x) / p(a|x)) and the self-normalised SNIPS = Σ w·q / Σ w with w = π / p.
The effective sample size (Σw)² / Σw² says how much the estimate can be trusted.
"""

from __future__ import annotations

import polars as pl

from routing_pipelines.learning.statistics import implied_quality

EVALUATION_SCHEMA = {
    "task_type": pl.String, "preference": pl.String, "n": pl.Int64, "logged_quality": pl.Float64,
    "ips_quality": pl.Float64, "snips_quality": pl.Float64, "effective_sample_size": pl.Float64,
}


def logged_feedback(decisions: pl.LazyFrame, performance: pl.LazyFrame) -> pl.LazyFrame:
    """Decisions with a propensity (not fallbacks) joined to their outcome: task, preference,
    model, p, quality."""
    outcomes = performance.filter(pl.col("decision_id").is_not_null()).select(
        pl.col("decision_id"), implied_quality().alias("quality"),
    ).unique(subset="decision_id", keep="first")
    # Fallbacks after `exclude` follow a different (conditional) policy: they are left out.
    return decisions.filter(
        pl.col("propensity").is_not_null() & pl.col("preference").is_not_null() & pl.col("excluded").is_null()
    ).select(
        pl.col("id").alias("decision_id"), "task_type", "preference", pl.col("selected_model").alias("model_id"), "propensity",
    ).join(outcomes, on="decision_id", how="inner")


def off_policy_estimates(feedback: pl.DataFrame, policy: pl.DataFrame) -> pl.DataFrame:
    """Per (task type, preference) and overall (``all``): the logged policy's mean quality and the
    IPS / SNIPS estimates of ``policy`` (columns task_type, preference, model_id,
    selection_probability), with the effective sample size."""
    target = policy.select("task_type", "preference", "model_id", pl.col("selection_probability").alias("target_p"))
    weighted = feedback.join(target, on=["task_type", "preference", "model_id"], how="left").with_columns(
        (pl.col("target_p").fill_null(0.0) / pl.col("propensity")).alias("w"),
    ).sort("decision_id")  # a join's row order varies with its threads: sums in one order are the same sums

    def summary(frame: pl.LazyFrame | pl.DataFrame, keys: list[str]) -> pl.DataFrame:
        aggregations = [
            pl.len().cast(pl.Int64).alias("n"),
            pl.col("quality").mean().alias("logged_quality"),
            (pl.col("w") * pl.col("quality")).mean().alias("ips_quality"),
            ((pl.col("w") * pl.col("quality")).sum() / pl.col("w").sum()).alias("snips_quality"),
            (pl.col("w").sum() ** 2 / (pl.col("w") ** 2).sum()).alias("effective_sample_size"),
        ]
        grouped = frame.group_by(keys).agg(aggregations) if keys else frame.select(aggregations)
        return grouped

    cells = summary(weighted, ["task_type", "preference"]).sort("task_type", "preference")
    overall = summary(weighted, []).with_columns(pl.lit("all").alias("task_type"), pl.lit("all").alias("preference"))
    return pl.concat([cells, overall.select(cells.columns)]).cast(EVALUATION_SCHEMA).select(list(EVALUATION_SCHEMA)).fill_nan(None)
