"""The warehouse loads per practice in one transaction; refused or failed loads touch nothing."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from helpers import contract
from helpers.errors import SpiegelError
from helpers.warehouse import DATA_TABLES, SCHEMA, Warehouse
from _datasets import build  # noqa: E402  (tests/unit is on sys.path)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
GOOD = FIXTURES / "good_minimal"
BAD = FIXTURES / "bad"
A, B = "12345678", "87654321"
ALL_TABLES = DATA_TABLES + ("loads",)




def counts(wh: Warehouse, agb: str) -> dict[str, int]:
    with wh.connect(read_only=True) as con:
        return {t: con.execute(f'SELECT count(*) FROM "{t}" WHERE practice_agb = ?', [agb]).fetchone()[0]
                for t in ALL_TABLES}


def snapshot(wh: Warehouse, agb: str) -> dict[str, list]:
    """Every row of one practice, in a stable order (loads.loaded_at included)."""
    with wh.connect(read_only=True) as con:
        return {t: sorted(map(repr, con.execute(f'SELECT * FROM "{t}" WHERE practice_agb = ?', [agb]).fetchall()))
                for t in ALL_TABLES}


GOOD_COUNTS = {
    A: {"practices": 1, "patients": 4, "episodes": 4, "contacts": 5, "measurements": 5, "prescriptions": 3,
        "referrals": 1, "enrolments": 3, "veelgebruikers_plan": 0, "payments": 2, "loads": 1},
    B: {"practices": 1, "patients": 3, "episodes": 2, "contacts": 3, "measurements": 3, "prescriptions": 0,
        "referrals": 0, "enrolments": 1, "veelgebruikers_plan": 0, "payments": 1, "loads": 1},
}


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """good_minimal ingested once, for the tests that only read."""
    tmp_path = tmp_path_factory.mktemp("good")
    wh = Warehouse(tmp_path / "w.duckdb")
    return wh, wh.ingest(build(tmp_path))


def test_ingest_good_minimal(good):
    wh, report = good
    assert report.ok, report.summary()
    assert report.loaded == [A, B] and report.refused == {} and report.failed == {}
    assert counts(wh, A) == GOOD_COUNTS[A] and counts(wh, B) == GOOD_COUNTS[B]
    assert any("his_internal_note_id" in w for w in report.warnings)
    assert set(report.timings) == {A, B, "total"}


def test_tables_have_sql_types(good):
    wh, _ = good
    with wh.connect(read_only=True) as con:
        for table, cols in SCHEMA.items():
            described = con.execute(f'DESCRIBE "{table}"').fetchall()
            assert [(r[0], r[1]) for r in described] == cols, table
        assert dict(SCHEMA["measurements"])["value_num"] == "DOUBLE"
        assert dict(SCHEMA["patients"])["registered_from"] == "DATE"
        assert dict(SCHEMA["patients"])["birth_year"] == "INTEGER"
        value, value_num = con.execute(
            "SELECT value, value_num FROM measurements WHERE practice_agb = ? AND nhg_code = 542", [A]).fetchone()
        assert (value, value_num) == ("2,4", 2.4)
        assert con.execute("SELECT value_num FROM measurements WHERE value = 'nee'").fetchone()[0] is None
        row = con.execute("SELECT content_hash, source, row_counts FROM loads WHERE practice_agb = ?", [A]).fetchone()
        assert len(row[0]) == 64 and row[1].endswith("dataset")
        assert json.loads(row[2])["contacts"] == 5


def test_schema_is_created_idempotently(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    with wh.connect():
        pass
    with wh.connect() as con:
        assert con.execute("SELECT count(*) FROM practices").fetchone()[0] == 0


def test_helpers_for_later_code(tmp_path, good):
    empty = Warehouse(tmp_path / "w.duckdb")
    assert empty.practice_hashes() == {} and len(empty.practices()) == 0
    wh, _ = good
    assert sorted(wh.practice_hashes()) == [A, B]
    practices = wh.practices()
    assert practices["practice_agb"].tolist() == [A, B]
    assert practices["name"].iloc[0] == "Huisartsenpraktijk De Linde"


def test_reload_replaces_rows(tmp_path):
    ds = build(tmp_path)
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.ingest(ds)
    contacts = ds / "extracts" / A / "contacts.csv"
    contacts.write_text("\n".join(contacts.read_text().splitlines()[:-2]) + "\n")  # two contacts fewer
    report = wh.ingest(ds)
    assert report.loaded == [A] and report.unchanged == [B]
    assert counts(wh, A) == GOOD_COUNTS[A] | {"contacts": 3}
    report = wh.ingest(ds, force=True)
    assert report.loaded == [A, B]
    assert counts(wh, A) == GOOD_COUNTS[A] | {"contacts": 3} and counts(wh, B) == GOOD_COUNTS[B]


def test_unchanged_content_is_skipped(tmp_path):
    ds = build(tmp_path)
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.ingest(ds)
    before = snapshot(wh, A)
    report = wh.ingest(ds)
    assert report.unchanged == [A, B] and report.loaded == [] and report.ok
    assert snapshot(wh, A) == before  # loaded_at too: nothing was rewritten
    assert "unchanged" in report.summary()


def test_changed_register_row_or_payments_reload(tmp_path):
    ds = build(tmp_path)
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.ingest(ds)
    text = (ds / "practices.csv").read_text(encoding="utf-8-sig")
    (ds / "practices.csv").write_text(text.replace("Gezondheidscentrum Oost", "GC Oost"), encoding="utf-8")
    assert wh.ingest(ds).loaded == [B]
    with open(ds / "payments.csv", "a") as f:
        f.write("12345678;DM2;2025Q2;3311;3;3;412,50;;\n")
    assert wh.ingest(ds).loaded == [A]
    assert counts(wh, A)["payments"] == 3


def test_refused_practice_leaves_nothing_and_others_load(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    report = wh.ingest(build(tmp_path, "unknown_sex"))
    assert not report.ok
    assert report.loaded == [B] and list(report.refused) == [A]
    assert "extracts/12345678/patients.csv, line 3, column sex: found 'X', expected one of M, V, O" in report.refused[A]
    assert counts(wh, A) == {t: 0 for t in ALL_TABLES}  # its payments neither
    assert counts(wh, B) == GOOD_COUNTS[B]
    assert "refused   12345678" in report.summary()


def test_refused_reload_keeps_previous_data(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.ingest(build(tmp_path, name="v1"))
    before = snapshot(wh, A)
    report = wh.ingest(build(tmp_path, "bad_date_format", name="v2"))
    assert list(report.refused) == [A]
    assert snapshot(wh, A) == before


@pytest.mark.parametrize("case,refused", [
    ("folder_not_in_register", "99999999"),  # the other register cases: test_contract.py
    ("bad_quarter", A),  # a bad payments row refuses the practice it belongs to
])
def test_register_and_payments_problems_refuse_one_practice(tmp_path, case, refused):
    ds = build(tmp_path, case)
    wh = Warehouse(tmp_path / "w.duckdb")
    report = wh.ingest(ds)
    assert refused in report.refused
    assert counts(wh, refused) == {t: 0 for t in ALL_TABLES}
    assert A in report.loaded or refused == A


def test_failure_in_the_middle_of_a_reload_keeps_previous_data(tmp_path, monkeypatch):
    ds = build(tmp_path)
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.ingest(ds)
    before_a = snapshot(wh, A)
    hashes = wh.practice_hashes()

    contacts = ds / "extracts" / A / "contacts.csv"
    contacts.write_text("\n".join(contacts.read_text().splitlines()[:-2]) + "\n")
    real_insert = Warehouse._insert
    written = []

    def failing_insert(self, con, table, df):
        written.append(table)
        if table == "contacts" and (df["practice_agb"] == A).all():
            raise RuntimeError("disk full (injected)")
        return real_insert(self, con, table, df)

    monkeypatch.setattr(Warehouse, "_insert", failing_insert)
    report = wh.ingest(ds, force=True)
    assert "patients" in written  # practices and patients were already deleted and re-inserted
    assert list(report.failed) == [A] and "disk full" in report.failed[A]
    assert report.loaded == [B] and not report.ok
    assert snapshot(wh, A) == before_a
    assert wh.practice_hashes()[A] == hashes[A]
    assert counts(wh, B) == GOOD_COUNTS[B]  # B reloaded in its own transaction

    monkeypatch.setattr(Warehouse, "_insert", real_insert)
    assert wh.ingest(ds).loaded == [A]  # the failed load is retried: its hash was not stored
    assert counts(wh, A)["contacts"] == 3


def test_ingest_listed_practices_only(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    report = wh.ingest(build(tmp_path), practices=[B])
    assert report.loaded == [B]
    assert counts(wh, A)["patients"] == 0


def test_unknown_listed_practice_is_an_error(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    with pytest.raises(SpiegelError) as err:
        wh.ingest(build(tmp_path), practices=["55555555"])
    assert "55555555" in str(err.value) and A in str(err.value) and B in str(err.value)


def test_summary_has_no_patient_rows(good):
    _, report = good
    text = report.summary()
    assert "2 loaded" in text
    for value in ("P001", "Q1", "3511", "1950"):
        assert value not in text


def test_read_only_connection_needs_a_warehouse(tmp_path):
    with pytest.raises(SpiegelError, match="spiegel ingest"):
        Warehouse(tmp_path / "none.duckdb").connect(read_only=True)


def test_warehouse_of_another_layout_is_refused(tmp_path):
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE practices (practice_agb VARCHAR, name VARCHAR)")
    with pytest.raises(SpiegelError, match="delete the file"):
        Warehouse(path).connect()


def test_parquet_extraction_loads_like_csv(tmp_path):
    ds = build(tmp_path)
    import pandas as pd
    path = ds / "extracts" / A / "referrals.csv"
    df = pd.read_csv(path, sep=";", dtype=str)
    df["date"] = pd.to_datetime(df["date"])
    df.to_parquet(path.with_suffix(".parquet"), index=False)
    path.unlink()
    wh = Warehouse(tmp_path / "w.duckdb")
    assert wh.ingest(ds).loaded == [A, B]
    with wh.connect(read_only=True) as con:
        assert str(con.execute("SELECT date FROM referrals").fetchone()[0]) == "2024-05-01"
    assert contract.practice_files(ds, A)[-1].name == "referrals.parquet"


def test_a_duckdb_file_that_is_no_warehouse_is_left_alone(tmp_path):
    path = tmp_path / "analysis.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE visits (id INTEGER)")
    for read_only in (False, True):
        with pytest.raises(SpiegelError, match="is a DuckDB database but not a Spiegel warehouse .it holds visits"):
            Warehouse(path).connect(read_only=read_only)
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT table_name FROM information_schema.tables").fetchall() == [("visits",)]


def test_an_empty_duckdb_file_is_not_read_as_a_warehouse(tmp_path):
    path = tmp_path / "empty.duckdb"
    duckdb.connect(str(path)).close()
    with pytest.raises(SpiegelError, match="is empty: run `spiegel ingest <dataset> --warehouse"):
        Warehouse(path).practice_hashes()
    with Warehouse(path).connect() as con:  # a writable connection makes it one
        assert con.execute("SELECT count(*) FROM loads").fetchone() == (0,)


# ---------------------------------------------------------------------------------------
# Contract version 2: veelgebruikers_plan
# ---------------------------------------------------------------------------------------

PLAN = "patient_id;selected_on;profile;ended_on\nP001;2025-01-10;multimorbiditeit;\nP002;10-01-2025;;2025-06-30\n"


def test_a_version_1_delivery_leaves_the_plan_table_empty(good):
    wh, report = good  # good_minimal has no veelgebruikers_plan.csv
    assert counts(wh, A)["veelgebruikers_plan"] == 0 and counts(wh, B)["veelgebruikers_plan"] == 0
    assert "veelgebruikers_plan" not in report.summary()  # a version-1 summary reads as before


def test_a_plan_loads_in_the_practice_transaction_and_is_replaced(tmp_path):
    ds = build(tmp_path)
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.ingest(ds)
    plan = ds / "extracts" / A / "veelgebruikers_plan.csv"
    plan.write_text(PLAN)
    report = wh.ingest(ds)
    assert report.loaded == [A] and report.unchanged == [B]  # the new file changes A's content hash
    assert "2 veelgebruikers_plan" in report.summary()
    assert counts(wh, A) == GOOD_COUNTS[A] | {"veelgebruikers_plan": 2}
    with wh.connect(read_only=True) as con:
        rows = con.execute("SELECT patient_id, selected_on, profile, ended_on FROM veelgebruikers_plan "
                           "WHERE practice_agb = ? ORDER BY patient_id", [A]).fetchall()
        assert [(r[0], str(r[1]), r[2], r[3] and str(r[3])) for r in rows] == [
            ("P001", "2025-01-10", "multimorbiditeit", None), ("P002", "2025-01-10", None, "2025-06-30")]
        assert [r[1] for r in con.execute('DESCRIBE "veelgebruikers_plan"').fetchall()] == [
            "VARCHAR", "VARCHAR", "DATE", "VARCHAR", "DATE"]
    plan.unlink()  # the practice stops delivering a plan: its rows go with the next load
    assert wh.ingest(ds).loaded == [A]
    assert counts(wh, A)["veelgebruikers_plan"] == 0


def test_a_bad_plan_refuses_the_practice_and_keeps_its_previous_data(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    ds = build(tmp_path, name="v1")
    (ds / "extracts" / A / "veelgebruikers_plan.csv").write_text(PLAN)
    wh.ingest(ds)
    before = snapshot(wh, A)
    report = wh.ingest(build(tmp_path, "bad_veelgebruikers_plan", name="v2"))
    assert list(report.refused) == [A] and B in report.unchanged + report.loaded
    assert ("extracts/12345678/veelgebruikers_plan.csv, line 3, column patient_id: found 'P999', "
            "expected a patient_id that is in patients.csv") in report.refused[A]
    assert snapshot(wh, A) == before


def _old_warehouse(path: Path) -> None:
    """A warehouse as the first layout made it: every table but the ones added since."""
    from helpers.warehouse import ADDED_TABLES
    with duckdb.connect(str(path)) as con:
        for table, cols in SCHEMA.items():
            if table not in ADDED_TABLES:
                con.execute(f'CREATE TABLE "{table}" ({", ".join(f"{c} {t}" for c, t in cols)})')
        con.execute("INSERT INTO practices (practice_agb, name) VALUES ('12345678', 'Oud')")


def test_an_older_warehouse_reads_as_an_empty_plan_and_gets_the_table_on_write(tmp_path):
    path = tmp_path / "old.duckdb"
    _old_warehouse(path)
    wh = Warehouse(path)
    with wh.connect(read_only=True) as con:  # readers need not know which version made the file
        assert con.execute("SELECT count(*) FROM veelgebruikers_plan").fetchone() == (0,)
    with duckdb.connect(str(path), read_only=True) as con:  # nothing was written by reading
        assert "veelgebruikers_plan" not in {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    ds = build(tmp_path)
    (ds / "extracts" / A / "veelgebruikers_plan.csv").write_text(PLAN)
    report = wh.ingest(ds)
    assert report.loaded == [A, B], report.summary()
    assert counts(wh, A)["veelgebruikers_plan"] == 2
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT name FROM practices WHERE practice_agb = ?", [A]).fetchone() == (
            "Huisartsenpraktijk De Linde",)
