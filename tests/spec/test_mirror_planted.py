"""Issue 9, demo data: the praktijkspiegel (src/helpers/mirror) flags exactly the planted
care-use profiles of the demo care group beyond the overdispersion-adjusted 99.8% limits, and
does not flag the older practice after age/sex standardisation.

The truth is ``<out>.mirror_truth.csv`` (``practice_agb;measure;direction;planted_factor``,
written by helpers.demo, see helpers.demo.plant). The mirror is the real one, on the session's
demo warehouse (tests/conftest.py), window 0: the rolling year ending on the last day of the
latest complete quarter before the extraction date.

Measure ids are those of parameters/mirror/*.yaml (``voorschrift_j``). ``populatie_65plus`` is
no mirror measure but a fact about the older practice's population: it is checked on the age
make-up the mirror returns (``mirror_strata``).

The truth file lists every deviation the generator causes, side effects included (the e-consult
share, the diluted second-choice antibiotics share, the lab measurements of the practice of low
planted quality): the mirror must flag exactly those and nothing else.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from helpers.mirror import compute_mirror
from helpers.warehouse import Warehouse

pytestmark = pytest.mark.slow  # generates and loads the 12-practice demo (minutes on a loaded machine)

POSITION = {"higher": "boven", "lower": "onder"}


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep=";", dtype=str, keep_default_na=False, encoding="utf-8-sig")


@pytest.fixture(scope="module")
def truth(demo_dataset) -> pd.DataFrame:
    t = read(demo_dataset.parent / f"{demo_dataset.name}.mirror_truth.csv")
    if t.empty:
        pytest.skip("no planted profiles (fewer practices than helpers.demo.constants.PROFILE_MIN_PRACTICES)")
    return t


@pytest.fixture(scope="module")
def mirror(demo_warehouse, demo_quarter) -> dict[str, pd.DataFrame]:
    with Warehouse(demo_warehouse).connect(read_only=True) as con:
        out = compute_mirror(con, demo_quarter)
    return {"mirror": out["mirror"][out["mirror"]["window"] == 0].set_index(["practice_agb", "measure"]),
            "strata": out["mirror_strata"][out["mirror_strata"]["window"] == 0]}


def describe(m: pd.DataFrame, agb: str, measure: str) -> str:
    r = m.loc[(agb, measure)]
    return (f"practice {agb}, measure {measure}: O={r['O']:g}, E={r['E']:.1f}, O/E={r['ratio']:.3f}, "
            f"adjusted 99.8% limits [{r['funnel_lo_998']:.3f}, {r['funnel_hi_998']:.3f}] "
            f"(exact interval of O/E [{r['lo']:.3f}, {r['hi']:.3f}]), position {r['position']!r}")


def test_truth_measures_are_mirror_measures(truth, mirror):
    m = mirror["mirror"]
    missing = sorted({f"{r.practice_agb} {r.measure}" for r in truth.itertuples()
                      if r.measure != "populatie_65plus" and (r.practice_agb, r.measure) not in m.index})
    assert not missing, f"truth rows without a mirror figure: {missing}"


def test_planted_deviations_are_flagged(truth, mirror):
    m = mirror["mirror"]
    rows = truth[truth["direction"].isin(POSITION) & (truth["measure"] != "populatie_65plus")]
    assert len(rows) >= 6
    wrong = [f"planted {r.direction} x{r.planted_factor}, not flagged '{POSITION[r.direction]}': "
             + describe(m, r.practice_agb, r.measure)
             for r in rows.itertuples()
             if not (m.loc[(r.practice_agb, r.measure), "beyond_chance"]
                     and m.loc[(r.practice_agb, r.measure), "position"] == POSITION[r.direction])]
    assert not wrong, "\n" + "\n".join(wrong)


def test_older_practice_not_flagged_after_standardisation(truth, mirror):
    """Direction ``none``: shown (E large enough), inside the adjusted limits, and crude higher
    than the care group (so it is the standardisation that keeps it inside)."""
    m = mirror["mirror"]
    rows = truth[truth["direction"] == "none"]
    assert len(rows) >= 3
    wrong = []
    for r in rows.itertuples():
        row = m.loc[(r.practice_agb, r.measure)]
        if row["position"] != "binnen" or row["beyond_chance"]:
            wrong.append("must stay inside after standardisation: " + describe(m, r.practice_agb, r.measure))
        measure = m.xs(r.measure, level="measure")
        crude = (row["O"] / row["denominator"]) / (measure["O"].sum() / measure["denominator"].sum())
        if not crude > 1:
            wrong.append(f"crude rate not above the care group's (x{crude:.3f}): " + describe(m, r.practice_agb, r.measure))
    assert not wrong, "\n" + "\n".join(wrong)


def test_older_practice_is_older(truth, mirror):
    """``populatie_65plus`` (no mirror measure): the share of patient-years aged 65+ in the
    age make-up the mirror returns is clearly above the care group's and the highest."""
    s = mirror["strata"]
    old = s[s["age_band"].isin(["65-74", "75-84", "85+"])].groupby("practice_agb")["share"].sum()
    group = (s[s["age_band"].isin(["65-74", "75-84", "85+"])].groupby(["age_band", "sex"])["care_group_patient_years"].first().sum()
             / s.groupby(["age_band", "sex"])["care_group_patient_years"].first().sum())
    for r in truth[truth["measure"] == "populatie_65plus"].itertuples():
        assert old[r.practice_agb] > 1.3 * group and old[r.practice_agb] == old.max(), (
            f"practice {r.practice_agb}: 65+ share {old[r.practice_agb]:.3f}, care group {group:.3f}, "
            f"highest {old.idxmax()} {old.max():.3f} (planted x{r.planted_factor})")


def test_nothing_else_is_flagged(truth, mirror):
    m = mirror["mirror"]
    planted = set(zip(truth["practice_agb"], truth["measure"]))
    flagged = m[m["beyond_chance"]].index
    wrong = ["flagged, not planted: " + describe(m, agb, measure)
             for agb, measure in flagged if (agb, measure) not in planted]
    assert not wrong, "\n" + "\n".join(wrong)
