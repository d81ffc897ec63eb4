"""The numba kernels: aligned beneficiaries over the performance years, one draw at a time.

Every ``@njit`` function and every constant a kernel reads lives here: numba's disk cache is keyed on the
source file of the compiled function only, so a helper or constant in another module could change while a
user keeps running the stale compiled kernel. Kernels take arrays, plain scalars and one
:class:`KernelParams` structure, use ``cache=True`` and no ``fastmath`` (stop-loss bands and death thresholds
use ``inf``). Their numpy twins are in :mod:`leadsim.testing.reference`; tests check that both agree to rounding.

Model of one draw (docs/calibration.md §1)
-------------------------------------
Slots ``0 .. n_slots-1`` each hold at most one beneficiary per year. At the start of year ``t`` vacant
slots (lowest index first) are filled with entrants until the aligned count reaches ``target[t]``. Then,
for every occupied slot, in slot order:

1. an Aged & Disabled beneficiary becomes ESRD with probability ``esrd_rate``, else High Needs with
   probability ``hn_rate`` (and stays so);
2. the latent risk moves ``z_t = rho z_{t-1} + sqrt(1 - rho^2) eta`` (an entrant draws ``z ~ N(0, 1)``);
3. death when ``beta z_t + sqrt(1 - beta^2) xi > Phi^{-1}(1 - q)``: six member-months and spending
   ``k x`` (entrants cannot die in their entry year: they were alive when aligned);
4. spending ``x = m_{p,t} Q_p(z_t)`` (an entrant: half a year of exposure, ``0.5 x``, six months);
5. outlier relief per beneficiary-year: stop-loss ``sum_k s_k clip(x - a_k, 0, a_{k+1} - a_k)`` or
   truncation ``max(x - cap, 0)``, attachments trended with national growth;
6. risk score: prospective ``R_p(z_{t-1})`` (1 for an entrant), concurrent ``C_p(s)`` for populations
   flagged concurrent (High Needs) with ``s = r z_t + sqrt(1 - r^2) nu``;
7. non-death exits at the year end with probability ``e_p``; deaths and exits leave vacancies.

Random numbers come from :mod:`leadsim.model.rng` at address ``(seed, draw, slot, year, stream)``; year index 0
is the base year (the initial cohort's latent), performance year ``i`` uses index ``i + 1``.
"""

from __future__ import annotations

from typing import NamedTuple

import numba as nb
import numpy as np

__all__ = ["OUT_FIELDS", "KernelParams", "cohort_chunk", "dies", "floor_chunk", "simulate_draw"]

# ---------------------------------------------------------------------------------------------------------
# Constants every kernel reads (numba freezes module globals into the compiled code: they live here)
# ---------------------------------------------------------------------------------------------------------
GRID_ZMAX = 8.5
"""Latent grid of every lookup table: ``-GRID_ZMAX .. GRID_ZMAX`` ..."""
GRID_H = 1.0 / 256.0
"""... in steps of ``GRID_H``."""

N_STREAMS = 16
"""Counters per (key, year): ``counter = year_index * N_STREAMS + stream``."""

GAMMA = np.uint64(0x9E3779B97F4A7C15)
_K0 = np.uint64(0x243F6A8885A308D3)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S32 = np.uint64(32)
_MASK32 = np.uint64(0xFFFFFFFF)
_INV32 = 1.0 / 4294967296.0
_TWO_PI = 2.0 * np.pi



class Stream:
    """Stream numbers (the second part of the counter) and what each one feeds."""

    LATENT = 0        # beneficiary: Box-Muller pair -> latent innovation eta, death noise xi
    EVENTS = 1        # beneficiary: two uniforms -> exit, transition / entrant population
    SIGNAL = 2        # beneficiary: concurrent risk-model signal noise
    NATIONAL = 0      # macro: national shock (pair: national, regional)
    ACO = 1           # macro: ACO-specific shock (pair: ACO, spare)
    QUALITY = 2       # macro: quality score uniform
    CARE = 3          # macro: care-management scale (year index 0 only: one normal per draw)



