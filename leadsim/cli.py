"""Command line: ``leadsim run | validate | report | compare | export | fit | synth-panel | attribute | decide``.

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

    from leadsim.precision import Target

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
                      ("threads", "simulation.threads"), ("chunk_draws", "simulation.chunk_draws"),
                      ("sampling", "simulation.sampling")):
        val = getattr(args, flag, None)
        if val is not None:
            out[key] = str(val)
    return out


def _load(args: argparse.Namespace) -> Config:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LeadsimWarning)
        cfg = load_config(args.config, overrides=_overrides(args), scenario=getattr(args, "scenario", None))
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
    from leadsim.analysis.risk import HORIZON, sample_design, sampling_note, summarize, value_at_risk
    from leadsim.io.schema import config_of

    tracks = [str(t) for t in ds["track"].values]
    n = ds.sizes["draw"]
    years = ds["year"].values
    fg = float(ds["financial_guarantee"])
    run_cfg = config_of(ds)
    rate = run_cfg.policy.settlement.discount_rate
    total = "present value" if rate > 0 else "total"
    s = summarize(ds, levels=[0.99]).sel(level=0.99)
    hor = s.sel(period=HORIZON)
    worst_year = value_at_risk(ds["net_settlement"].min("year"), 0.99, sample_design(ds))["estimate"]
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
    bench = ds["benchmark"].isel(year=0)
    bench0 = float((bench.weighted(ds["weight"]) if "weight" in ds else bench).mean("draw").min())
    lines = [
        f"leadsim {ds.attrs.get('leadsim_version', __version__)} | {ds.attrs.get('aco_name', '')} under "
        f"{ds.attrs.get('policy_name', '')}{f' | scenario {run_cfg.scenario}' if run_cfg.scenario else ''} | "
        f"{n:,} draws, seed {ds.attrs.get('seed')}" + (f" | {sampling_note(ds)}" if sampling_note(ds) else ""),
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
    lines += _break_even_lines(ds, tracks)
    return "\n".join(lines)


def _break_even_lines(ds, tracks: list[str]) -> list[str]:
    """The break-even spending change per track (:func:`leadsim.decide.run_break_even`), from the run's own costs."""
    import numpy as np

    from leadsim.decide import run_break_even

    effects, exact, used = run_break_even(ds)
    mark = "" if exact else "~"
    lines = []
    for j, label in enumerate(("Break-even effect, mean = 0", "Break-even effect, P(loss) = 50%")):
        cells = []
        for t in tracks:
            v, se = effects[t][0][j], effects[t][1][j]
            cells.append("n/a" if not np.isfinite(v) else f"{mark}{v:+.2%}" + (f" ±{se * 100:.2f}" if np.isfinite(se)
                                                                            else ""))
        lines.append(f"{label:34}" + "".join(f"{c:>16}" for c in cells))
    note = ("(break-even: the constant spending change, -3% = 3% below what it would otherwise be, at which the "
            "ten-year result breaks even; ± SE in points")
    if not exact:
        note += "; ~ outlier relief taken proportional to spending: `leadsim decide` refines it"
    if used < ds.sizes["draw"]:
        note += f"; from the first {used:,} draws"
    lines.append(note + ")")
    return lines


def cmd_run(args: argparse.Namespace) -> int:
    import leadsim

    cfg = _load(args)
    target = _target(args)
    if target is not None:
        cfg = _aim_tilt(cfg, target, args)
    if args.output == "":
        raise UsageError("-o '': the output path is empty")
    stem = Path(args.config).stem + (f"-{cfg.scenario}" if getattr(args, "scenario", None) else "")
    out = Path(args.output) if args.output else Path("results") / f"{stem}.nc"
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
    precision = None
    with _sigterm_interrupts(), _scaled_errors(), _dask_client(args, cfg) as client:
        try:
            if target is not None:
                from leadsim.io.sink import NetCDFSink
                from leadsim.precision import run_to_precision

                precision = run_to_precision(cfg, target, NetCDFSink(out), progress=progress)
                sink = precision.sink
            else:
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
    if precision is not None:
        print(precision.describe())
    print(f"Wrote {out} in {elapsed:.1f} s")
    if args.report:
        from leadsim.analysis.report import report_html, write_html

        write_html(report_html(ds, source=out.name), Path(args.report))
        print(f"Wrote {args.report}")
    return 0


def _aim_tilt(cfg: Config, target: Target, args: argparse.Namespace) -> Config:
    """Tilted sampling aims its pilot at the metric ``--target`` names: its level (VaR/TVaR) and its track,
    unless ``--set`` gives ``simulation.tilt_level`` / ``simulation.tilt_track`` (or a pinned tilt_shift)."""
    s = cfg.simulation
    if s.sampling != "tilted" or s.tilt_shift is not None:
        return cfg
    given = {item.split("=", 1)[0].strip() for item in args.set or []}
    aim: dict[str, object] = {}
    if target.level is not None and "simulation.tilt_level" not in given:
        aim["simulation.tilt_level"] = min(target.level, 0.9999)
    if target.track is not None and "simulation.tilt_track" not in given:
        aim["simulation.tilt_track"] = target.track
    return load_config(cfg, overrides=aim) if aim else cfg


