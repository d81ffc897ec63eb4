"""Issue 14: never destroy a file, never mix two runs, never return a confidently wrong number.

One section per finding; each test reproduces the reported failure and checks it is now refused or fixed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import leadsim
from leadsim.cli import main
from leadsim.errors import OutputError

ROOT = Path(__file__).resolve().parent.parent
SETS = ["--set=aco.beneficiaries=300", "--set=simulation.draws=8", "--set=simulation.chunk_draws=4"]


def _run(cfg: Path | str, out: Path | str, *extra: str) -> int:
    return main(["run", str(cfg), "-q", "-o", str(out), *SETS, *extra])


def _errors(capsys) -> list[str]:
    return [x for x in capsys.readouterr().err.strip().splitlines() if not x.startswith("leadsim: warning:")]


@pytest.fixture(scope="module")
def result_nc(tmp_path_factory) -> Path:
    """A small finished netCDF result (read-only use: copy before changing it)."""
    out = tmp_path_factory.mktemp("res") / "r.nc"
    assert _run(ROOT / "configs/default.toml", out) == 0
    return out


# ---------------------------------------------------------------------------------------------------------
# 1. outputs never replace an input, a device, or an existing result without --overwrite
# ---------------------------------------------------------------------------------------------------------
def test_run_refuses_output_equal_to_config(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    shutil.copy(ROOT / "configs/default.toml", cfg)
    before = cfg.read_bytes()
    assert _run(cfg, cfg) == 2
    assert _run(cfg, cfg, "--overwrite") == 2
    err = _errors(capsys)
    assert len(err) == 2 and all("is also an input" in e for e in err)
    assert cfg.read_bytes() == before


def test_run_refuses_report_equal_to_output(tmp_path, capsys):
    out = tmp_path / "x.nc"
    assert _run(ROOT / "configs/default.toml", out, "--report", str(out)) == 2
    assert "--report" in _errors(capsys)[0]
    assert not out.exists()


def test_report_and_compare_refuse_their_inputs(result_nc, tmp_path, capsys):
    r = tmp_path / "r.nc"
    c2 = tmp_path / "c2.nc"
    shutil.copy(result_nc, r)
    shutil.copy(result_nc, c2)
    before = r.read_bytes()
    assert main(["report", str(r), "-o", str(r), "--overwrite"]) == 2
    assert main(["compare", str(r), str(c2), "-o", str(c2), "--overwrite"]) == 2
    assert main(["export", str(r), str(r), "--overwrite"]) == 2
    assert all("is also an input" in e for e in _errors(capsys))
    assert r.read_bytes() == before and c2.read_bytes() == before


def test_existing_results_need_overwrite(result_nc, tmp_path, capsys):
    out = tmp_path / "x.nc"
    shutil.copy(result_nc, out)
    before = out.read_bytes()
    assert _run(ROOT / "configs/default.toml", out) == 2
    assert _errors(capsys) == [f"leadsim: error: -o {out}: already exists; add --overwrite to replace it"]
    assert out.read_bytes() == before
    assert _run(ROOT / "configs/default.toml", out, "--overwrite", "--seed", "3") == 0
    assert out.read_bytes() != before
    # export onto a finished store, and report/compare onto an existing page
    done = tmp_path / "done.zarr"
    assert main(["export", str(result_nc), str(done)]) == 0
    manifest = (done / "leadsim_run.json").read_bytes()
    assert main(["export", str(out), str(done)]) == 2
    assert (done / "leadsim_run.json").read_bytes() == manifest
    assert main(["export", str(out), str(done), "--overwrite"]) == 0
    page = tmp_path / "page.html"
    page.write_text("mine")
    assert main(["report", str(result_nc), "-o", str(page)]) == 2
    assert main(["compare", str(result_nc), str(out), "-o", str(page)]) == 2
    assert page.read_text() == "mine"
    assert main(["report", str(result_nc), "-o", str(page), "--overwrite"]) == 0
    assert page.read_text() != "mine"


@pytest.mark.parametrize("maker", ["fifo", "device"])
def test_special_files_are_never_replaced(result_nc, tmp_path, capsys, maker):
    node = tmp_path / "node"
    if maker == "fifo":
        os.mkfifo(node)
    else:
        node = Path("/dev/null")  # refused before anything is opened; never written
    assert _run(ROOT / "configs/default.toml", node, "--overwrite") == 2
    assert main(["report", str(result_nc), "-o", str(node), "--overwrite"]) == 2
    assert main(["export", str(result_nc), str(node), "--overwrite"]) == 2
    err = _errors(capsys)
    assert len(err) == 3 and all("not a regular file" in e for e in err)
    assert not node.is_file()
    with pytest.raises(OutputError, match="not a regular file"):
        leadsim.save(leadsim.open(result_nc), node)
    assert not node.is_file()


def test_resume_may_replace_its_own_report(tmp_path):
    out, page = tmp_path / "run.zarr", tmp_path / "run.html"
    assert _run(ROOT / "configs/default.toml", out, "--report", str(page)) == 0
    assert _run(ROOT / "configs/default.toml", out, "--report", str(page)) == 2  # neither flag: refused
    assert _run(ROOT / "configs/default.toml", out, "--report", str(page), "--resume") == 0


def test_empty_output_path_is_an_error(capsys):
    assert _run(ROOT / "configs/default.toml", "") == 2
    assert _errors(capsys) == ["leadsim: error: -o '': the output path is empty"]


# ---------------------------------------------------------------------------------------------------------
# 2. one writer per Zarr store: a lock with the holder's pid, identity re-checked before each region write
# ---------------------------------------------------------------------------------------------------------
def _small(**kw):
    from tests.helpers import small_config

    return small_config(**{"aco.beneficiaries": 300, "simulation.draws": 8, "simulation.chunk_draws": 4, **kw})


def test_second_writer_is_refused_naming_the_holder(tmp_path):
    from leadsim.errors import StoreLockedError
    from leadsim.io.lock import StoreLock
    from tests.helpers import run_zarr

    path = tmp_path / "same.zarr"
    with StoreLock(path), pytest.raises(StoreLockedError, match=f"pid {os.getpid()}"):
        run_zarr(_small(), path, overwrite=True)
    assert not path.exists()
    run_zarr(_small(), path)  # released: the lock file is gone and the run proceeds
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.zarr"]


def test_stale_lock_file_of_a_dead_process_is_taken_over(tmp_path):
    from leadsim.io.lock import lock_path
    from tests.helpers import run_zarr

    path = tmp_path / "run.zarr"
    lock_path(path).write_text("999999999 elsewhere\n")  # left by a killed writer: no flock is held on it
    assert run_zarr(_small(), path).complete
    assert not lock_path(path).exists()


def test_store_replaced_during_a_run_is_not_written_into(tmp_path):
    from leadsim.errors import StoreError
    from leadsim.io.zarrstore import read_manifest, write_manifest
    from tests.helpers import run_zarr

    path = tmp_path / "run.zarr"

    def hijack(lo, hi, res):  # another process (ignoring the lock) starts its own run in the store
        m = read_manifest(path)
        m.run_id, m.seed = "someone-else", 2
        write_manifest(path, m)

    with pytest.raises(StoreError, match="replaced or changed by another process"):
        run_zarr(_small(), path, on_chunk=hijack)
    assert read_manifest(path).seed == 2 and read_manifest(path).chunks_done == [[0, 1]]


def test_concurrent_writers_never_mix_two_runs(tmp_path):
    """The issue's race: two ``leadsim run --seed S -o same.zarr`` at once. One wins; the store is one run."""
    import subprocess
    import sys

    from leadsim.io.zarrstore import read_manifest

    env = {**os.environ, "PYTHONPATH": str(ROOT), "CI": "1"}
    for trial in range(3):
        path = tmp_path / f"same{trial}.zarr"
        procs = [subprocess.Popen([sys.executable, "-m", "leadsim.cli", "run", str(ROOT / "configs/default.toml"),
                                   "-q", "--seed", str(seed), "-o", str(path), "--set=aco.beneficiaries=300",
                                   "--set=simulation.draws=24", "--set=simulation.chunk_draws=2"],
                                  cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for seed in (1, 2)]
        outs = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
        codes = sorted(rc for rc, _ in outs)
        assert codes == [0, 2], outs
        loser = next(err for rc, err in outs if rc == 2)
        assert "being written by another leadsim process" in loser or "already exists" in loser
        assert "Traceback" not in loser
        m = read_manifest(path)
        ds = leadsim.open(path)
        assert m.complete and ds.attrs["seed"] == m.seed
        ref = leadsim.simulate(_small(**{"simulation.seed": m.seed, "simulation.draws": 24,
                                         "simulation.chunk_draws": 2}), progress=False)
        assert float(abs(ds["net_settlement"] - ref["net_settlement"]).max()) == 0.0


# ---------------------------------------------------------------------------------------------------------
# 4. trend SDs that let annual growth fall below -100% are refused, naming the field and the allowed range
# 5. an infinite-variance tail (alpha <= 2) is refused: its sample means are confidently wrong
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key, value, allowed", [
    ("trend.national_sd", 0.3, "0 <= trend.national_sd <= 0.14"),
    ("trend.regional_sd", 0.5, "0 <= trend.regional_sd <= 0.14"),
])
def test_trend_sd_that_breaks_the_growth_law_is_refused(key, value, allowed):
    from leadsim.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        leadsim.load_config(overrides={key: value})
    (line,) = info.value.problems
    assert line.startswith(f"{key} = {value}: annual growth could fall below -100%")
    assert allowed in line


