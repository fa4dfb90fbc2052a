"""The frequent-attender monitor's parameters (``parameters/veelgebruikers.yaml``), loaded and
validated: the profiles (placeholders, ``verified: false``), the regioprestatie's baseline
quarter (0-meting), the plan size and the chronic conditions shown per patient.

Who *is* a frequent attender is not here: that is the praktijkspiegel's rule
(``helpers.mirror.events``, shared through ``helpers.mirror.frequent``). This module only
reads data; the SQL of a criterion is built by ``helpers.reports.veelgebruikers``.

Every problem of the file is listed at once, one :class:`~helpers.errors.Problem` each:

>>> parse_veelgebruikers({"plan_size": 0, "profiles": [{"id": "X"}]}, "v.yaml", None)
Traceback (most recent call last):
...
helpers.errors.ConfigError: v.yaml, verified: expected true or false (verified is missing)
v.yaml, baseline_quarter: expected a quarter YYYYQn (baseline_quarter is missing); e.g. 2025Q3
v.yaml, plan_size: found '0', expected a whole number of patients, 1..50
v.yaml, profiles[0].id: found 'X', expected a profile id: 1 to 40 of a-z, 0-9, _ or -
v.yaml, profiles[0].title: expected a Dutch title (it is missing)
v.yaml, profiles[0].verified: expected true or false (verified is missing)
v.yaml, profiles[0]: expected at least one criterion under all or any

>>> params = load_veelgebruikers()
>>> params.plan_size, [p.id for p in params.profiles][:2]
(5, ['multimorbiditeit', 'ggz'])
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..config import PARAMETERS_DIR
from ..errors import ConfigError, ParameterError, Problem
from ..quarter import Quarter
from .codes import config_error, read_yaml

VEELGEBRUIKERS_FILE = PARAMETERS_DIR / "veelgebruikers.yaml"
#: a profile id, as the data contract accepts it in veelgebruikers_plan.csv
PROFILE_ID = re.compile(r"[a-z0-9_-]{1,40}")
#: an ICPC code in a criterion: a chapter (P), a code with sub-codes (P76, T90.02), or a
#: range of codes within one chapter (A01-A29)
ICPC_ITEM = re.compile(r"[A-Z]|[A-Z][0-9]{2}(\.[0-9]{2})?|[A-Z][0-9]{2}-[A-Z][0-9]{2}", re.ASCII)
KINDS = ("consult", "consult_lang", "visite", "visite_lang", "telefonisch", "e-consult")
ROLES = ("huisarts", "poh-s", "poh-ggz", "assistent")
#: criterion types and the bounds each one takes
CRITERIA = {"conditions": ("at_least", "at_most"), "episodes": ("at_least", "at_most"),
            "contacts": ("at_least", "at_most", "share_at_least"), "age": (),
            "peak_quarter": ("share_at_least",)}


@dataclass(frozen=True)
class Criterion:
    """One test on a frequent attender's rolling year (see the file's comments)."""
    kind: str                       # a key of CRITERIA
    groups: tuple[str, ...] = ()    # conditions: codes.yaml ICPC groups
    icpc: tuple[str, ...] = ()      # episodes, contacts: ICPC items
    kinds: tuple[str, ...] = ()     # contacts
    roles: tuple[str, ...] = ()     # contacts
    at_least: float | None = None
    at_most: float | None = None
    share_at_least: float | None = None
    age_at_least: int | None = None
    age_below: int | None = None


@dataclass(frozen=True)
class Profile:
    id: str
    title: str
    description: str
    verified: bool
    all: tuple[Criterion, ...] = ()
    any: tuple[Criterion, ...] = ()


@dataclass(frozen=True)
class VeelgebruikersParams:
    verified: bool
    source: str
    baseline_quarter: Quarter
    plan_size: int
    candidates_shown: int
    chronic_conditions: tuple[str, ...]
    profiles: tuple[Profile, ...]

    def profile(self, pid: str) -> Profile | None:
        return next((p for p in self.profiles if p.id == pid), None)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _criterion(c, where: str, groups: set[str] | None, problem) -> Criterion | None:
    if not isinstance(c, dict):
        problem(where, c, f"a criterion: a mapping with one of {', '.join(CRITERIA)}")
        return None
    kinds = [k for k in CRITERIA if k in c]
    if len(kinds) != 1:
        problem(where, ", ".join(map(str, c)) or None, f"exactly one of {', '.join(CRITERIA)}")
        return None
    kind = kinds[0]
    allowed = set(CRITERIA[kind]) | {kind}
    for key in c:
        if key not in allowed:
            problem(f"{where}.{key}", key, f"a key of a {kind} criterion: {', '.join(sorted(allowed))}")
    bounds = {b: c.get(b) for b in CRITERIA[kind] if c.get(b) is not None}
    for b, v in bounds.items():
        if not _number(v) or v < 0 or (b == "share_at_least" and v > 1):
            problem(f"{where}.{b}", v, "a share from 0 to 1" if b == "share_at_least" else "a number, 0 or more")
    if kind != "age" and not bounds:
        problem(where, None, f"a bound: {' or '.join(CRITERIA[kind])}")
    body = c[kind]
    out: dict = dict(kind=kind, **{b: float(v) for b, v in bounds.items() if _number(v)})

    def codes(values, key: str) -> tuple[str, ...]:
        if not isinstance(values, list) or not values:
            problem(key, values, "a non-empty list of ICPC codes (a chapter P, a code P76 or a range A01-A29)")
            return ()
        for v in values:
            if not isinstance(v, str) or not ICPC_ITEM.fullmatch(v) or ("-" in v and v[0] != v[4]):
                problem(key, v, "an ICPC chapter (P), code (P76, T90.02) or range within a chapter (A01-A29)")
        return tuple(str(v) for v in values)

    if kind == "conditions":
        if not isinstance(body, list) or not body:
            problem(f"{where}.conditions", body, "a non-empty list of ICPC groups of codes.yaml")
        else:
            for g in body:
                if groups is not None and g not in groups:
                    problem(f"{where}.conditions", g, "an ICPC group of codes.yaml")
            out["groups"] = tuple(map(str, body))
    elif kind == "episodes":
        out["icpc"] = codes(body, f"{where}.episodes")
    elif kind == "contacts":
        if not isinstance(body, dict):
            problem(f"{where}.contacts", body, "a mapping of filters: icpc, kinds, roles (may be empty: {})")
            body = {}
        for key in body:
            if key not in ("icpc", "kinds", "roles"):
                problem(f"{where}.contacts.{key}", key, "a contact filter: icpc, kinds or roles")
        if "icpc" in body:
            out["icpc"] = codes(body["icpc"], f"{where}.contacts.icpc")
        for key, vocab in (("kinds", KINDS), ("roles", ROLES)):
            if key in body:
                values = body[key] if isinstance(body[key], list) else [body[key]]
                for v in values:
                    if v not in vocab:
                        problem(f"{where}.contacts.{key}", v, f"one of {', '.join(vocab)}")
                out[key] = tuple(map(str, values))
    elif kind == "age":
        if not isinstance(body, dict) or not body or set(body) - {"at_least", "below"}:
            problem(f"{where}.age", body, "a mapping with at_least and/or below (whole years)")
        else:
            for key in body:
                if not isinstance(body[key], int) or isinstance(body[key], bool) or not 0 <= body[key] <= 130:
                    problem(f"{where}.age.{key}", body[key], "a whole number of years, 0..130")
            out["age_at_least"], out["age_below"] = body.get("at_least"), body.get("below")
    elif kind == "peak_quarter" and body not in ({}, None):
        problem(f"{where}.peak_quarter", body, "an empty mapping {} (the bound is share_at_least)")
    return Criterion(**out)


def parse_veelgebruikers(data: dict, source: str = str(VEELGEBRUIKERS_FILE), rules=None) -> VeelgebruikersParams:
    """Validate the mapping of ``veelgebruikers.yaml``; raise one ConfigError listing every
    problem. ``rules`` (``helpers.rules.programmes.Rules``) checks the ICPC groups against
    codes.yaml; None skips that check."""
    problems: list[Problem] = []

    def problem(key: str, value, expected: str, fix: str | None = None) -> None:
        problems.append(Problem(source, None, None, value, expected, fix=fix, key=key))

    groups = set(rules.codes.icpc) if rules is not None else None
    if not isinstance(data.get("verified"), bool):
        problem("verified", data.get("verified"), "true or false" + (" (verified is missing)" if "verified" not in data else ""))
    baseline = None
    if data.get("baseline_quarter") is None:
        problem("baseline_quarter", None, "a quarter YYYYQn (baseline_quarter is missing)", "e.g. 2025Q3")
    else:
        try:
            baseline = Quarter.parse(data["baseline_quarter"])
        except ParameterError:
            problem("baseline_quarter", data["baseline_quarter"], "a quarter YYYYQn", "e.g. 2025Q3")
    plan_size = data.get("plan_size")
    if not isinstance(plan_size, int) or isinstance(plan_size, bool) or not 1 <= plan_size <= 50:
        problem("plan_size", plan_size, "a whole number of patients, 1..50")
    shown = data.get("candidates_shown", 10)
    if not isinstance(shown, int) or isinstance(shown, bool) or not 1 <= shown <= 200:
        problem("candidates_shown", shown, "a whole number, 1..200")
    chronic = data.get("chronic_conditions") or []
    if not isinstance(chronic, list):
        problem("chronic_conditions", chronic, "a list of ICPC groups of codes.yaml")
        chronic = []
    for g in chronic:
        if groups is not None and g not in groups:
            problem("chronic_conditions", g, "an ICPC group of codes.yaml")
    profiles: list[Profile] = []
    raw = data.get("profiles")
    if not isinstance(raw, list) or not raw:
        problem("profiles", None if raw is None else type(raw).__name__, "a non-empty list of profiles, each with an id")
        raw = []
    seen: set[str] = set()
    for i, p in enumerate(raw):
        where = f"profiles[{i}]"
        if not isinstance(p, dict):
            problem(where, p, "a mapping with id, title, verified and criteria")
            continue
        pid = p.get("id")
        if not isinstance(pid, str) or not PROFILE_ID.fullmatch(pid):
            problem(f"{where}.id", pid, "a profile id: 1 to 40 of a-z, 0-9, _ or -")
        elif pid in seen:
            problem(f"{where}.id", pid, "an id of its own (it is used by an earlier profile)")
        seen.add(str(pid))
        if not p.get("title"):
            problem(f"{where}.title", None, "a Dutch title (it is missing)")
        if not isinstance(p.get("verified"), bool):
            problem(f"{where}.verified", p.get("verified"),
                    "true or false" + (" (verified is missing)" if "verified" not in p else ""),
                    None if "verified" not in p else "say verified: false until the profile is checked")
        for key in p:
            if key not in ("id", "title", "description", "verified", "all", "any"):
                problem(f"{where}.{key}", key, "a profile key: id, title, description, verified, all, any")
        parts = {}
        for part in ("all", "any"):
            items = p.get(part) or []
            if not isinstance(items, list):
                problem(f"{where}.{part}", type(items).__name__, "a list of criteria")
                items = []
            parts[part] = tuple(c for c in (_criterion(c, f"{where}.{part}[{j}]", groups, problem)
                                            for j, c in enumerate(items)) if c is not None)
        if not p.get("all") and not p.get("any"):
            problem(where, None, "at least one criterion under all or any")
        profiles.append(Profile(str(pid), str(p.get("title", pid)), str(p.get("description", "")),
                                bool(p.get("verified", False)), parts["all"], parts["any"]))
    for key in data:
        if key not in ("verified", "source", "baseline_quarter", "plan_size", "candidates_shown",
                       "chronic_conditions", "profiles"):
            problem(key, key, "a key of veelgebruikers.yaml: verified, source, baseline_quarter, plan_size, "
                              "candidates_shown, chronic_conditions, profiles")
    if problems:
        raise config_error(problems)
    return VeelgebruikersParams(bool(data["verified"]), str(data.get("source", "")), baseline, int(plan_size),
                                int(shown), tuple(map(str, chronic)), tuple(profiles))


def load_veelgebruikers(path: Path | str = VEELGEBRUIKERS_FILE, rules=None) -> VeelgebruikersParams:
    """Load and validate ``parameters/veelgebruikers.yaml`` (ICPC groups checked against
    codes.yaml through ``rules``, default the project's)."""
    from .programmes import load_programmes
    rules = rules or load_programmes()
    try:
        data = read_yaml(Path(path))
    except ConfigError:
        raise
    return parse_veelgebruikers(data, str(path), rules)
