"""Domain constants of the demo care group: demographics, epidemiology, care patterns, the
contract's columns and the files the generator writes.

Codes and rules are not here: they come from parameters/ (through helpers.rules.programmes).
[E] = estimate, see shared/reference/domain-notes.md.
"""

from __future__ import annotations

from datetime import date

import numpy as np


EPOCH = date(1970, 1, 1)
INF = 10**7  # "no date" (open end, never left): far beyond 2100 as a day number

#: Dutch population by 5-year age band (0-4 .. 95-99, 100+), thousands, CBS 1-1-2024 (rounded).
NL_PYRAMID = np.array([880, 905, 975, 1050, 1135, 1205, 1180, 1110, 1085, 1100, 1260, 1305,
                       1210, 1075, 980, 830, 510, 285, 120, 30, 3], dtype=float)
N_BANDS = len(NL_PYRAMID)
BAND_MID = np.arange(N_BANDS) * 5 + 2.5
#: Relative propensity to move house (in and out of a practice list) by band [E].
MOVER_PROP = np.array([1.0, .7, .5, .8, 2.2, 2.4, 1.8, 1.2, .9, .7, .6, .55, .55, .5, .5, .55,
                       .7, .9, 1.0, 1.0, 1.0])
MOVE_OUT_RATE = 0.055  # per year, list average [E]
MOVE_IN_RATE = 0.056
BIRTH_RATE = 0.0095
#: Annual probability of death by band (CBS life tables, rounded) [E].
MORTALITY_Q = np.array([.0008, .0001, .0001, .0002, .0003, .0004, .0005, .0007, .0011, .0018,
                        .003, .0048, .0075, .0115, .018, .031, .056, .10, .18, .30, .45])

#: Prevalence model per ICPC group of codes.yaml: share of the list (national structure),
#: age shape per 5-year band (relative), mean years since diagnosis, minimum onset age,
#: mortality multiplier. Targets: DM2 ~6.5%, COPD ~3%, astma ~5% (domain-notes §2.3).
PREVALENCE = {
    "dm2": (0.068, [0, 0, 0, 0, 1, 2, 4, 8, 15, 28, 45, 70, 100, 130, 160, 185, 195, 190, 170, 150, 150], 9, 25, 1.4),
    "copd": (0.032, [0, 0, 0, 0, 0, 0, 0, 1, 3, 8, 15, 28, 45, 65, 85, 100, 110, 105, 90, 90, 90], 8, 40, 1.9),
    "astma": (0.058, [15, 50, 60, 55, 50, 45, 45, 45, 45, 48, 48, 48, 48, 50, 50, 50, 45, 45, 45, 45, 45], 14, 2, 1.0),
    "hvz": (0.045, [0, 0, 0, 0, 0, 0, 1, 2, 6, 12, 22, 38, 60, 90, 125, 165, 200, 230, 240, 240, 240], 8, 30, 1.5),
    "ckd": (0.012, [0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 7, 10, 18, 28, 40, 50, 55, 55, 55], 6, 30, 1.5),
    "hypertension": (0.14, [0, 0, 0, 0, 1, 3, 6, 12, 25, 50, 80, 120, 170, 230, 290, 340, 380, 400, 400, 400, 400], 11, 20, 1.1),
    "lipids": (0.05, [0, 0, 0, 0, 0, 1, 3, 6, 12, 25, 45, 65, 85, 100, 110, 100, 90, 70, 60, 60, 60], 9, 20, 1.0),
    "heart_failure": (0.012, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 4, 8, 14, 25, 45, 75, 100, 100, 100], 4, 40, 2.5),
    "frailty": (0.010, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 6, 14, 35, 80, 150, 220, 220], 3, 65, 2.5),
}
#: A group of a programme that has no model above still gets patients (adults, rising with age).
DEFAULT_PREVALENCE = (0.02, [0, 0, 0, 0, 5, 8, 10, 12, 15, 20, 25, 30, 35, 40, 45, 50, 50, 50, 50, 50, 50], 8, 18, 1.2)
#: Groups more common among DM2 patients (multiplier).
DM2_LINKED = {"hypertension": 1.8, "lipids": 1.8, "hvz": 1.6, "ckd": 2.0, "heart_failure": 1.5}
#: Groups whose episodes sometimes close (remission), with the share that does.
ENDABLE = {"astma": 0.06}
#: Realistic sub-codes used for part of the episodes of a listed code (they match by the rules).
SUBCODES = {"K74": ("K74.01", "K74.02"), "T93": ("T93.01",)}
#: Near-miss codes for `enrolled_without_diagnosis`: what a GP types instead of the right one.
#: Used only when the code matches no group of codes.yaml; otherwise the episode is closed instead.
NEAR_MISS = {"DM2": "T90", "COPD": "R91", "ASTMA": "R96.01", "CVRM": "K85"}
#: Decoy episodes that look like a programme diagnosis but are not (share of list).
DECOYS = {"R96.01": 0.004}

