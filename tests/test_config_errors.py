"""Bad input: each invalid config gives one error line naming the key; ``leadsim run`` exits 2 and writes nothing.

Every case is a small TOML file (the rest takes the defaults). The CLI is called in-process through
``leadsim.cli.main`` (fast), plus one real subprocess of the installed ``leadsim`` command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from leadsim.cli import main
from leadsim.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
LEAD = 'preset = "lead_py2027"\n'

# id: (TOML text, strings the single error line must contain: the dotted key first)
CASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "negative_beneficiaries": ("[aco]\nbeneficiaries = -5\n", ("aco.beneficiaries", "-5", "1 <= value")),
    "mix_not_summing_to_one": ("[aco]\nmix = { aged_disabled = 0.9, esrd = 0.05, high_needs = 0.2 }\n",
                               ("aco.mix", "sum to 1")),
    "tail_alpha_le_1": ("[population.esrd]\ntail_alpha = 1.0\n", ("population.esrd.tail_alpha", "2.0 < value")),
    "tail_alpha_infinite_variance": ("[population.esrd]\ntail_alpha = 1.1\n",
                                     ("population.esrd.tail_alpha = 1.1", "2.0 < value")),
    "share_above_1": ("[population.aged_disabled]\nzero_share = 1.5\n",
                      ("population.aged_disabled.zero_share", "1.5", "value < 1.0")),
    "savings_shares_above_1": (f"[policy]\n{LEAD}[policy.global]\nsavings_breakpoints = [0.0, 0.05]\n"
                               "savings_shares = [0.5, 1.2]\n", ("policy.global.savings_shares", "1.2")),
    "breakpoints_not_increasing": (f"[policy]\n{LEAD}[policy.global]\nsavings_breakpoints = [0.0, 0.05, 0.03]\n"
                                   "savings_shares = [0.5, 0.6, 0.7]\n",
                                   ("policy.global", "savings_breakpoints", "strictly increasing")),
    "unknown_key": ("[aco]\nbenefciaries = 100\n", ("aco.benefciaries", "unknown key")),
    "unknown_section": ("[simulaton]\ndraws = 10\n", ("simulaton", "unknown key")),
    "wrong_type": ('[simulation]\ndraws = "many"\n', ("simulation.draws", "'many'", "integer")),
    "wrong_type_bool": ('[aco]\nrural = "yes"\n', ("aco.rural", "boolean")),
    "nan": ("[population.high_needs]\nsigma = nan\n", ("population.high_needs.sigma", "nan", "finite")),
    "inf": ("[population.esrd]\nmean_annual_cost = inf\n", ("population.esrd.mean_annual_cost", "finite")),
    "malformed_toml": ("[aco\nbeneficiaries = 5\n", ("malformed TOML", "bad.toml", "line 1")),
    "unknown_preset": ('[policy]\npreset = "nope"\n', ("policy.preset", "'nope'", "lead_py2027")),
    "quality_sd_infeasible": ("[quality]\nmean = 0.85\nsd = 0.4\n", ("quality", "sd", "Beta")),
    "stop_loss_and_truncation": (f"[policy]\n{LEAD}[policy.stop_loss]\nenabled = true\ntruncation_cap = 4e5\n",
                                 ("policy.stop_loss", "truncation_cap", "not both")),
    "attachments_not_increasing": (f"[policy]\n{LEAD}[policy.stop_loss]\n"
                                   "attachments = [250000.0, 125000.0, 500000.0]\n",
                                   ("policy.stop_loss", "attachments", "strictly increasing")),
    "attachments_shares_length": (f"[policy]\n{LEAD}[policy.stop_loss]\nattachments = [125000.0, 250000.0]\n",
                                  ("policy.stop_loss", "attachments and shares", "same length")),
    "rho_one": ("[population.aged_disabled]\nrho = 1.0\n", ("population.aged_disabled.rho", "<= 0.999")),
    "mortality_one": ("[population.esrd]\nmortality = 1.0\n", ("population.esrd.mortality", "value < 1.0")),
    "zero_draws": ("[simulation]\ndraws = 0\n", ("simulation.draws", "1 <= value")),
    "too_many_years": ("[simulation]\nyears = 40\n", ("simulation.years", "<= 30")),
    "schema_version": ("schema_version = 2\n", ("schema_version",)),
    "unknown_track": (f'[policy]\n{LEAD}tracks = ["global", "bogus"]\n', ("policy.tracks", "'bogus'")),
    "care_management_out_of_range": ("[aco]\ncare_management_effect = [0.0, -0.95]\n",
                                     ("aco.care_management_effect", "-0.95", "-0.9 <= value")),
}


def _run(args: list[str], capsys) -> tuple[int, list[str]]:
    rc = main(args)
    err = capsys.readouterr().err
    return rc, [line for line in err.splitlines() if line.strip()]


@pytest.mark.parametrize("case", list(CASES))
def test_invalid_config_one_line_exit_2_no_output(case, tmp_path, capsys):
    text, expected = CASES[case]
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    out = tmp_path / "out.nc"
    rc, lines = _run(["run", str(cfg), "-o", str(out)], capsys)
    assert rc == 2
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("leadsim: error: ")
    for token in expected:
        assert token in line, (token, line)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]  # no output, no temporary file
    # the API raises the same single problem
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert len(err.value.problems) == 1 and expected[0] in err.value.problems[0]


def test_missing_file(tmp_path, capsys):
    rc, lines = _run(["run", str(tmp_path / "nope.toml"), "-o", str(tmp_path / "o.nc")], capsys)
    assert rc == 2
    assert lines == [f"leadsim: error: config: file not found: {tmp_path / 'nope.toml'}"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("sets", "expected"), [
    (["--set", "simulation.draws"], ("--set 'simulation.draws'", "key=value")),
    (["--set", "simulation.draws=-3"], ("simulation.draws", "-3", "1 <= value")),
    (["--set", "aco.mix.esrd=0.5"], ("aco.mix", "sum to 1")),
    (["--set", "aco.nonsense=1"], ("aco.nonsense", "unknown key")),
])
def test_bad_set_override(sets, expected, tmp_path, capsys):
    out = tmp_path / "o.nc"
    rc, lines = _run(["run", str(REPO / "configs" / "default.toml"), *sets, "-o", str(out)], capsys)
    assert rc == 2
    assert len(lines) == 1, lines
    for token in expected:
        assert token in lines[0], (token, lines[0])
    assert not out.exists()


def test_validate_reports_the_same(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[aco]\nbeneficiaries = -5\n")
    rc, lines = _run(["validate", str(cfg)], capsys)
    assert rc == 2 and len(lines) == 1 and "aco.beneficiaries" in lines[0]


def test_subprocess_cli_exit_code_2(tmp_path):
    """The installed command, in a real process: exit status 2, one stderr line, no output file."""
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[population.esrd]\ntail_alpha = 0.8\n")
    out = tmp_path / "out.nc"
    exe = shutil.which("leadsim")
    cmd = [exe] if exe else [sys.executable, "-m", "leadsim.cli"]
    proc = subprocess.run([*cmd, "run", str(cfg), "-o", str(out)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CI": "1"})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "population.esrd.tail_alpha = 0.8" in lines[0], proc.stderr
    assert proc.stdout == ""
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


def test_missing_output_folder(tmp_path, capsys):
    """A valid config with an output path in a folder that does not exist: exit 2 before simulating."""
    out = tmp_path / "no" / "such" / "out.nc"
    rc, lines = _run(["run", str(REPO / "configs" / "default.toml"), "-o", str(out)], capsys)
    assert rc == 2
    assert len(lines) == 1 and "does not exist" in lines[0] and str(out) in lines[0], lines
    assert list(tmp_path.iterdir()) == []


def test_policy_override_keeps_default_preset():
    """A policy.* override on a config without [policy] patches the default preset (was a 'policy.name:
    required key is missing' error before 9dce50d)."""
    cfg = load_config(overrides={"policy.stop_loss.enabled": True})
    assert cfg.policy.preset == "lead_py2027" and cfg.policy.stop_loss.enabled
