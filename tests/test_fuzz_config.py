"""Hypothesis fuzzing of configs: a bad config always gives one-line ConfigError problems naming the key;
a valid extreme config runs and gives finite results.

Budget: validation is cheap (a few ms a config), so the mutation tests try 500 configs; only
``test_extreme_valid_configs_simulate`` simulates (tiny ACOs, 12 examples; 40 more and each extreme alone in
the slow tier).
"""

from __future__ import annotations

import copy
import math
import re
import tomllib
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import leadsim
from leadsim.cli import main
from leadsim.config import ConfigError, LeadsimWarning

BASE: dict[str, Any] = leadsim.load_config("configs/default.toml").to_dict()

# words that only appear when an internal error or traceback leaks into a message
LEAKS = ("Traceback", "pydantic", "errors.pydantic.dev", "For further information", "input_value=", "numba",
         "xarray", "File \"", "Error(")
# a problem starts with its dotted key (parts quoted when odd), then ": " or " = value: "
KEY_LINE = re.compile(r"^(\(top level\)|([\w-]+|'[^']*'|\"[^\"]*\")(\.([\w-]+|'[^']*'|\"[^\"]*\"))*)(: | = )")


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys / list indices) into a nested config mapping, tables and leaves alike."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append((*prefix, k))
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.append((*prefix, i))
            out += _paths(v, (*prefix, i))
    return out


PATHS = _paths(BASE)


def _at(data: Any, path: tuple) -> Any:
    for p in path:
        data = data[p]
    return data


TABLES = [()] + [p for p in PATHS if isinstance(_at(BASE, p), dict)]

junk_scalar = st.one_of(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.sampled_from([0, -1, 1, 2**63, 2**70, -(2**63) - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e-300, 1e300, math.inf, -math.inf, math.nan, 0.999, 1.01]),
    st.booleans(),
    st.none(),
    st.text(max_size=8),
    st.sampled_from(["", "1", "0.5", "true", "lead_py2027", "../etc/passwd", "global"]),
)
junk = st.one_of(
    junk_scalar,
    st.lists(junk_scalar, max_size=4),
    st.dictionaries(st.text(max_size=5), junk_scalar, max_size=3),
)


@st.composite
def mutated_configs(draw: st.DrawFn) -> dict[str, Any]:
    """The default config with 1-3 random mutations: a wrong value, a deleted key, an extra key, a list item."""
    data = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["value", "value", "delete", "extra", "bound"]))
        paths = _paths(data)
        if kind in ("value", "delete", "bound") and paths:
            path = draw(st.sampled_from(paths))
            parent = _at(data, path[:-1])
            if kind == "delete":
                if isinstance(parent, dict):
                    del parent[path[-1]]
                elif len(parent) > 0:
                    parent.pop(path[-1])
            elif kind == "bound":
                old = parent[path[-1]]
                if isinstance(old, (int, float)) and not isinstance(old, bool):
                    scale = draw(st.sampled_from([-1.0, 0.0, 1e-9, 0.5, 2.0, 1e3, 1e12]))
                    shift = draw(st.sampled_from([0.0, 1.0, -1.0, 1e-12]))
                    new = old * scale + shift
                    parent[path[-1]] = int(new) if isinstance(old, int) and math.isfinite(new) else new
                else:
                    parent[path[-1]] = draw(junk)
            else:
                parent[path[-1]] = draw(junk)
        else:
            table = _at(data, draw(st.sampled_from([t for t in TABLES if _exists(data, t)])))
            name = draw(st.one_of(st.sampled_from(["draw", "seeds", "beneficiary", "alpha", "Global", "x"]),
                                  st.text(min_size=1, max_size=6)))
            table[name] = draw(junk)
    return data


def _exists(data: Any, path: tuple) -> bool:
    try:
        return isinstance(_at(data, path), dict)
    except (KeyError, IndexError, TypeError):
        return False


