"""The demo care group: a seeded, deterministic, realistic Dutch zorggroep (``spiegel demo-data``).

``generate(out)`` writes a dataset that follows the data contract (spec/his-extract.md):
``practices.csv``, ``extracts/<agb>/*.csv`` and ``payments.csv``, in the dialect real Dutch
HIS exports use (``;`` separated, decimal comma, ``YYYY-MM-DD``; the one MicroHIS practice
writes a UTF-8 BOM and ``DD-MM-YYYY`` dates, to exercise the loader). Beside the dataset it
writes ``<out>.ground_truth.csv``: every registration finding that docs/registration-rules.md
must produce for the reference quarter (the latest complete quarter before the extraction
date), plus the planted implausible values and the patients excluded by a recorded reason.
Only tests read that file.

How the ground truth stays exact
--------------------------------
The population is generated *naturally clean* for the reference quarter: every adult in the
population with an active inclusion diagnosis (and no excluding one) is enrolled, with the GP
as main practitioner and an enrolment that starts after the diagnosis; nobody is in DM2 and
CVRM at once; enrolments end on the day a patient dies or leaves; every control of every
enrolled patient has its last plausible measurement inside its window (the measurement
series of a patient is built around an *anchor* date drawn inside that window), and every
enrolled patient sees the POH-S in the twelve months before the quarter's last day (same
trick). Defects are then planted on patients picked once (a patient carries one planted
kind), by changing exactly the row that makes the rule fire: an open enrolment of someone
who died, a removed enrolment, an ended one, a near-miss ICPC code, an anchor moved before
the window, and so on. The rules and code lists come from parameters/programmes.yaml and
parameters/codes.yaml (through helpers.programmes), never from this file.

Everything is vectorised per practice (numpy); the per-practice random stream is derived
from (seed, practice number), so a practice does not change when another one does.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from . import config
from .config import PARAMETERS_DIR
from .errors import ConfigError, ParameterError, SpiegelError
from .programmes import Rules, load_programmes
from .quarter import Quarter, add_months
from .runner import write_atomic

# =======================================================================================
# Domain constants (demographics, epidemiology, care patterns). Codes and rules are not
# here: they come from parameters/. [E] = estimate, see shared/reference/domain-notes.md.
# =======================================================================================

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
REFERRAL_RATE = 0.24  # per patient per year

#: Visits per year for frequently measured concepts (weak practice .. excellent practice);
#: other concepts follow their control interval (a bit more often than required).
VISITS_PER_YEAR = {"hba1c": (2.0, 4.0), "sbp": (2.0, 4.0), "acq": (1.0, 2.0), "act": (1.0, 2.0)}
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
    "measurement_missing": (3, 30),
    "measurement_overdue": (4, 35),
    "implausible_value": (1, 4),
}
GROUND_TRUTH_KINDS = tuple(PLANT_RANGE)

#: Chain numbers in invoice numbers ``<year><chain nr>-<seq>-<seq>``: DM2=1, COPD=2, CVRM=3,
#: ASTMA=4 (as the care group's insurer contracts number them).
CHAIN_NUMBERS = {"DM2": 1, "COPD": 2, "CVRM": 3, "ASTMA": 4}
#: Insurers (UZOVI) and national market shares [E]; regions tilt them.
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
GROUND_TRUTH_COLUMNS = ("practice_agb", "patient_id", "programme", "kind", "control", "quarter")
#: Written into every generated dataset: only a folder holding it may be replaced without force.
MARKER = ".spiegel-demo"
#: The oldest patient is this old at the start of the history (the last band of NL_PYRAMID).
MAX_AGE = 5 * len(NL_PYRAMID)
#: Payment rounds fall up to a year after the extraction, and quarters end in 2100.
LATEST_EXTRACTION = date(2099, 12, 31)
MAIN_PRACTITIONER = ("huisarts", "specialist", None)  # 0, 1, 2 (= empty: unknown)


# =======================================================================================
# Summary
# =======================================================================================

@dataclass
class DemoSummary:
    """What :func:`generate` wrote."""

    out: Path
    ground_truth: Path
    practices: int
    regions: int
    patients: int
    registered: int
    rows: dict[str, int]
    reference_quarter: str
    planted: dict[str, int]
    seconds: float
    seed: int
    extraction_date: date

    def describe(self) -> str:
        rows = ", ".join(f"{k} {v}" for k, v in self.rows.items())
        defects = {k: v for k, v in self.planted.items() if k not in ("excluded_by_reason", "implausible_value")}
        planted = ", ".join(f"{k} {v}" for k, v in defects.items())
        return (
            f"Demo care group written to {self.out}: {self.practices} practices in {self.regions} regions, "
            f"{self.patients} patients ({self.registered} registered on {self.extraction_date.isoformat()}). "
            f"Rows: {rows}. Reference quarter {self.reference_quarter}: {sum(defects.values())} planted findings "
            f"({planted}), plus {self.planted.get('implausible_value', 0)} implausible values and "
            f"{self.planted.get('excluded_by_reason', 0)} patients excluded by a recorded reason; ground truth in "
            f"{self.ground_truth}. Seed {self.seed}, {self.seconds:.1f} s."
        )


# =======================================================================================
# Small vectorised helpers
# =======================================================================================

def _day(d: date) -> int:
    return (d - EPOCH).days


def _years_of(days: np.ndarray) -> np.ndarray:
    return np.asarray(days, dtype="datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970


def _jan1(years) -> np.ndarray:
    return (np.asarray(years, dtype=np.int64) - 1970).astype("datetime64[Y]").astype("datetime64[D]").astype(np.int64)


def _expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Owner index and position within the owner for ``counts[i]`` items per owner."""
    counts = np.asarray(counts, dtype=np.int64)
    owner = np.repeat(np.arange(counts.size), counts)
    starts = np.cumsum(counts) - counts
    return owner, np.arange(owner.size) - starts[owner]


