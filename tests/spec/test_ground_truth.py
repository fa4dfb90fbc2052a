"""The planted registration defects of the demo care group are found exactly.

Per finding kind: precision and recall over (practice, patient, programme[, control]),
both 1.0, and no finding at all on patients the generator left clean.
"""

from __future__ import annotations

import pandas as pd
import pytest

from helpers.cube import read_slice
from helpers.cube.findings import FINDING_KINDS


@pytest.fixture(scope="module")
def truth_and_found(demo_dataset, demo_cube, demo_quarter):
    truth = pd.read_csv(f"{demo_dataset}.ground_truth.csv", sep=";", dtype=str, keep_default_na=False)
    truth = truth[truth["quarter"] == str(demo_quarter)]
    found = read_slice(demo_cube, "findings").fillna({"control": ""})
    return truth, found


def _keys(df: pd.DataFrame, kind: str) -> set[tuple]:
    sel = df[df["kind"] == kind]
    with_control = kind in ("measurement_missing", "measurement_overdue")
    return {(r.practice_agb, r.patient_id, r.programme, r.control if with_control else "")
            for r in sel.itertuples()}


def test_every_kind_is_planted(truth_and_found):
    truth, _ = truth_and_found
    assert set(FINDING_KINDS) <= set(truth["kind"]), set(FINDING_KINDS) - set(truth["kind"])


@pytest.mark.parametrize("kind", FINDING_KINDS)
def test_precision_and_recall(truth_and_found, kind):
    truth, found = truth_and_found
    t, f = _keys(truth, kind), _keys(found, kind)
    tp = len(t & f)
    precision = tp / len(f) if f else 1.0
    recall = tp / len(t) if t else 1.0
    print(f"{kind}: planted {len(t)}, found {len(f)}, precision {precision:.3f}, recall {recall:.3f}")
    assert (precision, recall) == (1.0, 1.0), (
        f"{kind}: precision {precision:.3f}, recall {recall:.3f}; "
        f"missed {sorted(t - f)[:5]}, false {sorted(f - t)[:5]}")


def test_no_findings_on_clean_patients(truth_and_found):
    truth, found = truth_and_found
    planted = set(zip(truth["practice_agb"], truth["patient_id"]))
    stray = found[[(a, p) not in planted for a, p in zip(found["practice_agb"], found["patient_id"])]]
    assert stray.empty, stray.head(10).to_string()


def test_excluded_by_reason_not_flagged(truth_and_found):
    truth, found = truth_and_found
    excluded = truth[truth["kind"] == "excluded_by_reason"]
    flagged = set(zip(found["practice_agb"], found["patient_id"], found["programme"]))
    for r in excluded.itertuples():
        assert (r.practice_agb, r.patient_id, r.programme) not in flagged


def test_implausible_values_listed(truth_and_found, demo_cube):
    truth, _ = truth_and_found
    planted = truth[truth["kind"] == "implausible_value"]
    issues = read_slice(demo_cube, "dq_issues")
    listed = set(zip(issues["practice_agb"], issues["patient_id"], issues["concept"]))
    for r in planted.itertuples():
        assert (r.practice_agb, r.patient_id, r.control) in listed
