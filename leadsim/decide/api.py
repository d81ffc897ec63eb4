"""``leadsim.decide``: every option of a decision evaluated on the same draws, as one xarray Dataset.

See ``docs/design.md`` ("Decisions") for the option set, the reuse of kernel passes, the switch rule and its
threshold choice, the reserves, the break-even effects and the ranking criteria.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import numpy as np
import xarray as xr

from leadsim._version import __version__
from leadsim.analysis.risk import Design, drawdown, sample_design
from leadsim.config import Config, load_config
from leadsim.decide import metrics
from leadsim.decide.breakeven import BRACKET, BREAK_EVEN, solve
from leadsim.decide.evaluate import Evaluator, Paths, compose_switch
from leadsim.decide.options import COMPARATORS, SWITCH_AFTER, Option, build_options
from leadsim.engine import ChunkCosts, prepare, settle_chunk, show_progress, stop_loss_charge_pbpm, threads
from leadsim.errors import ConfigError
from leadsim.ledger.settlement import financial_guarantee
from leadsim.model._kernel import RELIEF_NONE, RELIEF_TRUNCATION
from leadsim.model.drivers import MacroPaths

__all__ = ["DEFAULT_ALPHA", "DEFAULT_LAMBDA", "LEVELS", "SWITCH_THRESHOLDS", "decide", "run_break_even"]

LEVELS: tuple[float, ...] = (0.99, 0.995)
"""Confidence levels of VaR, TVaR and reserves in a decision."""

DEFAULT_LAMBDA = 0.25
"""Weight of TVaR_99 in the ``mean_tvar`` criterion: a dollar of 1-in-100 tail loss costs 25 cents of mean."""

DEFAULT_ALPHA = 0.05
"""Largest P(worst cumulative loss > guarantee) the ``constrained`` criterion accepts."""

SWITCH_THRESHOLDS = np.concatenate([[-np.inf], np.round(np.arange(-0.05, 0.10 + 1e-9, 0.0025), 6), [np.inf]])
"""Thresholds of the switch rule searched: move to Global when Professional's cumulative savings rate of the
four-year stay exceeds it (``-inf`` = always move, ``+inf`` = never)."""

BREAK_EVEN_TOL = 0.0025
"""With outlier relief, a break-even is accepted once a kernel pass lies within this of it (0.25 points)."""

BREAK_EVEN_ROUNDS = 3
"""Most rounds of extra kernel passes for break-even effects under outlier relief."""


def _check_args(options: list[Option], baseline: str | None, criterion: str, lam: float, alpha: float) -> str:
    problems = []
    names = [o.name for o in options]
    if baseline is None:
        baseline = next((n for n in names if n.startswith("mssp")), names[0])
    elif baseline not in names:
        problems.append(f"baseline {baseline!r}: not an option of this decision (options: {', '.join(names)})")
    if criterion not in metrics.CRITERIA:
        problems.append(f"criterion {criterion!r}: must be one of {', '.join(metrics.CRITERIA)}")
    if not (np.isfinite(lam) and 0.0 <= lam <= 100.0):
        problems.append(f"lambda = {lam!r}: must be a number in [0, 100]")
    if not (np.isfinite(alpha) and 0.0 < alpha < 1.0):
        problems.append(f"alpha = {alpha!r}: must be a probability in (0, 1)")
    if problems:
        raise ConfigError(problems)
    return baseline


def _score(cum: np.ndarray, dd: np.ndarray, fg: float, criterion: str, lam: float, alpha: float,
           design: Design | None = None) -> np.ndarray:
    """The criterion of each column of per-draw ten-year results (higher is better), under the draws' design."""
    mean = metrics.estimate(cum, "mean", design=design)
    if criterion == "mean_tvar":
        return metrics.criterion(mean, metrics.estimate(cum, "TVaR", p=0.99, design=design), lam).value
    p = metrics.estimate((dd > fg).astype(float), "prob", design=design).value
    # feasible columns by their mean; infeasible ones below every feasible one, least infeasible first
    return np.where(p <= alpha, mean.value, -1e300 * (1.0 + p))