#: Other problem-list episodes: code, weight, mean duration in days (None = chronic/open).
OTHER_EPISODES = [
    ("R74", 20, 14), ("R78", 6, 21), ("R05", 8, 21), ("R80", 4, 10), ("H71", 5, 14), ("U71", 7, 7),
    ("L03", 10, 60), ("L01", 4, 45), ("L92", 3, 90), ("L90", 4, None), ("L86", 3, 180), ("S88", 5, 120),
    ("S74", 4, 30), ("S03", 3, 60), ("D12", 3, 60), ("D73", 3, 7), ("D84", 4, 60), ("N01", 4, 30),
    ("N02", 2, 30), ("P76", 5, 365), ("P74", 4, 270), ("P06", 3, 90), ("P15", 1, None), ("T82", 3, None),
    ("A04", 3, 60), ("F70", 2, 10), ("K95", 2, None), ("K78", 2, None), ("X11", 2, 365), ("T86", 2, None),
    ("B80", 2, 90), ("Y85", 1, None),
]
PSYCH_CODES = ("P76", "P74", "P15")

#: Nivel 2017, contacts per patient per year by age band (shared/reference, segments 1+3).
NIVEL_AGE_EDGES = np.array([5, 18, 45, 65, 75, 85])
NIVEL_RATES = np.array([3.5, 2.3, 3.6, 4.4, 6.0, 8.9, 13.3])
SEG1_SCALE = 0.93  # chain-care (POH-S) contacts come on top, as in Nivel 2021 (5.1 incl. ketenzorg)
CONTACT_KINDS = ("consult", "consult_lang", "visite", "visite_lang", "telefonisch", "e-consult")
ROLES = ("huisarts", "poh-s", "poh-ggz", "assistent")
KIND_BASE = np.array([2.08, 0.71, 0.10, 0.08, 1.22, 0.0])  # Nivel 2017; e-consult by year below
VISIT_AGE = np.array([0.1, 0.05, 0.1, 0.3, 1.0, 3.0, 8.0])  # visite share by Nivel band
ECONSULT_AGE = np.array([0.3, 0.6, 1.2, 1.1, 0.8, 0.4, 0.2])
#: Reasons for contact when no chronic code applies (code, weight).
CONTACT_CODES = [("R74", 14), ("L03", 8), ("S88", 5), ("R05", 6), ("H71", 4), ("U71", 4), ("D12", 3),
                 ("N01", 4), ("A04", 3), ("L92", 3), ("S74", 3), ("A97", 5), ("R78", 3), ("L15", 3),
                 ("D84", 2), ("F70", 2), ("S18", 3), ("L17", 2), ("A03", 3), ("R80", 2), ("X11", 1)]

