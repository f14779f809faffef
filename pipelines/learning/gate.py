"""The publication gate: whether a candidate rule set may replace the rules in force.

Two guards, both from the logged decisions (their propensities make the candidate checkable
before it serves):

* **Worse with confidence, against the learner's own forecast, blocks.** Per (task type,
  preference) and per preference over all task types, the candidate's SNIPS value on the
  preference's objective is compared with what the logged policy got on the same rows
  (:mod:`.evaluation`; SNIPS rests on the logs alone, while doubly robust leans on the
  posteriors under judgement). Only cells worth at least ``gate_min_effective_samples`` rows,
  with at most ``gate_max_unsupported_share`` of the candidate on models the logged policy never
  chose there, are judged. One of them blocks publication when the upper bound of its relative
  improvement, taken simultaneously over the night's judged cells (Bonferroni at ``gate_level``:
  one false alarm among dozens of cells would block the whole set), is below ``−gate_margin``
  and also more than ``gate_margin`` below the learner's own forecast of the improvement (its
  posteriors promised more than the logs show). Then the rules in force stay, and the cells are
  named with their figures. A candidate the learner knows to cost some value is not blocked: that
  is Thompson sampling exploring uncertain models, or a threshold (``min_quality_score``) moving
  a cheap model's traffic to a dearer eligible one, which the preference asks for.
* **Thin evidence is held to a safe step** (:func:`routing_pipelines.learning.candidates.candidate_rules`).
  A model whose posterior rests mostly on outcomes no decision vouches for may not gain traffic
  over the rules in force; the holds are named, and the rest of the set is published.

>>> import polars as pl
>>> from routing_runtime.registry import LearningSettings
>>> estimates = pl.DataFrame({"task_type": ["code"], "preference": ["quality"], "objective": ["quality"],
...     "n": [400], "effective_sample_size": [120.0], "logged_value": [0.8], "snips_value": [0.6], "dr_value": [0.6],
...     "improvement_value": [-0.25], "improvement_low": [-0.3], "improvement_high": [-0.2], "forecast_improvement": [0.1],
...     "unsupported_share": [0.0]})
>>> verdict(estimates, [], LearningSettings(), enforced=True)["status"]
'blocked'
>>> verdict(estimates, [], LearningSettings(), enforced=False)["status"]
'overridden'
"""

from __future__ import annotations

import polars as pl
from scipy import stats

from routing_pipelines.learning.candidates import Hold
from routing_runtime.registry import LearningSettings

#: What a gate can decide: ``passed`` (published as learned), ``held`` (published with some
#: models held to the rules in force), ``blocked`` (not published), ``overridden``
#: (``--no-gate``: published as learned whatever the gate found).
STATUSES = ("passed", "held", "blocked", "overridden")


def blocking_cells(estimates: pl.DataFrame, settings: LearningSettings) -> pl.DataFrame:
    """The rows of an evaluation whose candidate is worse than the logged policy with confidence,
    judged by their simultaneous upper bound (``bound``, see :func:`with_simultaneous_bound`)."""
    bounded = with_simultaneous_bound(judged(estimates, settings), settings)
    return bounded.filter(
        (pl.col("bound") < -settings.gate_margin)
        & (pl.col("forecast_improvement").is_null() | (pl.col("bound") < pl.col("forecast_improvement") - settings.gate_margin))
    )


def simultaneous_z(cells: int, level: float) -> float:
    """The normal quantile of ``level`` intervals that hold for ``cells`` rows at once with
    probability ``level`` (Bonferroni): a night judges dozens of cells, and one false alarm blocks
    the whole set, so the set is judged at ``level``, not each cell. One cell: its own interval.

    >>> round(simultaneous_z(1, 0.95), 2), round(simultaneous_z(36, 0.95), 2)
    (1.96, 3.2)
    """
    return float(stats.norm.ppf(1.0 - (1.0 - level) / (2 * max(cells, 1))))