def _check_error(err: ConfigError) -> None:
    assert err.problems, "a ConfigError must name at least one problem"
    assert str(err) == "\n".join(err.problems)
    for line in err.problems:
        assert "\n" not in line and line.strip() == line and line, repr(line)
        assert len(line) < 400, line
        assert KEY_LINE.match(line), f"problem does not start with a dotted key: {line!r}"
        for leak in LEAKS:
            assert leak not in line, f"internal detail {leak!r} leaked into: {line!r}"


def _load(data: Any) -> leadsim.Config | ConfigError:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LeadsimWarning)
        try:
            return leadsim.load_config(data)
        except ConfigError as err:  # any other exception fails the test with its traceback
            return err


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated_configs())
def test_mutated_configs_fail_cleanly_or_validate(data):
    """400 mutated configs: each is a valid Config (that round-trips through TOML) or a clean ConfigError."""
    out = _load(data)
    if isinstance(out, ConfigError):
        _check_error(out)
    else:
        back = _load(tomllib.loads(out.to_toml()))
        assert back == out


@settings(max_examples=100, deadline=None, derandomize=True)
@given(key=st.sampled_from([".".join(map(str, p)) for p in PATHS if not isinstance(p[-1], int)]), value=junk)
def test_override_values_fail_cleanly(key, value):
    """Dotted overrides (the CLI's --set) with junk values: never anything but a clean ConfigError."""
    text = value if isinstance(value, str) else repr(value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LeadsimWarning)
        try:
            leadsim.load_config("configs/default.toml", overrides={key: text})
        except ConfigError as err:
            _check_error(err)


@pytest.mark.parametrize("data, key", [
    ({"simulation": {"draws": 0}}, "simulation.draws"),
    ({"simulation": {"draws": "many"}}, "simulation.draws"),
    ({"simulation": {"draws": 2.5}}, "simulation.draws"),
    ({"simulation": {"drwas": 5}}, "simulation.drwas"),
    ({"population": {"esrd": {"tail_alpha": 1.0}}}, "population.esrd.tail_alpha"),
    ({"population": {"esrd": {"mortality": 1.0}}}, "population.esrd.mortality"),
    ({"aco": {"mix": {"aged_disabled": 0.5, "esrd": 0.1, "high_needs": 0.1}}}, "aco.mix"),
    ({"aco": {"growth": 0.6}}, "aco.growth"),
    ({"aco": {"growth": 0.5, "beneficiaries": 100_000}, "simulation": {"years": 30}}, "aco.growth"),
    ({"aco": "big"}, "aco"),
    ({"trend": {"national_mean": {"esrd": 0.04}}}, "trend.national_mean.aged_disabled"),
    ({"policy": {"preset": "lead_py2099"}}, "policy.preset"),
    ({"policy": {"preset": "lead_py2027", "stop_loss": {"enabled": True, "truncation_cap": 1e5}}},
     "policy.stop_loss"),
    ({"schema_version": 2}, "schema_version"),
])
def test_known_bad_configs_name_their_key(data, key):
    out = _load(data)
    assert isinstance(out, ConfigError)
    _check_error(out)
    assert any(line.startswith(key) for line in out.problems), out.problems


def test_growth_that_overflows_the_cohort_is_refused():
    """10,000 beneficiaries growing 50% a year for 30 years would need 1.28e9 slots: refused up front."""
    out = _load({"aco": {"growth": 0.5}, "simulation": {"years": 30}})
    assert isinstance(out, ConfigError)
    assert "1,278,340,395" in out.problems[0] and "5,000,000" in out.problems[0]
    ok = _load({"aco": {"growth": 0.5, "beneficiaries": 10}, "simulation": {"years": 30}})
    assert not isinstance(ok, ConfigError)   # 10 x 1.5^29 = 1.28 million: allowed