def _switch_curve(stay: Paths, move: Paths, rate4: np.ndarray, thresholds: np.ndarray, rate: float, fg: float,
                  criterion: str, lam: float, alpha: float, rows: np.ndarray,
                  design: Design | None = None) -> np.ndarray:
    """The criterion of the switch rule at each threshold, on the draws ``rows`` (``design``: of all draws)."""
    cums, dds = [], []
    disc = (1.0 + rate) ** -np.arange(stay.net.shape[1])
    for tau in thresholds:
        p = compose_switch(Paths(stay.net[rows], stay.cash[rows], stay.cum[rows]),
                           Paths(move.net[rows], move.cash[rows], move.cum[rows]), rate4[rows] > tau, rate)
        cums.append(p.cum)
        dds.append(drawdown(p.net, disc))
    return _score(np.stack(cums, axis=1), np.stack(dds, axis=1), fg, criterion, lam, alpha,
                  metrics.subset(design, rows))


def _choose_thresholds(ev: Evaluator, option: Option, criterion: str, lam: float,
                       alpha: float) -> dict[str, np.ndarray | float]:
    """Pick the switch threshold by 2-fold cross-fitting and return the per-draw thresholds and the curve.

    Notes
    -----
    Choosing the best of many thresholds on the draws that then measure it flatters the rule (optimisation bias).
    The draws are split into two halves (even and odd positions); the threshold chosen on one half is applied to
    the other, so every draw's result comes from a rule chosen without it. The threshold reported as the choice
    is the one that is best on all draws. Under tilted sampling the criterion of each half is the weighted one
    of its draws, and the share of draws that move is the weighted share.
    """
    cfg = ev.variants[option.variant].cfg
    stay, move, rate4 = ev.switch_parts(option.variant, ev.settle(option.variant))
    rate = cfg.policy.settlement.discount_rate
    fg = financial_guarantee(cfg)
    n = stay.cum.shape[0]
    idx = np.arange(n)
    curve = _switch_curve(stay, move, rate4, SWITCH_THRESHOLDS, rate, fg, criterion, lam, alpha, idx, ev.design)
    best = float(SWITCH_THRESHOLDS[int(np.argmax(curve))])
    per_draw = np.full(n, best)
    halves = (idx[0::2], idx[1::2])
    chosen = []
    if n >= 4:
        for fit, apply in (halves, halves[::-1]):
            c = _switch_curve(stay, move, rate4, SWITCH_THRESHOLDS, rate, fg, criterion, lam, alpha, fit, ev.design)
            tau = float(SWITCH_THRESHOLDS[int(np.argmax(c))])
            per_draw[apply] = tau
            chosen.append(tau)
    ev.thresholds[option.name] = per_draw
    return {"curve": curve, "best": best, "halves": np.array(chosen or [best, best]),
            "share": float(metrics.weighted_mean(rate4 > per_draw, ev.design))}


def _break_even(ev: Evaluator, progress: bool) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, float]]:
    """Break-even effects of every option, with extra kernel passes only where outlier relief needs them."""
    n = ev.pools[next(iter(ev.pools))].base.draws.shape[0]
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    pending = list(ev.options)
    for round_ in range(BREAK_EVEN_ROUNDS + 1):
        for o in pending:
            be = solve(lambda d, o=o: ev.paths(o, d).cum, n, BRACKET, design=ev.design)
            out[o.name] = (be.value, be.se)
        targets: dict[str, list[float]] = {}
        for o in ev.options:
            pool = ev.pool(o)
            if pool.relief == RELIEF_NONE:
                continue
            for r in out[o.name][0]:
                if np.isfinite(r) and min(abs(r - k) for k in pool.payouts) > BREAK_EVEN_TOL:
                    targets.setdefault(ev.variants[o.variant].cost_key, []).append(float(r))
        if not targets or round_ == BREAK_EVEN_ROUNDS:
            break
        for key, rs in targets.items():
            for r in _clusters(sorted(rs)):
                if progress:
                    print(f"leadsim decide: extra kernel pass at spending change {r:+.2%} (outlier relief)",
                          file=sys.stderr)
                ev.add_pass(key, round(r, 6))
        pending = [o for o in ev.options if ev.variants[o.variant].cost_key in targets]
    gap = {}
    for o in ev.options:
        pool = ev.pool(o)
        gap[o.name] = 0.0 if pool.relief == RELIEF_NONE else float(max(
            (min(abs(r - k) for k in pool.payouts) for r in out[o.name][0] if np.isfinite(r)), default=0.0))
    return out, gap


def _clusters(rs: list[float]) -> list[float]:
    """Centres of groups of sorted values no wider than the break-even tolerance (one kernel pass each)."""
    groups: list[list[float]] = []
    for r in rs:
        if groups and r - groups[-1][0] <= BREAK_EVEN_TOL:
            groups[-1].append(r)
        else:
            groups.append([r])
    return [float(np.mean(g)) for g in groups]


