"""The run loop: config -> cost model -> per chunk of draws (drivers, kernel, ledger) -> a sink.

Draws are processed in chunks of ``simulation.chunk_draws`` to bound memory; the chunk size, thread count
and worker count never change a result because every draw's numbers are keyed by its index. The engine
knows the cost model (:mod:`leadsim.model`) and the ledger (:mod:`leadsim.ledger`); where results go is the
caller's :class:`~leadsim.io.sink.Sink` (memory, netCDF, Zarr), driven the same way by the serial loop here
and by the dask loop in :mod:`leadsim.distributed`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from leadsim.config import Config, chunk_bounds
from leadsim.io.sink import RunHeader
from leadsim.ledger.benchmark import benchmark_pbpm
from leadsim.ledger.settlement import financial_guarantee_by_year, settle
from leadsim.model._kernel import OUT_FIELDS, RELIEF_TRUNCATION
from leadsim.model.cohort import CohortModel, cohort_model, realised_means, run_cohort, stop_loss_price
from leadsim.model.drivers import MacroPaths, keyed_shocks, macro_paths, prospective_growth
from leadsim.model.outliers import expected_truncation
from leadsim.model.parameter_sets import parameter_set_configs, parameter_set_index
from leadsim.model.rng import RNG_SCHEME
from leadsim.model.sampling import PILOT_DRAW_OFFSET, Sample, sample_shocks, tilt_from_pilot, to_normals

if TYPE_CHECKING:  # pragma: no cover
    from leadsim.io.sink import Sink

__all__ = ["ChunkCosts", "ChunkResult", "RunInputs", "chunk_costs", "concat_costs", "costs_of", "drive", "prepare",
           "progress_bar", "run_chunk", "run_draws", "settle_chunk", "show_progress", "stop_loss_charge_pbpm",
           "threads", "tilt_vector"]


@dataclass(frozen=True)
class RunInputs:
    """Everything a chunk needs that does not depend on the draw, built once per run by :func:`prepare`."""

    model: CohortModel
    charge_pbpm: np.ndarray      # (years, 3) stop-loss charge PBPM at expected trend (the ex-ante basis)
    base_truncation: np.ndarray  # (3,) expected base-year spending removed by truncation, PBPM
    tilt: np.ndarray | None = None  # (D,) the pilot's tilt: tilted's mean shift, qmc_rotate's direction
    # simulation.parameter_draws: the config and inputs of each [[parameter_sets]] entry (empty: off)
    parameter_sets: tuple[tuple[Config, RunInputs], ...] = ()


def prepare(cfg: Config, tilt: np.ndarray | None = None) -> RunInputs:
    """Build the cost model and the prices the ledger needs (once per run; tables are cached).

    ``tilt`` (tilted or rotated-QMC sampling only) replaces the config's own pilot tilt (:func:`tilt_vector`):
    ``leadsim decide`` passes one tilt to every policy variant so that all of them see the same draws.
    With ``simulation.parameter_draws`` also those of every parameter set (each set's tables are built once
    per run here, and kept in the table cache across runs), see :mod:`leadsim.model.parameter_sets`; the sets
    share the base config's systematic variates (and tilt), so they need no pilot of their own.
    """
    inputs = _untilted_inputs(cfg)
    if _needs_pilot(cfg):
        vec = tilt_vector(cfg, inputs) if tilt is None else np.asarray(tilt, dtype=float).copy()
        inputs = dataclasses.replace(inputs, tilt=vec)
    if cfg.simulation.parameter_draws:
        inputs = dataclasses.replace(inputs, parameter_sets=tuple((c, _untilted_inputs(c))
                                                                  for c in parameter_set_configs(cfg)))
    return inputs


def _needs_pilot(cfg: Config) -> bool:
    s = cfg.simulation
    return s.sampling == "tilted" or (s.sampling == "qmc" and s.qmc_rotate)


def _untilted_inputs(cfg: Config) -> RunInputs:
    model = cohort_model(cfg)
    return RunInputs(model, stop_loss_price(cfg, model), expected_truncation(cfg))


def _by_parameter_set(cfg: Config, inputs: RunInputs, draws: np.ndarray, run: Callable[..., Any]) -> list[Any]:
    """``run(set_cfg, set_inputs, positions)`` for each parameter set the chunk's draws use, in set order.

    A draw's result depends on its index and its set only, so grouping a chunk's draws by set changes nothing
    but the order of work; the caller puts each group's rows back at ``positions``.
    """
    idx = parameter_set_index(cfg, draws)
    return [(pos, run(*inputs.parameter_sets[k], pos))
            for k in np.unique(idx) for pos in [np.flatnonzero(idx == k)]]


def _rows(obj: Any, pos: np.ndarray, n: int) -> Any:
    """The rows ``pos`` of every per-draw array (first axis ``n``) of a dataclass, dict or array."""
    if dataclasses.is_dataclass(obj):
        return dataclasses.replace(obj, **{f.name: _rows(getattr(obj, f.name), pos, n)
                                           for f in dataclasses.fields(obj) if f.init})
    if isinstance(obj, dict):
        return {k: _rows(v, pos, n) for k, v in obj.items()}
    if isinstance(obj, np.ndarray) and obj.ndim and obj.shape[0] == n:
        return obj[pos]
    return obj


def _contiguous_fields(costs: ChunkCosts) -> ChunkCosts:
    """``costs`` with the kernel's fields laid out as :func:`chunk_costs` lays them out (views of one
    ``(draws, years, 3, fields)`` array): numpy's sums over strided and contiguous operands round differently,
    and a draw must settle to the same bits however its costs were assembled."""
    out = np.stack([costs.fields[name] for name in OUT_FIELDS], axis=-1)
    f = {name: out[..., i] for i, name in enumerate(OUT_FIELDS)}
    return dataclasses.replace(costs, fields=f, member_months=f["member_months"])


def _set_costs(costs: ChunkCosts, pos: np.ndarray, n: int) -> ChunkCosts:
    """The rows ``pos`` of a chunk's costs, in the kernel's memory layout."""
    return _contiguous_fields(_rows(costs, pos, n))


def concat_costs(parts: Sequence[ChunkCosts]) -> ChunkCosts:
    """Consecutive chunks' costs as one, in the kernel's memory layout (settles to the same bits as each part)."""
    if len(parts) == 1:
        return parts[0]
    ends = np.cumsum([p.draws.size for p in parts])
    placed = [(np.arange(end - p.draws.size, end), p) for p, end in zip(parts, ends, strict=True)]
    return _contiguous_fields(_gather(placed, int(ends[-1])))


def _gather(parts: list[tuple[np.ndarray, Any]], n: int) -> Any:
    """Inverse of :func:`_rows`: one object whose per-draw arrays hold each part's rows at its positions."""
    first = parts[0][1]
    if dataclasses.is_dataclass(first):
        return dataclasses.replace(first, **{f.name: _gather([(p, getattr(o, f.name)) for p, o in parts], n)
                                             for f in dataclasses.fields(first) if f.init})
    if isinstance(first, dict):
        return {k: _gather([(p, o[k]) for p, o in parts], n) for k in first}
    if isinstance(first, np.ndarray) and first.ndim and first.shape[0] == parts[0][0].size:
        out = np.empty((n, *first.shape[1:]), dtype=first.dtype)
        for p, o in parts:
            out[p] = o
        return out
    return first