def test_largest_allowed_trend_sd_gives_no_negative_growth():
    import warnings

    from leadsim.config.loading import GROWTH_Z

    cfg = leadsim.load_config(overrides={"trend.national_sd": 0.14, "aco.beneficiaries": 300,
                                         "simulation.draws": 200, "simulation.chunk_draws": 100})
    assert GROWTH_Z == 6.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = leadsim.simulate(cfg, progress=False)
    assert (ds["aco_growth"] > -1).all() and (ds["expenditure"] >= 0).all() and (ds["benchmark"] > 0).all()


@pytest.mark.parametrize("alpha", [1.01, 1.1, 2.0])
def test_infinite_variance_tail_is_refused(alpha):
    from leadsim.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"population.esrd.tail_alpha = {alpha}: .*2.0 < value"):
        leadsim.load_config(overrides={"population.esrd.tail_alpha": alpha})


# ---------------------------------------------------------------------------------------------------------
# 3. --set policy.preset=X keeps the config's own policy settings (or refuses, listing what would be dropped)
# ---------------------------------------------------------------------------------------------------------
OWN_POLICY = ('[policy]\npreset = "lead_py2027"\n[policy.stop_loss]\nenabled = true\n'
              "[policy.settlement]\ndiscount_rate = 0.03\n")


