"""Table-style spec tests: a handful of made-up patients and the expected answer for each.

Tables are written as pipe tables; empty cells are missing values. Rows go straight into a
real DuckDB warehouse (the schema of helpers.warehouse), one practice, so the SQL under
test is exactly what the batch runs.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from helpers.warehouse import SCHEMA, Warehouse

PRACTICE = "01000001"
EXTRACTION = "2026-10-05"


def table(text: str) -> pd.DataFrame:
    """Parse a pipe table (first line = header) into strings; empty -> None."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip() and not set(ln.strip()) <= set("|-: ")]
    header = [h.strip() for h in lines[0].strip("|").split("|")]
    rows = []
    for ln in lines[1:]:
        cells = [c.strip() or None for c in ln.split("|")]
        if ln.startswith("|"):
            cells = cells[1:]
        cells = (cells + [None] * len(header))[: len(header)]  # trailing empty cells
        rows.append(cells)
    return pd.DataFrame(rows, columns=header, dtype=object)


def _typed(name: str, df: pd.DataFrame) -> pd.DataFrame:
    types = dict(SCHEMA[name])
    out = pd.DataFrame()
    for col, sql_type in SCHEMA[name]:
        if col == "practice_agb":
            out[col] = [PRACTICE] * len(df)
            continue
        s = df[col] if col in df else pd.Series([None] * len(df), dtype=object)
        if col == "value_num" and "value" in df:
            s = df["value"].map(lambda v: None if pd.isna(v) else _num(v))
        if types[col] == "DATE":
            s = s.map(lambda v: None if pd.isna(v) else date.fromisoformat(v))
        elif types[col] in ("INTEGER", "DOUBLE"):
            s = s.map(lambda v: None if pd.isna(v) else _num(v))
        out[col] = s.values
    return out


def _num(v):
    try:
        return float(str(v).replace(",", "."))
    except ValueError:
        return None


@pytest.fixture
def spec_db(tmp_path):
    """Build a one-practice warehouse from pipe tables: ``spec_db(patients=..., episodes=...)``."""
    def build(**tables: str) -> Warehouse:
        wh = Warehouse(tmp_path / "spec.duckdb")
        with wh.connect() as con:
            practices = pd.DataFrame([{"practice_agb": PRACTICE, "name": "Spec", "region": "Regio Spec",
                                       "hagro": None, "his_system": None, "fte_gp": None,
                                       "extraction_date": EXTRACTION}])
            frames = {"practices": practices, **{k: table(v) for k, v in tables.items()}}
            for name, df in frames.items():
                typed = _typed(name, df)
                con.register("frame", typed)
                con.execute(f'INSERT INTO "{name}" SELECT * FROM frame')
                con.unregister("frame")
            con.execute("INSERT INTO loads VALUES (?, 'spec', now(), 'spec', '{}')", [PRACTICE])
        return wh
    return build


def mismatches(rule: str, expected: dict[str, object], found: dict[str, object]) -> list[str]:
    """One line per patient whose answer under ``rule`` is not the expected one (empty: all right)."""
    return [f"{rule}: patient {pid}: expected {expected.get(pid)!r}, found {found.get(pid)!r}"
            for pid in sorted(set(expected) | set(found), key=str) if expected.get(pid) != found.get(pid)]


@pytest.fixture
def per_patient():
    """``per_patient(rule, expected, found)``: assert the answer of every made-up patient, with a
    message naming each patient and the rule that went wrong (not only the totals)."""
    def check(rule: str, expected: dict[str, object], found: dict[str, object]) -> None:
        wrong = mismatches(rule, expected, found)
        assert not wrong, "\n" + "\n".join(wrong)
    return check
