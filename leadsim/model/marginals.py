"""The spliced cost marginal of a population, and the lookup tables the kernel uses.

A beneficiary's annual spending is ``x = m * Q(z)`` where ``z`` is its standard-normal latent risk,
``m`` the population mean of the year and ``Q = F^{-1}(Phi(.))`` the quantile function of the marginal
``F`` normalised to mean 1 (``docs/calibration.md`` §1):

- probability ``p0`` of zero spending;
- positive spending lognormal with log-sd ``sigma`` up to the ``tail_start`` quantile ``tau`` of the
  positive part;
- above it a Pareto tail with index ``alpha``, continuous at the splice.

The kernel evaluates ``Q`` by linear interpolation in a table on a uniform latent grid (spacing 1/256 on
[-8.5, 8.5]), an explicit ``z <= z0`` test for the zero mass, and clamps beyond the grid. Quantiles
match the exact ``F`` to ~1e-5 relative (up to ~3e-4 at the kink where the tail starts, and worse within a
few grid steps above ``z0``, where spending is near zero) and the mean to ~1e-6 (1.5e-5 with a large zero
mass below a narrow body); tests check 2e-5, 1e-3 at the kink, and 5e-6.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from leadsim.model._kernel import GRID_H, GRID_ZMAX

__all__ = ["GRID_H", "GRID_ZMAX", "SplicedMarginal", "conditional_mean_table", "latent_grid", "normal_weights"]



def normal_weights(z: np.ndarray) -> np.ndarray:
    """Weights of a standard normal on the grid ``z``: ``phi(z_i) / sum_j phi(z_j)`` (a quadrature rule)."""
    w = np.exp(-0.5 * z * z)
    return w / w.sum()


def latent_grid() -> np.ndarray:
    """The uniform latent grid of every table: ``-GRID_ZMAX .. GRID_ZMAX`` step ``GRID_H``."""
    n = round(2 * GRID_ZMAX / GRID_H) + 1
    return -GRID_ZMAX + GRID_H * np.arange(n)


@dataclass(frozen=True)
class SplicedMarginal:
    """Zero mass + lognormal body + Pareto tail, normalised to mean 1.

    Parameters
    ----------
    zero_share : float
        ``p0``, probability of zero annual spending, in [0, 1).
    sigma : float
        Log-standard deviation of the lognormal body (>= 0).
    tail_start : float
        Quantile ``tau`` of the positive part where the Pareto tail starts (1.0 = no tail).
    tail_alpha : float
        Pareto index ``alpha > 1``.

    Notes
    -----
    Positive part, before scaling, has quantile ``q(v) = exp(sigma * Phi^{-1}(v))`` for ``v <= tau`` and
    ``q(v) = x_tau * ((1 - tau) / (1 - v))^{1/alpha}`` above, with ``x_tau = exp(sigma * Phi^{-1}(tau))``.
    Its mean is ``exp(sigma^2/2) Phi(Phi^{-1}(tau) - sigma) + (1 - tau) x_tau alpha / (alpha - 1)``
    (lognormal partial expectation plus the Pareto tail mean). The scale ``c`` makes the overall mean
    ``(1 - p0) c E[q] = 1``. Source: ``docs/calibration.md`` §1.
    """

    zero_share: float
    sigma: float
    tail_start: float
    tail_alpha: float

    @property
    def _z_tau(self) -> float:
        return float(special.ndtri(self.tail_start)) if self.tail_start < 1.0 else np.inf

    @property
    def _x_tau(self) -> float:
        return float(np.exp(self.sigma * self._z_tau)) if self.tail_start < 1.0 else np.inf

    @property
    def positive_mean_unscaled(self) -> float:
        s, tau, a = self.sigma, self.tail_start, self.tail_alpha
        if tau >= 1.0:
            return float(np.exp(0.5 * s * s))
        body = np.exp(0.5 * s * s) * special.ndtr(self._z_tau - s)
        tail = (1.0 - tau) * self._x_tau * a / (a - 1.0)
        return float(body + tail)

    @property
    def scale(self) -> float:
        """``c`` such that the marginal has mean 1."""
        return 1.0 / ((1.0 - self.zero_share) * self.positive_mean_unscaled)

    @property
    def zero_latent(self) -> float:
        """``z0 = Phi^{-1}(p0)``: latents at or below it spend zero (``-inf`` when ``p0 = 0``)."""
        return float(special.ndtri(self.zero_share)) if self.zero_share > 0 else -np.inf

    def _positive_quantile(self, v: np.ndarray, v_sf: np.ndarray) -> np.ndarray:
        """Unscaled positive-part quantile at ``v`` (with ``1 - v`` passed accurately as ``v_sf``)."""
        zb = np.where(v < 0.5, special.ndtri(np.clip(v, 1e-300, 1.0)),
                      -special.ndtri(np.clip(v_sf, 1e-300, 1.0)))
        body = np.exp(self.sigma * zb)
        if self.tail_start >= 1.0:
            return body
        with np.errstate(divide="ignore"):
            tail = self._x_tau * ((1.0 - self.tail_start) / v_sf) ** (1.0 / self.tail_alpha)
        return np.where(v <= self.tail_start, body, tail)

    def ppf(self, u: np.ndarray | float) -> np.ndarray:
        """Exact quantile function ``F^{-1}(u)`` of the mean-1 marginal."""
        u = np.asarray(u, dtype=float)
        p0 = self.zero_share
        v = np.clip((u - p0) / (1.0 - p0), 0.0, 1.0)
        v_sf = np.clip((1.0 - u) / (1.0 - p0), 0.0, 1.0)
        q = self.scale * self._positive_quantile(v, v_sf)
        return np.where(u <= p0, 0.0, q)

    def quantile_of_latent(self, z: np.ndarray | float) -> np.ndarray:
        """Exact ``Q(z) = F^{-1}(Phi(z))``, accurate in both tails."""
        z = np.asarray(z, dtype=float)
        p0 = self.zero_share
        u = special.ndtr(z)
        v = np.clip((u - p0) / (1.0 - p0), 0.0, 1.0)
        v_sf = np.clip(special.ndtr(-z) / (1.0 - p0), 0.0, 1.0)
        q = self.scale * self._positive_quantile(v, v_sf)
        return np.where(z <= self.zero_latent, 0.0, q)

    def cdf(self, x: np.ndarray | float) -> np.ndarray:
        """Exact ``F(x)`` of the mean-1 marginal."""
        x = np.asarray(x, dtype=float) / self.scale
        p0, s, tau = self.zero_share, self.sigma, self.tail_start
        with np.errstate(divide="ignore", invalid="ignore"):
            if s > 0:
                body = special.ndtr(np.log(np.maximum(x, 1e-300)) / s)
            else:
                body = np.where(x >= 1.0, 1.0, 0.0)
            if tau < 1.0:
                tail = 1.0 - (1.0 - tau) * (self._x_tau / np.maximum(x, 1e-300)) ** self.tail_alpha
                pos = np.where(x <= self._x_tau, np.minimum(body, tau), tail)
            else:
                pos = body
        return np.where(x < 0, 0.0, p0 + (1.0 - p0) * np.where(x > 0, pos, 0.0))

    def table(self) -> np.ndarray:
        """``Q`` on :func:`latent_grid` (zero below ``z0``), the kernel's lookup table."""
        return self.quantile_of_latent(latent_grid())


