"""Quarters, small-number rules, tables and the CLI's error handling."""

from datetime import date

import pandas as pd
import pytest

from helpers import cli
from helpers.errors import ParameterError
from helpers.quarter import Quarter
from helpers.reports import validate_params
from helpers.suppression import MIN_CELL, peer_figure, suppress_counts, suppress_rate
from helpers.tables import nl_number, nl_pct, to_html


@pytest.mark.parametrize("text", ["2025Q5", "2025Q0", "25Q1", "2025-13", "", "Q1 2025"])
def test_malformed_quarter(text):
    with pytest.raises(ParameterError, match="YYYYQn"):
        Quarter.parse(text)


FULL_WIDTH = "\uff12\uff10\uff12\uff15"      # 2025 in full-width digits
ARABIC_INDIC = "\u0662\u0660\u0662\u0665"    # 2025 in Arabic-Indic digits


@pytest.mark.parametrize("text", [f"{FULL_WIDTH}Q2", f"{ARABIC_INDIC}Q2", "2025Q\uff12", "2025\u2003Q2"])
def test_quarter_refuses_digits_and_spaces_that_are_not_ascii(text):
    with pytest.raises(ParameterError, match="YYYYQn"):
        Quarter.parse(text)


def test_identifiers_are_ascii_only():
    from helpers import identifiers
    assert identifiers.is_agb("01000001")
    for text in ("\uff10\uff11\uff10\uff10\uff10\uff10\uff10\uff11", "\u0660\u0661\u0660\u0660\u0660\u0660\u0660\u0661",
                 "0100000\uff11", "01000001\n", " 01000001", "0100000", 1000001):
        assert not identifiers.is_agb(text), repr(text)
    assert identifiers.is_ascii_int("4") and identifiers.is_ascii_int("+4", signed=True)
    assert not identifiers.is_ascii_int("\uff14") and not identifiers.is_ascii_int("\u0664")
    assert not identifiers.is_ascii_int("-4") and not identifiers.is_ascii_int("4.0")


def test_quarter_days():
    q = Quarter.parse("2024q1")
    assert (q.first_day, q.last_day) == (date(2024, 1, 1), date(2024, 3, 31))
    assert q.window_start == date(2023, 4, 1)
    assert q.previous() == Quarter(2023, 4)
    assert Quarter.latest_complete(date(2026, 10, 5)) == Quarter(2026, 3)
    assert Quarter.latest_complete(date(2026, 9, 30)) == Quarter(2026, 3)
    assert Quarter.parse("2024Q4").months_back_start(36) == date(2022, 1, 1)


def test_suppression():
    assert suppress_counts(pd.Series([0, 1, MIN_CELL - 1, MIN_CELL])).tolist() == ["0", "<10", "<10", "10"]
    assert suppress_rate(3, 100) is None          # numerator small
    assert suppress_rate(95, 100) is None         # complement small
    assert suppress_rate(50, 9) is None           # denominator small
    assert suppress_rate(50, 100) == 50.0
    assert peer_figure(pd.Series([1, 2, 3, 4])) is None
    assert peer_figure(pd.Series([1, 2, 3, 4, 5])) == 3.0


def test_dutch_formats():
    assert nl_number(1234567) == "1.234.567"
    assert nl_pct(7.25) == "7,2%" or nl_pct(7.25) == "7,3%"
    html = to_html(pd.DataFrame({"Patiëntnummer": ["<b>1</b>"], "N": [3]}), align_right=("N",))
    assert "&lt;b&gt;" in html and "<th" in html and "index" not in html


def test_validate_params():
    ok = validate_params("his_analyse", {"practice_agb": "01000001", "quarter": "2026q3"}, {"01000001"})
    assert ok["quarter"] == "2026Q3"
    with pytest.raises(ParameterError, match="^his_analyse: found 'colour', expected a parameter of his_analyse"):
        validate_params("his_analyse", {"practice_agb": "01000001", "quarter": "2026Q3", "colour": "red"})
    with pytest.raises(ParameterError, match="^his_analyse.practice_agb: found '09999999', expected a practice in the warehouse"):
        validate_params("his_analyse", {"practice_agb": "09999999", "quarter": "2026Q3"}, {"01000001"})
    with pytest.raises(ParameterError, match="^report: found 'mirror', expected a report id: his_analyse"):
        validate_params("mirror", {})


def test_cli_user_errors_are_one_line(capsys, tmp_path):
    assert cli.main(["ingest", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "is not a folder" in err and "Traceback" not in err
    assert cli.main(["prepare", "2025Q5", "--warehouse", str(tmp_path / "w.duckdb")]) == 2
    err = capsys.readouterr().err
    assert "2025Q5" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert cli.main(["prepare", "2025Q3", "--warehouse", str(tmp_path / "w.duckdb")]) == 2
    assert "spiegel ingest" in capsys.readouterr().err


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for sub in ("demo-data", "ingest", "prepare", "build"):
        assert sub in out
