"""Cost of the variance attribution (``leadsim attribute``) against one full run of the same config.

Usage
-----
::

    python benchmarks/attribution_cost.py                  # default config, 1,000 draws
    python benchmarks/attribution_cost.py --draws 2000 --reps 2 --no-json

Rows, each the best of ``--reps`` (tables come from the cache; numba's cache is warmed first):

- **simulate**: :func:`leadsim.simulate` of ``configs/default.toml`` (one kernel pass and the ledger);
- **source runs**: :func:`leadsim.attribution.source_runs`, the ``2^7 = 128`` subsets of sources (two kernel
  passes at unit cost level and 128 ledger passes, ``docs/model.md`` §6b);
- **Shapley + bootstrap**: :func:`leadsim.analysis.attribution.attribute_runs` with ``--boot`` resamples.

The ratio to ``simulate`` is what the linearity of spending in the cost level buys: 128 naive runs would cost
about 128 times ``simulate``. Output: a table on stdout and ``benchmarks/results/attribution_cost-<UTC
timestamp>-<commit>.json``. Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # measure the leadsim of this checkout

from _common import best_of, provenance, write_result  # noqa: E402

import leadsim  # noqa: E402
from leadsim.analysis.attribution import attribute_runs  # noqa: E402
from leadsim.attribution import source_runs  # noqa: E402
from leadsim.config import LeadsimWarning  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    """Time a full run, the 128 source runs and the Shapley step; print the table; write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--no-json", action="store_true", help="do not write benchmarks/results/*.json")
    args = ap.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LeadsimWarning)
        cfg = leadsim.load_config(ROOT / "configs" / "default.toml", overrides={"simulation.draws": args.draws})
        leadsim.simulate(cfg.model_copy(update={"simulation": cfg.simulation.model_copy(update={"draws": 8})}),
                         progress=False)   # warm numba's cache and the tables
        t_sim, _ = best_of(lambda: leadsim.simulate(cfg, progress=False), args.reps)
        t_src, runs = best_of(lambda: source_runs(cfg), args.reps)
        t_shap, _ = best_of(lambda: attribute_runs(runs, n_boot=args.boot), args.reps)
    rows = [("simulate (1 kernel pass + ledger)", t_sim), ("source runs (2 kernel passes + 128 ledgers)", t_src),
            (f"Shapley + {args.boot} bootstrap resamples", t_shap)]
    print(f"default config, {cfg.aco.beneficiaries:,} beneficiaries, {args.draws:,} draws, best of {args.reps}")
    print(f"{'row':48}{'seconds':>10}{'x simulate':>12}")
    for label, t in rows:
        print(f"{label:48}{t:>10.2f}{t / t_sim:>12.2f}")
    total = t_src + t_shap
    print(f"{'attribution total':48}{total:>10.2f}{total / t_sim:>12.2f}   (128 naive runs: ~128x)")
    record = {**provenance(), "draws": args.draws, "beneficiaries": cfg.aco.beneficiaries, "reps": args.reps,
              "boot": args.boot, "seconds": {"simulate": t_sim, "source_runs": t_src, "shapley": t_shap},
              "ratio_to_simulate": total / t_sim}
    if not args.no_json:
        write_result("attribution_cost", record)
    return record


if __name__ == "__main__":
    main()
