"""`leadsim run --target`: add draws until a metric's relative standard error meets a target."""

from __future__ import annotations

import numpy as np
import pytest

import leadsim
from leadsim.analysis.risk import horizon_metric
from leadsim.cli import main
from leadsim.precision import MIN_SUPPORT, parse_target, run_to_precision
from tests.helpers import assert_same_run, small_config


@pytest.mark.parametrize(("text", "metric", "level", "track", "rel"), [
    ("VaR99.5<=2%", "VaR", 0.995, None, 0.02),
    (" tvar 99 @ professional <= 1.5 % ", "TVaR", 0.99, "professional", 0.015),
    ("p_drawdown<=3%", "p_drawdown_beyond_guarantee", None, None, 0.03),
    ("mean@global<=10%", "mean", None, "global", 0.10),
])
def test_parse_target(text, metric, level, track, rel):
    t = parse_target(text)
    assert (t.metric, t.track) == (metric, track)
    assert t.rel_se == pytest.approx(rel) and (t.level == pytest.approx(level) if level else t.level is None)


@pytest.mark.parametrize(("text", "why"), [
    ("VaR<=2%", "needs a confidence level"), ("VaR99.5<2%", "expected METRIC"), ("VaR99.5<=0%", r"\(0, 100\]"),
    ("VaR100<=2%", r"\[50, 100\)"), ("sharpe<=2%", "unknown metric"), ("mean99<=2%", "takes no level"),
    ("VaR99.5<=2", "expected METRIC"), ("", "expected METRIC"),
])
def test_malformed_targets_are_refused(text, why):
    with pytest.raises(ValueError, match=why):
        parse_target(text)


def test_stops_at_target_and_equals_a_fixed_size_run():
    cfg = small_config(**{"simulation.draws": 400, "simulation.chunk_draws": 16})
    run = run_to_precision(cfg, "mean@global<=25%", progress=False)
    assert run.reached and run.rel_se <= 0.25 and run.draws < 400 and run.draws % 16 == 0
    # the previous chunk had not met the target (or had too little support / fewer than two chunks)
    assert run.draws == 32 or run.history[-2][2] / abs(run.history[-2][1]) > 0.25
    # the draws kept are bit for bit the run of the same config with simulation.draws = n
    fixed = leadsim.simulate(small_config(**{"simulation.draws": run.draws, "simulation.chunk_draws": 16}),
                             progress=False)
    assert_same_run(run.sink.dataset, fixed)
    est, se, _ = horizon_metric(fixed, "mean", track="global")
    assert (est, se) == (run.estimate, run.se)


def test_cap_reached_is_reported_not_hidden():
    cfg = small_config(**{"simulation.draws": 48, "simulation.sampling": "tilted"})
    run = run_to_precision(cfg, "VaR99.5<=0.1%", progress=False)
    assert not run.reached and run.draws == 48
    assert "NOT reached" in run.describe()
    assert run.sink.dataset.sizes["draw"] == 48


def test_support_floor_delays_stopping():
    """A tail metric may not stop before MIN_SUPPORT draws lie at or beyond its VaR."""
    cfg = small_config(**{"simulation.draws": 256, "simulation.chunk_draws": 16})
    run = run_to_precision(cfg, "VaR90<=100%", progress=False)
    _, _, support = horizon_metric(run.sink.dataset, "VaR", 0.90)
    assert support >= MIN_SUPPORT and run.draws >= 10 * MIN_SUPPORT - 16


def test_cli_target_runs_and_reports(tmp_path, capsys):
    out = tmp_path / "t.nc"
    rc = main(["run", "configs/default.toml", "-o", str(out), "--draws", "256", "--chunk-draws", "32",
               "--sampling", "tilted", "--target", "TVaR99<=8%", "--set", "aco.beneficiaries=400"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "TVaR 99% = " in text and "tilted sampling" in text
    ds = leadsim.open(out)
    assert ds.attrs["sampling"] == "tilted" and not np.all(ds["weight"].values == 1)
    assert leadsim.config_of(ds).simulation.tilt_level == 0.99   # the pilot aimed at the named metric


def test_cli_target_aims_the_tilt_at_its_track_unless_set(tmp_path):
    common = ["run", "configs/default.toml", "--draws", "64", "--chunk-draws", "32", "--sampling", "tilted", "-q",
              "--set", "aco.beneficiaries=300"]
    assert main([*common, "-o", str(tmp_path / "a.nc"), "--target", "VaR95@professional<=50%"]) == 0
    a = leadsim.config_of(leadsim.open(tmp_path / "a.nc")).simulation
    assert (a.tilt_track, a.tilt_level) == ("professional", 0.95)
    assert main([*common, "-o", str(tmp_path / "b.nc"), "--target", "VaR95@professional<=50%",
                 "--set", "simulation.tilt_level=0.99"]) == 0
    b = leadsim.config_of(leadsim.open(tmp_path / "b.nc")).simulation
    assert (b.tilt_track, b.tilt_level) == ("professional", 0.99)


@pytest.mark.parametrize(("args", "why"), [
    (["--target", "VaR<=2%"], "needs a confidence level"),
    (["--target", "VaR99<=2%", "-o", "{tmp}/r.zarr"], "netCDF"),
    (["--target", "VaR99<=2%", "--workers", "2"], "drop --workers"),
])
def test_cli_bad_target_is_usage_error_before_any_work(tmp_path, capsys, args, why):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "r.nc")]
    rc = main(["run", "configs/default.toml", "--draws", "64", *args])
    assert rc == 2
    assert why in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
