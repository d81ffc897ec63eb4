"""leadsim speed and memory benchmark: one command, one run, ratios from the same run.

Usage
-----
::

    python benchmarks/run.py                 # full run (about 10 minutes on 2 cores)
    python benchmarks/run.py --quick         # smaller workloads, same tables
    python benchmarks/run.py --kernel-only   # speed rows and threads only
    python benchmarks/run.py --memory-only   # self-check and memory rows only
    python benchmarks/run.py --self-check    # only prove the memory measurement can fail (exit 1 if it does)
    python benchmarks/run.py --draws 64 --reps 7 --mem-draws 1000 10000 100000

The leadsim measured is the one in this checkout (its root is put first on ``sys.path``), not an installed copy.

What it measures (default ACO profile, ``configs/default.toml``: 10,000 beneficiaries, 10 years, deaths, exits,
entrants, population transitions, Pareto tail; the "all features" row also turns the stop-loss on):

- **floor**: :func:`leadsim.model._kernel.floor_chunk`, one keyed lognormal per beneficiary-year, summed, parallel
  over draws on every core, same keyed SplitMix64 generator and Box-Muller transform as the engine;
- **numpy reference**: :func:`leadsim.testing.reference.reference_chunk`, the vectorised numpy twin of the kernel
  (same table-lookup marginal, same banded stop-loss), one draw at a time, single-threaded as numpy is;
- **leadsim kernel**: :func:`leadsim.model.cohort.run_cohort` (``cohort_chunk``, parallel over draws), default
  config and with ``policy.stop_loss.enabled = true``;
- **leadsim end to end**: :func:`leadsim.engine.run_draws` into a sink that discards (macro drivers, kernel,
  benchmark and settlement per chunk; the draw-independent model is built before timing).

Timings are the best of ``--reps`` repetitions, interleaved (floor, kernel, kernel + stop-loss, ...) so
that the ratios come from the same moments of a noisy shared machine.

Memory is measured inside each worker, a fresh ``python benchmarks/run.py --worker ...`` process, from
``/proc/self/status``: the resident set ``VmRSS`` once after the imports (the *baseline*) and the kernel's
high-water mark of this process's resident set ``VmHWM`` at the worker's end (the *peak*); *increment* =
peak - baseline, the most memory the work itself held resident at any moment. The
parent's ``ru_maxrss`` of the child (``wait4``) is recorded beside it only to show why it is not used: it
carries the parent's high-water mark across fork/exec. ``--self-check`` proves the measurement can fail: a
worker that allocates, touches and holds 500 MiB must read an increment of at least 500 MiB; one that frees
them before the reading at least 499 MiB (the kernel records a freed peak from per-CPU RSS counters, a few
hundred KiB coarse); an idle worker less than 50 MiB. Memory rows, each in a fresh worker:

- streaming 1,000 / 10,000 / 100,000 draws with ``run_draws`` into a sink that discards, into a Zarr store
  (:class:`leadsim.io.zarrstore.ZarrSink`) and into netCDF (:class:`leadsim.io.sink.NetCDFSink`, which by
  design gathers the whole run in memory and writes it at the end), on a 500-beneficiary cohort (100,000
  draws of the default 10,000-beneficiary ACO would be 1e10 beneficiary-years);
- a 100,000-beneficiary ACO (256 draws, two chunks), discarding and into Zarr;
- cold start: a new process that imports leadsim and runs a 100-draw default ``leadsim.simulate``, with an
  empty numba cache (``NUMBA_CACHE_DIR`` and ``LEADSIM_CACHE_DIR`` pointed at fresh temp dirs) and warm;
- 1 vs 2 threads (``NUMBA_NUM_THREADS``) for the kernel and the floor.

Output: tables on stdout and ``benchmarks/results/<timestamp>-<commit>.json`` (keys ``ratio_to_floor`` and
``ratio_to_numpy`` for the all-features kernel, plus every row, machine info, load, git commit, timestamp).
Never used as a pass/fail test of speed: timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
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
if str(ROOT) not in sys.path:  # measure this checkout's leadsim, not whichever copy is installed
    sys.path.insert(0, str(ROOT))

MIB = 1024.0 * 1024.0
SELF_CHECK_MIB = 500
IDLE_LIMIT_MIB = 50.0
FREED_TOLERANCE_MIB = 1.0


# ---------------------------------------------------------------------------------------------------------
# memory of this process
# ---------------------------------------------------------------------------------------------------------
def proc_status() -> dict[str, float]:
    """``VmHWM`` (peak resident set) and ``VmRSS`` (current) of this process, in MiB, from /proc/self/status."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0]) / 1024.0  # kB
    return out


