"""Bad panels: each malformed input is one error line naming the column and the first offending rows;
``leadsim fit`` exits 2 and writes nothing (issue 12)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from leadsim.cli import main
from leadsim.errors import PanelError
from leadsim.fit.panel import read_panel

REPO = Path(__file__).resolve().parents[1]
HEADER = "bene_id,year,population,member_months,spending,died"
GOOD = [
    "a1,2027,aged_disabled,12,1500.5,false",
    "a1,2028,aged_disabled,12,0,false",
    "a2,2027,esrd,12,90000,false",
    "a2,2028,esrd,6,120000,true",
    "a3,2028,high_needs,6,20000,false",
]


def _csv(rows: list[str], header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def _replace(i: int, row: str) -> str:
    rows = list(GOOD)
    rows[i] = row
    return _csv(rows)


# id: (file text, strings the one error line must contain: the column first, then the rows)
CASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "missing_column": (_csv([r.rsplit(",", 1)[0] for r in GOOD], HEADER.rsplit(",", 1)[0]),
                       ("column 'died'", "missing")),
    "misnamed_column": (_csv(GOOD, HEADER.replace("spending", "spend")),
                        ("column 'spending'", "missing", "found 'spend'")),
    "year_not_a_number": (_replace(1, "a1,twenty,aged_disabled,12,0,false"), ("column 'year'", "row 2")),
    "year_not_integer": (_replace(1, "a1,2028.5,aged_disabled,12,0,false"),
                         ("column 'year'", "not an integer", "row 2")),
    "year_out_of_range": (_replace(0, "a1,1899,aged_disabled,12,10,false"), ("column 'year'", "2000-2100", "row 1")),
    "negative_spending": (_replace(2, "a2,2027,esrd,12,-5,false"), ("column 'spending'", "negative", "row 3")),
    "spending_missing": (_replace(2, "a2,2027,esrd,12,,false"), ("column 'spending'", "missing", "row 3")),
    "spending_infinite": (_replace(2, "a2,2027,esrd,12,inf,false"), ("column 'spending'", "finite", "row 3")),
    "months_above_12": (_replace(4, "a3,2028,high_needs,13,20000,false"),
                        ("column 'member_months'", "0-12", "row 5")),
    "months_negative": (_replace(4, "a3,2028,high_needs,-1,20000,false"),
                        ("column 'member_months'", "0-12", "row 5")),
    "spending_without_months": (_replace(4, "a3,2028,high_needs,0,20000,false"),
                                ("column 'spending'", "member_months = 0", "row 5")),
    "duplicate_bene_year": (_replace(1, "a1,2027,aged_disabled,12,0,false"),
                            ("column 'bene_id'", "duplicate", "row 2")),
    "unknown_population": (_replace(4, "a3,2028,dual_eligible,6,20000,false"),
                           ("column 'population'", "dual_eligible", "row 5")),
    "died_not_boolean": (_replace(4, "a3,2028,high_needs,6,20000,maybe"), ("column 'died'", "true/false", "row 5")),
    "row_after_death": (_csv([*GOOD, "a2,2029,esrd,12,1000,false"]), ("column 'died'", "after", "row 6")),
    "empty_bene_id": (_replace(0, ",2027,aged_disabled,12,1500.5,false"), ("column 'bene_id'", "missing", "row 1")),
    "one_year_only": (_csv([r.replace("2028", "2027") for r in GOOD[:1] + GOOD[2:3]]),
                      ("column 'year'", "one calendar year")),
    "no_rows": (_csv([]), ("column 'bene_id'", "no data rows")),
    "negative_risk_score": (_csv([r + ",1.0" for r in GOOD[:3]] + [GOOD[3] + ",-0.2", GOOD[4] + ",1.1"],
                                 HEADER + ",risk_score"), ("column 'risk_score'", "negative", "row 4")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_panel_one_line_exit_2_no_output(case, tmp_path, capsys):
    text, needles = CASES[case]
    src = tmp_path / "panel.csv"
    src.write_text(text)
    out = tmp_path / "fitted.toml"
    assert main(["fit", str(src), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("leadsim: error: panel.csv: ")
    for needle in needles:
        assert needle in err[0], (needle, err[0])
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [src]  # no temporary left either


def test_first_rows_listed_and_counted(tmp_path):
    rows = [f"b{i},2027,aged_disabled,12,{-i - 1},false" for i in range(8)] + ["b0,2028,esrd,12,5,false"]
    src = tmp_path / "p.csv"
    src.write_text(_csv(rows))
    with pytest.raises(PanelError, match=r"column 'spending': negative at rows 1, 2, 3, 4, 5 \(8 rows\)"):
        read_panel(src)


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(PanelError, match="no such panel file"):
        read_panel(tmp_path / "nope.csv")
    bad = tmp_path / "p.xlsx"
    bad.write_text("x")
    with pytest.raises(PanelError, match="unknown panel format"):
        read_panel(bad)


def test_parquet_typed_columns(tmp_path):
    """Parquet keeps types: booleans for died, integers for year; a float year is still caught."""
    pytest.importorskip("pyarrow")
    df = pd.read_csv(pd.io.common.StringIO(_csv(GOOD)))
    good = tmp_path / "p.parquet"
    df.to_parquet(good)
    panel = read_panel(good)
    assert panel.n_rows == 5 and panel.n_bene == 3 and panel.died.sum() == 1
    assert panel.years == (2027, 2028)
    df2 = df.copy()
    df2["year"] = df2["year"].astype(float)
    df2.loc[3, "year"] = 2028.25
    bad = tmp_path / "bad.parquet"
    df2.to_parquet(bad)
    with pytest.raises(PanelError, match=r"column 'year': not an integer at row 4"):
        read_panel(bad)


def test_cli_subprocess_exit_2(tmp_path):
    src = tmp_path / "panel.csv"
    src.write_text(CASES["negative_spending"][0])
    out = tmp_path / "fitted.toml"
    res = subprocess.run([sys.executable, "-m", "leadsim.cli", "fit", str(src), "-o", str(out)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "column 'spending'" in res.stderr
    assert not out.exists()
