"""Issue 9, demo data: the praktijkspiegel (src/helpers/mirror) flags exactly the planted
care-use profiles of the demo care group beyond the overdispersion-adjusted 99.8% limits, and
does not flag the older practice after age/sex standardisation.

The truth is ``<out>.mirror_truth.csv`` (``practice_agb;measure;direction;planted_factor``,
written by helpers.demo, see helpers.demo.plant). The mirror is the real one, on the session's
demo warehouse (tests/conftest.py), window 0: the rolling year ending on the last day of the
latest complete quarter before the extraction date.

Measure ids: the truth file spells the ATC main groups ``voorschrift_J``, the mirror
(parameters/mirror/voorschrift_j.yaml) ``voorschrift_j``; a pure case difference, lower-cased
here. ``populatie_65plus`` is no mirror measure: it is checked on the age make-up the mirror
returns (``mirror_strata``).

Tolerance (:func:`side_effects`): flags the truth file does not list but the generator causes
on purpose elsewhere, each tied to a planted profile or the planted weakest practice, with the
direction it must have. They are truth-file omissions, tolerated here, not required:

- the e-consult practice: ``e_consult_aandeel`` ``boven`` (e-consults as a share of all
  contacts; contacts are unchanged in number, so the share moves with ``contacten_e_consult``);
- the antibiotics practice: ``antibiotica_tweede_keus`` ``onder`` (a share *of the antibiotics
  patients*: extra first-choice courses dilute the second-choice share; their number is
  unchanged, as helpers.demo.plant says);
- the weakest practice (quality 0.1: the most planted missed/overdue controls per patient in
  ``<out>.ground_truth.csv``): ``diagnostiek_egfr``, ``diagnostiek_hba1c``,
  ``diagnostiek_lipiden`` ``onder`` (missed controls are missing lab measurements).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from helpers.mirror import compute_mirror
from helpers.warehouse import Warehouse

pytestmark = pytest.mark.slow  # generates and loads the 12-practice demo (minutes on a loaded machine)

POSITION = {"higher": "boven", "lower": "onder"}
#: missed controls show as fewer lab measurements (the chain-care controls' measures)
WEAK_PRACTICE_MEASURES = ("diagnostiek_egfr", "diagnostiek_hba1c", "diagnostiek_lipiden")


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep=";", dtype=str, keep_default_na=False, encoding="utf-8-sig")


@pytest.fixture(scope="module")
def truth(demo_dataset) -> pd.DataFrame:
    t = read(demo_dataset.parent / f"{demo_dataset.name}.mirror_truth.csv")
    if t.empty:
        pytest.skip("no planted profiles (fewer practices than helpers.demo.constants.PROFILE_MIN_PRACTICES)")
    t["measure"] = t["measure"].str.lower()  # voorschrift_J (truth) = voorschrift_j (parameters/mirror)
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


def weakest_practice(demo_dataset) -> str:
    """The practice with the most planted missed/overdue controls per patient (the planted quality-0.1 one)."""
    g = read(demo_dataset.parent / f"{demo_dataset.name}.ground_truth.csv")
    missed = g[g["kind"].isin(["measurement_missing", "measurement_overdue"])].groupby("practice_agb").size()
    size = {agb: len(read(demo_dataset / "extracts" / agb / "patients.csv")) for agb in missed.index}
    return str((missed / pd.Series(size)).idxmax())


def side_effects(truth: pd.DataFrame, demo_dataset) -> dict[tuple[str, str], str]:
    """(practice, measure) -> the one position it may have although the truth file omits it."""
    def planted(measure: str) -> list[str]:
        return truth.loc[(truth["measure"] == measure) & (truth["direction"] != "none"), "practice_agb"].tolist()
    out = {}
    for agb in planted("contacten_e_consult"):
        out[(agb, "e_consult_aandeel")] = "boven"
    for agb in planted("antibiotica"):
        out[(agb, "antibiotica_tweede_keus")] = "onder"
    for measure in WEAK_PRACTICE_MEASURES:
        out[(weakest_practice(demo_dataset), measure)] = "onder"
    return out


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


def test_nothing_else_is_flagged(truth, mirror, demo_dataset):
    m = mirror["mirror"]
    planted = set(zip(truth["practice_agb"], truth["measure"]))
    tolerated = side_effects(truth, demo_dataset)
    flagged = m[m["beyond_chance"]].index
    wrong = [("flagged, not planted: " if (agb, measure) not in tolerated
              else f"known side effect may only be '{tolerated[(agb, measure)]}': ") + describe(m, agb, measure)
             for agb, measure in flagged
             if (agb, measure) not in planted and m.loc[(agb, measure), "position"] != tolerated.get((agb, measure))]
    assert not wrong, "\n" + "\n".join(wrong)
