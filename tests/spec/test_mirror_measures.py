"""Spec tests of every praktijkspiegel measure: a handful of made-up patients in two
practices and the expected O and E per practice (window 0 of 2026Q3: 2025-10-01 ..
2026-09-30), plus the loader's all-problems-at-once rule.

In the family tables all four patients are men of the same age registered all year, so a
standardised measure has one stratum and E of each practice is half the care group's O;
a share (``share_of``) expects the care group's share of the practice's denominator. The
standardisation itself (strata, moves, deaths, sex O) has its own scenario below.
"""

from __future__ import annotations

import math

import pytest

from helpers.errors import ConfigError
from helpers.mirror import MeasureError, compute_mirror, load_measures
from helpers.mirror.stats import MIN_EXPECTED

from mirror_fixtures import AGB, FULL_YEAR, QUARTER, TWO_BY_TWO, care_group  # tests/spec is on sys.path (rootdir conftest)

MEASURES = load_measures()


def _window0(wh, window: int = 0):
    with wh.connect(read_only=True) as con:
        out = compute_mirror(con, QUARTER, MEASURES)
    m = out["mirror"]
    return out, m[m["window"] == window].set_index(["measure", "practice_agb"])


def _check(rows, expected: dict[str, tuple[int, int]], denominators: dict[str, tuple[float, float]] | None = None):
    """expected: measure -> (O of A, O of B); E follows from the one-stratum design."""
    denominators = denominators or {}
    for mid, (oa, ob) in expected.items():
        m = MEASURES[mid]
        got = (int(rows.loc[(mid, AGB["A"]), "O"]), int(rows.loc[(mid, AGB["B"]), "O"]))
        assert got == (oa, ob), mid
        if m.share_of:
            da, db = denominators[mid]
            share = (oa + ob) / (da + db) if da + db else 0.0
            exp_e = (da * share, db * share)
            assert (rows.loc[(mid, AGB["A"]), "denominator"], rows.loc[(mid, AGB["B"]), "denominator"]) == (da, db), mid
        elif m.denominator == "patients":
            exp_e = ((oa + ob) / 2, (oa + ob) / 2)
        else:
            exp_e = ((oa + ob) / 2, (oa + ob) / 2)
        got_e = (rows.loc[(mid, AGB["A"]), "E"], rows.loc[(mid, AGB["B"]), "E"])
        assert got_e == pytest.approx(exp_e), mid


CONTACTS = """
| practice | contact_id | patient_id | date | kind | role |
| A | 1 | a1 | 2026-01-10 | consult | huisarts |
| A | 2 | a1 | 2026-02-01 | consult_lang | huisarts |
| A | 3 | a1 | 2026-03-01 | telefonisch | assistent |
| A | 4 | a1 | 2026-04-01 | visite | huisarts |
| A | 5 | a1 | 2026-05-01 | visite_lang | huisarts |
| A | 6 | a1 | 2026-06-01 | e-consult | huisarts |
| A | 7 | a1 | 2026-07-01 | consult | poh-s |
| A | 8 | a1 | 2026-08-01 | consult | poh-ggz |
| A | 9 | a1 | 2025-09-30 | consult | huisarts |
| A | 10 | a1 | 2026-09-30 | consult | huisarts |
| A | 11 | a1 | 2024-05-05 | consult | huisarts |
| A | 12 | a2 | 2026-09-15 | consult | huisarts |
| A | 13 | a2 | 2026-01-05 | telefonisch | poh-ggz |
| B | 1 | b1 | 2026-01-01 | consult | huisarts |
| B | 2 | b1 | 2026-02-01 | consult | huisarts |
| B | 3 | b1 | 2026-03-01 | consult | huisarts |
| B | 4 | b1 | 2026-04-01 | e-consult | huisarts |
| B | 5 | b2 | 2026-05-05 | telefonisch | assistent |
| B | 6 | b2 | 2026-06-06 | consult | poh-s |
"""


