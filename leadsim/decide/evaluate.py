"""Settle every option of a decision on the same draws, reusing one kernel pass per cost model.

The expensive part of a run is the cohort kernel (:func:`leadsim.engine.chunk_costs`); settling a policy against
its output is cheap (:func:`leadsim.engine.settle_chunk`). A :class:`CostPool` holds the kernel output of all
draws for one cost model (:func:`leadsim.decide.options.cost_key`) and gives the costs at any constant
proportional change of spending ``delta`` (the break-even effect): spending scales exactly, and the outlier relief
(stop-loss payout or MSSP truncation), which is not linear in spending, is interpolated between kernel passes
run at other ``delta`` (``docs/design.md``, "Decisions").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from leadsim.analysis.risk import Design
from leadsim.config import Config, chunk_bounds, per_year
from leadsim.decide.options import SWITCH_AFTER, Option, Variant
from leadsim.engine import (
    ChunkCosts,
    RunInputs,
    chunk_costs,
    concat_costs,
    prepare,
    settle_chunk,
    stop_loss_charge_pbpm,
)
from leadsim.ledger.settlement import discounted_total
from leadsim.model._kernel import RELIEF_NONE, RELIEF_TRUNCATION
from leadsim.model.cohort import stop_loss_price
from leadsim.model.drivers import MacroPaths

__all__ = ["CostPool", "Evaluator", "Paths", "charge_at", "compose_switch", "interpolate",
           "savings_rate_to", "with_effect"]


def kernel_pass(cfg: Config, inputs: RunInputs, factor: float = 1.0, progress: object | None = None) -> ChunkCosts:
    """The kernel output of every draw of ``cfg`` (chunk by chunk) with mean costs times ``factor``."""
    parts = []
    for lo, hi in chunk_bounds(cfg.simulation.draws, cfg.simulation.chunk_draws):
        parts.append(chunk_costs(cfg, inputs, np.arange(lo, hi), spending_factor=factor))
        if progress is not None:
            progress.update(hi - lo)  # type: ignore[attr-defined]
    return concat_costs(parts)


def interpolate(table: dict[float, np.ndarray], delta: float | np.ndarray) -> np.ndarray:
    """A per-draw quantity known at some spending changes, at ``delta`` (a number, or one per draw).

    Parameters
    ----------
    table : dict of float to ndarray (n, years, 3)
        Values by ``delta``; must hold ``0``.

    Notes
    -----
    With one entry the value is taken proportional to spending (``v_0 (1 + delta)``, a first guess); with several,
    piecewise linear in ``delta`` between them and extended linearly beyond. Outlier relief and its price are
    sums of convex piecewise-linear functions of each beneficiary's spending (marginal stop-loss shares rise with
    the band; truncation is ``(x - cap)_+``), so the chord between two entries bounds them from above and the error
    vanishes at each entry (``docs/design.md``, "Decisions").
    """
    scalar = np.ndim(delta) == 0
    d = np.asarray(delta, dtype=float)
    if len(table) == 1:
        return table[0.0] * (1.0 + (d if scalar else d[:, None, None]))
    ks = np.array(sorted(table))
    stack = np.stack([np.broadcast_to(table[k], table[0.0].shape) for k in ks])
    idx = np.clip(np.searchsorted(ks, d, side="right") - 1, 0, len(ks) - 2)
    w = (d - ks[idx]) / (ks[idx + 1] - ks[idx])
    if scalar:
        return stack[idx] if w == 0.0 else stack[idx] * (1.0 - w) + stack[idx + 1] * w
    rows = np.arange(d.shape[0])
    w3 = w[:, None, None]
    return stack[idx, rows] * (1.0 - w3) + stack[idx + 1, rows] * w3


def with_effect(cfg: Config, delta: float) -> Config:
    """``cfg`` with its care-management path changed by ``delta`` on top: ``(1 + c_t)(1 + delta) - 1``."""
    path = per_year(cfg.aco.care_management_effect, cfg.simulation.years)
    return cfg.model_copy(update={"aco": cfg.aco.model_copy(update={
        "care_management_effect": [(1.0 + c) * (1.0 + delta) - 1.0 for c in path]})})


def charge_at(cfg: Config, inputs: RunInputs, macro: MacroPaths, delta: float) -> np.ndarray:
    """The stop-loss charge PBPM of a chunk when the ACO's spending changes by ``delta``, shape (n, years, 3).

    The charge is priced on the ACO's expected cost including its care-management effect
    (:mod:`leadsim.model.outliers`), so a run with ``aco.care_management_effect`` changed by ``delta`` pays it
    at that effect; ``delta = 0`` is exactly :func:`leadsim.engine.stop_loss_charge_pbpm`.
    """
    sl = cfg.policy.stop_loss
    if not sl.enabled:
        return np.broadcast_to(inputs.charge_pbpm, macro.national_growth.shape)
    priced = cfg if delta == 0.0 else with_effect(cfg, delta)
    charge = (stop_loss_price(priced, inputs.model, macro.national_growth) if sl.basis == "realised"
              else stop_loss_price(priced, inputs.model))
    return np.broadcast_to(charge, macro.national_growth.shape)


@dataclass
class CostPool:
    """The kernel output of one cost model for all draws, and its outlier relief at other spending levels.

    Attributes
    ----------
    cfg, inputs
        The config the kernel ran with (the first variant of this cost model) and its prepared inputs.
    base : ChunkCosts
        The pass at ``delta = 0``.
    payouts : dict of float to ndarray (n, years, 3)
        Outlier relief (kernel ``stop_loss_payout``) by ``delta``; only ``0`` without relief.
    """

    cfg: Config
    inputs: RunInputs
    base: ChunkCosts
    payouts: dict[float, np.ndarray] = field(default_factory=dict)

    @property
    def relief(self) -> int:
        return int(self.inputs.model.relief_mode)

    @property
    def passes(self) -> int:
        return len(self.payouts)

    def add_pass(self, delta: float, progress: object | None = None) -> None:
        """Run the kernel again with mean costs times ``1 + delta`` and keep its outlier relief."""
        if delta not in self.payouts:
            costs = kernel_pass(self.cfg, self.inputs, 1.0 + delta, progress)
            self.payouts[float(delta)] = costs.fields["stop_loss_payout"]

    def payout(self, delta: float | np.ndarray) -> np.ndarray:
        """Outlier relief at ``delta`` (a number, or one per draw), interpolated between kernel passes
        (:func:`interpolate`); without relief it is zero at every ``delta`` (exact)."""
        if self.relief == RELIEF_NONE:
            return self.payouts[0.0]
        return interpolate(self.payouts, delta)

    def at(self, delta: float | np.ndarray = 0.0) -> ChunkCosts:
        """The costs with every beneficiary's spending times ``1 + delta`` (a number, or one per draw)."""
        if np.ndim(delta) == 0 and float(delta) == 0.0:
            return self.base
        b = self.base
        s = 1.0 + (np.asarray(delta, dtype=float) if np.ndim(delta) == 0 else np.asarray(delta)[:, None, None])
        expenditure = b.fields["expenditure"] * s
        payout = self.payout(delta)
        truncated = expenditure - (payout if self.relief == RELIEF_TRUNCATION else 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            spend = np.where(b.member_months > 0, truncated / b.member_months, np.nan)
        fields = dict(b.fields, expenditure=expenditure, stop_loss_payout=payout)
        return ChunkCosts(b.draws, b.macro, fields, b.member_months, b.risk_score, spend, b.weight, b.replicate)


def _pool_design(pools: list[CostPool]) -> Design:
    """The design of the draws every pool ran on; an error (never a silently wrong pairing) if they differ."""
    first = pools[0].base
    for pool in pools[1:]:
        b = pool.base
        for name in ("weight", "replicate"):
            u, v = getattr(first, name), getattr(b, name)
            if (u is None) != (v is None) or (u is not None and not np.array_equal(u, v)):
                raise RuntimeError(f"kernel passes of one decision drew different {name}s: the options would not "
                                   "share common random numbers")
    w = first.weight
    if w is not None and np.all(w == 1.0):
        w = None
    return Design(None if w is None else np.asarray(w, dtype=float),
                  None if first.replicate is None else np.asarray(first.replicate, dtype=np.int64))


@dataclass(frozen=True)
class Paths:
    """One option's per-draw results: annual accrual ``net`` and ``cash`` (n, years), ten-year ``cum`` (n,)."""

    net: np.ndarray
    cash: np.ndarray
    cum: np.ndarray


def savings_rate_to(arrays: dict[str, np.ndarray], track: int, years: int) -> np.ndarray:
    """Cumulative gross savings rate of the first ``years`` years of a track: ``sum(savings) / sum(benchmark)``."""
    gross = arrays["gross_savings"][:, :years, track].sum(axis=1)
    bench = arrays["benchmark"][:, :years, track].sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(bench > 0, gross / bench, 0.0)


def compose_switch(stay: Paths, move: Paths, fire: np.ndarray, rate: float, after: int = SWITCH_AFTER) -> Paths:
    """Professional (``stay``) in every year, except Global (``move``) from year ``after + 1`` where ``fire``.

    Notes
    -----
    Each year's LEAD settlement depends on the track settled that year and the draw's costs, not on the track
    of earlier years (``docs/methodology.md`` §3), so the switch path is composed year by year from the two
    tracks settled on the same draws. Global's year-dependent terms (its discount schedule) are those of the
    performance year, as for an ACO on Global from the start [ASSUMED].
    """
    late = (np.arange(stay.net.shape[1]) >= after)[None, :]
    take = fire[:, None] & late
    net = np.where(take, move.net, stay.net)
    cash = np.where(take, move.cash, stay.cash)
    return Paths(net, cash, discounted_total(net, rate))


class Evaluator:
    """Options of a decision settled on common draws, at any spending change ``delta``.

    Parameters
    ----------
    variants, options
        From :func:`leadsim.decide.options.build_options`.
    progress : optional
        A progress bar updated by the kernel passes.
    tilt : ndarray, optional
        The tilt (``sampling = "tilted"``) or QMC rotation direction (``qmc_rotate``) every variant's kernel
        passes use; default the pilot tilt of the first variant. One tilt for all variants keeps the systematic
        draws, and so the weights, the same for every option (common random numbers): each variant's own pilot
        would aim at its own policy's tail and give other draws.

    Attributes
    ----------
    design : Design
        The weights (tilted) and QMC replicates of the draws, the same for every option (trivial when plain).
    """

    def __init__(self, variants: dict[str, Variant], options: Iterable[Option], progress: object | None = None,
                 tilt: np.ndarray | None = None):
        self.variants = variants
        self.options = list(options)
        first = next(iter(variants.values())).cfg
        if tilt is None and first.simulation.sampling != "plain":
            tilt = prepare(first).tilt
        self.inputs = {name: prepare(v.cfg, tilt) for name, v in variants.items()}
        self.pools: dict[str, CostPool] = {}
        self.kernel_passes = 0
        for name, v in variants.items():
            if v.cost_key not in self.pools:
                base = kernel_pass(v.cfg, self.inputs[name], 1.0, progress)
                self.kernel_passes += 1
                self.pools[v.cost_key] = CostPool(v.cfg, self.inputs[name], base,
                                                  {0.0: base.fields["stop_loss_payout"]})
        self.design = _pool_design(list(self.pools.values()))
        self.thresholds: dict[str, np.ndarray] = {}  # switch option name -> per-draw threshold
        # the stop-loss charge by spending change, per variant (priced once per kernel pass, not per settlement)
        self.charges: dict[str, dict[float, np.ndarray]] = {
            name: {0.0: stop_loss_charge_pbpm(v.cfg, self.inputs[name], self.pools[v.cost_key].base.macro)}
            for name, v in variants.items()}

    def add_pass(self, key: str, delta: float) -> None:
        """Another kernel pass of a cost model at spending change ``delta``, and the stop-loss charges there."""
        pool = self.pools[key]
        if delta in pool.payouts:
            return
        pool.add_pass(delta)
        self.kernel_passes += 1
        for name, v in self.variants.items():
            if v.cost_key == key and v.cfg.policy.stop_loss.enabled:
                self.charges[name][delta] = charge_at(v.cfg, self.inputs[name], pool.base.macro, delta)

    def charge(self, variant: str, delta: float | np.ndarray) -> np.ndarray:
        """The stop-loss charge PBPM of a variant at ``delta`` (interpolated like the relief)."""
        table = self.charges[variant]
        if not self.variants[variant].cfg.policy.stop_loss.enabled or (np.ndim(delta) == 0 and delta == 0.0):
            return table[0.0]
        if len(table) == 1:  # before any extra pass: the first guess, at the price of the configured effect
            table = {0.0: np.broadcast_to(table[0.0], self.pools[self.variants[variant].cost_key].base.macro
                                          .national_growth.shape)}
        return interpolate(table, delta)

    def pool(self, option: Option) -> CostPool:
        return self.pools[self.variants[option.variant].cost_key]

    def settle(self, variant: str, delta: float | np.ndarray = 0.0) -> dict[str, np.ndarray]:
        """All tracks of a variant settled at spending change ``delta`` (``settle_chunk``'s arrays)."""
        v = self.variants[variant]
        return settle_chunk(v.cfg, self.inputs[variant], self.pools[v.cost_key].at(delta),
                            self.charge(variant, delta)).arrays

    def track_paths(self, variant: str, arrays: dict[str, np.ndarray], track: str) -> Paths:
        i = list(self.variants[variant].cfg.policy.tracks).index(track)
        return Paths(arrays["net_settlement"][:, :, i], arrays["cash_settlement"][:, :, i],
                     arrays["cumulative_settlement"][:, i])

    def switch_parts(self, variant: str, arrays: dict[str, np.ndarray]) -> tuple[Paths, Paths, np.ndarray]:
        """Professional and Global paths of a variant and Professional's savings rate of the stay."""
        i = list(self.variants[variant].cfg.policy.tracks).index("professional")
        return (self.track_paths(variant, arrays, "professional"), self.track_paths(variant, arrays, "global"),
                savings_rate_to(arrays, i, SWITCH_AFTER))

    def paths(self, option: Option, delta: float | np.ndarray = 0.0,
              arrays: dict[str, np.ndarray] | None = None) -> Paths:
        """One option's per-draw results at spending change ``delta``."""
        arrays = self.settle(option.variant, delta) if arrays is None else arrays
        if option.track != "switch":
            return self.track_paths(option.variant, arrays, option.track)
        stay, move, rate4 = self.switch_parts(option.variant, arrays)
        fire = rate4 > self.thresholds[option.name]
        return compose_switch(stay, move, fire, self.variants[option.variant].cfg.policy.settlement.discount_rate)

    def all_paths(self, delta: float = 0.0) -> dict[str, Paths]:
        """Every option's per-draw results at one ``delta`` (each variant settled once)."""
        settled = {name: self.settle(name, delta) for name in self.variants}
        return {o.name: self.paths(o, delta, settled[o.variant]) for o in self.options}