def _target(args: argparse.Namespace) -> Target | None:
    """The parsed ``--target``, refused (exit 2, before any work) when malformed or combined with a Zarr store,
    ``--resume`` or a dask cluster (a precision run grows its draw count as it goes)."""
    if args.target is None:
        return None
    from leadsim.precision import parse_target

    try:
        target = parse_target(args.target)
    except ValueError as err:
        raise UsageError(str(err)) from None
    out = args.output or ""
    if is_zarr_path(out) or args.resume:
        raise UsageError("--target writes a netCDF result (-o RUN.nc): a Zarr store is sized before the run")
    if args.workers is not None or args.scheduler is not None:
        raise UsageError("--target runs in this process: drop --workers/--scheduler")
    return target


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


def _scenario_runs(args: argparse.Namespace) -> dict:
    """``leadsim compare CONFIG --scenario A --scenario B``: the baseline and each scenario, simulated in memory
    on the same seed (common random numbers), labelled ``baseline``, ``A``, ``B``."""
    import leadsim

    if len(args.results) != 1:
        raise UsageError(f"--scenario: give one config to run the scenarios on (got {len(args.results)} "
                         "arguments); to compare result files, leave out --scenario")
    names = list(dict.fromkeys(args.scenario))
    cfgs = {"baseline": load_config(args.results[0], overrides=_overrides(args))}
    cfgs.update({n: load_config(args.results[0], overrides=_overrides(args), scenario=n) for n in names})
    return {label: leadsim.simulate(cfg, progress=False) for label, cfg in cfgs.items()}


def cmd_compare(args: argparse.Namespace) -> int:
    from leadsim.analysis.report import compare_html, compare_text, write_html

    if args.scenario:
        out = None if args.output is None else _check_output(args.output, inputs=args.results,
                                                             overwrite=args.overwrite)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LeadsimWarning)
            runs = _scenario_runs(args)
        print(compare_text(runs, p=args.level, same_track=True))
        if out is not None:
            write_html(compare_html(runs, p=args.level, same_track=True), out)
            print(f"Wrote {out}")
        return 0
    if args.set or args.draws is not None:
        raise UsageError("--set and --draws apply with --scenario (compare runs a config); result files are "
                         "compared as they were written")
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


# ---- leadsim attribute: variance attribution by Shapley values ---------------------------------------------------
def cmd_attribute(args: argparse.Namespace) -> int:
    import leadsim
    from leadsim.analysis.attribution import attribution_text
    from leadsim.analysis.report import attribution_html, write_html

    cfg = _load(args)
    out = None if args.output is None else _check_output(args.output, inputs=[args.config], overwrite=args.overwrite)
    if args.report is not None:
        _check_output(args.report, inputs=[args.config, *([out] if out else [])], overwrite=args.overwrite,
                      flag="--report")
    if args.boot < 0:
        raise UsageError(f"--boot {args.boot}: must be at least 0")
    if not 0.5 <= args.level < 1.0:
        raise UsageError(f"--level {args.level}: allowed 0.5 <= value < 1")
    with _sigterm_interrupts():
        attr = leadsim.attribute(cfg, args.draws, p=args.level, n_boot=args.boot)
        print(attribution_text(attr))
        if out is not None:
            from leadsim.io.netcdf import save_netcdf

            save_netcdf(attr, out)
            print(f"Wrote {out}")
        if args.report is not None:
            write_html(attribution_html(attr), Path(args.report))
            print(f"Wrote {args.report}")
    return 0


# ---- leadsim decide: options on common draws, break-even, track switch, reserves ----------------------------------
def cmd_decide(args: argparse.Namespace) -> int:
    from leadsim.decide import decide
    from leadsim.decide.report import decide_html, decide_text

    cfg = _load(args)
    inputs = [args.config]
    out = None if args.output is None else _check_output(args.output, inputs=inputs, overwrite=args.overwrite)
    if args.report is not None:
        _check_output(args.report, inputs=[*inputs, *([out] if out else [])], overwrite=args.overwrite,
                      flag="--report")
    comparators = [] if args.comparators == "" else [c.strip() for c in args.comparators.split(",")]
    t0 = time.perf_counter()
    with _sigterm_interrupts():
        ds = decide(cfg, baseline=args.baseline, criterion=args.criterion, lam=args.lam, alpha=args.alpha,
                    comparators=comparators, stop_loss=not args.no_stop_loss, break_even=not args.no_break_even,
                    progress=False if args.quiet else None)
        if not args.quiet:
            print(decide_text(ds))
        if out is not None:
            from leadsim.io.netcdf import save_netcdf

            try:
                save_netcdf(ds, out)
            except OSError as err:
                raise OSError(f"cannot write {out}: {err.strerror or err}; no partial file was left") from None
            print(f"Wrote {out}")
        if args.report:
            from leadsim.analysis.report import write_html

            write_html(decide_html(ds, source=Path(args.config).name), Path(args.report))
            print(f"Wrote {args.report}")
    print(f"Decided in {time.perf_counter() - t0:.1f} s")
    return 0