@nb.njit(cache=True, inline="always")
def mix64(z: np.uint64) -> np.uint64:
    """SplitMix64 finaliser: a bijective 64-bit avalanche."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@nb.njit(cache=True, inline="always")
def key(seed: np.uint64, draw: np.uint64, slot: np.uint64) -> np.uint64:
    """The 64-bit key of one (seed, draw, slot) address."""
    return mix64(mix64(mix64(seed ^ _K0) ^ draw) ^ slot)


@nb.njit(cache=True, inline="always")
def word(k: np.uint64, counter: np.uint64) -> np.uint64:
    """The random 64-bit word at ``counter`` of the stream keyed ``k``."""
    return mix64(k + (counter + np.uint64(1)) * GAMMA)


@nb.njit(cache=True, inline="always")
def uniforms(w: np.uint64) -> tuple[float, float]:
    """Two uniforms from one word: ``u1`` in (0, 1] (safe for log), ``u2`` in [0, 1)."""
    u1 = (float(w >> _S32) + 1.0) * _INV32
    u2 = float(w & _MASK32) * _INV32
    return u1, u2


@nb.njit(cache=True, inline="always")
def normals(w: np.uint64) -> tuple[float, float]:
    """Two independent standard normals from one word (Box-Muller)."""
    u1, u2 = uniforms(w)
    r = np.sqrt(-2.0 * np.log(u1))
    t = _TWO_PI * u2
    return r * np.cos(t), r * np.sin(t)


OUT_FIELDS = ("member_months", "expenditure", "stop_loss_payout", "risk_weighted_months", "deaths",
              "entrants", "outliers")
"""Last axis of the kernel output, per (draw, year, population)."""

_MM, _SPEND, _PAYOUT, _RISKW, _DEATHS, _ENTRANTS, _OUTLIERS = range(7)
_AD, _ESRD, _HN = 0, 1, 2
_INV_H = 1.0 / GRID_H
_NS = np.uint64(N_STREAMS)
_S_LATENT = np.uint64(Stream.LATENT)
_S_EVENTS = np.uint64(Stream.EVENTS)
_S_SIGNAL = np.uint64(Stream.SIGNAL)
_DEATH_MARGIN = 1e-5            # exact death noise within this of the threshold (approximation error < 2e-7)


@nb.njit(cache=True, inline="always")
def interp(table: np.ndarray, p: int, z: float) -> float:
    """Linear interpolation of row ``p`` of a latent-grid table, clamped at the grid ends."""
    n = table.shape[1]
    t = (z + GRID_ZMAX) * _INV_H
    if t < 0.0:
        t = 0.0
    elif t > n - 1.000001:
        t = n - 1.000001
    i = np.uint64(t)  # unsigned indices: no negative-index wraparound in the compiled code
    f = t - i
    a = table[p, i]
    return a + f * (table[p, i + np.uint64(1)] - a)


@nb.njit(cache=True, inline="always")
def dies(k, counter, r, t, c, bz, bs, dc):
    """The death test ``bz + bs * xi > dc`` with ``xi = r sin(t)`` the second Box-Muller normal.

    ``|sin t|`` is first taken as ``sqrt(1 - cos^2 t)`` (absolute error < 3e-8, so ``xi`` is within 2e-7);
    only when the test is within ``_DEATH_MARGIN`` of the threshold is ``xi`` recomputed exactly from the
    word, so the outcome is always the exact test's.
    """
    s = np.sqrt(max(0.0, 1.0 - c * c))
    if t > np.pi:
        s = -s
    lhs = bz + bs * (r * s)
    if lhs > dc + _DEATH_MARGIN:
        return True
    if lhs < dc - _DEATH_MARGIN:
        return False
    return bz + bs * normals(word(k, counter))[1] > dc


@nb.njit(cache=True)
def cdf_guide(cdf):
    """Guide table of the cdfs ``cdf[p]`` for :func:`inverse_cdf`: ``guide[p, c]`` is the last node whose cdf is
    below ``c / m`` (``m`` = number of nodes, ``c = 0 .. m``), 0 when none is.

    Notes
    -----
    The standard guide-table (indexed search) method for inversion, docs/model.md §3: a start index close to the
    answer, so the search takes one or two steps instead of a binary search's ``log2 m`` (each a branch the
    processor cannot predict). Any start gives the same bracket, so the guide only changes the speed.
    """
    n = cdf.shape[1]
    m = n
    inv_m = 1.0 / m
    guide = np.empty((cdf.shape[0], m + 1), dtype=np.int64)
    for q in range(cdf.shape[0]):
        j = 0
        for c in range(m + 1):
            thr = c * inv_m
            while j + 1 < n and cdf[q, j + 1] < thr:
                j += 1
            guide[q, c] = j
    return guide


@nb.njit(cache=True)
def inverse_cdf(nodes, cdf, guide, p, u):
    """Inverse of the piecewise-linear cdf ``cdf[p]`` at ``nodes`` (increasing from 0 to 1) at ``u`` in (0, 1].

    ``guide`` is :func:`cdf_guide` of ``cdf``: the search starts there and walks to the unique bracket
    ``cdf[lo] < u <= cdf[lo + 1]`` (the one a bisection finds), so the result does not depend on the guide.
    """
    n = nodes.shape[0]
    if u <= cdf[p, 0]:
        return nodes[0]
    if u >= cdf[p, n - 1]:
        return nodes[n - 1]
    lo = guide[p, int(u * (guide.shape[1] - 1))]
    while lo > 0 and cdf[p, lo] >= u:  # now cdf[lo] < u (cdf[0] < u)
        lo -= 1
    while cdf[p, lo + 1] < u:  # stops before n - 1: u < cdf[n - 1]
        lo += 1
    hi = lo + 1
    c0 = cdf[p, lo]
    return nodes[lo] + (u - c0) / (cdf[p, hi] - c0) * (nodes[hi] - nodes[lo])


class KernelParams(NamedTuple):
    """Every draw-independent input of the cohort kernel, built once per run by
    :func:`leadsim.model.cohort.cohort_model` (arrays and plain scalars; numba passes it as one tuple)."""

    seed: np.uint64
    target: np.ndarray         # (years,) int64: aligned count at the start of each year
    init_pop: np.ndarray       # (slots0,) int8: population of each initial slot; + FIRST_YEAR: aligned in PY1
    init_nodes: np.ndarray     # (G + 1,) bin edges of the initial cohort's latent law
    init_cdf: np.ndarray       # (3, G + 1) its cdf: the base-year latent is drawn by inversion
    qtab: np.ndarray           # (3, G) Q_p on the latent grid
    prostab: np.ndarray        # (3, G) prospective risk score table
    conctab: np.ndarray        # (3, G) concurrent risk score table
    entrant_score: np.ndarray  # (3,) prospective score of an entrant
    z0: np.ndarray             # (3,) zero-spending latent threshold
    rho: np.ndarray            # (3,) latent persistence
    death_c: np.ndarray        # (3,) Phi^{-1}(1 - q), inf when q = 0
    beta: np.ndarray           # (3,) death-risk loading
    death_mult: np.ndarray     # (3,) death-year spending multiplier
    exit_rate: np.ndarray      # (3,) non-death exits
    sig_r: np.ndarray          # (3,) sqrt(R^2) of the concurrent risk model
    concurrent: np.ndarray     # (3,) bool: population scored concurrently (High Needs)
    hn_rate: float             # A&D -> High Needs per year
    esrd_rate: float           # A&D -> ESRD per year
    mix_cum: np.ndarray        # (2,) cumulative entrant mix: A&D, A&D + ESRD
    attach: np.ndarray         # (K,) stop-loss attachments (start-year dollars)
    sl_share: np.ndarray       # (K,) stop-loss shares
    relief_mode: int           # RELIEF_NONE, RELIEF_STOP_LOSS or RELIEF_TRUNCATION
    trunc_cap: np.ndarray      # (3,) truncation cap per population (start-year dollars), inf when unset
    outlier_thr: float         # outlier count threshold (start-year dollars)


# slot states
VACANT, CONTINUING, ENTRANT, FIRST_YEAR_ENTRANT = 0, 1, 2, 3
FIRST_YEAR = 3
"""Offset of a population code in ``init_pop`` for a beneficiary aligned during the first performance year."""
# outlier relief
RELIEF_NONE, RELIEF_STOP_LOSS, RELIEF_TRUNCATION = 0, 1, 2
# member-months of a full year, and of a year of entry or death (mid-year on average)
FULL_YEAR, HALF_YEAR = 12.0, 6.0
ENTRANT_EXPOSURE = 0.5
"""An entrant's spending is half a year's draw."""


@nb.njit(cache=True, inline="always")
def n_slots_of(target, init_pop):
    """Slots a draw needs: the largest aligned count of any year, or the initial cohort if larger."""
    n = 0
    for t in range(target.shape[0]):
        if target[t] > n:
            n = target[t]
    if init_pop.shape[0] > n:
        n = init_pop.shape[0]
    return n


@nb.njit(cache=True)
def simulate_draw(kp, draw, mean, sl_scale, out, record, rec_pop, rec_mm, rec_spend, rec_died):
    """Simulate one draw; accumulate into ``out[year, population, field]`` (see :data:`OUT_FIELDS`).

    ``kp`` is the run's :class:`KernelParams`; ``mean[year, p]`` and ``sl_scale[year, p]`` are this draw's
    realised mean annual cost and the attachment trend. With ``record`` the slot-level panel is written to
    ``rec_*[slot, year]``.

    The latent innovation is the first Box-Muller normal ``r cos(t)``; the death noise ``r sin(t)`` is only
    compared with a threshold, so :func:`dies` avoids ``sin`` except near it. Per-year thresholds are
    computed once and sums are kept in a small local array, in slot order (same bits as summing in ``out``).

    Notes
    -----
    Layout for speed (benchmarks/README.md, "What bounds the kernel"; every step leaves the bits unchanged):
    each year first fills vacancies and computes every occupied slot's radius, angle and ``cos`` in a pass of
    its own, so the slot loop makes no libm call on its common path and keeps its values in registers;
    population and grid indices are unsigned, so array accesses carry no negative-index wraparound code; the
    initial cohort's latent is inverted with a guide table (:func:`cdf_guide`) instead of a bisection.
    """
    # unpack once: reading an array out of the tuple in the loop would count references on every access
    target, init_pop, init_nodes, init_cdf = kp.target, kp.init_pop, kp.init_nodes, kp.init_cdf
    qtab, prostab, conctab, entrant_score = kp.qtab, kp.prostab, kp.conctab, kp.entrant_score
    z0, rho, death_c, beta, death_mult = kp.z0, kp.rho, kp.death_c, kp.beta, kp.death_mult
    exit_rate, sig_r, concurrent, mix_cum = kp.exit_rate, kp.sig_r, kp.concurrent, kp.mix_cum
    hn_rate, esrd_rate = kp.hn_rate, kp.esrd_rate
    attach, sl_share, relief_mode = kp.attach, kp.sl_share, kp.relief_mode
    trunc_cap, outlier_thr, seed = kp.trunc_cap, kp.outlier_thr, kp.seed
    n_years = target.shape[0]
    n_slots = n_slots_of(target, init_pop)
    n_bands = attach.shape[0]
    s_draw = np.uint64(draw)
    # per-draw scratch (struct of arrays over slots)
    keys = np.empty(n_slots, dtype=np.uint64)
    z = np.zeros(n_slots)
    pop = np.zeros(n_slots, dtype=np.int8)
    state = np.zeros(n_slots, dtype=np.int8)
    r_y = np.empty(n_slots)  # this year's Box-Muller radius, angle and cosine per slot
    ang_y = np.empty(n_slots)
    cos_y = np.empty(n_slots)
    acc = np.empty((3, len(OUT_FIELDS)))
    lo_b = np.empty((3, n_bands))
    hi_b = np.empty((3, n_bands))
    cap_t = np.empty(3)
    thr_t = np.empty(3)
    rho_s = np.sqrt(1.0 - rho * rho)
    beta_s = np.sqrt(1.0 - beta * beta)
    sig_s = np.sqrt(1.0 - sig_r * sig_r)
    guide = cdf_guide(init_cdf)
    active = 0
    for i in range(n_slots):
        keys[i] = key(seed, s_draw, np.uint64(i))
    for i in range(init_pop.shape[0]):
        p = init_pop[i]
        if p >= FIRST_YEAR:  # aligned during the first year, population preset (counts follow the mix)
            state[i] = FIRST_YEAR_ENTRANT
            pop[i] = p - FIRST_YEAR
        else:
            state[i] = CONTINUING
            pop[i] = p
            z[i] = inverse_cdf(init_nodes, init_cdf, guide, p, uniforms(word(keys[i], _S_LATENT))[0])  # base-year
        active += 1

    for t in range(n_years):
        need = target[t] - active
        base = np.uint64(t + 1) * _NS
        # this year's thresholds (the same products the rules use, computed once)
        for q in range(3):
            sc = sl_scale[t, q]
            cap_t[q] = trunc_cap[q] * sc
            thr_t[q] = outlier_thr * sc
            for b in range(n_bands):
                lo_b[q, b] = attach[b] * sc
                hi_b[q, b] = attach[b + 1] * sc if b + 1 < n_bands else np.inf
            for f in range(len(OUT_FIELDS)):
                acc[q, f] = out[t, q, f]
        # the year's Box-Muller radii and angles first, in a loop of their own: the libm calls then do not
        # force the slot loop below to spill its many live values around every call (same operations, same bits)
        for i in range(n_slots):
            if state[i] == VACANT and need > 0:  # entrants fill vacant slots, lowest index first
                state[i] = ENTRANT
                need -= 1
            if state[i] != VACANT:
                u1, u2 = uniforms(word(keys[i], base + _S_LATENT))
                ang = _TWO_PI * u2
                ang_y[i] = ang
                r_y[i] = np.sqrt(-2.0 * np.log(u1))
                cos_y[i] = np.cos(ang)
        active = 0
        for i in range(n_slots):
            st = state[i]
            if st == VACANT:
                continue
            k = keys[i]
            r = r_y[i]
            ang = ang_y[i]
            cos_a = cos_y[i]
            e1 = r * cos_a
            u_exit, u_pop = uniforms(word(k, base + _S_EVENTS))
            died = False
            if st >= ENTRANT:
                if st == FIRST_YEAR_ENTRANT:
                    p = pop[i]
                elif u_pop < mix_cum[0]:
                    p = _AD
                elif u_pop < mix_cum[1]:
                    p = _ESRD
                else:
                    p = _HN
                pu = np.uint64(p)  # unsigned index (no wraparound code)
                zn = e1
                score = entrant_score[pu]
                mm = HALF_YEAR
                factor = ENTRANT_EXPOSURE
            else:
                p = pop[i]
                if p == _AD:
                    if u_pop < esrd_rate:
                        p = _ESRD
                    elif u_pop < esrd_rate + hn_rate:
                        p = _HN
                pu = np.uint64(p)
                zp = z[i]
                zn = rho[pu] * zp + rho_s[pu] * e1
                score = interp(prostab, pu, zp)
                if dies(k, base + _S_LATENT, r, ang, cos_a, beta[pu] * zn, beta_s[pu], death_c[pu]):
                    died = True
                    mm = HALF_YEAR
                    factor = death_mult[pu]
                else:
                    mm = FULL_YEAR
                    factor = 1.0
            if concurrent[pu]:
                nu = normals(word(k, base + _S_SIGNAL))[0]
                score = interp(conctab, pu, sig_r[pu] * zn + sig_s[pu] * nu)
            if zn <= z0[pu]:
                x = 0.0
            else:
                x = mean[t, pu] * factor * interp(qtab, pu, zn)
            relief = 0.0  # outlier relief: stop-loss bands, or truncation at the cap
            if relief_mode == RELIEF_STOP_LOSS:
                for b in range(n_bands):
                    lo = lo_b[pu, b]
                    if x <= lo:
                        break
                    relief += sl_share[b] * (min(x, hi_b[pu, b]) - lo)
            elif relief_mode == RELIEF_TRUNCATION and x > cap_t[pu]:
                relief = x - cap_t[pu]
            if x > thr_t[pu]:
                acc[pu, _OUTLIERS] += 1.0
            acc[pu, _MM] += mm
            acc[pu, _SPEND] += x
            acc[pu, _PAYOUT] += relief
            acc[pu, _RISKW] += mm * score
            if st >= ENTRANT:
                acc[pu, _ENTRANTS] += 1.0
            if record:
                rec_pop[i, t] = p
                rec_mm[i, t] = mm
                rec_spend[i, t] = x
                rec_died[i, t] = died
            z[i] = zn
            pop[i] = p
            if died:
                acc[pu, _DEATHS] += 1.0
                state[i] = VACANT
            elif u_exit <= exit_rate[pu]:
                state[i] = VACANT
            else:
                state[i] = CONTINUING
                active += 1
        for q in range(3):
            for f in range(len(OUT_FIELDS)):
                out[t, q, f] = acc[q, f]


@nb.njit(cache=True, parallel=True)
def cohort_chunk(kp, draws, mean, sl_scale, out):
    """Simulate the draws of one chunk in parallel; ``out[d, year, population, field]`` (zeroed by caller).

    Each draw is computed by one thread from its own keyed streams and written to its own row, so
    results do not depend on the thread count or on how draws are grouped into chunks.
    """
    empty_i8 = np.zeros((0, 0), dtype=np.int8)
    empty_f8 = np.zeros((0, 0))
    empty_b = np.zeros((0, 0), dtype=np.bool_)
    for d in nb.prange(draws.shape[0]):
        simulate_draw(kp, draws[d], mean[d], sl_scale[d], out[d], False, empty_i8, empty_f8, empty_f8, empty_b)


@nb.njit(cache=True, parallel=True)
def floor_chunk(seed, draws, n_slots, n_years, sigma, out):
    """The speed floor: one keyed lognormal per beneficiary-year, summed per draw (benchmarks only)."""
    for d in nb.prange(draws.shape[0]):
        s_draw = np.uint64(draws[d])
        acc = 0.0
        for i in range(n_slots):
            k = key(seed, s_draw, np.uint64(i))
            for t in range(n_years):
                acc += np.exp(sigma * normals(word(k, np.uint64(t + 1) * _NS))[0])
        out[d] = acc