def test_cli_reports_bad_config_in_one_line_per_problem(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('schema_version = 1\n[simulation]\ndraws = -3\n[population.esrd]\ntail_alpha = "heavy"\n')
    assert main(["validate", str(bad)]) == 2
    err = sorted(capsys.readouterr().err.strip().splitlines())
    assert len(err) == 2 and all(line.startswith("leadsim: error: ") for line in err)
    assert err[0].startswith("leadsim: error: population.esrd.tail_alpha = 'heavy': ")
    assert err[1].startswith("leadsim: error: simulation.draws = -3: ")
    assert "1 <= value <= 10000000" in err[1]


# --------------------------------------------------------------------------------------------------------
# Extreme but valid: these must simulate and give finite numbers
# --------------------------------------------------------------------------------------------------------
POPS = ("aged_disabled", "esrd", "high_needs")
EXTREMES: dict[str, list[dict[str, Any]]] = {
    "one beneficiary": [{"aco.beneficiaries": 1}],
    "one draw": [{"simulation.draws": 1, "simulation.chunk_draws": 1}],
    "one year": [{"simulation.years": 1}],
    "thirty years": [{"simulation.years": 30, "simulation.start_year": 2027}],
    "tail_alpha 2.01": [{f"population.{p}.tail_alpha": 2.01 for p in POPS}],
    "tail from the median": [{f"population.{p}.tail_start": 0.5 for p in POPS}],
    "no tail": [{f"population.{p}.tail_start": 1.0 for p in POPS}],
    "mortality 0.999": [{f"population.{p}.mortality": 0.999 for p in POPS}],
    "exits 0.999": [{f"population.{p}.exit_rate": 0.999 for p in POPS}],
    "growth +0.5": [{"aco.growth": 0.5}],
    "growth -0.5": [{"aco.growth": -0.5}],
    "sigma 0": [{f"population.{p}.sigma": 0.0 for p in POPS}],
    "sigma 4": [{f"population.{p}.sigma": 4.0 for p in POPS}],
    "zero_share 0.999": [{"population.aged_disabled.zero_share": 0.999}],
    "rho 0.999": [{f"population.{p}.rho": 0.999 for p in POPS}],
    "rho 0": [{f"population.{p}.rho": 0.0 for p in POPS}],
    "only High Needs": [{"aco.mix.aged_disabled": 0.0, "aco.mix.esrd": 0.0, "aco.mix.high_needs": 1.0}],
    "only ESRD": [{"aco.mix.aged_disabled": 0.0, "aco.mix.esrd": 1.0, "aco.mix.high_needs": 0.0}],
    "deterministic": [{"trend.national_sd": 0.0, "trend.regional_sd": 0.0, "trend.aco_level_sd": 0.0, "quality.sd": 0.0,
                       **{f"population.{p}.{k}": 0.0 for p in POPS for k in ("mortality", "exit_rate")}}],
    # near the largest SDs the Gaussian growth law allows over 30 years; the ACO's log level cannot go below -100%
    "wild trends": [{"trend.national_sd": 0.06, "trend.regional_sd": 0.06, "trend.national_ar": 0.9,
                     "trend.aco_level_sd": 0.5, "trend.aco_level_persistence": 0.99}],
    "trend -0.5": [{f"trend.national_mean.{p}": -0.5 for p in POPS}],
    "trend +1": [{f"trend.national_mean.{p}": 1.0 for p in POPS}],
    "forecast bias": [{"trend.forecast_bias": 0.5}, {"trend.forecast_bias": -0.5}],
    "care management": [{"aco.care_management_effect": [-0.9]}, {"aco.care_management_effect": [0.9]}],
    "regional ratio": [{"aco.historical_to_regional": 0.2}, {"aco.historical_to_regional": 5.0}],
    "quality extremes": [{"quality.mean": 1e-6, "quality.sd": 0.0}, {"quality.mean": 0.999999, "quality.sd": 0.0}],
    "costly": [{f"population.{p}.mean_annual_cost": 1e7 for p in POPS}],
    "cheap": [{f"population.{p}.mean_annual_cost": 1e-3 for p in POPS}],
    "stop-loss": [{"policy.stop_loss.enabled": True, "policy.stop_loss.loading": 5.0}],
    "truncation": [{"policy.stop_loss.truncation_cap": 1.0}],
    "transitions": [{"population.aged_disabled.high_needs_rate": 0.999, "population.aged_disabled.esrd_rate": 0.999}],
    "weak risk model": [{f"population.{p}.risk_model_r2": 1e-9 for p in POPS}],
    "operating cost": [{"aco.operating_cost_pbpm": 1e9}],
}


extreme_picks = st.lists(st.sampled_from(sorted(EXTREMES)), min_size=1, max_size=3, unique=True)


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(picks=extreme_picks, variant=st.integers(0, 1), n=st.sampled_from([1, 2, 17]))
def test_extreme_valid_configs_simulate(picks, variant, n):
    """A combination of up to three extremes on a tiny ACO runs, with finite values in every variable."""
    _simulate_extremes(picks, variant, n)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(picks=extreme_picks, variant=st.integers(0, 1), n=st.sampled_from([1, 2, 17, 300]))
def test_extreme_valid_configs_simulate_many(picks, variant, n):
    """The same as above, 40 more combinations (slow tier)."""
    _simulate_extremes(picks, variant, n)


@pytest.mark.parametrize("name", sorted(EXTREMES))
@pytest.mark.slow
def test_each_extreme_simulates(name):
    """Every extreme on its own (each variant) on a 5-beneficiary ACO (slow tier)."""
    for variant in range(len(EXTREMES[name])):
        _simulate_extremes([name], variant, 5)


def _simulate_extremes(picks: list[str], variant: int, n: int) -> None:
    overrides: dict[str, Any] = {"aco.beneficiaries": n, "simulation.draws": 2, "simulation.chunk_draws": 2,
                                 "simulation.years": 3}
    for name in picks:
        options = EXTREMES[name]
        overrides.update(options[variant % len(options)])
    cfg = _load(_apply(overrides))
    if isinstance(cfg, ConfigError):  # expected clashes: two mixes, or wild trends around a -50% mean
        _check_error(cfg)
        assert ({"only High Needs", "only ESRD"} <= set(picks)
                or {"wild trends", "trend -0.5"} <= set(picks)), cfg.problems
        return
    ds = leadsim.simulate(cfg, progress=False)
    assert ds.sizes["draw"] == cfg.simulation.draws and ds.sizes["year"] == cfg.simulation.years
    for name, var in ds.data_vars.items():
        assert np.isfinite(var.values).all(), f"{name} has NaN/inf with {picks}"
    assert (ds.member_months.values >= 0).all() and (ds.deaths.values >= 0).all()
    assert ds.member_months.isel(year=0).sum("population").max() <= 12.0 * n


def _apply(overrides: dict[str, Any]) -> dict[str, Any]:
    """Dotted overrides onto the parsed default TOML (policy preset kept), as a mapping."""
    with open("configs/default.toml", "rb") as fh:
        data = tomllib.load(fh)
    for key, value in overrides.items():
        node = data
        *head, last = key.split(".")
        for part in head:
            node = node.setdefault(part, {})
        node[last] = value
    return data


# --------------------------------------------------------------------------------------------------------
# Hostile config files (issue 14): any bytes give a one-line error or a valid config, never a traceback or a hang
# --------------------------------------------------------------------------------------------------------
_hostile_prefix = st.sampled_from([b"", b"\xef\xbb\xbf", b"\0", b"x = " + b"[" * 5000, b"[aco]\nname = \"a\0b\"\n",
                                   b"[aco]\nname = 2027\n", b"\xff\xfe", b"a.b.c.d.e.f = 1\n" * 50])


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefix=_hostile_prefix, body=st.binary(max_size=200))
def test_hostile_config_bytes_fail_in_one_line(tmp_path, capsys, prefix, body):
    cfg = tmp_path / "hostile.toml"
    cfg.write_bytes(prefix + body)
    rc = main(["validate", str(cfg)])
    err = [x for x in capsys.readouterr().err.splitlines() if not x.startswith("leadsim: warning:")]
    assert rc in (0, 2)
    assert all(line.startswith("leadsim: error: ") for line in err), err
    assert not any(word in line for line in err for word in LEAKS), err
