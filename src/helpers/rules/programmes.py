"""Chain-care rules from ``parameters/programmes.yaml``: who belongs in which chain, what is due when.

>>> rules = load_programmes()
>>> [p.id for p in rules.programmes.values()]
['DM2', 'CVRM', 'COPD', 'ASTMA']
>>> rules.programmes["DM2"].controls[0].concepts
('hba1c',)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .codes import Codes, load_codes, read_yaml
from ..config import PROGRAMMES_FILE
from ..errors import ConfigError

PROGRAMME_IDS = ("DM2", "COPD", "CVRM", "ASTMA")
CONTACT_ROLES = ("huisarts", "poh-s", "poh-ggz", "assistent")


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
        if pid not in PROGRAMME_IDS:
            problems.append(f"{where}: unknown programme (the contract knows {', '.join(PROGRAMME_IDS)})")
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