def with_simultaneous_bound(estimates: pl.DataFrame, settings: LearningSettings) -> pl.DataFrame:
    """Adds ``bound``: the upper bound of each row's relative improvement that holds for all the
    rows at once with ``gate_level`` probability (the reported ``improvement_high`` is each row's
    own two-sided interval)."""
    z_row = float(stats.norm.ppf(0.5 + settings.gate_level / 2))
    z_all = simultaneous_z(estimates.height, settings.gate_level)
    half = pl.col("improvement_high") - pl.col("improvement_value")
    return estimates.with_columns((pl.col("improvement_value") + half * (z_all / z_row)).alias("bound"))


def judged(estimates: pl.DataFrame, settings: LearningSettings) -> pl.DataFrame:
    """The rows the logs can judge: worth ``gate_min_effective_samples`` rows, and with at most
    ``gate_max_unsupported_share`` of the candidate on models the logged policy never chose there
    (importance weights are blind to those; the rest of the candidate would be judged alone)."""
    return estimates.filter(
        (pl.col("effective_sample_size") >= settings.gate_min_effective_samples)
        & (pl.col("unsupported_share") <= settings.gate_max_unsupported_share)
    )


def verdict(estimates: pl.DataFrame, holds: list[Hold], settings: LearningSettings, *, enforced: bool) -> dict:
    """The gate's decision and its figures, as recorded with the rule set and shown by
    `routing learn --json` under ``"gate"``."""
    blocked = blocking_cells(estimates, settings)
    judged_rows = judged(estimates, settings)
    if not enforced:
        status = "overridden" if blocked.height or holds else "passed"
    else:
        status = "blocked" if blocked.height else "held" if holds else "passed"
    return {
        "status": status, "enforced": enforced,
        "level": settings.gate_level, "margin": settings.gate_margin,
        "min_effective_samples": settings.gate_min_effective_samples,
        "max_untied_share": settings.gate_max_untied_share,
        "max_unsupported_share": settings.gate_max_unsupported_share,
        "cells_evaluated": estimates.height, "cells_judged": judged_rows.height,
        "blocked": [_figures(row) for row in blocked.iter_rows(named=True)],
        "held": [h.to_json() for h in holds],
        "simultaneous_z": round(simultaneous_z(judged_rows.height, settings.gate_level), 4),
        "worst": _figures(with_simultaneous_bound(judged_rows, settings).sort("bound").row(0, named=True)) if judged_rows.height else None,
    }


def _figures(row: dict) -> dict:
    keys = ("task_type", "preference", "objective", "n", "effective_sample_size", "logged_value", "snips_value", "dr_value",
            "improvement_value", "improvement_low", "improvement_high", "bound", "forecast_improvement", "unsupported_share")
    return {k: round(row[k], 6) if isinstance(row[k], float) else row[k] for k in keys}


def describe(gate: dict) -> list[str]:
    """One line per blocked cell and per held model, for messages and the summary."""
    lines = []
    for b in gate["blocked"]:
        lines.append(
            f"{b['task_type']}/{b['preference']}: candidate {b['objective']} {b['snips_value']:.4g} against {b['logged_value']:.4g}"
            f" logged, {b['improvement_value']:+.1%} [{b['improvement_low']:+.1%}, {b['improvement_high']:+.1%}]"
            f" (at most {b['bound']:+.1%} with every cell judged at once)"
            f" at {gate['level']:.0%}, {b['effective_sample_size']:.0f} effective samples of {b['n']};"
            + (f" the learner forecast {b['forecast_improvement']:+.1%}" if b["forecast_improvement"] is not None else " no forecast")
        )
    for h in gate["held"]:
        held = f"held at {h['published_share']:.1%}" if gate["enforced"] else "not held (--no-gate)"
        lines.append(
            f"{h['task_type']}/{h['preference']}: {h['model_id']} {held} (in force {h['logged_share']:.1%},"
            f" as learned {h['learned_share']:.1%}): {h['untied_share']:.0%} of its evidence on {h['task_type']}"
            " is not tied to decisions"
        )
    return lines