def test_contact_measures(tmp_path):
    # a1: 9 contacts in the window (2025-09-30 is the day before it; 2026-09-30 its last day)
    _, rows = _window0(care_group(tmp_path / "c.duckdb", patients=TWO_BY_TWO, contacts=CONTACTS))
    _check(rows, {
        "contacten_totaal": (11, 6), "contacten_consult": (5, 4), "contacten_consult_lang": (1, 0),
        "contacten_telefonisch": (2, 1), "contacten_visite": (2, 0), "contacten_e_consult": (1, 1),
        "contacten_huisarts": (7, 4), "contacten_poh_s": (1, 1), "contacten_poh_ggz": (2, 0),
        "contacten_assistent": (1, 1), "e_consult_aandeel": (1, 1),
    }, {"e_consult_aandeel": (11, 6)})
    assert rows.loc[("contacten_totaal", AGB["A"]), "rate"] == pytest.approx(11 / (2 * FULL_YEAR))
    assert rows.loc[("e_consult_aandeel", AGB["A"]), "rate"] == pytest.approx(100 / 11)
    assert rows.loc[("contacten_poh_ggz", AGB["A"]), "rate"] == pytest.approx(1000 * 2 / (2 * FULL_YEAR))


def test_frequent_attender_measures(tmp_path):
    # one band of four men: 10% of 4 is 0.4, so only a patient nobody beats is frequent: a1
    # (9 contacts). a1 is also the only one with contacts in the years ending 2025-09-30
    # (contact 9) and 2024-09-30 (contact 11): persistent.
    _, rows = _window0(care_group(tmp_path / "f.duckdb", patients=TWO_BY_TWO, contacts=CONTACTS))
    _check(rows, {"veelgebruikers_aandeel": (1, 0), "veelgebruikers_persistent": (1, 0),
                  "veelgebruikers_contactaandeel": (9, 0)},
           {"veelgebruikers_contactaandeel": (11, 6)})
    assert rows.loc[("veelgebruikers_aandeel", AGB["A"]), "denominator"] == 2  # patients, not years
    assert rows.loc[("veelgebruikers_aandeel", AGB["A"]), "rate"] == pytest.approx(50.0)


def test_frequent_attender_ties_all_count(tmp_path):
    # ten women aged 30 in one practice: two share the top count; 10% of 10 is 1 and nobody
    # has more than either, so both are frequent attenders (ties at the boundary all count)
    patients = "| practice | patient_id | birth_year | sex | registered_from |\n" + "".join(
        f"| A | p{i} | 1996 | V | 2015-01-01 |\n" for i in range(10)) + "| B | q | 1996 | V | 2015-01-01 |\n"
    counts = [5, 5, 3, 1, 1, 0, 0, 0, 0, 0]
    contacts = "| practice | contact_id | patient_id | date | kind | role |\n" + "".join(
        f"| A | {i}-{j} | p{i} | 2026-0{j + 1}-01 | consult | huisarts |\n" for i, n in enumerate(counts) for j in range(n))
    _, rows = _window0(care_group(tmp_path / "t.duckdb", patients=patients, contacts=contacts))
    assert rows.loc[("veelgebruikers_aandeel", AGB["A"]), "O"] == 2
    assert rows.loc[("veelgebruikers_contactaandeel", AGB["A"]), "O"] == 10


REFERRALS = """
| practice | patient_id | date | specialism |
| A | a1 | 2026-01-01 | cardiologie |
| A | a1 | 2026-01-02 | Interne geneeskunde |
| A | a1 | 2026-01-03 | fysiotherapie |
| A | a1 | 2026-01-04 | dietetiek |
| A | a1 | 2026-01-05 | ggz |
| A | a1 | 2026-01-06 | dermatologie |
| A | a1 | 2026-01-07 | dermatologie |
| A | a1 | 2026-01-08 | kno |
| A | a2 | 2026-02-01 | oogheelkunde |
| A | a2 | 2026-02-02 | orthopedie |
| A | a2 | 2026-02-03 | neurologie |
| A | a2 | 2026-02-04 | chirurgie |
| A | a2 | 2026-02-05 | gynaecologie |
| A | a2 | 2026-02-06 | longziekten |
| A | a2 | 2025-01-01 | dermatologie |
| B | b1 | 2026-03-01 | dermatologie |
| B | b1 | 2026-03-02 | fysiotherapie |
| B | b1 | 2026-03-03 | urologie |
| B | b2 | 2026-03-04 | kno |
| B | b2 | 2026-03-05 | ggz |
"""


