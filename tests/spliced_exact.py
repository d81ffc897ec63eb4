"""An independent scipy implementation of the spliced cost marginal (``docs/calibration.md`` §1), for tests.

Built from ``scipy.stats.lognorm`` (body) and ``scipy.stats.pareto`` (tail) without any code of
:mod:`leadsim.model.marginals`; the normalising scale is found by numerical integration (``scipy.integrate.quad``),
not by the closed form the package uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import integrate, stats


@dataclass
class ExactSpliced:
    """Zero mass ``p0`` + lognormal(sigma) body up to its ``tau`` quantile + Pareto(alpha) tail, mean ``mean``.

    The positive part before scaling has cdf ``G(y) = LN(y)`` for ``y <= y_tau`` and
    ``G(y) = 1 - (1 - tau) (y_tau / y)^alpha`` above. Spending is ``X = c Y`` with probability
    ``1 - p0`` (else 0), where ``c`` makes ``E[X] = mean``.
    """

    p0: float
    sigma: float
    tau: float
    alpha: float
    mean: float = 1.0
    c: float = field(init=False)

    def __post_init__(self) -> None:
        self._body = stats.lognorm(s=self.sigma) if self.sigma > 0 else None
        self.y_tau = float(self._body.ppf(self.tau)) if self.tau < 1.0 else np.inf
        self._tail = stats.pareto(b=self.alpha, scale=self.y_tau) if self.tau < 1.0 else None
        self.c = self.mean / ((1.0 - self.p0) * self._positive_moment(1))

    # -- positive part, unscaled -------------------------------------------------------------------------
    def _pos_pdf(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=float)
        body = self._body.pdf(y)
        if self._tail is None:
            return body
        return np.where(y <= self.y_tau, body, (1.0 - self.tau) * self._tail.pdf(y))

    def _pos_cdf(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=float)
        body = self._body.cdf(y)
        if self._tail is None:
            return body
        return np.where(y <= self.y_tau, body, self.tau + (1.0 - self.tau) * self._tail.cdf(y))

    def _pos_ppf(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=float)
        body = self._body.ppf(np.minimum(v, self.tau))
        if self._tail is None:
            return body
        w = np.clip((v - self.tau) / (1.0 - self.tau), 0.0, 1.0)
        return np.where(v <= self.tau, body, self._tail.ppf(w))

    def _positive_moment(self, k: int) -> float:
        """``E[Y^k]`` by quadrature: body integral up to ``y_tau`` plus the tail integral to infinity."""
        hi = self.y_tau if self._tail is not None else np.inf
        body = integrate.quad(lambda y: y**k * self._body.pdf(y), 0.0, hi, limit=500,
                              points=None if hi == np.inf else [np.exp(-self.sigma**2), 1.0])[0]
        if self._tail is None:
            return body
        tail = integrate.quad(lambda y: y**k * self._tail.pdf(y), self.y_tau, np.inf, limit=500)[0]
        return body + (1.0 - self.tau) * tail

    # -- spending X --------------------------------------------------------------------------------------
    def cdf(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        pos = self._pos_cdf(np.maximum(x, 0.0) / self.c)
        return np.where(x < 0, 0.0, self.p0 + (1.0 - self.p0) * np.where(x > 0, pos, 0.0))

    def pdf(self, x: np.ndarray) -> np.ndarray:
        """Density of the continuous part (the atom at zero excluded)."""
        x = np.asarray(x, dtype=float)
        return np.where(x > 0, (1.0 - self.p0) * self._pos_pdf(np.maximum(x, 1e-300) / self.c) / self.c, 0.0)

    def ppf(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=float)
        v = np.clip((u - self.p0) / (1.0 - self.p0), 0.0, 1.0)
        return np.where(u <= self.p0, 0.0, self.c * self._pos_ppf(v))

    def moment(self, k: int) -> float:
        """``E[X^k]`` by quadrature."""
        return (1.0 - self.p0) * self.c**k * self._positive_moment(k)

    def limited_expectation(self, a: float) -> float:
        """``E[min(X, a)] = int_0^a S(x) dx`` by quadrature."""
        if not np.isfinite(a):
            return self.moment(1)
        brk = [p for p in (self.c * self.y_tau,) if 0.0 < p < a]
        return integrate.quad(lambda x: 1.0 - float(self.cdf(x)), 0.0, a, limit=500, points=brk or None)[0]


def exact_for(pop_cfg, mean: float | None = None) -> ExactSpliced:
    """The exact marginal of a ``population.<name>`` config section (mean ``mean_annual_cost`` by default)."""
    return ExactSpliced(pop_cfg.zero_share, pop_cfg.sigma, pop_cfg.tail_start, pop_cfg.tail_alpha,
                        pop_cfg.mean_annual_cost if mean is None else mean)
