"""How the systematic variates of a draw are sampled: plain keyed Monte Carlo, randomized QMC, or a tilted law.

Most of the ten-year tail comes from a few systematic drivers per draw (national and regional trend, the ACO's
own level, quality, the care-management scale: :class:`~leadsim.model.drivers.Shocks`), so variance reduction
on those ``D = 4 * years + 1`` dimensions (41 for ten years) buys precision where plain Monte Carlo spends 199
of every 200 draws away from a 1-in-200 loss. Beneficiary-level streams are never touched: every mode keeps
common random numbers across policies and bit-identity across threads, chunks and workers.

``simulation.sampling`` (``docs/design.md``, "Sampling and weights"):

* ``plain``: :func:`~leadsim.model.drivers.keyed_shocks`, weight 1 (the numbers of every earlier release).
* ``qmc``: draw ``i`` is point ``j = i // R`` of randomization replicate ``r = i % R`` (``R =
  simulation.qmc_replicates``) of a scrambled Sobol sequence in ``D`` dimensions (``scipy.stats.qmc.Sobol``,
  Owen-type LMS scrambling plus a digital shift seeded by ``(seed, r)``), centred in its 2^-30 cell and mapped
  through the normal (or, for quality, the Beta) inverse CDF. Weight 1; the replicate index is the batch of
  the batch-means standard error. The layout depends only on the draw index, so chunks and workers never
  change a draw; a prefix of ``n`` draws holds the first ``~n / R`` points of every replicate.
* ``tilted``: 80% of draws (picked by a keyed uniform) have their keyed normals shifted by a vector ``mu``
  (quality through ``ndtri``/``ndtr``), so they fall in the loss tail more often; every draw carries the
  likelihood ratio of the standard normal law to this defensive mixture at its variates
  (:func:`tilted_shocks`). ``mu`` comes from a pilot run through :func:`tilt_from_pilot`.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import special

from leadsim.config import Config
from leadsim.model.drivers import Shocks, keyed_shocks
from leadsim.model.rng import MACRO_SLOT, key_np, uniforms_np, word_np

__all__ = ["DEFENSIVE_SHARE", "MIXTURE_COUNTER", "PILOT_DRAW_OFFSET", "SOBOL_BITS", "Sample", "from_normals",
           "qmc_shocks", "rotate_to", "sample_shocks", "shock_dim", "sobol_points", "tilt_from_pilot", "tilted_shocks",
           "to_normals"]

PILOT_DRAW_OFFSET = 2**62
"""Pilot draws of the tilted mode use draw indices ``2^62 + i``: keyed streams disjoint from any run's."""

SOBOL_BITS = 30
"""Resolution of the scrambled Sobol points (``scipy.stats.qmc.Sobol(bits=30)``)."""

DEFENSIVE_SHARE = 0.2
"""Share ``lambda`` of tilted-mode draws left at the plain law (the defensive mixture: weights <= 1 / lambda)."""

MIXTURE_COUNTER = 4
"""Macro-slot counter of the uniform that picks a tilted-mode draw's mixture component (the year-less block
``0 .. N_STREAMS - 1`` where ``Stream.CARE = 3`` lives; no other variate uses counter 4)."""

_QMC_TAG = 0x51AC_50B0  # mixed into the Sobol seed: no other stream uses it
_SOBOL_LOCK = threading.Lock()


@dataclass(frozen=True)
class Sample:
    """The systematic variates of a chunk of draws with the sampling design's per-draw data.

    Attributes
    ----------
    shocks : Shocks
    weight : ndarray (draws,)
        Likelihood-ratio weight (1 unless tilted).
    replicate : ndarray (draws,) of int64, or None
        The QMC randomization replicate of each draw (None unless qmc).
    """

    shocks: Shocks
    weight: np.ndarray
    replicate: np.ndarray | None = None


def shock_dim(years: int) -> int:
    """``D = 4 * years + 1``: national, regional, ACO-level and quality variates per year, one care normal."""
    return 4 * years + 1


def to_normals(shocks: Shocks) -> np.ndarray:
    """The variates as one ``(draws, D)`` standard-normal matrix: national, regional, ACO level, quality
    (``ndtri`` of its uniform), care — the layout of a tilt vector and of the Sobol dimensions."""
    return np.concatenate([shocks.national, shocks.regional, shocks.aco, special.ndtri(shocks.quality),
                           shocks.care[:, None]], axis=1)


def _split(z: np.ndarray, years: int) -> tuple[np.ndarray, ...]:
    y = years
    return z[:, :y], z[:, y:2 * y], z[:, 2 * y:3 * y], z[:, 3 * y:4 * y], z[:, 4 * y]