#: Chronic prescribing per ICPC group: (ATC choices, share of patients, days per prescription).
REGIMENS = {
    "dm2": [(("A10BA02",), .85, 90), (("A10BB09",), .28, 90), (("A10AE04",), .16, 90), (("A10AB05",), .06, 90),
            (("C10AA05", "C10AA07", "C10AA01"), .70, 90), (("C09AA05", "C09CA01", "C09AA02"), .45, 90)],
    "hvz": [(("C10AA05", "C10AA07"), .82, 90), (("B01AC06",), .55, 90), (("B01AF01", "B01AF02"), .12, 90),
            (("C07AB02",), .40, 90), (("C09AA05", "C09CA01"), .45, 90)],
    "ckd": [(("C09AA05", "C09CA01"), .60, 90)],
    "hypertension": [(("C09AA05", "C09CA01", "C09AA02"), .55, 90), (("C03AA03",), .30, 90),
                     (("C08CA01",), .30, 90), (("C07AB02",), .15, 90)],
    "lipids": [(("C10AA05", "C10AA07", "C10AA01"), .65, 90)],
    "copd": [(("R03BB04",), .50, 90), (("R03AL03", "R03AL04"), .25, 90), (("R03AK10", "R03AK08"), .20, 90),
             (("R03AC02",), .60, 30)],
    "astma": [(("R03BA02", "R03BA05"), .45, 90), (("R03AK08", "R03AK06", "R03AK07"), .30, 90),
              (("R03AC02",), .75, 30)],
    "heart_failure": [(("C03CA01",), .70, 90), (("C07AB07",), .50, 90)],
}
#: Exacerbation courses per year (prednisolone, plus an antibiotic for COPD).
EXACERBATION_RATE = {"copd": 0.55, "astma": 0.25}
#: Acute prescribing after a GP contact: (ATC, weight, days).
ACUTE = [("J01CA04", 10, 7), ("J01CF05", 3, 7), ("J01AA02", 4, 7), ("J01XE01", 5, 5), ("J01FA09", 2, 5),
         ("J01CR02", 2, 7), ("J01MA02", 1, 7), ("J01MA12", 0.3, 7),
         ("M01AE01", 8, 14), ("M01AE02", 5, 14), ("N02BE01", 6, 30), ("A02BC01", 6, 30), ("A02BC02", 3, 30),
         ("D07AC01", 3, 30), ("D01AC02", 3, 28), ("S01AA01", 2, 7), ("R06AE07", 4, 30), ("R01AD09", 3, 30),
         ("N05BA04", 2, 14), ("N06AB06", 3, 30), ("N06AB04", 2, 30), ("G03AA07", 3, 84), ("H03AA01", 2, 90),
         ("A06AD11", 3, 30), ("N02AJ13", 2, 14), ("M02AA15", 2, 30), ("B03AA07", 2, 30), ("N05CF01", 2, 14)]
ACUTE_SHARE = 0.28

#: Referrals: specialism (contract list), weight, reasons (ICPC).
SPECIALISMS = [
    ("fysiotherapie", 14, ("L03", "L01", "L08", "L92", "N99")), ("dermatologie", 12, ("S80", "S88", "S91", "S82")),
    ("orthopedie", 11, ("L15", "L90", "L86", "L92")), ("chirurgie", 9, ("D98", "S04", "D89", "S93")),
    ("cardiologie", 8, ("K77", "K78", "K74", "K93")), ("kno", 7, ("H71", "H72", "R75", "R90")),
    ("oogheelkunde", 7, ("F92", "F93", "F83", "F95")), ("neurologie", 6, ("N17", "N89", "N92", "N01")),
    ("gynaecologie", 6, ("X11", "X14", "X85", "X87")), ("interne geneeskunde", 6, ("D12", "B80", "T85", "D87")),
    ("ggz", 6, ("P76", "P74", "P72", "P98")), ("longziekten", 4, ("R95", "R96", "R05", "R84")),
    ("dietetiek", 4, ("T82", "T90.02", "T83", "D93")),
]
REFERRAL_RATE = 0.33  # per patient per year, before the age and propensity factors: ~300 per 1,000 overall
#: Specialisms that are not medical specialists (the mirror shows them apart).
NON_MEDICAL = ("fysiotherapie", "dietetiek", "ggz")

#: Planted care-use profiles (the praktijkspiegel must find them; see helpers.demo.plant), one
#: practice each, when the care group has at least PROFILE_MIN_PRACTICES practices.
PROFILES = ("dermatologie", "antibiotica", "e_consult", "older")
PROFILE_MIN_PRACTICES = 6
#: The older practice: age tilt giving about twice the country's share of 65+ (21% -> ~40%).
OLDER_TILT = 1.0
#: Referral practice: dermatology referrals x this, taken from all other specialisms alike.
DERMATOLOGY_FACTOR = 2.0
#: Antibiotics practice: an extra first-choice antibiotic after this share of GP contacts
#: (patients with a J01 prescription about x1.5).
EXTRA_ANTIBIOTIC_SHARE = 0.08
FIRST_CHOICE_ANTIBIOTICS = (("J01CA04", 10), ("J01CE02", 3), ("J01AA02", 4), ("J01XE01", 5))
#: E-consult practice: e-consults x this, in place of telephone contacts (same roles).
E_CONSULT_FACTOR = 2.5
#: Low chain-care quality: a practice planted below this quality misses the most controls, so
#: its lab measurements (LOW_QUALITY_MEASURES: mirror measure -> the concepts it counts) are
#: fewer than chance allows and are listed in the mirror truth as ``lower``. The register
#: plants one weakest practice at 0.1 and draws the others within 0.3..0.95, so this is the
#: weakest one only; QUALITY_TYPICAL (the mean of the Beta(4, 3) quality draw) is what its
#: planted factor compares with.
LOW_QUALITY = 0.2
QUALITY_TYPICAL = 4 / 7
LOW_QUALITY_MEASURES = {"diagnostiek_egfr": ("egfr",), "diagnostiek_hba1c": ("hba1c",),
                        "diagnostiek_lipiden": ("ldl", "total_cholesterol")}