@pytest.mark.parametrize("preset", ["lead_py2027", "reach_py2026"])
def test_preset_override_keeps_the_files_policy_settings(tmp_path, capsys, preset):
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(OWN_POLICY)
    cfg = leadsim.load_config(cfg_path, overrides={"policy.preset": preset})
    assert cfg.policy.preset == preset
    assert cfg.policy.stop_loss.enabled is True and cfg.policy.settlement.discount_rate == 0.03
    plain = leadsim.load_config(overrides={"policy.preset": preset})
    assert plain.policy.stop_loss.enabled is False and plain.policy.settlement.discount_rate == 0.0
    # the CLI's --show agrees
    assert main(["validate", str(cfg_path), "--show", "--set", f"policy.preset={preset}"]) == 0
    shown = capsys.readouterr().out
    assert "discount_rate = 0.03" in shown


def test_preset_override_of_a_resolved_config_keeps_only_its_own_changes():
    base = leadsim.load_config(overrides={"policy.settlement.discount_rate": 0.03})
    moved = leadsim.load_config(base, overrides={"policy.preset": "reach_py2026"})
    reach = leadsim.load_config(overrides={"policy.preset": "reach_py2026"})
    assert moved.policy.settlement.discount_rate == 0.03
    assert moved.policy.name == reach.policy.name and moved.policy.tracks == reach.policy.tracks
    assert moved.policy.benchmark == reach.policy.benchmark


