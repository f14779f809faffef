"""Off-policy estimators: what a target policy would have achieved on the logged decisions.

Every decision logs the probability its model had (the propensity ``p``), so the value of another
policy ``π`` can be estimated from the same rows with importance weights ``w = π(a|cell) / p``.
Each preference is judged on its own objective (:data:`OBJECTIVES`): quality ``E[q]``, cost per
request ``E[c]``, quality per dollar ``E[q] / E[c]`` (total quality over total spend: numerator
and denominator are estimated apart, each by the same estimator) and latency ``E[l]``.

Two estimators, each one object (:class:`SNIPS`, :class:`DoublyRobust`), plus the logged
policy's own value (:class:`Logged`, the plain mean of what it got):

* SNIPS: ``Σ w·r / Σ w``. It needs nothing but the logs.
* Doubly robust: ``mean(Σ_a π(a)·r̂(a) + w·(r − r̂(a_logged)))``, with the direct model ``r̂``
  from the posteriors. Unbiased when the propensities are right, whatever ``r̂`` is; a good ``r̂``
  shrinks its variance.

Every value comes with a normal interval from its influence function (the sandwich variance
``Σ IF² / (n·(n − 1))``, for a plain mean its usual ``s² / n``); a ratio's influence function comes by the delta method,
``IF(A/B) = (IF(A) − (A/B)·IF(B)) / B``. The difference of the target against the logged policy is
paired: both are computed on the same rows, so its interval is far narrower than the two intervals
side by side. The effective sample size ``(Σw)² / Σw²`` says how many logged rows the estimate is
worth.

>>> import numpy as np
>>> rows = CellRows.from_arrays(
...     propensity=np.array([0.5, 0.5, 0.5, 0.5]), target=np.array([1.0, 1.0, 0.0, 0.0]),
...     quality=np.array([1.0, 0.0, 1.0, 1.0]))
>>> SNIPS().estimate(rows, OBJECTIVES[RoutingPreference.QUALITY]).value
0.5
>>> Logged().estimate(rows, OBJECTIVES[RoutingPreference.QUALITY]).value
0.75
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import stats

from routing_runtime.types import RoutingPreference

#: The outcome components a row carries: quality, cost per request (USD), latency (ms).
COMPONENTS = ("quality", "cost", "latency")


@dataclass(frozen=True)
class Objective:
    """A preference's objective of a whole policy: ``numerator`` (over ``denominator``, for a
    ratio) of the expected components, and which way is better. The per-model objective the rules
    rank by is :data:`routing_runtime.rules.PREFERENCES`; this is the same goal for a mixture of
    models (quality per dollar of a policy is its total quality over its total spend)."""

    name: str
    numerator: str
    denominator: str | None = None
    higher_is_better: bool = True

    def components(self) -> tuple[str, ...]:
        return (self.numerator,) if self.denominator is None else (self.numerator, self.denominator)


OBJECTIVES: dict[RoutingPreference, Objective] = {
    RoutingPreference.QUALITY: Objective("quality", "quality"),
    RoutingPreference.COST_EFFICIENT: Objective("cost_usd", "cost", higher_is_better=False),
    RoutingPreference.BALANCED: Objective("quality_per_usd", "quality", "cost"),
    RoutingPreference.LATENCY: Objective("latency_ms", "latency", higher_is_better=False),
}


class Estimate(NamedTuple):
    """A value with its interval (``level`` central coverage) and its standard error."""

    value: float
    low: float
    high: float
    standard_error: float


class CellRows(NamedTuple):
    """Logged rows of one cell (or a pool of cells), as arrays of equal length.

    ``propensity``: the logged model's probability when it was chosen; ``target``: the target
    policy's probability of that model in the row's cell; per component ``observed`` (NaN where
    the row did not report it), ``predicted`` (the direct model at the logged model) and
    ``expected`` (the direct model's mean under the target policy in the row's cell).
    """

    propensity: np.ndarray
    target: np.ndarray
    observed: dict[str, np.ndarray]
    predicted: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]

    @classmethod
    def from_arrays(cls, propensity: np.ndarray, target: np.ndarray, **observed: np.ndarray) -> CellRows:
        """Rows without a direct model (it predicts 0: doubly robust is then plain IPS)."""
        zeros = {k: np.zeros_like(v, dtype=float) for k, v in observed.items()}
        return cls(np.asarray(propensity, float), np.asarray(target, float),
                   {k: np.asarray(v, float) for k, v in observed.items()}, zeros, dict(zeros))

    @property
    def weights(self) -> np.ndarray:
        return self.target / self.propensity

    def usable(self, objective: Objective) -> np.ndarray:
        """Rows that reported every component of the objective (a missing reward, NaN, is
        skipped). A propensity outside (0, 1] or a target probability outside [0, 1] is refused:
        its weight would be infinite or meaningless, and no estimate would say so."""
        self.check()
        mask = np.ones(len(self.propensity), dtype=bool)
        for component in objective.components():
            mask &= np.isfinite(self.observed[component])
        return mask

    def check(self) -> None:
        """Raise ValueError naming the first row whose propensity or target probability is invalid.

        >>> CellRows.from_arrays(propensity=np.array([0.5, 0.0]), target=np.array([1.0, 1.0]), quality=np.ones(2)).check()
        Traceback (most recent call last):
        ...
        ValueError: propensity = 0.0 in row 1 is outside (0, 1]: ...
        """
        for name, values, low_open, what in (
            ("propensity", self.propensity, True, "the probability the logged model had when it was chosen, never 0"),
            ("target", self.target, False, "the target policy's probability of the logged model"),
        ):
            low = values > 0 if low_open else values >= 0
            bad = np.flatnonzero(~(low & (values <= 1)))  # NaN fails both comparisons: refused too
            if bad.size:
                i = int(bad[0])
                raise ValueError(
                    f"{name} = {float(values[i])!r} in row {i} is outside {'(0, 1]' if low_open else '[0, 1]'}: it must be {what}; "
                    f"{bad.size} row(s) like it. Leave such rows out before estimating (the lake quarantines logged "
                    "propensities outside (0, 1])")


def effective_sample_size(weights: np.ndarray) -> float:
    """``(Σw)² / Σw²``: as many rows as the weighted estimate is worth (0 without weight).

    >>> effective_sample_size(np.array([1.0, 1.0, 1.0])), effective_sample_size(np.array([3.0, 0.0, 0.0]))
    (3.0, 1.0)
    """
    total = float((weights * weights).sum())
    return float(weights.sum()) ** 2 / total if total > 0 else 0.0


class _Estimator:
    """Value and influence function of one component; :meth:`estimate` combines components."""

    name = ""

    def component(self, rows: CellRows, component: str, mask: np.ndarray) -> tuple[float, np.ndarray]:
        raise NotImplementedError

    def influence(self, rows: CellRows, objective: Objective, mask: np.ndarray) -> tuple[float, np.ndarray]:
        """The objective's value and per-row influence function over the ``mask`` rows."""
        value, influence = self.component(rows, objective.numerator, mask)
        if objective.denominator is None:
            return value, influence
        below, below_influence = self.component(rows, objective.denominator, mask)
        if not below > 0:
            return math.nan, np.full_like(influence, math.nan)
        ratio = value / below
        return ratio, (influence - ratio * below_influence) / below

    def estimate(self, rows: CellRows, objective: Objective, level: float = 0.95) -> Estimate:
        mask = rows.usable(objective)
        value, influence = self.influence(rows, objective, mask)
        return interval(value, influence, level)