def _import_all() -> None:
    """What every memory worker imports before its baseline (so that baselines compare)."""
    import dask.array  # noqa: F401
    import h5netcdf  # noqa: F401
    import numba  # noqa: F401
    import numpy  # noqa: F401
    import xarray  # noqa: F401
    import zarr  # noqa: F401

    import leadsim  # noqa: F401
    from leadsim import engine  # noqa: F401
    from leadsim.io import sink, zarrstore  # noqa: F401
    from leadsim.model import _kernel, cohort  # noqa: F401
    from leadsim.testing import reference  # noqa: F401


class DiscardSink:
    """A :class:`~leadsim.io.sink.Sink` that keeps nothing (counts the bytes it is handed)."""

    def __init__(self) -> None:
        self.bytes = 0

    def open(self, cfg, header, chunks):
        return list(chunks)

    def save_chunk(self, start, stop, arrays):
        self.bytes += sum(v.nbytes for v in arrays.values())

    def close(self):
        pass

    def abort(self):
        pass


class CountingSink:
    """Wraps a sink and counts the bytes of the chunk arrays it is handed (the size of the run's data)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.bytes = 0

    def open(self, cfg, header, chunks):
        return self.inner.open(cfg, header, chunks)

    def save_chunk(self, start, stop, arrays):
        self.bytes += sum(v.nbytes for v in arrays.values())
        self.inner.save_chunk(start, stop, arrays)

    def close(self):
        self.inner.close()

    def abort(self):
        self.inner.abort()


def _disk_mib(path: Path) -> float:
    """Bytes on disk of a file or store folder, in MiB (``os.walk``: ``Path.rglob`` over the ~20,000 files of a
    100,000-draw Zarr store itself peaks at +27 MiB)."""
    if path.is_file():
        return path.stat().st_size / MIB
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files) / MIB


# ---------------------------------------------------------------------------------------------------------
# workers (run in subprocesses: ``python benchmarks/run.py --worker NAME ARGS``)
# ---------------------------------------------------------------------------------------------------------
def _config(overrides: dict):
    import leadsim
    from leadsim.errors import LeadsimWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LeadsimWarning)
        return leadsim.load_config(DEFAULT_TOML, overrides=overrides)


def _inputs(overrides: dict, n_draws: int):
    import numpy as np

    from leadsim.model.cohort import cohort_model, realised_means
    from leadsim.model.drivers import macro_paths

    cfg = _config(overrides)
    model = cohort_model(cfg)
    draws = np.arange(n_draws, dtype=np.int64)
    mean, scale = realised_means(model, macro_paths(cfg, draws))
    return cfg, model, draws, mean, scale


def _bench_fns(n_draws: int, n_numpy: int) -> dict:
    """Callables for each row, and the beneficiary-years each call simulates."""
    import numpy as np

    from leadsim.engine import run_draws
    from leadsim.model import _kernel
    from leadsim.model.cohort import run_cohort
    from leadsim.testing.reference import reference_chunk

    cfg, model, draws, mean, scale = _inputs({}, n_draws)
    _, model_sl, _, mean_sl, scale_sl = _inputs({"policy.stop_loss.enabled": True}, n_draws)
    n_years = cfg.simulation.years
    per_draw = int(model.kernel.target.sum())  # aligned beneficiary-years per draw
    out = np.zeros(n_draws)
    sigma = cfg.population.aged_disabled.sigma
    cfg_e2e = _config({"simulation.draws": n_draws, "policy.stop_loss.enabled": True})

    def floor():
        _kernel.floor_chunk(model.kernel.seed, draws, model.n_slots, n_years, sigma, out)

    def kernel():
        run_cohort(model, draws, mean, scale)

    def kernel_sl():
        run_cohort(model_sl, draws, mean_sl, scale_sl)

    def numpy_ref():
        reference_chunk(model_sl.kernel, draws[:n_numpy], mean_sl[:n_numpy], scale_sl[:n_numpy])

    def end_to_end():
        run_draws(cfg_e2e, DiscardSink(), progress=False)

    floor_by = n_draws * model.n_slots * n_years
    return {
        "floor": (floor, floor_by),
        "kernel_default": (kernel, n_draws * per_draw),
        "kernel_all_features": (kernel_sl, n_draws * per_draw),
        "numpy_reference": (numpy_ref, n_numpy * per_draw),
        "end_to_end": (end_to_end, n_draws * per_draw),
    }


def worker_rss(name: str, n_draws: int, n_numpy: int) -> dict:
    """Run one speed row once (after building its inputs); the memory wrapper reports the peak."""
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


def worker_stream(sink_kind: str, n_draws: int, beneficiaries: int) -> dict:
    """Stream ``n_draws`` draws into a sink (``discard``, ``zarr`` or ``netcdf``); files go to a temp dir."""
    from leadsim.engine import run_draws
    from leadsim.io.sink import NetCDFSink
    from leadsim.io.zarrstore import ZarrSink

    cfg = _config({"simulation.draws": n_draws, "aco.beneficiaries": beneficiaries})
    with tempfile.TemporaryDirectory(prefix="leadsim-bench-") as tmp:
        target = Path(tmp) / {"discard": "none", "zarr": "run.zarr", "netcdf": "run.nc"}[sink_kind]
        inner = {"discard": DiscardSink, "zarr": lambda: ZarrSink(target),
                 "netcdf": lambda: NetCDFSink(target)}[sink_kind]()
        sink = CountingSink(inner)
        t0 = time.perf_counter()
        run_draws(cfg, sink, progress=False)
        seconds = time.perf_counter() - t0
        status = proc_status()  # the run's peak, before the harness sizes and removes the output
        disk = _disk_mib(target) if target.exists() else 0.0
    return {"seconds": seconds, "data_mib": sink.bytes / MIB, "disk_mib": disk, "_status": status}


_KEEP: list = []


def worker_alloc(mib: int, hold: int) -> dict:
    """Allocate and touch ``mib`` MiB (the self-check; 0 is the idle control).

    ``hold=1`` keeps the array alive until the peak is read; ``hold=0`` frees it first, as a real run frees
    its transient peaks (the kernel then records the high-water mark at ``munmap`` from its per-CPU RSS
    counters, which may lag by a fraction of a MiB).
    """
    import numpy as np

    a = np.ones(int(mib) * 1024 * 1024 // 8)  # np.ones writes every page, so all of it is resident
    if hold:
        _KEEP.append(a)
    return {"allocated_mib": a.nbytes / MIB, "held": bool(hold)}


def worker_cold(n_draws: int) -> dict:
    """A new process: import leadsim and run a default ``simulate`` of ``n_draws`` draws."""
    t0 = time.perf_counter()
    import leadsim

    t1 = time.perf_counter()
    cfg = _config({"simulation.draws": n_draws})
    leadsim.simulate(cfg, progress=False)
    t2 = time.perf_counter()
    return {"import_s": t1 - t0, "run_s": t2 - t1}


# name: (function, whether to import everything and read the baseline before it runs)
WORKERS = {"rss": (worker_rss, True), "threads": (worker_threads, False), "stream": (worker_stream, True),
           "alloc": (worker_alloc, True), "cold": (worker_cold, False)}


def run_worker(name: str, args: list) -> dict:
    """Body of a worker process: baseline after imports, the work, then this process's own peak."""
    fn, measure = WORKERS[name]
    base = None
    if measure:
        _import_all()
        gc.collect()  # the import garbage is freed before the baseline, not during the work
        base = proc_status()
    res = dict(fn(*args))
    exit_status = proc_status()
    end = res.pop("_status", None) or exit_status  # a worker may read its peak before its own clean-up
    res.update(peak_mib=end["VmHWM"], rss_end_mib=end["VmRSS"], worker_exit_peak_mib=exit_status["VmHWM"],
               pid=os.getpid())
    if base is not None:
        # the increment is measured from the resident set after imports: VmHWM at that moment can sit a little
        # above it (import-time transients already freed), which would under-count what the work adds
        res.update(baseline_mib=base["VmRSS"], baseline_hwm_mib=base["VmHWM"],
                   increment_mib=end["VmHWM"] - base["VmRSS"])
    return res


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _spawn(args: list[str], env: dict | None = None) -> tuple[dict, float]:
    """Run a worker in a fresh process; returns (its JSON result, wall seconds).

    The result also gets ``ru_maxrss_mib``, the child's ``ru_maxrss`` as the parent sees it (``wait4``),
    kept only as evidence: it includes the high-water mark the child inherits from this process.
    """
    e = dict(os.environ)
    e.update(env or {})
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e, cwd=ROOT)
    out, err = p.communicate()
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{err.decode()}")
    res = json.loads(out.decode().strip().splitlines()[-1])
    return res, wall