def test_preset_override_of_a_self_contained_policy_is_refused(tmp_path):
    from leadsim.errors import ConfigError

    full = leadsim.load_config().to_dict()
    full["policy"].pop("preset")
    full["policy"]["name"] = "my own rules"
    with pytest.raises(ConfigError, match=r"policy.preset = 'reach_py2026' \(set by override\): the config "
                                          r"defines a complete policy of its own .* settings \(policy\."):
        leadsim.load_config(full, overrides={"policy.preset": "reach_py2026"})


# ---------------------------------------------------------------------------------------------------------
# 6. --resume refuses a store written by other code (version or model source), naming both
# ---------------------------------------------------------------------------------------------------------
def test_resume_refuses_a_store_written_by_other_code(tmp_path, monkeypatch):
    import leadsim.io.zarrstore as store
    from leadsim.errors import ResumeMismatchError
    from tests.helpers import interrupt_after, run_zarr

    path = tmp_path / "run.zarr"
    with pytest.raises(KeyboardInterrupt):
        run_zarr(_small(), path, on_chunk=interrupt_after(1))
    written = store.read_manifest(path)
    assert written.model_hash == store.model_hash() and written.leadsim_version == leadsim.__version__
    monkeypatch.setattr(store, "model_hash", lambda: "f" * 64)  # an edited engine under the same version
    with pytest.raises(ResumeMismatchError) as info:
        run_zarr(_small(), path, resume=True)
    msg = str(info.value)
    assert f"model source {written.model_hash[:12]}" in msg and "model source ffffffffffff" in msg
    assert store.read_manifest(path).chunks_done == [[0, 1]]  # nothing was mixed in


def test_resume_refuses_a_different_package_version(tmp_path, monkeypatch):
    import leadsim.io.zarrstore as store
    from leadsim.errors import ResumeMismatchError
    from tests.helpers import interrupt_after, run_zarr

    path = tmp_path / "run.zarr"
    with pytest.raises(KeyboardInterrupt):
        run_zarr(_small(), path, on_chunk=interrupt_after(1))
    m = store.read_manifest(path)
    m.leadsim_version = "0.0.1"
    store.write_manifest(path, m)
    with pytest.raises(ResumeMismatchError, match=rf"leadsim 0\.0\.1, .* \(leadsim {leadsim.__version__},"):
        run_zarr(_small(), path, resume=True)


# ---------------------------------------------------------------------------------------------------------
# 7. per-chunk checksums: verified on open and on resume; --resume recomputes bad chunks
# ---------------------------------------------------------------------------------------------------------
def _chunk_file(path: Path, var: str, index: int) -> Path:
    return next(p for p in sorted((path / var / "c" / str(index)).rglob("*")) if p.is_file())