_TILTS: dict[str, np.ndarray] = {}


def tilt_vector(cfg: Config, inputs: RunInputs | None = None) -> np.ndarray:
    """The tilt of a ``sampling = "tilted"`` run (or the direction of ``qmc_rotate``), chosen by a plain pilot
    run (computed once per config).

    Notes
    -----
    ``simulation.pilot_draws`` plain draws at indices ``2^62 + i`` (keyed streams no run uses) are settled;
    the loss (minus the ten-year settlement of ``simulation.tilt_track``, default the first track of
    ``policy.tracks``) is regressed on their
    systematic normals and :func:`leadsim.model.sampling.tilt_from_pilot` aims the shift at
    ``simulation.tilt_level``. The pilot depends only on the config, so every process and worker computes
    the same vector (rounded to 1e-6). ``simulation.tilt_shift``, when set, is used as it is (no pilot).
    """
    if cfg.simulation.tilt_shift is not None:  # pinned (e.g. to compare policies on common random numbers)
        return np.asarray(cfg.simulation.tilt_shift, dtype=float)
    key = cfg.to_toml()
    if key not in _TILTS:
        inputs = inputs or _untilted_inputs(cfg)
        draws = PILOT_DRAW_OFFSET + np.arange(cfg.simulation.pilot_draws, dtype=np.int64)
        zs, losses = [], []
        track = cfg.policy.tracks.index(cfg.simulation.tilt_track) if cfg.simulation.tilt_track else 0
        for lo, hi in chunk_bounds(draws.size, cfg.simulation.chunk_draws):
            d = draws[lo:hi]
            sample = Sample(keyed_shocks(cfg, d), np.ones(d.size))
            res = settle_chunk(cfg, inputs, chunk_costs(cfg, inputs, d, sample=sample))
            zs.append(to_normals(sample.shocks))
            losses.append(-res.arrays["cumulative_settlement"][:, track])
        if len(_TILTS) >= 64:  # a bounded memo: long sessions try many configs
            _TILTS.clear()
        _TILTS[key] = tilt_from_pilot(np.concatenate(zs), np.concatenate(losses), cfg.simulation.tilt_level)
    return _TILTS[key].copy()


