"""Dask overhead: the default profile on 2 dask workers vs 2 numba threads in one process.

Usage
-----
::

    python benchmarks/dask_overhead.py                # default profile, 1,000 draws, best of 3
    python benchmarks/dask_overhead.py --draws 2000 --reps 5 --chunk-draws 128
    python benchmarks/dask_overhead.py --no-json

Rows (every one runs ``configs/default.toml``: 10,000 beneficiaries, 10 years, ``--draws`` draws in chunks of
``simulation.chunk_draws``, and returns the full xarray Dataset):

- **1 process, 1 thread**: ``leadsim.simulate`` with ``simulation.threads = 1`` (context);
- **1 process, 2 threads**: ``leadsim.simulate`` with ``simulation.threads = 2`` (numba ``prange`` over the
  draws of a chunk);
- **2 dask workers x 1 thread**: :func:`leadsim.distributed.simulate_distributed` on a ``LocalCluster`` of
  two worker processes, numba with one thread each (the cluster is started once, before timing; its
  start-up time is reported separately).

The overhead is ``time(2 workers) / time(2 threads) - 1``. Timings are the best of ``--reps`` interleaved
repetitions after one warm-up of each row (numba caches loaded in every process), so the ratio compares the
same moments of a noisy shared machine. Every distributed result is checked bit-identical to the serial
one. Output: a table on stdout and ``benchmarks/results/dask_overhead-<UTC timestamp>-<commit>.json``.
Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import xarray as xr
from _common import provenance, write_result

import leadsim
from leadsim.config import LeadsimWarning
from leadsim.distributed import cluster, simulate_distributed

ROOT = Path(__file__).resolve().parent.parent


def _cfg(draws: int, threads: int, chunk: int) -> leadsim.Config:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LeadsimWarning)
        return leadsim.load_config(ROOT / "configs" / "default.toml", overrides={
            "simulation.draws": draws, "simulation.threads": threads, "simulation.chunk_draws": chunk})


def _timed(fn) -> tuple[float, xr.Dataset]:
    t0 = time.perf_counter()
    ds = fn()
    return time.perf_counter() - t0, ds


def _strip(ds: xr.Dataset) -> xr.Dataset:
    """Drop the attrs that differ by design: creation time and the config text (``threads`` differs)."""
    ds = ds.copy()
    ds.attrs.pop("created", None)
    ds.attrs.pop("config_toml", None)
    return ds


def main(argv: list[str] | None = None) -> dict:
    """Run the comparison, print the table and (unless ``--no-json``) write the JSON; return the record."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--draws", type=int, default=1000, help="draws per run (default 1000, the default profile)")
    ap.add_argument("--chunk-draws", type=int, default=128, help="simulation.chunk_draws (default 128)")
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions; best is reported (default 3)")
    ap.add_argument("--no-json", action="store_true", help="do not write benchmarks/results/*.json")
    args = ap.parse_args(argv)

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    with cluster(workers=2) as client:
        startup = time.perf_counter() - t0
        rows = {
            "1 process, 1 thread": lambda: leadsim.simulate(_cfg(args.draws, 1, args.chunk_draws), progress=False),
            "1 process, 2 threads": lambda: leadsim.simulate(_cfg(args.draws, 2, args.chunk_draws), progress=False),
            "2 dask workers x 1 thread": lambda: simulate_distributed(_cfg(args.draws, 1, args.chunk_draws), client),
        }
        # warm-up: numba caches and tables loaded in this process and in both workers
        for fn in (lambda: leadsim.simulate(_cfg(8, 2, 4), progress=False),
                   lambda: simulate_distributed(_cfg(8, 1, 4), client)):
            fn()
        times: dict[str, list[float]] = {k: [] for k in rows}
        reference = None
        for _ in range(args.reps):
            for name, fn in rows.items():
                secs, ds = _timed(fn)
                times[name].append(secs)
                if reference is None:
                    reference = _strip(ds)
                else:
                    xr.testing.assert_identical(_strip(ds), reference)
    load_after = os.getloadavg()

    by = 10_000 * 10 * args.draws
    best = {k: min(v) for k, v in times.items()}
    base = best["1 process, 2 threads"]
    overhead = best["2 dask workers x 1 thread"] / base - 1.0
    lines = [f"dask overhead, default profile: 10,000 beneficiaries x 10 years x {args.draws:,} draws "
             f"(chunks of {args.chunk_draws}), best of {args.reps}",
             f"{'row':30}{'seconds':>10}{'beneficiary-years/s':>22}{'vs 2 threads':>15}"]
    for name, secs in best.items():
        lines.append(f"{name:30}{secs:>10.2f}{by / secs:>22,.0f}{secs / base:>14.2f}x")
    lines.append(f"dask overhead (2 workers vs 2 threads): {overhead:+.1%}; LocalCluster start-up {startup:.1f} s "
                 "(not in the timings); results bit-identical: yes")
    lines.append(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} ({os.cpu_count()} cores)")
    print("\n".join(lines))

    record = {
        "benchmark": "dask_overhead",
        "profile": "configs/default.toml",
        "draws": args.draws, "chunk_draws": args.chunk_draws, "reps": args.reps,
        "beneficiary_years": by,
        "seconds_best": best, "seconds_all": times,
        "overhead_2workers_vs_2threads": overhead,
        "cluster_startup_seconds": startup,
        "bit_identical": True,
        "load_before": load_before, "load_after": load_after,
        **provenance(),
    }
    if not args.no_json:
        write_result("dask_overhead", record)
    return record


if __name__ == "__main__":
    main()