@pytest.mark.parametrize("damage", ["delete", "flip"])
def test_damaged_chunks_are_detected_and_recomputed(tmp_path, capsys, damage):
    import warnings

    from leadsim.errors import StoreError
    from tests.helpers import assert_same_run, run_zarr

    path = tmp_path / "run.zarr"
    run_zarr(_small(), path)
    good = leadsim.open(path)
    targets = [_chunk_file(path, "deaths", 1), _chunk_file(path, "net_settlement", 0)]
    for f in targets:
        if damage == "delete":
            f.unlink()
        else:
            data = bytearray(f.read_bytes())
            data[len(data) // 2] ^= 0x01
            f.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"is damaged: chunks 0 \(draws 0-3\), 1 \(draws 4-7\) failed the checksum"):
        leadsim.open(path)
    assert main(["report", str(path), "-o", str(tmp_path / "r.html")]) == 2
    err = _errors(capsys)
    assert len(err) == 1 and "is damaged" in err[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_zarr(_small(), path, resume=True)
    assert any("computing them again" in str(w.message) for w in caught)
    assert_same_run(leadsim.open(path), good)


def test_exported_store_has_checksums(result_nc, tmp_path):
    from leadsim.errors import StoreError
    from leadsim.io.zarrstore import read_manifest

    path = tmp_path / "copy.zarr"
    leadsim.save(leadsim.open(result_nc), path)
    assert len(read_manifest(path).chunk_sums) == 2
    _chunk_file(path, "benchmark", 1).unlink()
    with pytest.raises(StoreError, match="is damaged"):
        leadsim.open(path)


# ---------------------------------------------------------------------------------------------------------
# 8. every value that reaches the report and compare HTML is escaped
# ---------------------------------------------------------------------------------------------------------
def test_crafted_coordinates_are_escaped_in_report_and_compare(result_nc):
    import re

    from leadsim.analysis.report import compare_html, report_html

    ds = leadsim.open(result_nc)
    evil = ds.assign_coords(track=['<script>alert(1)</script>', 'x" onmouseover="alert(2)'],
                            year=[f"<img src=x onerror=alert({y})>" for y in ds["year"].values])
    pages = [report_html(evil, source="<b>src</b>"), compare_html({"a": evil, "<i>b</i>": evil})]
    for page in pages:
        assert "<script>alert" not in page and "<img src=x" not in page and "<i>b</i>" not in page
        assert 'onmouseover="alert' not in page
        for attr in re.findall(r'data-table="([^"]*)"', page):
            assert "<" not in attr and '"' not in attr
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0]


# ---------------------------------------------------------------------------------------------------------
# 9. a netCDF whose data live in other files (HDF5 external storage, external links) is refused
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("trick", ["external_storage", "external_link", "virtual"])
def test_netcdf_reading_other_files_is_refused(result_nc, tmp_path, capsys, trick):
    import h5py
    import numpy as np

    from leadsim.errors import ResultError

    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"TOP-SECRET" * 80)
    crafted = tmp_path / "crafted.nc"
    shutil.copy(result_nc, crafted)
    with h5py.File(crafted, "r+") as f:
        if trick == "external_storage":
            f.create_dataset("leak", shape=(800,), dtype="u1", external=[(str(secret), 0, 800)])
        elif trick == "external_link":
            f["leak"] = h5py.ExternalLink(str(secret), "/data")
        else:
            layout = h5py.VirtualLayout(shape=(4,), dtype="f8")
            layout[:] = h5py.VirtualSource(str(secret), "data", shape=(4,))
            f.create_virtual_dataset("leak", layout, fillvalue=np.nan)
    with pytest.raises(ResultError, match="refusing a netCDF file that reads other files: leak"):
        leadsim.open(crafted)
    assert main(["report", str(crafted), "-o", str(tmp_path / "r.html")]) == 2
    err = _errors(capsys)
    assert len(err) == 1 and "reads other files" in err[0] and str(crafted) in err[0]


# ---------------------------------------------------------------------------------------------------------
# 10. only regular files are read (no device, no FIFO), configs are size-bounded, deep nesting is one line
# 13. (part) "file signature not found" names the path; a BOM is called a byte-order mark
# ---------------------------------------------------------------------------------------------------------
def test_devices_and_fifos_are_refused_without_reading(tmp_path, capsys):
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)  # opening it would block forever
    assert main(["validate", "/dev/zero"]) == 2
    assert main(["validate", str(fifo)]) == 2
    assert main(["report", str(fifo), "-o", str(tmp_path / "r.html")]) == 2
    assert main(["compare", "/dev/zero", str(fifo)]) == 2
    err = _errors(capsys)
    assert len(err) == 4 and all("not a regular file" in e for e in err), err


def test_oversized_and_deeply_nested_configs_are_one_line(tmp_path, capsys):
    big = tmp_path / "big.toml"
    big.write_text("# padding\n" * 200_000)
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert main(["validate", str(big)]) == 2
    assert main(["validate", str(deep)]) == 2
    assert main(["validate", str(ROOT / "configs/default.toml"), "--set", "aco.name=" + "[" * 50_000]) == 2
    err = _errors(capsys)
    assert len(err) == 3, err
    assert "at most 1,000,000 bytes" in err[0] and "too deeply" in err[1]


