"""A small care group for the praktijkspiegel's spec tests: several practices, pipe tables.

The same idea as ``conftest.spec_db`` (made-up rows straight into a real DuckDB warehouse
with the schema of :mod:`helpers.warehouse`), for more than one practice: the mirror
compares practices, so a test needs at least two. Each table's pipe text carries a
``practice`` column with a key of :data:`AGB`.
"""

from __future__ import annotations

from datetime import date

import pandas as pd

from helpers.warehouse import SCHEMA, Warehouse

#: short practice keys used in the tables -> AGB codes
AGB = {"A": "01000001", "B": "01000002", "C": "01000003"}
EXTRACTION = "2026-10-05"
QUARTER = "2026Q3"  # window 0: 2025-10-01 .. 2026-09-30 (365 days)
#: patient-years of a patient registered and alive for the whole of window 0
FULL_YEAR = 365 / 365.25


def table(text: str) -> pd.DataFrame:
    """Parse a pipe table (first line = header) into strings; empty cells are missing."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip() and not set(ln.strip()) <= set("|-: ")]
    header = [h.strip() for h in lines[0].strip("|").split("|")]
    rows = []
    for ln in lines[1:]:
        cells = [c.strip() or None for c in ln.strip("|").split("|")]
        rows.append((cells + [None] * len(header))[: len(header)])
    return pd.DataFrame(rows, columns=header, dtype=object)


def _num(v):
    try:
        return float(str(v).replace(",", "."))
    except ValueError:
        return None


def _typed(name: str, df: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame()
    for col, sql_type in SCHEMA[name]:
        if col == "practice_agb":
            out[col] = df["practice"].map(AGB).values if "practice" in df else [AGB["A"]] * len(df)
            continue
        s = df[col] if col in df else pd.Series([None] * len(df), dtype=object)
        if col == "value_num" and "value" in df:
            s = df["value"]
        if sql_type == "DATE":
            s = s.map(lambda v: None if pd.isna(v) else date.fromisoformat(v))
        elif sql_type in ("INTEGER", "DOUBLE"):
            s = s.map(lambda v: None if pd.isna(v) else _num(v))
        out[col] = s.values
    return out


def care_group(path, extraction: dict[str, str] | None = None, **tables: str) -> Warehouse:
    """A warehouse at ``path`` with the practices that occur in ``patients`` and the given
    tables (pipe text with a ``practice`` column); ``extraction`` overrides a practice's
    extraction date (key -> ISO date)."""
    extraction = extraction or {}
    frames = {k: table(v) for k, v in tables.items()}
    keys = sorted(set(frames["patients"]["practice"]))
    practices = pd.DataFrame([{"practice_agb": AGB[k], "name": f"Praktijk {k}", "region": "Regio Spec",
                               "hagro": "Hagro Spec", "his_system": None, "fte_gp": None,
                               "extraction_date": date.fromisoformat(extraction.get(k, EXTRACTION))} for k in keys])
    wh = Warehouse(path)
    with wh.connect() as con:
        for name, df in {"practices": practices, **{k: _typed(k, v) for k, v in frames.items()}}.items():
            con.register("frame", df)
            con.execute(f'INSERT INTO "{name}" SELECT * FROM frame')
            con.unregister("frame")
        for agb in practices["practice_agb"]:
            con.execute("INSERT INTO loads VALUES (?, 'spec', now(), 'spec', '{}')", [agb])
    return wh


#: two practices, two men aged 56 each, registered all year: one stratum, so for a
#: standardised measure E of each practice is half the care group's O
TWO_BY_TWO = """
| practice | patient_id | birth_year | sex | registered_from |
| A | a1 | 1970 | M | 2015-01-01 |
| A | a2 | 1970 | M | 2015-01-01 |
| B | b1 | 1970 | M | 2015-01-01 |
| B | b2 | 1970 | M | 2015-01-01 |
"""