def _spawn_rusage(args: list[str], env: dict | None = None) -> tuple[dict, float]:
    """:func:`_spawn` with the parent's ``wait4`` view of the child's ``ru_maxrss`` added (for the record)."""
    e = dict(os.environ)
    e.update(env or {})
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe:
        p = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", *args],
                             stdout=fo, stderr=fe, env=e, cwd=ROOT)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read().decode(), fe.read().decode()
    if p.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{err}")
    res = json.loads(out.strip().splitlines()[-1])
    res["ru_maxrss_mib"] = ru.ru_maxrss / 1024.0
    return res, wall


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

    return {"commit": run("rev-parse", "HEAD"), "branch": run("rev-parse", "--abbrev-ref", "HEAD"),
            "dirty": bool(run("status", "--porcelain", "--", "leadsim", "benchmarks/run.py"))}


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def self_check() -> dict:
    """Prove the memory measurement can fail (see the module docstring); ``passed`` only if every case holds.

    - a worker holding 500 MiB at the end must read an increment >= 500 MiB;
    - a worker that allocated 500 MiB and freed it must read >= 500 MiB - ``FREED_TOLERANCE_MIB`` (the
      high-water mark of freed memory is recorded from the kernel's per-CPU RSS counters, a few hundred KiB
      coarse);
    - an idle worker (same imports, nothing allocated) must read < 50 MiB.
    """
    parent = proc_status()
    cases = {"idle": _spawn_rusage(["alloc", "0", "0"])[0],
             "held": _spawn_rusage(["alloc", str(SELF_CHECK_MIB), "1"])[0],
             "freed": _spawn_rusage(["alloc", str(SELF_CHECK_MIB), "0"])[0]}
    checks = {"held": cases["held"]["increment_mib"] >= SELF_CHECK_MIB,
              "freed": cases["freed"]["increment_mib"] >= SELF_CHECK_MIB - FREED_TOLERANCE_MIB,
              "idle": cases["idle"]["increment_mib"] < IDLE_LIMIT_MIB}
    rules = {"held": f">= {SELF_CHECK_MIB}", "freed": f">= {SELF_CHECK_MIB - FREED_TOLERANCE_MIB:g}",
             "idle": f"< {IDLE_LIMIT_MIB:g}"}
    out = {"parent_vmhwm_mib": parent["VmHWM"], "alloc_mib": SELF_CHECK_MIB, "cases": cases, "checks": checks,
           "rules_mib": rules, "passed": all(checks.values())}
    print(f"memory self-check (this parent's VmHWM {parent['VmHWM']:.1f} MiB):")
    for k, r in cases.items():
        label = "idle worker" if k == "idle" else f"{SELF_CHECK_MIB} MiB, {k}"
        print(f"  {label:16s} baseline {r['baseline_mib']:7.2f}  peak {r['peak_mib']:7.2f}  increment "
              f"{r['increment_mib']:7.2f} MiB  (must be {rules[k]:>6s}: {'ok' if checks[k] else 'FAIL'})   "
              f"parent's wait4 ru_maxrss {r['ru_maxrss_mib']:6.1f} MiB")
    print(f"  -> {'PASSED' if out['passed'] else 'FAILED'}", flush=True)
    return out


