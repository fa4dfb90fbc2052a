"""The loader enforces spec/his-extract.md: dialect, types, codes, rules across tables.

Bad inputs live in tests/fixtures/bad/<case>/ as overlays on tests/fixtures/good_minimal/.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import contract
from helpers.errors import ContractError, Problem
from _datasets import build  # noqa: E402  (tests/unit is on sys.path)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
GOOD = FIXTURES / "good_minimal"
BAD = FIXTURES / "bad"
A, B = "12345678", "87654321"




def check_all(ds: Path) -> tuple[list[Problem], str]:
    """Every problem the loader finds in a dataset, and the message a user would read."""
    reg = contract.read_practices(ds)
    problems = list(reg.file_problems)
    for probs in reg.problems.values():
        problems += probs
    for row in reg.practices.to_dict("records"):
        try:
            contract.load_practice(ds, row)
        except ContractError as e:
            problems += e.problems
    _, pay_problems, _ = contract.load_payments(ds, set(reg.practices["practice_agb"]))
    problems += pay_problems
    return problems, (str(ContractError(problems, limit=1000)) if problems else "")


def practice_row(ds: Path, agb: str) -> dict:
    reg = contract.read_practices(ds)
    return reg.practices.set_index("practice_agb").loc[agb].to_dict() | {"practice_agb": agb}


# ---------------------------------------------------------------------------------------
# The good dataset and the dialect
# ---------------------------------------------------------------------------------------


def test_good_minimal_loads_without_problems(tmp_path):
    ds = build(tmp_path)
    problems, _ = check_all(ds)
    assert problems == []
    reg = contract.read_practices(ds)
    assert reg.practices["practice_agb"].tolist() == [A, B]
    data = contract.load_practice(ds, practice_row(ds, A))
    assert data.row_counts() == {
        "patients": 4, "episodes": 4, "contacts": 5, "measurements": 5,
        "prescriptions": 3, "referrals": 1, "enrolments": 3,
    }
    for name, df in data.tables.items():
        assert df.columns[0] == "practice_agb"
        assert (df["practice_agb"] == A).all(), name
        assert list(df.columns[1:len(contract.TABLES[name].columns) + 1]) == contract.TABLES[name].column_names


def test_typed_columns(tmp_path):
    ds = build(tmp_path)
    data = contract.load_practice(ds, practice_row(ds, A))
    p = data.patients
    assert str(p["birth_year"].dtype) == "Int64"
    assert pd.api.types.is_datetime64_any_dtype(p["registered_from"])
    assert p["registered_until"].isna().sum() == 3  # empty field = missing
    assert str(data.measurements["nhg_code"].dtype) == "Int64"
    assert data.measurements["value"].tolist()[:3] == ["53", "138", "2,4"]  # raw text kept


def test_bom_is_accepted(tmp_path):
    ds = build(tmp_path)
    assert (ds / "practices.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    reg = contract.read_practices(ds)
    assert "practice_agb" in reg.practices.columns and reg.warnings == []
    assert contract.load_practice(ds, practice_row(ds, A)).patients["patient_id"].iloc[0] == "P001"


def test_comma_separator_is_read_with_warning(tmp_path):
    ds = build(tmp_path)
    data = contract.load_practice(ds, practice_row(ds, B))
    assert data.patients["patient_id"].tolist() == ["Q1", "Q2", "Q3"]
    assert "extracts/87654321/patients.csv: separated by ',' instead of ';'; read anyway" in data.warnings


def test_tab_separator_is_read_with_warning(tmp_path):
    ds = build(tmp_path)
    data = contract.load_practice(ds, practice_row(ds, B))
    assert data.measurements["nhg_code"].tolist() == [2816, 1740, 2196]
    assert any("measurements.csv" in w and "tabs" in w for w in data.warnings)


def test_decimal_comma_and_point(tmp_path):
    ds = build(tmp_path)
    reg = contract.read_practices(ds)
    assert reg.practices["fte_gp"].tolist() == [1.8, 2.5]  # "1,8" and "2.5"
    m = contract.load_practice(ds, practice_row(ds, A)).measurements
    assert m["value_num"].tolist()[:3] == [53.0, 138.0, 2.4]
    assert m["value_num"].iloc[4] == pytest.approx(27.3)
    assert np.isnan(m["value_num"].iloc[3])  # "nee" is a coded answer
    payments, problems, _ = contract.load_payments(ds, {A, B})
    assert problems == [] and payments["amount_eur"].tolist() == [412.5, 98.1, 137.5]


def test_dutch_date_order(tmp_path):
    ds = build(tmp_path)
    reg = contract.read_practices(ds)
    assert reg.practices["extraction_date"].tolist() == [pd.Timestamp("2025-07-01")] * 2
    p = contract.load_practice(ds, practice_row(ds, A)).patients
    assert p.loc[p["patient_id"] == "P002", "registered_from"].iloc[0] == pd.Timestamp("1999-06-15")


def test_extra_column_warns_by_name_only(tmp_path, caplog):
    ds = build(tmp_path)
    with caplog.at_level(logging.WARNING, logger="spiegel.contract"):
        data = contract.load_practice(ds, practice_row(ds, B))
    assert "his_internal_note_id" not in data.contacts.columns
    warning = "extracts/87654321/contacts.csv: extra column(s) ignored: his_internal_note_id"
    assert warning in data.warnings
    assert warning in caplog.text
    assert "x1" not in caplog.text and "Q1" not in " ".join(data.warnings)  # no values


def test_missing_optional_file_means_no_rows(tmp_path):
    ds = build(tmp_path)
    data = contract.load_practice(ds, practice_row(ds, B))
    assert len(data.prescriptions) == 0 and list(data.prescriptions.columns) == ["practice_agb"] + contract.TABLES["prescriptions"].column_names
    (ds / "payments.csv").unlink()
    payments, problems, _ = contract.load_payments(ds, {A, B})
    assert len(payments) == 0 and problems == []


def test_empty_optional_file_is_no_rows_with_warning(tmp_path):
    ds = build(tmp_path)
    (ds / "extracts" / A / "referrals.csv").write_text("")
    data = contract.load_practice(ds, practice_row(ds, A))
    assert len(data.referrals) == 0
    assert any("referrals.csv: empty file" in w for w in data.warnings)


def _to_parquet(csv_path: Path, **types) -> Path:
    df = pd.read_csv(csv_path, sep=";", dtype=str, keep_default_na=False, encoding="utf-8-sig")
    df = df.replace("", None)
    for col, kind in types.items():
        if kind == "int":
            df[col] = df[col].astype("Int64")
        elif kind == "date":
            df[col] = contract.parse_dates(df[col].astype("str")).astype("datetime64[ms]")
        elif kind == "date32":
            df[col] = contract.parse_dates(df[col].astype("str")).dt.date
    out = csv_path.with_suffix(".parquet")
    df.to_parquet(out, index=False)
    csv_path.unlink()
    return out


def test_parquet_instead_of_csv(tmp_path):
    ds = build(tmp_path)
    before = contract.load_practice(ds, practice_row(ds, A))
    folder = ds / "extracts" / A
    _to_parquet(folder / "patients.csv", birth_year="int", registered_from="date", registered_until="date", deceased_on="date32")
    _to_parquet(folder / "measurements.csv", nhg_code="int")
    _to_parquet(folder / "contacts.csv")
    after = contract.load_practice(ds, practice_row(ds, A))
    for name in ("patients", "measurements", "contacts"):
        pd.testing.assert_frame_equal(after[name], before[name], check_dtype=False)
    assert after.patients["birth_year"].tolist() == [1950, 1962, 1938, 1990]


def test_parquet_values_are_checked_too(tmp_path):
    ds = build(tmp_path, "unknown_sex")
    _to_parquet(ds / "extracts" / A / "patients.csv", birth_year="int")
    problems, message = check_all(ds)
    assert Problem("extracts/12345678/patients.parquet", 3, "sex", "X", "one of M, V, O") in problems


def test_csv_and_parquet_of_one_table_is_a_problem(tmp_path):
    ds = build(tmp_path)
    pd.read_csv(ds / "extracts" / A / "referrals.csv", sep=";").to_parquet(ds / "extracts" / A / "referrals.parquet")
    problems, message = check_all(ds)
    assert "either referrals.csv or referrals.parquet, not both" in message


def test_other_date_formats_are_errors(tmp_path):
    s = pd.Series(["2024-01-05", "05-01-2024", "2024/01/05", "5-1-2024", "20240105", "2024-02-30", None], dtype="str")
    parsed = contract.parse_dates(s)
    assert parsed.notna().tolist() == [True, True, False, False, False, False, False]


def test_blank_lines_keep_spreadsheet_line_numbers(tmp_path):
    ds = build(tmp_path)
    path = ds / "extracts" / A / "referrals.csv"
    path.write_text("patient_id;date;specialism;icpc\n\nP003;2024-05-01;cardiologie;K77\n\nP003;2024/05/02;kno;\n")
    problems, _ = check_all(ds)
    assert problems == [Problem("extracts/12345678/referrals.csv", 5, "date", "2024/05/02", contract.DATE_EXPECTED)]


def test_ragged_rows_are_reported_with_their_lines(tmp_path):
    ds = build(tmp_path)
    path = ds / "extracts" / A / "referrals.csv"
    path.write_text("patient_id;date;specialism;icpc\nP003;2024-05-01;cardiologie;K77;extra\nP003;2024-05-01;kno;;;\n")
    problems, message = check_all(ds)
    assert [(p.file, p.line) for p in problems] == [("extracts/12345678/referrals.csv", 2), ("extracts/12345678/referrals.csv", 3)]
    assert "4 fields like the header" in message


def test_non_utf8_file_is_a_problem(tmp_path):
    ds = build(tmp_path)
    path = ds / "extracts" / A / "referrals.csv"
    path.write_bytes("patient_id;date;specialism;icpc\nP003;2024-05-01;diëtetiek;\n".encode("cp1252"))
    problems, message = check_all(ds)
    assert problems[0].file == "extracts/12345678/referrals.csv" and problems[0].line == 2
    assert "UTF-8" in message


# ---------------------------------------------------------------------------------------
# One case per kind of bad input: file, line, column, value found, what was expected
# ---------------------------------------------------------------------------------------

P = "extracts/12345678/"
BAD_CASES = [
    # case,                        file,                         line, column,           value,       expected (part of)
    ("bad_date_format",             P + "contacts.csv",            3, "date",            "2025/03/02", "a date as YYYY-MM-DD or DD-MM-YYYY"),
    ("date_after_extraction",       P + "measurements.csv",        4, "date",            "2025-08-01", "a date from 1900-01-01 to the extraction date 2025-07-01"),
    ("end_before_start",            P + "episodes.csv",            5, "end_date",        "2019-12-31", "a date not before start_date (2020-06-01)"),
    ("unknown_sex",                 P + "patients.csv",            3, "sex",             "X",          "one of M, V, O"),
    ("unknown_kind",                P + "contacts.csv",            4, "kind",            "bezoek",     "one of consult, consult_lang, visite, visite_lang, telefonisch, e-consult"),
    ("unknown_programme",           P + "enrolments.csv",          3, "programme",       "HF",         "one of DM2, COPD, CVRM, ASTMA"),
    ("non_numeric_int",             P + "patients.csv",            2, "birth_year",      "19x5",       "a whole number"),
    ("bad_icpc",                    P + "episodes.csv",            2, "icpc",            "T9002",      "an ICPC code: a letter, two digits, optional . and two digits"),
    ("bad_atc",                     P + "prescriptions.csv",       3, "atc",             "10AA",       "an ATC code of at least 3 characters"),
    ("duplicate_patient_id",        P + "patients.csv",            5, "patient_id",      "P002",       "a patient_id that occurs once in the file (already on line 3)"),
    ("duplicate_contact_id",        P + "contacts.csv",            6, "contact_id",      "C3",         "a contact_id that occurs once in the file (already on line 4)"),
    ("missing_required_column",     P + "measurements.csv",        1, "value",           None,         "a column named 'value' in the header: it is required"),
    ("missing_required_value",      P + "patients.csv",            4, "registered_from", "",           "a value: registered_from is required"),
    ("missing_required_file",       P + "patients.csv",         None, None,              None,         "a file patients.csv (or patients.parquet): it is required"),
    ("unknown_patient_id",          P + "contacts.csv",            5, "patient_id",      "P999",       "a patient_id that is in patients.csv"),
    ("folder_not_in_register",      "extracts/99999999/",       None, None,              "99999999",   "a row for practice 99999999 in practices.csv"),
    ("register_row_without_folder", "practices.csv",               4, "practice_agb",    "11223344",   "a folder extracts/11223344/"),
    ("bad_quarter",                 "payments.csv",                3, "quarter",         "2025-1",     "a quarter as YYYYQn"),
    ("bad_practice_agb",            "practices.csv",               3, "practice_agb",    "8765432",    "an AGB code of 8 digits"),
]
# Contract version 2: one fixture, one problem per line of veelgebruikers_plan.csv (line 2 is valid).
V = P + "veelgebruikers_plan.csv"
PLAN_CASES = [
    ("bad_veelgebruikers_plan", V, 3, "patient_id",  "P999",            "a patient_id that is in patients.csv"),
    ("bad_veelgebruikers_plan", V, 4, "selected_on", "2025/01/10",      "a date as YYYY-MM-DD or DD-MM-YYYY"),
    ("bad_veelgebruikers_plan", V, 5, "ended_on",    "2025-01-01",      "a date not before selected_on (2025-02-01)"),
    ("bad_veelgebruikers_plan", V, 6, "patient_id",  "P001",            "a patient_id that occurs once in the file (already on line 2)"),
    ("bad_veelgebruikers_plan", V, 7, "profile",     "Somatisch Hoog!", "a profile code: 1 to 40 of a-z, 0-9, _ or -"),
    ("bad_veelgebruikers_plan", V, 8, "selected_on", "2025-08-01",      "a date from 1900-01-01 to the extraction date 2025-07-01"),
    ("bad_veelgebruikers_plan", V, 9, "selected_on", "",                "a value: selected_on is required"),
]
BAD_CASES += PLAN_CASES


@pytest.mark.parametrize("case,file,line,column,value,expected", BAD_CASES,
                         ids=[c[0] if c[0] != "bad_veelgebruikers_plan" else f"{c[0]}-line{c[2]}" for c in BAD_CASES])
def test_bad_input_is_named_precisely(tmp_path, case, file, line, column, value, expected):
    assert (BAD / case).is_dir(), f"fixture {case} missing"
    problems, message = check_all(build(tmp_path, case))
    matches = [p for p in problems if (p.file, p.line, p.column) == (file, line, column)]
    assert matches, f"no problem at {file}:{line}:{column} in\n{message}"
    p = matches[0]
    assert p.value == value and expected in p.expected
    # The message a user reads names all of it.
    assert p.describe() in message
    assert file in message and expected in message
    if line is not None:
        assert f"line {line}" in message
    if column is not None:
        assert f"column {column}" in message
    if value is not None:
        assert f"found {value!r}" in message


def test_missing_patients_file_does_not_flood_with_unknown_patients(tmp_path):
    problems, _ = check_all(build(tmp_path, "missing_required_file"))
    assert len(problems) == 1


def test_bad_register_row_refuses_only_that_practice(tmp_path):
    ds = build(tmp_path, "bad_practice_agb")
    reg = contract.read_practices(ds)
    assert reg.practices["practice_agb"].tolist() == [A]
    assert list(reg.problems) == ["8765432"]


def test_folder_and_register_mismatch_refuses_by_practice(tmp_path):
    reg = contract.read_practices(build(tmp_path / "a", "folder_not_in_register"))
    assert "99999999" in reg.problems and reg.practices["practice_agb"].tolist() == [A, B]
    reg = contract.read_practices(build(tmp_path / "b", "register_row_without_folder"))
    assert "11223344" in reg.problems and reg.practices["practice_agb"].tolist() == [A, B]
    assert "11223344" in reg.known


def test_several_problems_in_one_file_are_reported_together(tmp_path):
    ds = build(tmp_path, "several_problems")
    with pytest.raises(ContractError) as err:
        contract.load_practice(ds, practice_row(ds, A))
    f = "extracts/12345678/patients.csv"
    assert err.value.subject == "practice 12345678"
    got = [(p.file, p.line, p.column, p.value) for p in err.value.problems]
    assert got == [
        (f, 3, "birth_year", "1862"),
        (f, 4, "postcode4", "351"),
        (f, 4, "registered_from", "2010-13-01"),
        (f, 5, "sex", "Q"),
        (f, 5, "registered_until", "2019-12-31"),
    ]
    text = str(err.value)
    assert text.startswith("practice 12345678 refused: 5 problem(s)")
    assert "a year from 1890 to 2025 (the extraction year)" in text
    assert "Fix:" in text


def test_problems_of_every_file_of_a_practice_come_together(tmp_path):
    ds = build(tmp_path, "bad_date_format")
    shutil.copy(BAD / "unknown_sex" / "extracts" / A / "patients.csv", ds / "extracts" / A / "patients.csv")
    with pytest.raises(ContractError) as err:
        contract.load_practice(ds, practice_row(ds, A))
    assert {p.file for p in err.value.problems} == {P + "patients.csv", P + "contacts.csv"}


def test_missing_practices_file_refuses_the_dataset(tmp_path):
    ds = build(tmp_path)
    (ds / "practices.csv").unlink()
    with pytest.raises(ContractError, match="practices.csv"):
        contract.read_practices(ds)


def test_practices_without_required_column_refuses_the_dataset(tmp_path):
    ds = build(tmp_path)
    (ds / "practices.csv").write_text("practice_agb;name;region\n12345678;A;R\n87654321;B;R\n")
    with pytest.raises(ContractError) as err:
        contract.read_practices(ds)
    assert err.value.problems == [Problem("practices.csv", 1, "extraction_date", None,
                                          "a column named 'extraction_date' in the header: it is required")]


def test_payments_of_unknown_practice_is_a_problem(tmp_path):
    ds = build(tmp_path)
    with open(ds / "payments.csv", "a") as f:
        f.write("11223344;DM2;2025Q1;3311;1;1;10;;\n")
    payments, problems, _ = contract.load_payments(ds, {A, B})
    assert Problem("payments.csv", 5, "practice_agb", "11223344", "a practice_agb listed in practices.csv") in problems
    assert set(payments["practice_agb"]) == {A, B}
    payments, _, _ = contract.load_payments(ds, {B})
    assert set(payments["practice_agb"]) == {B}  # refused practices' payments are left out


def test_specs_say_which_files_are_required():
    assert contract.REQUIRED_FILES == ("practices.csv", "patients.csv")
    assert "payments.csv" in contract.OPTIONAL_FILES and "contacts.csv" in contract.OPTIONAL_FILES
    assert contract.TABLES["patients"].required and not contract.TABLES["contacts"].required
    assert contract.TABLES["patients"].required_columns == ["patient_id", "birth_year", "sex", "registered_from"]


def test_validation_is_vectorised(tmp_path):
    """A practice of 2,000 patients and 20,000 contacts validates in well under a second."""
    rng = np.random.default_rng(0)
    ds = build(tmp_path)
    folder = ds / "extracts" / A
    n, k = 2000, 20000
    ids = np.array([f"X{i}" for i in range(n)])
    pd.DataFrame({"patient_id": ids, "birth_year": rng.integers(1930, 2020, n), "sex": "V",
                  "registered_from": "01-01-2001"}).to_csv(folder / "patients.csv", sep=";", index=False)
    pd.DataFrame({"contact_id": np.arange(k), "patient_id": rng.choice(ids, k), "date": "2024-03-01",
                  "kind": "consult", "role": "huisarts", "icpc": "K86"}).to_csv(folder / "contacts.csv", sep=";", index=False)
    for name in ("episodes", "measurements", "prescriptions", "referrals", "enrolments"):
        (folder / f"{name}.csv").unlink()
    started = time.perf_counter()
    data = contract.load_practice(ds, practice_row(ds, A))
    assert len(data.contacts) == k
    assert time.perf_counter() - started < 3


def test_windows_line_endings(tmp_path):
    ds = build(tmp_path)
    path = ds / "extracts" / A / "referrals.csv"
    path.write_bytes(b"patient_id;date;specialism;icpc\r\nP003;2024-05-01;cardiologie;K77\r\nP003;01-06-2024;kno;\r\n")
    data = contract.load_practice(ds, practice_row(ds, A))
    assert data.referrals["icpc"].tolist()[0] == "K77" and data.referrals["icpc"].isna().tolist() == [False, True]
    assert data.referrals["date"].tolist() == [pd.Timestamp("2024-05-01"), pd.Timestamp("2024-06-01")]


def test_hidden_folders_under_extracts_are_not_practices(tmp_path):
    ds = build(tmp_path)
    (ds / "extracts" / ".ipynb_checkpoints").mkdir()
    assert contract.read_practices(ds).problems == {}


def test_every_kind_of_problem_shows_in_the_first_lines_of_the_message(tmp_path):
    ds = build(tmp_path)
    rows = [f"C{i};P001;2024/01/{i % 28 + 1:02d};consult;huisarts;" for i in range(80)]
    rows.append("C999;P001;2024-01-05;bezoek;huisarts;")
    (ds / "extracts" / A / "contacts.csv").write_text("contact_id;patient_id;date;kind;role;icpc\n" + "\n".join(rows) + "\n")
    with pytest.raises(ContractError) as err:
        contract.load_practice(ds, practice_row(ds, A))
    assert len(err.value.problems) == 81  # all reported
    assert [p.column for p in err.value.problems[:2]] == ["date", "kind"]
    shown = str(err.value).split("... and")[0]
    assert "found 'bezoek'" in shown and "and 31 more" in str(err.value)


@pytest.mark.parametrize("digits", ["\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17",   # full-width
                                    "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667"])  # Arabic-Indic
def test_agb_and_quarter_in_non_ascii_digits_are_refused(tmp_path, digits):
    """int() reads these digits as 01234567: the contract must not take them for an AGB code."""
    ds = build(tmp_path)
    register = ds / "practices.csv"
    register.write_text(register.read_text(encoding="utf-8-sig").replace(B, digits), encoding="utf-8")
    (ds / "extracts" / B).rename(ds / "extracts" / digits)
    payments = ds / "payments.csv"
    payments.write_text(payments.read_text(encoding="utf-8-sig").replace("2025Q", digits[:4] + "Q", 1), encoding="utf-8")
    reg = contract.read_practices(ds)
    assert reg.practices["practice_agb"].tolist() == [A]
    assert any(p.column == "practice_agb" and p.value == digits and "8 digits" in p.expected
               for p in reg.problems[digits])
    pay = contract.read_payments(ds, [A, digits])
    assert any(p.column == "quarter" and p.value.startswith(digits[:4]) for p in pay.all_problems())


def test_dates_and_numbers_in_non_ascii_digits_are_not_values():
    s = pd.Series(["\uff12\uff10\uff12\uff14-01-05", "\u0662\u0660\u0662\u0664-01-05", "2024-01-05"], dtype="str")
    assert contract.parse_dates(s).isna().tolist() == [True, True, False]
    assert contract.parse_ints(pd.Series(["\uff11\uff19\uff15\uff10", "1950"], dtype="str")).isna().tolist() == [True, False]
    assert contract.parse_numbers(pd.Series(["\uff17,4", "7,4"], dtype="str")).isna().tolist() == [True, False]


# ---------------------------------------------------------------------------------------
# Contract version 2: veelgebruikers_plan.csv (optional)
# ---------------------------------------------------------------------------------------

PLAN = "patient_id;selected_on;profile;ended_on\nP001;2025-01-10;multimorbiditeit;\nP002;10-01-2025;;2025-06-30\nP003;2024-11-01;ggz;\n"


def test_a_version_1_delivery_has_an_empty_plan(tmp_path):
    ds = build(tmp_path)
    data = contract.load_practice(ds, practice_row(ds, A))
    plan = data.veelgebruikers_plan
    assert len(plan) == 0 and list(plan.columns) == ["practice_agb"] + contract.TABLES["veelgebruikers_plan"].column_names
    assert "veelgebruikers_plan" in data.absent and "veelgebruikers_plan" not in data.row_counts()
    assert "veelgebruikers_plan" in data.tables  # the warehouse still replaces the practice's (no) rows


def test_a_valid_plan_loads_typed(tmp_path):
    ds = build(tmp_path)
    (ds / "extracts" / A / "veelgebruikers_plan.csv").write_text(PLAN)
    data = contract.load_practice(ds, practice_row(ds, A))
    plan = data.veelgebruikers_plan
    assert data.row_counts()["veelgebruikers_plan"] == 3 and not data.warnings
    assert plan["patient_id"].tolist() == ["P001", "P002", "P003"]
    assert plan["selected_on"].tolist() == [pd.Timestamp("2025-01-10"), pd.Timestamp("2025-01-10"), pd.Timestamp("2024-11-01")]
    assert plan["profile"].isna().tolist() == [False, True, False]
    assert plan["ended_on"].isna().tolist() == [True, False, True]
    assert contract.practice_files(ds, A)[-1].name == "veelgebruikers_plan.csv"


def test_a_plan_as_parquet_loads(tmp_path):
    ds = build(tmp_path)
    pd.DataFrame({"patient_id": ["P001", "P004"], "selected_on": pd.to_datetime(["2025-01-10", "2025-02-01"]),
                  "profile": ["solk", None], "ended_on": [None, None]}).to_parquet(
        ds / "extracts" / A / "veelgebruikers_plan.parquet", index=False)
    plan = contract.load_practice(ds, practice_row(ds, A)).veelgebruikers_plan
    assert plan["patient_id"].tolist() == ["P001", "P004"]
    assert plan["selected_on"].tolist() == [pd.Timestamp("2025-01-10"), pd.Timestamp("2025-02-01")]


def test_bad_plan_refuses_the_practice_with_every_problem(tmp_path):
    ds = build(tmp_path, "bad_veelgebruikers_plan")
    with pytest.raises(ContractError) as err:
        contract.load_practice(ds, practice_row(ds, A))
    lines = sorted({p.line for p in err.value.problems if p.file == V})
    assert lines == [3, 4, 5, 6, 7, 8, 9]  # line 2 is valid; every other line has its problem
    contract.load_practice(ds, practice_row(ds, B))  # the other practice is not affected


def test_plan_profiles_follow_the_parameters_file_when_it_exists(tmp_path, monkeypatch):
    ds = build(tmp_path)
    (ds / "extracts" / A / "veelgebruikers_plan.csv").write_text(PLAN)
    params = tmp_path / "veelgebruikers.yaml"
    params.write_text("profiles:\n  - id: multimorbiditeit\n  - id: psychisch\n")
    monkeypatch.setattr(contract, "VEELGEBRUIKERS_FILE", params)
    with pytest.raises(ContractError) as err:
        contract.load_practice(ds, practice_row(ds, A))
    assert [(p.line, p.column, p.value) for p in err.value.problems] == [(4, "profile", "ggz")]
    assert "one of the profiles in veelgebruikers.yaml: multimorbiditeit, psychisch" in err.value.problems[0].expected
    params.write_text("profiles:\n  multimorbiditeit: {}\n  ggz: {}\n")  # a mapping keyed by id works too
    assert len(contract.load_practice(ds, practice_row(ds, A)).veelgebruikers_plan) == 3
    # an explicit list wins over the file
    assert len(contract.load_practice(ds, practice_row(ds, A), profiles=["multimorbiditeit", "ggz"]).veelgebruikers_plan) == 3


def test_without_the_parameters_file_any_code_like_profile_is_accepted(tmp_path, monkeypatch):
    monkeypatch.setattr(contract, "VEELGEBRUIKERS_FILE", tmp_path / "absent.yaml")
    ds = build(tmp_path)
    (ds / "extracts" / A / "veelgebruikers_plan.csv").write_text(
        "patient_id;selected_on;profile\nP001;2025-01-10;" + "x" * 40 + "\nP002;2025-01-10;a b\n")
    with pytest.raises(ContractError) as err:
        contract.load_practice(ds, practice_row(ds, A))
    assert [(p.line, p.column, p.value) for p in err.value.problems] == [(3, "profile", "a b")]
