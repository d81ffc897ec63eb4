"""Maximum-likelihood fit of the cost model of ``docs/calibration.md`` §1 to a beneficiary-year panel.

Per population the marginal (zero share ``p0``, lognormal body ``sigma``, Pareto tail ``alpha`` above the
``tail_start`` quantile ``tau`` of positive spending), the latent persistence ``rho``, the death model
(mortality ``q``, the death-risk loading ``beta``) and the death-year multiplier are estimated jointly by
maximising one conditional likelihood; mean cost, exits, transitions and the entrant mix have closed forms.
The estimators and their sources are in ``docs/fit.md``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, special, stats

from leadsim.config import POPULATIONS, Config, LeadsimWarning, load_config
from leadsim.fit.panel import Panel

__all__ = ["MIN_BENEFICIARIES", "Estimate", "FitResult", "PopulationFit", "fit_panel", "latent_scores",
           "natural_parameters"]

MIN_BENEFICIARIES = 1000
"""A population with fewer distinct beneficiaries keeps the base config's values (with a warning)."""

_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)
_GL_X, _GL_W = np.polynomial.legendre.leggauss(32)
_QUAD_SPAN = 10.0
_SCORE_CACHE = 8
"""Marginals whose scores a :class:`_PopData` keeps (the base point and the steps of one finite-difference
gradient)."""


@dataclass(frozen=True)
class Estimate:
    """A fitted value and its standard error (``se = 0`` when the value is fixed, not estimated)."""

    value: float
    se: float

    def within(self, truth: float, k: float = 3.0) -> bool:
        """``|value - truth| <= k se``."""
        return abs(self.value - truth) <= k * self.se


@dataclass
class PopulationFit:
    """The fit of one population: estimates by config key, counts, goodness of fit."""

    name: str
    n_bene: int
    n_rows: int
    estimates: dict[str, Estimate] = field(default_factory=dict)
    fitted: bool = True
    note: str = ""
    gof_statistic: float = float("nan")
    gof_pvalue: float = float("nan")
    lag2: tuple[float, float] = (float("nan"), float("nan"))  # (lag-2 latent slope, rho^2)
    loglik: float = float("nan")
    diagnostics: dict = field(default_factory=dict, repr=False)  # arrays for the fit report
    theta: np.ndarray | None = field(default=None, repr=False)  # ML point on the transformed scale (_unpack)
    theta_cov: np.ndarray | None = field(default=None, repr=False)  # its covariance (8 x 8; zero rows: fixed)
    tail_start: float = 0.99

    @property
    def flagged(self) -> bool:
        """Goodness of fit rejected at the 1% level."""
        return bool(self.fitted and self.gof_pvalue < 0.01)


@dataclass
class FitResult:
    """Everything ``leadsim fit`` estimated from one panel."""

    source: str
    years: tuple[int, int]
    trend: Estimate
    trend_estimated: bool
    tail_start: dict[str, float]
    populations: dict[str, PopulationFit]
    mix: dict[str, Estimate]
    beneficiaries: int
    transitions: dict[str, Estimate]
    entrant_share: dict[str, float]

    def summary(self) -> str:
        """A text table: each fitted value with its SE, and the goodness of fit per population."""
        y0, y1 = self.years
        how = "estimated" if self.trend_estimated else "given"
        lines = [f"leadsim fit: {self.source}, {y0}-{y1}; trend {self.trend.value:+.4f} "
                 f"({how}, se {self.trend.se:.4f}); dollars of {y1}"]
        for name, pf in self.populations.items():
            if not pf.fitted:
                lines.append(f"  {name}: {pf.n_bene:,} beneficiaries: {pf.note}")
                continue
            flag = "POOR FIT" if pf.flagged else "ok"
            lines.append(f"  {name}: {pf.n_bene:,} beneficiaries, {pf.n_rows:,} rows; goodness of fit "
                         f"KS D = {pf.gof_statistic:.4f}, p = {pf.gof_pvalue:.3g} [{flag}]")
            lines.append("    " + ", ".join(f"{k} = {e.value:.4g} ({e.se:.2g})" for k, e in pf.estimates.items()))
        lines.append("  transitions: " + ", ".join(f"{k} = {e.value:.4g} ({e.se:.2g})"
                                                    for k, e in self.transitions.items()))
        lines.append("  aligned mix: " + ", ".join(f"{k} = {e.value:.4g} ({e.se:.2g})" for k, e in self.mix.items()))
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------
# The spliced marginal as a map from spending to the latent normal score
# --------------------------------------------------------------------------------------------------------
def latent_scores(logx: np.ndarray, mu: float, sigma: float, alpha: float, tau: float,
                  p0: float) -> tuple[np.ndarray, np.ndarray]:
    """Normal scores ``z = Phi^{-1}(F(x))`` of positive spending and ``log f(x) + log x`` under the marginal.

    Parameters
    ----------
    logx : ndarray
        ``log`` of positive spending divided by its exposure factor.
    mu, sigma : float
        Log-location and log-sd of the lognormal body.
    alpha, tau : float
        Pareto index and the splice quantile of the positive part.
    p0 : float
        Zero share.

    Returns
    -------
    z, logdens : ndarray
        The normal score and the log density of ``x`` times ``x``.

    Notes
    -----
    With ``w = (log x - mu) / sigma`` and ``z_tau = Phi^{-1}(tau)``, the positive part has cdf ``v = Phi(w)`` for
    ``w <= z_tau`` and ``1 - v = (1 - tau) exp(-alpha sigma (w - z_tau))`` above (the Pareto tail continuous at
    the splice, as :class:`leadsim.model.marginals.SplicedMarginal`); then ``u = p0 + (1 - p0) v`` and
    ``z = Phi^{-1}(u)``, computed from ``1 - u`` in the upper half for accuracy.
    """
    w, logd, tail, st = _splice(logx, mu, sigma, alpha, tau)
    if p0 == 0.0:
        z = w.copy()  # the body: Phi^{-1}(Phi(w)) = w
        if tail.size:
            z[tail] = -special.ndtri(st)
        return z, logd
    # one ndtr and one ndtri per element, no masked copies: sign -1 where 1 - u < 1/2 (the upper half, from the
    # survival function), +1 below; 1 - u < 1/2 <=> w > w_half (every w when p0 >= 1/2); tau >= 1/2 puts the
    # tail in the upper half
    w_half = -float(special.ndtri(0.5 / (1.0 - p0))) if p0 < 0.5 else -np.inf
    upper = w > w_half
    sgn = np.where(upper, -1.0, 1.0)
    a = special.ndtr(sgn * w)
    q = (1.0 - p0) * a
    q = np.where(upper, q, p0 + q)
    if tail.size:
        q[tail] = (1.0 - p0) * st
    z = special.ndtri(q)
    z *= sgn
    return z, logd + np.log1p(-p0)


