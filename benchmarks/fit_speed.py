"""Speed of ``leadsim fit`` on a large beneficiary-year panel (issue 12: 1,000,000 beneficiary-years, target
under 30 s on 2 cores).

Usage
-----
::

    python benchmarks/fit_speed.py                       # ~1,000,000 beneficiary-years (333,334 x 3 years)
    python benchmarks/fit_speed.py --beneficiaries 50000 --no-json

The panel is made once by ``leadsim synth-panel``'s code from ``configs/default.toml`` (the aligned count set
to ``--beneficiaries``, 3 years) and written as CSV (and Parquet when pyarrow is installed). Rows timed, each
the best of ``--reps``:

- **read + validate**: :func:`leadsim.fit.panel.read_panel` of the CSV (and of the Parquet file);
- **fit**: :func:`leadsim.fit.estimate.fit_panel` (all populations, SEs, goodness of fit);
- **write**: :func:`leadsim.fit.write.fitted_toml` and the config's validation.

The load average (``os.getloadavg``, as ``uptime`` prints it) before and after the fit is in the table and the
JSON: the machine is shared, and the time depends on it. Output: a table on stdout and
``benchmarks/results/fit_speed-<UTC timestamp>-<commit>.json``. Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

from _common import best_of, provenance, write_result

import leadsim
from leadsim.config import LeadsimWarning
from leadsim.fit.estimate import fit_panel
from leadsim.fit.panel import read_panel
from leadsim.fit.synth import panel_frame, write_panel
from leadsim.fit.write import fitted_config

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> dict:
    """Time reading, fitting and writing; print the table; write the JSON (unless ``--no-json``)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--beneficiaries", type=int, default=333_334)
    ap.add_argument("--years", type=int, default=3)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--no-json", action="store_true", help="do not write benchmarks/results/*.json")
    args = ap.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LeadsimWarning)
        cfg = leadsim.load_config(ROOT / "configs" / "default.toml",
                                  overrides={"aco.beneficiaries": args.beneficiaries})
        t0 = time.perf_counter()
        df = panel_frame(cfg, years=args.years)
        t_make = time.perf_counter() - t0
    rows: list[tuple[str, float]] = [("make panel (synth-panel, not part of fit)", t_make)]
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "panel.csv"
        write_panel(df, csv)
        t_read, panel = best_of(lambda: read_panel(csv), args.reps)
        rows.append(("read + validate CSV", t_read))
        try:
            import pyarrow  # noqa: F401

            pq = Path(tmp) / "panel.parquet"
            write_panel(df, pq)
            rows.append(("read + validate Parquet", best_of(lambda: read_panel(pq), args.reps)[0]))
        except ImportError:
            pass
    load_before = os.getloadavg()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LeadsimWarning)
        t_fit, result = best_of(lambda: fit_panel(panel, base=cfg), args.reps)
        rows.append(("fit (all populations, SEs, goodness of fit)", t_fit))
        t_write, _ = best_of(lambda: fitted_config(result, cfg), args.reps)
        rows.append(("write + validate the fitted config", t_write))
    load_after = os.getloadavg()
    total = t_read + t_fit + t_write
    rows.append(("total: read CSV + fit + write", total))
    print(f"leadsim fit speed: {panel.n_rows:,} beneficiary-years, {panel.n_bene:,} beneficiaries, "
          f"{os.cpu_count()} CPUs; load average (1/5/15 min) {_load(load_before)} before the fit, "
          f"{_load(load_after)} after")
    for label, sec in rows:
        print(f"  {label:48} {sec:8.2f} s")
    print(result.summary())
    record = {
        "benchmark": "fit_speed", "rows": panel.n_rows, "beneficiaries": panel.n_bene,
        "seconds": dict(rows), "target_seconds": 30.0,
        "load_average": {"before_fit": list(load_before), "after_fit": list(load_after)},
        **provenance(),
    }
    if not args.no_json:
        write_result("fit_speed", record)
    return record


def _load(avg: tuple[float, float, float]) -> str:
    return " ".join(f"{v:.2f}" for v in avg)


if __name__ == "__main__":
    main()
