"""Command line: ``leadsim run | validate | report | compare | export | fit | synth-panel``.

Exit codes: 0 success, 2 invalid input (config, override, output path), 1 unexpected failure.
Flags mirror config keys; ``--set key=value`` overrides any key (values parsed as TOML literals).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from leadsim._version import __version__
from leadsim.analysis.formatting import money
from leadsim.config import Config, load_config
from leadsim.errors import ConfigError, DaskUnavailableError, LeadsimError, LeadsimWarning, StoreError
from leadsim.io.sink import is_zarr_path

if TYPE_CHECKING:  # pragma: no cover
    pass

__all__ = ["main"]


class UsageError(Exception):
    """Bad command-line input: reported on one line, exit code 2."""


class Interrupted(KeyboardInterrupt):
    """An interrupt whose message says what was kept (a Zarr run's finished chunks)."""


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in args.set or []:
        if "=" not in item:
            raise UsageError(f"--set {item!r}: expected key=value, e.g. --set simulation.draws=5000")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    for flag, key in (("draws", "simulation.draws"), ("seed", "simulation.seed"),
                      ("threads", "simulation.threads"), ("chunk_draws", "simulation.chunk_draws")):
        val = getattr(args, flag, None)
        if val is not None:
            out[key] = str(val)
    return out


def _load(args: argparse.Namespace) -> Config:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LeadsimWarning)
        cfg = load_config(args.config, overrides=_overrides(args))
    for w in caught:
        print(f"leadsim: warning: {w.message}", file=sys.stderr)
    return cfg


def _check_output(path: Path | str, *, inputs: Sequence[Path | str] = (), overwrite: bool = False,
                  folder: bool = False, flag: str = "-o") -> Path:
    """Refuse, before any work, an output that is an input, a device, or an existing result without --overwrite."""
    from leadsim.atomic import check_target

    out = check_target(path, inputs=inputs, overwrite=overwrite, folder=folder, flag=flag)
    parent = out.resolve().parent
    if not parent.is_dir():
        raise UsageError(f"{flag} {out}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{flag} {out}: folder {parent} is not writable")
    return out


def _money(x: float) -> str:
    return money(x, scale=None, minus="-", plus=" ")


MIN_DRAWS_1IN100 = 100
"""Fewest draws for which the summary shows 1-in-100 (99% quantile) rows."""


def _parameter_risk_lines(ds, tracks: list[str], n_years: int) -> list[str]:
    """With parameter draws: the parameter-risk share of the ten-year variance per track, with its SE."""
    from leadsim.analysis.formatting import percent
    from leadsim.analysis.parameter_risk import parameter_risk

    try:
        split = parameter_risk(ds)
    except ValueError:
        return ["(parameter draws: the parameter-risk share is not given for weighted draws; run with equally "
                "weighted draws for it)"]
    if split is None:
        return []
    return [f"{f'Parameter risk, % of {n_years}-yr var.':34}"
            + "".join(f"{percent(v, se):>16}" for v, se in zip(split.share, split.share_se, strict=True)),
            f"(parameter draws: {split.n_sets} parameter sets; law of total variance between/within sets, "
            f"Monte Carlo noise removed; ± is a jackknife SE)"]