def test_referral_measures(tmp_path):
    # urologie is no specialism of its own here but is a medical specialist; 2025-01-01 is
    # before the window; "Interne geneeskunde" is compared in lower case
    _, rows = _window0(care_group(tmp_path / "r.duckdb", patients=TWO_BY_TWO, referrals=REFERRALS))
    _check(rows, {
        "verwijzingen_medisch_specialist": (11, 3), "verwijzing_cardiologie": (1, 0),
        "verwijzing_interne_geneeskunde": (1, 0), "verwijzing_longziekten": (1, 0),
        "verwijzing_oogheelkunde": (1, 0), "verwijzing_dermatologie": (2, 1), "verwijzing_orthopedie": (1, 0),
        "verwijzing_neurologie": (1, 0), "verwijzing_chirurgie": (1, 0), "verwijzing_kno": (1, 1),
        "verwijzing_gynaecologie": (1, 0), "verwijzing_fysiotherapie": (1, 1), "verwijzing_dietetiek": (1, 0),
        "verwijzing_ggz": (1, 1),
    })


PRESCRIPTIONS = """
| practice | patient_id | date | atc |
| A | a1 | 2026-01-01 | J01CA04 |
| A | a1 | 2026-02-01 | J01CA04 |
| A | a1 | 2026-03-01 | J01CR02 |
| A | a2 | 2026-04-01 | J01MA02 |
| A | a2 | 2026-04-02 | A02BC01 |
| A | a2 | 2026-04-03 | N05BA01 |
| A | a2 | 2026-04-04 | C10AA05 |
| A | a2 | 2026-04-05 | R03BA02 |
| A | a2 | 2026-04-06 | N06AB06 |
| B | b1 | 2026-01-01 | J01CA04 |
| B | b1 | 2026-01-02 | N05CD08 |
| B | b1 | 2026-01-03 | N02AA05 |
| B | b1 | 2025-08-01 | A02BC05 |
| B | b2 | 2026-02-01 | D07AC01 |
| B | b2 | 2026-02-02 | G03AA07 |
| B | b2 | 2026-02-03 | H03AA01 |
| B | b2 | 2026-02-04 | L04AX03 |
| B | b2 | 2026-02-05 | M01AE01 |
| B | b2 | 2026-02-06 | P02CA01 |
| B | b2 | 2026-02-07 | S01AA01 |
| B | b2 | 2026-02-08 | V03AE02 |
| B | b2 | 2026-02-09 | B01AC06 |
| B | b2 | 2026-02-10 | C09AA02 |
| B | b2 | 2026-02-11 | N02BE01 |
| B | b2 | 2026-02-12 | R06AE07 |
"""


def test_prescription_measures(tmp_path):
    # patients, not prescriptions: a1's two amoxicillin prescriptions count once; b1's PPI
    # of 2025-08-01 is before the window
    _, rows = _window0(care_group(tmp_path / "p.duckdb", patients=TWO_BY_TWO, prescriptions=PRESCRIPTIONS))
    _check(rows, {
        "antibiotica": (2, 1), "antibiotica_tweede_keus": (2, 0), "ppi": (1, 0), "benzodiazepinen": (1, 1),
        "opioiden": (0, 1), "antidepressiva": (1, 0), "statines": (1, 0), "ics": (1, 0),
        "voorschrift_a": (1, 0), "voorschrift_b": (0, 1), "voorschrift_c": (1, 1), "voorschrift_d": (0, 1),
        "voorschrift_g": (0, 1), "voorschrift_h": (0, 1), "voorschrift_j": (2, 1), "voorschrift_l": (0, 1),
        "voorschrift_m": (0, 1), "voorschrift_n": (1, 2), "voorschrift_p": (0, 1), "voorschrift_r": (1, 1),
        "voorschrift_s": (0, 1), "voorschrift_v": (0, 1),
    }, {"antibiotica_tweede_keus": (2, 1)})
    assert rows.loc[("antibiotica", AGB["A"]), "rate"] == pytest.approx(1000 * 2 / (2 * FULL_YEAR))
    assert rows.loc[("antibiotica_tweede_keus", AGB["A"]), "rate"] == pytest.approx(100.0)


