"""Chain-care programme rules from ``parameters/programmes.yaml``: who belongs in which
programme (keten), what is due when.

The programmes and their order (the order every report, table and sort uses) are those of
``programmes.yaml``: ``Rules.programme_ids``. Which programme codes a delivery may contain at all
is the data contract's (``helpers.contract.tables.PROGRAMMES``); a programme in the YAML must be one.

>>> rules = load_programmes()
>>> rules.programme_ids
('DM2', 'CVRM', 'COPD', 'ASTMA')
>>> rules.programmes["DM2"].controls[0].concepts
('hba1c',)
>>> rules.exclusions()
(('CVRM', 'DM2'),)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .codes import Codes, load_codes, read_yaml
from ..config import PROGRAMMES_FILE
from ..contract.tables import CONTACT_ROLES
from ..contract.tables import PROGRAMMES as CONTRACT_PROGRAMMES
from ..errors import ConfigError


@dataclass(frozen=True)
class Control:
    id: str
    concepts: tuple[str, ...]
    interval_months: int


@dataclass(frozen=True)
class Programme:
    id: str
    title: str
    inclusion: tuple[str, ...]
    supporting: tuple[str, ...]
    excluded_if: tuple[str, ...]
    max_inclusion_pct: float
    annual_tariff_eur: float
    controls: tuple[Control, ...]

    @property
    def diagnosis_groups(self) -> tuple[str, ...]:
        return self.inclusion + self.supporting


@dataclass(frozen=True)
class Rules:
    minimum_age: int
    chain_contact_roles: tuple[str, ...]
    chain_contact_months: int
    programmes: dict[str, Programme]
    codes: Codes

    @property
    def programme_ids(self) -> tuple[str, ...]:
        """The programmes in the order of programmes.yaml (the order reports show them in)."""
        return tuple(self.programmes)

    def exclusions(self) -> tuple[tuple[str, str], ...]:
        """``(excluded, covering)`` pairs: a patient enrolled in ``covering`` does not belong in
        ``excluded``, because an ICPC group of ``excluded``'s ``excluded_if`` is one that
        ``covering`` includes (CVRM excludes dm2, the inclusion of DM2). Enrolled in both is a
        finding (``enrolled_dm2_and_cvrm``); this is the one place the rule is read from."""
        return tuple((p.id, q.id) for p in self.programmes.values() for q in self.programmes.values()
                     if q.id != p.id and set(p.excluded_if) & set(q.inclusion))


def parse_programmes(data: dict, codes: Codes, path: Path = PROGRAMMES_FILE) -> Rules:
    """Validate the rules against the code lists; one ConfigError lists every problem."""
    problems: list[str] = []
    min_age = data.get("minimum_age", 18)
    if not isinstance(min_age, int) or not 0 <= min_age <= 120:
        problems.append(f"minimum_age: {min_age!r} is not an age in years")
        min_age = 18
    roles = tuple(data.get("chain_contact_roles") or ())
    for r in roles:
        if r not in CONTACT_ROLES:
            problems.append(f"chain_contact_roles: {r!r} is not a contract role ({', '.join(CONTACT_ROLES)})")
    months = data.get("chain_contact_months", 12)
    if not isinstance(months, int) or months <= 0:
        problems.append(f"chain_contact_months: {months!r} must be a positive whole number")
        months = 12

    programmes: dict[str, Programme] = {}
    for pid, p in (data.get("programmes") or {}).items():
        where = f"programmes.{pid}"
        if pid not in CONTRACT_PROGRAMMES:
            problems.append(f"{where}: unknown programme (the contract knows {', '.join(CONTRACT_PROGRAMMES)})")
        if not isinstance(p, dict):
            problems.append(f"{where}: expected a mapping")
            continue
        groups = {}
        for key in ("inclusion", "supporting", "excluded_if"):
            groups[key] = tuple(p.get(key) or ())
            for g in groups[key]:
                if g not in codes.icpc:
                    problems.append(f"{where}.{key}: {g!r} is not an ICPC group in codes.yaml")
        if not groups["inclusion"]:
            problems.append(f"{where}.inclusion: name at least one ICPC group")
        controls = []
        seen = set()
        for i, c in enumerate(p.get("controls") or []):
            cid = (c or {}).get("id")
            if not cid or cid in seen:
                problems.append(f"{where}.controls[{i}]: id {cid!r} missing or repeated")
            seen.add(cid)
            concepts = tuple((c or {}).get("concepts") or ())
            if not concepts:
                problems.append(f"{where}.controls[{i}] ({cid}): name at least one concept")
            for k in concepts:
                if k not in codes.measurements:
                    problems.append(f"{where}.controls[{i}] ({cid}): concept {k!r} is not in codes.yaml measurements")
            iv = (c or {}).get("interval_months")
            if not isinstance(iv, int) or not 1 <= iv <= 120:
                problems.append(f"{where}.controls[{i}] ({cid}): interval_months {iv!r} must be 1..120")
                iv = 12
            controls.append(Control(str(cid), concepts, iv))
        cap = p.get("max_inclusion_pct")
        if not isinstance(cap, (int, float)) or not 0 < cap <= 100:
            problems.append(f"{where}.max_inclusion_pct: {cap!r} must be a percentage in (0, 100]")
            cap = 100.0
        tariff = p.get("annual_tariff_eur")
        if not isinstance(tariff, (int, float)) or tariff < 0:
            problems.append(f"{where}.annual_tariff_eur: {tariff!r} must be a non-negative amount")
            tariff = 0.0
        programmes[pid] = Programme(
            pid, str(p.get("title", pid)), groups["inclusion"], groups["supporting"],
            groups["excluded_if"], float(cap), float(tariff), tuple(controls),
        )
    if not programmes:
        problems.append("programmes: none defined")
    if problems:
        body = "\n".join(f"  - {x}" for x in problems)
        raise ConfigError(f"{path}: {len(problems)} problem(s)\n{body}\n  Fix: edit {Path(path).name} and run again.")
    return Rules(min_age, roles, months, programmes, codes)


@lru_cache(maxsize=8)
def load_programmes(path: Path = PROGRAMMES_FILE, codes_path: Path | None = None) -> Rules:
    """Load and validate ``parameters/programmes.yaml`` together with the code lists."""
    codes = load_codes(codes_path) if codes_path else load_codes()
    return parse_programmes(read_yaml(Path(path)), codes, Path(path))
