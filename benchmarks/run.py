"""leadsim speed and memory benchmark: one command, one run, ratios from the same run.

Usage
-----
::

    python benchmarks/run.py                 # full run (about 3-6 minutes on 2 cores)
    python benchmarks/run.py --quick         # smaller workloads (about 1 minute), same table
    python benchmarks/run.py --draws 64 --reps 7 --mem-draws 1000 10000 100000

What it measures (default ACO profile, ``configs/default.toml``: 10,000 beneficiaries, 10 years, deaths, exits,
entrants, population transitions, Pareto tail; the "all features" row also turns the stop-loss on):

- **floor**: :func:`leadsim.model._kernel.floor_chunk`, one keyed lognormal per beneficiary-year, summed, parallel
  over draws on every core, same keyed SplitMix64 generator and Box-Muller transform as the engine;
- **numpy reference**: :func:`leadsim.testing.reference.reference_chunk`, the vectorised numpy twin of the kernel
  (same table-lookup marginal, same banded stop-loss), one draw at a time, single-threaded as numpy is;
- **leadsim kernel**: :func:`leadsim.engine.run_cohort` (``cohort_chunk``, parallel over draws), default
  config and with ``policy.stop_loss.enabled = true``;
- **leadsim end to end**: :func:`leadsim.engine.run_draws` with ``gather=False`` (macro drivers, kernel,
  benchmark and settlement per chunk; the draw-independent model is built before timing).

Timings are the best of ``--reps`` repetitions, interleaved (floor, kernel, kernel + stop-loss, ...) so
that the ratios come from the same moments of a noisy shared machine. Peak RSS of each row is measured in
its own fresh subprocess (``ru_maxrss`` from ``wait4``). Also measured, each in fresh subprocesses:

- peak memory streaming 1,000 / 10,000 / 100,000 draws with ``run_draws(cfg, gather=False)`` and an
  ``on_chunk`` that discards (on a 500-beneficiary cohort: 100,000 draws of the default 10,000-beneficiary
  ACO would be 1e10 beneficiary-years);
- cold start: a new process that imports leadsim and runs a 100-draw default ``leadsim.simulate``, with an
  empty numba cache (``NUMBA_CACHE_DIR`` and ``LEADSIM_CACHE_DIR`` pointed at fresh temp dirs) and warm;
- 1 vs 2 threads (``NUMBA_NUM_THREADS``) for the kernel and the floor.

Output: a table on stdout and ``benchmarks/results/<timestamp>-<commit>.json`` (keys ``ratio_to_floor`` and
``ratio_to_numpy`` for the all-features kernel, plus every row, machine info, load, git commit, timestamp).
Never used as a pass/fail test: timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TOML = ROOT / "configs" / "default.toml"
RESULTS = ROOT / "benchmarks" / "results"


# ---------------------------------------------------------------------------------------------------------
# workers (run in subprocesses: ``python benchmarks/run.py --worker NAME ARGS``)
# ---------------------------------------------------------------------------------------------------------
def _config(overrides: dict):
    import leadsim
    from leadsim.config import LeadsimWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LeadsimWarning)
        return leadsim.load_config(DEFAULT_TOML, overrides=overrides)


def _inputs(overrides: dict, n_draws: int):
    import numpy as np

    from leadsim import engine
    from leadsim.model.drivers import macro_paths

    cfg = _config(overrides)
    model = engine.cohort_model(cfg)
    draws = np.arange(n_draws, dtype=np.int64)
    mean, scale = engine.realised_means(model, macro_paths(cfg, draws))
    return cfg, model, draws, mean, scale


def _bench_fns(n_draws: int, n_numpy: int) -> dict:
    """Callables for each row, and the beneficiary-years each call simulates."""
    import numpy as np

    from leadsim import engine
    from leadsim.model import _kernel
    from leadsim.testing.reference import reference_chunk

    cfg, model, draws, mean, scale = _inputs({}, n_draws)
    _, model_sl, _, mean_sl, scale_sl = _inputs({"policy.stop_loss.enabled": True}, n_draws)
    n_years = cfg.simulation.years
    per_draw = int(model.target.sum())  # aligned beneficiary-years per draw
    out = np.zeros(n_draws)
    sigma = cfg.population.aged_disabled.sigma
    cfg_e2e = _config({"simulation.draws": n_draws, "policy.stop_loss.enabled": True})

    def floor():
        _kernel.floor_chunk(model.seed, draws, model.n_slots, n_years, sigma, out)

    def kernel():
        engine.run_cohort(model, draws, mean, scale)

    def kernel_sl():
        engine.run_cohort(model_sl, draws, mean_sl, scale_sl)

    def numpy_ref():
        reference_chunk(model_sl, draws[:n_numpy], mean_sl[:n_numpy], scale_sl[:n_numpy])

    def end_to_end():
        engine.run_draws(cfg_e2e, progress=False, gather=False, on_chunk=lambda lo, hi, res: None)

    floor_by = n_draws * model.n_slots * n_years
    return {
        "floor": (floor, floor_by),
        "kernel_default": (kernel, n_draws * per_draw),
        "kernel_all_features": (kernel_sl, n_draws * per_draw),
        "numpy_reference": (numpy_ref, n_numpy * per_draw),
        "end_to_end": (end_to_end, n_draws * per_draw),
    }


def worker_rss(name: str, n_draws: int, n_numpy: int) -> dict:
    """Run one row once after warm-up; the parent reads this process's peak RSS."""
    fns = _bench_fns(n_draws, n_numpy)
    fn, _ = fns[name]
    fn()
    return {}


