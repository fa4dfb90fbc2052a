"""The contract's tables as data (spec/his-extract.md, version 2): every file, column and type.

Every table is a :class:`TableSpec` in :data:`TABLES`; the checks (:mod:`.checks`) and the
warehouse layout are built from it, so a column is added here and nowhere else.

>>> TABLES["veelgebruikers_plan"].required_columns
['patient_id', 'selected_on']
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .. import config
from ..identifiers import AGB_PATTERN, POSTCODE4_PATTERN, QUARTER_PATTERN, UZOVI_PATTERN

# ---------------------------------------------------------------------------------------
# The contract as data
# ---------------------------------------------------------------------------------------

TYPES = ("str", "int", "num", "date", "code")

#: Bounds for every date in a practice's tables: from this day to its extraction_date.
EARLIEST_DATE = pd.Timestamp("1900-01-01")
#: birth_year runs from this year to the extraction year.
EARLIEST_BIRTH_YEAR = 1890

DATE_EXPECTED = "a date as YYYY-MM-DD or DD-MM-YYYY (e.g. 2024-01-05)"
INT_EXPECTED = "a whole number (e.g. 12)"
NUM_EXPECTED = "a number with a decimal comma or point (e.g. 7,4 or 7.4)"


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a contract table.

    ``pattern`` (a full-match regular expression on the raw text) and ``pattern_expected``
    (what a user should write instead) hold the contract's format rules for ``str`` columns;
    ``codes`` holds the closed list of a ``code`` column.
    """

    name: str
    type: str
    required: bool = False
    codes: tuple[str, ...] = ()
    pattern: str | None = None
    pattern_expected: str | None = None
    unique: bool = False
    upper: bool = False  # accepted in either case, stored in upper case (ICPC, ATC)

    def __post_init__(self):
        if self.type not in TYPES:
            raise ValueError(f"column {self.name}: unknown type {self.type!r}")
        if (self.type == "code") != bool(self.codes):
            raise ValueError(f"column {self.name}: a code column needs codes, others none")


@dataclass(frozen=True)
class TableSpec:
    """One table of the contract: its file name, columns and the periods it holds."""

    name: str
    columns: tuple[ColumnSpec, ...]
    required: bool = False
    scope: str = "practice"  # "practice": extracts/<agb>/<name>.csv; "dataset": <name>.csv
    periods: tuple[tuple[str, str], ...] = ()  # (start, end): end not before start

    @property
    def file(self) -> str:
        return f"{self.name}.csv"

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> ColumnSpec:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


def _c(name, type_, required=False, **kw) -> ColumnSpec:
    return ColumnSpec(name, type_, required, **kw)


_AGB = dict(pattern=AGB_PATTERN, pattern_expected="an AGB code of 8 digits (e.g. 01234567)")
_UZOVI = dict(pattern=UZOVI_PATTERN, pattern_expected="a UZOVI code of 4 digits (e.g. 3311)")
_ICPC = dict(
    pattern=r"[A-Za-z][0-9]{2}(\.[0-9]{2})?",
    pattern_expected="an ICPC code: a letter, two digits, optional . and two digits (e.g. T90.02, K86)",
    upper=True,
)
_ATC = dict(
    pattern=r"[A-Za-z][0-9]{2}[A-Za-z0-9]*",
    pattern_expected="an ATC code of at least 3 characters: a letter and two digits first (e.g. A10BA02)",
    upper=True,
)
PROGRAMMES = ("DM2", "COPD", "CVRM", "ASTMA")
CONTACT_KINDS = ("consult", "consult_lang", "visite", "visite_lang", "telefonisch", "e-consult")
CONTACT_ROLES = ("huisarts", "poh-s", "poh-ggz", "assistent")
#: A veelgebruikers_plan profile while parameters/veelgebruikers.yaml does not exist (RE2 and re alike).
PROFILE_PATTERN = r"[a-z0-9_-]{1,40}"

TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in (
        TableSpec(
            "practices",
            (
                _c("practice_agb", "str", True, unique=True, **_AGB),
                _c("name", "str", True),
                _c("region", "str", True),
                _c("hagro", "str"),
                _c("his_system", "str"),
                _c("fte_gp", "num"),
                _c("extraction_date", "date", True),
            ),
            required=True,
            scope="dataset",
        ),
        TableSpec(
            "patients",
            (
                _c("patient_id", "str", True, unique=True),
                _c("birth_year", "int", True),
                _c("sex", "code", True, codes=("M", "V", "O")),
                _c("postcode4", "str", pattern=POSTCODE4_PATTERN, pattern_expected="a postcode area of 4 digits (e.g. 3511)"),
                _c("insurer_uzovi", "str", **_UZOVI),
                _c("registered_from", "date", True),
                _c("registered_until", "date"),
                _c("deceased_on", "date"),
            ),
            required=True,
            periods=(("registered_from", "registered_until"),),
        ),
        TableSpec(
            "episodes",
            (
                _c("patient_id", "str", True),
                _c("icpc", "str", True, **_ICPC),
                _c("start_date", "date", True),
                _c("end_date", "date"),
            ),
            periods=(("start_date", "end_date"),),
        ),
        TableSpec(
            "contacts",
            (
                _c("contact_id", "str", True, unique=True),
                _c("patient_id", "str", True),
                _c("date", "date", True),
                _c("kind", "code", True, codes=CONTACT_KINDS),
                _c("role", "code", True, codes=CONTACT_ROLES),
                _c("icpc", "str", **_ICPC),
            ),
        ),
        TableSpec(
            "measurements",
            (
                _c("patient_id", "str", True),
                _c("date", "date", True),
                _c("nhg_code", "int", True),
                _c("value", "str", True),
                _c("unit", "str"),
            ),
        ),
        TableSpec(
            "prescriptions",
            (
                _c("patient_id", "str", True),
                _c("date", "date", True),
                _c("atc", "str", True, **_ATC),
                _c("duration_days", "int"),
            ),
        ),
        TableSpec(
            "referrals",
            (
                _c("patient_id", "str", True),
                _c("date", "date", True),
                _c("specialism", "str", True),
                _c("icpc", "str", **_ICPC),
            ),
        ),
        TableSpec(
            "enrolments",
            (
                _c("patient_id", "str", True),
                _c("programme", "code", True, codes=PROGRAMMES),
                _c("start_date", "date", True),
                _c("end_date", "date"),
                _c("main_practitioner", "code", codes=("huisarts", "specialist")),
            ),
            periods=(("start_date", "end_date"),),
        ),
        TableSpec(
            "veelgebruikers_plan",  # version 2, optional: the frequent attenders in the practice's plan
            (
                _c("patient_id", "str", True, unique=True),
                _c("selected_on", "date", True),
                # Checked against the ids in parameters/veelgebruikers.yaml (see
                # checks.profile_problems); without that file any short code-like value is
                # accepted (this pattern), never free text.
                _c("profile", "str", pattern=PROFILE_PATTERN,
                   pattern_expected="a profile code: 1 to 40 of a-z, 0-9, _ or - (e.g. ggz)"),
                _c("ended_on", "date"),
            ),
            periods=(("selected_on", "ended_on"),),
        ),
        TableSpec(
            "payments",
            (
                _c("practice_agb", "str", True, **_AGB),
                _c("programme", "code", True, codes=PROGRAMMES),
                _c("quarter", "str", True, pattern=QUARTER_PATTERN, pattern_expected="a quarter as YYYYQn with n from 1 to 4 (e.g. 2025Q2)"),
                _c("insurer_uzovi", "str", **_UZOVI),
                _c("patients_declared", "int", True),
                _c("patients_awarded", "int", True),
                _c("amount_eur", "num", True),
                _c("paid_on", "date"),
                _c("invoice_number", "str"),
            ),
            scope="dataset",
        ),
    )
}

#: The tables of one practice's extraction, in load order (patients first: others refer to it).
PRACTICE_TABLES = ("patients", "episodes", "contacts", "measurements", "prescriptions", "referrals", "enrolments",
                   "veelgebruikers_plan")
#: Tables added by a later contract version: a delivery of an earlier version simply has none.
VERSION_2_TABLES = ("veelgebruikers_plan",)
#: The project's frequent-attender parameters; when present, ``profile`` must be one of its ids.
VEELGEBRUIKERS_FILE = config.PARAMETERS_DIR / "veelgebruikers.yaml"
#: Files whose absence is an error. Every other contract file may be missing and then has no rows.
REQUIRED_FILES = ("practices.csv", "patients.csv")
#: Files that may be missing (= no rows).
OPTIONAL_FILES = tuple(f"{t}.csv" for t in PRACTICE_TABLES if t != "patients") + ("payments.csv",)
