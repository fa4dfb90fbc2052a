"""helpers.reports.veelgebruikers without a warehouse: the candidate order, the CSV dialect and
its escaping, the ICPC items as SQL."""

from __future__ import annotations

import duckdb
import pandas as pd

from helpers.quarter import Quarter
from helpers.reports import veelgebruikers as vg


def test_candidates_persistent_first_then_how_far_above_the_threshold():
    f = pd.DataFrame({
        "practice_agb": ["01000001"] * 5 + ["01000002"],
        "patient_id": ["p1", "p2", "p3", "p4", "p5", "q1"],
        "contacts": [30, 12, 20, 20, 50, 7], "threshold": [20, 6, 10, 10, 10, 7],
        "persistent": [False, False, True, False, False, False],
        "registered": [True, True, True, True, False, True],
    })
    monitor = pd.DataFrame({"practice_agb": ["01000001"], "patient_id": ["p4"], "ended_on": [pd.NaT]})
    out = vg._with_plan_and_candidates(f, monitor, Quarter(2026, 3)).set_index("patient_id")
    # p3 persistent; then p2 (2.0x its threshold) before p1 (1.5x); p4 is in the plan, p5 left
    assert out["candidate_rank"].astype("float").fillna(0).to_dict() == {"p1": 3, "p2": 2, "p3": 1, "p4": 0, "p5": 0, "q1": 1}
    assert out["in_plan"].tolist() == [False, False, False, True, False, False]


def test_the_csv_is_dutch_excel_and_escaped(tmp_path):
    df = pd.DataFrame({"patientnummer": ["=HYPERLINK(\"x\")", "-12", "123"], "contacten": [3, 4, 5]})
    path = vg._write_csv(df, tmp_path / "veelgebruikers.csv")
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    lines = raw.decode("utf-8-sig").splitlines()
    assert lines[0] == "patientnummer;contacten"
    assert lines[2] == "'-12;4" and lines[3] == "123;5"
    back = pd.read_csv(path, sep=";", dtype=str, encoding="utf-8-sig")
    assert back["patientnummer"].tolist() == ["'=HYPERLINK(\"x\")", "'-12", "123"]
    assert [p.name for p in tmp_path.iterdir()] == ["veelgebruikers.csv"]   # no temporary left


def test_icpc_items_match_chapters_codes_and_ranges():
    con = duckdb.connect()
    codes = ["P76", "P76.01", "P7", "A04", "A29", "A30", "T90.02", "T90", None]
    con.register("c", pd.DataFrame({"icpc": codes}))
    got = lambda items: [r[0] for r in con.execute(  # noqa: E731
        f"SELECT icpc FROM c WHERE {vg.icpc_sql(items, 'icpc')} ORDER BY icpc").fetchall()]
    assert got(("P",)) == ["P7", "P76", "P76.01"]
    assert got(("P76",)) == ["P76", "P76.01"]
    assert got(("A01-A29",)) == ["A04", "A29"]
    assert got(("T90.02",)) == ["T90.02"]