#: Visits per year for frequently measured concepts (weak practice .. excellent practice);
#: other concepts follow their control interval (a bit more often than required).
VISITS_PER_YEAR = {"hba1c": (2.6, 3.4), "sbp": (2.6, 3.4), "acq": (1.2, 1.8), "act": (1.2, 1.8)}
#: Concepts recorded together at one visit (first always, others mostly).
TOGETHER = ("weight", "bmi")
#: Companion recordings that are not controls themselves: (primary, companion, share).
COMPANIONS = (("sbp", "dbp", 0.97), ("ldl", "total_cholesterol", 0.8))
#: Coded answers and their shares.
CODED_WEIGHTS = {
    "smoking": {"ja": .15, "nee": .55, "gestopt": .30},
    "foot": {"0": .62, "1": .22, "2": .11, "3": .05},
    "fundus": {"normaal": .86, "afwijkend": .14},
}
#: Concepts that get a planted typo (value x10, e.g. HbA1c 530 for 53): on patients of a programme
#: that controls the first one (DM2), whose control stays met by another, plausible, in-window value.
IMPLAUSIBLE_CONCEPTS = ("hba1c", "sbp")

#: Finding kinds the generator plants: (fewest, most) per practice of ~3,500 patients; a
#: weak practice (quality 0) gets the most, an excellent one (quality 1) the fewest.
PLANT_RANGE = {
    "enrolled_deceased": (1, 6),
    "enrolled_deregistered": (1, 10),
    "enrolled_under_18": (1, 4),
    "enrolled_dm2_and_cvrm": (1, 8),
    "excluded_by_reason": (1, 5),
    "enrolment_ended_with_diagnosis": (2, 12),
    "diagnosis_not_enrolled": (3, 25),
    "enrolled_without_diagnosis": (2, 15),
    "main_practitioner_specialist": (1, 8),
    "main_practitioner_unknown": (2, 20),
    "no_chain_contact": (2, 15),
    "measurement_missing": (0, 0),  # per control instead: MISSED_* below
    "measurement_overdue": (0, 0),
    "implausible_value": (1, 4),
}
GROUND_TRUTH_KINDS = tuple(PLANT_RANGE)
#: Missing and overdue controls: the share of enrolled patients (one programme) not measured in
#: the window, from an excellent practice (quality 1) to a weak one (quality 0), times a factor
#: for the controls practices forget most (foot, fundus, ACR, spirometry) or least (HbA1c, blood
#: pressure); a share MISSING_SHARE of them was never measured, the rest before the window.
MISSED_LOW, MISSED_HIGH = 0.02, 0.17
MISSED_FACTOR = {"hba1c": 0.6, "sbp": 0.6, "foot": 1.35, "fundus": 1.35, "acr": 1.3, "fev1_pct": 1.3,
                 "smoking": 1.2, "bmi": 1.1, "weight": 1.1}
MISSING_SHARE = 0.4

#: Insurers (UZOVI) and national market shares [E]; regions tilt them (the first region has VGZ,
#: the insurer with the regioprestatie in parameters/contracts.yaml, as its largest). Which
#: insurer a code belongs to, the tariffs and the invoice's chain numbers: contracts.yaml.
INSURERS = (("3311", .28), ("7029", .24), ("3343", .21), ("8401", .17), ("3313", .10))