MEASUREMENTS = """
| practice | patient_id | date | nhg_code | value |
| A | a1 | 2026-01-01 | 2816 | 53 |
| A | a1 | 2026-06-01 | 2816 | 50 |
| A | a1 | 2026-01-01 | 542 | 2,5 |
| A | a1 | 2026-01-01 | 90001 | 5,1 |
| A | a1 | 2026-01-01 | 3583 | 80 |
| A | a1 | 2026-01-01 | 40 | 1,2 |
| A | a2 | 2026-02-02 | 542 | 3,1 |
| A | a2 | 2026-03-03 | 542 | 2,9 |
| A | a2 | 2026-04-04 | 90004 | 85 |
| A | a2 | 2026-04-04 | 1744 | 140 |
| B | b1 | 2025-09-01 | 2816 | 60 |
| B | b1 | 2026-05-05 | 3583 | 70 |
| B | b1 | 2026-05-05 | 3583 | 70 |
| B | b2 | 2026-07-07 | 40 | 2,0 |
| B | b2 | 2026-08-08 | 90004 | 70 |
"""


def test_diagnostic_measures(tmp_path):
    # occasions: LDL and total cholesterol of a1 on one day are one lipid occasion; b1's
    # duplicate eGFR row is one; b1's HbA1c of 2025-09-01 is before the window
    _, rows = _window0(care_group(tmp_path / "m.duckdb", patients=TWO_BY_TWO, measurements=MEASUREMENTS))
    _check(rows, {"diagnostiek_hba1c": (2, 0), "diagnostiek_lipiden": (3, 0), "diagnostiek_egfr": (1, 1),
                  "diagnostiek_acr": (1, 1), "diagnostiek_spirometrie": (1, 1)})


EPISODES = """
| practice | patient_id | icpc | start_date | end_date |
| A | a1 | T90.02 | 2010-01-01 | |
| A | a1 | K86 | 2012-01-01 | |
| A | a2 | R96.01 | 2015-01-01 | |
| A | a2 | R95 | 2026-05-01 | |
| B | b1 | R96 | 2016-01-01 | 2025-06-30 |
| B | b1 | K74 | 2020-01-01 | |
| B | b1 | U99.01 | 2021-01-01 | |
| B | b2 | R96 | 2026-09-30 | |
| B | b2 | T90 | 2019-01-01 | |
"""


def test_population_measures(tmp_path):
    # R96.01 is excluded from astma; b1's astma ended before the window; T90 is not T90.02;
    # b1's K74 and U99.01 are one CVRM patient but two chronic conditions (multimorbid)
    _, rows = _window0(care_group(tmp_path / "e.duckdb", patients=TWO_BY_TWO, episodes=EPISODES))
    _check(rows, {"prevalentie_dm2": (1, 0), "prevalentie_copd": (1, 0), "prevalentie_astma": (0, 1),
                  "prevalentie_cvrm": (0, 1), "multimorbiditeit": (1, 1)})


STANDARDISATION_PATIENTS = """
| practice | patient_id | birth_year | sex | registered_from | registered_until | deceased_on |
| A | p1 | 1970 | M | 2010-01-01 | | |
| A | p2 | 1990 | V | 2026-04-01 | | |
| A | p3 | 1985 | O | 2000-01-01 | | 2026-03-31 |
| A | p4 | 1950 | M | 2000-01-01 | 2025-06-30 | |
| B | q1 | 1966 | M | 2010-01-01 | | |
| B | q2 | 1996 | V | 2010-01-01 | | |
| C | r1 | 1970 | M | 2010-01-01 | | |
"""
STANDARDISATION_CONTACTS = """
| practice | contact_id | patient_id | date | kind | role |
| A | 1 | p1 | 2026-01-01 | consult | huisarts |
| A | 2 | p1 | 2026-02-01 | consult | huisarts |
| A | 3 | p2 | 2026-03-01 | consult | huisarts |
| A | 4 | p2 | 2026-05-01 | consult | huisarts |
| A | 5 | p3 | 2026-01-01 | consult | huisarts |
| A | 6 | p3 | 2026-05-01 | consult | huisarts |
| A | 7 | p4 | 2025-03-03 | consult | huisarts |
| B | 1 | q1 | 2026-01-01 | consult | huisarts |
| B | 2 | q1 | 2026-02-01 | consult | huisarts |
| B | 3 | q1 | 2026-03-01 | consult | huisarts |
| B | 4 | q1 | 2026-04-01 | consult | huisarts |
| B | 5 | q2 | 2026-01-01 | consult | huisarts |
| B | 6 | q2 | 2026-02-01 | consult | huisarts |
| B | 7 | q2 | 2026-03-01 | consult | huisarts |
| C | 1 | r1 | 2026-01-01 | consult | huisarts |
"""