class Logged(_Estimator):
    """The logged policy's own value: the mean of what it got."""

    name = "logged"

    def component(self, rows, component, mask):
        r = rows.observed[component][mask]
        if not len(r):
            return math.nan, r
        value = float(r.mean())
        return value, r - value


class SNIPS(_Estimator):
    """Self-normalised inverse propensity scoring: ``Σ w·r / Σ w``."""

    name = "snips"

    def component(self, rows, component, mask):
        w, r = rows.weights[mask], rows.observed[component][mask]
        mean_weight = float(w.mean()) if len(w) else 0.0
        if not mean_weight > 0:
            return math.nan, np.full_like(r, math.nan)
        value = float((w * r).sum() / w.sum())
        return value, w * (r - value) / mean_weight


class DoublyRobust(_Estimator):
    """Doubly robust: the direct model's value under the target, corrected by the weighted
    residuals of the logged rows."""

    name = "dr"

    def component(self, rows, component, mask):
        w = rows.weights[mask]
        terms = rows.expected[component][mask] + w * (rows.observed[component][mask] - rows.predicted[component][mask])
        if not len(terms):
            return math.nan, terms
        value = float(terms.mean())
        return value, terms - value


def interval(value: float, influence: np.ndarray, level: float = 0.95) -> Estimate:
    """A normal interval around ``value`` from its influence function: standard error
    ``√(Σ IF² / (n·(n − 1)))``. For a mean (``IF = r − mean``) that is the sample standard
    deviation over ``√n``: the mean 1 of [0, 2] has standard error 1.

    >>> interval(1.0, np.array([-1.0, 1.0]), 0.95).standard_error
    1.0
    """
    n = len(influence)
    if not math.isfinite(value) or n < 2 or not np.isfinite(influence).all():
        return Estimate(value if n else math.nan, math.nan, math.nan, math.nan)
    se = float(math.sqrt((influence * influence).sum() / (n * (n - 1))))
    z = float(stats.norm.ppf(0.5 + level / 2))
    return Estimate(value, value - z * se, value + z * se, se)


