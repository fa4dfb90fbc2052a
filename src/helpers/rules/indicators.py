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
from ..errors import IndicatorError
from .codes import AtcGroup, read_yaml
from .programmes import CONTRACT_PROGRAMMES, Rules

TYPES = ("process", "outcome", "structure")
REQUIRED = ("id", "title", "chain", "type", "numerator", "denominator", "target_pct", "low_is_good",
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
    #: the programme (keten) the indicator belongs to; ``chain`` in the indicator files and in the
    #: cube's ``indicators`` table (the published names, kept), one of programmes.yaml
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
def parse_indicator(data: dict, source: str, rules: Rules) -> tuple[Indicator | None, list[str]]:
    """Validate one definition; return it (or None) and its problems."""
    problems = []
    where = source
    for key in REQUIRED:
        if key not in data:
            problems.append(f"{where}: {key} is missing")
    if problems:
        return None, problems
    iid = str(data["id"])
    if Path(source).stem != iid:
        problems.append(f"{where}: id {iid!r} must equal the file name ({Path(source).stem!r})")
    if data["chain"] not in CONTRACT_PROGRAMMES:
        problems.append(f"{where}: chain {data['chain']!r} is not one of {', '.join(CONTRACT_PROGRAMMES)}")
    elif data["chain"] not in rules.programmes:
        problems.append(f"{where}: chain {data['chain']!r} is not a programme of programmes.yaml "
                        f"({', '.join(rules.programme_ids)})")
    if data["type"] not in TYPES:
        problems.append(f"{where}: type {data['type']!r} is not one of {', '.join(TYPES)}")
    if data["numerator"] not in NUMERATOR_NAMES:
        problems.append(f"{where}: numerator {data['numerator']!r} is not a known name ({', '.join(NUMERATOR_NAMES)})")
    if data["denominator"] not in DENOMINATOR_NAMES:
        problems.append(f"{where}: denominator {data['denominator']!r} is not a known name ({', '.join(DENOMINATOR_NAMES)})")
    concepts = tuple(data.get("concepts") or ())
    for c in concepts:
        if c not in rules.codes.measurements:
            problems.append(f"{where}: concept {c!r} is not in codes.yaml")
    if (data["numerator"] != "prescribed" or data["denominator"] == "measured") and not concepts:
        problems.append(f"{where}: name the measurement concepts")
    thresholds = []
    for t in data.get("thresholds") or []:
        try:
            thresholds.append(Threshold(float(t["value"]), t.get("min_age"), t.get("max_age"), t.get("group")))
        except (KeyError, TypeError, ValueError):
            problems.append(f"{where}: threshold {t!r} needs a numeric value")
            continue
        if t.get("group") and t["group"] not in rules.codes.icpc:
            problems.append(f"{where}: threshold group {t['group']!r} is not an ICPC group in codes.yaml")
    if data["numerator"] in NEEDS_THRESHOLD and not thresholds:
        problems.append(f"{where}: numerator {data['numerator']} needs thresholds")
    if thresholds and any(t.min_age or t.max_age or t.group for t in thresholds[-1:]):
        problems.append(f"{where}: the last threshold must be unconditional (it is the default)")
    if data["numerator"] == "last_value_in" and not data.get("values"):
        problems.append(f"{where}: numerator last_value_in needs values")
    if data["numerator"] == "prescribed" and data.get("atc") not in rules.codes.atc:
        problems.append(f"{where}: atc {data.get('atc')!r} is not an ATC group in codes.yaml")
    if data.get("group") and data["group"] not in rules.codes.icpc:
        problems.append(f"{where}: group {data['group']!r} is not an ICPC group in codes.yaml")
    wm = data.get("window_months", 12)
    if not isinstance(wm, int) or not 1 <= wm <= 120:
        problems.append(f"{where}: window_months {wm!r} must be 1..120")
    tp = data["target_pct"]
    if tp is not None and (not isinstance(tp, (int, float)) or not 0 <= tp <= 100):
        problems.append(f"{where}: target_pct {tp!r} must be a percentage")
    if not isinstance(data["low_is_good"], bool):
        problems.append(f"{where}: low_is_good must be true or false")
    if problems:
        return None, problems
    reviewed_on = data["reviewed_on"]
    if isinstance(reviewed_on, date):
        reviewed_on = reviewed_on.isoformat()
    return Indicator(
        iid, str(data["title"]), data["chain"], data["type"], data["numerator"], data["denominator"],
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
    problems, out = [], {}
    files = sorted(Path(directory).glob("*.yaml"))
    if not files:
        raise IndicatorError(f"{directory}: no indicator files (*.yaml) found")
    for f in files:
        try:
            data = read_yaml(f)
        except Exception as exc:  # ConfigError with the YAML problem
            problems.append(str(exc))
            continue
        ind, probs = parse_indicator(data, f.name, rules)
        problems += probs
        if ind:
            out[ind.id] = ind
    if problems:
        body = "\n".join(f"  - {p}" for p in problems)
        raise IndicatorError(f"{directory}: {len(problems)} problem(s) in the indicator definitions\n{body}")
    # report order: programme (as in programmes.yaml), then grouped by measurement (as listed in codes.yaml), process first
    concept_order = {c: i for i, c in enumerate(rules.codes.measurements)}
    type_order = {t: i for i, t in enumerate(TYPES)}

    def key(ind: Indicator):
        first = concept_order.get(ind.concepts[0], 99) if ind.concepts else 99
        return (rules.programme_ids.index(ind.programme), first, type_order[ind.type], ind.id)
    return {i.id: i for i in sorted(out.values(), key=key)}