def run_header(cfg: Config) -> RunHeader:
    """The run-level variables and model attributes a sink stores before the first chunk."""
    fg = financial_guarantee_by_year(cfg)
    attrs: dict[str, Any] = {"rng_scheme": RNG_SCHEME}
    s = cfg.simulation
    if s.sampling == "qmc":
        attrs.update(sampling="qmc", qmc_replicates=s.qmc_replicates)
        if s.qmc_rotate:
            attrs.update(qmc_direction=tilt_vector(cfg))
    elif s.sampling == "tilted":
        attrs.update(sampling="tilted", tilt_shift=tilt_vector(cfg))
    return RunHeader(constants={"financial_guarantee": np.float64(fg[0]), "financial_guarantee_by_year": fg},
                     attrs=attrs)


@dataclass
class ChunkResult:
    """All per-draw outputs of one chunk, keyed by dataset variable name (draw is the first axis)."""

    draws: np.ndarray
    arrays: dict[str, np.ndarray]


@dataclass(frozen=True)
class ChunkCosts:
    """What the cost model produced for one chunk of draws: everything the ledger settles against.

    The settlement of any policy that does not change spending can be computed from one ``ChunkCosts``
    (keyed draws make this exact): :func:`settle_chunk` is that second half of :func:`run_chunk`.

    Attributes
    ----------
    draws : ndarray (draws,)
    macro : MacroPaths
        The systematic drivers of each draw.
    fields : dict of ndarray (draws, years, 3)
        The kernel's outputs by name (``OUT_FIELDS``); ``stop_loss_payout`` before the neutrality factor.
    member_months, risk_score, spending_pbpm : ndarray (draws, years, 3)
        Member-months, the member-month-weighted risk score (1 where there are no months), and spending per
        member-month on the basis rebasing sees (truncated under MSSP; NaN where there are no months).
    """

    draws: np.ndarray
    macro: MacroPaths
    fields: dict[str, np.ndarray]
    member_months: np.ndarray
    risk_score: np.ndarray
    spending_pbpm: np.ndarray
    weight: np.ndarray | None = None     # (draws,) likelihood-ratio weight (None: plain, all 1)
    replicate: np.ndarray | None = None  # (draws,) QMC randomization replicate (qmc only)


def chunk_costs(cfg: Config, inputs: RunInputs, draws: np.ndarray, spending_factor: float = 1.0,
                sample: Sample | None = None) -> ChunkCosts:
    """Draw the macro paths and run the cohort kernel for one chunk (the part of a run that costs time).

    The systematic variates follow ``simulation.sampling`` (:mod:`leadsim.model.sampling`) unless ``sample``
    gives them; the beneficiary-level streams are the keyed ones in every mode. ``spending_factor`` multiplies
    every beneficiary's mean cost (``1 + delta``: a constant proportional change of spending on top of the
    configured care-management effect, as :mod:`leadsim.decide` needs for the break-even effect where outlier
    relief makes the ledger nonlinear in spending); 1 is a plain run.
    """
    model = inputs.model
    if inputs.parameter_sets:  # parameter draws: each draw's costs from its set's model (same systematic shocks)
        d = np.asarray(draws, dtype=np.int64)
        if sample is None and cfg.simulation.sampling != "plain":
            sample = sample_shocks(cfg, d, inputs.tilt)
        return _gather(_by_parameter_set(cfg, inputs, d, lambda c, i, pos: chunk_costs(
            c, i, d[pos], spending_factor, None if sample is None else _rows(sample, pos, d.size))), d.size)
    draws = np.asarray(draws, dtype=np.int64)
    if sample is None and cfg.simulation.sampling != "plain":
        sample = sample_shocks(cfg, draws, inputs.tilt)
    macro = macro_paths(cfg, draws, None if sample is None else sample.shocks)
    mean, scale = realised_means(model, macro)
    if spending_factor != 1.0:
        mean = mean * spending_factor
    costs = costs_of(model, draws, macro, run_cohort(model, draws, mean, scale))
    return costs if sample is None else dataclasses.replace(costs, weight=sample.weight, replicate=sample.replicate)


