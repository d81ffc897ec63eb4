"""Policy sweeps are cheap: K = 1 vs K = 20 spending-neutral options settled on one kernel pass.

Usage
-----
::

    python benchmarks/decide_sweep.py                # 256 draws of the default ACO, K = 1 and 20, best of 3
    python benchmarks/decide_sweep.py --quick        # 64 draws, best of 2
    python benchmarks/decide_sweep.py --draws 512 --options 40 --reps 5

The options differ only in ledger terms (the Global track's discount for a lower-spending ACO, from 1% to 5%), so
they share one kernel pass (:func:`leadsim.decide.options.cost_key`) and differ only in settlement. Rows:

- **shared, K options**: one kernel pass over all draws (:class:`leadsim.decide.evaluate.Evaluator`) and K
  settlements of every draw (``engine.settle_chunk``), as ``leadsim decide`` does;
- **separate, K options**: K full runs (``leadsim.simulate``), one kernel pass each, as running the options one by
  one would.

The ratio reported is time(shared, K = 20) / time(shared, K = 1) (near 1 when sweeps are cheap), beside the same
ratio of separate runs (near 20). Output: a table and ``benchmarks/results/decide_sweep-<timestamp>-<commit>.json``.
Timings are never asserted (the machine is shared).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _common import provenance, write_result

import leadsim
from leadsim.decide.evaluate import Evaluator
from leadsim.decide.options import Option, Variant, cost_key


def options_of(cfg: leadsim.Config, k: int) -> tuple[dict[str, Variant], list[Option]]:
    """K spending-neutral variants of the config's policy: the Global discount from 1% to 5%."""
    variants, options = {}, []
    for i, d in enumerate(np.linspace(0.01, 0.05, k) if k > 1 else [0.03]):
        v = leadsim.load_config(cfg, overrides={"policy.global.discount_lower": [float(d)],
                                                "policy.global.discount_higher": [float(d)]})
        variants[f"v{i}"] = Variant(f"v{i}", v, cost_key(v))
        options.append(Option(f"v{i}_global", f"Global, discount {d:.2%}", f"v{i}", "global"))
    return variants, options


def shared(cfg: leadsim.Config, k: int) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    variants, options = options_of(cfg, k)
    ev = Evaluator(variants, options)
    paths = ev.all_paths(0.0)
    elapsed = time.perf_counter() - t0
    assert ev.kernel_passes == 1
    return elapsed, np.stack([paths[o.name].cum for o in options], axis=1)


def separate(cfg: leadsim.Config, k: int) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    variants, _ = options_of(cfg, k)
    cums = [leadsim.simulate(v.cfg, progress=False).cumulative_settlement.sel(track="global").values
            for v in variants.values()]
    return time.perf_counter() - t0, np.stack(cums, axis=1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--draws", type=int, default=256)
    ap.add_argument("--options", type=int, default=20)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="64 draws, best of 2")
    ap.add_argument("--no-json", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.draws, args.reps = 64, 2
    warnings.simplefilter("ignore", leadsim.LeadsimWarning)
    cfg = leadsim.load_config("configs/default.toml", overrides={"simulation.draws": args.draws})
    leadsim.simulate(leadsim.load_config(cfg, overrides={"simulation.draws": 2}), progress=False)  # warm caches
    k = args.options
    rows: dict[str, list[float]] = {"shared_1": [], f"shared_{k}": [], "separate_1": [], f"separate_{k}": []}
    for _ in range(args.reps):  # interleaved, best of reps
        t1, _ = shared(cfg, 1)
        tk, ck = shared(cfg, k)
        s1, _ = separate(cfg, 1)
        sk, dk = separate(cfg, k)
        np.testing.assert_array_equal(ck, dk)  # the shared pass gives exactly the separate runs' numbers
        rows["shared_1"].append(t1)
        rows[f"shared_{k}"].append(tk)
        rows["separate_1"].append(s1)
        rows[f"separate_{k}"].append(sk)
    best = {key: min(v) for key, v in rows.items()}
    ratio = best[f"shared_{k}"] / best["shared_1"]
    ratio_sep = best[f"separate_{k}"] / best["separate_1"]
    print(f"decide sweep: default ACO, {args.draws} draws, best of {args.reps}")
    print(f"{'':28}{'K = 1':>10}{f'K = {k}':>10}{'ratio':>9}")
    print(f"{'shared kernel pass (s)':28}{best['shared_1']:>10.2f}{best[f'shared_{k}']:>10.2f}{ratio:>9.2f}")
    print(f"{'separate runs (s)':28}{best['separate_1']:>10.2f}{best[f'separate_{k}']:>10.2f}{ratio_sep:>9.2f}")
    print(f"K = {k} options: shared is {best[f'separate_{k}'] / best[f'shared_{k}']:.1f}x faster than separate runs, "
          "with identical results")
    if not args.no_json:
        write_result("decide_sweep", {**provenance(), "draws": args.draws, "options": k, "reps": args.reps,
                                      "seconds": rows, "best": best, "ratio": ratio, "ratio_separate": ratio_sep})
    return 0


if __name__ == "__main__":
    sys.exit(main())
