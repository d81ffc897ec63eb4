"""Run until a named metric reaches a stated precision: ``leadsim run ... --target "VaR99.5<=2%"``.

Draws are added chunk by chunk (``simulation.chunk_draws``) until the relative standard error of the target
metric (:func:`leadsim.analysis.risk.horizon_metric`, weights and QMC replicates included) is at or below the
target, or until ``simulation.draws`` (the cap) is reached. Every draw is keyed by its index, so the result of
a run that stops after ``n`` draws is bit for bit the run of the same config with ``simulation.draws = n``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from leadsim.analysis.formatting import money
from leadsim.analysis.risk import HORIZON_METRICS, horizon_metric
from leadsim.config import Config, chunk_bounds
from leadsim.engine import prepare, progress_bar, run_chunk, run_header, threads
from leadsim.io.schema import build_dataset
from leadsim.io.sink import MemorySink, Sink

__all__ = ["MIN_SUPPORT", "PrecisionRun", "Target", "parse_target", "partial_dataset", "run_to_precision",
           "target_met"]

MIN_SUPPORT = 20
"""Fewest draws that must inform the estimate (beyond the VaR; of the rarer outcome of an event) before the
run may stop: a standard error resting on a handful of draws is itself too noisy to trust."""

_ALIASES = {"var": "VaR", "tvar": "TVaR", "mean": "mean", "p_loss": "p_loss",
            "p_beyond_guarantee": "p_beyond_guarantee", "p_drawdown": "p_drawdown_beyond_guarantee",
            "p_drawdown_beyond_guarantee": "p_drawdown_beyond_guarantee"}
_PATTERN = re.compile(r"^\s*([A-Za-z_]+?)\s*(\d+(?:\.\d+)?)?\s*(?:@\s*([A-Za-z_]\w*))?\s*<=\s*"
                      r"(\d+(?:\.\d+)?)\s*%\s*$")
_FORMAT = ('METRIC[LEVEL][@TRACK]<=PERCENT%, e.g. "VaR99.5<=2%", "TVaR99@global<=1.5%", "p_drawdown<=2%"; '
           f"metrics VaR, TVaR (with a level in percent), {', '.join(m for m in HORIZON_METRICS[2:])}, "
           "p_drawdown (short for p_drawdown_beyond_guarantee)")


@dataclass(frozen=True)
class Target:
    """A precision target: ``metric`` (at ``level`` for VaR/TVaR) of ``track``'s ten-year result, relative SE."""

    metric: str
    level: float | None
    track: str | None
    rel_se: float
    text: str

    @property
    def label(self) -> str:
        """``VaR 99.5%`` or the metric's name."""
        return f"{self.metric} {self.level * 100:g}%" if self.level is not None else self.metric


def parse_target(text: str) -> Target:
    """Parse ``METRIC[LEVEL][@TRACK]<=PERCENT%``.

    Raises
    ------
    ValueError
        A malformed target, an unknown metric, a VaR/TVaR without a level (or a level outside (50, 100)),
        a level on another metric, or a relative error outside (0, 100]%; the message shows the format.
    """
    m = _PATTERN.match(text or "")
    if not m:
        raise ValueError(f"--target {text!r}: expected {_FORMAT}")
    name, level_s, track, pct_s = m.groups()
    metric = _ALIASES.get(name.lower())
    if metric is None:
        raise ValueError(f"--target {text!r}: unknown metric {name!r}; expected {_FORMAT}")
    level = None
    if metric in ("VaR", "TVaR"):
        if level_s is None:
            raise ValueError(f"--target {text!r}: {metric} needs a confidence level in percent, e.g. {metric}99.5")
        level = float(level_s) / 100.0
        if not 0.5 <= level < 1.0:
            raise ValueError(f"--target {text!r}: the level must lie in [50, 100) percent, got {level_s}")
    elif level_s is not None:
        raise ValueError(f"--target {text!r}: {metric} takes no level")
    rel = float(pct_s) / 100.0
    if not 0.0 < rel <= 1.0:
        raise ValueError(f"--target {text!r}: the relative standard error must lie in (0, 100]%, got {pct_s}%")
    return Target(metric, level, track, rel, text.strip())


@dataclass
class PrecisionRun:
    """What :func:`run_to_precision` did: the draws used, the final estimate, and the path to it."""

    target: Target
    draws: int
    estimate: float
    se: float
    reached: bool
    history: list[tuple[int, float, float]]  # (draws, estimate, se) after each chunk
    sink: Sink

    @property
    def rel_se(self) -> float:
        return self.se / abs(self.estimate) if self.estimate != 0 else float("inf")

    def describe(self) -> str:
        """One line: the estimate, its SE, and whether the target was met (or the cap hit)."""
        est = (money(self.estimate, scale=None, minus="-") if self.target.metric in ("VaR", "TVaR", "mean")
               else f"{self.estimate:.4g}")
        head = f"{self.target.label} = {est.strip()} ± {self.rel_se:.2%} (relative SE) after {self.draws:,} draws"
        if self.reached:
            return f"{head}: target {self.target.rel_se:.2%} reached"
        return (f"{head}: target {self.target.rel_se:.2%} NOT reached at the cap (simulation.draws); "
                "raise --draws to continue")


