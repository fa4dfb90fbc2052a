"""Praktijkspiegel measures: one YAML file per figure in ``parameters/mirror/``, loaded and validated.

A definition names the event it counts by the name of a helper in
:mod:`helpers.mirror.events` (``EVENTS``) with that helper's arguments (contact kinds and
roles, specialisms, ATC prefixes, measurement concepts, ICPC condition groups), so every
definition is plain data and every piece of logic is tested code. The loader checks every
file and raises one :class:`MeasureError` that lists all problems of all files.

>>> defs = load_measures()
>>> defs["antibiotica"].atc, defs["antibiotica"].unit
(('J01',), 'patients_per_1000')
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from ..config import PARAMETERS_DIR
from ..contract.tables import CONTACT_KINDS, CONTACT_ROLES
from ..errors import ConfigError, Problem
from ..rules.codes import ATC_RE, read_yaml
from ..rules.programmes import Rules, load_programmes

MIRROR_DIR = PARAMETERS_DIR / "mirror"
REFERENCE_DIR = PARAMETERS_DIR / "reference"

#: report sections, in report order
SECTIONS = ("populatie", "contacten", "verwijzingen", "voorschrijven", "diagnostiek", "veelgebruikers")
#: unit id -> (multiplier of O/D, Dutch label)
UNITS = {
    "per_patient_year": (1.0, "per patiëntjaar"),
    "per_1000_patient_years": (1000.0, "per 1.000 patiëntjaren"),
    "patients_per_1000": (1000.0, "patiënten per 1.000 patiëntjaren"),
    "percent": (100.0, "%"),
}
#: the denominators a measure may have besides ``share_of`` another measure
DENOMINATORS = ("patient_years", "patients")
#: event helper -> the arguments it needs (see helpers.mirror.events)
EVENTS = {
    "contacts": ("kinds", "roles"),
    "referrals": ("specialisms",),
    "prescription_patients": ("atc",),
    "measurements": ("concepts",),
    "prevalence": ("conditions",),
    "multimorbidity": ("conditions",),
    "frequent_attenders": (),
    "frequent_attender_contacts": (),
    "persistent_frequent_attenders": (),
}
#: the specialisms the contract names (spec/his-extract.md, referrals.csv), as the
#: warehouse compares them: lower case, trimmed
SPECIALISMS = ("cardiologie", "interne geneeskunde", "longziekten", "oogheelkunde", "dermatologie",
               "orthopedie", "neurologie", "chirurgie", "kno", "gynaecologie", "ggz", "fysiotherapie",
               "dietetiek")
#: national figures of these statuses may be shown (national-figures.md: seen, derived)
NATIONAL_STATUSES = ("V", "D")
REQUIRED = ("id", "title", "section", "unit", "event", "standardised", "source", "reviewed_by", "reviewed_on")
KNOWN = set(REQUIRED) | {"why", "kinds", "roles", "specialisms", "exclude_specialisms", "atc", "concepts",
                         "conditions", "min_conditions", "denominator", "share_of", "national", "trend"}


@dataclass(frozen=True)
class National:
    """A national reference rate, in the measure's unit, with where it comes from."""
    value: float
    year: int
    status: str
    source: str
    note: str
    path: str
    id: str


@dataclass(frozen=True)
class Measure:
    id: str
    title: str
    section: str
    unit: str
    event: str
    standardised: bool
    denominator: str  # patient_years | patients | the id of the measure this is a share of
    kinds: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    specialisms: tuple[str, ...] = ()
    exclude_specialisms: bool = False
    atc: tuple[str, ...] = ()
    concepts: tuple[str, ...] = ()
    nhg: tuple[int, ...] = ()
    conditions: tuple[str, ...] = ()
    #: per condition, the ICPC groups of codes.yaml that make it (a programme: its inclusion groups)
    condition_groups: tuple[tuple[str, ...], ...] = ()
    min_conditions: int = 1
    national: National | None = None
    trend: bool = False
    why: str = ""
    source: str = ""
    reviewed_by: str = ""
    reviewed_on: str = ""

    @property
    def multiplier(self) -> float:
        return UNITS[self.unit][0]

    @property
    def unit_label(self) -> str:
        return UNITS[self.unit][1]

    @property
    def share_of(self) -> str | None:
        return None if self.denominator in DENOMINATORS else self.denominator


