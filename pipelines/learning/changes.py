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

import datetime as dt
import math

import polars as pl

from routing_pipelines.learning.statistics import KEYS, exact_sum
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


#: What :func:`drifting` compares: (what, count, Σ, Σ²) of quality, log latency and log cost.
_DRIFT_MEASURES = (
    ("quality", "n", "sum_q", "sum_q2"),
    ("latency", "n_latency", "sum_log_latency", "sum_log_latency2"),
    ("cost", "n_cost_positive", "sum_log_cost", "sum_log_cost2"),
)


def drifting(daily: pl.DataFrame, as_of: dt.date, settings: LearningSettings) -> pl.DataFrame:
    """Per (model, task type): whether its last ``drift_window_days`` up to ``as_of`` differ from
    the evidence before them, by more than ``drift_z_threshold`` standard errors on quality, log
    latency or log cost (each side with at least ``change_min_day_count`` observations).

    A change point catches a jump; this catches a slow slip, which no single day shows. It has no
    practical-size condition: a cell that moves at all is forgotten at ``half_life_days``, the
    others at ``steady_half_life_days``, since forgetting a steady cell only widens its posterior.
    Evidence before the cell's last change point is left out (it is discounted already).

    >>> rows = [{"model_id": "m", "task_type": "math", "day": dt.date(2026, 1, d), "n": 100.0,
    ...          "sum_q": 100.0 * q, "sum_q2": 100.0 * q, **{c: 0.0 for c in ("n_latency", "sum_log_latency",
    ...          "sum_log_latency2", "n_cost_positive", "sum_log_cost", "sum_log_cost2")}}
    ...         for d, q in zip(range(1, 15), [0.8] * 7 + [0.8, 0.77, 0.74, 0.71, 0.68, 0.65, 0.62])]
    >>> drifting(pl.DataFrame(rows), dt.date(2026, 1, 14), LearningSettings()).row(0)
    ('m', 'math', True)
    >>> drifting(pl.DataFrame(rows), dt.date(2026, 1, 7), LearningSettings()).row(0)
    ('m', 'math', False)
    """
    recent_from = as_of - dt.timedelta(days=settings.drift_window_days - 1)
    sums = [c for _, *columns in _DRIFT_MEASURES for c in columns]
    side = pl.when(pl.col("day") >= recent_from).then(pl.lit("recent")).otherwise(pl.lit("before"))
    sides = (
        daily.filter(pl.col("day") <= as_of)
        .group_by(*KEYS, side.alias("side"))
        .agg(exact_sum(pl.col(c)) for c in sums)
    )
    recent = sides.filter(pl.col("side") == "recent").drop("side")
    before = sides.filter(pl.col("side") == "before").drop("side")
    both = recent.join(before, on=KEYS, how="full", coalesce=True, suffix="_before").fill_null(0.0)
    moved = pl.lit(False)
    for _, count, s1, s2 in _DRIFT_MEASURES:
        n_r, n_b = pl.col(count), pl.col(f"{count}_before")
        mean_r, mean_b = pl.col(s1) / n_r, pl.col(f"{s1}_before") / n_b
        var_r = (pl.col(s2) / n_r - mean_r**2).clip(0.01)
        var_b = (pl.col(f"{s2}_before") / n_b - mean_b**2).clip(0.01)
        z = (mean_r - mean_b) / (var_r / n_r + var_b / n_b).sqrt()
        enough = (n_r >= settings.change_min_day_count) & (n_b >= settings.change_min_day_count)
        moved = moved | (enough & (z.abs() > settings.drift_z_threshold))
    return both.select(*KEYS, moved.fill_null(False).alias("drifting")).sort(KEYS)


def with_half_lives(daily: pl.LazyFrame, drift: pl.DataFrame, settings: LearningSettings) -> pl.LazyFrame:
    """Adds ``half_life_days`` per row: ``half_life_days`` where :func:`drifting`, else ``steady_half_life_days``."""
    return daily.join(drift.lazy(), on=KEYS, how="left").with_columns(
        pl.when(pl.col("drifting").fill_null(False)).then(settings.half_life_days).otherwise(settings.steady_half_life_days)
        .alias("half_life_days"),
    ).drop("drifting")