def test_bom_and_foreign_files_have_clear_messages(tmp_path, capsys):
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + (ROOT / "configs/default.toml").read_bytes())
    foreign = tmp_path / "foreign.nc"
    foreign.write_text("not a netCDF file")
    assert main(["validate", str(bom)]) == 2
    assert main(["report", str(foreign), "-o", str(tmp_path / "r.html")]) == 2
    err = _errors(capsys)
    assert len(err) == 2
    assert "byte-order mark" in err[0] and "malformed" not in err[0]
    assert str(foreign) in err[1] and "signature not found" in err[1]


# ---------------------------------------------------------------------------------------------------------
# 11. control characters in names are refused at validation; figures draw names literally (no mathtext)
# 13. (part) a number where a name is expected suggests quoting
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key, value", [("aco.name", "a\0b"), ("policy.name", "x\ny"), ("aco.name", "esc\x1b[31m")])
def test_control_characters_in_names_are_refused(key, value):
    from leadsim.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"{key} = .*contains control character"):
        leadsim.load_config(overrides={key: value})


def test_number_for_a_name_suggests_quoting(capsys):
    assert main(["validate", str(ROOT / "configs/default.toml"), "--set", "aco.name=2027"]) == 2
    (err,) = _errors(capsys)
    assert "quote it" in err and '"2027"' in err


def test_names_with_dollars_are_drawn_literally(result_nc):
    from matplotlib.text import Text

    from leadsim.analysis import plots
    from leadsim.analysis.report import report_html

    ds = leadsim.open(result_nc)
    ds.attrs["aco_name"] = r"$\undefinedmacro{$ ACO $x^2$"
    page = report_html(ds)  # bad mathtext raised ValueError when drawing
    assert "data-figure" in page
    fig = plots.fan_chart(ds)
    assert not any(t.get_parse_math() for t in fig.findobj(Text) if "$" in t.get_text())


# ---------------------------------------------------------------------------------------------------------
# 12. compare refuses runs over different horizons
# ---------------------------------------------------------------------------------------------------------
def test_compare_refuses_different_horizons(result_nc, tmp_path, capsys):
    five = tmp_path / "five.nc"
    assert _run(ROOT / "configs/default.toml", five, "--set=simulation.years=5") == 0
    capsys.readouterr()
    assert main(["compare", str(result_nc), str(five), "-o", str(tmp_path / "c.html")]) == 2
    (err,) = _errors(capsys)
    assert "cannot compare runs over different horizons" in err and "PY2027-2031 (5 years)" in err
    assert not (tmp_path / "c.html").exists()


# ---------------------------------------------------------------------------------------------------------
# 13. one-line errors instead of tracebacks
# ---------------------------------------------------------------------------------------------------------
def test_incomplete_store_and_foreign_files_are_one_line(result_nc, tmp_path, capsys):
    import xarray as xr

    from tests.helpers import interrupt_after, run_zarr

    part = tmp_path / "part.zarr"
    with pytest.raises(KeyboardInterrupt):
        run_zarr(_small(), part, on_chunk=interrupt_after(1))
    foreign = tmp_path / "foreign.nc"
    xr.Dataset({"x": ("t", [1.0, 2.0])}).to_netcdf(foreign, engine="h5netcdf")
    bad_toml = tmp_path / "bad_toml.nc"
    ds = leadsim.open(result_nc)
    ds.attrs["config_toml"] = "[aco\nname = 1"
    leadsim.save(ds, bad_toml)
    empty_dir = tmp_path / "nothing.zarr"
    (empty_dir / "sub").mkdir(parents=True)
    out = tmp_path / "r.html"
    for src in (part, foreign, bad_toml, empty_dir):
        assert main(["report", str(src), "-o", str(out)]) == 2
        assert main(["compare", str(result_nc), str(src)]) == 2
    err = _errors(capsys)
    assert len(err) == 8 and all(e.startswith("leadsim: error: ") for e in err), err
    assert "incomplete run" in err[0] and "not a leadsim result" in err[2] and "not valid TOML" in err[4]
    assert not out.exists()