def worker_threads(n_draws: int, reps: int) -> dict:
    """Kernel (all features) and floor speed with the thread count of this process."""
    import numba

    fns = _bench_fns(n_draws, 1)
    out = {"threads": numba.get_num_threads()}
    for name in ("floor", "kernel_all_features"):
        fn, by = fns[name]
        fn()
        best = min(_timed(fn) for _ in range(reps))
        out[name] = by / best
    return out


def worker_memory(n_draws: int, beneficiaries: int) -> dict:
    """Stream ``n_draws`` draws with nothing kept; the parent reads peak RSS."""
    from leadsim import engine

    cfg = _config({"simulation.draws": n_draws, "aco.beneficiaries": beneficiaries})
    t0 = time.perf_counter()
    engine.run_draws(cfg, progress=False, gather=False, on_chunk=lambda lo, hi, res: None)
    return {"seconds": time.perf_counter() - t0}


def worker_cold(n_draws: int) -> dict:
    """A new process: import leadsim and run a default ``simulate`` of ``n_draws`` draws."""
    t0 = time.perf_counter()
    import leadsim

    t1 = time.perf_counter()
    cfg = _config({"simulation.draws": n_draws})
    leadsim.simulate(cfg, progress=False)
    t2 = time.perf_counter()
    return {"import_s": t1 - t0, "run_s": t2 - t1}


WORKERS = {"rss": worker_rss, "threads": worker_threads, "memory": worker_memory, "cold": worker_cold}


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _spawn(args: list[str], env: dict | None = None) -> tuple[dict, float, float]:
    """Run a worker in a fresh process; returns (its JSON result, wall seconds, peak RSS in MiB)."""
    e = dict(os.environ)
    e.update(env or {})
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e, cwd=ROOT)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    out, err = p.stdout.read().decode(), p.stderr.read().decode()
    p.stdout.close()
    p.stderr.close()
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{err}")
    return json.loads(out.strip().splitlines()[-1]), wall, ru.ru_maxrss / 1024.0


# ---------------------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------------------
def _machine() -> dict:
    import numba
    import numpy as np

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu,
            "cpu_count": os.cpu_count(), "numba": numba.__version__, "numpy": np.__version__,
            "numba_threads": numba.config.NUMBA_NUM_THREADS}


