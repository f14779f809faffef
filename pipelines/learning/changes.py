"""Change points: days on which a model's behaviour on a task type jumped.

Exponential forgetting follows slow drift; a sudden change (a bad model update, a price
change) would still take weeks to show through a 14-day half-life. So each day's statistics are
compared with the evidence since the previous change point; when the day differs clearly — both
statistically (|z| > ``change_z_threshold``) and practically (quality by more than
``change_min_quality_shift``, latency or cost by more than a factor ``change_min_ratio_shift``) —
the day starts a new segment and the evidence before it is discounted (``change_discount``). The
thresholds are fields of :class:`routing_runtime.registry.LearningSettings`. The walk over days is
deterministic, so every re-run over the same days finds the same change points.
"""

from __future__ import annotations

import math

import polars as pl

from routing_pipelines.learning.statistics import KEYS
from routing_runtime.registry import LearningSettings

CHANGES_SCHEMA = {
    "model_id": pl.String, "task_type": pl.String, "changed_on": pl.Date, "what": pl.String, "before": pl.Float64, "after": pl.Float64,
}


def _moments(n: float, s1: float, s2: float, floor: float) -> tuple[float, float]:
    mean = s1 / n
    return mean, max(s2 / n - mean * mean, floor)


def _shift(
    segment: dict, day: dict, count: str, s1: str, s2: str, floor: float, min_shift: float, settings: LearningSettings,
) -> tuple[float, float] | None:
    if day[count] < settings.change_min_day_count or segment[count] < settings.change_min_day_count:
        return None
    before, var_before = _moments(segment[count], segment[s1], segment[s2], floor)
    after, var_after = _moments(day[count], day[s1], day[s2], floor)
    z = (after - before) / math.sqrt(var_before / segment[count] + var_after / day[count])
    return (before, after) if abs(z) > settings.change_z_threshold and abs(after - before) > min_shift else None


def detect_changes(daily: pl.DataFrame, settings: LearningSettings) -> pl.DataFrame:
    """Change points of every (model, task type) in daily statistics (with a ``day`` column)."""
    found = []
    decay = 2.0 ** (-1.0 / settings.half_life_days)
    min_log_ratio = math.log(settings.change_min_ratio_shift)
    columns = ["n", "sum_q", "sum_q2", "n_latency", "sum_log_latency", "sum_log_latency2",
               "n_cost_positive", "sum_log_cost", "sum_log_cost2"]
    for (model, task), days in daily.sort("day").group_by(KEYS, maintain_order=True):
        segment = dict.fromkeys(columns, 0.0)
        previous = None
        for day in days.iter_rows(named=True):
            if previous is not None:
                gap = (day["day"] - previous).days
                segment = {c: v * decay**gap for c, v in segment.items()}
            shifts = {
                "quality": _shift(segment, day, "n", "sum_q", "sum_q2", 0.01, settings.change_min_quality_shift, settings),
                "latency": _shift(segment, day, "n_latency", "sum_log_latency", "sum_log_latency2", 0.01, min_log_ratio, settings),
                "cost": _shift(segment, day, "n_cost_positive", "sum_log_cost", "sum_log_cost2", 0.01, min_log_ratio, settings),
            }
            changed = {what: values for what, values in shifts.items() if values}
            if changed:
                segment = dict.fromkeys(columns, 0.0)
                for what, (before, after) in changed.items():
                    if what != "quality":
                        before, after = math.exp(before), math.exp(after)
                    found.append({"model_id": model, "task_type": task, "changed_on": day["day"], "what": what,
                                  "before": before, "after": after})
            segment = {c: segment[c] + day[c] for c in columns}
            previous = day["day"]
    return pl.DataFrame(found, schema=CHANGES_SCHEMA)


def discount_before_changes(daily: pl.LazyFrame, changes: pl.DataFrame, settings: LearningSettings) -> pl.LazyFrame:
    """Adds ``change_weight``: ``change_discount`` for days before the last change point of their (model, task)."""
    last = changes.group_by(KEYS).agg(pl.col("changed_on").max().alias("last_change")).lazy()
    return daily.join(last, on=KEYS, how="left").with_columns(
        pl.when(pl.col("day") < pl.col("last_change")).then(settings.change_discount).otherwise(1.0).alias("change_weight"),
    ).drop("last_change")