def decide(cfg: Config | str | os.PathLike[str] | None = None, *, baseline: str | None = None,
           criterion: str = "mean_tvar", lam: float = DEFAULT_LAMBDA, alpha: float = DEFAULT_ALPHA,
           comparators: Sequence[str] = COMPARATORS, stop_loss: bool = True, break_even: bool = True,
           progress: bool | None = None) -> xr.Dataset:
    """Evaluate the options an ACO can choose under LEAD on the same draws, with Monte Carlo standard errors.

    Parameters
    ----------
    cfg : Config, path or None
        The ACO and its cost model, the simulation settings, and the policy whose tracks are the main options.
    baseline : str, optional
        The option paired differences are taken against (default: MSSP ENHANCED when compared, else the first).
    criterion : {"mean_tvar", "constrained"}
        Ranking: mean - ``lam`` x TVaR_99 of the ten-year result, or the highest mean among options with
        P(worst cumulative loss > guarantee) <= ``alpha``. The switch threshold is chosen for the same criterion.
    lam, alpha : float
        The criterion's parameters (defaults :data:`DEFAULT_LAMBDA`, :data:`DEFAULT_ALPHA`).
    comparators : sequence of str
        Comparator policy presets (default LEAD PY2027, REACH PY2026 and MSSP ENHANCED; the config's own is skipped).
    stop_loss : bool
        Evaluate each LEAD option with stop-loss elected too.
    break_even : bool
        Compute the break-even care-management effects (with outlier relief this runs a few extra kernel passes).
    progress : bool, optional
        Print the kernel passes to stderr (default: on a terminal).

    Returns
    -------
    xarray.Dataset
        Dims ``option``, ``level`` (0.99, 0.995), ``criterion`` (``mean_zero``, ``p_loss_half``), ``threshold``,
        ``draw``, ``year``. Per option: ``mean``, ``p_loss``, ``VaR``, ``TVaR`` of the ten-year result,
        ``p_beyond_guarantee`` (P(worst cumulative loss > guarantee)), ``reserve`` (capital covering the worst
        cumulative cash position), ``criterion_value``, ``rank``, the paired differences ``diff_*`` against the
        baseline, ``break_even_effect`` (option, criterion), the switch rule's ``switch_*`` figures; every
        estimate with a ``*_se`` partner. Per draw: ``cumulative_settlement``, ``net_settlement``,
        ``cash_settlement``, ``reserve_need``, ``weight`` (and ``replicate`` under QMC); attr ``sampling``.

    Notes
    -----
    Options whose cost model is the same settle against one kernel pass (keyed draws make this exact); stop-loss
    election and MSSP truncation change the outlier relief the kernel computes, so they have their own pass.
    Under ``simulation.sampling = "tilted"`` (or ``"qmc"``) every kernel pass uses the tilt of the config's own
    pilot, so all options share the systematic draws and their weights; every estimate is the weighted one and
    every standard error the design-based one of :func:`leadsim.analysis.risk.design_se`.
    Methods and choices are in ``docs/design.md`` ("Decisions"); the ledger in ``docs/methodology.md``.

    Examples
    --------
    >>> import leadsim
    >>> cfg = leadsim.load_config(overrides={"simulation.draws": 40, "aco.beneficiaries": 500})
    >>> d = leadsim.decide(cfg, break_even=False, progress=False)
    >>> "lead_global" in d.option.values and "mssp_enhanced" in d.option.values
    True
    """
    cfg = cfg if isinstance(cfg, Config) else load_config(cfg)
    variants, options = build_options(cfg, comparators=comparators, stop_loss=stop_loss)
    baseline = _check_args(options, baseline, criterion, float(lam), float(alpha))
    progress = show_progress(progress)
    with threads(cfg.simulation.threads):  # numba threads as in a run (never changes a result)
        # one tilt (the config's own pilot) for every variant: all options on the same systematic draws
        ev = Evaluator(variants, options, tilt=None if cfg.simulation.sampling == "plain" else prepare(cfg).tilt)
        switch_info = {o.name: _choose_thresholds(ev, o, criterion, lam, alpha) for o in options
                       if o.track == "switch"}
        paths = ev.all_paths(0.0)
        be, gap = _break_even(ev, bool(progress)) if break_even else ({}, {})
    return _dataset(cfg, ev, options, paths, switch_info, be, gap, baseline, criterion, lam, alpha)