def interp_table(table: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Linear interpolation of a :func:`latent_grid` table, clamped at the ends (numpy twin of the kernel's)."""
    n = table.shape[-1]
    t = np.clip((np.asarray(z, dtype=float) + GRID_ZMAX) * (1.0 / GRID_H), 0.0, n - 1.000001)
    i = t.astype(np.int64)
    f = t - i
    return table[i] + f * (table[i + 1] - table[i])


def conditional_mean_table(q_table: np.ndarray, rho: float, normalise: bool = True) -> np.ndarray:
    """``R(z) = E[Q(rho z + sqrt(1 - rho^2) eta)]``, eta ~ N(0, 1), on the latent grid.

    Notes
    -----
    This one integral gives both risk scores of ``docs/calibration.md`` §1: the prospective score
    ``E[x_t | z_{t-1}]`` (with the latent AR(1) ``rho``) and the concurrent score ``E[x_t | s_t]`` for a
    signal ``s = r z + sqrt(1 - r^2) nu`` (with ``rho = r = sqrt(R^2)``), since then
    ``z | s ~ N(r s, 1 - r^2)``. Computed by quadrature on a 1/64-spaced eta grid over +-8.5 and
    (with ``normalise``) rescaled so that ``E_z[R(z)]`` is exactly 1 for ``z ~ N(0, 1)``.
    """
    z = latent_grid()
    if rho <= 0.0:
        return np.ones_like(z)
    s = np.sqrt(max(0.0, 1.0 - rho * rho))
    if s == 0.0:
        r = q_table.copy()
    else:
        eta = np.linspace(-GRID_ZMAX, GRID_ZMAX, 1089)
        w = normal_weights(eta)
        r = np.empty_like(z)
        for lo in range(0, z.size, 512):
            zz = z[lo:lo + 512, None] * rho + s * eta[None, :]
            r[lo:lo + 512] = interp_table(q_table, zz) @ w
    if not normalise:
        return r
    return r / float(r @ normal_weights(z))


def death_probability(z: np.ndarray, mortality: float, beta: float) -> np.ndarray:
    """``D(z) = P(beta z + sqrt(1 - beta^2) xi > Phi^{-1}(1 - q))``: death probability given the latent."""
    z = np.asarray(z, dtype=float)
    if mortality <= 0.0:
        return np.zeros_like(z)
    c = special.ndtri(1.0 - mortality)
    bs = np.sqrt(max(0.0, 1.0 - beta * beta))
    if bs == 0.0:
        return (beta * z > c).astype(float)
    return special.ndtr((beta * z - c) / bs)

