"""`leadsim run` on each policy preset: per-track summary, full config and [ASSUMED] list in the result."""

from __future__ import annotations

import contextlib
import io
import re
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest

import leadsim
from leadsim.cli import main
from leadsim.config import LeadsimWarning, preset_dir

ROOT = Path(__file__).resolve().parents[1]
PRESETS = {"lead_py2027": ("LEAD PY2027", ["global", "professional"]),
           "reach_py2026": ("REACH PY2026", ["global", "professional"]),
           "mssp_enhanced": ("MSSP ENHANCED", ["enhanced"])}
SETS = ["simulation.draws=3", "simulation.chunk_draws=3", "aco.beneficiaries=200"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One in-process `leadsim run configs/default.toml --set policy.preset=...` per preset."""
    out = {}
    for preset in PRESETS:
        path = tmp_path_factory.mktemp(preset) / f"{preset}.nc"
        argv = ["run", str(ROOT / "configs" / "default.toml"), "-o", str(path)]
        for s in [*SETS, f"policy.preset={preset}"]:
            argv += ["--set", s]
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
            code = main(argv)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LeadsimWarning)
            cfg = leadsim.load_config(ROOT / "configs" / "default.toml",
                                      overrides=dict(s.split("=", 1) for s in [*SETS, f"policy.preset={preset}"]))
        out[preset] = (code, buf.getvalue(), path, cfg, leadsim.open(path) if code == 0 else None)
    return out


def _dollars(token: str) -> float:
    m = re.fullmatch(r"(-?)\$([\d,.]+)([kMB])", token)
    assert m, token
    return (-1 if m.group(1) else 1) * float(m.group(2).replace(",", "")) * {"k": 1e3, "M": 1e6, "B": 1e9}[m.group(3)]


@pytest.mark.parametrize("preset", list(PRESETS))
def test_run_prints_per_track_summary(runs, preset):
    code, text, path, _, ds = runs[preset]
    name, tracks = PRESETS[preset]
    assert code == 0
    assert path.is_file() and f"Wrote {path}" in text
    assert ds.attrs["policy_name"] == name
    assert list(ds.track.values) == tracks
    lines = text.splitlines()
    assert name in lines[0] and "3 draws" in lines[0]
    assert lines[2].split() == tracks                          # one column per settled track
    row = next(line for line in lines if line.startswith("Mean annual settlement"))
    printed = [_dollars(tok) for tok in row[len("Mean annual settlement"):].split()]
    assert len(printed) == len(tracks)
    for value, track in zip(printed, tracks, strict=True):
        mean = float(ds.net_settlement.sel(track=track).mean())   # over draws and years
        assert abs(value - mean) <= max(0.006 * abs(mean), 501.0), (track, value, mean)
    for label in ("Mean 10-year total", "P(10-year loss)", "P(a year's cash owed > guarantee)",
                  "(1-in-100 figures need at least 100 draws"):  # 3 draws: no 1-in-100 rows (issue 14)
        assert sum(line.startswith(label) for line in lines) == 1, label
    assert not any(line.startswith("1-in-100") for line in lines)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_run_records_every_parameter(runs, preset):
    _, _, _, cfg, ds = runs[preset]
    recorded = tomllib.loads(ds.attrs["config_toml"])
    assert recorded == cfg.to_dict()                           # every parameter, as resolved
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LeadsimWarning)
        again = leadsim.load_config(recorded)
    assert again == cfg
    assert again.simulation.draws == 3 and again.aco.beneficiaries == 200
    assert again.policy.preset == preset


def test_set_preset_from_cli_selects_reach_rules(runs):
    _, _, _, cfg, ds = runs["reach_py2026"]
    recorded = tomllib.loads(ds.attrs["config_toml"])["policy"]
    assert recorded["benchmark"]["trend_method"] == "reach_rta"
    assert recorded["benchmark"]["withhold"] == 0.05
    assert recorded["global"]["discount_lower"] == [0.04]
    assert recorded["global"]["savings_breakpoints"] == [0.0, 0.10, 0.35, 0.50]
    # the run applied them: Global benchmark = Professional x (1 - 4%) on the same spending
    g = ds.benchmark_pbpm.sel(track="global").values
    p = ds.benchmark_pbpm.sel(track="professional").values
    assert np.allclose(g, p * (1 - 0.04), rtol=1e-12)
    assert cfg.policy.name == "REACH PY2026"


def _assumed_keys(preset: str) -> list[str]:
    """Dotted keys of the preset file whose comment carries an [ASSUMED] tag."""
    keys, section = [], ""
    for line in (preset_dir() / f"{preset}.toml").read_text().splitlines():
        head = re.match(r"\s*\[([^\]]+)\]\s*(#.*)?$", line)
        if head:
            section = head.group(1)
            continue
        code, _, comment = line.partition("#")
        if "=" in code and "ASSUMED" in comment:
            keys.append(f"{section}.{code.split('=')[0].strip()}")
    return keys


def _in_force(cfg, key: str) -> bool:
    sl = cfg.policy.stop_loss
    if key.startswith("policy.stop_loss.") and key != "policy.stop_loss.truncation_cap":
        return sl.enabled
    return True


ASSUMED = [pytest.param(p, k, id=f"{p}:{k}") for p in PRESETS for k in _assumed_keys(p)]


@pytest.mark.parametrize(("preset", "key"), ASSUMED)
def test_assumptions_attr_lists_assumed_parameters(runs, preset, key):
    _, _, _, cfg, ds = runs[preset]
    listed = ds.attrs["assumptions"]
    if not _in_force(cfg, key):
        assert key not in listed                               # stop-loss terms only when stop-loss is elected
        return
    assert key in listed


def test_assumed_tags_found():
    # the parser above sees the tags it is meant to check
    assert {"policy.benchmark.guardrail_hi", "policy.benchmark.convergence",
            "policy.settlement.sequestration_on_losses"} <= set(_assumed_keys("lead_py2027"))