def costs_of(model: CohortModel, draws: np.ndarray, macro: MacroPaths, out: np.ndarray) -> ChunkCosts:
    """The :class:`ChunkCosts` of kernel output ``out[d, year, population, field]`` and its macro paths."""
    f = {name: out[..., i] for i, name in enumerate(OUT_FIELDS)}
    mm = f["member_months"]
    # rebasing sees spending on the truncated basis (MSSP); stop-loss payouts are insurance, not a rebase
    truncated = f["expenditure"] - (f["stop_loss_payout"] if model.relief_mode == RELIEF_TRUNCATION else 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        risk = np.where(mm > 0, f["risk_weighted_months"] / mm, 1.0)
        spend_pbpm = np.where(mm > 0, truncated / mm, np.nan)
    return ChunkCosts(draws, macro, f, mm, risk, spend_pbpm)


def stop_loss_charge_pbpm(cfg: Config, inputs: RunInputs, macro: MacroPaths) -> np.ndarray:
    """The stop-loss charge PBPM a chunk is settled with: at each draw's realised national trend, or ex ante."""
    sl = cfg.policy.stop_loss
    return (stop_loss_price(cfg, inputs.model, macro.national_growth) if sl.enabled and sl.basis == "realised"
            else inputs.charge_pbpm)


def settle_chunk(cfg: Config, inputs: RunInputs, costs: ChunkCosts,
                 charge_pbpm: np.ndarray | None = None) -> ChunkResult:
    """Settle every track of ``cfg`` against one chunk's costs and collect the dataset variables.

    ``charge_pbpm`` is :func:`stop_loss_charge_pbpm` of these draws when the caller settles them many times
    (it does not depend on the ACO's spending); by default it is computed here.
    """
    f, mm, macro = costs.fields, costs.member_months, costs.macro
    if inputs.parameter_sets:
        # parameter draws: each draw settled under its set's config and prices (its benchmark starts from the
        # set's mean cost, as a run of that set would); the dataset records the set of each draw
        n = costs.draws.size
        res = _gather(_by_parameter_set(cfg, inputs, costs.draws,
                                        lambda c, i, pos: settle_chunk(c, i, _set_costs(costs, pos, n))), n)
        res.arrays["parameter_set"] = parameter_set_index(cfg, costs.draws)
        return res
    # the dataset stores the payout the ACO receives (after the ex-post budget-neutrality factor), so that
    # gross_savings = benchmark - (expenditure - stop_loss_payout + stop_loss_charge) holds in every run
    neutrality = cfg.policy.stop_loss.neutrality if cfg.policy.stop_loss.enabled else 1.0
    arrays: dict[str, np.ndarray] = {
        "member_months": mm, "expenditure": f["expenditure"], "stop_loss_payout": f["stop_loss_payout"] * neutrality,
        "risk_score": costs.risk_score, "deaths": f["deaths"].astype(np.int64),
        "entrants": f["entrants"].astype(np.int64), "outliers": f["outliers"].astype(np.int64),
        "national_growth": macro.national_growth, "regional_growth": macro.regional_growth,
        "aco_growth": macro.aco_growth, "quality_score": macro.quality,
        "weight": np.ones(len(costs.draws)) if costs.weight is None else costs.weight,
    }
    if costs.replicate is not None:
        arrays["replicate"] = costs.replicate.astype(np.int64)
    if charge_pbpm is None:
        charge_pbpm = stop_loss_charge_pbpm(cfg, inputs, macro)
    prosp = prospective_growth(cfg)
    per_track: dict[str, list[np.ndarray]] = {}
    for track in cfg.policy.tracks:
        parts = benchmark_pbpm(cfg, track, macro.national_growth, macro.regional_growth, prosp, costs.risk_score,
                               macro.quality, spending_pbpm=costs.spending_pbpm,
                               base_truncation=inputs.base_truncation)
        s = settle(cfg, track, parts.final, mm, f["expenditure"], f["stop_loss_payout"], charge_pbpm,
                   macro.quality)
        items = {
            "benchmark_pbpm": parts.final,
            "blended_update": parts.blended_update,
            "benchmark": s.benchmark,
            "benchmark_discount": np.einsum("dyp,dyp->dy", parts.before_discount - parts.after_discount, mm),
            "withhold_retained": np.einsum("dyp,dyp->dy", parts.after_discount - parts.final, mm),
            "stop_loss_charge": s.stop_loss_charge,
            "gross_savings": s.gross_savings,
            "savings_rate": s.savings_rate,
            "shared_savings": s.shared_savings,
            "sequestration": s.sequestration,
            "add_on_payments": s.add_on_payments,
            "operating_cost": s.operating_cost,
            "net_settlement": s.net_settlement,
            "cumulative_settlement": s.cumulative_settlement,
            "pcc_advance": s.pcc_advance,
            "cash_settlement": s.cash_settlement,
        }
        for k, v in items.items():
            per_track.setdefault(k, []).append(v)
    for k, vs in per_track.items():
        arrays[k] = np.stack(vs, axis=-1)  # track is the last axis
    return ChunkResult(costs.draws, arrays)


def run_chunk(cfg: Config, inputs: RunInputs, draws: np.ndarray) -> ChunkResult:
    """Simulate and settle one chunk of draws (a pure function of the config and the draw indices)."""
    return settle_chunk(cfg, inputs, chunk_costs(cfg, inputs, draws))


def show_progress(enabled: bool | None) -> bool:
    """Whether to show a progress bar: as asked, or by default on a terminal and never under ``CI``."""
    return bool(sys.stderr.isatty() and not os.environ.get("CI")) if enabled is None else bool(enabled)


def progress_bar(total: int, enabled: bool | None, desc: str = "leadsim") -> Any:
    """A tqdm bar over ``total`` draws, or None when :func:`show_progress` says no (or there is nothing to do)."""
    if not show_progress(enabled) or total <= 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="draw", desc=desc, leave=False)


