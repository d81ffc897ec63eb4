"""Time to a stated precision: plain Monte Carlo vs randomized QMC vs tilted sampling, one run, ratios.

Usage
-----
::

    python benchmarks/time_to_precision.py                 # default config, 2% relative SE, cap 24,000 draws
    python benchmarks/time_to_precision.py --target 0.03 --cap 8000 --chunk 64

For each mode (``simulation.sampling`` plain, qmc, qmc with ``qmc_rotate``, tilted) the default config
(``configs/default.toml``, seed 20270101) is run chunk by chunk exactly as ``leadsim run --target`` does
(:func:`leadsim.engine.run_chunk` on consecutive draws; the pilot run of the tilted and rotated-QMC modes is
inside the timed region). The modes are interleaved, one chunk each in turn, so that the machine's changing load
falls on all of them alike. After every chunk three ten-year metrics of the Global
track are evaluated with :func:`leadsim.analysis.risk.horizon_metric` (weights and QMC batch means included):

- ``VaR99.5``: VaR 99.5% of the ten-year (discounted) settlement;
- ``TVaR99``: TVaR 99%;
- ``P_dd_gt_FG``: P(worst cumulative loss > financial guarantee).

A metric is *reached* at the first chunk boundary where :func:`leadsim.precision.target_met` holds (the
``--target`` rule: relative SE at most ``--target``, enough draws informing it, at least two chunks).
Reported per mode and metric: draws and simulation seconds at that point (the metric evaluations are timed
apart and excluded), and the *projected* seconds ``t(n) * (rel_se(n) / target)^2`` from the last chunk, a
smoother figure than a first crossing. ``time_to_precision_ratio`` = plain time / best other time for VaR
99.5% (measured crossings).

Writes ``benchmarks/results/time_to_precision-<timestamp>-<commit>.json``. Never a pass/fail test: timings on a
shared machine are noisy.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # measure this checkout's leadsim, not whichever copy is installed
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _common import provenance, write_result  # noqa: E402

METRICS = {"VaR99.5": ("VaR", 0.995), "TVaR99": ("TVaR", 0.99),
           "P_dd_gt_FG": ("p_drawdown_beyond_guarantee", None)}
MODES = {"plain": {"simulation.sampling": "plain"}, "qmc": {"simulation.sampling": "qmc"},
         "qmc_rotated": {"simulation.sampling": "qmc", "simulation.qmc_rotate": True},
         "tilted": {"simulation.sampling": "tilted"}}


class ModeRun:
    """One sampling mode, advanced a chunk at a time so that the modes can be interleaved."""

    def __init__(self, mode: str, target: float, cap: int, chunk: int, seed: int) -> None:
        import leadsim
        from leadsim.config import chunk_bounds
        from leadsim.engine import _TILTS, prepare, run_header

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", leadsim.LeadsimWarning)
            self.cfg = leadsim.load_config(ROOT / "configs" / "default.toml", overrides={
                "simulation.draws": cap, "simulation.chunk_draws": chunk, "simulation.seed": seed, **MODES[mode]})
        self.mode, self.target, self.chunk = mode, target, chunk
        _TILTS.clear()  # the pilot is part of the cost of the modes that need one
        t0 = time.perf_counter()
        self.inputs = prepare(self.cfg)
        self.header = run_header(self.cfg)
        self.sim = time.perf_counter() - t0
        self.pilot_seconds = self.sim
        self.monitor = 0.0
        self.parts: list[dict[str, np.ndarray]] = []
        self.reached: dict[str, dict] = {}
        self.last: dict[str, tuple[float, float, int]] = {}
        self.todo = list(chunk_bounds(cap, chunk))
        self.n = 0

    @property
    def done(self) -> bool:
        return not self.todo or len(self.reached) == len(METRICS)

    def step(self) -> None:
        from leadsim.analysis.risk import horizon_metric
        from leadsim.engine import run_chunk
        from leadsim.precision import partial_dataset, target_met

        lo, hi = self.todo.pop(0)
        t1 = time.perf_counter()
        self.parts.append(run_chunk(self.cfg, self.inputs, np.arange(lo, hi)).arrays)
        self.sim += time.perf_counter() - t1
        self.n = hi
        t2 = time.perf_counter()
        ds = partial_dataset(self.cfg, self.header, self.parts)
        for name, (metric, level) in METRICS.items():
            est, se, support = horizon_metric(ds, metric, level, "global")
            self.last[name] = (est, se, support)
            if name not in self.reached and target_met(est, se, support, hi, self.chunk, self.target):
                self.reached[name] = {"draws": hi, "seconds": self.sim, "estimate": est, "se": se,
                                      "rel_se": se / abs(est)}
        self.monitor += time.perf_counter() - t2

    def record(self) -> dict:
        out = {"mode": self.mode, "draws_run": self.n, "sim_seconds": self.sim, "pilot_seconds": self.pilot_seconds,
               "monitor_seconds": self.monitor, "draws_per_second": self.n / (self.sim - self.pilot_seconds),
               "metrics": {}}
        for name in METRICS:
            est, se, support = self.last[name]
            rel = se / abs(est) if est else np.inf
            out["metrics"][name] = {
                "reached": self.reached.get(name),
                "last": {"draws": self.n, "estimate": est, "se": se, "rel_se": rel, "support": support},
                "projected_seconds": self.sim * (rel / self.target) ** 2,
                "projected_draws": self.n * (rel / self.target) ** 2,
            }
        return out


def run_modes(modes: list[str], target: float, cap: int, chunk: int, seed: int) -> dict[str, dict]:
    """Prepare every mode, then advance the unfinished ones one chunk each in turn (round robin), so that a
    change in the machine's load falls on all of them alike."""
    runs = {m: ModeRun(m, target, cap, chunk, seed) for m in modes}
    while not all(r.done for r in runs.values()):
        for r in runs.values():
            if not r.done:
                r.step()
    return {m: r.record() for m, r in runs.items()}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", type=float, default=0.02, help="relative standard error to reach (default 0.02)")
    ap.add_argument("--cap", type=int, default=24_000, help="most draws per mode (default 24,000)")
    ap.add_argument("--chunk", type=int, default=128, help="draws per step (default 128 = simulation.chunk_draws)")
    ap.add_argument("--seed", type=int, default=20270101)
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    args = ap.parse_args(argv)
    print(f"running {', '.join(args.modes)}, interleaved chunk by chunk ...", flush=True)
    rows = run_modes(args.modes, args.target, args.cap, args.chunk, args.seed)
    print()
    print(f"Time to a {args.target:.0%} relative SE, default config, Global track, ten-year result "
          f"(seconds of simulation; draws in brackets; projected = t(n) (rel_se / target)^2)")
    print(f"{'metric':12s} {'mode':8s} {'reached at':>22s} {'projected':>12s} {'estimate':>16s} {'rel SE':>8s}")
    for name in METRICS:
        for mode in args.modes:
            m = rows[mode]["metrics"][name]
            r = m["reached"]
            at = f"{r['seconds']:8.1f} s ({r['draws']:6d})" if r else f"{'not reached':>22s}"
            est = r["estimate"] if r else m["last"]["estimate"]
            rel = r["rel_se"] if r else m["last"]["rel_se"]
            print(f"{name:12s} {mode:8s} {at:>22s} {m['projected_seconds']:10.1f} s {est:16,.4g} {rel:8.2%}")
    ratios = {}
    for name in METRICS:
        def secs(mode: str, name: str = name) -> float:
            r = rows[mode]["metrics"][name]["reached"]
            return r["seconds"] if r else np.inf
        others = {m: secs(m) for m in args.modes if m != "plain"}
        best = min(others, key=others.get) if others else None
        if "plain" in rows and best is not None and np.isfinite(others[best]):
            ratios[name] = {"best_mode": best, "ratio": secs("plain") / others[best],
                            "projected_ratio": rows["plain"]["metrics"][name]["projected_seconds"]
                            / min(rows[m]["metrics"][name]["projected_seconds"] for m in others),
                            **{f"{m}_ratio": secs("plain") / others[m]
                               if np.isfinite(others[m]) and np.isfinite(secs("plain")) else None for m in others}}
            if not np.isfinite(ratios[name]["ratio"]):  # plain never reached the target: a lower bound
                ratios[name]["ratio"] = rows["plain"]["sim_seconds"] / others[best]
                ratios[name]["ratio_is_lower_bound"] = True
    print()
    print("plain time / best time (measured crossing; projected in brackets):")
    for name, r in ratios.items():
        print(f"  {name:12s} {r['ratio']:7.2f} x  ({r['projected_ratio']:.2f} x)  best = {r['best_mode']}; "
              + ", ".join(f"{k} {v:.2f}" for k, v in r.items()
                          if k.endswith("_ratio") and k != "projected_ratio" and v is not None)
              + (" (plain never reached it: a lower bound)" if r.get("ratio_is_lower_bound") else ""))
    record = {**provenance(), "target_rel_se": args.target, "cap": args.cap, "chunk": args.chunk, "seed": args.seed,
              "config": "configs/default.toml", "modes": rows, "ratios": ratios,
              "time_to_precision_ratio": ratios.get("VaR99.5", {}).get("ratio"),
              "command": "python benchmarks/time_to_precision.py " + " ".join(argv or sys.argv[1:])}
    write_result("time_to_precision", record)
    return record


if __name__ == "__main__":
    main()
