"""Quality indicators: one YAML file per indicator in ``parameters/indicators/``, loaded and validated.

Definitions refer to numerators and denominators *by name*; the names are those of
``NUMERATOR_NAMES`` and ``DENOMINATOR_NAMES`` below, each one a tested SQL builder in
:mod:`helpers.cube.indicators` (``NUMERATORS``, ``DENOMINATORS``), so every definition is plain
data and every piece of logic is code (OpenPrescribing's lesson: no SQL in data files).

>>> defs = load_indicators()
>>> defs["dm2_hba1c_on_target"].thresholds[0].value
53.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from ..config import INDICATORS_DIR
from ..errors import ConfigError, IndicatorError, Problem
from .codes import AtcGroup, config_error, read_yaml
from .programmes import CONTRACT_PROGRAMMES, Rules

TYPES = ("process", "outcome", "structure")
REQUIRED = ("id", "title", "programme", "type", "numerator", "denominator", "target_pct", "low_is_good",
            "source", "reviewed_by", "reviewed_on")


@dataclass(frozen=True)
class Threshold:
    """A cut-off that applies when the patient matches (first matching threshold wins)."""
    value: float
    min_age: int | None = None
    max_age: int | None = None
    group: str | None = None


@dataclass(frozen=True)
class Indicator:
    id: str
    title: str
    #: the programme (keten) the indicator belongs to, one of programmes.yaml
    programme: str
    type: str
    numerator: str
    denominator: str
    concepts: tuple[str, ...]
    window_months: int
    thresholds: tuple[Threshold, ...]
    values: tuple[str, ...]
    atc: str | None
    group: str | None
    min_age: int | None
    max_age: int | None
    target_pct: float | None
    low_is_good: bool
    source: str
    why: str
    denominator_note: str
    reviewed_by: str
    reviewed_on: str
    #: the ATC group of ``atc`` from codes.yaml, resolved when loaded (numerator ``prescribed``)
    atc_group: AtcGroup | None = field(default=None, compare=False, repr=False)


#: The named denominators and numerators a definition may use (their SQL: helpers.cube.indicators).
DENOMINATOR_NAMES = ("enrolled", "measured")
NUMERATOR_NAMES = ("measured", "last_value_at_most", "last_value_below", "last_value_at_least",
                   "last_value_above", "last_value_in", "prescribed")
NEEDS_THRESHOLD = frozenset({"last_value_at_most", "last_value_below", "last_value_at_least", "last_value_above"})


# ---------------------------------------------------------------- loading
def parse_indicator(data: dict, source: str, rules: Rules) -> tuple[Indicator | None, list[Problem]]:
    """Validate one definition; return it (or None) and its problems (``file`` is ``source``).

    >>> ind, problems = parse_indicator({"id": "x"}, "x.yaml", None)
    >>> ind, problems[0].describe()
    (None, 'x.yaml, title: expected title (it is missing)')
    """
    problems: list[Problem] = []

    def problem(key: str, value, expected: str, fix: str | None = None) -> None:
        problems.append(Problem(source, None, None, value, expected, fix=fix, key=key))

    for key in REQUIRED:
        if key not in data:
            problem(key, None, f"{key} (it is missing)")
    if problems:
        return None, problems
    iid = str(data["id"])
    if Path(source).stem != iid:
        problem("id", iid, f"the file name ({Path(source).stem!r})")
    if data["programme"] not in CONTRACT_PROGRAMMES:
        problem("programme", data["programme"], f"one of {', '.join(CONTRACT_PROGRAMMES)}")
    elif data["programme"] not in rules.programmes:
        problem("programme", data["programme"], f"a programme of programmes.yaml ({', '.join(rules.programme_ids)})")
    if data["type"] not in TYPES:
        problem("type", data["type"], f"one of {', '.join(TYPES)}")
    if data["numerator"] not in NUMERATOR_NAMES:
        problem("numerator", data["numerator"], f"a known numerator name ({', '.join(NUMERATOR_NAMES)})")
    if data["denominator"] not in DENOMINATOR_NAMES:
        problem("denominator", data["denominator"], f"a known denominator name ({', '.join(DENOMINATOR_NAMES)})")
    concepts = tuple(data.get("concepts") or ())
    for c in concepts:
        if c not in rules.codes.measurements:
            problem("concepts", c, "a measurement concept of codes.yaml")
    if (data["numerator"] != "prescribed" or data["denominator"] == "measured") and not concepts:
        problem("concepts", None, "the measurement concepts (none are named)")
    thresholds = []
    for i, t in enumerate(data.get("thresholds") or []):
        try:
            thresholds.append(Threshold(float(t["value"]), t.get("min_age"), t.get("max_age"), t.get("group")))
        except (KeyError, TypeError, ValueError):
            problem(f"thresholds[{i}]", t, "a threshold with a numeric value")
            continue
        if t.get("group") and t["group"] not in rules.codes.icpc:
            problem(f"thresholds[{i}].group", t["group"], "an ICPC group of codes.yaml")
    if data["numerator"] in NEEDS_THRESHOLD and not thresholds:
        problem("thresholds", None, f"thresholds (numerator {data['numerator']} needs them)")
    if thresholds and any(t.min_age or t.max_age or t.group for t in thresholds[-1:]):
        problem("thresholds", None, "an unconditional last threshold (it is the default)",
                "drop min_age, max_age and group from the last threshold")
    if data["numerator"] == "last_value_in" and not data.get("values"):
        problem("values", None, "values (numerator last_value_in needs them)")
    if data["numerator"] == "prescribed" and data.get("atc") not in rules.codes.atc:
        problem("atc", data.get("atc"), "an ATC group of codes.yaml (numerator prescribed needs one)")
    if data.get("group") and data["group"] not in rules.codes.icpc:
        problem("group", data["group"], "an ICPC group of codes.yaml")
    wm = data.get("window_months", 12)
    if not isinstance(wm, int) or not 1 <= wm <= 120:
        problem("window_months", wm, "a whole number of months, 1..120")
    tp = data["target_pct"]
    if tp is not None and (not isinstance(tp, (int, float)) or not 0 <= tp <= 100):
        problem("target_pct", tp, "a percentage (0..100) or null")
    if not isinstance(data["low_is_good"], bool):
        problem("low_is_good", data["low_is_good"], "true or false")
    if problems:
        return None, problems
    reviewed_on = data["reviewed_on"]
    if isinstance(reviewed_on, date):
        reviewed_on = reviewed_on.isoformat()
    return Indicator(
        iid, str(data["title"]), data["programme"], data["type"], data["numerator"], data["denominator"],
        concepts, int(wm), tuple(thresholds), tuple(str(v) for v in data.get("values") or ()),
        data.get("atc"), data.get("group"), data.get("min_age"), data.get("max_age"),
        None if tp is None else float(tp), data["low_is_good"], str(data["source"]), str(data.get("why", "")),
        str(data.get("denominator_note", "")), str(data["reviewed_by"]), str(reviewed_on),
        rules.codes.atc.get(data.get("atc")) if data["numerator"] == "prescribed" else None,
    ), []


def load_indicators(rules: Rules | None = None, directory: Path = INDICATORS_DIR) -> dict[str, Indicator]:
    """Load every ``*.yaml`` in ``directory``; one IndicatorError lists all problems of all files."""
    from .programmes import load_programmes
    rules = rules or load_programmes()
    problems: list[Problem] = []
    out: dict[str, Indicator] = {}
    files = sorted(Path(directory).glob("*.yaml"))
    if not files:
        raise config_error([Problem(str(directory), None, None, None, "indicator files (*.yaml)")], IndicatorError)
    for f in files:
        try:
            data = read_yaml(f)
        except ConfigError as exc:  # the file is missing, not YAML or not a mapping
            problems += getattr(exc, "problems", None) or [Problem(str(f), None, None, None, f"valid YAML ({exc})")]
            continue
        ind, probs = parse_indicator(data, str(f), rules)
        problems += probs
        if ind:
            out[ind.id] = ind
    if problems:
        raise config_error(problems, IndicatorError)
    # report order: programme (as in programmes.yaml), then grouped by measurement (as listed in codes.yaml), process first
    concept_order = {c: i for i, c in enumerate(rules.codes.measurements)}
    type_order = {t: i for i, t in enumerate(TYPES)}

    def key(ind: Indicator):
        first = concept_order.get(ind.concepts[0], 99) if ind.concepts else 99
        return (rules.programme_ids.index(ind.programme), first, type_order[ind.type], ind.id)
    return {i.id: i for i in sorted(out.values(), key=key)}