class Comparison(NamedTuple):
    """The target against the logged policy on one objective, over the same rows."""

    n: int
    effective_sample_size: float
    logged: Estimate
    snips: Estimate
    dr: Estimate
    #: Relative improvement of the target by SNIPS, positive when better (for cost and latency:
    #: when lower). It needs nothing but the logs: the publication gate judges by it, since the
    #: direct model is the learner's own posterior, the very thing the gate must not take on trust
    #: (where the logged policy never tried a model, doubly robust falls back on that posterior).
    improvement: Estimate
    #: The same by the doubly robust estimate.
    dr_improvement: Estimate
    #: The same relative improvement as the direct model alone forecasts it on these rows: what
    #: the learner expects of the target (NaN without a direct model).
    forecast: float


def compare(rows: CellRows, objective: Objective, level: float = 0.95) -> Comparison:
    """Logged value, SNIPS and doubly robust values of the target, and the target's paired relative
    improvement ``±(V_target / V_logged − 1)`` with its interval."""
    mask = rows.usable(objective)
    logged = Logged().influence(rows, objective, mask)
    snips = SNIPS().influence(rows, objective, mask)
    dr = DoublyRobust().influence(rows, objective, mask)
    sign = 1.0 if objective.higher_is_better else -1.0
    return Comparison(
        int(mask.sum()), effective_sample_size(rows.weights[mask]),
        interval(*logged, level), interval(*snips, level), interval(*dr, level),
        _paired(snips, logged, sign, level), _paired(dr, logged, sign, level), _forecast(rows, objective, mask),
    )


def _paired(target: tuple[float, np.ndarray], logged: tuple[float, np.ndarray], sign: float, level: float) -> Estimate:
    """``sign · (V_target / V_logged − 1)`` with its interval, both values from the same rows."""
    (value, influence), (base, base_influence) = target, logged
    if not base or not math.isfinite(base) or not math.isfinite(value):
        return Estimate(math.nan, math.nan, math.nan, math.nan)
    ratio = value / base
    return interval(sign * (ratio - 1.0), sign * (influence - ratio * base_influence) / base, level)


def _forecast(rows: CellRows, objective: Objective, mask: np.ndarray) -> float:
    """``±(DM(target) / DM(logged) − 1)``: the direct model's value of the target over its value
    at the models the logged policy chose, on the same rows."""
    n = int(mask.sum())
    if not n:
        return math.nan

    def value(source: dict[str, np.ndarray]) -> float:
        # Exact sums: the forecast is published in the rule set's inputs and must not depend on
        # how the arrays happen to be laid out in memory.
        top = math.fsum(source[objective.numerator][mask]) / n
        if objective.denominator is None:
            return top
        below = math.fsum(source[objective.denominator][mask]) / n
        return top / below if below > 0 else math.nan

    target, logged = value(rows.expected), value(rows.predicted)
    if not (math.isfinite(target) and math.isfinite(logged)) or logged == 0:
        return math.nan
    return (1.0 if objective.higher_is_better else -1.0) * (target / logged - 1.0)