def _dataset(cfg: Config, ev: Evaluator, options: list[Option], paths: dict[str, Paths],
             switch_info: dict[str, dict], be: dict[str, tuple[np.ndarray, np.ndarray]], gap: dict[str, float],
             baseline: str, criterion: str, lam: float, alpha: float) -> xr.Dataset:
    names = [o.name for o in options]
    k = len(names)
    rate = cfg.policy.settlement.discount_rate
    disc = (1.0 + rate) ** -np.arange(cfg.simulation.years)
    net = np.stack([paths[n].net for n in names], axis=-1)      # (n, Y, K)
    cash = np.stack([paths[n].cash for n in names], axis=-1)
    cum = np.stack([paths[n].cum for n in names], axis=-1)      # (n, K)
    dd = drawdown(net, disc)                                     # worst cumulative loss (accrual), (n, K)
    need = metrics.worst_cash_position(net, cash, disc)          # capital for the worst cash position, (n, K)
    fg = np.array([financial_guarantee(ev.variants[o.variant].cfg) for o in options])
    base = names.index(baseline)

    design = ev.design                                           # weights (tilted) and replicates (qmc)
    mean = metrics.estimate(cum, "mean", design=design)
    p_loss = metrics.estimate(cum, "p_loss", design=design)
    beyond = metrics.estimate((dd > fg[None, :]).astype(float), "prob", design=design)
    var = [metrics.estimate(cum, "VaR", p, design) for p in LEVELS]
    tv = [metrics.estimate(cum, "TVaR", p, design) for p in LEVELS]
    res = [metrics.estimate(-need, "VaR", p, design) for p in LEVELS]  # p-quantile of the need (loss side of -need)
    crit = metrics.criterion(mean, tv[0], lam)
    value = crit.value if criterion == "mean_tvar" else mean.value
    value_se = crit.se if criterion == "mean_tvar" else mean.se
    ranks = metrics.rank(criterion, value, mean.value, beyond.value, alpha)

    def vs_base(e: metrics.Estimate) -> tuple[np.ndarray, np.ndarray]:
        return metrics.paired(e, e.column(base))

    o_dims, ol = ("option",), ("option", "level")
    data: dict[str, tuple] = {
        "mean": (o_dims, mean.value), "mean_se": (o_dims, mean.se),
        "p_loss": (o_dims, p_loss.value), "p_loss_se": (o_dims, p_loss.se),
        "VaR": (ol, np.stack([v.value for v in var], -1)), "VaR_se": (ol, np.stack([v.se for v in var], -1)),
        "TVaR": (ol, np.stack([v.value for v in tv], -1)), "TVaR_se": (ol, np.stack([v.se for v in tv], -1)),
        "p_beyond_guarantee": (o_dims, beyond.value), "p_beyond_guarantee_se": (o_dims, beyond.se),
        "reserve": (ol, np.stack([r.value for r in res], -1)), "reserve_se": (ol, np.stack([r.se for r in res], -1)),
        "financial_guarantee": (o_dims, fg),
        "criterion_value": (o_dims, value), "criterion_value_se": (o_dims, value_se),
        "rank": (o_dims, ranks),
    }
    for label, est in (("mean", mean), ("p_loss", p_loss), ("p_beyond_guarantee", beyond), ("criterion_value", crit
                                                                                              if criterion ==
                                                                                              "mean_tvar" else mean)):
        d, s = vs_base(est)
        data[f"diff_{label}"] = (o_dims, d)
        data[f"diff_{label}_se"] = (o_dims, s)
    for label, ests in (("TVaR", tv), ("reserve", res)):
        pairs = [vs_base(e) for e in ests]
        data[f"diff_{label}"] = (ol, np.stack([p[0] for p in pairs], -1))
        data[f"diff_{label}_se"] = (ol, np.stack([p[1] for p in pairs], -1))
    if be:
        data["break_even_effect"] = (("option", "criterion"), np.stack([be[n][0] for n in names]))
        data["break_even_effect_se"] = (("option", "criterion"), np.stack([be[n][1] for n in names]))
        data["break_even_pass_gap"] = (o_dims, np.array([gap[n] for n in names]))

    thr = SWITCH_THRESHOLDS
    sw = {key: np.full(k, np.nan) for key in ("switch_threshold", "switch_threshold_a", "switch_threshold_b",
                                              "switch_share", "switch_value_mean", "switch_value_mean_se",
                                              "switch_value_criterion", "switch_value_criterion_se")}
    curve = np.full((k, thr.size), np.nan)
    c_all = metrics.criterion(mean, tv[0], lam) if criterion == "mean_tvar" else mean
    for i, o in enumerate(options):
        if o.track != "switch":
            continue
        info = switch_info[o.name]
        stay = names.index(f"{o.variant}_professional")
        sw["switch_threshold"][i] = info["best"]
        sw["switch_threshold_a"][i], sw["switch_threshold_b"][i] = info["halves"]
        sw["switch_share"][i] = info["share"]
        for key, est in (("mean", mean), ("criterion", c_all)):
            d, s = metrics.paired(est.column(i), est.column(stay))
            sw[f"switch_value_{key}"][i], sw[f"switch_value_{key}_se"][i] = d, s
        curve[i] = np.where(info["curve"] > -1e299, info["curve"], np.nan)
    for key, v in sw.items():
        data[key] = (o_dims, v)
    data["switch_criterion"] = (("option", "threshold"), curve)
    data["cumulative_settlement"] = (("draw", "option"), cum)
    data["net_settlement"] = (("draw", "year", "option"), net)
    data["cash_settlement"] = (("draw", "year", "option"), cash)
    data["reserve_need"] = (("draw", "option"), need)
    base_costs = ev.pools[next(iter(ev.pools))].base
    data["weight"] = (("draw",), np.ones(cum.shape[0]) if base_costs.weight is None else base_costs.weight)
    if base_costs.replicate is not None:
        data["replicate"] = (("draw",), base_costs.replicate.astype(np.int64))

    ds = xr.Dataset(
        {k_: xr.Variable(*v) for k_, v in data.items()},
        coords={
            "option": names,
            "option_label": ("option", [o.label for o in options]),
            "variant": ("option", [o.variant for o in options]),
            "track": ("option", [o.track for o in options]),
            "level": list(LEVELS),
            "criterion": list(BREAK_EVEN),
            "threshold": thr,
            "draw": ev.pools[next(iter(ev.pools))].base.draws,
            "year": cfg.years,
        },
    )
    _describe(ds)
    ds.attrs.update(
        leadsim_version=__version__, seed=int(cfg.simulation.seed), n_draws=int(cum.shape[0]),
        aco_name=cfg.aco.name, policy_name=cfg.policy.name, baseline=baseline, ranking_criterion=criterion,
        criterion_lambda=float(lam), criterion_alpha=float(alpha), kernel_passes=int(ev.kernel_passes),
        switch_after_years=SWITCH_AFTER, discount_rate=float(rate), sampling=cfg.simulation.sampling,
        scenario=cfg.scenario or "",
        sign_convention="settlement positive to the ACO; VaR/TVaR/reserve positive = loss or capital; "
                        "break-even effect -0.03 = spending 3% below what it would otherwise be",
        config=cfg.to_toml(),
    )
    return ds