class _Delivery:
    """Hands finished chunks to the sink and advances the progress bar (the serial and dask loops share it)."""

    def __init__(self, sink: Sink, todo: Sequence[tuple[int, int]], progress: bool | None):
        self.sink = sink
        self.bar = progress_bar(sum(b - a for a, b in todo), progress)

    def __call__(self, lo: int, hi: int, res: ChunkResult) -> None:
        self.sink.save_chunk(lo, hi, res.arrays)
        if self.bar is not None:
            self.bar.update(hi - lo)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextlib.contextmanager
def drive(cfg: Config, sink: Sink, chunks: Sequence[tuple[int, int]] | None,
          progress: bool | None) -> Iterator[tuple[list[tuple[int, int]], _Delivery]]:
    """Open ``sink``, yield the chunks it still needs and a delivery callback; close or abort it at the end."""
    bounds = list(chunks) if chunks is not None else chunk_bounds(cfg.simulation.draws, cfg.simulation.chunk_draws)
    todo = sink.open(cfg, run_header(cfg), bounds)
    delivery = _Delivery(sink, todo, progress)
    try:
        yield todo, delivery
    except BaseException:
        delivery.close()
        sink.abort()
        raise
    delivery.close()
    sink.close()


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[None]:
    """Run numba's parallel kernels with ``n`` threads inside the block, then restore the previous count."""
    if n is None:
        yield
        return
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(before)


def run_draws(cfg: Config, sink: Sink, chunks: Sequence[tuple[int, int]] | None = None, *,
              progress: bool | None = None) -> Sink:
    """Run the chunks of a config in this process and deliver each to ``sink``.

    Parameters
    ----------
    cfg : Config
        A validated config.
    sink : Sink
        Where finished chunks go (:class:`~leadsim.io.sink.MemorySink`, ``NetCDFSink``, ``ZarrSink``).
    chunks : sequence of (start, stop), optional
        Defaults to all draws in chunks of ``simulation.chunk_draws``; the sink may drop chunks it already
        has (a resumed Zarr run).
    progress : bool, optional
        Show a tqdm bar; default on a terminal and off under ``CI``.

    Returns
    -------
    Sink
        The same sink, closed.
    """
    with threads(cfg.simulation.threads), drive(cfg, sink, chunks, progress) as (todo, deliver):
        if todo:
            inputs = prepare(cfg)
            for lo, hi in todo:
                deliver(lo, hi, run_chunk(cfg, inputs, np.arange(lo, hi)))
    return sink
