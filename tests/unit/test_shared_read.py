"""Privacy by construction: a shared-scope report reads the cube only through
``helpers.cube.shared`` (SharedCube / read_shared), which returns nothing but tables written
through the small-number rule when the cube was prepared."""

from __future__ import annotations

import json
import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers.cube.shared import SHARED_DIR, SharedCube, SharedReadError, read_shared, suppress_table, write_shared
from helpers.errors import SpiegelError
from helpers.reports import SharedTable
from helpers.suppression import MIN_CELL, MIN_DENOMINATOR_FOR_RATE

TABLE = SharedTable("per_region", keys=("region",), counts=("patients", "enrolled"),
                    rates=(("enrolled_pct", "enrolled", "patients"),))


@pytest.fixture()
def cube(tmp_path):
    """A small cube: patient-level tables beside the shared folder, as prepare writes them."""
    root = tmp_path / "cube" / "2026Q3"
    root.mkdir(parents=True)
    findings = pd.DataFrame({"practice_agb": ["01000001", "01000002"], "patient_id": ["P1", "P2"],
                             "kind": ["diagnosis_not_enrolled"] * 2})
    findings.to_parquet(root / "findings.parquet", index=False)
    findings.to_parquet(root / "dq_issues.parquet", index=False)
    pd.DataFrame({"practice_agb": ["01000001"], "list_size": [3]}).to_parquet(root / "practices.parquet", index=False)
    (root / "cube.json").write_text(json.dumps({"quarter": "2026Q3"}))
    frames = {"per_region": pd.DataFrame({"region": ["Noord", "Zuid", "West"],
                                          "patients": [MIN_CELL - 1, 250, 40],
                                          "enrolled": [2, 30, MIN_CELL - 3]})}
    write_shared(root / SHARED_DIR, [TABLE], frames)
    return root


def test_a_count_below_the_rule_comes_back_suppressed(cube):
    df = read_shared(cube, "per_region").set_index("region")
    assert pd.isna(df.loc["Noord", "patients"]) and df.loc["Noord", "patients_shown"] == f"<{MIN_CELL}"
    assert pd.isna(df.loc["Noord", "enrolled"]) and df.loc["Noord", "enrolled_shown"] == f"<{MIN_CELL}"
    assert pd.isna(df.loc["West", "enrolled"]) and df.loc["West", "enrolled_shown"] == f"<{MIN_CELL}"
    assert df.loc["Zuid", "patients"] == 250 and df.loc["Zuid", "patients_shown"] == "250"
    # a rate is withheld when its denominator is too small or it would give a small count away
    assert df.loc["Zuid", "enrolled_pct"] == pytest.approx(12.0)
    assert pd.isna(df.loc["Noord", "enrolled_pct"]) and pd.isna(df.loc["West", "enrolled_pct"])
    assert MIN_DENOMINATOR_FOR_RATE <= 250
    small = df[[c for c in df.columns if c in TABLE.counts]].stack()
    assert not ((small > 0) & (small < MIN_CELL)).any(), "no exact small count leaves the reader"


@pytest.mark.parametrize("name", ["findings", "dq_issues", "practices", "summary", "cube", "index",
                                  "../findings", "shared/../findings", "/etc/passwd", "per_region.parquet",
                                  "Per_Region", "per_region/../../findings", ""])
def test_patient_level_tables_and_paths_are_refused(cube, name):
    with pytest.raises(SharedReadError, match="is not a shared table"):
        read_shared(cube, name)


def test_a_practice_slice_is_not_offered(cube):
    shared = SharedCube(cube)
    assert shared.tables() == ["per_region"]
    assert not hasattr(shared, "read_slice")
    with pytest.raises(TypeError):
        shared.read("per_region", practice_agb="01000001")   # no filter: there are no practice rows to slice


def test_a_file_not_written_through_the_rule_is_refused(cube):
    # someone drops the exact counts (or a patient table) under a declared name
    exact = pd.DataFrame({"region": ["Noord"], "patients": [3], "enrolled": [2]})
    pq.write_table(pa.Table.from_pandas(exact, preserve_index=False), cube / SHARED_DIR / "per_region.parquet")
    with pytest.raises(SharedReadError, match="not written through the small-number rule"):
        read_shared(cube, "per_region")


def test_a_stamped_file_with_a_small_count_is_refused(cube):
    path = cube / SHARED_DIR / "per_region.parquet"
    table = pq.read_table(path)
    df = table.to_pandas()
    df["patients"] = pd.array([3, 250, 40], dtype="Int64")
    forged = pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(table.schema.metadata)
    pq.write_table(forged, path)
    with pytest.raises(SharedReadError, match="unsuppressed small count"):
        read_shared(cube, "per_region")


def test_a_symlink_to_a_patient_table_is_refused(cube):
    path = cube / SHARED_DIR / "per_region.parquet"
    path.unlink()
    os.symlink(cube / "findings.parquet", path)
    with pytest.raises(SharedReadError):
        read_shared(cube, "per_region")


def test_the_writer_refuses_patient_rows_and_undeclared_columns():
    rows = pd.DataFrame({"region": ["Noord", "Noord"], "patients": [1, 1], "enrolled": [1, 0]})
    with pytest.raises(SpiegelError, match="more than one row per region"):
        suppress_table(rows, TABLE)
    with_id = rows.assign(patient_id=["P1", "P2"])
    with pytest.raises(SpiegelError, match="identifies patients"):
        suppress_table(with_id, TABLE)
    extra = pd.DataFrame({"region": ["Noord"], "patients": [12], "enrolled": [11], "deceased": [1]})
    with pytest.raises(SpiegelError, match="undeclared column 'deceased'"):
        suppress_table(extra, TABLE)


def test_an_empty_or_unprepared_cube_offers_nothing(tmp_path):
    assert SharedCube(tmp_path).tables() == []
    with pytest.raises(SharedReadError, match="no tables"):
        read_shared(tmp_path, "per_region")


def test_plain_figures_pass_as_they_are_and_may_not_count_patients(tmp_path):
    """A figure that counts no patients (indicators meeting their target) is declared plain:
    stored as it is beside the suppressed counts; a count or a patient column cannot be plain."""
    table = SharedTable("per_practice", keys=("practice",), counts=("enrolled",), plain=("indicators_met",))
    frame = pd.DataFrame({"practice": ["A", "B"], "enrolled": [3, 40], "indicators_met": [2, 7]})
    write_shared(tmp_path / SHARED_DIR, [table], {"per_practice": frame})
    df = read_shared(tmp_path, "per_practice").set_index("practice")
    assert df["indicators_met"].tolist() == [2, 7] and pd.isna(df.loc["A", "enrolled"])
    with pytest.raises(SpiegelError, match="must count no patients"):
        suppress_table(frame, SharedTable("t", keys=("practice",), counts=("enrolled",), plain=("enrolled",)))