_DESCRIPTIONS = {
    "mean": ("USD", "mean ten-year result"),
    "p_loss": ("1", "P(ten-year loss)"),
    "VaR": ("USD", "loss-side VaR of the ten-year result"),
    "TVaR": ("USD", "loss-side TVaR of the ten-year result"),
    "p_beyond_guarantee": ("1", "P(worst cumulative loss > financial guarantee)"),
    "reserve": ("USD", "capital covering the worst cumulative cash position at a settlement, at level"),
    "financial_guarantee": ("USD", "financial guarantee of the option's policy, first performance year"),
    "criterion_value": ("USD", "ranking criterion (mean - lambda TVaR_99, or the mean under the constraint)"),
    "rank": ("1", "rank under the criterion, 1 = best"),
    "break_even_effect": ("1", "spending change at which the option breaks even (-0.03 = 3% less spending)"),
    "break_even_pass_gap": ("1", "largest distance from a break-even to the nearest kernel pass (0 = exact)"),
    "switch_threshold": ("1", "switch rule threshold chosen on all draws (cumulative savings rate, years 1-4)"),
    "switch_share": ("1", "share of draws that move to Global under the cross-fitted rule"),
    "switch_value_mean": ("USD", "mean gain of the switch option over staying on Professional"),
    "switch_value_criterion": ("USD", "criterion gain of the switch option over staying on Professional"),
    "switch_criterion": ("USD", "criterion of the switch rule by threshold (all draws, in-sample)"),
    "reserve_need": ("USD", "capital the draw needs for its worst cumulative cash position at a settlement"),
    "weight": ("1", "likelihood-ratio weight of the draw (tilted sampling; 1 otherwise), the same for every option"),
    "replicate": ("1", "randomization replicate of the draw (qmc sampling): the batch of the standard errors"),
}