def from_normals(z: np.ndarray, years: int) -> Shocks:
    """Inverse of :func:`to_normals` (the quality column through ``ndtr``, kept inside (0, 1))."""
    nat, reg, aco, q, care = _split(np.asarray(z, dtype=float), years)
    u = np.clip(special.ndtr(q), 2.0**-40, 1.0 - 2.0**-40)
    return Shocks(np.ascontiguousarray(nat), np.ascontiguousarray(reg), np.ascontiguousarray(aco), u,
                  np.ascontiguousarray(care))


@lru_cache(maxsize=256)
def _sobol(seed: int, replicate: int, dim: int):
    from scipy.stats import qmc

    rng = np.random.default_rng([int(seed), int(replicate), _QMC_TAG])
    return qmc.Sobol(d=dim, scramble=True, bits=SOBOL_BITS, seed=rng)


def sobol_points(seed: int, replicate: int, dim: int, start: int, count: int) -> np.ndarray:
    """Points ``start .. start + count - 1`` of randomization ``replicate`` in ``(0, 1)^dim``, cell-centred."""
    with _SOBOL_LOCK:  # cached engines carry state: one user at a time (dask workers may run threads)
        eng = _sobol(seed, replicate, dim)
        eng.reset()
        if start:
            eng.fast_forward(start)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "balance ... power of 2": a prefix is still unbiased
            u = eng.random(count)
    return u + 0.5 * 2.0**-SOBOL_BITS


def qmc_shocks(cfg: Config, draws: np.ndarray, direction: np.ndarray | None = None) -> Sample:
    """Randomized-QMC variates of the given draws (layout in the module docstring).

    Parameters
    ----------
    cfg : Config
    draws : ndarray (draws,)
    direction : ndarray (D,), optional
        With ``simulation.qmc_rotate``: the loss direction found by the pilot run. The normals are rotated by
        the Householder reflection that maps the first Sobol coordinate onto it (:func:`rotate_to`).

    Notes
    -----
    Every replicate is an independent scrambling of one Sobol sequence, so per-replicate estimates are i.i.d.
    and unbiased; the pooled estimate's standard error is the batch-means one across replicates
    (:mod:`leadsim.analysis.risk`). Normal variates are ``Phi^{-1}(u)``, ``|z| <= 6.1`` at 30 bits.
    """
    s = cfg.simulation
    draws = np.asarray(draws, dtype=np.int64)
    n_rep, dim = s.qmc_replicates, shock_dim(s.years)
    rep, point = draws % n_rep, draws // n_rep
    u = np.empty((draws.size, dim))
    for r in np.unique(rep):
        sel = rep == r
        lo, hi = int(point[sel].min()), int(point[sel].max())
        block = sobol_points(s.seed, int(r), dim, lo, hi - lo + 1)
        u[sel] = block[point[sel] - lo]
    z = special.ndtri(u)
    if direction is not None:
        return Sample(from_normals(rotate_to(z, direction), s.years), np.ones(draws.size), rep)
    shocks = from_normals(z, s.years)
    y = s.years
    shocks = Shocks(shocks.national, shocks.regional, shocks.aco, u[:, 3 * y:4 * y].copy(), shocks.care)
    return Sample(shocks, np.ones(draws.size), rep)


