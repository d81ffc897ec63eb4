"""Warm start: a new process that imports leadsim and runs 100 default draws (numba and table caches warm).

Usage
-----
::

    python benchmarks/warm_start.py            # 7 fresh processes, median wall time, import-time breakdown
    python benchmarks/warm_start.py --reps 3

Each repetition is a fresh ``python -c`` process with this checkout first on ``PYTHONPATH``; the wall time
counts interpreter start, ``import leadsim``, ``load_config("configs/default.toml")`` and a 100-draw
``leadsim.simulate``. One warm-up process fills the numba and table caches first. A ``python -X importtime``
run lists the largest imports (cumulative microseconds; ``-X importtime`` itself adds some overhead). Writes
``benchmarks/results/warm_start-<timestamp>-<commit>.json`` with the key ``warm_start_s`` (median wall).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _common import provenance, write_result  # noqa: E402

CODE = """
import time, json, warnings
t0 = time.perf_counter()
import leadsim
t1 = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    cfg = leadsim.load_config("configs/default.toml", overrides={"simulation.draws": 100})
leadsim.simulate(cfg, progress=False)
t2 = time.perf_counter()
import sys
print(json.dumps({"import_s": t1 - t0, "run_s": t2 - t1,
                  "dask_imported": "dask" in sys.modules, "matplotlib_imported": "matplotlib" in sys.modules,
                  "scipy_stats_imported": "scipy.stats" in sys.modules, "pandas_imported": "pandas" in sys.modules}))
"""


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def one(extra: list[str] | None = None) -> tuple[float, dict, str]:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, *(extra or []), "-c", CODE], cwd=ROOT, env=_env(), capture_output=True,
                       text=True, check=True)
    wall = time.perf_counter() - t0
    import json

    return wall, json.loads(p.stdout.strip().splitlines()[-1]), p.stderr


def top_imports(stderr: str, k: int = 15) -> list[tuple[str, int]]:
    """The top-level (outermost) imports of a ``-X importtime`` log, by cumulative microseconds."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cum, name = line.split("|")
        if name.startswith(" ") and not name.startswith("  ") and cum.strip().isdigit():
            rows.append((name.strip(), int(cum)))
    return sorted(rows, key=lambda r: -r[1])[:k]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args(argv)
    one()  # warm the numba and table caches
    runs = [one() for _ in range(args.reps)]
    walls = [w for w, _, _ in runs]
    _, _, log = one(["-X", "importtime"])
    tops = top_imports(log)
    med = statistics.median(walls)
    print(f"warm start (new process: import leadsim + 100 default draws), {args.reps} runs, load "
          f"{os.getloadavg()[0]:.2f}")
    print(f"  wall median {med:.2f} s  (min {min(walls):.2f}, max {max(walls):.2f}); import median "
          f"{statistics.median(r['import_s'] for _, r, _ in runs):.2f} s, run median "
          f"{statistics.median(r['run_s'] for _, r, _ in runs):.2f} s")
    print("  modules loaded by the run: " + ", ".join(f"{k.removesuffix('_imported')} {'yes' if v else 'no'}"
                                                      for k, v in runs[0][1].items() if k.endswith("_imported")))
    print("  largest top-level imports (cumulative, -X importtime):")
    for name, us in tops:
        print(f"    {name:40s} {us / 1e3:8.1f} ms")
    record = {**provenance(), "warm_start_s": med, "walls_s": walls, "runs": [r for _, r, _ in runs],
              "top_imports_us": tops, "load_avg": os.getloadavg(),
              "command": "python benchmarks/warm_start.py " + " ".join(argv or sys.argv[1:])}
    write_result("warm_start", record)
    return record


if __name__ == "__main__":
    main()