def _with_draws(cfg: Config, n: int) -> Config:
    return cfg.model_copy(update={"simulation": cfg.simulation.model_copy(update={"draws": int(n)})})


def run_to_precision(cfg: Config, target: Target | str, sink: Sink | None = None, *,
                     progress: bool | None = None) -> PrecisionRun:
    """Add chunks of draws until ``target`` is met or ``simulation.draws`` is reached; deliver them to ``sink``.

    Parameters
    ----------
    cfg : Config
        ``simulation.draws`` is the cap; ``simulation.chunk_draws`` the step.
    target : Target or str
        See :func:`parse_target`.
    sink : Sink, optional
        Where the finished run goes (default a :class:`~leadsim.io.sink.MemorySink`); it receives a config with
        ``simulation.draws`` set to the draws used. Zarr stores are sized up front and are not supported here.
    progress : bool, optional
        A tqdm bar showing the current estimate and its relative SE (default on a terminal, off under ``CI``).

    Returns
    -------
    PrecisionRun

    Notes
    -----
    The rule stops at the first chunk boundary where ``se / |estimate| <= target`` and at least
    :data:`MIN_SUPPORT` draws inform the estimate (:func:`leadsim.analysis.risk.horizon_metric`). Stopping on
    an estimated SE is a sequential rule, so the final interval is slightly optimistic; with the support
    floor the effect is small (``docs/design.md``, "Sampling and weights").
    """
    tgt = parse_target(target) if isinstance(target, str) else target
    if tgt.track is not None and tgt.track not in cfg.policy.tracks:
        raise ValueError(f"--target {tgt.text!r}: track {tgt.track!r} is not settled by this policy "
                         f"(tracks: {', '.join(cfg.policy.tracks)})")
    sink = MemorySink() if sink is None else sink
    cap, step = cfg.simulation.draws, cfg.simulation.chunk_draws
    header = run_header(cfg)
    done: list[tuple[int, int, dict[str, np.ndarray]]] = []
    history: list[tuple[int, float, float]] = []
    reached = False
    bar = progress_bar(cap, progress, desc="leadsim --target")
    try:
        with threads(cfg.simulation.threads):
            inputs = prepare(cfg)
            for lo, hi in chunk_bounds(cap, step):
                done.append((lo, hi, run_chunk(cfg, inputs, np.arange(lo, hi)).arrays))
                ds = partial_dataset(cfg, header, [a for _, _, a in done])
                est, se, support = horizon_metric(ds, tgt.metric, tgt.level, tgt.track)
                history.append((hi, est, se))
                rel = se / abs(est) if est != 0 else np.inf
                if bar is not None:
                    bar.update(hi - lo)
                    bar.set_postfix_str(f"{tgt.label} {est:,.4g} ± {rel:.2%}")
                if target_met(est, se, support, hi, step, tgt.rel_se):
                    reached = True
                    break
    finally:
        if bar is not None:
            bar.close()
    n = done[-1][1]
    cfg_n = _with_draws(cfg, n)
    todo = sink.open(cfg_n, header, chunk_bounds(n, step))
    try:
        for lo, hi, arrays in done:
            if (lo, hi) in todo:
                sink.save_chunk(lo, hi, arrays)
    except BaseException:
        sink.abort()
        raise
    sink.close()
    return PrecisionRun(tgt, n, history[-1][1], history[-1][2], reached, history, sink)


_WATCHED = ("net_settlement", "cumulative_settlement", "cash_settlement", "weight", "replicate")


def target_met(estimate: float, se: float, support: int, draws: int, step: int, rel_se: float) -> bool:
    """The stopping rule: relative SE at most ``rel_se``, at least :data:`MIN_SUPPORT` draws informing the
    estimate, and at least two chunks of ``step`` draws."""
    rel = se / abs(estimate) if estimate != 0 else np.inf
    return support >= MIN_SUPPORT and draws >= 2 * step and rel <= rel_se


def partial_dataset(cfg: Config, header: Any, chunks: list[dict[str, np.ndarray]]) -> xr.Dataset:
    """The consecutive chunks run so far as a light Dataset: only the variables the target metrics read."""
    arrays = {k: np.concatenate([a[k] for a in chunks]) for k in _WATCHED if k in chunks[0]}
    n = next(iter(arrays.values())).shape[0]
    return build_dataset(_with_draws(cfg, n), arrays, header.constants, header.attrs)