def _splice(logx: np.ndarray, mu: float, sigma: float, alpha: float,
            tau: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``w``, the log density of the positive part times ``x`` (:func:`latent_scores`), the indices of the
    tail observations and their survival ``1 - v``."""
    w = (logx - mu) / sigma
    logd = -0.5 * w * w - (_LOG_SQRT_2PI + np.log(sigma))
    z_tau = float(special.ndtri(tau)) if tau < 1.0 else np.inf
    tail = np.flatnonzero(w > z_tau)
    st = np.empty(0)
    if tail.size:
        st = np.maximum((1.0 - tau) * np.exp(-alpha * sigma * (w[tail] - z_tau)), 1e-300)
        logd[tail] = np.log(alpha) + np.log(st)
    return w, logd, tail, st


def _log_density(logx: np.ndarray, mu: float, sigma: float, alpha: float, tau: float, p0: float) -> np.ndarray:
    """The second output of :func:`latent_scores` alone (no normal scores: no ``ndtr``/``ndtri``)."""
    logd = _splice(logx, mu, sigma, alpha, tau)[1]
    return logd if p0 == 0.0 else logd + np.log1p(-p0)


def _log_ndtr(x: np.ndarray) -> np.ndarray:
    return special.log_ndtr(x)


# --------------------------------------------------------------------------------------------------------
# The data of one population's likelihood
# --------------------------------------------------------------------------------------------------------
@dataclass
class _PopData:
    ent_logx: np.ndarray     # entrants' log(spending / exposure), positive only
    ent_zeros: int
    prev_logx: np.ndarray    # pairs: last year's log(spending / exposure) (positive)
    cur_logx: np.ndarray     # pairs: this year's log spending (positive rows; the death factor is a parameter)
    cur_pos: np.ndarray      # pairs: this year's spending positive
    cur_died: np.ndarray     # pairs: died this year
    has_zeros: bool
    start: np.ndarray        # starting values
    n_obs: int

    _cache: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def scores(self, mu: float, sigma: float, alpha: float, tau: float,
               p0: float) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """The entrants' summed log density, last year's scores of the pairs, and the scores and log densities
        of the surviving positive pairs, under one marginal.

        The marginal is set by ``(mu, sigma, alpha, tau, p0)`` only; a likelihood evaluation that moves only
        ``rho``, ``beta`` or ``c`` (most finite-difference steps of the optimiser and of the Hessian) reuses
        the arrays of the last :data:`_SCORE_CACHE` marginals instead of recomputing them (exactly the same
        numbers: the cache is keyed by the exact floats).
        """
        key = (mu, sigma, alpha, tau, p0)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        ent = float(_log_density(self.ent_logx, mu, sigma, alpha, tau, p0).sum())
        zp, _ = latent_scores(self.prev_logx, mu, sigma, alpha, tau, p0)
        zc, ldc = latent_scores(self.groups[3], mu, sigma, alpha, tau, p0)
        out = (ent, zp, zc, ldc)
        with self._lock:
            self._cache[key] = out
            while len(self._cache) > _SCORE_CACHE:
                self._cache.popitem(last=False)
        return out

    @functools.cached_property
    def groups(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Indices of the pairs that survive with positive spending, survive with zero spending and die, and
        the log spending of the first (fixed data: computed once, not at every likelihood evaluation)."""
        live_pos = np.flatnonzero(self.cur_pos & ~self.cur_died)
        live_zero = np.flatnonzero(~self.cur_pos & ~self.cur_died)
        return live_pos, live_zero, np.flatnonzero(self.cur_died), self.cur_logx[live_pos]


def _unpack(theta: np.ndarray, has_zeros: bool, tau: float) -> tuple[float, ...]:
    """Natural parameters from ``theta = (log x_tau, log sigma, log(alpha - 1), logit p0, atanh rho,
    atanh beta, c, log dm)``; the body's log-location is ``mu = log x_tau - sigma Phi^{-1}(tau)``."""
    lxt, ls, la, lp0, ar, ab, c, ldm = theta
    sigma = float(np.exp(ls))
    mu = lxt - sigma * float(special.ndtri(tau)) if tau < 1.0 else lxt
    p0 = float(special.expit(lp0)) if has_zeros else 0.0
    return mu, sigma, 1.0 + float(np.exp(la)), p0, float(np.tanh(ar)), float(np.tanh(ab)), c, \
        float(np.exp(ldm))


def natural_parameters(theta: np.ndarray, has_zeros: bool, tau: float) -> dict[str, float]:
    """The config values of a point ``theta`` of the likelihood's transformed scale (see :func:`_unpack`)."""
    _, sigma, alpha, p0, rho, beta, c, dm = _unpack(theta, has_zeros, tau)
    return {"zero_share": p0, "sigma": sigma, "tail_alpha": alpha, "rho": rho, "death_risk_beta": beta,
            "mortality": float(special.ndtr(-c)), "death_multiplier": dm}


def _zero_integral(zprev: np.ndarray, rho: float, s: float, z0: float, beta: float, bs: float, c: float,
                   died: np.ndarray) -> np.ndarray:
    """``log int_{-inf}^{z0} phi_s(z - rho z_prev) P(death or survival | z) dz`` by Gauss-Legendre."""
    a = (z0 - rho * zprev) / s
    lo = a - _QUAD_SPAN
    e = lo[:, None] + (a - lo)[:, None] * 0.5 * (_GL_X[None, :] + 1.0)
    z = rho * zprev[:, None] + s * e
    d = special.ndtr((beta * z - c) / bs)
    g = np.where(died[:, None], d, 1.0 - d)
    val = (np.exp(-0.5 * e * e) / np.sqrt(2 * np.pi) * g) @ _GL_W * 0.5 * (a - lo)
    return np.log(np.maximum(val, 1e-300))


def _negloglik(theta: np.ndarray, d: _PopData, tau: float) -> float:
    """Mean negative log-likelihood of the marginal, persistence and death model (``theta`` as :func:`_unpack`).

    Notes
    -----
    Entrants (``z ~ N(0, 1)``) contribute the marginal density; a continuing member with positive spending
    last year contributes the density of this year's spending given last year's latent,
    ``phi((z_t - rho z_{t-1}) / s) / s |dz_t/dx_t| (1 - D(z_t))`` with ``s = sqrt(1 - rho^2)`` and
    ``D(z) = Phi((beta z - c) / sqrt(1 - beta^2))``, or the integral of the same over ``z_t <= z0`` when it is
    zero; a death contributes ``P(death | z_{t-1}) = Phi((beta rho z_{t-1} - c) / sqrt(1 - beta^2 rho^2))``
    (its spending is left to :func:`_death_multiplier`). The index ``theta[7]`` is not used here.
    """
    mu, sigma, alpha, p0, rho, beta, c, _ = _unpack(theta, d.has_zeros, tau)
    s = np.sqrt(max(1.0 - rho * rho, 1e-12))
    bs = np.sqrt(max(1.0 - beta * beta, 1e-12))
    total = 0.0
    ent, zp, zc, ldc = d.scores(mu, sigma, alpha, tau, p0)
    total += ent
    if d.ent_zeros:
        total += d.ent_zeros * np.log(p0)
    live_pos, live_zero, died, _ = d.groups
    e = (zc - rho * zp[live_pos]) / s
    survive = np.log1p(-np.minimum(special.ndtr((beta * zc - c) / bs), 1.0 - 1e-16))
    total += float(np.sum(-0.5 * e * e - np.log(s) + 0.5 * zc * zc + ldc + survive))
    if live_zero.size and p0 > 0:
        total += float(_zero_integral(zp[live_zero], rho, s, float(special.ndtri(p0)), beta, bs, c,
                                      np.zeros(live_zero.size, dtype=bool)).sum())
    br = beta * rho
    total += float(_log_ndtr((br * zp[died] - c) / np.sqrt(max(1.0 - br * br, 1e-12))).sum())
    val = -total / d.n_obs
    return val if np.isfinite(val) else 1e10


def _died_loglik(log_dm: float | np.ndarray, d: _PopData, theta: np.ndarray, tau: float) -> float | np.ndarray:
    """Log-likelihood of the spending of death years (positive) given last year's latent, at ``dm = e^log_dm``:
    ``phi_s(z_t - rho z_{t-1}) D(z_t) |dz_t/dx_t| / P(death | z_{t-1})`` with ``z_t`` the score of ``x / dm``.
    An array of ``log_dm`` gives the array of values (last year's scores are computed once)."""
    mu, sigma, alpha, p0, rho, beta, c, _ = _unpack(theta, d.has_zeros, tau)
    s = np.sqrt(max(1.0 - rho * rho, 1e-12))
    bs = np.sqrt(max(1.0 - beta * beta, 1e-12))
    sel = d.cur_pos & d.cur_died
    zp, _ = latent_scores(d.prev_logx[sel], mu, sigma, alpha, tau, p0)
    cur = d.cur_logx[sel]

    def one(g: float) -> float:
        zc, ldc = latent_scores(cur - g, mu, sigma, alpha, tau, p0)
        e = (zc - rho * zp) / s
        return float(np.sum(-0.5 * e * e + 0.5 * zc * zc + ldc + _log_ndtr((beta * zc - c) / bs)))

    if np.ndim(log_dm) == 0:
        return one(float(log_dm))
    return np.array([one(float(g)) for g in np.asarray(log_dm)])


def _death_multiplier(d: _PopData, theta: np.ndarray, tau: float, cov: np.ndarray) -> Estimate:
    """The death-year multiplier by a second-stage profile likelihood over ``log dm``.

    Notes
    -----
    The spliced density jumps at the splice, and ``dm`` moves death-year spending across it, so the profile is
    a smooth curve plus small steps. It is evaluated on a grid of 41 points over ``log dm`` in +-0.4 around
    the ratio-of-means start, and a parabola fitted to the points within 3 log-likelihood units of the best
    gives the estimate (its vertex) and the conditional SE (its curvature). The first-stage uncertainty of
    ``beta`` and ``c`` (which set how sick the dying are) is added by the delta method, re-estimating at
    +-1 SE of each (Murphy and Topel 1985, two-step estimators).
    """
    if not (d.cur_pos & d.cur_died).any():
        return Estimate(float(np.exp(theta[7])), float("nan"))

    def vertex(th: np.ndarray) -> tuple[float, float]:
        centre = th[7]
        for span in (0.8, 0.3):
            grid = centre + np.linspace(-span, span, 41)
            ll = _died_loglik(grid, d, th, tau)
            keep = ll >= ll.max() - 3.0
            if keep.sum() < 5:
                keep = np.argsort(ll)[-5:]
            a2, a1, _ = np.polyfit(grid[keep], ll[keep], 2)
            if a2 >= 0:
                return float(grid[np.argmax(ll)]), float("nan")
            centre = float(np.clip(-a1 / (2 * a2), grid[0], grid[-1]))
        return centre, float(np.sqrt(-1.0 / (2 * a2)))

    ldm, se = vertex(theta)
    extra = 0.0
    for i in (5, 6):
        if cov[i, i] > 0:
            h = np.sqrt(cov[i, i])
            up, dn = theta.copy(), theta.copy()
            up[i] += h
            dn[i] -= h
            up[7] = dn[7] = ldm
            extra += ((vertex(up)[0] - vertex(dn)[0]) / 2.0) ** 2
    dm = float(np.exp(ldm))
    return Estimate(dm, dm * float(np.sqrt(se * se + extra)))


_BOUNDS = [(None, None), (-3.0, 1.38), (-3.0, 4.59), (-9.0, 5.0), (-3.0, 3.8), (-3.0, 3.8), (-6.0, 6.0),
           (-3.0, 2.3)]


def _hessian(f, x: np.ndarray, free: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """Central-difference Hessian of ``f`` at ``x`` over the coordinates ``free``."""
    idx = np.flatnonzero(free)
    k = idx.size
    hess = np.zeros((k, k))
    f0 = f(x)
    for a in range(k):
        for b in range(a, k):
            ia, ib = idx[a], idx[b]
            if a == b:
                xp, xm = x.copy(), x.copy()
                xp[ia] += h
                xm[ia] -= h
                hess[a, a] = (f(xp) - 2 * f0 + f(xm)) / (h * h)
            else:
                vals = []
                for sa, sb in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                    xx = x.copy()
                    xx[ia] += sa * h
                    xx[ib] += sb * h
                    vals.append(f(xx))
                hess[a, b] = hess[b, a] = (vals[0] - vals[1] - vals[2] + vals[3]) / (4 * h * h)
    return hess


def _minimise(d: _PopData, tau: float, x0: np.ndarray, free: np.ndarray) -> tuple[np.ndarray, float]:
    def f_free(y: np.ndarray) -> float:
        x = x0.copy()
        x[free] = y
        return _negloglik(x, d, tau)

    res = optimize.minimize(f_free, x0[free], method="L-BFGS-B",
                            bounds=[b for b, keep in zip(_BOUNDS, free, strict=True) if keep],
                            options={"maxiter": 500, "ftol": 1e-11, "gtol": 1e-7})
    theta = x0.copy()
    theta[free] = res.x
    return theta, float(res.fun)


SEARCH_OBS = 40_000
"""Observations (a random subset, fixed seed) used for the pilot fit, the splice search and the information
matrix of a large population; the final maximisation always uses every observation."""


def _subsample(d: _PopData, n_max: int, seed: int = 20270101) -> _PopData:
    """A random subset of about ``n_max`` of the entrants' and pairs' observations (``d`` itself when smaller)."""
    if d.n_obs <= n_max:
        return d
    rng = np.random.default_rng(seed)
    frac = n_max / d.n_obs
    ke = rng.random(d.ent_logx.size) < frac
    kz = int(rng.binomial(d.ent_zeros, frac))
    kp = rng.random(d.prev_logx.size) < frac
    n = int(ke.sum()) + kz + int(kp.sum())
    return _PopData(d.ent_logx[ke], kz, d.prev_logx[kp], d.cur_logx[kp], d.cur_pos[kp], d.cur_died[kp],
                    d.has_zeros, d.start, max(n, 1))


def _newton(d: _PopData, tau: float, theta: np.ndarray, free: np.ndarray, hess: np.ndarray,
            steps: int = 3, h: float = 1e-6) -> tuple[np.ndarray, float]:
    """Newton steps ``theta - H^{-1} grad`` on all observations from a subsample's optimum.

    Notes
    -----
    From a root-n consistent start one Newton step already gives an estimator asymptotically equivalent to the
    maximum (the one-step estimator: Lehmann and Casella 1998, *Theory of Point Estimation*, Thm 6.4.3); up to
    three are taken while the likelihood improves, with a fall back to L-BFGS-B if the first does not.
    """
    idx = np.flatnonzero(free)
    f0 = _negloglik(theta, d, tau)
    try:
        h_inv = np.linalg.inv(hess / d.n_obs)
    except np.linalg.LinAlgError:
        return _minimise(d, tau, theta, free)
    for step in range(steps):
        grad = np.empty(idx.size)
        for k, i in enumerate(idx):  # forward differences: near the optimum their O(h) error is negligible
            up = theta.copy()
            up[i] += h
            grad[k] = (_negloglik(up, d, tau) - f0) / h
        new = theta.copy()
        new[idx] -= h_inv @ grad
        for i in idx:
            lo, hi = _BOUNDS[i]
            new[i] = min(max(new[i], -np.inf if lo is None else lo), np.inf if hi is None else hi)
        f1 = _negloglik(new, d, tau)
        if not f1 <= f0:
            if step == 0:
                return _minimise(d, tau, theta, free)
            break
        converged = f0 - f1 < 1e-10
        theta, f0 = new, f1
        if converged:
            break
    return theta, f0


SPLICE_PROFILE_POINTS = 7
"""Points of the profile likelihood over ``log x_tau`` whose curvature gives the splice point's variance."""


def _splice_profile(d: _PopData, tau: float, theta: np.ndarray, free: np.ndarray, n_total: int,
                    hess: np.ndarray, h: float = 1e-6) -> tuple[float, np.ndarray]:
    """Variance of ``log x_tau`` and the slope ``d theta_hat / d log x_tau`` from the profile likelihood.

    Notes
    -----
    The profile ``l_p(s)``, the maximum over the free parameters at ``log x_tau = s``, is evaluated by one
    Newton step from the maximum ``theta`` (``H`` the information of the free parameters at fixed
    ``log x_tau``, ``g(s)`` the forward-difference gradient at ``(s, theta)``): ``theta(s) = theta - H^-1 g(s)``
    and ``l_p(s) = l(s, theta) + g^T H^-1 g / 2``, at :data:`SPLICE_PROFILE_POINTS` points spanning ``+-h``
    around the maximum, from ``h = 0.1``; when the profile does not drop by 0.5 to 6 log-likelihood units at the
    ends, ``h`` is rescaled (at most twice) to where the last parabola drops by 2. A parabola through the points
    gives ``Var(log x_tau) = 1 / (2 a)`` (``a`` its curvature in units of the whole sample's log-likelihood:
    ``n_total`` times the mean) and a least-squares line through ``theta(s)`` the slope ``b``. For a quadratic
    likelihood the covariance of the other parameters is then exactly ``H^-1 + Var(log x_tau) b b^T`` (block
    inverse). Steps much wider than the spacing of the observations smooth over the likelihood's jumps at the
    splice. Returns ``(nan, 0)`` when the profile is not concave or ``H`` is singular.
    """
    idx = np.flatnonzero(free)
    try:
        h_inv = np.linalg.inv(hess)
    except np.linalg.LinAlgError:
        return float("nan"), np.zeros(theta.size)

    def point(s: float) -> tuple[float, np.ndarray]:
        x = theta.copy()
        x[0] = s
        f0 = _negloglik(x, d, tau)
        grad = np.empty(idx.size)
        for k, i in enumerate(idx):
            up = x.copy()
            up[i] += h
            grad[k] = (_negloglik(up, d, tau) - f0) / h * n_total
        step = h_inv @ grad
        return f0 * n_total - 0.5 * float(grad @ step), theta[idx] - step

    span = 0.1
    for _ in range(3):
        offsets = np.linspace(-span, span, SPLICE_PROFILE_POINTS)
        pts = [point(theta[0] + off) for off in offsets]
        nll = np.array([v for v, _ in pts])
        a2 = float(np.polyfit(offsets, nll, 2)[0])
        rise = min(nll[0], nll[-1]) - nll.min()
        if 0.5 <= rise <= 6.0:
            break
        # rescale so the parabola rises by 2 units at the ends (within a factor 0.02-10 of the last span)
        span = float(np.clip(np.sqrt(2.0 / a2), span / 50.0, span * 10.0)) if a2 > 0 else span * 2.0
    if not a2 > 0:
        return float("nan"), np.zeros(theta.size)
    slope = np.zeros(theta.size)
    slope[idx] = np.polyfit(offsets, np.array([t for _, t in pts]), 1)[0]
    slope[0] = 1.0
    return 1.0 / (2.0 * a2), slope


def _fit_population(d: _PopData, tau: float) -> tuple[dict[str, Estimate], float, np.ndarray, np.ndarray]:
    """Maximise the likelihood; SEs from the inverse observed information, mapped by the delta method.

    Notes
    -----
    The spliced density jumps at the splice ``x_tau``, so the likelihood is discontinuous in any parameter that
    moves the splice. It is parametrised by ``log x_tau`` (which fixes the set of tail observations) and
    profiled: a pilot fit at the empirical ``tau``-quantile of entrants' positive spending per exposure (their
    latent is N(0, 1)), a grid search over ``log x_tau`` (step 0.1 over +-0.3, then 0.02 over +-0.06, then
    0.004 over +-0.012)
    maximising over ``sigma``, ``alpha`` and ``rho`` with the rest held, and the
    full fit at the best ``x_tau``. For a large population the pilot, the search and the information matrix use
    a random subset of :data:`SEARCH_OBS` observations and the maximum is reached by Newton steps on all of
    them (:func:`_newton`). The splice point is
    estimated at rate ``n`` (a change point), so its uncertainty does not enter the other parameters'
    first-order standard errors.
    """
    free = np.ones(8, dtype=bool)
    free[0] = False
    free[7] = False
    free[3] = d.has_zeros
    full = d
    d = _subsample(full, SEARCH_OBS)
    theta, _ = _minimise(d, tau, d.start.copy(), free)
    shape = np.zeros(8, dtype=bool)
    shape[[1, 2, 4]] = True
    centre = theta[0]

    for span, n in ((0.3, 7), (0.06, 7), (0.012, 7)):
        best = (np.inf, centre)
        for lx in centre + np.linspace(-span, span, n):
            x0 = theta.copy()
            x0[0] = lx
            _, val = _minimise(d, tau, x0, shape)
            if val < best[0]:
                best = (val, lx)
        centre = best[1]
    theta[0] = centre
    if d is full:
        theta, res_fun = _minimise(full, tau, theta, free)
        hess = _hessian(lambda t: _negloglik(t, d, tau), theta, free) * full.n_obs
        var_splice, slope = _splice_profile(d, tau, theta, free, full.n_obs, hess)
    else:
        # subsample optimum, then Newton steps on all observations with the subsample's information
        theta, _ = _minimise(d, tau, theta, free)
        hess = _hessian(lambda t: _negloglik(t, d, tau), theta, free) * full.n_obs
        var_splice, slope = _splice_profile(d, tau, theta, free, full.n_obs, hess)
        theta, res_fun = _newton(full, tau, theta, free, hess)
    d = full
    try:
        cov_free = np.linalg.inv(hess)
    except np.linalg.LinAlgError:
        cov_free = np.full(hess.shape, np.nan)
    cov = np.zeros((8, 8))
    cov[np.ix_(free, free)] = cov_free
    if np.isfinite(var_splice):
        # the splice point's uncertainty carried into the rest: Cov = H^-1 (given log x_tau) + var b b^T
        cov += var_splice * np.outer(slope, slope)
    _, sigma, alpha, p0, rho, beta, c, _ = _unpack(theta, d.has_zeros, tau)
    # d(natural)/d(theta) of each reported parameter
    grads = {
        "zero_share": (3, p0 * (1.0 - p0), p0),
        "sigma": (1, sigma, sigma),
        "tail_alpha": (2, alpha - 1.0, alpha),
        "rho": (4, 1.0 - rho * rho, rho),
        "death_risk_beta": (5, 1.0 - beta * beta, beta),
        "mortality": (6, float(stats.norm.pdf(c)), float(special.ndtr(-c))),
    }
    out = {}
    for name, (i, g, v) in grads.items():
        var = cov[i, i] * g * g
        out[name] = Estimate(float(v), float(np.sqrt(var)) if var >= 0 else float("nan"))
    theta[7] = d.start[7]
    dm_est = _death_multiplier(d, theta, tau, cov)
    out["death_multiplier"] = dm_est
    theta[7] = np.log(dm_est.value)
    cov[7, 7] = (dm_est.se / dm_est.value) ** 2 if np.isfinite(dm_est.se) else 0.0
    return out, -res_fun * d.n_obs, theta, cov


def _gof(d: _PopData, theta: np.ndarray, tau: float, seed: int = 12) -> tuple[float, float, np.ndarray]:
    """Kolmogorov-Smirnov test of the probability integral transforms (PIT) against U(0, 1).

    Entrants' PIT is ``u = F(x)``; a continuing member's is ``Phi((z_t - rho z_{t-1}) / sqrt(1 - rho^2))``, which
    is uniform given ``z_{t-1}`` whether or not the member dies (the death factor divides the spending of a
    death year first). Zero spending gets a uniform PIT on its interval (randomised PIT, fixed seed).
    """
    mu, sigma, alpha, p0, rho, _, _, dm = _unpack(theta, d.has_zeros, tau)
    rng = np.random.default_rng(seed)
    s = np.sqrt(1.0 - rho * rho)
    ze, _ = latent_scores(d.ent_logx, mu, sigma, alpha, tau, p0)
    pits = [special.ndtr(ze), rng.uniform(0.0, p0, d.ent_zeros)]
    zp, _ = latent_scores(d.prev_logx, mu, sigma, alpha, tau, p0)
    pos = d.cur_pos
    logx = d.cur_logx[pos] - np.where(d.cur_died[pos], np.log(dm), 0.0)
    zc, _ = latent_scores(logx, mu, sigma, alpha, tau, p0)
    pits.append(special.ndtr((zc - rho * zp[pos]) / s))
    if (~pos).any() and p0 > 0:
        top = special.ndtr((special.ndtri(p0) - rho * zp[~pos]) / s)
        pits.append(rng.uniform(0.0, 1.0, top.size) * top)
    u = np.concatenate(pits)
    res = stats.kstest(u, "uniform")
    return float(res.statistic), float(res.pvalue), u


def _diagnostics(d: _PopData, theta: np.ndarray, tau: float, pits: np.ndarray) -> dict:
    """What the fit report plots: PITs, entrants' spending, the fitted parameters, mortality by latent decile,
    the lag-1 slope of scores (subsampled to at most 20,000 points each)."""
    mu, sigma, alpha, p0, rho, beta, c, _ = _unpack(theta, d.has_zeros, tau)
    rng = np.random.default_rng(5)

    def cap(a: np.ndarray, n: int = 20_000) -> np.ndarray:
        return np.sort(a if a.size <= n else rng.choice(a, n, replace=False))

    zp, _ = latent_scores(d.prev_logx, mu, sigma, alpha, tau, p0)
    br = beta * rho
    pred = special.ndtr((br * zp - c) / np.sqrt(max(1.0 - br * br, 1e-12)))
    edges = np.quantile(zp, np.linspace(0, 1, 11)) if zp.size >= 50 else np.array([])
    dec = np.clip(np.searchsorted(edges, zp, side="right") - 1, 0, 9) if edges.size else np.zeros(0, int)
    mort = [(float(d.cur_died[dec == k].mean()), float(pred[dec == k].mean()), int((dec == k).sum()))
            for k in range(10) if (dec == k).any()]
    live = d.cur_pos & ~d.cur_died
    zc, _ = latent_scores(d.cur_logx[live], mu, sigma, alpha, tau, p0)
    lag1 = _slope(zp[live], zc) if live.sum() > 30 else float("nan")
    return {"pits": cap(pits), "entrant_logx": cap(d.ent_logx), "entrant_zeros": d.ent_zeros,
            "params": {"mu": mu, "sigma": sigma, "alpha": alpha, "p0": p0, "tau": tau, "rho": rho},
            "mortality_by_decile": mort, "lag1": lag1}


# --------------------------------------------------------------------------------------------------------
# The panel as pairs and entrants
# --------------------------------------------------------------------------------------------------------
@dataclass
class _Rows:
    x: np.ndarray          # spending in dollars of the last panel year
    prev: np.ndarray       # index of last year's row of the same beneficiary, -1 if none
    entrant: np.ndarray    # first row of a spell with fewer than 12 months, not a death
    exposure: np.ndarray   # factor of an entrant's spending (member_months / 12), else 1


def _rows(panel: Panel, trend: float) -> _Rows:
    y1 = panel.years[1]
    x = panel.spending * (1.0 + trend) ** (y1 - panel.year)
    n = panel.n_rows
    prev = np.full(n, -1, dtype=np.int64)
    cont = (panel.bene[1:] == panel.bene[:-1]) & (panel.year[1:] == panel.year[:-1] + 1)
    prev[1:][cont] = np.arange(n - 1)[cont]
    entrant = (prev < 0) & (panel.member_months < 12.0) & ~panel.died & (panel.member_months > 0)
    exposure = np.where(entrant, panel.member_months / 12.0, 1.0)
    return _Rows(x, prev, entrant, exposure)


def _estimate_trend(panel: Panel) -> Estimate:
    """Weighted least squares of log per-member-year spending on the year, one intercept per population.

    Notes
    -----
    ``log m_{p,t} = a_p + t log(1 + g)``, weights the member-years of each cell; ``g`` with its SE from the
    residual variance (the usual WLS formula). With fewer than one residual degree of freedom the SE is NaN.
    """
    rows, wts, ys, ps = [], [], [], []
    for p in range(len(POPULATIONS)):
        for y in np.unique(panel.year):
            sel = (panel.population == p) & (panel.year == y)
            my = panel.member_months[sel].sum() / 12.0
            tot = panel.spending[sel].sum()
            if my > 0 and tot > 0:
                rows.append(np.log(tot / my))
                wts.append(my)
                ys.append(y)
                ps.append(p)
    yv, w, ys_a, ps_a = np.array(rows), np.array(wts), np.array(ys, float), np.array(ps)
    pops = np.unique(ps_a)
    design = np.column_stack([ys_a - ys_a.mean()] + [(ps_a == p).astype(float) for p in pops])
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(design * sw[:, None], yv * sw, rcond=None)
    resid = (yv - design @ coef) * sw
    dof = yv.size - design.shape[1]
    if dof > 0:
        s2 = float(resid @ resid) / dof
        cov = s2 * np.linalg.inv((design * w[:, None]).T @ design)
        se_b = float(np.sqrt(cov[0, 0]))
    else:
        se_b = float("nan")
    g = float(np.expm1(coef[0]))
    return Estimate(g, se_b * (1.0 + g))


def _binomial(k: float, n: float) -> Estimate:
    p = k / n if n > 0 else float("nan")
    return Estimate(p, float(np.sqrt(p * (1.0 - p) / n)) if n > 0 else float("nan"))


def _ratio_mean(x: np.ndarray, e: np.ndarray, bene: np.ndarray) -> Estimate:
    """``sum x / sum e`` with the beneficiary-clustered (sandwich) standard error."""
    r = x.sum() / e.sum()
    resid = np.bincount(bene, weights=x - r * e)
    resid = resid[np.bincount(bene) > 0]
    m = resid.size
    var = float(resid @ resid) / e.sum() ** 2 * m / max(m - 1, 1)
    return Estimate(float(r), float(np.sqrt(var)))


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """Run the block with every loaded OpenBLAS on one thread, then restore the previous counts.

    The optimiser (L-BFGS-B) and the quadrature make thousands of tiny BLAS calls; a multi-threaded OpenBLAS
    wakes its threads for each one, and when the cores are busy (other jobs) the spinning threads made a
    1,000,000-row fit 3-5 times slower (``docs/fit.md`` §6). The OpenBLAS libraries numpy and scipy load are
    found in ``/proc/self/maps`` (Linux; elsewhere, or with no OpenBLAS, the block runs unchanged), as
    ``threadpoolctl`` does; one thread only changes the order of BLAS sums (float rounding).
    """
    controls = []
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.rsplit("/", 1)[-1].lower()})
    except OSError:
        paths = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get_name, set_name in (("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
                                   ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
                                   ("openblas_get_num_threads", "openblas_set_num_threads")):
            get, put = getattr(lib, get_name, None), getattr(lib, set_name, None)
            if get is not None and put is not None:
                controls.append((put, int(get())))
                put(1)
                break
    try:
        yield
    finally:
        for put, before in controls:
            put(before)


def fit_panel(panel: Panel, base: Config | None = None, trend: float | None = None) -> FitResult:
    """Fit every population of a validated panel.

    Parameters
    ----------
    panel : Panel
        From :func:`leadsim.fit.panel.read_panel`.
    base : Config, optional
        Supplies the ``tail_start`` of each population (the splice rule) and the values a population too small
        to fit keeps (default: the built-in defaults).
    trend : float, optional
        Annual spending trend for the dollar basis; default: estimated from the panel (:func:`_estimate_trend`).

    Returns
    -------
    FitResult
        Values in dollars of the last panel year, the base year of a simulation that starts the year after.
    """
    with _single_threaded_blas():
        return _fit_panel(panel, base, trend)


def _fit_panel(panel: Panel, base: Config | None, trend: float | None) -> FitResult:
    base = base or load_config()
    trend_est = _estimate_trend(panel) if trend is None else Estimate(float(trend), 0.0)
    rows = _rows(panel, trend_est.value)
    pop = panel.population
    last = panel.years[1]
    has_next = np.zeros(panel.n_rows, dtype=bool)
    has_next[rows.prev[rows.prev >= 0]] = True
    fits: dict[str, PopulationFit] = {}
    for j, name in enumerate(POPULATIONS):
        sel = pop == j
        n_bene = int(np.unique(panel.bene[sel]).size)
        pf = PopulationFit(name, n_bene, int(sel.sum()))
        fits[name] = pf
        if n_bene < MIN_BENEFICIARIES:
            pf.fitted = False
            pf.note = (f"only {n_bene:,} beneficiaries (< {MIN_BENEFICIARIES:,}): keeps the base config's values")
            warnings.warn(f"population {name}: {pf.note}", LeadsimWarning, stacklevel=2)
            continue
        # mean cost per member-year, dollars of the last year (the model's definition: docs/calibration.md)
        pf.estimates["mean_annual_cost"] = _ratio_mean(rows.x[sel], panel.member_months[sel] / 12.0,
                                                       panel.bene[sel])
        # exits: survivors of a year before the last with no row the next year
        at_risk = sel & ~panel.died & (panel.year < last)
        pf.estimates["exit_rate"] = _binomial(float((at_risk & ~has_next).sum()), float(at_risk.sum()))
        tau = base.population[name].tail_start
        data = _pop_data(panel, rows, j, tau)
        est, ll, theta, cov = _fit_population(data, tau)
        pf.theta, pf.theta_cov, pf.tail_start = theta, cov, tau
        pf.estimates.update(est)
        pf.loglik = ll
        pf.gof_statistic, pf.gof_pvalue, pits = _gof(data, theta, tau)
        pf.diagnostics = _diagnostics(data, theta, tau, pits)
        pf.lag2 = _lag2(panel, rows, j, theta, tau, data.has_zeros)
    # transitions out of Aged & Disabled, between consecutive rows
    k = rows.prev >= 0
    from_ad = k & (pop[np.maximum(rows.prev, 0)] == 0)
    n_ad = float(from_ad.sum())
    transitions = {"esrd_rate": _binomial(float((from_ad & (pop == 1)).sum()), n_ad),
                   "high_needs_rate": _binomial(float((from_ad & (pop == 2)).sum()), n_ad)}
    ent = rows.entrant
    # aco.mix is the aligned mix (the model solves the entrants' mix that keeps it): member-month shares of the
    # populations over all years, with a binomial SE on one year's count (one beneficiary's rows are not independent)
    mm, p_all = panel.member_months, panel.population
    n_year = len(p_all) / (panel.years[1] - panel.years[0] + 1)
    shares = [float(mm[p_all == j].sum() / mm.sum()) for j in range(len(POPULATIONS))]
    mix = {name: Estimate(q, float(np.sqrt(q * (1.0 - q) / n_year)))
           for name, q in zip(POPULATIONS, shares, strict=True)}
    in_last = panel.year == last
    share = {name: float((ent & in_last & (pop == j)).sum() / max((in_last & (pop == j)).sum(), 1))
             for j, name in enumerate(POPULATIONS)}
    return FitResult(source=panel.source, years=panel.years, trend=trend_est, trend_estimated=trend is None,
                     tail_start={n: base.population[n].tail_start for n in POPULATIONS}, populations=fits,
                     mix=mix, beneficiaries=int(in_last.sum()), transitions=transitions, entrant_share=share)


def _pop_data(panel: Panel, rows: _Rows, j: int, tau: float) -> _PopData:
    pop = panel.population
    x = rows.x
    ent = rows.entrant & (pop == j)
    ent_pos = ent & (x > 0)
    ent_logx = np.log(x[ent_pos] / rows.exposure[ent_pos])
    k = rows.prev
    safe = np.maximum(k, 0)
    pair = (k >= 0) & (pop == j) & (pop[safe] == j) & (x[safe] > 0) & ~rows.entrant
    prev_idx = k[pair]
    prev_logx = np.log(x[prev_idx] / rows.exposure[prev_idx])
    cur_x = x[pair]
    cur_pos = cur_x > 0
    cur_logx = np.log(np.where(cur_pos, cur_x, 1.0))
    cur_died = panel.died[pair]
    sel = pop == j
    has_zeros = bool((x[sel] == 0).any())
    logpos = np.log(x[sel & (x > 0) & ~panel.died & ~rows.entrant])
    p0 = float((x[sel] == 0).mean())
    death = float(panel.died[sel].mean())
    ref = ent_logx if ent_logx.size >= 200 else logpos
    start = np.array([np.quantile(ref, tau) if tau < 1.0 else np.median(ref),
                      np.log(max(logpos.std(), 0.1)), np.log(2.0),
                      special.logit(min(max(p0, 1e-3), 0.5)), np.arctanh(0.6), np.arctanh(0.3),
                      special.ndtri(1.0 - min(max(death, 1e-3), 0.5)), np.log(1.2)])
    n_obs = ent_logx.size + int((ent & (x == 0)).sum()) + int(pair.sum())
    return _PopData(ent_logx, int((ent & (x == 0)).sum()), prev_logx, cur_logx, cur_pos, cur_died, has_zeros,
                    start, max(n_obs, 1))


def _lag2(panel: Panel, rows: _Rows, j: int, theta: np.ndarray, tau: float, has_zeros: bool) -> tuple[float, float]:
    """Slope of the latent score on its value two years before (positive spending, no death), against
    ``rho^2``: the AR(1) check of docs/fit.md §2.3."""
    mu, sigma, alpha, p0, rho, *_ = _unpack(theta, has_zeros, tau)
    k = rows.prev
    k2 = np.where(k >= 0, k[np.maximum(k, 0)], -1)
    pop, x = panel.population, rows.x
    sel = (k2 >= 0) & (pop == j) & (pop[np.maximum(k2, 0)] == j) & (x > 0) & (x[np.maximum(k2, 0)] > 0) \
        & ~panel.died
    if sel.sum() < 30:
        return float("nan"), rho * rho
    za, _ = latent_scores(np.log(x[sel]), mu, sigma, alpha, tau, p0)
    i2 = k2[sel]
    zb, _ = latent_scores(np.log(x[i2] / rows.exposure[i2]), mu, sigma, alpha, tau, p0)
    return _slope(zb, za), rho * rho


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of ``y`` on ``x`` (selection on ``x`` leaves it unbiased, unlike a correlation)."""
    xc = x - x.mean()
    return float(xc @ (y - y.mean()) / (xc @ xc))