def _git() -> dict:
    def run(*a):
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {"commit": run("rev-parse", "HEAD"), "dirty": bool(run("status", "--porcelain", "--", "leadsim"))}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--draws", type=int, default=64, help="draws per timed call (default 64 = 6.4e6 bene-years)")
    ap.add_argument("--numpy-draws", type=int, default=2, help="draws per numpy reference call (default 2)")
    ap.add_argument("--reps", type=int, default=7, help="interleaved repetitions; best is kept (default 7)")
    ap.add_argument("--mem-draws", type=int, nargs="+", default=[1000, 10_000, 100_000])
    ap.add_argument("--mem-beneficiaries", type=int, default=500)
    ap.add_argument("--quick", action="store_true", help="small workloads (draws 16, reps 3, mem 1e3/1e4/3e4)")
    ap.add_argument("--no-json", action="store_true", help="do not write benchmarks/results/*.json")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        name, *rest = a.worker
        res = WORKERS[name](*(int(x) if x.lstrip("-").isdigit() else x for x in rest))
        print(json.dumps(res))
        return res
    if a.quick:
        a.draws, a.reps, a.mem_draws = 16, 3, [1000, 10_000, 30_000]

    load_before = os.getloadavg()
    t_start = time.perf_counter()
    print(f"leadsim benchmark: load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} "
          f"on {os.cpu_count()} cores", flush=True)

    # 1. speed rows, interleaved in this process
    fns = _bench_fns(a.draws, a.numpy_draws)
    for fn, _ in fns.values():
        fn()  # compile / load caches, fault in tables
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(a.reps):
        for k, (fn, _) in fns.items():
            if k == "numpy_reference" and len(times[k]) >= 2:
                continue  # slow and stable: two repetitions are enough
            times[k].append(_timed(fn))
    speed = {k: fns[k][1] / min(v) for k, v in times.items()}
    # robustness check on a noisy machine: the kernel/floor ratio of each repetition (adjacent calls), median
    paired = sorted((fns["kernel_all_features"][1] / k) / (fns["floor"][1] / f)
                    for f, k in zip(times["floor"], times["kernel_all_features"], strict=True))
    paired_median = paired[len(paired) // 2]

    # 2. peak RSS of each row in a fresh process
    rss = {k: _spawn(["rss", k, str(a.draws), str(a.numpy_draws)])[2] for k in fns}

    # 3. threads
    threads = {n: _spawn(["threads", str(a.draws), str(max(3, a.reps // 2))], {"NUMBA_NUM_THREADS": str(n)})[0]
               for n in (1, 2)}

    # 4. memory scaling (streamed)
    memory = {}
    for n in a.mem_draws:
        res, wall, peak = _spawn(["memory", str(n), str(a.mem_beneficiaries)])
        memory[n] = {"peak_rss_mib": peak, "seconds": res["seconds"]}

    # 5. cold start: empty caches, then warm (same cache dirs, second process)
    cold = {}
    with tempfile.TemporaryDirectory() as nc, tempfile.TemporaryDirectory() as lc:
        env = {"NUMBA_CACHE_DIR": nc, "LEADSIM_CACHE_DIR": lc}
        for label in ("cold cache", "warm cache"):
            res, wall, peak = _spawn(["cold", "100"], env)
            cold[label] = {"wall_s": wall, **res, "peak_rss_mib": peak}
    load_after = os.getloadavg()

    # report
    ref_floor, ref_np = speed["floor"], speed["numpy_reference"]
    rows = []
    labels = {"floor": "floor (keyed lognormal, all cores)",
              "numpy_reference": "numpy reference (1 thread)",
              "kernel_default": "leadsim kernel, default config",
              "kernel_all_features": "leadsim kernel, all features (+stop-loss)",
              "end_to_end": "leadsim run_draws end to end (+stop-loss)"}
    print()
    print(f"{'row':44s} {'bene-years/s':>14s} {'x floor':>8s} {'x numpy':>8s} {'peak RSS':>10s}")
    for k in ("floor", "numpy_reference", "kernel_default", "kernel_all_features", "end_to_end"):
        r = {"row": k, "bene_years_per_s": speed[k], "ratio_to_floor": speed[k] / ref_floor,
             "ratio_to_numpy": speed[k] / ref_np, "peak_rss_mib": rss[k]}
        rows.append(r)
        print(f"{labels[k]:44s} {speed[k]:14.4g} {r['ratio_to_floor']:8.3f} {r['ratio_to_numpy']:8.2f} "
              f"{rss[k]:8.0f} MiB")
    print(f"{'kernel all features / floor, median of paired repetitions':58s} {paired_median:8.3f}")
    print()
    t1, t2 = threads[1], threads[2]
    print("threads (NUMBA_NUM_THREADS)      1 thread      2 threads   speed-up")
    for k in ("floor", "kernel_all_features"):
        print(f"  {k:28s} {t1[k]:12.4g} {t2[k]:12.4g} {t2[k] / t1[k]:9.2f}")
    print(f"  kernel / floor               {t1['kernel_all_features'] / t1['floor']:12.3f} "
          f"{t2['kernel_all_features'] / t2['floor']:12.3f}")
    print()
    print(f"memory, streamed run_draws(gather=False), {a.mem_beneficiaries} beneficiaries:")
    base = memory[a.mem_draws[0]]["peak_rss_mib"]
    for n, m in memory.items():
        print(f"  {n:>8d} draws  peak RSS {m['peak_rss_mib']:7.1f} MiB  ratio {m['peak_rss_mib'] / base:5.3f}  "
              f"({m['seconds']:.1f} s)")
    print()
    print("start-up: new process, import leadsim + 100-draw default simulate")
    for label, c in cold.items():
        print(f"  {label:10s} wall {c['wall_s']:6.2f} s  (import {c['import_s']:.2f} s, run {c['run_s']:.2f} s)")
    print(f"\nload average {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
          f"{time.perf_counter() - t_start:.0f} s in all")

    head = next(r for r in rows if r["row"] == "kernel_all_features")
    now = _dt.datetime.now(_dt.UTC)
    git = _git()
    result = {
        "ratio_to_floor": head["ratio_to_floor"],
        "ratio_to_numpy": head["ratio_to_numpy"],
        "ratio_to_floor_paired_median": paired_median,
        "rows": rows,
        "threads": {str(k): v for k, v in threads.items()},
        "memory": {"beneficiaries": a.mem_beneficiaries, **{str(k): v for k, v in memory.items()},
                   "ratio_max_to_min": max(m["peak_rss_mib"] for m in memory.values()) / base},
        "cold_start": cold,
        "settings": {"draws": a.draws, "numpy_draws": a.numpy_draws, "reps": a.reps, "config": "configs/default.toml"},
        "machine": {**_machine(), "load_before": load_before, "load_after": load_after},
        "git": git,
        "timestamp": now.isoformat(timespec="seconds"),
        "command": " ".join(["python", "benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    if not a.no_json:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{now:%Y%m%dT%H%M%SZ}-{git['commit'][:8]}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(path)
        print(f"wrote {path.relative_to(ROOT)}")
    return result


if __name__ == "__main__":
    main()
