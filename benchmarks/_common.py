"""What every benchmark script records beside its figures: machine, commit, and one JSON file per run."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


def commit() -> str:
    """The short hash of the checkout's HEAD, or ``unknown`` outside git."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> dict:
    """CPU count, platform and Python version."""
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]}


def provenance() -> dict:
    """The fields every result file carries: machine, leadsim version, commit and UTC timestamp."""
    import leadsim

    return {"machine": machine(), "leadsim_version": leadsim.__version__, "commit": commit(),
            "timestamp": _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")}


def best_of(fn: Callable[[], object], reps: int) -> tuple[float, object]:
    """The shortest wall time of ``reps`` calls of ``fn`` and the last call's result."""
    best, out = float("inf"), None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def write_result(name: str, record: dict) -> Path:
    """Write ``record`` to ``benchmarks/results/<name>-<timestamp>-<commit>.json`` and print where."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}-{record['timestamp']}-{record['commit']}.json"
    out.write_text(json.dumps(record, indent=1))
    print(f"Wrote {out.relative_to(ROOT)}")
    return out
