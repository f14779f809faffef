"""Conjugate posterior families, vectorised: one object per quantity instead of columns shared by
naming convention.

Each family holds its parameters as NumPy arrays (one element per model × task type) and
offers the same four things: ``from_totals(...)`` (the posterior from forgotten sufficient
statistics and a prior), ``mean``, ``interval(level)`` (central credible interval) and
``sample(rng, n)`` (an ``(n, len)`` array of draws, for Thompson sampling). ``columns(name)`` and
``from_frame(frame, name)`` write the parameters to, and read them back from, the posterior frame.

* :class:`BetaQuality`: quality in [0, 1] with fractional successes, Beta(α, β).
* :class:`NormalInverseGammaLog`: a positive quantity (latency, cost) log-normal, with a
  Normal-Inverse-Gamma posterior on the log scale; the quantity is the log-normal *mean*.
* :class:`DirichletOutcomes`: the shares of success / partial / failure.

``from_totals`` refuses negative counts and non-finite values with a ValueError naming the
argument and element, unless ``validate=False``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
# scipy.special, not scipy.stats: the same quantiles, and it imports in a third of the time
# (every `routing learn` pays for the import).
from scipy import special


def _array(name: str, value, *, low: float | None = 0.0, high: float | None = None, strict: bool = False,
           check: bool = True) -> np.ndarray:
    """``value`` as a float array; with ``check``, ValueError naming ``name``, the first bad
    element and the rule it breaks."""
    array = np.atleast_1d(np.asarray(value, dtype=float))
    if not check:
        return array
    ok, rule = np.isfinite(array), "finite"
    if low is not None:
        ok &= array > low if strict else array >= low
        rule += f" and {'>' if strict else '>='} {low}"
    if high is not None:
        ok &= array <= high
        rule += f" and <= {high}"
    if not ok.all():
        index = int(np.flatnonzero(~ok)[0])
        raise ValueError(f"{name}[{index}] = {float(array[index])!r} must be {rule}")
    return array


def _check_level(level: float) -> tuple[float, float]:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level={level!r} must be within (0, 1), e.g. 0.9 for a central 90% interval")
    tail = (1.0 - level) / 2.0
    return tail, 1.0 - tail


class _Family:
    """Parameter columns in and out of a frame: ``<name>_<parameter>``."""

    #: Fields that are not posterior parameters, kept out of :meth:`columns`.
    DERIVED: ClassVar[frozenset[str]] = frozenset()

    def columns(self, name: str) -> dict[str, np.ndarray]:
        """The parameters as frame columns named ``<name>_<parameter>``."""
        return {f"{name}_{f.name}": getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in self.DERIVED}

    @classmethod
    def from_frame(cls, frame, name: str, **extra):
        """The family stored by :meth:`columns` under ``name`` in ``frame`` (any mapping of
        column name to array-like, e.g. a Polars DataFrame)."""
        params = {f.name: np.asarray(frame[f"{name}_{f.name}"], dtype=float) for f in dataclasses.fields(cls) if f.name not in cls.DERIVED}
        return cls(**params, **extra)


@dataclass(frozen=True)
class BetaQuality(_Family):
    """Quality in [0, 1]: Beta(α, β) with α = prior_mean·k + Σw·q and β = (1 − prior_mean)·k + Σw·(1 − q).

    >>> q = BetaQuality.from_totals(n=[10.0], sum_q=[8.0], prior_mean=[0.5], prior_count=10.0)
    >>> q.alpha.tolist(), q.beta.tolist(), q.mean.tolist()
    ([13.0], [7.0], [0.65])
    >>> np.round(np.concatenate(q.interval(0.9)), 3).tolist()
    [0.47, 0.812]
    >>> q.sample(np.random.default_rng(0), 1000).shape
    (1000, 1)
    """

    alpha: np.ndarray
    beta: np.ndarray

    def __post_init__(self) -> None:
        for name in ("alpha", "beta"):
            object.__setattr__(self, name, _array(name, getattr(self, name), check=False))

    @classmethod
    def from_totals(cls, n, sum_q, *, prior_mean, prior_count, validate: bool = True) -> BetaQuality:
        """The posterior from the weighted count ``n`` and weighted quality sum ``sum_q``, with a
        prior of mean ``prior_mean`` (in (0, 1]) worth ``prior_count`` observations (one number,
        or one per row). ``validate``: see :func:`compute_posteriors
        <routing_pipelines.learning.posteriors.compute_posteriors>`."""
        n, sum_q = _array("n", n, check=validate), _array("sum_q", sum_q, check=validate)
        prior_mean = _array("prior_mean", prior_mean, strict=True, high=1.0, check=validate)
        k = _array("prior_count", prior_count, strict=True, check=validate)
        return cls(prior_mean * k + sum_q, (1 - prior_mean) * k + (n - sum_q))

    @property
    def mean(self) -> np.ndarray:
        return self.alpha / (self.alpha + self.beta)

    def interval(self, level: float) -> tuple[np.ndarray, np.ndarray]:
        low, high = _check_level(level)
        return special.betaincinv(self.alpha, self.beta, low), special.betaincinv(self.alpha, self.beta, high)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.beta(self.alpha, self.beta, size=(n, len(self.alpha)))


#: Log-scale priors: a typical spread of a factor ~1.6 (sd 0.5), worth one observation for the
#: mean and two for the variance, so a day of evidence dominates.
LOG_PRIOR_KAPPA = 1.0
LOG_PRIOR_ALPHA = 2.0
LOG_PRIOR_SD = 0.5


@dataclass(frozen=True)
class NormalInverseGammaLog(_Family):
    """A positive quantity x = scale · exp(y), y ~ Normal(m, σ²), with (m, σ²) ~ NIG(μ, κ, α, β).

    The estimate is the log-normal mean scale·exp(m + σ²/2); ``mean`` plugs in E[m] = μ and
    E[σ²] = β / (α − 1); ``interval`` is the Student-t interval of m, shifted the same way;
    ``sample`` draws (m, σ²) from the posterior, as Thompson sampling needs. ``scale`` (not a
    posterior parameter) is the share of calls that cost anything, 1 for latency.

    >>> lat = NormalInverseGammaLog.from_totals(n=[0.0], sum_log=[0.0], sum_log2=[0.0], typical_log=np.log([1000.0]))
    >>> round(float(lat.mean[0]), 6)
    1000.0
    >>> low, high = lat.interval(0.9)
    >>> bool(low[0] < 1000 < high[0])
    True
    """

    mu: np.ndarray
    kappa: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    scale: np.ndarray | float = 1.0

    DERIVED: ClassVar[frozenset[str]] = frozenset({"scale"})

    def __post_init__(self) -> None:
        for name in ("mu", "kappa", "alpha", "beta", "scale"):
            object.__setattr__(self, name, _array(name, getattr(self, name), check=False))

    @classmethod
    def from_totals(cls, n, sum_log, sum_log2, *, typical_log, scale=1.0, validate: bool = True) -> NormalInverseGammaLog:
        """The posterior from the weighted count, Σ log x and Σ (log x)² of the positive values.

        The prior is centred so that its log-normal mean equals the registry's typical value
        (μ0 = ``typical_log`` − sd²/2) with prior expected variance sd² (``LOG_PRIOR_SD``).
        """
        n = _array("n", n, check=validate)
        s1, s2 = _array("sum_log", sum_log, low=None, check=validate), _array("sum_log2", sum_log2, check=validate)
        typical_log = _array("typical_log", typical_log, low=None, check=validate)
        scale = _array("scale", scale, check=validate)
        kappa0, alpha0 = LOG_PRIOR_KAPPA, LOG_PRIOR_ALPHA
        beta0 = (alpha0 - 1) * LOG_PRIOR_SD**2
        mu0 = typical_log - LOG_PRIOR_SD**2 / 2
        mean = np.where(n > 0, s1 / np.maximum(n, 1e-12), mu0)
        ss = np.maximum(s2 - n * mean**2, 0.0)
        kappa = kappa0 + n
        mu = (kappa0 * mu0 + n * mean) / kappa
        alpha = alpha0 + n / 2
        beta = beta0 + ss / 2 + kappa0 * n * (mean - mu0) ** 2 / (2 * kappa)
        return cls(mu, kappa, alpha, beta, scale)

    @property
    def _half_variance(self) -> np.ndarray:
        return (self.beta / (self.alpha - 1)) / 2

    @property
    def mean(self) -> np.ndarray:
        return self.scale * np.exp(self.mu + self._half_variance)

    def interval(self, level: float) -> tuple[np.ndarray, np.ndarray]:
        low, high = _check_level(level)
        t_scale = np.sqrt(self.beta / (self.alpha * self.kappa))
        bound = lambda q: self.scale * np.exp(self.mu + t_scale * special.stdtrit(2 * self.alpha, q) + self._half_variance)  # noqa: E731
        return bound(low), bound(high)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        sigma2 = self.beta / rng.gamma(self.alpha, 1.0, size=(n, len(self.mu)))
        mean = rng.normal(self.mu, np.sqrt(sigma2 / self.kappa))
        # A cell without evidence can draw a huge variance; infinity still ranks last, silently.
        with np.errstate(over="ignore"):
            return self.scale * np.exp(mean + sigma2 / 2)


OUTCOMES = ("success", "partial", "failure")


@dataclass(frozen=True)
class DirichletOutcomes(_Family):
    """Shares of success / partial / failure: Dirichlet with one concentration row per outcome
    (``concentration`` has shape (3, len)). The prior splits ``prior_count`` between success and
    failure by the prior quality, plus ½ per outcome (Jeffreys).

    >>> d = DirichletOutcomes.from_totals(n_success=[6.5], n_partial=[1.0], n_failure=[2.0], prior_mean=[0.5], prior_count=2.0)
    >>> d.concentration[:, 0].tolist(), d.mean[:, 0].tolist()
    ([7.5, 1.5, 3.0], [0.625, 0.125, 0.25])
    """

    concentration: np.ndarray

    def __post_init__(self) -> None:
        concentration = np.asarray(self.concentration, dtype=float)
        if concentration.ndim != 2 or concentration.shape[0] != len(OUTCOMES):
            raise ValueError(f"concentration must have shape ({len(OUTCOMES)}, n), got {concentration.shape}")
        object.__setattr__(self, "concentration", concentration)

    @classmethod
    def from_totals(cls, n_success, n_partial, n_failure, *, prior_mean, prior_count, validate: bool = True) -> DirichletOutcomes:
        """The posterior from weighted outcome counts and the prior quality ``prior_mean`` worth
        ``prior_count`` observations (one number, or one per row)."""
        named = (("n_success", n_success), ("n_partial", n_partial), ("n_failure", n_failure))
        counts = [_array(name, v, check=validate) for name, v in named]
        prior_mean = _array("prior_mean", prior_mean, high=1.0, check=validate)
        k = _array("prior_count", prior_count, strict=True, check=validate)
        return cls(np.stack([
            prior_mean * k / 2 + counts[0] + 0.5,
            np.full_like(prior_mean, 0.5) + counts[1],
            (1 - prior_mean) * k / 2 + counts[2] + 0.5,
        ]))

    @property
    def mean(self) -> np.ndarray:
        """Shape (3, len): expected share of each outcome."""
        return self.concentration / self.concentration.sum(axis=0)

    def interval(self, level: float) -> tuple[np.ndarray, np.ndarray]:
        """Shape (3, len) each: each share's marginal Beta(a_i, a_0 − a_i) interval."""
        low, high = _check_level(level)
        rest = self.concentration.sum(axis=0) - self.concentration
        return special.betaincinv(self.concentration, rest, low), special.betaincinv(self.concentration, rest, high)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Shape (n, 3, len): normalised Gamma draws, a Dirichlet draw per column."""
        gamma = rng.gamma(self.concentration, 1.0, size=(n, *self.concentration.shape))
        return gamma / gamma.sum(axis=1, keepdims=True)

    def columns(self, name: str) -> dict[str, np.ndarray]:
        return {f"{name}_{outcome}": self.concentration[i] for i, outcome in enumerate(OUTCOMES)}

    @classmethod
    def from_frame(cls, frame: Mapping, name: str) -> DirichletOutcomes:
        return cls(np.stack([np.asarray(frame[f"{name}_{outcome}"], dtype=float) for outcome in OUTCOMES]))