def _add_decide_parser(sub: argparse._SubParsersAction) -> None:
    from leadsim.decide import COMPARATORS, CRITERIA, DEFAULT_ALPHA, DEFAULT_LAMBDA

    dec = sub.add_parser("decide", help="compare the options an ACO can choose (tracks, stop-loss, switch, REACH, "
                                        "MSSP) on the same draws; break-even effects, reserves")
    _add_config_flags(dec)
    dec.add_argument("-o", "--output", help="also write the decision dataset (.nc)")
    dec.add_argument("--report", metavar="HTML", help="also write the HTML decision report")
    dec.add_argument("--draws", type=int, help="= simulation.draws")
    dec.add_argument("--seed", type=int, help="= simulation.seed")
    dec.add_argument("--threads", type=int, help="= simulation.threads (numba threads)")
    dec.add_argument("--baseline", help="option the paired differences are taken against (default mssp_enhanced)")
    dec.add_argument("--criterion", choices=CRITERIA, default="mean_tvar",
                     help="ranking: mean - lambda x TVaR99 (mean_tvar, default), or the highest mean with "
                          "P(worst cumulative loss > guarantee) <= alpha (constrained)")
    dec.add_argument("--lambda", dest="lam", type=float, default=DEFAULT_LAMBDA,
                     help=f"weight of TVaR99 in mean_tvar (default {DEFAULT_LAMBDA})")
    dec.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                     help=f"largest P(worst cumulative loss > guarantee) under constrained (default {DEFAULT_ALPHA})")
    dec.add_argument("--comparators", default=",".join(COMPARATORS),
                     help="comma-separated comparator presets ('' for none; default %(default)s)")
    dec.add_argument("--no-stop-loss", action="store_true", help="do not evaluate the stop-loss elections")
    dec.add_argument("--no-break-even", action="store_true", help="skip the break-even effects")
    dec.add_argument("-q", "--quiet", action="store_true", help="no table and no progress")
    dec.add_argument("--overwrite", action="store_true", help="replace an existing dataset or report")
    dec.set_defaults(func=cmd_decide)


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
    p.add_argument("--scenario", action="append", metavar="NAME",
                   help="apply a stress scenario of configs/scenarios/ (pandemic, forecast_miss, rule_change, "
                   "early_termination); repeat to combine them")


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
    run.add_argument("--sampling", choices=("plain", "qmc", "tilted"),
                     help="= simulation.sampling: plain Monte Carlo, randomized QMC or tilted (weighted) macro draws")
    run.add_argument("--target", metavar="SPEC",
                     help='add draws until a metric\'s relative SE meets SPEC, e.g. "VaR99.5<=2%%" (ten-year, first '
                          "track; --draws is the cap)")
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
    cmp_.add_argument("results", nargs="+", help="results written by `leadsim run`; the first is the reference "
                      "(with --scenario: one CONFIG)")
    cmp_.add_argument("--scenario", action="append", metavar="NAME",
                      help="run CONFIG as is (baseline) and under each named stress scenario, on the same draws, "
                      "and compare them side by side (repeatable)")
    cmp_.add_argument("--set", action="append", metavar="KEY=VALUE", help="with --scenario: override a config key")
    cmp_.add_argument("--draws", type=int, help="with --scenario: = simulation.draws")
    cmp_.add_argument("-o", "--output", help="also write an HTML comparison (table and figures)")
    cmp_.add_argument("--level", type=float, default=0.99, help="VaR/TVaR confidence level (default 0.99)")
    cmp_.add_argument("--overwrite", action="store_true", help="replace an existing HTML file")
    cmp_.set_defaults(func=cmd_compare)
    _add_fit_parsers(sub)

    att = sub.add_parser("attribute", help="variance attribution: Shapley shares of Var and TVaR by risk source")
    _add_config_flags(att)
    att.add_argument("--draws", type=int, help="= simulation.draws (two kernel passes and 128 ledger passes)")
    att.add_argument("-o", "--output", help="also write the attribution Dataset (.nc)")
    att.add_argument("--report", metavar="HTML", help="also write an HTML page with the chart and table")
    att.add_argument("--level", type=float, default=0.99, help="TVaR level (default 0.99)")
    att.add_argument("--boot", type=int, default=200, help="bootstrap resamples for the standard errors (default 200)")
    att.add_argument("--overwrite", action="store_true", help="replace an existing -o or --report file")
    att.set_defaults(func=cmd_attribute)
    _add_decide_parser(sub)
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
