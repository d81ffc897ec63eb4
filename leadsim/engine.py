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
from leadsim.model.drivers import MacroPaths, macro_paths, prospective_growth
from leadsim.model.outliers import expected_truncation
from leadsim.model.parameter_sets import parameter_set_configs, parameter_set_index
from leadsim.model.rng import RNG_SCHEME

if TYPE_CHECKING:  # pragma: no cover
    from leadsim.io.sink import Sink

__all__ = ["ChunkCosts", "ChunkResult", "RunInputs", "chunk_costs", "drive", "prepare", "run_chunk", "run_draws",
           "settle_chunk", "threads"]


@dataclass(frozen=True)
class RunInputs:
    """Everything a chunk needs that does not depend on the draw, built once per run by :func:`prepare`."""

    model: CohortModel
    charge_pbpm: np.ndarray      # (years, 3) stop-loss charge PBPM at expected trend (the ex-ante basis)
    base_truncation: np.ndarray  # (3,) expected base-year spending removed by truncation, PBPM
    # simulation.parameter_draws: the config and inputs of each [[parameter_sets]] entry (empty: off)
    parameter_sets: tuple[tuple[Config, RunInputs], ...] = ()


def prepare(cfg: Config) -> RunInputs:
    """Build the cost model and the prices the ledger needs (once per run; tables are cached).

    With ``simulation.parameter_draws`` also those of every parameter set (each set's tables are built once
    per run here, and kept in the table cache across runs), see :mod:`leadsim.model.parameter_sets`.
    """
    model = cohort_model(cfg)
    sets = tuple((c, prepare(c)) for c in parameter_set_configs(cfg)) if cfg.simulation.parameter_draws else ()
    return RunInputs(model, stop_loss_price(cfg, model), expected_truncation(cfg), sets)


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


def _set_costs(costs: ChunkCosts, pos: np.ndarray, n: int) -> ChunkCosts:
    """The rows ``pos`` of a chunk's costs, laid out in memory as :func:`chunk_costs` lays them out (the kernel's
    fields as views of one ``(draws, years, 3, fields)`` array): numpy's sums over strided and contiguous
    operands round differently, and a draw must settle to the same bits as in a run of its set alone."""
    part = _rows(costs, pos, n)
    out = np.stack([part.fields[name] for name in OUT_FIELDS], axis=-1)
    f = {name: out[..., i] for i, name in enumerate(OUT_FIELDS)}
    return dataclasses.replace(part, fields=f, member_months=f["member_months"])


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


def run_header(cfg: Config) -> RunHeader:
    """The run-level variables and model attributes a sink stores before the first chunk."""
    fg = financial_guarantee_by_year(cfg)
    return RunHeader(constants={"financial_guarantee": np.float64(fg[0]), "financial_guarantee_by_year": fg},
                     attrs={"rng_scheme": RNG_SCHEME})


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


def chunk_costs(cfg: Config, inputs: RunInputs, draws: np.ndarray) -> ChunkCosts:
    """Draw the macro paths and run the cohort kernel for one chunk (the part of a run that costs time)."""
    model = inputs.model
    if inputs.parameter_sets:  # parameter draws: each draw's costs from its set's model (same keyed macro paths)
        d = np.asarray(draws, dtype=np.int64)
        return _gather(_by_parameter_set(cfg, inputs, d, lambda c, i, pos: chunk_costs(c, i, d[pos])), d.size)
    draws = np.asarray(draws, dtype=np.int64)
    macro = macro_paths(cfg, draws)
    mean, scale = realised_means(model, macro)
    out = run_cohort(model, draws, mean, scale)
    f = {name: out[..., i] for i, name in enumerate(OUT_FIELDS)}
    mm = f["member_months"]
    # rebasing sees spending on the truncated basis (MSSP); stop-loss payouts are insurance, not a rebase
    truncated = f["expenditure"] - (f["stop_loss_payout"] if model.relief_mode == RELIEF_TRUNCATION else 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        risk = np.where(mm > 0, f["risk_weighted_months"] / mm, 1.0)
        spend_pbpm = np.where(mm > 0, truncated / mm, np.nan)
    return ChunkCosts(draws, macro, f, mm, risk, spend_pbpm)


def settle_chunk(cfg: Config, inputs: RunInputs, costs: ChunkCosts) -> ChunkResult:
    """Settle every track of ``cfg`` against one chunk's costs and collect the dataset variables."""
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
    }
    sl = cfg.policy.stop_loss
    charge_pbpm = (stop_loss_price(cfg, inputs.model, macro.national_growth) if sl.enabled and sl.basis == "realised"
                   else inputs.charge_pbpm)
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


def _progress(total: int, enabled: bool | None) -> Any:
    if enabled is None:
        enabled = sys.stderr.isatty() and not os.environ.get("CI")
    if not enabled or total <= 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="draw", desc="leadsim", leave=False)


class _Delivery:
    """Hands finished chunks to the sink and advances the progress bar (the serial and dask loops share it)."""

    def __init__(self, sink: Sink, todo: Sequence[tuple[int, int]], progress: bool | None):
        self.sink = sink
        self.bar = _progress(sum(b - a for a, b in todo), progress)

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