def speed_section(a) -> dict:
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
    peak = {k: _spawn(["rss", k, str(a.draws), str(a.numpy_draws)])[0] for k in fns}
    threads = {n: _spawn(["threads", str(a.draws), str(max(3, a.reps // 2))], {"NUMBA_NUM_THREADS": str(n)})[0]
               for n in (1, 2)}

    ref_floor, ref_np = speed["floor"], speed["numpy_reference"]
    labels = {"floor": "floor (keyed lognormal, all cores)",
              "numpy_reference": "numpy reference (1 thread)",
              "kernel_default": "leadsim kernel, default config",
              "kernel_all_features": "leadsim kernel, all features (+stop-loss)",
              "end_to_end": "leadsim run_draws end to end (+stop-loss)"}
    rows = []
    print()
    print(f"{'row':44s} {'bene-years/s':>14s} {'x floor':>8s} {'x numpy':>8s} {'peak':>9s} {'incr.':>8s}")
    for k in ("floor", "numpy_reference", "kernel_default", "kernel_all_features", "end_to_end"):
        m = peak[k]
        r = {"row": k, "bene_years_per_s": speed[k], "ratio_to_floor": speed[k] / ref_floor,
             "ratio_to_numpy": speed[k] / ref_np, "peak_mib": m["peak_mib"], "baseline_mib": m["baseline_mib"],
             "increment_mib": m["increment_mib"], "times_s": times[k]}
        rows.append(r)
        print(f"{labels[k]:44s} {speed[k]:14.4g} {r['ratio_to_floor']:8.3f} {r['ratio_to_numpy']:8.2f} "
              f"{m['peak_mib']:5.0f} MiB {m['increment_mib']:4.0f} MiB")
    print(f"{'kernel all features / floor, median of paired repetitions':58s} {paired_median:8.3f}")
    print()
    t1, t2 = threads[1], threads[2]
    print("threads (NUMBA_NUM_THREADS)      1 thread      2 threads   speed-up")
    for k in ("floor", "kernel_all_features"):
        print(f"  {k:28s} {t1[k]:12.4g} {t2[k]:12.4g} {t2[k] / t1[k]:9.2f}")
    print(f"  kernel / floor               {t1['kernel_all_features'] / t1['floor']:12.3f} "
          f"{t2['kernel_all_features'] / t2['floor']:12.3f}", flush=True)
    head = next(r for r in rows if r["row"] == "kernel_all_features")
    return {"ratio_to_floor": head["ratio_to_floor"], "ratio_to_numpy": head["ratio_to_numpy"],
            "ratio_to_floor_paired_median": paired_median, "rows": rows,
            "threads": {str(k): v for k, v in threads.items()}}


def memory_section(a) -> dict:
    print()
    print("memory: VmHWM read inside each fresh worker; baseline after imports, peak at the end")
    print(f"  {'sink':8s} {'draws':>7s} {'benes':>7s} {'baseline':>9s} {'peak':>9s} {'increment':>10s} "
          f"{'data':>9s} {'on disk':>9s} {'seconds':>8s} {'load':>5s}")
    rows = []
    plan = [(s, n, a.mem_beneficiaries) for s in a.mem_sinks for n in a.mem_draws]
    plan += [(s, a.aco_draws, a.aco_beneficiaries) for s in ("discard", "zarr")]
    for sink, n, bene in plan:
        res, wall = _spawn_rusage(["stream", sink, str(n), str(bene)])
        r = {"sink": sink, "draws": n, "beneficiaries": bene, "wall_s": wall, "load_after": _load(), **res}
        rows.append(r)
        print(f"  {sink:8s} {n:7d} {bene:7d} {r['baseline_mib']:7.1f}M {r['peak_mib']:7.1f}M "
              f"{r['increment_mib']:8.1f}M {r['data_mib']:7.1f}M {r['disk_mib']:7.1f}M {r['seconds']:8.1f} "
              f"{r['load_after'][0]:5.2f}", flush=True)
    return {"method": "VmHWM from /proc/self/status inside a fresh `python benchmarks/run.py --worker` process; "
                      "baseline after imports, peak at the worker's end; increment = peak - baseline",
            "rows": rows}


def cold_section() -> dict:
    cold = {}
    with tempfile.TemporaryDirectory() as nc, tempfile.TemporaryDirectory() as lc:
        env = {"NUMBA_CACHE_DIR": nc, "LEADSIM_CACHE_DIR": lc}
        for label in ("cold cache", "warm cache"):
            res, wall = _spawn(["cold", "100"], env)
            cold[label] = {"wall_s": wall, **res}
    print()
    print("start-up: new process, import leadsim + 100-draw default simulate")
    for label, c in cold.items():
        print(f"  {label:10s} wall {c['wall_s']:6.2f} s  (import {c['import_s']:.2f} s, run {c['run_s']:.2f} s, "
              f"peak {c['peak_mib']:.0f} MiB)")
    return cold


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--draws", type=int, default=64, help="draws per timed call (default 64 = 6.4e6 bene-years)")
    ap.add_argument("--numpy-draws", type=int, default=2, help="draws per numpy reference call (default 2)")
    ap.add_argument("--reps", type=int, default=7, help="interleaved repetitions; best is kept (default 7)")
    ap.add_argument("--mem-draws", type=int, nargs="+", default=[1000, 10_000, 100_000])
    ap.add_argument("--mem-beneficiaries", type=int, default=500)
    ap.add_argument("--mem-sinks", nargs="+", default=["discard", "zarr", "netcdf"],
                    choices=["discard", "zarr", "netcdf"])
    ap.add_argument("--aco-beneficiaries", type=int, default=100_000)
    ap.add_argument("--aco-draws", type=int, default=256)
    ap.add_argument("--quick", action="store_true", help="small workloads (draws 16, reps 3, mem 1e3/1e4/3e4)")
    ap.add_argument("--kernel-only", action="store_true", help="speed rows and threads only")
    ap.add_argument("--memory-only", action="store_true", help="memory self-check and memory rows only")
    ap.add_argument("--self-check", action="store_true", help="only the memory self-check; exit 1 if it fails")
    ap.add_argument("--no-json", action="store_true", help="do not write benchmarks/results/*.json")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        name, *rest = a.worker
        res = run_worker(name, [int(x) if x.lstrip("-").isdigit() else x for x in rest])
        print(json.dumps(res))
        return res
    if a.quick:
        a.draws, a.reps, a.mem_draws, a.aco_draws = 16, 3, [1000, 10_000, 30_000], 128
    if a.self_check:
        check = self_check()
        if not check["passed"]:
            sys.exit(1)
        return check

    load_before = _load()
    t_start = time.perf_counter()
    print(f"leadsim benchmark: load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} "
          f"on {os.cpu_count()} cores", flush=True)
    result: dict = {}
    sections = []
    if not a.memory_only:
        result.update(speed_section(a))
        sections.append("speed")
    if not a.kernel_only:
        check = self_check()
        result["memory"] = {"self_check": check, **memory_section(a)}
        sections.append("memory")
        if not a.memory_only:
            result["cold_start"] = cold_section()
            sections.append("cold")
    load_after = _load()
    print(f"\nload average {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
          f"{time.perf_counter() - t_start:.0f} s in all")

    now = _dt.datetime.now(_dt.UTC)
    git = _git()
    result.update({
        "sections": sections,
        "settings": {"draws": a.draws, "numpy_draws": a.numpy_draws, "reps": a.reps, "mem_draws": a.mem_draws,
                     "mem_beneficiaries": a.mem_beneficiaries, "mem_sinks": a.mem_sinks,
                     "aco_beneficiaries": a.aco_beneficiaries, "aco_draws": a.aco_draws,
                     "config": "configs/default.toml"},
        "machine": {**_machine(), "load_before": load_before, "load_after": load_after},
        "git": git,
        "timestamp": now.isoformat(timespec="seconds"),
        "command": " ".join(["python", "benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])]),
    })
    if not a.no_json:
        RESULTS.mkdir(parents=True, exist_ok=True)
        tag = "" if sections == ["speed", "memory", "cold"] else "-" + "-".join(sections)
        path = RESULTS / f"{now:%Y%m%dT%H%M%SZ}-{git['commit'][:8]}{tag}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(path)
        print(f"wrote {path.relative_to(ROOT)}")
    return result


if __name__ == "__main__":
    main()
