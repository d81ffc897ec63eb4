"""Plots return Figures; the HTML report and comparison hold every figure and table; Chromium renders them."""

from __future__ import annotations

import base64
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

import leadsim
from leadsim.analysis import plots, report
from leadsim.cli import main
from tests.helpers import small_config

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


@pytest.fixture(scope="module")
def run():
    return leadsim.simulate(small_config(**{"simulation.draws": 120}), progress=False)


@pytest.fixture(scope="module")
def mssp():
    return leadsim.simulate(small_config(**{"simulation.draws": 120, "policy.preset": "mssp_enhanced"}),
                            progress=False)


class Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.figures: list[str] = []
        self.tables: list[str] = []
        self.sections: list[str] = []
        self.png_ok = True

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.figures.append(a.get("data-figure", ""))
            src = a.get("src", "")
            assert src.startswith("data:image/png;base64,")
            self.png_ok &= base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
        elif tag == "table":
            self.tables.append(a.get("data-table", ""))
        elif tag == "pre":
            self.sections.append(a.get("data-section", ""))


def parse(text: str) -> Collector:
    c = Collector()
    c.feed(text)
    return c


@pytest.mark.parametrize("name", ["fan_chart", "loss_exceedance", "settlement_distribution", "comparison",
                                  "waterfall", "convergence"])
def test_each_plot_returns_a_figure_with_and_without_ax(run, name):
    fn = getattr(plots, name)
    fig = fn(run)
    assert isinstance(fig, Figure) and fig.axes
    host = Figure()
    ax = host.add_subplot()
    assert fn(run, ax=ax) is host


def test_multi_run_plots_and_waterfall_of_the_1_in_100_draw(run, mssp):
    runs = {"lead": run, "mssp": mssp}
    for fn in (plots.loss_exceedance, plots.settlement_distribution, plots.comparison):
        assert isinstance(fn(runs), Figure)
    assert isinstance(plots.waterfall(run, track="professional", draw="1-in-100", year=2030), Figure)
    cum = run["cumulative_settlement"].sel(track="global")
    for draw in ("mean", "1-in-100", 3):
        w = plots.waterfall_data(run, track="global", draw=draw)
        steps = sum(w[k] for k in plots._STEPS if k != "benchmark before discount")
        assert w["benchmark before discount"] + steps == pytest.approx(w["net settlement"], abs=1e-3)
    w = plots.waterfall_data(run, track="global", draw="1-in-100")
    assert w["net settlement"] == pytest.approx(float(np.quantile(cum, 0.01, method="inverted_cdf")))
    assert w["net settlement"] == pytest.approx(float(cum.sel(draw=int(w["draw"]))))


def test_report_contains_every_figure_and_table(run):
    text = report.report_html(run, source="run.nc")
    c = parse(text)
    tracks = [str(t) for t in run["track"].values]
    expected = ["fan_chart", "loss_exceedance", "settlement_distribution", "comparison", "convergence"]
    expected += [f"waterfall_{k}_{t}" for t in tracks for k in ("mean", "1in100")]
    assert sorted(c.figures) == sorted(expected) and c.png_ok
    assert sorted(c.tables) == sorted(["horizon_metrics", "provenance", *(f"annual_metrics_{t}" for t in tracks)])
    assert c.sections == ["assumptions", "config"]
    assert run.attrs["assumptions"].splitlines()[0] in text
    assert f"seed {run.attrs['seed']}" in text and "<script" not in text and "http" not in text.split("<body>")[1]


def test_cli_report_and_compare(run, mssp, tmp_path, capsys):
    a, b = leadsim.save(run, tmp_path / "lead.nc"), leadsim.save(mssp, tmp_path / "mssp.nc")
    assert main(["report", str(a), "-o", str(tmp_path / "r.html")]) == 0
    assert len(parse((tmp_path / "r.html").read_text()).figures) == 9
    assert main(["compare", str(a), str(b), "-o", str(tmp_path / "c.html")]) == 0
    out = capsys.readouterr().out
    assert "lead: global" in out and "mssp: enhanced" in out and "Paired differences vs lead: global" in out
    c = parse((tmp_path / "c.html").read_text())
    assert sorted(c.figures) == sorted(report.COMPARE_FIGURES)
    assert sorted(c.tables) == sorted(report.COMPARE_TABLES)
    assert main(["report", str(tmp_path / "missing.nc")]) == 2


def chromium_dump(html_path: Path) -> str:
    """Load a page in headless Chromium and return its DOM after a check script has counted what rendered."""
    probe = html_path.with_suffix(".probe.html")
    probe.write_text(html_path.read_text().replace(
        "</body>", "<script>window.addEventListener('load',()=>{const i=[...document.images];"
        "document.body.setAttribute('data-loaded',i.filter(x=>x.complete&&x.naturalWidth>300).length);"
        "document.body.setAttribute('data-tables',document.querySelectorAll('table tbody tr').length>0?"
        "document.querySelectorAll('table').length:0);});</script></body>"))
    with tempfile.TemporaryDirectory() as profile:
        res = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                              "--disable-background-networking", "--disable-component-update", "--no-first-run",
                              f"--user-data-dir={profile}",
                              "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                             capture_output=True, text=True, timeout=120)
    return res.stdout


@pytest.mark.ci_required  # .ci/run installs Debian's chromium
@pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium (/usr/bin/chromium)")
def test_report_renders_in_headless_chromium(run, mssp, tmp_path):
    path = tmp_path / "report.html"
    report.write_html(report.report_html(run), path)
    dom = chromium_dump(path)
    c = parse(report.report_html(run))
    assert f'data-loaded="{len(c.figures)}"' in dom
    assert f'data-tables="{len(c.tables)}"' in dom
    cpath = tmp_path / "compare.html"
    report.write_html(report.compare_html({"lead": run, "mssp": mssp}), cpath)
    dom = chromium_dump(cpath)
    assert f'data-loaded="{len(report.COMPARE_FIGURES)}"' in dom
    assert f'data-tables="{len(report.COMPARE_TABLES)}"' in dom


def test_figures_and_report_of_a_tilted_run_are_weighted(tmp_path):
    """A tilted run's report says its estimates are weighted, and its figures use the weights: the waterfall's
    mean draw is the weighted mean, and the loss-exceedance curve is the weighted survival function."""
    ds = leadsim.simulate(small_config(**{"simulation.sampling": "tilted", "simulation.draws": 64}), progress=False)
    w = ds["weight"].values
    wf = plots.waterfall_data(ds, draw="mean")
    want = float((ds["net_settlement"].sel(track="global").sum("year") * w).sum() / w.sum())
    assert wf["net settlement"] == pytest.approx(want, rel=1e-9)
    fig = plots.loss_exceedance(ds)
    line = fig.axes[0].lines[0]
    x, p = line.get_xdata(), line.get_ydata()
    loss = -ds["cumulative_settlement"].sel(track="global").values
    np.testing.assert_allclose(p, [w[loss > v].sum() / w.sum() for v in x], rtol=1e-9, atol=1e-15)
    page = report.report_html(ds)
    assert "tilted sampling, weighted (effective draws" in page
    assert "every table and figure uses the draws' weights" in page