def _describe(ds: xr.Dataset) -> None:
    for name in ds.data_vars:
        base = str(name).removesuffix("_se").removeprefix("diff_")
        base = base.removesuffix("_a").removesuffix("_b") if base.startswith("switch_threshold") else base
        units, text = _DESCRIPTIONS.get(base, ("USD", base.replace("_", " ")))
        if str(name).startswith("diff_"):
            text = f"{text}: option minus baseline on the same draws"
        if str(name).endswith("_se"):
            text = f"Monte Carlo standard error of: {text}"
        ds[name].attrs.update(units=units, long_name=text)


# ---- the break-even line of `leadsim run` --------------------------------------------------------------------------
RUN_BREAK_EVEN_MAX_DRAWS = 5_000
"""Draws of a run used for the break-even line of its summary (the first ones; all when fewer): a few seconds."""

RUN_BREAK_EVEN_TOL = 1e-6
"""Precision of the summary's break-even roots (shown to 0.01 points)."""


def run_break_even(ds: xr.Dataset) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], bool, int]:
    """Break-even effects of each track of a finished run, from its stored costs (no kernel run).

    Returns
    -------
    effects : dict of track to (value (2,), se (2,))
        For ``mean_zero`` and ``p_loss_half`` (:data:`leadsim.decide.breakeven.BREAK_EVEN`).
    exact : bool
        False when the run has outlier relief (stop-loss or truncation): the relief is then taken proportional to
        spending, a first-order approximation (``leadsim decide`` refines it with kernel passes).
    n : int
        Draws used (at most :data:`RUN_BREAK_EVEN_MAX_DRAWS`).
    """
    from leadsim.decide.evaluate import CostPool
    from leadsim.io.schema import config_of

    cfg = config_of(ds)
    n = min(ds.sizes["draw"], RUN_BREAK_EVEN_MAX_DRAWS)
    sub = ds.isel(draw=slice(0, n))

    def arr(name: str) -> np.ndarray:
        return sub[name].transpose("draw", "year", *[d for d in sub[name].dims if d not in ("draw", "year")]).values

    stored = ds.attrs.get("tilt_shift", ds.attrs.get("qmc_direction"))  # the run's own tilt: no second pilot
    inputs = prepare(cfg, None if stored is None else np.atleast_1d(np.asarray(stored, dtype=float)))
    design = sample_design(sub)                                        # weights (tilted) and replicates (qmc)
    sl = cfg.policy.stop_loss
    mm = arr("member_months").astype(float)
    payout = arr("stop_loss_payout").astype(float) / (sl.neutrality if sl.enabled else 1.0)
    fields = {"member_months": mm, "expenditure": arr("expenditure").astype(float), "stop_loss_payout": payout,
              "risk_weighted_months": arr("risk_score") * mm, "deaths": arr("deaths"), "entrants": arr("entrants"),
              "outliers": arr("outliers")}
    zeros = np.zeros(mm.shape[:2])
    macro = MacroPaths(arr("national_growth"), arr("regional_growth"), arr("aco_growth"), arr("quality_score"),
                       zeros, zeros)
    relief = inputs.model.relief_mode
    truncated = fields["expenditure"] - (payout if relief == RELIEF_TRUNCATION else 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        spend = np.where(mm > 0, truncated / mm, np.nan)
    base = ChunkCosts(sub["draw"].values, macro, fields, mm, arr("risk_score"), spend)
    pool = CostPool(cfg, inputs, base, {0.0: payout})
    tracks = list(cfg.policy.tracks)
    charge = stop_loss_charge_pbpm(cfg, inputs, macro)

    def cum_at(delta: float | np.ndarray, i: int) -> np.ndarray:
        return settle_chunk(cfg, inputs, pool.at(delta), charge).arrays["cumulative_settlement"][:, i]

    out = {}
    for i, t in enumerate(tracks):
        be = solve(lambda d, i=i: cum_at(d, i), n, BRACKET, RUN_BREAK_EVEN_TOL, design)
        out[t] = (be.value, be.se)
    return out, relief == RELIEF_NONE, n