def test_indirect_standardisation_by_hand(tmp_path):
    """contacten_totaal with moves, a death, sex O and a stale extraction, computed by hand.

    Y = 365/365.25 (a whole window), h = 183/365.25 (p2: registered 2026-04-01 .. 09-30),
    d = 182/365.25 (p3: 2025-10-01 .. death on 2026-03-31, both days included).
    p2's contact before registering and p3's after death do not count; p4 left before the
    window. Practice C's extraction (2026-06-01) ends before the window: C is not compared.
    Age = 2026 - birth year: p1 56 and q1 60 (45-64 M), p2 36 and q2 30 (25-44 V), p3 41 (25-44 O).
    Reference rates: 45-64 M 6/(2Y); 25-44 V 4/(h+Y); p3 (sex O) takes 25-44 over all sexes 5/(h+Y+d).
    """
    wh = care_group(tmp_path / "s.duckdb", extraction={"C": "2026-06-01"},
                    patients=STANDARDISATION_PATIENTS, contacts=STANDARDISATION_CONTACTS)
    out, rows = _window0(wh)
    Y, h, d = 365 / 365.25, 183 / 365.25, 182 / 365.25
    a, b = rows.loc[("contacten_totaal", AGB["A"])], rows.loc[("contacten_totaal", AGB["B"])]
    assert (a["O"], b["O"]) == (4, 7)
    assert a["E"] == pytest.approx(Y * 6 / (2 * Y) + h * 4 / (h + Y) + d * 5 / (h + Y + d))
    assert b["E"] == pytest.approx(Y * 6 / (2 * Y) + Y * 4 / (h + Y))
    assert a["patient_years"] == pytest.approx(Y + h + d)
    assert b["patient_years"] == pytest.approx(2 * Y)
    assert ("contacten_totaal", AGB["C"]) not in rows.index
    # E below MIN_EXPECTED: O and E are shown, no ratio, no interval, no funnel position
    assert a["E"] < MIN_EXPECTED and math.isnan(a["ratio"]) and math.isnan(a["lo"]) and a["position"] == ""
    assert not a["beyond_chance"]
    # window 2 ends 2026-03-31, before C's extraction: there C takes part
    m = out["mirror"]
    assert AGB["C"] in set(m[m["window"] == 2]["practice_agb"])
    assert str(m[m["window"] == 2]["window_end"].iloc[0].date()) == "2026-03-31"
    # the pyramid holds the sex O stratum and the care group's make-up beside the practice's
    s = out["mirror_strata"]
    s0 = s[(s["window"] == 0) & (s["practice_agb"] == AGB["A"])].set_index(["age_band", "sex"])
    assert s0.loc[("25-44", "O"), "patient_years"] == pytest.approx(d)
    assert s0.loc[("45-64", "M"), "care_group_patient_years"] == pytest.approx(2 * Y)
    assert s0["share"].sum() == pytest.approx(1.0)


