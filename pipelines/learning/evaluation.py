"""Off-policy evaluation of candidate rules on the logged traffic, per (task type, preference)
and per preference over every task type (``task_type`` ``all``), each preference on its own
objective (:mod:`.estimators`): the logged policy's value, SNIPS and doubly robust values of the
candidate with 95% intervals, the candidate's relative improvement by each (``improvement`` by
SNIPS, which the gate judges by; ``dr_improvement``), the learner's own forecast of it, the
effective sample size, and the candidate's share on models the logged policy never chose in the
cell (``unsupported_share``: importance weights are blind there).
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from routing_pipelines.learning.estimators import COMPONENTS, OBJECTIVES, CellRows, Comparison, compare
from routing_pipelines.learning.statistics import exact_mean, exact_sum, implied_quality
from routing_runtime.router import FALLBACK_MARK
from routing_runtime.types import RoutingPreference

ALL = "all"

_ESTIMATES = ("logged", "snips", "dr", "improvement", "dr_improvement")
_ESTIMATE_COLUMNS = [f"{name}_{part}" for name in _ESTIMATES for part in ("value", "low", "high")]
EVALUATION_SCHEMA = {
    "task_type": pl.String, "preference": pl.String, "objective": pl.String, "n": pl.Int64,
    "effective_sample_size": pl.Float64, **{c: pl.Float64 for c in _ESTIMATE_COLUMNS}, "forecast_improvement": pl.Float64,
    "unsupported_share": pl.Float64,
}

#: The direct model's column per component in a posterior frame.
_DIRECT = {"quality": "quality_mean", "cost": "cost_mean_usd", "latency": "latency_mean_ms"}


def logged_feedback(decisions: pl.LazyFrame, performance: pl.LazyFrame) -> pl.LazyFrame:
    """Decisions with a propensity (not fallbacks) joined to their outcome: decision id, day, task,
    preference, model, propensity, the models the decision left out (``excluded``, JSON; null for
    none), quality, cost (USD) and latency (ms; null when not measured)."""
    outcomes = performance.filter(pl.col("decision_id").is_not_null()).select(
        pl.col("decision_id"), implied_quality().alias("quality"),
        pl.col("cost_usd").cast(pl.Float64).alias("cost"),
        pl.when(pl.col("latency_ms") > 0).then(pl.col("latency_ms").cast(pl.Float64)).alias("latency"),
    ).unique(subset="decision_id", keep="first")
    # Fallbacks follow the failure before them (a conditional policy): they are left out. A first
    # decision restricted to the models a gateway could reach (`within`, `exclude`) stays: its
    # propensity is that restricted draw's, and the target is restricted alike (see _restricted).
    fallback = pl.col("selection_reason").fill_null("").str.contains(FALLBACK_MARK, literal=True)
    return decisions.filter(
        pl.col("propensity").is_not_null() & pl.col("preference").is_not_null() & (pl.col("excluded").is_null() | ~fallback)
    ).select(
        pl.col("id").alias("decision_id"), "day", "task_type", "preference", pl.col("selected_model").alias("model_id"), "propensity",
        "excluded",
    ).join(outcomes, on="decision_id", how="inner")


def since_last_change(feedback: pl.DataFrame, posteriors: pl.DataFrame) -> pl.DataFrame:
    """The feedback of each task type from the last change point of any of its models on
    (``last_change`` in the posteriors): before it the logged policy was judged by a world that is
    gone, and a candidate that follows the change would look worse than it is."""
    if "last_change" not in posteriors.columns:
        return feedback
    starts = posteriors.group_by("task_type").agg(pl.col("last_change").max())
    return feedback.join(starts, on="task_type", how="left").filter(
        pl.col("last_change").is_null() | (pl.col("day") >= pl.col("last_change"))
    ).drop("last_change")


def off_policy_estimates(feedback: pl.DataFrame, policy: pl.DataFrame, direct: pl.DataFrame, level: float = 0.95) -> pl.DataFrame:
    """One row per (task type, preference) with logged rows, and per preference over all task
    types. ``policy``: the target's rows (task_type, preference, model_id, selection_probability);
    ``direct``: posteriors per (model, task type) (quality_mean, cost_mean_usd, latency_mean_ms)."""
    if not feedback.height:
        return pl.DataFrame(schema=EVALUATION_SCHEMA)
    # One worker and two must publish the same figures to the last bit: Polars' sums here are
    # exact (order-free), and the estimators' arrays run over rows sorted by decision id (a join's
    # output order varies with its threads).
    cell_model = ["task_type", "preference", "model_id"]
    target = policy.select(*cell_model, pl.col("selection_probability").alias("target")).sort(cell_model)
    model = direct.select("task_type", "model_id", *[pl.col(c).alias(f"predicted_{k}") for k, c in _DIRECT.items()])
    expected = target.join(model, on=["task_type", "model_id"], how="left").sort(cell_model).group_by(
        "task_type", "preference", maintain_order=True).agg(
        exact_sum(pl.col("target") * pl.col(f"predicted_{k}").fill_null(0.0)).alias(f"expected_{k}") for k in COMPONENTS
    )
    # The target's share on models the logged policy never chose in the cell: importance weights
    # cannot see it (SNIPS then estimates the rest of the target alone).
    logged_models = feedback.select("task_type", "preference", "model_id").unique().with_columns(pl.lit(True).alias("seen"))
    unsupported = target.join(logged_models, on=cell_model, how="left").sort(cell_model).group_by(
        "task_type", "preference", maintain_order=True,
    ).agg(exact_sum(pl.col("target").filter(pl.col("seen").is_null())).alias("unsupported"))
    rows = (
        feedback.join(target, on=["task_type", "preference", "model_id"], how="left")
        .join(model, on=["task_type", "model_id"], how="left")
        .join(expected, on=["task_type", "preference"], how="left")
        .join(unsupported, on=["task_type", "preference"], how="left")
        .with_columns(pl.col("target", "unsupported").fill_null(0.0))
        .sort("decision_id")
    )
    # A logged model the posteriors no longer cover (removed from the registry) is predicted by
    # its cell's observed mean: the direct model only has to be reasonable, not right.
    rows = rows.with_columns(
        pl.col(f"predicted_{k}").fill_null(exact_mean(pl.col(k)).over("task_type", "preference")).fill_null(0.0) for k in COMPONENTS
    ).with_columns(pl.col(f"expected_{k}").fill_null(0.0) for k in COMPONENTS)
    rows = _restricted(rows, target, model)

    results = []
    for (task, preference), cell in rows.group_by("task_type", "preference", maintain_order=True):
        results.append(_row(task, preference, cell, level))
    for (preference,), pooled in rows.group_by("preference", maintain_order=True):
        results.append(_row(ALL, preference, pooled, level))
    order = {p.value: i for i, p in enumerate(RoutingPreference)}
    frame = pl.DataFrame(results, schema=EVALUATION_SCHEMA, orient="row")
    return frame.sort(pl.col("task_type") == ALL, "task_type", pl.col("preference").replace_strict(order, default=99))


def _restricted(rows: pl.DataFrame, target: pl.DataFrame, model: pl.DataFrame) -> pl.DataFrame:
    """The target as it would have acted on each restricted decision: renormalised over the
    models that decision could choose (all but its ``excluded``), as the router draws with
    ``within`` or ``exclude``, for its importance weight and its direct-model expectation alike.

    A row whose excluded models hold all the target's mass in the cell gets target 0: the
    target cannot act there by its own rules (the router would fall back to a fixed order)."""
    if "excluded" not in rows.columns or rows["excluded"].is_null().all():
        return rows.drop("excluded", strict=False)
    left_out = rows.filter(pl.col("excluded").is_not_null()).select(
        "decision_id", "task_type", "preference", pl.col("excluded").str.json_decode(pl.List(pl.String)).alias("model_id"),
    ).explode("model_id").join(
        target.join(model, on=["task_type", "model_id"], how="left"), on=["task_type", "preference", "model_id"], how="inner",
    ).sort("decision_id", "model_id").group_by("decision_id", maintain_order=True).agg(
        exact_sum(pl.col("target")).alias("left_out_mass"),
        *[exact_sum(pl.col("target") * pl.col(f"predicted_{k}").fill_null(0.0)).alias(f"left_out_{k}") for k in COMPONENTS],
    )
    kept = 1.0 - pl.col("left_out_mass")
    return rows.join(left_out, on="decision_id", how="left").with_columns(
        pl.col("left_out_mass", *[f"left_out_{k}" for k in COMPONENTS]).fill_null(0.0),
    ).with_columns(
        pl.when(kept > 1e-12).then(pl.col("target") / kept).otherwise(0.0).alias("target"),
        *[pl.when(kept > 1e-12).then((pl.col(f"expected_{k}") - pl.col(f"left_out_{k}")) / kept)
          .otherwise(pl.col(f"expected_{k}")).alias(f"expected_{k}") for k in COMPONENTS],
    ).drop("excluded", "left_out_mass", *[f"left_out_{k}" for k in COMPONENTS]).sort("decision_id")


def cell_rows(frame: pl.DataFrame) -> CellRows:
    """The estimators' arrays from joined feedback rows."""
    def column(name: str) -> np.ndarray:
        return frame[name].cast(pl.Float64).fill_null(math.nan).to_numpy()
    return CellRows(
        column("propensity"), column("target"),
        {k: column(k) for k in COMPONENTS}, {k: column(f"predicted_{k}") for k in COMPONENTS},
        {k: column(f"expected_{k}") for k in COMPONENTS},
    )


def _row(task: str, preference: str, frame: pl.DataFrame, level: float) -> tuple:
    objective = OBJECTIVES[RoutingPreference(preference)]
    comparison: Comparison = compare(cell_rows(frame), objective, level)
    figures = [x for name in _ESTIMATES for x in getattr(comparison, name)[:3]]
    unsupported = float(frame["unsupported"].mean())  # per cell a constant; over task types, their row-weighted mean
    return (task, preference, objective.name, comparison.n, comparison.effective_sample_size,
            *[None if not math.isfinite(x) else x for x in (*figures, comparison.forecast, unsupported)])