class MeasureError(ConfigError):
    """One or more praktijkspiegel measure files are wrong; holds every problem found."""

    def __init__(self, problems: list[Problem], directory: Path | str = MIRROR_DIR):
        self.problems = list(problems)
        body = "\n".join(f"  - {p.describe()}" for p in self.problems)
        super().__init__(f"{directory}: {len(self.problems)} problem(s) in the mirror measures\n{body}")


def _tuple(value) -> tuple:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def _national(spec, where: str, unit: str, problems: list[Problem], reference_dir: Path) -> National | None:
    if spec is None:
        return None
    if not isinstance(spec, dict) or not {"path", "id"} <= set(spec):
        problems.append(Problem(where, None, "national", spec, "a mapping with path (under parameters/reference/) and id"))
        return None
    path = reference_dir / str(spec["path"])
    if not path.is_file():
        problems.append(Problem(where, None, "national", spec["path"], f"a file in {reference_dir.name}/"))
        return None
    with path.open(encoding="utf-8") as fh:
        rows = {r["id"]: r for r in csv.DictReader(fh, delimiter=";")}
    row = rows.get(str(spec["id"]))
    if row is None:
        problems.append(Problem(where, None, "national", spec["id"], f"the id of a row of {path.name}"))
        return None
    if row.get("status") not in NATIONAL_STATUSES:
        problems.append(Problem(where, None, "national", f"{spec['id']} ({row.get('status')})",
                                "a figure marked V (seen) or D (derived): an estimate is never a national figure"))
        return None
    if row.get("unit") != unit:
        problems.append(Problem(where, None, "national", f"{spec['id']} in {row.get('unit')}",
                                f"a figure in the measure's unit {unit}"))
        return None
    try:
        return National(float(row["value"]), int(row["year"]), row["status"], row["source"], row.get("note") or "",
                        str(spec["path"]), str(spec["id"]))
    except (TypeError, ValueError):
        problems.append(Problem(path.name, None, "value", row.get("value"), "a number and a year"))
        return None