HIS_SYSTEMS = (("Medicom", .45), ("CGM Huisarts", .25), ("Promedico-VDF", .15), ("MicroHIS", .15))
BOM_HIS = "MicroHIS"
REGIONS = (
    ("Regio Noord", ("Assen", "Hoogeveen", "Meppel", "Emmen"), (9400, 9499)),
    ("Regio Zuid", ("Weert", "Roermond", "Venlo", "Helmond"), (5900, 6099)),
    ("Regio Oost", ("Deventer", "Zutphen", "Apeldoorn", "Rijssen"), (7200, 7499)),
    ("Regio West", ("Leiden", "Katwijk", "Alphen", "Gouda"), (2200, 2399)),
    ("Regio Midden", ("Amersfoort", "Veenendaal", "Zeist", "Soest"), (3700, 3899)),
    ("Regio Kust", ("Den Helder", "Alkmaar", "Schagen", "Heiloo"), (1700, 1899)),
    ("Regio Rivierenland", ("Tiel", "Culemborg", "Geldermalsen", "Zaltbommel"), (4000, 4199)),
    ("Regio Achterhoek", ("Doetinchem", "Winterswijk", "Lochem", "Borculo"), (7000, 7199)),
)
PRACTICE_NAMES = ("De Linde", "De Eik", "De Esch", "De Kastanje", "Het Anker", "De Brink", "Het Kompas",
                  "De Wilgen", "De Vijverhof", "Oosterpoort", "De Akker", "De Molen", "Het Zand", "De Hofstede",
                  "De Beuk", "De Meander", "Lindeplein", "De Vaart", "Het Spoor", "De Poort", "De Berk",
                  "Het Hof", "De Es", "Het Veld", "De Kade", "De Gaard", "De Horst", "De Burcht",
                  "De Bongerd", "Kerkplein", "De Waard", "Het Baken")
PRACTICE_PREFIXES = (("Huisartsenpraktijk", .55), ("Gezondheidscentrum", .2), ("Huisartsen", .15),
                     ("Medisch Centrum", .1))

TABLE_COLUMNS = {
    "patients": ("patient_id", "birth_year", "sex", "postcode4", "insurer_uzovi", "registered_from",
                 "registered_until", "deceased_on"),
    "episodes": ("patient_id", "icpc", "start_date", "end_date"),
    "contacts": ("contact_id", "patient_id", "date", "kind", "role", "icpc"),
    "measurements": ("patient_id", "date", "nhg_code", "value", "unit"),
    "prescriptions": ("patient_id", "date", "atc", "duration_days"),
    "referrals": ("patient_id", "date", "specialism", "icpc"),
    "enrolments": ("patient_id", "programme", "start_date", "end_date", "main_practitioner"),
}
PRACTICE_COLUMNS = ("practice_agb", "name", "region", "hagro", "his_system", "fte_gp", "extraction_date")
PAYMENT_COLUMNS = ("practice_agb", "programme", "quarter", "insurer_uzovi", "patients_declared",
                   "patients_awarded", "amount_eur", "paid_on", "invoice_number")
#: Beside the ground truth: the planted care-use profiles (helpers.demo.plant).
MIRROR_TRUTH_COLUMNS = ("practice_agb", "measure", "direction", "planted_factor")
#: Beside the ground truth: the money of every practice x programme x quarter x insurer
#: (helpers.demo.payments), and per practice and quarter the regioprestatie (programme empty).
MONEY_TRUTH_COLUMNS = ("practice_agb", "programme", "quarter", "insurer_uzovi", "declared", "awarded", "rejected",
                       "rounds", "paid_eur", "followup_eur", "list_size", "max_patients", "over_cap", "exposure_eur",
                       "reward_pct", "reward_eur", "regioprestatie_eur")
#: veelgebruikers_plan.csv (contract version 2).
PLAN_COLUMNS = ("patient_id", "selected_on", "profile", "ended_on")
#: Plan patients per practice (the arrangement asks five); one practice has fewer, one none.
PLAN_SIZE, PLAN_SIZE_FEW = 5, 3
GROUND_TRUTH_COLUMNS = ("practice_agb", "patient_id", "programme", "kind", "control", "quarter")
#: Written into every generated dataset: only a folder holding it may be replaced without force.
MARKER = ".spiegel-demo"
#: The oldest patient is this old at the start of the history (the last band of NL_PYRAMID).
MAX_AGE = 5 * len(NL_PYRAMID)
#: Payment rounds fall up to a year after the extraction, and quarters end in 2100.
LATEST_EXTRACTION = date(2099, 12, 31)
MAIN_PRACTITIONER = ("huisarts", "specialist", None)  # 0, 1, 2 (= empty: unknown)