def _weekday(d: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Move Saturdays to Friday and Sundays to Monday, unless that leaves [lo, hi]."""
    wd = (d + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    nd = d + np.where(wd == 5, -1, np.where(wd == 6, 1, 0))
    return np.where((nd >= lo) & (nd <= hi), nd, d)


def _uniform_day(rng, lo, hi) -> np.ndarray:
    """A day uniformly in [lo, hi] (inclusive, element-wise; hi >= lo)."""
    lo = np.asarray(lo, dtype=np.int64)
    hi = np.asarray(hi, dtype=np.int64)
    return lo + np.floor(rng.random(lo.shape) * (hi - lo + 1)).astype(np.int64)


def _choice(rng, options, weights, n) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return np.asarray(options)[rng.choice(len(options), size=n, p=w / w.sum())]


def _band5(age) -> np.ndarray:
    return np.clip(np.floor(np.asarray(age, dtype=float) / 5), 0, N_BANDS - 1).astype(np.int64)


def _nivel_band(age) -> np.ndarray:
    return np.searchsorted(NIVEL_AGE_EDGES, np.asarray(age), side="right")


class _Text:
    """Vectorised text for the CSV writer: dates (ISO or Dutch), numbers with a decimal comma."""

    def __init__(self):
        self.lo = _day(date(1900, 1, 1))
        hi = _day(date(2100, 12, 31))
        iso = np.datetime_as_string(np.arange(self.lo, hi + 1).astype("datetime64[D]")).tolist()
        self.iso = pa.array(iso, pa.string())
        self.dmy = pa.array([f"{s[8:10]}-{s[5:7]}-{s[0:4]}" for s in iso], pa.string())
        self.hi = hi

    def dates(self, d: np.ndarray, dmy: bool = False) -> pa.Array:
        d = np.asarray(d, dtype=np.int64)
        missing = d >= INF
        if ((d < self.lo) | ((d > self.hi) & ~missing)).any():
            raise AssertionError("demo generator made a date outside 1900..2100")
        idx = pa.array(np.where(missing, 0, d - self.lo), mask=missing)
        return (self.dmy if dmy else self.iso).take(idx)

    @staticmethod
    def ints(v: np.ndarray) -> pa.Array:
        return pa.array(np.asarray(v, dtype=np.int64)).cast(pa.string())

    @staticmethod
    def decimal(v: np.ndarray, decimals: int) -> pa.Array:
        """Non-negative numbers with a decimal comma (``7,4``); 0 decimals = whole numbers."""
        scaled = np.rint(np.asarray(v, dtype=float) * 10**decimals).astype(np.int64)
        if (scaled < 0).any():
            raise AssertionError("demo generator made a negative number")
        if decimals == 0:
            return _Text.ints(scaled)
        whole, frac = np.divmod(scaled, 10**decimals)
        fracs = pa.array([str(i).zfill(decimals) for i in range(10**decimals)], pa.string())
        return pc.binary_join_element_wise(_Text.ints(whole), fracs.take(pa.array(frac)), ",")



def _write_csv(path: Path, columns: dict[str, pa.Array], bom: bool = False) -> int:
    """Write ``;``-separated UTF-8 (header unquoted, no quoting: values never hold ; or ")."""
    table = pa.table(columns)
    with open(path, "wb") as fh:
        if bom:
            fh.write(b"\xef\xbb\xbf")
        fh.write((";".join(columns) + "\n").encode("utf-8"))
        pacsv.write_csv(table, fh, pacsv.WriteOptions(include_header=False, delimiter=";", quoting_style="none"))
    return table.num_rows


# =======================================================================================
# Dataset-level plan
# =======================================================================================

@dataclass
class _Plan:
    rules: Rules
    seed: int
    extraction: date
    years: int
    quarter: Quarter
    F: int
    L: int
    H0: int
    programmes: list  # Programme objects in programmes.yaml order
    keys: list  # distinct concept sets of controls (sorted tuples), first-seen order
    key_interval: dict  # key -> shortest interval (months) of a control with that key
    key_interval_max: dict
    key_ws: dict  # key -> window start (day) of its shortest interval
    chain_ws: int
    chain_role: str
    concept_in_control: set
    national_mean: dict = field(default_factory=dict)
    text: _Text = field(default_factory=_Text)

    def ws(self, months: int) -> int:
        return _day(self.quarter.months_back_start(months))


def _make_plan(rules: Rules, seed: int, extraction: date, years: int) -> _Plan:
    q = Quarter.latest_complete(extraction)
    programmes = list(rules.programmes.values())
    keys, key_interval, key_interval_max = [], {}, {}
    for p in programmes:
        for c in p.controls:
            k = tuple(sorted(c.concepts))
            if k not in key_interval:
                keys.append(k)
            key_interval[k] = min(key_interval.get(k, 10**6), c.interval_months)
            key_interval_max[k] = max(key_interval_max.get(k, 0), c.interval_months)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            if set(a) & set(b):
                raise ConfigError(
                    f"programmes.yaml: controls with concepts {list(a)} and {list(b)} overlap; the demo generator "
                    "needs the concept lists of controls to be either equal or disjoint")
    roles = [r for r in rules.chain_contact_roles if r in ROLES]
    if not roles:
        raise ConfigError("programmes.yaml: chain_contact_roles names no contract role the demo can write")
    try:
        h0 = extraction.replace(year=extraction.year - years)
    except ValueError:  # 29 February
        h0 = extraction.replace(year=extraction.year - years, day=28)
    plan = _Plan(
        rules=rules, seed=seed, extraction=extraction, years=years, quarter=q,
        F=_day(q.first_day), L=_day(q.last_day), H0=_day(h0), programmes=programmes, keys=keys,
        key_interval=key_interval, key_interval_max=key_interval_max,
        key_ws={k: _day(q.months_back_start(m)) for k, m in key_interval.items()},
        chain_ws=_day(q.months_back_start(rules.chain_contact_months)), chain_role=roles[0],
        concept_in_control={c for k in keys for c in k},
    )
    w = NL_PYRAMID / NL_PYRAMID.sum()
    for g in rules.codes.icpc:
        model = PREVALENCE.get(g)
        if model is not None or any(g in p.diagnosis_groups for p in programmes):
            shape = np.asarray((model or DEFAULT_PREVALENCE)[1], dtype=float)
            plan.national_mean[g] = float((w * shape).sum())
    return plan


@dataclass
class _PracticeInfo:
    seq: int  # 1-based number in the care group
    agb: str
    name: str
    region: str
    region_idx: int
    hagro: str
    his: str
    ext: int  # extraction day
    quality: float  # 0 = weak .. 1 = excellent
    target: int  # list size aimed at
    tilt: float  # age structure: < 0 younger, > 0 older than the country
    bom: bool
    pc4_core: np.ndarray
    pc4_range: tuple
    insurer_shares: np.ndarray


def _practice_register(plan: _Plan, practices: int, regions: int) -> list[_PracticeInfo]:
    rng = np.random.default_rng([plan.seed, 1])
    regions = max(1, min(regions, practices))
    region_defs = []
    for r in range(regions):
        if r < len(REGIONS):
            region_defs.append(REGIONS[r])
        else:
            lo = 1000 + (r * 137) % 8800
            region_defs.append((f"Regio {r + 1}", (f"Kern {r + 1}A", f"Kern {r + 1}B"), (lo, lo + 99)))
    agb_nums = rng.choice(10**6, size=practices, replace=False)
    region_of = (np.arange(practices) * regions) // practices
    quality = np.clip(rng.beta(4, 3, practices), 0.3, 0.85)
    if practices >= 2:
        best, worst = rng.choice(practices, size=2, replace=False)
        quality[best], quality[worst] = 0.95, 0.1
    sizes = np.clip(np.rint(np.exp(rng.normal(np.log(3300), 0.33, practices))), 1700, 5600).astype(int)
    tilts = rng.normal(0, 0.3, practices)
    his = _choice(rng, [h for h, _ in HIS_SYSTEMS], [w for _, w in HIS_SYSTEMS], practices)
    if BOM_HIS not in his:
        his[min(1, practices - 1)] = BOM_HIS
    bom_idx = int(np.flatnonzero(his == BOM_HIS)[0])
    # names: a prefix and a name, unique; towns added when the names run out
    name_order = rng.permutation(len(PRACTICE_NAMES))
    prefixes = _choice(rng, [p for p, _ in PRACTICE_PREFIXES], [w for _, w in PRACTICE_PREFIXES], practices)
    seen, names = set(), []
    for i in range(practices):
        base = PRACTICE_NAMES[name_order[i % len(PRACTICE_NAMES)]]
        towns = region_defs[region_of[i]][1]
        name = f"{prefixes[i]} {base}"
        if name in seen or i >= len(PRACTICE_NAMES):
            name = f"{prefixes[i]} {base} {towns[(i // len(PRACTICE_NAMES)) % len(towns)]}"
        k, unique = 2, name
        while unique in seen:
            unique, k = f"{name} {k}", k + 1
        seen.add(unique)
        names.append(unique)
    # extraction: the practices took theirs over a few days, all after the reference quarter
    L = plan.L
    max_back = max(0, min(3, _day(plan.extraction) - (L + 1)))
    backs = rng.integers(0, max_back + 1, practices)
    base_shares = np.array([s for _, s in INSURERS])
    out = []
    for i in range(practices):
        r = int(region_of[i])
        rname, towns, (lo, hi) = region_defs[r]
        members = np.flatnonzero(region_of == r)
        k = int(np.searchsorted(members, i)) // 4
        hagro = f"Hagro {towns[k % len(towns)]}" + (f" {k // len(towns) + 1}" if k >= len(towns) else "")
        rr = np.random.default_rng([plan.seed, 2, r])
        shares = base_shares * np.exp(rr.normal(0, 0.35, len(base_shares)))
        out.append(_PracticeInfo(
            seq=i + 1, agb=f"01{int(agb_nums[i]):06d}", name=names[i], region=rname, region_idx=r, hagro=hagro,
            his=str(his[i]), ext=_day(plan.extraction) - int(backs[i]), quality=float(quality[i]),
            target=int(sizes[i]), tilt=float(tilts[i]), bom=(i == bom_idx),
            pc4_core=rng.integers(lo, hi + 1, 4), pc4_range=(lo, hi), insurer_shares=shares / shares.sum(),
        ))
    return out


# =======================================================================================
# One practice
# =======================================================================================

class _Practice:
    """Generates one practice's extraction, its payments and its ground truth."""

    def __init__(self, plan: _Plan, info: _PracticeInfo):
        self.plan, self.info = plan, info
        self.rng = np.random.default_rng([plan.seed, 3, info.seq])
        self.ext = info.ext
        self.q = info.quality
        self.truth: list[tuple] = []  # (patient index, programme, kind, control)
        self.tables: dict[str, dict[str, pa.Array]] = {}

    # ------------------------------------------------------------------ patients
    def patients(self) -> None:
        rng, plan, info = self.rng, self.plan, self.info
        H0, ext = plan.H0, self.ext
        span = ext - H0
        yrs = span / 365.25
        T = info.target
        w = NL_PYRAMID * np.exp(info.tilt * (BAND_MID - 42) / 40)

        def ages(weights, n):
            band = rng.choice(N_BANDS, size=n, p=weights / weights.sum())
            return band * 5 + rng.random(n) * 5

        n_base, n_move, n_birth = T, rng.poisson(T * MOVE_IN_RATE * yrs), rng.poisson(T * BIRTH_RATE * yrs)
        bd_b = H0 - np.rint(ages(w, n_base) * 365.25).astype(np.int64) - 1
        stay = np.minimum(rng.exponential(11.0, n_base), rng.uniform(30, 42, n_base))  # years on the list
        reg_b = H0 - 1 - np.rint(stay * 365.25).astype(np.int64)
        reg_b = np.maximum(reg_b, bd_b + rng.integers(5, 45, n_base))
        reg_m = H0 + rng.integers(0, span + 1, n_move)
        bd_m = reg_m - np.rint(ages(w * MOVER_PROP, n_move) * 365.25).astype(np.int64) - 1
        bd_n = H0 + rng.integers(0, max(span - 20, 1), n_birth)
        reg_n = np.minimum(bd_n + rng.integers(5, 45, n_birth), ext)
        bd = np.concatenate([bd_b, bd_m, bd_n])
        reg = np.concatenate([reg_b, reg_m, reg_n])
        order = np.argsort(reg, kind="stable")  # HIS numbers grow with the registration date
        self.bd, self.reg = bd[order], reg[order]
        n = self.n = bd.size
        self.by = _years_of(self.bd)
        ids = rng.integers(100000, 300000) + np.cumsum(rng.integers(1, 40, n))
        self.pid = ids.astype(str)
        age_x = (ext - self.bd) / 365.25
        p_male = np.where(age_x < 65, .505, np.where(age_x < 80, .48, np.where(age_x < 90, .40, .30)))
        u = rng.random(n)
        self.sex = np.where(u < 0.001, "O", np.where(rng.random(n) < p_male, "M", "V"))
        self.ins = _choice(rng, [c for c, _ in INSURERS], info.insurer_shares, n)
        lo, hi = info.pc4_range
        self.pc4 = np.where(rng.random(n) < 0.85, info.pc4_core[rng.integers(0, len(info.pc4_core), n)],
                            rng.integers(lo, hi + 1, n))
        self.age_x = age_x

    # ------------------------------------------------------------------ diagnoses
    def diagnoses(self) -> None:
        """Which patients have which ICPC group (before dates: mortality depends on it)."""
        rng, plan, n = self.rng, self.plan, self.n
        band = _band5(self.age_x)
        self.has, self.code, self.gstart, self.gend = {}, {}, {}, {}
        order = sorted(plan.national_mean, key=lambda g: (g != "dm2", g))
        for g in order:
            target, shape, *_ = PREVALENCE.get(g, DEFAULT_PREVALENCE)
            p = target * np.asarray(shape, dtype=float)[band] / plan.national_mean[g]
            if g in DM2_LINKED and "dm2" in self.has:
                p = np.where(self.has["dm2"], p * DM2_LINKED[g], p)
            self.has[g] = rng.random(n) < np.minimum(p, 0.9)
        if "copd" in self.has and "astma" in self.has:
            self.has["astma"] &= ~self.has["copd"]  # COPD patients are followed in the COPD chain

    def leaving(self) -> None:
        rng, plan = self.rng, self.plan
        t0 = np.maximum(self.reg, plan.H0)
        age0 = (t0 - self.bd) / 365.25
        b = _band5(age0)
        mult = np.ones(self.n)
        for g, has in self.has.items():
            mult = np.where(has, mult * PREVALENCE.get(g, DEFAULT_PREVALENCE)[4], mult)
        lam_d = -np.log1p(-MORTALITY_Q[b]) * np.minimum(mult, 5)
        mean_prop = (NL_PYRAMID * MOVER_PROP).sum() / NL_PYRAMID.sum()
        lam_m = MOVE_OUT_RATE * MOVER_PROP[b] / mean_prop
        t_death = t0 + rng.exponential(1.0, self.n) / lam_d * 365.25
        t_move = t0 + rng.exponential(1.0, self.n) / lam_m * 365.25
        leave = np.rint(np.minimum(t_death, t_move)).astype(np.int64)
        gone = leave <= self.ext
        self.dead = gone & (t_death <= t_move)
        leave = np.where(gone, leave, INF)
        leave = np.where(leave == plan.F, plan.F + 1, leave)  # nobody leaves on the population day itself
        self.leave = leave
        F = plan.F
        self.in_pop = (self.reg <= F) & (leave > F)
        self.deceased = self.dead & (leave <= F)
        self.dereg = ~self.dead & (leave < F)
        self.age_F = plan.quarter.first_day.year - self.by
        self.adult = self.age_F >= plan.rules.minimum_age
        self.t18 = _jan1(self.by + plan.rules.minimum_age)

    def diagnosis_dates(self) -> None:
        rng, plan, n = self.rng, self.plan, self.n
        anchor = np.minimum(self.ext, self.leave)
        for g in list(self.has):
            _, _, dur_mean, onset, _ = PREVALENCE.get(g, DEFAULT_PREVALENCE)
            start = anchor - np.rint(rng.exponential(dur_mean, n) * 365.25).astype(np.int64)
            min_start = self.bd + int(onset * 365.25)
            early = start < min_start
            start = np.where(early, _uniform_day(rng, np.minimum(min_start, anchor), anchor), start)
            start = np.minimum(start, anchor - 1)
            self.has[g] &= min_start <= anchor - 1
            end = np.full(n, INF, dtype=np.int64)
            if g in ENDABLE:
                ended = self.has[g] & (rng.random(n) < ENDABLE[g]) & (anchor - start > 400)
                e = start + 200 + np.floor(rng.random(n) * np.maximum(anchor - start - 200, 1)).astype(np.int64)
                end = np.where(ended, np.minimum(e, self.ext), INF)
            self.gstart[g], self.gend[g] = start, end
            include = plan.rules.codes.icpc[g].include
            codes = np.asarray(include)[rng.integers(0, len(include), n)].astype(object)
            for base, subs in SUBCODES.items():
                sub = (codes == base) & (rng.random(n) < 0.35)
                if sub.any():
                    alt = np.asarray(subs)[rng.integers(0, len(subs), n)]
                    ok = np.array([plan.rules.codes.icpc[g].matches(s) for s in subs]).all()
                    if ok:
                        codes = np.where(sub, alt, codes).astype(object)
            self.code[g] = codes

    # ------------------------------------------------------------------ group helpers
    def _present(self, groups) -> np.ndarray:
        out = np.zeros(self.n, bool)
        for g in groups:
            if g in self.has:
                out |= self.has[g]
        return out

    def _active(self, groups, day: int) -> np.ndarray:
        out = np.zeros(self.n, bool)
        for g in groups:
            if g in self.has:
                out |= self.has[g] & (self.gstart[g] <= day) & (self.gend[g] >= day)
        return out

    def _start(self, groups) -> np.ndarray:
        out = np.full(self.n, INF, dtype=np.int64)
        for g in groups:
            if g in self.has:
                out = np.where(self.has[g], np.minimum(out, self.gstart[g]), out)
        return out

    def _end(self, groups) -> np.ndarray:
        out = np.full(self.n, -1, dtype=np.int64)
        for g in groups:
            if g in self.has:
                out = np.where(self.has[g], np.maximum(out, self.gend[g]), out)
        return out

    # ------------------------------------------------------------------ enrolments
    def natural_enrolments(self) -> None:
        rng, plan, n, F, q = self.rng, self.plan, self.n, self.plan.F, self.q
        chain0 = _day(date(2008, 1, 1)) + int(rng.integers(0, 1500))
        self.main, self.extra, self.basis = {}, {}, {}
        # programmes that others exclude (DM2 for CVRM) first: their start ends the other
        excluded_by = {p.id: [o.id for o in plan.programmes if set(o.inclusion) & set(p.excluded_if)]
                       for p in plan.programmes}
        order = sorted(plan.programmes, key=lambda p: bool(p.excluded_if))
        for p in order:
            incl, supp = self._present(p.inclusion), self._present(p.supporting)
            share = 0.15 + 0.2 * q
            supp_only = supp & ~incl & (rng.random(n) < share)
            also = supp & incl & (rng.random(n) < share)
            cand = incl | supp_only
            i_start, s_start = self._start(p.inclusion), self._start(p.supporting)
            basis = np.where(incl, i_start, s_start)
            basis = np.where(also, np.minimum(i_start, s_start), basis)
            b_end = np.where(incl, self._end(p.inclusion), self._end(p.supporting))
            b_end = np.where(also, np.maximum(self._end(p.inclusion), self._end(p.supporting)), b_end)
            lo_nat = np.maximum.reduce([basis, self.reg, self.t18])
            lo = np.maximum(lo_nat, chain0)
            s = lo + np.rint(rng.exponential(20 + 70 * (1 - q), n)).astype(np.int64)
            elig = self.in_pop & self.adult & self._active(p.inclusion, F) & ~self._active(p.excluded_if, F)
            fix = elig & (s > F)
            if (lo_nat[fix] > F).any():
                raise AssertionError("eligible patient without a possible enrolment start")
            s = np.where(fix, _uniform_day(rng, np.minimum(lo_nat, F), F), s)
            ex_start = self._start(p.excluded_if)
            cand &= ~(ex_start <= s)
            cut = np.where(ex_start < INF, ex_start + rng.integers(14, 120, n), INF)
            for o in excluded_by[p.id]:
                om = self.main[o]
                cut = np.where(om["has"], np.minimum(cut, om["s"] - 1), cut)
            cut = np.where(ex_start <= F, np.minimum(cut, F - 1), cut)
            e = np.minimum.reduce([self.leave, b_end, cut])
            e = np.where(e > self.ext, INF, e)  # ends after the extraction are not known yet
            cand &= (e >= s) & (s <= self.ext)
            if (elig & ~(cand & (s <= F) & (e >= F))).any():
                raise AssertionError(f"{p.id}: an eligible patient would not be enrolled")
            mp = np.where(cand & (e < F) & (rng.random(n) < 0.015), 1, 0).astype(np.int8)
            self.main[p.id] = {"has": cand, "s": s, "e": e, "mp": mp}
            self.basis[p.id] = (basis, lo_nat)
            # some patients were enrolled before (e.g. under the specialist) and came back
            prior = cand & (s <= F) & (e >= F) & self.in_pop & (rng.random(n) < 0.03)
            s0 = s - rng.integers(400, 1500, n)
            e0 = s - rng.integers(30, 300, n)
            prior &= s0 >= lo_nat
            self.extra[p.id] = {"pid": np.flatnonzero(prior), "s": s0[prior], "e": e0[prior],
                                "mp": np.where(rng.random(int(prior.sum())) < 0.25, 1, 0).astype(np.int8)}

    def _enrolled_at(self, day: int, programme: str) -> np.ndarray:
        m = self.main[programme]
        out = m["has"] & (m["s"] <= day) & (m["e"] >= day)
        x = self.extra[programme]
        act = (x["s"] <= day) & (x["e"] >= day)
        out[x["pid"][act]] = True
        return out

    def _drop_extra(self, programme: str, pids: np.ndarray) -> None:
        x = self.extra[programme]
        keep = ~np.isin(x["pid"], pids)
        self.extra[programme] = {k: v[keep] for k, v in x.items()}

    # ------------------------------------------------------------------ planting
    def _count(self, kind: str) -> int:
        lo, hi = PLANT_RANGE[kind]
        x = lo + (hi - lo) * (1 - self.q) ** 1.3 * (self.info.target / 3500) * self.rng.uniform(0.8, 1.2)
        return max(1, int(round(x)))

    def _pick(self, masks: dict[str, np.ndarray], kind: str) -> tuple[np.ndarray, np.ndarray]:
        """Pick (patient, programme) pairs among candidates, one per patient, marking them used."""
        want = self._count(kind)
        names = [p for p in masks]
        pid = np.concatenate([np.flatnonzero(masks[p] & ~self.used) for p in names] + [np.zeros(0, np.int64)])
        prog = np.concatenate([np.full(int((masks[p] & ~self.used).sum()), i) for i, p in enumerate(names)]
                              + [np.zeros(0, np.int64)]).astype(np.int64)
        if pid.size == 0:
            return pid, prog
        perm = self.rng.permutation(pid.size)
        pid, prog = pid[perm], prog[perm]
        _, first = np.unique(pid, return_index=True)
        take = np.sort(first)[:want]
        self.used[pid[take]] = True
        return pid[take], np.asarray(names, dtype=object)[prog[take]]

    def _truth(self, pids, programmes, kind: str, controls=None) -> None:
        progs = np.broadcast_to(np.asarray(programmes, dtype=object), np.shape(pids))
        ctrls = [""] * len(pids) if controls is None else controls
        self.truth += [(int(i), str(p), kind, str(c)) for i, p, c in zip(pids, progs, ctrls)]

    def plant(self) -> None:
        rng, plan, n, F = self.rng, self.plan, self.n, self.plan.F
        self.used = np.zeros(n, bool)
        progs = {p.id: p for p in plan.programmes}
        enrF = {p: self._enrolled_at(F, p) for p in progs}
        elig = {p.id: self.in_pop & self.adult & self._active(p.inclusion, F) & ~self._active(p.excluded_if, F)
                for p in plan.programmes}
        single = {p: np.ones(n, bool) for p in progs}
        for p in progs:
            single[p][self.extra[p]["pid"]] = False

        # enrolled but died / moved away: the enrolment was never closed
        for kind, state in (("enrolled_deceased", self.deceased), ("enrolled_deregistered", self.dereg)):
            at_leave = {p: m["has"] & (m["e"] == self.leave) & (m["s"] <= self.leave) for p, m in self.main.items()}
            any_row = np.zeros(n, bool)
            for m in at_leave.values():
                any_row |= m
            picked, _ = self._pick({"*": state & any_row}, kind)
            for p in progs:
                sel = picked[at_leave[p][picked]]
                self.main[p]["e"][sel] = INF
                self._truth(sel, p, kind)

        # a minor in a chain (astma in practice)
        masks = {p.id: self.in_pop & ~self.adult & (self.age_F >= 12) & self._active(p.inclusion, F)
                 & ~self._active(p.excluded_if, F) for p in plan.programmes}
        pids, pp = self._pick(masks, "enrolled_under_18")
        for p in progs:
            sel = pids[pp == p]
            m = self.main[p]
            lo = np.maximum(self._start(progs[p].inclusion)[sel], self.reg[sel])
            m["s"][sel] = np.maximum(lo, F - rng.integers(30, 700, sel.size))
            m["e"][sel] = self.leave[sel]
            m["mp"][sel] = 0
            m["has"][sel] = True
            self._drop_extra(p, sel)
            self._truth(sel, p, "enrolled_under_18")

        # a DM2 patient also enrolled in CVRM (the rule names these two programmes)
        if "DM2" in progs and "CVRM" in progs:
            cv = progs["CVRM"]
            mask = self.in_pop & self.adult & enrF["DM2"] & self._active(cv.diagnosis_groups, F) & ~enrF["CVRM"]
            pids, _ = self._pick({"CVRM": mask}, "enrolled_dm2_and_cvrm")
            m = self.main["CVRM"]
            old = pids[m["has"][pids]]  # an earlier CVRM enrolment stays in the history
            x = self.extra["CVRM"]
            self.extra["CVRM"] = {"pid": np.concatenate([x["pid"], old]), "s": np.concatenate([x["s"], m["s"][old]]),
                                  "e": np.concatenate([x["e"], m["e"][old]]),
                                  "mp": np.concatenate([x["mp"], m["mp"][old]])}
            lo = np.maximum.reduce([self._start(cv.diagnosis_groups)[pids], self.reg[pids], self.t18[pids],
                                    self.main["DM2"]["s"][pids]])
            lo = np.where(m["has"][pids], np.maximum(lo, np.minimum(m["e"][pids], F - 1) + 1), lo)
            lo = np.minimum(lo, F)
            m["s"][pids] = _uniform_day(rng, lo, np.full(pids.size, F))
            m["e"][pids] = self.leave[pids]
            m["mp"][pids] = 0
            m["has"][pids] = True
            self._truth(pids, "CVRM", "enrolled_dm2_and_cvrm")

        # an ended enrolment while the diagnosis is active: with the specialist as recorded
        # reason (excluded, no finding) or without it (a finding)
        for kind, mp in (("excluded_by_reason", 1), ("enrolment_ended_with_diagnosis", 0)):
            masks = {p: elig[p] & enrF[p] & single[p] & (self.main[p]["s"] <= F - 90) for p in progs}
            pids, pp = self._pick(masks, kind)
            for p in progs:
                sel = pids[pp == p]
                s = self.main[p]["s"][sel]
                self.main[p]["e"][sel] = s + 30 + np.floor(rng.random(sel.size) * (F - 1 - s - 30)).astype(np.int64)
                self.main[p]["mp"][sel] = mp
                self._truth(sel, p, kind)

        # diagnosis, never enrolled
        pids, pp = self._pick({p: elig[p] & enrF[p] for p in progs}, "diagnosis_not_enrolled")
        for p in progs:
            sel = pids[pp == p]
            self.main[p]["has"][sel] = False
            self._drop_extra(p, sel)
            self._truth(sel, p, "diagnosis_not_enrolled")

        # enrolled without a programme diagnosis: a near-miss code, or the episode closed
        masks = {}
        for p in plan.programmes:
            ok = self.in_pop & self.adult & enrF[p.id]
            for o in plan.programmes:
                if o.id != p.id and set(p.diagnosis_groups) & set(o.excluded_if):
                    ok &= ~self._present(o.inclusion)  # the diagnosis also keeps them out of `o`
                if o.id != p.id and set(p.diagnosis_groups) & set(o.diagnosis_groups):
                    ok &= ~self._present(set(p.diagnosis_groups) & set(o.diagnosis_groups))
            masks[p.id] = ok
        pids, pp = self._pick(masks, "enrolled_without_diagnosis")
        for p in progs:
            sel = pids[pp == p]
            near = NEAR_MISS.get(p)
            if near is not None and any(g.matches(near) for g in plan.rules.codes.icpc.values()):
                near = None
            use_near = rng.random(sel.size) < 0.5 if near is not None else np.zeros(sel.size, bool)
            start_max = np.full(sel.size, -1, dtype=np.int64)
            for g in progs[p].diagnosis_groups:
                if g in self.has:
                    start_max = np.where(self.has[g][sel], np.maximum(start_max, self.gstart[g][sel]), start_max)
            if near is None:
                keep = start_max <= F - 2
                self.used[sel[~keep]] = False  # could not plant: stays clean
                sel, use_near, start_max = sel[keep], use_near[keep], start_max[keep]
            else:
                use_near |= start_max > F - 2
            for g in progs[p].diagnosis_groups:
                if g not in self.has:
                    continue
                h = self.has[g][sel]
                nm = sel[h & use_near]
                self.code[g][nm] = near
                en = sel[h & ~use_near]
                st = self.gstart[g][en]
                self.gend[g][en] = st + np.floor(rng.random(en.size) * (F - 1 - st)).astype(np.int64)
            self._truth(sel, p, "enrolled_without_diagnosis")

        # main practitioner: specialist, or not recorded
        for kind, mp in (("main_practitioner_specialist", 1), ("main_practitioner_unknown", 2)):
            pids, pp = self._pick({p: enrF[p] & self.in_pop for p in progs}, kind)
            for p in progs:
                sel = pids[pp == p]
                self.main[p]["mp"][sel] = mp
                self._truth(sel, p, kind)

        # ---- controls: on the final enrolments
        self.enrF = {p: self._enrolled_at(F, p) for p in progs}
        n_enr = sum(m.astype(int) for m in self.enrF.values())
        any_enr = n_enr > 0
        pids, _ = self._pick({"*": self.in_pop & any_enr}, "no_chain_contact")
        self.nochain = np.zeros(n, bool)
        self.nochain[pids] = True
        first = np.full(n, "", dtype=object)
        for p in reversed(plan.programmes):
            first = np.where(self.enrF[p.id], p.id, first)
        self._truth(pids, first[pids], "no_chain_contact")

        self.planted_tasks: dict[tuple[int, tuple], tuple[str, int]] = {}
        for kind in ("measurement_missing", "measurement_overdue"):
            masks = {}
            for p in plan.programmes:
                mask = self.in_pop & (n_enr == 1) & self.enrF[p.id]
                if kind == "measurement_overdue":
                    longest = max(c.interval_months for c in p.controls) if p.controls else 12
                    limit = plan.ws(longest) - 400
                    first_start = self.main[p.id]["s"].copy()
                    x = self.extra[p.id]
                    np.minimum.at(first_start, x["pid"], x["s"])
                    mask &= (first_start <= limit) & (self.reg <= limit)
                if p.controls:
                    masks[p.id] = mask
            pids, pp = self._pick(masks, kind)
            for i, p in zip(pids, pp):
                prog = progs[p]
                c = prog.controls[int(rng.integers(0, len(prog.controls)))]
                key = tuple(sorted(c.concepts))
                if kind == "measurement_missing":
                    self.planted_tasks[(int(i), key)] = ("missing", 0)
                    hits = [c2.id for c2 in prog.controls if tuple(sorted(c2.concepts)) == key]
                else:
                    t_over = plan.key_ws[key] - int(rng.integers(32, 361))
                    self.planted_tasks[(int(i), key)] = ("overdue", t_over)
                    hits = [c2.id for c2 in prog.controls
                            if tuple(sorted(c2.concepts)) == key and t_over < plan.ws(c2.interval_months)]
                self._truth([i] * len(hits), p, kind, hits)

        # a typed-in value out of the plausible range, beside an in-window plausible one
        self.implausible: list[tuple[int, str, str]] = []
        masks = {}
        for lead in (IMPLAUSIBLE_CONCEPTS[0], None):  # DM2 (HbA1c) patients; else any with such a concept
            for p in plan.programmes:
                concepts = [k for c in p.controls for k in c.concepts if k in IMPLAUSIBLE_CONCEPTS]
                if concepts and (lead is None or lead in concepts):
                    masks[p.id] = self.in_pop & self.enrF[p.id]
            if masks:
                break
        if masks:
            pids, pp = self._pick(masks, "implausible_value")
            for i, p in zip(pids, pp):
                concepts = [k for c in progs[p].controls for k in c.concepts if k in IMPLAUSIBLE_CONCEPTS]
                concept = concepts[0] if rng.random() < 0.75 else concepts[-1]
                self.implausible.append((int(i), p, concept))
                self._truth([i], p, "implausible_value", [concept])

    # ------------------------------------------------------------------ final enrolment rows
    def enrolment_rows(self) -> None:
        pid, prog, s, e, mp = [], [], [], [], []
        for p in self.plan.programmes:
            m, x = self.main[p.id], self.extra[p.id]
            idx = np.flatnonzero(m["has"])
            for arrs, src in ((idx, (m["s"][idx], m["e"][idx], m["mp"][idx])), (x["pid"], (x["s"], x["e"], x["mp"]))):
                pid.append(arrs)
                prog.append(np.full(arrs.size, p.id, dtype=object))
                s.append(src[0])
                e.append(src[1])
                mp.append(src[2])
        self.rows = {"pid": np.concatenate(pid).astype(np.int64), "prog": np.concatenate(prog),
                     "s": np.concatenate(s).astype(np.int64), "e": np.concatenate(e).astype(np.int64),
                     "mp": np.concatenate(mp).astype(np.int8)}
        if (self.rows["e"] < self.rows["s"]).any():
            raise AssertionError("an enrolment ends before it starts")
        self.ever_enrolled = np.zeros(self.n, bool)
        self.ever_enrolled[self.rows["pid"]] = True

    # ------------------------------------------------------------------ measurements
    def _series(self, A, S, E, period, before_only, skip, intake):
        """Dates around anchors A (always kept), every ``period`` days with a little jitter and
        the odd skipped visit, within [S, E] (before A only when ``before_only``); plus an
        intake visit on day ``intake`` (INF = none) when that lies in the same bounds."""
        rng = self.rng
        kb = np.floor(np.maximum(A - S, 0) / period).astype(np.int64) + 1
        ka = np.where(before_only, 0, np.floor(np.maximum(E - A, 0) / period).astype(np.int64) + 1)
        owner, pos = _expand(kb + ka + 1)
        k = pos - kb[owner]
        jitter = rng.normal(0, 0.05, owner.size) * period[owner]
        d = A[owner] + np.rint(k * period[owner] + np.where(k == 0, 0, jitter)).astype(np.int64)
        anchor = k == 0
        hi = np.where(before_only[owner], A[owner] - 1, E[owner])
        keep = anchor | ((d >= S[owner]) & (d <= hi) & (rng.random(owner.size) >= skip))
        hi_t = np.where(before_only, A - 1, E)
        first = np.full(A.size, INF, dtype=np.int64)
        np.minimum.at(first, owner[keep], d[keep])
        add = np.flatnonzero((intake >= S) & (intake <= hi_t) & (intake < first - 45))
        owner = np.concatenate([owner[keep], add])
        d = np.concatenate([d[keep], intake[add]])
        anchor = np.concatenate([anchor[keep], np.zeros(add.size, bool)])
        hi = np.concatenate([hi[keep], hi_t[add]])
        return owner, d, anchor, S[owner], hi

    def measurements(self) -> None:
        rng, plan, q = self.rng, self.plan, self.q
        L, H0 = plan.L, plan.H0
        rows = self.rows
        key_index = {k: i for i, k in enumerate(plan.keys)}
        nk = len(plan.keys)
        # tasks: (patient, concept set) over every enrolment row of a programme that needs it
        t_code, t_s, t_e = [], [], []
        for p in plan.programmes:
            sel = rows["prog"] == p.id
            for k in dict.fromkeys(tuple(sorted(c.concepts)) for c in p.controls):
                t_code.append(rows["pid"][sel] * nk + key_index[k])
                t_s.append(rows["s"][sel])
                t_e.append(rows["e"][sel])
        if not t_code:
            self.tables["measurements"] = self._measurement_table([])
            return
        code = np.concatenate(t_code)
        s_all, e_all = np.concatenate(t_s), np.concatenate(t_e)
        order = np.lexsort((s_all, code))
        code, s_all, e_all = code[order], s_all[order], e_all[order]
        uniq, first = np.unique(code, return_index=True)
        s_min = np.minimum.reduceat(s_all, first)
        e_max = np.maximum.reduceat(e_all, first)
        tp, tk = uniq // nk, uniq % nk
        # due on the reference day: in population and enrolled in a programme with this key
        need = np.zeros(uniq.size, bool)
        for p in plan.programmes:
            ks = [key_index[tuple(sorted(c.concepts))] for c in p.controls]
            need |= self.enrF[p.id][tp] & np.isin(tk, ks)
        need &= self.in_pop[tp]
        int_days = np.array([plan.key_interval_max[k] * 30.44 for k in plan.keys])[tk]
        S = np.maximum.reduce([s_min - 30, self.reg[tp], np.rint(H0 - int_days - 60).astype(np.int64)])
        E = np.minimum.reduce([e_max, self.leave[tp], np.full(tp.size, self.ext)])
        state = np.zeros(uniq.size, np.int8)  # 0 natural, 1 missing, 2 overdue
        t_over = np.zeros(uniq.size, np.int64)
        for (i, key), (st, t) in self.planted_tasks.items():
            j = np.searchsorted(uniq, i * nk + key_index[key])
            state[j] = 1 if st == "missing" else 2
            t_over[j] = t
        ws_key = np.array([plan.key_ws[k] for k in plan.keys])[tk]
        ok_need = need & (state == 0)
        lo_slot, hi_slot = np.maximum(ws_key, S), np.minimum(L, E)
        if (lo_slot[ok_need] > hi_slot[ok_need]).any():
            raise AssertionError("a due control has no room for a measurement in its window")
        A = np.where(ok_need, _uniform_day(rng, lo_slot, np.maximum(hi_slot, lo_slot)),
                     np.where(state == 2, t_over, _uniform_day(rng, S, np.maximum(E, S))))
        a_lo = np.where(ok_need, lo_slot, np.where(state == 2, t_over, S))  # overdue: exactly t_over
        a_hi = np.where(ok_need, hi_slot, np.where(state == 2, t_over, E))
        live = (state != 1) & ((E >= S) | ok_need)
        if (need & (state == 2) & (t_over < S)).any():
            raise AssertionError("an overdue control falls before the measurement history")
        # visits per year by concept set: the yearly check a bit more often than the interval
        visits = np.zeros(nk)
        for i, k in enumerate(plan.keys):
            m = plan.key_interval[k]
            v = 12 / m / (0.8 if m <= 12 else 0.65)
            for c in k:
                if c in VISITS_PER_YEAR:
                    lo_v, hi_v = VISITS_PER_YEAR[c]
                    v = max(v, lo_v + (hi_v - lo_v) * q)
            visits[i] = v
        period = 365.25 / visits[tk] * rng.uniform(0.92, 1.08, tk.size)
        # intake: everything measured within weeks of the enrolment (when that is in the history)
        intake = np.where(s_min - 30 == S, s_min + rng.integers(0, 45, tk.size), INF)
        ti = np.flatnonzero(live)
        owner, d, anchor, lo_b, hi_b = self._series(A[ti], S[ti], E[ti], period[ti], state[ti] == 2,
                                                    0.005 + 0.08 * (1 - q), intake[ti])
        lo_b = np.where(anchor, a_lo[ti][owner], lo_b)
        hi_b = np.where(anchor, a_hi[ti][owner], hi_b)
        d = _weekday(d, lo_b, hi_b)
        task = ti[owner]
        mp_ = tp[task]
        mk = tk[task]
        chunks = []  # (patient idx, day, concept, values)
        self._vcache: dict = {}
        for i, k in enumerate(plan.keys):
            sel = mk == i
            if not sel.any():
                continue
            p_i, d_i, t_i = mp_[sel], d[sel], task[sel]
            if set(k) <= set(TOGETHER):
                names = [c for c in TOGETHER if c in k]
                base = self._values(names[0], p_i, d_i)
                chunks.append((p_i, d_i, names[0], base))
                for c in names[1:]:
                    m = rng.random(p_i.size) < 0.75
                    chunks.append((p_i[m], d_i[m], c, self._values(c, p_i[m], d_i[m], base=base[m])))
            else:
                choice = rng.integers(0, len(k), uniq.size)  # one concept per patient and set
                for j, c in enumerate(k):
                    m = choice[t_i] == j
                    if m.any():
                        chunks.append((p_i[m], d_i[m], c, self._values(c, p_i[m], d_i[m])))
        # companions (diastolic with systolic, total cholesterol with LDL, height once)
        measured = {c for _, _, c, _ in chunks}
        for primary, comp, share in COMPANIONS:
            if comp in plan.rules.codes.measurements and comp not in plan.concept_in_control and primary in measured:
                for p_i, d_i, c, v in list(chunks):
                    if c == primary:
                        m = rng.random(p_i.size) < share
                        chunks.append((p_i[m], d_i[m], comp, self._values(comp, p_i[m], d_i[m], base=v[m])))
        if "height" in plan.rules.codes.measurements and "height" not in plan.concept_in_control:
            for p_i, d_i, c, v in list(chunks):
                if c == "bmi":
                    o = np.lexsort((d_i, p_i))
                    u, f = np.unique(p_i[o], return_index=True)
                    chunks.append((u, d_i[o][f], "height", self._values("height", u, d_i[o][f])))
        # implausible typos, inside the reference window, beside the kept plausible values
        for i, p, concept in self.implausible:
            lo, hi = plan.ws(12), L
            dd = _weekday(_uniform_day(rng, np.array([lo]), np.array([hi])), lo, hi)
            good = self._values(concept, np.array([i]), dd)
            bad = np.round(good * 10)
            high = plan.rules.codes.measurements[concept].plausible[1]
            if not (bad > high).all():
                raise AssertionError("a planted typo is not implausible")
            chunks.append((np.array([i]), dd, concept, bad))
        # patients outside the chains: blood pressure for hypertension, the odd lab test
        chunks += self._general_measurements()
        self.tables["measurements"] = self._measurement_table(chunks)

    def _general_measurements(self) -> list:
        plan = self.plan
        out = []
        never = ~self.ever_enrolled
        lo = np.maximum(self.reg, plan.H0)
        hi = np.minimum(self.leave, self.ext)
        ms = plan.rules.codes.measurements
        if "hypertension" in self.has and "sbp" in ms:
            who = never & self.has["hypertension"] & (hi > lo)
            lo_h = np.maximum(lo, self.gstart["hypertension"])
            owner, d = self._poisson_days(np.flatnonzero(who & (hi > lo_h)), lo_h, hi, 1.5)
            v = self._values("sbp", owner, d)
            out.append((owner, d, "sbp", v))
            if "dbp" in ms:
                out.append((owner, d, "dbp", self._values("dbp", owner, d, base=v)))
        adults = never & ((self.ext - self.bd) / 365.25 >= 40) & (hi > lo)
        for c, rate in (("hba1c", 0.08), ("ldl", 0.1), ("egfr", 0.12), ("weight", 0.08)):
            if c in ms:
                owner, d = self._poisson_days(np.flatnonzero(adults), lo, hi, rate)
                out.append((owner, d, c, self._values(c, owner, d)))
        return out

    def _poisson_days(self, who: np.ndarray, lo: np.ndarray, hi: np.ndarray, rate: float):
        rng = self.rng
        expo = (hi[who] - lo[who]) / 365.25
        cnt = rng.poisson(rate * np.maximum(expo, 0))
        owner, _ = _expand(cnt)
        pid = who[owner]
        d = _uniform_day(rng, lo[pid], hi[pid])
        return pid, _weekday(d, lo[pid], hi[pid])

    def _patient_latent(self, name: str, make):
        if name not in self._vcache:
            self._vcache[name] = make()
        return self._vcache[name]

    def _values(self, concept: str, p: np.ndarray, d: np.ndarray, base=None) -> np.ndarray:
        """Values of one concept for rows (patient, day); numbers, or text for coded concepts."""
        rng, n, q = self.rng, self.n, self.q
        spec = self.plan.rules.codes.measurements[concept]
        age = (d - self.bd[p]) / 365.25
        k = p.size
        dm2 = self.has.get("dm2", np.zeros(n, bool))
        copd = self.has.get("copd", np.zeros(n, bool))

        def latent(name, mean, sd):
            return self._patient_latent(name, lambda: rng.normal(mean, sd, n))

        if spec.kind == "coded":
            values = list(spec.values)
            wmap = CODED_WEIGHTS.get(concept, {})
            w = np.array([wmap.get(v.lower(), 1.0 / len(values)) for v in values])
            if concept == "smoking":
                w_copd = np.array([{"ja": .32, "nee": .08, "gestopt": .60}.get(v.lower(), .1) for v in values])
                status = self._patient_latent("smoking", lambda: np.where(
                    copd, rng.choice(len(values), n, p=w_copd / w_copd.sum()),
                    rng.choice(len(values), n, p=w / w.sum())))
                return np.asarray(values, dtype=object)[status[p]]
            if concept == "foot":
                level = self._patient_latent("foot", lambda: rng.choice(len(values), n, p=w / w.sum()))
                return np.asarray(values, dtype=object)[level[p]]
            return _choice(rng, values, w, k).astype(object)
        if concept == "hba1c":
            v = np.clip(latent("hba1c", 53 + 6 * (0.5 - q), 9), 36, 110)[p] + rng.normal(0, 4, k)
            v = np.clip(v, 32, 140)
        elif concept == "sbp":
            v = latent("sbp", 138 + 8 * (0.5 - q), 12)[p] + 0.15 * (age - 65) + rng.normal(0, 9, k)
            v = np.clip(v, 90, 210)
        elif concept == "dbp":
            v = latent("dbp", 80, 7)[p] - 0.12 * (age - 65) + rng.normal(0, 6, k)
            if base is not None:
                v = np.minimum(v, np.asarray(base, float) - 25)
            v = np.clip(v, 45, 125)
        elif concept == "ldl":
            v = np.clip(latent("ldl", 2.5 + 0.4 * (0.5 - q), 0.7)[p], 0.8, 6) + rng.normal(0, 0.25, k)
            v = np.clip(v, 0.6, 8)
        elif concept == "total_cholesterol":
            v = (np.asarray(base, float) if base is not None else latent("ldl", 2.5, .7)[p]) + 2.1 + rng.normal(0, .3, k)
            v = np.clip(v, 2.0, 12)
        elif concept == "egfr":
            v = np.minimum(118, 128 - 0.75 * age) + latent("egfr", 0, 13)[p] + rng.normal(0, 4, k)
            v = np.clip(v, 10, 130)
        elif concept == "acr":
            v = np.exp(latent("acr", np.log(1.3), 0.9)[p] + rng.normal(0, 0.35, k))
            v = np.clip(v, 0.1, 250)
        elif concept in ("weight", "bmi", "height"):
            sex = self.sex
            h = self._patient_latent("height", lambda: np.where(sex == "M", rng.normal(180, 7, n),
                                     np.where(sex == "V", rng.normal(167, 6.5, n), rng.normal(173, 8, n))))
            bmi_p = self._patient_latent("bmi", lambda: np.clip(rng.normal(26.5 + 3 * dm2 - 1.5 * copd, 4.5), 17, 50))
            if concept == "height":
                v = np.clip(h[p], 140, 205)
            elif concept == "weight":
                v = np.clip(bmi_p[p] * (h[p] / 100) ** 2 + rng.normal(0, 1.5, k), 38, 220)
            else:
                w = np.asarray(base, float) if base is not None else bmi_p[p] * (h[p] / 100) ** 2
                v = np.clip(w / (h[p] / 100) ** 2, 14, 70)
        elif concept == "exacerbations":
            lam = self._patient_latent("exac", lambda: np.where(copd, 0.7, 0.35) * rng.gamma(1.5, 1 / 1.5, n))
            v = rng.poisson(lam[p]).astype(float)
        elif concept == "mrc":
            grade = self._patient_latent("mrc", lambda: 1 + rng.binomial(4, 0.3, n))
            v = np.clip(grade[p] + rng.integers(-1, 2, k) * (rng.random(k) < 0.2), 1, 5)
            v = v.astype(float)
        elif concept == "ccq":
            v = np.clip(np.clip(latent("ccq", 1.6, 0.8)[p], 0, 5) + rng.normal(0, 0.3, k), 0, 5.5)
        elif concept == "fev1_pct":
            v = np.clip(np.clip(latent("fev1", 62, 16)[p], 25, 115) + rng.normal(0, 4, k), 20, 120)
        elif concept == "acq":
            v = np.clip(np.clip(latent("acq", 1.1, 0.7)[p], 0, 5) + rng.normal(0, 0.35, k), 0, 5.5)
        elif concept == "act":
            v = np.clip(np.clip(latent("act", 20, 3)[p], 6, 25) + rng.normal(0, 1.5, k), 5, 25)
        else:  # a concept this file does not know: the middle of its plausible range
            lo, hi = spec.plausible or (0, 100)
            v = lo + (hi - lo) * (0.3 + 0.2 * rng.random(k))
        lo, hi = spec.plausible or (-np.inf, np.inf)
        decimals = _decimals(concept)
        v = np.round(v, decimals)
        return np.clip(v, lo, hi)

    def _measurement_table(self, chunks) -> dict[str, pa.Array]:
        ms = self.plan.rules.codes.measurements
        if not chunks:
            return {c: pa.array([], pa.string()) for c in TABLE_COLUMNS["measurements"]}
        p = np.concatenate([c[0] for c in chunks]).astype(np.int64)
        d = np.concatenate([c[1] for c in chunks]).astype(np.int64)
        values, nhg, unit = [], [], []
        for _, _, concept, v in chunks:
            spec = ms[concept]
            if spec.kind == "coded":
                values.append(pa.array(np.asarray(v, dtype=object), pa.string()))
            else:
                values.append(_Text.decimal(np.asarray(v, float), _decimals(concept)))
            nhg.append(np.full(len(v), spec.nhg, dtype=np.int64))
            unit.append(np.full(len(v), spec.unit or "", dtype=object))
        value = pa.concat_arrays([a.cast(pa.string()) for a in values])
        nhg_a, unit_a = np.concatenate(nhg), np.concatenate(unit)
        order = np.lexsort((nhg_a, d, p))
        return {
            "patient_id": self._pids(p[order]),
            "date": self.plan.text.dates(d[order], self.info.bom),
            "nhg_code": _Text.ints(nhg_a[order]),
            "value": value.take(pa.array(order)),
            "unit": pa.array(unit_a[order], pa.string(), mask=unit_a[order] == ""),
        }

    # ------------------------------------------------------------------ contacts
    def contacts(self) -> None:
        rng, plan, n = self.rng, self.plan, self.n
        H0, ext = plan.H0, self.ext
        y0, y1 = int(_years_of(np.array([H0]))[0]), int(_years_of(np.array([ext]))[0])
        years = np.arange(y0, y1 + 1)
        # patient-level propensity (gamma: heavy tail of frequent attenders), normalised per age band
        chronic = sum(h.astype(float) for h in self.has.values())
        psych = self._psych_patients()
        mult = rng.gamma(1.0, 1.0, n) * (1 + 0.25 * chronic) * np.where(psych, 1.5, 1.0)
        band = _nivel_band(self.age_x)
        norm = np.bincount(band, weights=mult, minlength=7) / np.maximum(np.bincount(band, minlength=7), 1)
        mult = mult / np.where(norm[band] > 0, norm[band], 1)
        self.mult = mult
        ny = years.size
        P = np.repeat(np.arange(n), ny)
        Y = np.tile(years, n)
        lo = np.maximum.reduce([_jan1(Y), np.full(P.size, H0), self.reg[P]])
        hi = np.minimum.reduce([_jan1(Y + 1) - 1, np.full(P.size, ext), self.leave[P]])
        expo = np.maximum(hi - lo + 1, 0) / 365.25
        age_y = Y - self.by[P]
        rate = NIVEL_RATES[_nivel_band(age_y)] * SEG1_SCALE
        lam = rate * mult[P] * rng.gamma(3, 1 / 3, P.size) * expo
        cnt = rng.poisson(lam)
        own, _ = _expand(cnt)
        cp = P[own]
        cd = _weekday(_uniform_day(rng, lo[own], hi[own]), lo[own], hi[own])
        cy = Y[own]
        nb = _nivel_band(cy - self.by[cp])
        w = np.tile(KIND_BASE, (cp.size, 1))
        w[:, 2] *= VISIT_AGE[nb]
        w[:, 3] *= VISIT_AGE[nb]
        w[:, 5] = np.clip(0.03 + 0.07 * (cy - 2019), 0.03, 0.6) * ECONSULT_AGE[nb]
        cum = np.cumsum(w, axis=1)
        u = rng.random(cp.size) * cum[:, -1]
        kind = (u[:, None] > cum).sum(axis=1)
        role = np.zeros(cp.size, np.int64)  # huisarts
        r = rng.random(cp.size)
        role = np.where((kind == 4) & (r < 0.40), 3, role)
        role = np.where((kind == 5) & (r < 0.15), 3, role)
        role = np.where((kind == 0) & (r < 0.07), 3, role)
        # reasons as numbers into one vocabulary ("" = none): cheap to mix and to write
        vocab: dict[str, int] = {"": 0}

        def encode(values) -> np.ndarray:
            u, inv = np.unique(np.asarray(values, dtype=object).astype(str), return_inverse=True)
            return np.array([vocab.setdefault(x, len(vocab)) for x in u], dtype=np.int64)[inv.ravel()]

        chain_code = self._chain_code()
        chain_i, psych_i = encode(chain_code), encode(self._psych_code)
        common = encode([c for c, _ in CONTACT_CODES])
        w_common = np.array([w_ for _, w_ in CONTACT_CODES], float)
        codes = common[rng.choice(common.size, size=cp.size, p=w_common / w_common.sum())]
        r2 = rng.random(cp.size)
        codes = np.where((chain_i[cp] != 0) & (r2 < 0.3), chain_i[cp], codes)
        codes = np.where((psych_i[cp] != 0) & (r2 >= 0.3) & (r2 < 0.55), psych_i[cp], codes)
        codes = np.where(rng.random(cp.size) < 0.12, 0, codes)
        parts = [(cp, cd, kind, role, codes)]
        for part in (self._poh_ggz(), self._poh_s(chain_code)):
            parts.append(part[:4] + (encode(part[4]),))
        cp = np.concatenate([x[0] for x in parts]).astype(np.int64)
        cd = np.concatenate([x[1] for x in parts]).astype(np.int64)
        kind = np.concatenate([x[2] for x in parts]).astype(np.int64)
        role = np.concatenate([x[3] for x in parts]).astype(np.int64)
        codes = np.concatenate([x[4] for x in parts]).astype(np.int64)
        self.contact_rows = (cp, cd, kind, role)
        # contact numbers follow the calendar, as in the HIS
        by_date = np.lexsort((cp, cd))
        cid = np.empty(cp.size, np.int64)
        cid[by_date] = int(rng.integers(2_000_000, 3_000_000)) + np.arange(cp.size) * 3 + rng.integers(0, 3, cp.size)
        order = np.lexsort((cid, cp))
        self.tables["contacts"] = {
            "contact_id": _Text.ints(cid[order]),
            "patient_id": self._pids(cp[order]),
            "date": plan.text.dates(cd[order], self.info.bom),
            "kind": pa.array(np.asarray(CONTACT_KINDS, dtype=object)[kind[order]], pa.string()),
            "role": pa.array(np.asarray(ROLES, dtype=object)[role[order]], pa.string()),
            "icpc": pa.array(list(vocab), pa.string()).take(pa.array(codes[order], mask=codes[order] == 0)),
        }

    def _chain_code(self) -> np.ndarray:
        """The ICPC code a patient's chain-care contacts are about (first programme's diagnosis)."""
        out = np.full(self.n, "", dtype=object)
        for p in reversed(self.plan.programmes):
            for g in reversed(p.diagnosis_groups):
                if g in self.has:
                    out = np.where(self.has[g] & self.ever_enrolled, self.code[g], out)
        return out

    def _psych_patients(self) -> np.ndarray:
        return self._psych_code != ""

    def other_episodes(self) -> None:
        rng, plan, n = self.rng, self.plan, self.n
        # codes must not count as a programme diagnosis
        groups = plan.rules.codes.icpc.values()
        table = [(c, w, d) for c, w, d in OTHER_EPISODES if not any(g.matches(c) for g in groups)]
        lo = np.maximum(self.reg, plan.H0 - 730)
        hi = np.minimum(self.leave, self.ext)
        age = self.age_x
        lam = (0.55 * (plan.years + 2)) * np.where(age >= 65, 1.3, np.where(age < 18, 0.7, 1.0))
        cnt = np.where(hi > lo, rng.poisson(lam), 0)
        owner, _ = _expand(cnt)
        pick = rng.choice(len(table), size=owner.size, p=np.array([w for _, w, _ in table], float)
                          / sum(w for _, w, _ in table))
        codes = np.asarray([c for c, _, _ in table], dtype=object)[pick]
        durs = np.array([d if d is not None else -1 for _, _, d in table], dtype=float)[pick]
        start = _uniform_day(rng, lo[owner], hi[owner] - 1)
        end = np.where(durs < 0, INF, start + np.rint(rng.exponential(np.maximum(durs, 1))).astype(np.int64) + 1)
        end = np.where(end > self.ext, INF, end)
        self.other = (owner, codes, start, end)
        # the psychosocial patients (for POH-GGZ) and their code
        psy = np.isin(codes, PSYCH_CODES)
        self._psych_code = np.full(n, "", dtype=object)
        self._psych_code[owner[psy]] = codes[psy]
        self.psych_rows = (owner[psy], codes[psy], start[psy], end[psy])
        # decoys that look like a diagnosis but are not one (R96.01 is not astma)
        decoys = []
        for code, share in DECOYS.items():
            if any(g.matches(code) for g in groups):
                continue
            d_lo = np.maximum(self.bd + 4 * 365, self.reg - 3650)
            d_hi = np.minimum(self.leave, self.ext) - 1
            who = np.flatnonzero((rng.random(n) < share) & ~self._present(list(self.has)) & (d_hi >= d_lo))
            st = _uniform_day(rng, d_lo[who], d_hi[who])
            decoys.append((who, np.full(who.size, code, dtype=object), st, np.full(who.size, INF, np.int64)))
        self.decoys = decoys

    def _poh_ggz(self):
        rng, plan = self.rng, self.plan
        p, codes, start, end = self.psych_rows
        lo = np.maximum.reduce([start, self.reg[p], np.full(p.size, plan.H0)])
        hi = np.minimum.reduce([np.minimum(end, start + 365), self.leave[p], np.full(p.size, self.ext)])
        ok = hi >= lo
        cnt = np.where(ok, rng.poisson(4.0, p.size), 0)
        owner, _ = _expand(cnt)
        d = _weekday(_uniform_day(rng, lo[owner], hi[owner]), lo[owner], hi[owner])
        kind = _choice(rng, [1, 0, 4], [.7, .2, .1], owner.size)
        return p[owner], d, kind, np.full(owner.size, 2), codes[owner]

    def _poh_s(self, chain_code):
        """Chain-care contacts: several a year while enrolled; one inside the window for the due."""
        rng, plan, q = self.rng, self.plan, self.q
        role = ROLES.index(plan.chain_role)
        rows = self.rows
        if rows["pid"].size == 0:
            z = np.zeros(0, np.int64)
            return z, z, z, z, np.zeros(0, object)
        order = np.lexsort((rows["s"], rows["pid"]))
        pid_sorted = rows["pid"][order]
        u, first = np.unique(pid_sorted, return_index=True)
        s_min = np.minimum.reduceat(rows["s"][order], first)
        e_max = np.maximum.reduceat(rows["e"][order], first)
        # the KIS keeps chain contacts one window further back: every quarter of the history is complete
        h_chain = _day(add_months(date.fromordinal(EPOCH.toordinal() + plan.H0), -plan.rules.chain_contact_months))
        S = np.maximum.reduce([s_min, self.reg[u], np.full(u.size, h_chain)])
        E = np.minimum.reduce([e_max, self.leave[u], np.full(u.size, self.ext)])
        any_enr = np.zeros(self.n, bool)
        for m in self.enrF.values():
            any_enr |= m
        need = self.in_pop[u] & any_enr[u] & ~self.nochain[u]
        lo_slot, hi_slot = np.maximum(plan.chain_ws, S), np.minimum(plan.L, E)
        if (lo_slot[need] > hi_slot[need]).any():
            raise AssertionError("an enrolled patient has no room for a chain contact in the window")
        nochain = self.nochain[u]
        t_nc = plan.chain_ws - rng.integers(32, 200, u.size)
        A = np.where(need, _uniform_day(rng, lo_slot, np.maximum(hi_slot, lo_slot)),
                     np.where(nochain, t_nc, _uniform_day(rng, S, np.maximum(E, S))))
        live = need | (nochain & (t_nc >= S)) | (~need & ~nochain & (E >= S))
        period = 365.25 / (2.4 + 1.6 * q) * rng.uniform(0.85, 1.15, u.size)
        intake = np.where(s_min == S, s_min + rng.integers(0, 30, u.size), INF)
        ti = np.flatnonzero(live)
        owner, d, anchor, lo_b, hi_b = self._series(A[ti], S[ti], E[ti], period[ti], nochain[ti],
                                                    0.03 + 0.1 * (1 - q), intake[ti])
        lo_b = np.where(anchor, np.where(need[ti][owner], lo_slot[ti][owner], S[ti][owner]), lo_b)
        hi_b = np.where(anchor, np.where(need[ti][owner], hi_slot[ti][owner], A[ti][owner]), hi_b)
        d = _weekday(d, lo_b, hi_b)
        # a few patients drop out for a while (13-18 months) before the reference window
        gap = rng.integers(400, 540, u.size)
        g_start = _uniform_day(rng, S, np.maximum(plan.chain_ws - 30 - gap, S))
        paused = (rng.random(u.size) < 0.02 + 0.05 * (1 - q)) & (plan.chain_ws - 30 - gap >= S)
        t = ti[owner]
        keep = anchor | ~(paused[t] & (d >= g_start[t]) & (d <= g_start[t] + gap[t]))
        owner, d = owner[keep], d[keep]
        p = u[ti][owner]
        kind = _choice(rng, [0, 1, 4], [.65, .2, .15], p.size)
        return p, d, kind, np.full(p.size, role), chain_code[p]

    # ------------------------------------------------------------------ prescriptions, referrals
    def prescriptions(self) -> None:
        rng, plan = self.rng, self.plan
        H0, ext = plan.H0, self.ext
        pids, days, atcs, durs = [], [], [], []
        seen = np.zeros(0, np.int64)  # patient * 1000 + drug class already prescribed
        classes: dict[str, int] = {}
        for g, regimen in REGIMENS.items():
            if g not in self.has:
                continue
            for options, share, dur in regimen:
                who = np.flatnonzero(self.has[g] & (rng.random(self.n) < share))
                opt = rng.integers(0, len(options), who.size)
                atc = np.asarray(options, dtype=object)[opt]
                # one drug per class and patient (a DM2 patient with HVZ gets one statin)
                cls = np.array([classes.setdefault(o[:5], len(classes)) for o in options])
                key = who * 1000 + cls[opt]
                fresh = ~np.isin(key, seen)
                seen = np.concatenate([seen, key[fresh]])
                who, atc = who[fresh], atc[fresh]
                lo = np.maximum.reduce([self.gstart[g][who], self.reg[who], np.full(who.size, H0)])
                lo = lo + rng.integers(0, 30, who.size)
                hi = np.minimum.reduce([self.gend[g][who], self.leave[who], np.full(who.size, ext)])
                ok = hi >= lo
                who, atc, lo, hi = who[ok], atc[ok], lo[ok], hi[ok]
                per = dur * rng.uniform(1.0, 1.15, who.size)
                cnt = np.floor((hi - lo) / per).astype(np.int64) + 1
                owner, k = _expand(cnt)
                d = lo[owner] + np.rint(k * per[owner]).astype(np.int64)
                d = _weekday(d, lo[owner], hi[owner])
                pids.append(who[owner])
                days.append(d)
                atcs.append(atc[owner])
                durs.append(np.full(owner.size, dur))
        for g, rate in EXACERBATION_RATE.items():
            if g not in self.has:
                continue
            who = np.flatnonzero(self.has[g])
            lo = np.maximum.reduce([self.gstart[g][who], self.reg[who], np.full(who.size, H0)])
            hi = np.minimum.reduce([self.leave[who], np.full(who.size, ext)])
            o, d = self._poisson_days(np.arange(who.size), lo, hi, rate)
            pids.append(who[o])
            days.append(d)
            atcs.append(np.full(o.size, "H02AB06", dtype=object))
            durs.append(np.full(o.size, 5))
            if g == "copd":
                m = rng.random(o.size) < 0.5
                pids.append(who[o][m])
                days.append(d[m])
                atcs.append(_choice(rng, ["J01AA02", "J01CA04"], [.6, .4], int(m.sum())).astype(object))
                durs.append(np.full(int(m.sum()), 7))
        cp, cd, kind, role = self.contact_rows
        acute = np.flatnonzero((role == 0) & (rng.random(cp.size) < ACUTE_SHARE))
        pick = rng.choice(len(ACUTE), size=acute.size, p=np.array([w for _, w, _ in ACUTE], float)
                          / sum(w for _, w, _ in ACUTE))
        pids.append(cp[acute])
        days.append(cd[acute])
        atcs.append(np.asarray([a for a, _, _ in ACUTE], dtype=object)[pick])
        durs.append(np.array([d for _, _, d in ACUTE])[pick])
        p = np.concatenate(pids).astype(np.int64)
        d = np.concatenate(days).astype(np.int64)
        a = np.concatenate(atcs).astype(object)
        du = np.concatenate(durs).astype(np.int64)
        order = np.lexsort((a, d, p))
        self.tables["prescriptions"] = {
            "patient_id": self._pids(p[order]),
            "date": plan.text.dates(d[order], self.info.bom),
            "atc": pa.array(a[order], pa.string()),
            "duration_days": _Text.ints(du[order]),
        }

    def referrals(self) -> None:
        rng, plan = self.rng, self.plan
        lo = np.maximum(self.reg, plan.H0)
        hi = np.minimum(self.leave, self.ext)
        expo = np.maximum(hi - lo, 0) / 365.25
        age = self.age_x
        af = np.where(age < 18, 0.6, np.where(age < 45, 0.8, np.where(age < 65, 1.1, 1.4)))
        cnt = rng.poisson(REFERRAL_RATE * af * np.sqrt(self.mult) * expo)
        owner, _ = _expand(cnt)
        d = _weekday(_uniform_day(rng, lo[owner], np.maximum(hi[owner], lo[owner])), lo[owner], hi[owner])
        spec_i = rng.choice(len(SPECIALISMS), size=owner.size,
                            p=np.array([w for _, w, _ in SPECIALISMS], float) / sum(w for _, w, _ in SPECIALISMS))
        reasons = [s[2] for s in SPECIALISMS]
        codes = np.array([reasons[s][j % len(reasons[s])] for s, j in
                          zip(spec_i, rng.integers(0, 12, owner.size))], dtype=object)
        codes = np.where(rng.random(owner.size) < 0.1, "", codes)
        order = np.lexsort((spec_i, d, owner))
        self.tables["referrals"] = {
            "patient_id": self._pids(owner[order]),
            "date": plan.text.dates(d[order], self.info.bom),
            "specialism": pa.array(np.asarray([s[0] for s in SPECIALISMS], dtype=object)[spec_i[order]], pa.string()),
            "icpc": pa.array(codes[order], pa.string(), mask=codes[order] == ""),
        }

    # ------------------------------------------------------------------ the other tables
    def _pids(self, idx: np.ndarray) -> pa.Array:
        if not hasattr(self, "_pid_arrow"):
            self._pid_arrow = pa.array(self.pid.astype(object), pa.string())
        return self._pid_arrow.take(pa.array(np.asarray(idx, dtype=np.int64)))

    def patient_and_episode_tables(self) -> None:
        plan, bom = self.plan, self.info.bom
        dead_on = np.where(self.dead, self.leave, INF)
        self.tables["patients"] = {
            "patient_id": self._pids(np.arange(self.n)),
            "birth_year": _Text.ints(self.by),
            "sex": pa.array(self.sex.astype(object), pa.string()),
            "postcode4": _Text.ints(self.pc4),
            "insurer_uzovi": pa.array(self.ins.astype(object), pa.string()),
            "registered_from": plan.text.dates(self.reg, bom),
            "registered_until": plan.text.dates(self.leave, bom),
            "deceased_on": plan.text.dates(dead_on, bom),
        }
        p, c, s, e = [], [], [], []
        for g in self.has:
            who = np.flatnonzero(self.has[g])
            p.append(who)
            c.append(self.code[g][who])
            s.append(self.gstart[g][who])
            e.append(self.gend[g][who])
        for who, codes, st, en in [self.other] + self.decoys:
            p.append(who)
            c.append(codes)
            s.append(st)
            e.append(en)
        p, c = np.concatenate(p).astype(np.int64), np.concatenate(c).astype(object)
        s, e = np.concatenate(s).astype(np.int64), np.concatenate(e).astype(np.int64)
        s = np.maximum(s, _jan1(self.by[p]))  # never before the birth year
        order = np.lexsort((c, s, p))
        self.tables["episodes"] = {
            "patient_id": self._pids(p[order]),
            "icpc": pa.array(c[order], pa.string()),
            "start_date": plan.text.dates(s[order], bom),
            "end_date": plan.text.dates(e[order], bom),
        }
        r = self.rows
        order = np.lexsort((r["s"], r["prog"].astype(str), r["pid"]))
        mp = r["mp"][order]
        self.tables["enrolments"] = {
            "patient_id": self._pids(r["pid"][order]),
            "programme": pa.array(r["prog"][order], pa.string()),
            "start_date": plan.text.dates(r["s"][order], bom),
            "end_date": plan.text.dates(r["e"][order], bom),
            "main_practitioner": pa.array(np.asarray(["huisarts", "specialist", ""], dtype=object)[mp], pa.string(),
                                          mask=mp == 2),
        }

    # ------------------------------------------------------------------ payments
    def payments(self, quarters: list[Quarter], max_ext: int) -> list[tuple]:
        """Declarations per programme, quarter and insurer: enrolled on day 1, awarded = paid for."""
        rng, plan = self.rng, self.plan
        r = self.rows
        out = []
        seq = {}
        ins_codes = [c for c, _ in INSURERS]
        ins_idx = np.searchsorted(np.array(ins_codes), self.ins, sorter=np.argsort(ins_codes))
        ins_idx = np.argsort(ins_codes)[ins_idx]
        k_ins = len(ins_codes)
        for quarter in quarters:
            Fq = _day(quarter.first_day)
            in_pop = (self.reg <= Fq) & (self.leave > Fq) | ((self.leave == Fq) & ~self.dead & (self.reg <= Fq))
            adult = quarter.first_day.year - self.by >= plan.rules.minimum_age
            act = (r["s"] <= Fq) & (r["e"] >= Fq)
            enrolled = {p.id: np.zeros(self.n, bool) for p in plan.programmes}
            for p in plan.programmes:
                enrolled[p.id][r["pid"][act & (r["prog"] == p.id)]] = True
            for p in plan.programmes:
                m = enrolled[p.id]
                bad = m & (~in_pop | ~adult)
                if p.id == "CVRM" and "DM2" in enrolled:
                    bad |= m & enrolled["DM2"]
                chain = CHAIN_NUMBERS.get(p.id, 5 + [x.id for x in plan.programmes].index(p.id))
                n_decl = np.bincount(ins_idx[m], minlength=k_ins)
                n_bad = np.bincount(ins_idx[bad], minlength=k_ins)
                for j, code in enumerate(ins_codes):
                    declared = int(n_decl[j])
                    if declared == 0:
                        continue
                    rejected = int(n_bad[j]) + int(rng.binomial(declared, 0.004))
                    awarded = max(0, declared - rejected)
                    amount = awarded * p.annual_tariff_eur / 4
                    paid = Fq + int(rng.integers(42, 71))
                    paid = int(_weekday(np.array([paid]), np.array([paid - 2]), np.array([paid + 2]))[0])
                    k = (quarter.year, chain)
                    seq[k] = seq.get(k, 0) + 1
                    out.append((self.info.agb, p.id, str(quarter), code, declared, awarded, amount,
                                paid if paid <= max_ext else INF, f"{quarter.year}{chain}-{self.info.seq}-{seq[k]}"))
        return out

    # ------------------------------------------------------------------ run
    def run(self) -> None:
        self.patients()
        self.diagnoses()
        self.leaving()
        self.diagnosis_dates()
        self.natural_enrolments()
        self.plant()
        self.enrolment_rows()
        self.other_episodes()
        self.measurements()
        self.contacts()
        self.prescriptions()
        self.referrals()
        self.patient_and_episode_tables()


def _decimals(concept: str) -> int:
    return {"hba1c": 0, "sbp": 0, "dbp": 0, "egfr": 0, "height": 0, "exacerbations": 0, "mrc": 0,
            "fev1_pct": 0, "act": 0}.get(concept, 1)


# =======================================================================================
# The dataset
# =======================================================================================

def generate(
    out: Path,
    practices: int = 12,
    regions: int = 2,
    seed: int = 20261123,
    extraction_date: date = date(2026, 10, 5),
    years: int = 3,
    *,
    parameters: Path | None = None,
    force: bool = False,
) -> DemoSummary:
    """Write the demo care group to ``out`` and its ground truth to ``<out>.ground_truth.csv``.

    Deterministic: the same arguments give the same files, byte for byte. The dataset is
    written into ``<out>.tmp-<pid>`` and renamed into place at the end (an older ``out`` is
    moved aside first and removed once the new one is in place, or put back when that fails),
    so a crashed run never leaves a dataset that looks complete.
    ``out`` may be new, an empty folder or a dataset this function wrote (it holds
    :data:`MARKER`); anything else is refused unless ``force``, and even then ``out`` is never
    the project, ``data/``, the working folder, the home folder or a folder above one of them.
    ``parameters`` points to another folder with codes.yaml and programmes.yaml (default:
    the project's ``parameters/``).
    """
    t0 = time.perf_counter()
    out = Path(out)
    if practices < 1:
        raise ValueError("practices must be at least 1")
    if years < 1:
        raise ValueError("years must be at least 1")
    if seed < 0:
        raise ParameterError(f"seed {seed} is negative: give a whole number from 0 on (e.g. 20261123)")
    earliest = _earliest_extraction(years)
    if not earliest <= extraction_date <= LATEST_EXTRACTION:
        raise ParameterError(
            f"extraction date {extraction_date.isoformat()} is outside what the demo can generate: choose a "
            f"date from {earliest.isoformat()} to {LATEST_EXTRACTION.isoformat()}")
    truth_path = out.parent / f"{out.name}.ground_truth.csv"
    _check_replaceable(out, truth_path, force)
    params = Path(parameters) if parameters else PARAMETERS_DIR
    rules = load_programmes(params / "programmes.yaml", params / "codes.yaml")
    plan = _make_plan(rules, seed, extraction_date, years)
    register = _practice_register(plan, practices, regions)

    tmp = out.parent / f"{out.name}.tmp-{os.getpid()}"
    old = out.parent / f".{out.name}.old-{os.getpid()}"  # what out held, until the new one is in place
    truth_tmp = out.parent / f"{out.name}.ground_truth.csv.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    rows = {t: 0 for t in TABLE_COLUMNS}
    rows["payments"] = 0
    patients = registered = 0
    truth: list[tuple] = []
    payments: list[tuple] = []
    first_q = Quarter.containing(date.fromordinal(EPOCH.toordinal() + plan.H0))
    quarters = []
    qq = first_q
    while qq <= plan.quarter:
        quarters.append(qq)
        qq = qq.next()
    max_ext = max(i.ext for i in register)
    try:
        (tmp / "extracts").mkdir(parents=True)
        (tmp / MARKER).write_text(
            "Written by `spiegel demo-data`: the next run replaces this folder. Remove this file to keep it.\n",
            encoding="utf-8")
        fte = {}
        for info in register:
            prac = _Practice(plan, info)
            prac.run()
            folder = tmp / "extracts" / info.agb
            folder.mkdir()
            for name, cols in TABLE_COLUMNS.items():
                table = prac.tables[name]
                rows[name] += _write_csv(folder / f"{name}.csv", {c: table[c] for c in cols}, bom=info.bom)
            patients += prac.n
            n_reg = int(((prac.reg <= info.ext) & (prac.leave > info.ext)).sum())
            registered += n_reg
            fte[info.agb] = round(n_reg / 2095 * prac.rng.uniform(0.9, 1.1), 1)
            for i, p, kind, control in prac.truth:
                truth.append((info.agb, str(prac.pid[i]), p, kind, control, str(plan.quarter)))
            payments += prac.payments(quarters, max_ext)
        text = plan.text
        _write_csv(tmp / "practices.csv", {
            "practice_agb": pa.array([i.agb for i in register], pa.string()),
            "name": pa.array([i.name for i in register], pa.string()),
            "region": pa.array([i.region for i in register], pa.string()),
            "hagro": pa.array([i.hagro for i in register], pa.string()),
            "his_system": pa.array([i.his for i in register], pa.string()),
            "fte_gp": _Text.decimal(np.array([max(fte[i.agb], 0.5) for i in register]), 1),
            "extraction_date": text.dates(np.array([i.ext for i in register])),
        })
        pay = list(zip(*payments)) if payments else [[] for _ in PAYMENT_COLUMNS]
        rows["payments"] = _write_csv(tmp / "payments.csv", {
            "practice_agb": pa.array(list(pay[0]), pa.string()),
            "programme": pa.array(list(pay[1]), pa.string()),
            "quarter": pa.array(list(pay[2]), pa.string()),
            "insurer_uzovi": pa.array(list(pay[3]), pa.string()),
            "patients_declared": _Text.ints(np.array(pay[4], dtype=np.int64)),
            "patients_awarded": _Text.ints(np.array(pay[5], dtype=np.int64)),
            "amount_eur": _Text.decimal(np.array(pay[6], dtype=float), 2),
            "paid_on": text.dates(np.array(pay[7], dtype=np.int64)),
            "invoice_number": pa.array(list(pay[8]), pa.string()),
        })
        truth.sort()
        tr = list(zip(*truth)) if truth else [[] for _ in GROUND_TRUTH_COLUMNS]
        _write_csv(truth_tmp, {c: pa.array(list(v), pa.string()) for c, v in zip(GROUND_TRUTH_COLUMNS, tr)})
        if out.exists() or out.is_symlink():
            out.rename(old)
        tmp.rename(out)
        os.replace(truth_tmp, truth_path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        truth_tmp.unlink(missing_ok=True)
        if old.exists() or old.is_symlink():  # put the previous dataset back
            if out.is_dir() and not out.is_symlink():
                shutil.rmtree(out)
            old.rename(out)
        if isinstance(exc, OSError):  # unwritable, missing or full: the user's to fix, not a bug
            raise SpiegelError(f"cannot write the demo dataset to {out}: "
                               f"{exc.strerror or exc}; choose a folder you can write to with --out") from None
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old)
    elif old.exists() or old.is_symlink():
        old.unlink()
    planted = {k: 0 for k in GROUND_TRUTH_KINDS}
    for t in truth:
        planted[t[3]] += 1
    return DemoSummary(
        out=out, ground_truth=truth_path, practices=practices, regions=len({i.region for i in register}),
        patients=patients, registered=registered, rows=rows, reference_quarter=str(plan.quarter),
        planted=planted, seconds=time.perf_counter() - t0, seed=seed, extraction_date=extraction_date,
    )


def _earliest_extraction(years: int) -> date:
    """The oldest patient, born MAX_AGE years before the history starts, must be born in or after
    the contract's earliest birth year."""
    from .contract import EARLIEST_BIRTH_YEAR
    return date(EARLIEST_BIRTH_YEAR + MAX_AGE + years + 1, 1, 1)


def _is_demo_dataset(folder: Path, truth_path: Path) -> bool:
    if (folder / MARKER).is_file():
        return True
    # datasets written before the marker existed: the generator alone writes this pair
    return (folder / "practices.csv").is_file() and _is_ground_truth(truth_path)


def _is_ground_truth(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().rstrip("\n") == ";".join(GROUND_TRUTH_COLUMNS)
    except (OSError, UnicodeDecodeError):
        return False


def _check_replaceable(out: Path, truth_path: Path, force: bool) -> None:
    """Refuse to replace what generate() did not write (unless ``force``), and never a folder
    that holds the project, the data, the working folder or the home folder."""
    target = out.resolve()
    if target.parent == Path(target.anchor):
        raise ParameterError(f"--out {out} is a top-level folder: give a folder of its own, e.g. data/demo")
    kept = (config.PROJECT_ROOT, config.DATA_DIR, config.OUTPUTS_DIR, config.PARAMETERS_DIR,
            Path.cwd().resolve(), Path.home().resolve(), Path(sys.prefix).resolve())
    for path in kept:
        if target == path or target in path.parents:
            raise ParameterError(
                f"--out {out} would replace {path}: give a folder of its own for the demo dataset, e.g. data/demo")
    if out.is_symlink():
        if not force:
            raise ParameterError(f"--out {out} is a symbolic link: give the folder itself, or add --force "
                                 "to replace the link (its target is left alone)")
    elif out.is_dir():
        if any(out.iterdir()) and not _is_demo_dataset(out, truth_path) and not force:
            raise ParameterError(
                f"--out {out} is a folder that was not written by `spiegel demo-data` (no {MARKER} file): "
                "choose a new or empty folder, or add --force to replace it")
    elif out.exists() and not force:
        raise ParameterError(f"--out {out} is a file: choose a new or empty folder, or add --force to replace it")
    if truth_path.is_dir() or truth_path.is_symlink():
        raise ParameterError(f"{truth_path} (where the ground truth goes) is a folder or a link: move it away")
    if truth_path.exists() and not _is_ground_truth(truth_path) and not force:
        raise ParameterError(
            f"{truth_path} (where the ground truth goes) is not a demo ground truth: move it away, "
            "or add --force to replace it")


def edit_first_patient(dataset: Path, agb: str, edit=None) -> bytes:
    """Change one practice's delivery the way a new extraction would: apply ``edit`` to the
    first data row of its patients.csv (default: move the patient to another postcode),
    keeping its BOM. Returns the file's original bytes, so a caller can put it back.
    Benchmarks and tests use it to show that only that practice's runs are redone.

    >>> original = edit_first_patient(Path("data/demo"), "01124526")   # doctest: +SKIP
    """
    def new_postcode(line: str) -> str:
        cols = line.split(";")
        cols[3] = "1011" if cols[3] != "1011" else "1012"
        return ";".join(cols)

    path = Path(dataset) / "extracts" / agb / "patients.csv"
    raw = path.read_bytes()
    lines = raw.decode("utf-8-sig").splitlines(keepends=True)
    lines[1] = (edit or new_postcode)(lines[1])
    bom = "\ufeff" if raw.startswith(b"\xef\xbb\xbf") else ""
    write_atomic(path, bom + "".join(lines))
    return raw