def parse_measure(data: dict, source: str, rules: Rules,
                  reference_dir: Path = REFERENCE_DIR) -> tuple[Measure | None, list[Problem]]:
    """Validate one definition; return it (or None) and its problems."""
    where = source
    codes = rules.codes
    problems = [Problem(where, None, key, None, f"{key} (it is missing)") for key in REQUIRED if key not in data]
    missing = bool(problems)
    data = {**{k: None for k in REQUIRED if k not in data}, **data}
    P = lambda col, val, exp: problems.append(Problem(where, None, col, val, exp))  # noqa: E731
    for key in sorted(set(data) - KNOWN):
        P(key, data[key], f"one of the known keys ({', '.join(sorted(KNOWN))})")
    mid = str(data["id"])
    if data["id"] is not None and Path(source).stem != mid:
        P("id", mid, f"the file name ({Path(source).stem!r})")
    if data["section"] is not None and data["section"] not in SECTIONS:
        P("section", data["section"], f"one of {', '.join(SECTIONS)}")
    if data["unit"] not in UNITS and data["unit"] is not None:
        P("unit", data["unit"], f"one of {', '.join(UNITS)}")
    event = data["event"]
    if event not in EVENTS and event is not None:
        P("event", event, f"a named event ({', '.join(EVENTS)})")
    if not isinstance(data["standardised"], bool) and data["standardised"] is not None:
        P("standardised", data["standardised"], "true or false")
    kinds, roles = _tuple(data.get("kinds")), _tuple(data.get("roles"))
    specialisms = tuple(str(s).strip().lower() for s in _tuple(data.get("specialisms")))
    atc = tuple(str(a).upper() for a in _tuple(data.get("atc")))
    concepts, conditions = _tuple(data.get("concepts")), _tuple(data.get("conditions"))
    for k in kinds:
        if k not in CONTACT_KINDS:
            P("kinds", k, f"a contact kind of the contract ({', '.join(CONTACT_KINDS)})")
    for r in roles:
        if r not in CONTACT_ROLES:
            P("roles", r, f"a contact role of the contract ({', '.join(CONTACT_ROLES)})")
    for s in specialisms:
        if s not in SPECIALISMS:
            P("specialisms", s, f"a specialism of the contract ({', '.join(SPECIALISMS)})")
    for a in atc:
        if not (ATC_RE.fullmatch(a) or (len(a) == 1 and a.isalpha())):
            P("atc", a, "an ATC prefix: a main group letter or a code such as J01 or J01CR02")
    for c in concepts:
        if c not in codes.measurements:
            P("concepts", c, "a measurement concept of parameters/codes.yaml")
    for c in conditions:
        if c not in codes.icpc and c not in rules.programmes:
            P("conditions", c, "an ICPC group of parameters/codes.yaml or a programme of programmes.yaml")
    args = {"kinds": kinds, "roles": roles, "specialisms": specialisms, "atc": atc, "concepts": concepts,
            "conditions": conditions}
    for needed in EVENTS.get(event, ()):
        if not args[needed]:
            P(needed, None, f"{needed} for event {event}")
    min_conditions = data.get("min_conditions", 2 if event == "multimorbidity" else 1)
    if not isinstance(min_conditions, int) or min_conditions < 1:
        P("min_conditions", min_conditions, "a whole number of at least 1")
    denominator = data.get("denominator", "patient_years")
    if data.get("share_of") is not None:
        denominator = str(data["share_of"])
    elif denominator not in DENOMINATORS:
        P("denominator", denominator, f"one of {', '.join(DENOMINATORS)} (or share_of a measure)")
    exclude = data.get("exclude_specialisms", False)
    if not isinstance(exclude, bool):
        P("exclude_specialisms", exclude, "true or false")
    national = _national(data.get("national"), where, str(data["unit"]), problems, reference_dir)
    if problems or missing:
        return None, problems
    reviewed_on = data["reviewed_on"]
    if isinstance(reviewed_on, date):
        reviewed_on = reviewed_on.isoformat()
    return Measure(
        id=mid, title=str(data["title"]), section=data["section"], unit=data["unit"], event=event,
        standardised=data["standardised"], denominator=denominator, kinds=kinds, roles=roles,
        specialisms=specialisms, exclude_specialisms=exclude, atc=atc, concepts=concepts,
        nhg=tuple(codes.measurements[c].nhg for c in concepts), conditions=conditions,
        condition_groups=tuple(rules.programmes[c].inclusion if c in rules.programmes else (c,) for c in conditions),
        min_conditions=min_conditions, national=national, trend=bool(data.get("trend", False)),
        why=str(data.get("why", "")), source=str(data["source"]), reviewed_by=str(data["reviewed_by"]),
        reviewed_on=str(reviewed_on),
    ), []


def load_measures(directory: Path = MIRROR_DIR, rules: Rules | None = None,
                  reference_dir: Path = REFERENCE_DIR) -> dict[str, Measure]:
    """Load every ``*.yaml`` in ``directory``, in report order (section, then file name);
    one :class:`MeasureError` lists all problems of all files."""
    rules = rules or load_programmes()
    files = sorted(Path(directory).glob("*.yaml"))
    if not files:
        raise MeasureError([Problem(str(directory), None, None, None, "measure files (*.yaml)")], directory)
    problems: list[Problem] = []
    out: dict[str, Measure] = {}
    for f in files:
        try:
            data = read_yaml(f)
        except ConfigError as exc:
            problems.append(Problem(f.name, None, None, None, f"valid YAML ({exc})"))
            continue
        if not isinstance(data, dict):
            problems.append(Problem(f.name, None, None, type(data).__name__, "a mapping of keys"))
            continue
        m, probs = parse_measure(data, f.name, rules, reference_dir)
        problems += probs
        if m:
            out[m.id] = m
    for m in out.values():
        if m.share_of and m.share_of not in out:
            problems.append(Problem(f"{m.id}.yaml", None, "share_of", m.share_of, "the id of another measure"))
        elif m.share_of and out[m.share_of].share_of:
            problems.append(Problem(f"{m.id}.yaml", None, "share_of", m.share_of, "a measure that is not itself a share"))
    if problems:
        raise MeasureError(problems, directory)
    return dict(sorted(out.items(), key=lambda kv: (SECTIONS.index(kv[1].section), kv[0])))