def rotate_to(z: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Apply the Householder reflection ``H = I - 2 v v' / v'v``, ``v = e_1 - b``, ``b = direction / |direction|``.

    Notes
    -----
    ``H`` is orthogonal and maps ``e_1`` to ``b``, so rows of i.i.d. standard normals stay i.i.d. standard
    normals, and the first coordinate (the best-distributed Sobol dimension) becomes the component along ``b``:
    the loss's dominant direction is stratified by the low-discrepancy points, as in the principal-direction
    constructions of QMC for Gaussian models (Glasserman 2004, §5.5; Imai & Tan 2006, *J. Comput. Finance*
    10(2)). Computed row by row in a fixed order (no BLAS), so a draw's variates do not depend on its chunk.
    """
    b = np.asarray(direction, dtype=float)
    norm = float(np.sqrt(b @ b))
    if norm == 0.0:
        return z
    v = -b / norm
    v[0] += 1.0
    vv = float(v @ v)
    if vv < 1e-24:  # the direction is e_1 already
        return z
    return z - (2.0 / vv) * _row_dot(z, v)[:, None] * v[None, :]


def _row_dot(z: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """``z @ mu`` summed column by column in a fixed order: a BLAS product may round differently with the
    number of rows, and a draw's weight must not depend on its chunk."""
    acc = np.zeros(z.shape[0])
    for k in range(z.shape[1]):
        acc = acc + z[:, k] * mu[k]
    return acc


def tilted_shocks(cfg: Config, draws: np.ndarray, shift: np.ndarray) -> Sample:
    """Keyed variates from the defensive mixture of the plain and the shifted law, with likelihood ratios.

    Notes
    -----
    A keyed uniform ``u`` per draw (macro slot, counter ``MIXTURE_COUNTER``) picks the component: with
    probability ``lambda = DEFENSIVE_SHARE`` the draw keeps its keyed standard normals ``e``, otherwise it
    takes ``z = e + mu`` (law ``N(mu, I)``). The draw's weight is the likelihood ratio of the standard normal
    law to the mixture at its variates,

    ``w(z) = phi(z) / (lambda phi(z) + (1 - lambda) phi(z - mu)) = 1 / (lambda + (1 - lambda)
    exp(mu . z - |mu|^2 / 2))``,

    so ``E_q[w f(Z)] = E[f(Z)]`` for any ``f`` and ``w <= 1 / lambda``: the defensive component keeps the body
    of the distribution (means, common events) estimable while most draws explore the tail (Hesterberg 1995,
    *Technometrics* 37:185; Owen & Zhou 2000, *JASA* 95:135). Quality's uniform enters as ``ndtri(u)`` and
    leaves through ``ndtr``, so its Beta law tilts the same way.
    """
    mu = np.asarray(shift, dtype=float)
    draws = np.asarray(draws, dtype=np.uint64)
    e = to_normals(keyed_shocks(cfg, draws))
    u, _ = uniforms_np(word_np(key_np(cfg.simulation.seed, draws, MACRO_SLOT), np.uint64(MIXTURE_COUNTER)))
    lam = DEFENSIVE_SHARE
    z = e + np.where(u > lam, 1.0, 0.0)[:, None] * mu[None, :]
    weight = 1.0 / (lam + (1.0 - lam) * np.exp(_row_dot(z, mu) - 0.5 * float(mu @ mu)))
    return Sample(from_normals(z, cfg.simulation.years), weight)


def sample_shocks(cfg: Config, draws: np.ndarray, shift: np.ndarray | None = None) -> Sample:
    """The systematic variates of ``draws`` under ``simulation.sampling`` (``shift``: the pilot's tilt vector,
    used as the tilt of ``tilted`` and as the rotation direction of ``qmc`` with ``qmc_rotate``)."""
    mode = cfg.simulation.sampling
    if mode == "qmc":
        return qmc_shocks(cfg, draws, shift if cfg.simulation.qmc_rotate else None)
    if mode == "tilted":
        if shift is None:
            raise ValueError("simulation.sampling = 'tilted' needs the tilt vector (engine.prepare computes it)")
        return tilted_shocks(cfg, draws, shift)
    return Sample(keyed_shocks(cfg, draws), np.ones(np.asarray(draws).size))


def tilt_from_pilot(z: np.ndarray, loss: np.ndarray, level: float, decimals: int = 6) -> np.ndarray:
    """The mean shift of the systematic normals toward the loss tail, from a plain pilot sample.

    Parameters
    ----------
    z : ndarray (m, D)
        The pilot draws' systematic normals (:func:`to_normals`).
    loss : ndarray (m,)
        Their loss (minus the ten-year settlement of the target track).
    level : float
        The confidence level the tilt aims at (``simulation.tilt_level``, e.g. 0.995 for VaR 99.5%).
    decimals : int
        The shift is rounded, so that every process computes the same vector whatever its BLAS.

    Returns
    -------
    ndarray (D,)
        ``mu = Phi^{-1}(level) * beta / |beta|``.

    Notes
    -----
    The loss is regressed on the normals by least squares, ``L ~ a + beta . Z``; in a linear-Gaussian model
    the event ``{L > VaR_p}`` is, along ``beta``, the half-space beyond distance ``Phi^{-1}(p)`` (idiosyncratic
    noise aside), and the mean shift to its dominating point is the large-deviations choice of importance
    sampling for Gaussian factor models (Glasserman, *Monte Carlo Methods in Financial Engineering*, 2004,
    §4.6 and §9.4). Shifting by exactly ``Phi^{-1}(p)`` puts half the draws beyond the tilted VaR, which also
    serves TVaR at levels near ``p``.
    """
    z = np.asarray(z, dtype=float)
    loss = np.asarray(loss, dtype=float)
    design = np.column_stack([np.ones(len(loss)), z])
    coef, *_ = np.linalg.lstsq(design, (loss - loss.mean()) / max(loss.std(), 1e-300), rcond=None)
    beta = coef[1:]
    norm = float(np.sqrt(beta @ beta))
    if not np.isfinite(norm) or norm == 0.0:
        return np.zeros(z.shape[1])
    return np.round(special.ndtri(level) * beta / norm, decimals)
