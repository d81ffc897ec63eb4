"""Orchestration: config -> kernel inputs -> chunks of draws -> ledger -> arrays for the dataset.

Draws are processed in chunks of ``simulation.chunk_draws`` to bound memory; the chunk size, thread count
and worker count never change a result because every draw's numbers are keyed by its index.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
from scipy import special

from leadsim.config import POPULATIONS, Config, per_year
from leadsim.ledger.benchmark import benchmark_pbpm
from leadsim.ledger.settlement import price_stop_loss, settle
from leadsim.model import _kernel
from leadsim.model.cache import memoize
from leadsim.model.drivers import MacroPaths, macro_paths, prospective_growth
from leadsim.model.marginals import SplicedMarginal, conditional_mean_table
from leadsim.model.stationary import Stationary, stationary_cohort

__all__ = ["ChunkResult", "CohortModel", "cohort_model", "run_chunk", "run_draws"]


@dataclass(frozen=True)
class CohortModel:
    """Everything the cohort kernel needs that does not depend on the draw (arrays and plain scalars)."""

    seed: np.uint64
    target: np.ndarray          # aligned count at the start of each year (int64)
    init_pop: np.ndarray        # population code of each initial slot (int8; 3-5: first-year entrants)
    qtab: np.ndarray            # (3, G) Q_p on the latent grid
    prostab: np.ndarray         # (3, G) prospective score table
    conctab: np.ndarray         # (3, G) concurrent score table
    z0: np.ndarray              # (3,) zero-spending latent threshold
    rho: np.ndarray
    death_c: np.ndarray         # Phi^{-1}(1 - q), inf when q = 0
    beta: np.ndarray
    death_mult: np.ndarray
    exit_rate: np.ndarray
    sig_r: np.ndarray           # sqrt(R^2) of the concurrent risk model
    concurrent: np.ndarray      # (3,) bool: High Needs uses concurrent scores
    entrant_score: np.ndarray   # (3,) prospective score of an entrant (1 / stationary score mean)
    init_mean: np.ndarray       # (3,) stationary latent mean of the initial cohort (summary)
    init_sd: np.ndarray         # (3,) stationary latent sd of the initial cohort (summary)
    init_nodes: np.ndarray      # (G + 1,) bin edges of the initial cohort's latent law
    init_cdf: np.ndarray        # (3, G + 1) its cdf: the base-year latent is drawn by inversion
    entrant_share: np.ndarray   # (3,) stationary entrants' share of a year's beneficiaries
    latent_grid: np.ndarray     # (G,) grid of the stationary in-year latent law (pricing only)
    latent_law: np.ndarray      # (3, G) stationary in-year latent law of continuing members (pricing only)
    hn_rate: float
    esrd_rate: float
    mix_cum: np.ndarray         # (2,) cumulative entrant mix: A&D, A&D + ESRD
    base_mean: np.ndarray       # (3,) mean annual cost per unit Q, base year (mean / kappa)
    care_management: np.ndarray  # (years,)
    attach: np.ndarray
    sl_share: np.ndarray
    sl_mode: int                # 0 none, 1 stop-loss bands, 2 truncation
    trunc_cap: float
    outlier_thr: float

    @property
    def n_slots(self) -> int:
        return int(max(self.target.max(initial=0), self.init_pop.shape[0]))


def initial_populations(cfg: Config, entrant_share: np.ndarray | None = None) -> np.ndarray:
    """Population code of each initial slot: deterministic counts from the mix.

    Codes 0-2 (A&D, ESRD, High Needs) are beneficiaries continuing from the base year; codes 3-5 are the
    same populations aligned during the first performance year. A share ``entrant_share[p]`` of each
    population (the stationary cohort's, :mod:`leadsim.model.stationary`) enters during the first year, as in
    every later year, so PY2027 is a stationary year like the others and not a year without churn.
    """
    n = cfg.aco.beneficiaries
    n_esrd = round(n * cfg.aco.mix.esrd)
    n_hn = min(round(n * cfg.aco.mix.high_needs), n - n_esrd)
    counts = [n - n_esrd - n_hn, n_esrd, n_hn]
    share = np.zeros(3) if entrant_share is None else np.asarray(entrant_share)
    parts = []
    for p, c in enumerate(counts):
        n_ent = min(c, max(0, round(c * float(share[p]))))
        parts += [np.full(c - n_ent, p, np.int8), np.full(n_ent, p + 3, np.int8)]
    return np.concatenate(parts)


@memoize(("leadsim.model.marginals", "leadsim.model.stationary"), (np.ndarray, np.ndarray, np.ndarray, Stationary))
def _tables(marginals, concurrent, rho, mort, beta, death_mult, exit_rate, sig_r, mix, hn_rate, esrd_rate):
    """The lookup tables (Q, raw prospective and concurrent scores) and the stationary cohort (cached)."""
    qtab = np.stack([SplicedMarginal(*m).table() for m in marginals])
    prostab = np.stack([conditional_mean_table(qtab[j], rho[j]) for j in range(3)])
    conctab = np.stack([conditional_mean_table(qtab[j], sig_r[j]) for j in range(3)])
    st = stationary_cohort(qtab, prostab, conctab, concurrent, rho, mort, beta, death_mult, exit_rate,
                           sig_r, mix, hn_rate, esrd_rate)
    return qtab, prostab, conctab, st


def cohort_model(cfg: Config) -> CohortModel:
    """Build the draw-independent kernel inputs (tables are computed once per run)."""
    pops = cfg.population.ordered()
    marg = [SplicedMarginal(p.zero_share, p.sigma, p.tail_start, p.tail_alpha) for p in pops]
    rho = np.array([p.rho for p in pops])
    sig_r = np.sqrt(np.array([p.risk_model_r2 for p in pops]))
    mort = np.array([p.mortality for p in pops])
    with np.errstate(divide="ignore"):
        death_c = np.where(mort > 0, special.ndtri(1.0 - mort), np.inf)
    mix = cfg.aco.mix
    mix_arr = np.array([mix.aged_disabled, mix.esrd, mix.high_needs])
    beta = np.array([p.death_risk_beta for p in pops])
    death_mult = np.array([p.death_multiplier for p in pops])
    exit_rate = np.array([p.exit_rate for p in pops])
    concurrent = np.array([False, False, True])
    ad = cfg.population.aged_disabled
    qtab, prostab, conctab, st = _tables(tuple((m.zero_share, m.sigma, m.tail_start, m.tail_alpha) for m in marg),
                                         concurrent, rho, mort, beta, death_mult, exit_rate, sig_r, mix_arr,
                                         ad.high_needs_rate, ad.esrd_rate)
    prostab = prostab / st.score_norm[:, None]
    conctab = conctab / st.score_norm[:, None]
    n_years = cfg.simulation.years
    growth = (1.0 + cfg.aco.growth) ** np.arange(n_years)
    target = np.round(cfg.aco.beneficiaries * growth).astype(np.int64)
    sl = cfg.policy.stop_loss
    mode = 1 if sl.enabled else (2 if sl.truncation_cap is not None else 0)
    return CohortModel(
        seed=np.uint64(cfg.simulation.seed),
        target=target,
        init_pop=initial_populations(cfg, st.entrant_share),
        qtab=qtab, prostab=prostab, conctab=conctab,
        z0=np.array([m.zero_latent for m in marg]),
        rho=rho, death_c=death_c,
        beta=beta,
        death_mult=death_mult,
        exit_rate=exit_rate,
        sig_r=sig_r,
        concurrent=concurrent,
        entrant_score=1.0 / st.score_norm,
        init_mean=st.init_mean,
        init_sd=st.init_sd,
        init_nodes=st.init_nodes,
        init_cdf=st.init_cdf,
        entrant_share=st.entrant_share,
        latent_grid=st.latent_grid,
        latent_law=st.latent_law,
        hn_rate=ad.high_needs_rate,
        esrd_rate=ad.esrd_rate,
        mix_cum=np.array([mix.aged_disabled, mix.aged_disabled + mix.esrd]),
        base_mean=np.array([p.mean_annual_cost for p in pops]) / st.kappa,
        care_management=np.asarray(per_year(cfg.aco.care_management_effect, n_years)),
        attach=np.asarray(sl.attachments, dtype=float),
        sl_share=np.asarray(sl.shares, dtype=float),
        sl_mode=mode,
        trunc_cap=float(sl.truncation_cap or np.inf),
        outlier_thr=cfg.simulation.outlier_threshold,
    )


def stop_loss_price(cfg: Config, model: CohortModel) -> np.ndarray:
    """Stop-loss charge PBPM (years, 3) at this model's unit means and stationary latent law."""
    return price_stop_loss(cfg, model.base_mean, model.latent_grid, model.latent_law, model.entrant_share)


def realised_means(model: CohortModel, macro: MacroPaths) -> tuple[np.ndarray, np.ndarray]:
    """Mean annual cost per (draw, year, population) and the attachment trend (start-year dollars).

    ``m_{p,t} = mean_p x prod_{s<=t}(1 + aco_growth) x (1 + care_management_t)``; attachments and the
    outlier threshold are trended with the draw's national growth from the first performance year.
    """
    cum_aco = np.cumprod(1.0 + macro.aco_growth, axis=1)
    mean = model.base_mean[None, None, :] * cum_aco * (1.0 + model.care_management)[None, :, None]
    cum_nat = np.cumprod(1.0 + macro.national_growth, axis=1)
    scale = cum_nat / (1.0 + macro.national_growth[:, :1, :])
    return np.ascontiguousarray(mean), np.ascontiguousarray(scale)


def kernel_args(model: CohortModel) -> tuple[Any, ...]:
    """Positional arguments of :func:`leadsim.model._kernel.simulate_draw` after ``(seed, draw)``, up to ``mean``."""
    m = model
    return (m.target, m.init_pop, m.init_nodes, m.init_cdf, m.qtab, m.prostab, m.conctab, m.entrant_score,
            m.z0, m.rho, m.death_c, m.beta, m.death_mult, m.exit_rate, m.sig_r, m.concurrent, m.hn_rate,
            m.esrd_rate, m.mix_cum)


def run_cohort(model: CohortModel, draws: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Run the numba kernel on a set of draws; returns ``out[d, year, population, field]``."""
    out = np.zeros((draws.shape[0], mean.shape[1], 3, len(_kernel.OUT_FIELDS)))
    _kernel.cohort_chunk(model.seed, np.ascontiguousarray(draws, dtype=np.int64), *kernel_args(model), mean,
                        scale, model.attach, model.sl_share, model.sl_mode, model.trunc_cap,
                        model.outlier_thr, out)
    return out


@dataclass
class ChunkResult:
    """All per-draw outputs of one chunk, keyed by dataset variable name."""

    draws: np.ndarray
    arrays: dict[str, np.ndarray]


def run_chunk(cfg: Config, model: CohortModel, draws: np.ndarray, charge_pbpm: np.ndarray | None = None
              ) -> ChunkResult:
    """Simulate and settle one chunk of draws (pure function of the config and the draw indices)."""
    draws = np.asarray(draws, dtype=np.int64)
    macro = macro_paths(cfg, draws)
    mean, scale = realised_means(model, macro)
    out = run_cohort(model, draws, mean, scale)
    f = {name: out[..., i] for i, name in enumerate(_kernel.OUT_FIELDS)}
    mm = f["member_months"]
    # rebasing sees spending on the truncated basis (MSSP); stop-loss payouts are insurance, not a rebase
    truncated = f["expenditure"] - (f["stop_loss_payout"] if model.sl_mode == 2 else 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        risk = np.where(mm > 0, f["risk_weighted_months"] / mm, 1.0)
        spend_pbpm = np.where(mm > 0, truncated / mm, np.nan)
    if charge_pbpm is None:
        charge_pbpm = stop_loss_price(cfg, model)
    # the dataset stores the payout the ACO receives (after the ex-post budget-neutrality factor), so that
    # gross_savings = benchmark - (expenditure - stop_loss_payout + stop_loss_charge) holds in every run
    neutrality = cfg.policy.stop_loss.neutrality if cfg.policy.stop_loss.enabled else 1.0
    arrays: dict[str, np.ndarray] = {
        "member_months": mm, "expenditure": f["expenditure"], "stop_loss_payout": f["stop_loss_payout"] * neutrality,
        "risk_score": risk, "deaths": f["deaths"].astype(np.int64), "entrants": f["entrants"].astype(np.int64),
        "outliers": f["outliers"].astype(np.int64),
        "national_growth": macro.national_growth, "regional_growth": macro.regional_growth,
        "aco_growth": macro.aco_growth, "quality_score": macro.quality,
    }
    prosp = prospective_growth(cfg)
    per_track: dict[str, list[np.ndarray]] = {}
    for track in cfg.policy.tracks:
        parts = benchmark_pbpm(cfg, track, macro.national_growth, macro.regional_growth, prosp, risk,
                               macro.quality, spending_pbpm=spend_pbpm)
        s = settle(cfg, track, parts.final, mm, f["expenditure"], f["stop_loss_payout"], charge_pbpm,
                   macro.quality)
        mmsum = mm[:, :, :]
        items = {
            "benchmark_pbpm": parts.final,
            "blended_update": parts.blended_update,
            "benchmark": s.benchmark,
            "benchmark_discount": np.einsum("dyp,dyp->dy", parts.before_discount - parts.after_discount, mmsum),
            "withhold_retained": np.einsum("dyp,dyp->dy", parts.after_discount - parts.final, mmsum),
            "stop_loss_charge": s.stop_loss_charge,
            "gross_savings": s.gross_savings,
            "savings_rate": s.savings_rate,
            "shared_savings": s.shared_savings,
            "sequestration": s.sequestration,
            "add_on_payments": s.add_on_payments,
            "operating_cost": s.operating_cost,
            "net_settlement": s.net_settlement,
            "cumulative_settlement": s.cumulative_settlement,
        }
        for k, v in items.items():
            per_track.setdefault(k, []).append(v)
    for k, vs in per_track.items():
        arrays[k] = np.stack(vs, axis=-1)  # track is the last axis
    return ChunkResult(draws, arrays)


class ChunkSink:
    """Where finished chunks go, in whatever order they finish: the caller's ``on_chunk``, the full-size
    arrays (rows ``lo:hi``, allocated on first use, when gathering) and the progress bar.

    Used as a context manager by the serial and the dask loops, so both deliver chunks the same way.
    """

    def __init__(self, n_draws: int, total: int, *, progress: bool | None,
                 on_chunk: Callable[[int, int, ChunkResult], None] | None, gather: bool):
        self.n_draws = n_draws
        self.on_chunk = on_chunk
        self.gather = gather
        self.gathered: dict[str, np.ndarray] = {}
        self.bar = _progress(total, progress)

    def __call__(self, lo: int, hi: int, res: ChunkResult) -> None:
        if self.on_chunk is not None:
            self.on_chunk(lo, hi, res)
        if self.gather:
            for k, v in res.arrays.items():
                if k not in self.gathered:
                    self.gathered[k] = np.empty((self.n_draws, *v.shape[1:]), dtype=v.dtype)
                self.gathered[k][lo:hi] = v
        if self.bar is not None:
            self.bar.update(hi - lo)

    def close(self) -> None:
        """Close the progress bar."""
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> ChunkSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def chunk_bounds(n_draws: int, chunk: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each chunk of draws."""
    return [(lo, min(lo + chunk, n_draws)) for lo in range(0, n_draws, chunk)]


def _progress(total: int, enabled: bool | None) -> Any:
    if enabled is None:
        enabled = sys.stderr.isatty() and not os.environ.get("CI")
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="draw", desc="leadsim", leave=False)


def run_draws(cfg: Config, chunks: Iterable[tuple[int, int]] | None = None, *,
              progress: bool | None = None,
              on_chunk: Callable[[int, int, ChunkResult], None] | None = None,
              gather: bool = True) -> dict[str, np.ndarray]:
    """Run every chunk in this process and gather the arrays (draw is the first axis).

    Parameters
    ----------
    chunks : iterable of (start, stop), optional
        Defaults to all draws in chunks of ``simulation.chunk_draws``.
    progress : bool, optional
        Show a tqdm bar; default on a terminal and off under ``CI``.
    on_chunk : callable, optional
        Called as ``on_chunk(start, stop, result)`` after each chunk (e.g. to write it to a store).
    gather : bool
        Keep every chunk's arrays and return them (default). With ``False`` nothing is kept (memory stays
        flat as draws grow; use ``on_chunk`` to stream results) and an empty dict is returned.
    """
    n = cfg.simulation.draws
    if cfg.simulation.threads is not None:
        numba.set_num_threads(min(cfg.simulation.threads, numba.config.NUMBA_NUM_THREADS))
    model = cohort_model(cfg)
    charge = stop_loss_price(cfg, model)
    bounds = list(chunks) if chunks is not None else chunk_bounds(n, cfg.simulation.chunk_draws)
    with ChunkSink(n, sum(b - a for a, b in bounds), progress=progress, on_chunk=on_chunk, gather=gather) as sink:
        for lo, hi in bounds:
            sink(lo, hi, run_chunk(cfg, model, np.arange(lo, hi), charge))
    return sink.gathered


POPULATION_INDEX = {p: i for i, p in enumerate(POPULATIONS)}