def test_mistyped_manifest_is_one_line(tmp_path, capsys):
    import json

    path = tmp_path / "run.zarr"
    assert _run(ROOT / "configs/default.toml", path) == 0
    manifest = path / "leadsim_run.json"
    data = json.loads(manifest.read_text())
    data["draws"] = "eight"
    manifest.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["report", str(path), "-o", str(tmp_path / "r.html")]) == 2
    assert _run(ROOT / "configs/default.toml", path, "--resume") == 2
    err = _errors(capsys)
    assert len(err) == 2 and all("damaged or hand-edited: draws = 'eight' is not an int" in e for e in err), err


def test_bad_scheduler_address_is_one_line(capsys):
    pytest.importorskip("distributed")
    assert _run(ROOT / "configs/default.toml", "x.nc", "--scheduler", "notaurl") == 2
    (err,) = _errors(capsys)
    assert "--scheduler 'notaurl': not a dask scheduler address" in err


def test_interrupt_message_does_not_contradict_what_was_kept(tmp_path, monkeypatch, capsys):
    import leadsim.io.zarrstore as store

    real = store.ZarrSink.save_chunk

    def stop_after_first(self, lo, hi, res):
        if lo > 0:
            raise KeyboardInterrupt
        real(self, lo, hi, res)

    monkeypatch.setattr(store.ZarrSink, "save_chunk", stop_after_first)
    out = tmp_path / "run.zarr"
    assert _run(ROOT / "configs/default.toml", out) == 130
    err = _errors(capsys)
    assert err == [f"leadsim: interrupted; {out} keeps 1 of 2 chunks; rerun with --resume to finish"]


def test_empty_folder_is_used_not_told_to_resume(tmp_path, capsys):
    out = tmp_path / "x.zarr"
    out.mkdir()
    assert _run(ROOT / "configs/default.toml", out) == 0
    assert "resume" not in capsys.readouterr().err
    assert leadsim.open(out).sizes["draw"] == 8


# ---------------------------------------------------------------------------------------------------------
# 14. stale temporaries cleaned, --draws 1 output, dask dashboard off, no traceback after --workers 2
# ---------------------------------------------------------------------------------------------------------
def test_stale_temporary_of_a_killed_save_is_cleaned(tmp_path):
    stale = tmp_path / ".x.nc.k3j2l1.999999999-abcdef.tmp"  # mkstemp name of a save whose process is gone
    stale.write_bytes(b"\x89HDF partial")
    live = tmp_path / f".x.nc.zz9.{os.getpid()}-abcdef.tmp"  # a save in progress (this process): kept
    live.write_bytes(b"")
    assert _run(ROOT / "configs/default.toml", tmp_path / "x.nc") == 0
    assert not stale.exists() and live.exists()


def test_one_draw_prints_no_1_in_100_rows_or_nan(tmp_path, capsys):
    one = tmp_path / "one.nc"
    assert main(["run", str(ROOT / "configs/default.toml"), "-o", str(one), "--draws", "1",
                 "--set=aco.beneficiaries=300"]) == 0
    import re

    nan = re.compile(r"\bnan\b", re.IGNORECASE)
    out = capsys.readouterr().out
    assert "1-in-100 " not in out.replace("(1-in-100 figures need", "") and not nan.search(out)
    assert main(["compare", str(one), str(one), "-o", str(tmp_path / "c.html")]) == 0
    out = capsys.readouterr().out
    assert not nan.search(out)
    assert not nan.search((tmp_path / "c.html").read_text())
    assert main(["report", str(one), "-o", str(tmp_path / "r.html")]) == 0
    assert not nan.search((tmp_path / "r.html").read_text())


def test_dask_dashboard_is_off_and_no_traceback_after_workers(tmp_path, capsys):
    pytest.importorskip("distributed")
    import urllib.error
    import urllib.request

    from leadsim.distributed import cluster

    with cluster(workers=1) as client:
        link = client.dashboard_link
        assert "127.0.0.1" in link
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(link, timeout=10)
        assert info.value.code == 404
    assert _run(ROOT / "configs/default.toml", tmp_path / "w.nc", "--workers", "2") == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "Error" not in captured.err
