"""The figures `leadsim run` prints are the written dataset's; LeadsimWarning is emitted where it should be.

The expected figures are computed here from the dataset read back from disk, with numpy only (quantiles by
``method="inverted_cdf"``, drawdowns by their definition), and checked against :mod:`leadsim.analysis.risk`;
each printed figure is parsed and must equal its expected value to the precision it is printed with.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings

import numpy as np
import pytest

import leadsim
from leadsim.analysis.risk import HORIZON, summarize
from leadsim.cli import main
from leadsim.errors import LeadsimWarning

LABEL_WIDTH, COLUMN_WIDTH = 34, 16
MONEY = re.compile(r"^(-?)\$([\d,]+(?:\.\d+)?)([kMB])$")
SCALE = {"k": 1e3, "M": 1e6, "B": 1e9}


def parse_money(s: str) -> tuple[float, float]:
    """``"-$1.23M"`` -> (-1.23e6, half a unit of the last printed digit)."""
    m = MONEY.match(s)
    assert m, s
    sign, digits, unit = m.groups()
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    value = float(digits.replace(",", "")) * SCALE[unit] * (-1 if sign else 1)
    return value, 0.5 * 10.0**-decimals * SCALE[unit]


def parse_table(text: str, tracks: list[str]) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        label = line[:LABEL_WIDTH].strip()
        cells = [line[LABEL_WIDTH + COLUMN_WIDTH * i: LABEL_WIDTH + COLUMN_WIDTH * (i + 1)].strip()
                 for i in range(len(tracks))]
        if label and all(cells) and len(line) == LABEL_WIDTH + COLUMN_WIDTH * len(tracks):
            rows[label] = cells
    return rows


def q01(x: np.ndarray) -> float:
    return float(np.quantile(x, 0.01, method="inverted_cdf"))


@pytest.fixture(scope="module")
def printed_run(tmp_path_factory):
    """``leadsim run`` of a small ACO with a discount rate; (stdout, stderr, the dataset read back)."""
    out = tmp_path_factory.mktemp("cli") / "run.nc"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(["run", "configs/default.toml", "-o", str(out), "--draws", "300", "--seed", "11",
                   "--set", "aco.beneficiaries=600", "--set", "policy.settlement.discount_rate=0.03"])
    assert rc == 0
    return stdout.getvalue(), stderr.getvalue(), leadsim.open(out)


def expected_figures(ds) -> dict[str, np.ndarray]:
    """Every figure of the summary, per track, from the dataset with numpy only."""
    x = ds.net_settlement.transpose("draw", "year", "track").values
    cum = ds.cumulative_settlement.transpose("draw", "track").values
    fg = float(ds.financial_guarantee)
    # a year's guarantee test: cash owed at settlement against the guarantee in force that year
    cash_da = ds.cash_settlement if "cash_settlement" in ds else ds.net_settlement
    cash = cash_da.transpose("draw", "year", "track").values
    fg_year = ds.financial_guarantee_by_year.values if "financial_guarantee_by_year" in ds else np.full(x.shape[1], fg)
    rate = leadsim.config_of(ds).policy.settlement.discount_rate
    disc = (1.0 + rate) ** -np.arange(x.shape[1])
    c = np.cumsum(x * disc[None, :, None], axis=1)
    dd = (np.maximum(np.maximum.accumulate(c, axis=1), 0.0) - c).max(axis=1)
    n_tracks = x.shape[2]
    return {
        "Mean annual settlement": x.mean(axis=(0, 1)),
        "1-in-100 PY2027 settlement": np.array([q01(x[:, 0, t]) for t in range(n_tracks)]),
        "1-in-100 worst single year": np.array([q01(x[:, :, t].min(axis=1)) for t in range(n_tracks)]),
        "Mean 10-year present value": cum.mean(axis=0),
        "1-in-100 10-year present value": np.array([q01(cum[:, t]) for t in range(n_tracks)]),
        "P(10-year loss)": (cum < 0).mean(axis=0),
        "P(a year's cash owed > guarantee)": (cash < -fg_year[None, :, None]).any(axis=1).mean(axis=0),
        "P(worst cum. loss > guarantee)": (dd > fg).mean(axis=0),
    }


def test_expected_figures_agree_with_the_risk_module(printed_run):
    _, _, ds = printed_run
    exp = expected_figures(ds)
    s = summarize(ds, levels=[0.99]).sel(level=0.99)
    hor = s.sel(period=HORIZON)
    np.testing.assert_allclose(exp["Mean annual settlement"], s["mean"].drop_sel(period=HORIZON).mean("period"),
                               rtol=1e-12)
    np.testing.assert_array_equal(exp["1-in-100 PY2027 settlement"], -s.VaR.sel(period="2027"))
    np.testing.assert_allclose(exp["Mean 10-year present value"], hor["mean"], rtol=1e-12)
    np.testing.assert_array_equal(exp["1-in-100 10-year present value"], -hor.VaR)
    np.testing.assert_array_equal(exp["P(10-year loss)"], hor.p_loss)
    np.testing.assert_array_equal(exp["P(a year's cash owed > guarantee)"], hor.p_beyond_guarantee)
    np.testing.assert_array_equal(exp["P(worst cum. loss > guarantee)"], s.p_drawdown_beyond_guarantee)


def test_printed_summary_equals_the_written_dataset(printed_run):
    text, _, ds = printed_run
    tracks = [str(t) for t in ds.track.values]
    assert ds.sizes["draw"] == 300 and ds.attrs["seed"] == 11
    header = text.splitlines()
    assert "300 draws, seed 11" in header[0]
    rows = parse_table(text, tracks)
    rows = {k: v for k, v in rows.items() if not k.startswith("Break-even")}  # tests/test_decide.py checks these
    exp = expected_figures(ds)
    assert set(rows) == set(exp)
    for label, cells in rows.items():
        for t, cell in enumerate(cells):
            want = float(exp[label][t])
            if cell.endswith("%"):
                assert float(cell[:-1]) / 100 == pytest.approx(want, abs=0.0005 + 1e-12), (label, cell, want)
            else:
                got, half_unit = parse_money(cell)
                assert abs(got - want) <= half_unit * (1 + 1e-9), (label, tracks[t], cell, want)
    # the spread of figures is real: losses and nonzero probabilities are exercised
    assert any(v < 0 for v in exp["1-in-100 10-year present value"])
    assert any(0 < p < 1 for p in exp["P(10-year loss)"])
    # the header's benchmark and guarantee are the dataset's
    bench0 = float(ds.benchmark.isel(year=0).mean("draw").min())
    m = re.search(r"PY2027 mean benchmark (\S+) .*financial guarantee (\S+);", header[1])
    for cell, want in zip(m.groups(), (bench0, float(ds.financial_guarantee)), strict=True):
        got, half_unit = parse_money(cell)
        assert abs(got - want) <= half_unit * (1 + 1e-9)


def test_parse_money_catches_a_wrong_figure():
    assert parse_money("-$1.23M") == (-1.23e6, 5e3)
    assert parse_money("$512k") == (512e3, 500.0)
    got, half = parse_money("$1.23M")
    assert not abs(got - 1.2351e6) <= half


def test_run_prints_the_config_warning(printed_run):
    _, err, _ = printed_run
    assert "leadsim: warning: aco.beneficiaries = 600 is below LEAD's minimum of 5,000" in err


# ---------------------------------------------------------------------------------------------------------
# LeadsimWarning: each condition warns, once, pointing at the caller; a standard config does not warn
# ---------------------------------------------------------------------------------------------------------
WARNING_CASES = {
    "small ACO": ({"aco.beneficiaries": 4999}, r"aco\.beneficiaries = 4999 is below LEAD's minimum of 5,000"),
    "small High Needs ACO": ({"aco.beneficiaries": 799,
                              "aco.mix": {"aged_disabled": 0.5, "esrd": 0.0, "high_needs": 0.5}},
                             r"aco\.beneficiaries = 799 is below LEAD's minimum of 800 for a High Needs ACO"),
    "infinite skewness": ({"population.esrd.tail_alpha": 2.5},
                          r"population\.esrd\.tail_alpha = 2\.5: a Pareto tail with alpha < 3 has infinite skewness"),
    "past PY2036": ({"simulation.start_year": 2028}, r"runs past PY2036"),
}


@pytest.mark.parametrize("case", WARNING_CASES)
def test_config_warnings(case):
    overrides, message = WARNING_CASES[case]
    with pytest.warns(LeadsimWarning, match=message) as record:
        leadsim.load_config("configs/default.toml", overrides=overrides)
    assert len(record) == 1
    assert record[0].filename == __file__  # the warning points at the user's call, not at leadsim


@pytest.mark.parametrize("overrides", [{"aco.beneficiaries": 5000},
                                       {"aco.beneficiaries": 800,
                                        "aco.mix": {"aged_disabled": 0.5, "esrd": 0.0, "high_needs": 0.5}},
                                       {"population.esrd.tail_alpha": 3.0},
                                       {"population.esrd.tail_alpha": 2.5, "population.esrd.tail_start": 1.0},
                                       {"simulation.start_year": 2027, "simulation.years": 10}])
def test_no_warning_at_the_boundaries(overrides):
    with warnings.catch_warnings():
        warnings.simplefilter("error", LeadsimWarning)
        leadsim.load_config("configs/default.toml", overrides=overrides)