def test_every_measure_file_loads_with_the_agreed_ids():
    ids = set(MEASURES)
    fixed = {"contacten_totaal", "contacten_consult", "contacten_consult_lang", "contacten_telefonisch",
             "contacten_visite", "contacten_e_consult", "contacten_huisarts", "contacten_poh_s", "contacten_poh_ggz",
             "contacten_assistent", "e_consult_aandeel", "verwijzingen_medisch_specialist", "verwijzing_fysiotherapie",
             "verwijzing_dietetiek", "verwijzing_ggz", "antibiotica", "antibiotica_tweede_keus", "ppi",
             "benzodiazepinen", "opioiden", "antidepressiva", "statines", "ics", "diagnostiek_hba1c",
             "diagnostiek_lipiden", "diagnostiek_egfr", "diagnostiek_acr", "diagnostiek_spirometrie",
             "prevalentie_dm2", "prevalentie_copd", "prevalentie_astma", "prevalentie_cvrm", "multimorbiditeit",
             "veelgebruikers_aandeel", "veelgebruikers_contactaandeel", "veelgebruikers_persistent"}
    fixed |= {f"verwijzing_{s}" for s in ("cardiologie", "interne_geneeskunde", "longziekten", "oogheelkunde",
                                          "dermatologie", "orthopedie", "neurologie", "chirurgie", "kno", "gynaecologie")}
    fixed |= {f"voorschrift_{g}" for g in "abcdghjlmnprsv"}
    assert ids == fixed
    # national figures only of verified (V) or derived (D) status
    assert {m.national.status for m in MEASURES.values() if m.national} <= {"V", "D"}
    assert not MEASURES["e_consult_aandeel"].standardised and MEASURES["e_consult_aandeel"].share_of == "contacten_totaal"


GOOD = """id: {id}
title: Goed
section: contacten
unit: per_patient_year
event: contacts
kinds: [consult]
roles: [huisarts]
standardised: true
source: test
reviewed_by: test
reviewed_on: '2026-12-01'
"""


def test_loader_lists_every_problem_of_every_file_at_once(tmp_path):
    d, ref = tmp_path / "mirror", tmp_path / "reference"
    d.mkdir(), ref.mkdir()
    (ref / "national.csv").write_text(
        "id;value;unit;year;status;source;note\nschatting;12;per_patient_year;2021;E;geschat;\n", encoding="utf-8")
    (d / "goed.yaml").write_text(GOOD.format(id="goed"), encoding="utf-8")
    (d / "naam.yaml").write_text(GOOD.format(id="andere_naam"), encoding="utf-8")
    (d / "soort.yaml").write_text(GOOD.format(id="soort").replace("[consult]", "[spreekuur]")
                                  .replace("section: contacten", "section: kosten"), encoding="utf-8")
    (d / "schatting.yaml").write_text(GOOD.format(id="schatting") + "national: {path: national.csv, id: schatting}\n",
                                      encoding="utf-8")
    (d / "onvolledig.yaml").write_text("id: onvolledig\ntitle: x\nsection: contacten\nunit: per_jaar\nevent: contacts\n"
                                       "standardised: ja\nsource: s\nreviewed_on: '2026-12-01'\n", encoding="utf-8")
    (d / "aandeel.yaml").write_text(GOOD.format(id="aandeel").replace("unit: per_patient_year", "unit: percent")
                                    + "share_of: bestaat_niet\n", encoding="utf-8")
    (d / "atc.yaml").write_text(GOOD.format(id="atc").replace("event: contacts", "event: prescription_patients")
                                .replace("kinds: [consult]\nroles: [huisarts]\n", "atc: [j01x!]\n"), encoding="utf-8")
    with pytest.raises(MeasureError) as err:
        load_measures(d, reference_dir=ref)
    text = str(err.value)
    assert isinstance(err.value, ConfigError)
    expected = [
        "naam.yaml, column id: found 'andere_naam', expected the file name ('naam')",
        "soort.yaml, column section: found 'kosten'",
        "soort.yaml, column kinds: found 'spreekuur', expected a contact kind of the contract",
        "schatting.yaml, column national: found 'schatting (E)', expected a figure marked V (seen) or D (derived)",
        "onvolledig.yaml, column reviewed_by: expected reviewed_by (it is missing)",
        "onvolledig.yaml, column unit: found 'per_jaar', expected one of per_patient_year",
        "onvolledig.yaml, column standardised: found 'ja', expected true or false",
        "onvolledig.yaml, column kinds: expected kinds for event contacts",
        "onvolledig.yaml, column roles: expected roles for event contacts",
        "aandeel.yaml, column share_of: found 'bestaat_niet', expected the id of another measure",
        "atc.yaml, column atc: found 'J01X!', expected an ATC prefix",
    ]
    for line in expected:
        assert line in text, line
    # a file missing a key still has its other keys checked; share_of is checked against
    # the other files once all are read
    assert len(err.value.problems) == len(expected)
    assert "goed.yaml" not in text