def summary_text(ds) -> str:
    """A one-screen text summary of a run: per track, mean and 1-in-100 worst annual and ten-year results.

    Quantiles use the ``inverted_cdf`` method (the lower quantile) on the loss side (:mod:`leadsim.analysis.risk`).
    """
    from leadsim.analysis.risk import HORIZON, summarize, value_at_risk
    from leadsim.io.schema import config_of

    tracks = [str(t) for t in ds["track"].values]
    n = ds.sizes["draw"]
    years = ds["year"].values
    fg = float(ds["financial_guarantee"])
    rate = config_of(ds).policy.settlement.discount_rate
    total = "present value" if rate > 0 else "total"
    s = summarize(ds, levels=[0.99]).sel(level=0.99)
    hor = s.sel(period=HORIZON)
    worst_year = value_at_risk(ds["net_settlement"].min("year"), 0.99)["estimate"]
    rows = [
        ("Mean annual settlement", [float(s["mean"].drop_sel(period=HORIZON).sel(track=t).mean()) for t in tracks]),
        (f"1-in-100 PY{years[0]} settlement", [-float(s.VaR.sel(period=str(years[0]), track=t)) for t in tracks]),
        ("1-in-100 worst single year", [-float(worst_year.sel(track=t)) for t in tracks]),
        (f"Mean {len(years)}-year {total}", [float(hor["mean"].sel(track=t)) for t in tracks]),
        (f"1-in-100 {len(years)}-year {total}", [-float(hor.VaR.sel(track=t)) for t in tracks]),
    ]
    if n < MIN_DRAWS_1IN100:  # a 1-in-100 outcome needs at least 100 draws to be estimated at all
        rows = [r for r in rows if not r[0].startswith("1-in-100")]
    probs = [
        (f"P({len(years)}-year loss)", [float(hor.p_loss.sel(track=t)) for t in tracks]),
        ("P(a year's cash owed > guarantee)", [float(hor.p_beyond_guarantee.sel(track=t)) for t in tracks]),
        ("P(worst cum. loss > guarantee)",
         [float(s.p_drawdown_beyond_guarantee.sel(track=t)) for t in tracks]),
    ]
    bench0 = float(ds["benchmark"].isel(year=0).mean("draw").min())
    lines = [
        f"leadsim {ds.attrs.get('leadsim_version', __version__)} | {ds.attrs.get('aco_name', '')} under "
        f"{ds.attrs.get('policy_name', '')} | {n:,} draws, seed {ds.attrs.get('seed')}",
        f"PY{years[0]} mean benchmark {_money(bench0).strip()} (after discount and withhold; lowest track); "
        f"financial guarantee {_money(fg).strip()}; positive = paid to the ACO; cash owed = loss + recouped "
        "enhanced PCC advance",
        f"{'':34}" + "".join(f"{t:>16}" for t in tracks),
    ]
    lines += [f"{label:34}" + "".join(f"{_money(v):>16}" for v in vals) for label, vals in rows]
    lines += [f"{label:34}" + "".join(f"{v:>16.1%}" for v in vals) for label, vals in probs]
    lines += _parameter_risk_lines(ds, tracks, len(years))
    if n < MIN_DRAWS_1IN100:
        lines.append(f"(1-in-100 figures need at least {MIN_DRAWS_1IN100} draws; this run has {n:,})")
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    import leadsim

    cfg = _load(args)
    if args.output == "":
        raise UsageError("-o '': the output path is empty")
    out = Path(args.output) if args.output else Path("results") / f"{Path(args.config).stem}.nc"
    if not args.output:
        out.parent.mkdir(parents=True, exist_ok=True)
    zarr_out = is_zarr_path(out)
    if args.resume and not zarr_out:
        raise UsageError("--resume applies to a Zarr run store: use -o RUN.zarr")
    _check_output(out, inputs=[args.config], overwrite=args.overwrite or args.resume, folder=zarr_out)
    if args.report is not None:
        # a resume reruns the same command: it may replace its own report
        _check_output(args.report, inputs=[args.config, out], overwrite=args.overwrite or args.resume,
                      flag="--report")
    t0 = time.perf_counter()
    progress = False if args.quiet else None
    with _sigterm_interrupts(), _scaled_errors(), _dask_client(args, cfg) as client:
        try:
            sink = leadsim.run(cfg, out, resume=args.resume, overwrite=args.overwrite, client=client,
                               progress=progress)
        except OSError as err:
            raise OSError(f"cannot write {out}: {err.strerror or err}; {_kept(out, zarr_out)}") from None
        except KeyboardInterrupt:
            if zarr_out:
                raise Interrupted(_kept(out, zarr_out)) from None
            raise
    if zarr_out:
        from leadsim.io.zarrstore import open_store

        ds = open_store(out, load=False)
    else:
        ds = sink.dataset
    elapsed = time.perf_counter() - t0
    if not args.quiet:
        print(summary_text(ds))
    print(f"Wrote {out} in {elapsed:.1f} s")
    if args.report:
        from leadsim.analysis.report import report_html, write_html

        write_html(report_html(ds, source=out.name), Path(args.report))
        print(f"Wrote {args.report}")
    return 0


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while writing, so temporary files are removed on the way out."""
    import signal
    import threading

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _scaled_errors() -> Iterator[None]:
    """Report store and dask problems as usage errors (one line, exit 2)."""
    try:
        yield
    except (StoreError, DaskUnavailableError) as err:
        raise UsageError(str(err)) from None


def _dask_client(args: argparse.Namespace, cfg: Config) -> contextlib.AbstractContextManager:
    """A dask client for ``--workers N`` / ``--scheduler ADDRESS``, else a context yielding None."""
    if args.workers is None and args.scheduler is None:
        return contextlib.nullcontext()
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers {args.workers}: must be at least 1")
    from leadsim.distributed import cluster

    return cluster(workers=args.workers, scheduler=args.scheduler, threads=cfg.simulation.threads or 1)


def _kept(out: Path, zarr_out: bool) -> str:
    """What an interrupted or failed run leaves: the Zarr chunks a resume keeps, or nothing at all."""
    if not zarr_out:
        return "no partial file was left"
    from leadsim.io.zarrstore import read_manifest

    m = read_manifest(out) if out.is_dir() else None
    done = f"{m.n_done} of {m.n_chunks} chunks" if m else "no chunk"
    return f"{out} keeps {done}; rerun with --resume to finish"


def cmd_export(args: argparse.Namespace) -> int:
    import leadsim

    src = _existing_result(args.result)
    dst = _check_output(args.output, inputs=[src], overwrite=args.overwrite, folder=is_zarr_path(args.output))
    with _sigterm_interrupts(), _scaled_errors():
        ds = leadsim.open(src)
        try:
            leadsim.save(ds, dst)
        except OSError as err:
            raise OSError(f"cannot write {dst}: {err.strerror or err}; no partial file was left") from None
    print(f"Wrote {dst}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    cfg = _load(args)
    print(f"OK: {args.config}: {cfg.aco.name}, {cfg.aco.beneficiaries:,} beneficiaries, policy "
          f"{cfg.policy.name!r} (tracks {', '.join(cfg.policy.tracks)}), {cfg.simulation.draws:,} draws")
    if args.show:
        print(cfg.to_toml())
    return 0


def _existing_result(path: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{p}: no such result (a .nc file or .zarr store written by `leadsim run`)")
    return p


REQUIRED_VARS = ("net_settlement", "cumulative_settlement", "benchmark", "expenditure", "financial_guarantee")


def _open_result(path: Path):
    """Open a result for report/compare, refusing (one line) anything that is not a complete leadsim result."""
    import leadsim
    from leadsim.errors import ResultError
    from leadsim.io.schema import config_of

    ds = leadsim.open(path)
    try:
        config_of(ds)
    except ResultError as err:
        raise ResultError(f"{path}: {err}") from None
    missing = [v for v in REQUIRED_VARS if v not in ds.variables]
    if missing or not {"draw", "year", "track"} <= set(ds.dims):
        raise ResultError(f"{path}: not a leadsim result (missing {', '.join(missing) or 'dimensions'})")
    return ds


def cmd_report(args: argparse.Namespace) -> int:
    from leadsim.analysis.report import report_html, write_html

    src = _existing_result(args.result)
    out = _check_output(src.with_suffix(".html") if args.output is None else args.output, inputs=[src],
                        overwrite=args.overwrite)
    write_html(report_html(_open_result(src), source=src.name), out)
    print(f"Wrote {out}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from leadsim.analysis.report import compare_html, compare_text, write_html

    paths = [_existing_result(r) for r in args.results]
    out = None if args.output is None else _check_output(args.output, inputs=paths, overwrite=args.overwrite)
    runs = {}
    for p in paths:
        runs[p.stem if p.stem not in runs else str(p)] = _open_result(p)
    print(compare_text(runs, p=args.level))
    if out is not None:
        write_html(compare_html(runs, p=args.level), out)
        print(f"Wrote {out}")
    return 0


# ---- leadsim fit / synth-panel: fitting a config to an ACO's own panel -----------------------------------------------
def cmd_synth_panel(args: argparse.Namespace) -> int:
    from leadsim.fit.synth import synth_panel

    cfg = _load(args)
    out = Path(args.output)
    _check_output(out, inputs=[args.config], overwrite=args.overwrite)
    if args.years < 1:
        raise UsageError(f"--years {args.years}: must be at least 1")
    df = synth_panel(cfg, out, years=args.years, draw=args.draw)
    print(f"Wrote {out}: {len(df):,} beneficiary-years, {df['bene_id'].nunique():,} beneficiaries, "
          f"{args.years} years from {cfg.simulation.start_year}")
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from leadsim.errors import PanelError
    from leadsim.fit.estimate import fit_panel
    from leadsim.fit.panel import read_panel
    from leadsim.fit.write import fitted_toml

    out = Path(args.output)
    inputs = [args.panel] + ([args.config] if args.config else [])
    _check_output(out, inputs=inputs, overwrite=args.overwrite)
    if args.report:
        _check_output(Path(args.report), inputs=[*inputs, out], overwrite=args.overwrite, flag="--report")
    if args.parameter_risk < 0 or args.parameter_risk == 1:
        raise UsageError(f"--parameter-risk {args.parameter_risk}: needs at least 2 parameter sets")
    from leadsim.config.schema import MAX_PARAMETER_SETS

    if args.parameter_sets and not 2 <= args.parameter_sets <= MAX_PARAMETER_SETS:
        raise UsageError(f"--parameter-sets {args.parameter_sets}: must be 0 (none) or 2 to {MAX_PARAMETER_SETS}")
    base = _load(args) if (args.config or args.set) else None
    try:
        panel = read_panel(args.panel)
    except PanelError as err:
        raise UsageError(str(err)) from None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LeadsimWarning)
        result = fit_panel(panel, base=base, trend=args.trend)
    for w in caught:
        print(f"leadsim: warning: {w.message}", file=sys.stderr)
    text = fitted_toml(result, base, parameter_sets=args.parameter_sets)
    from leadsim.atomic import atomic_path

    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    print(result.summary())
    print(f"Wrote {out}")
    if args.report:
        from leadsim.fit.report import fit_report_html

        with atomic_path(args.report) as tmp:
            tmp.write_text(fit_report_html(result), encoding="utf-8")
        print(f"Wrote {args.report}")
    if args.parameter_risk:
        from leadsim.fit.uncertainty import parameter_risk, parameter_sets
        from leadsim.fit.write import fitted_config

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LeadsimWarning)
            sets = parameter_sets(result, fitted_config(result, base), args.parameter_risk)
            draws = max(2, sets[0].simulation.draws // args.parameter_risk)
            print(f"Parameter risk: {args.parameter_risk} parameter sets x {draws} draws (common random numbers)")
            print(parameter_risk(sets, draws).summary())
    return 0


def _add_fit_parsers(sub: argparse._SubParsersAction) -> None:
    syn = sub.add_parser("synth-panel", help="write a beneficiary-year panel made by the simulator (for `fit`)")
    _add_config_flags(syn)
    syn.add_argument("-o", "--output", required=True, help="panel file (.csv, .csv.gz or .parquet)")
    syn.add_argument("--years", type=int, default=3, help="panel years from simulation.start_year (default 3)")
    syn.add_argument("--draw", type=int, default=0, help="which draw's trajectories (default 0)")
    syn.add_argument("--overwrite", action="store_true", help="replace an existing panel file")
    syn.set_defaults(func=cmd_synth_panel)
    fit = sub.add_parser("fit", help="fit the cost model to a beneficiary-year panel; write a config")
    fit.add_argument("panel", help="beneficiary-year panel (.csv, .csv.gz or .parquet; see docs/fit.md)")
    fit.add_argument("-o", "--output", required=True, help="fitted config (TOML), loadable by `leadsim run`")
    fit.add_argument("--base", dest="config", metavar="CONFIG",
                     help="config whose other settings (policy, trend, ...) the fitted one keeps")
    fit.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a key of the base config")
    fit.add_argument("--overwrite", action="store_true", help="replace an existing fitted config or report")
    fit.add_argument("--trend", type=float, default=None,
                     help="annual spending trend putting years on one dollar basis (default: from the panel)")
    fit.add_argument("--report", metavar="HTML", help="also write the fit report (QQ/PP, tail, persistence, "
                     "mortality by decile, concentration, goodness of fit)")
    fit.add_argument("--parameter-risk", dest="parameter_risk", type=int, metavar="N", default=0,
                     help="also simulate N parameter sets drawn from the fit and report the parameter-risk share "
                     "of the ten-year variance")
    fit.add_argument("--parameter-sets", dest="parameter_sets", type=int, metavar="N", default=0,
                     help="write N parameter sets drawn from the fit into the config and turn "
                     "simulation.parameter_draws on: each draw of `leadsim run` uses one (process + parameter "
                     "risk; the summary gives the parameter-risk share)")
    fit.set_defaults(func=cmd_fit)
# ---- end of the fit block ----------------------------------------------------------------------------------


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="TOML config file (see configs/default.toml)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any config key, e.g. --set policy.preset=reach_py2026 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leadsim", description="Monte Carlo of an ACO's money under CMS LEAD.")
    parser.add_argument("--version", action="version", version=f"leadsim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="simulate a config and write a dataset (.nc, or .zarr)")
    _add_config_flags(run)
    run.add_argument("-o", "--output", help="output path (default results/<config>.nc)")
    run.add_argument("--draws", type=int, help="= simulation.draws")
    run.add_argument("--seed", type=int, help="= simulation.seed")
    run.add_argument("--threads", type=int, help="= simulation.threads (numba threads)")
    run.add_argument("--chunk-draws", dest="chunk_draws", type=int, help="= simulation.chunk_draws")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary")
    run.add_argument("--report", metavar="HTML", help="also write the HTML report of the run (as `leadsim report`)")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N",
                       help="run chunks on a local dask cluster of N worker processes (needs leadsim[dask])")
    where.add_argument("--scheduler", metavar="ADDRESS", help="run chunks on an existing dask cluster")
    again = run.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="finish an interrupted Zarr run (-o RUN.zarr); only missing chunks are computed")
    again.add_argument("--overwrite", action="store_true",
                       help="replace an existing result (-o and --report); never one of the inputs")
    run.set_defaults(func=cmd_run)

    exp = sub.add_parser("export", help="copy a result to another format (e.g. run.zarr -> run.nc)")
    exp.add_argument("result", help="a finished result: .zarr store or .nc file")
    exp.add_argument("output", help="destination (.nc for netCDF, .zarr for Zarr)")
    exp.add_argument("--overwrite", action="store_true", help="replace an existing destination")
    exp.set_defaults(func=cmd_export)

    val = sub.add_parser("validate", help="check a config and report problems by dotted key")
    _add_config_flags(val)
    val.add_argument("--show", action="store_true", help="print the resolved config as TOML")
    val.set_defaults(func=cmd_validate)

    rep = sub.add_parser("report", help="write a self-contained HTML report of a result (figures, tables)")
    rep.add_argument("result", help="a result written by `leadsim run` (.nc or .zarr)")
    rep.add_argument("-o", "--output", help="HTML file (default: RESULT with .html)")
    rep.add_argument("--overwrite", action="store_true", help="replace an existing HTML file")
    rep.set_defaults(func=cmd_report)

    cmp_ = sub.add_parser("compare", help="compare results side by side (profiles or policies, same draws)")
    cmp_.add_argument("results", nargs="+", help="results written by `leadsim run`; the first is the reference")
    cmp_.add_argument("-o", "--output", help="also write an HTML comparison (table and figures)")
    cmp_.add_argument("--level", type=float, default=0.99, help="VaR/TVaR confidence level (default 0.99)")
    cmp_.add_argument("--overwrite", action="store_true", help="replace an existing HTML file")
    cmp_.set_defaults(func=cmd_compare)
    _add_fit_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as err:
        for line in err.problems:
            print(f"leadsim: error: {line}", file=sys.stderr)
        return 2
    except (UsageError, LeadsimError) as err:
        print(f"leadsim: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"leadsim: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        kept = str(err) if isinstance(err, Interrupted) else "no partial output was left"
        print(f"leadsim: interrupted; {kept}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
