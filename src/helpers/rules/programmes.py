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

from .codes import Codes, config_error, load_codes, read_yaml
from .contracts import Contracts, load_contracts
from ..config import CONTRACTS_FILE, PROGRAMMES_FILE
from ..contract.tables import CONTACT_ROLES
from ..contract.tables import PROGRAMMES as CONTRACT_PROGRAMMES
from ..errors import Problem


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
    #: the care group's maximum inclusion (% of the list), from contracts.yaml ``defaults``
    #: (the HIS-analyse and the cube summary show it); the insurers' own caps and the tariffs
    #: are per contract: helpers.rules.contracts
    max_inclusion_pct: float
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


def parse_programmes(data: dict, codes: Codes, path: Path = PROGRAMMES_FILE,
                     contracts: Contracts | None = None) -> Rules:
    """Validate the rules against the code lists; one ConfigError lists every problem (one line each).

    Each programme's ``max_inclusion_pct`` is the care group's cap of ``contracts`` (default:
    parameters/contracts.yaml, its ``defaults``); programmes.yaml itself holds no cap or tariff.

    >>> parse_programmes({"minimum_age": -1}, load_codes(), Path("programmes.yaml"))
    Traceback (most recent call last):
    ...
    helpers.errors.ConfigError: programmes.yaml, minimum_age: found '-1', expected an age in years (0..120)
    programmes.yaml, programmes: expected at least one programme (none defined)
    """
    problems: list[Problem] = []
    contracts = contracts or load_contracts()
    caps = {p: float(v) for p, v in contracts.default_max_inclusion_pct.items()}

    def problem(key: str, value, expected: str, fix: str | None = None) -> None:
        problems.append(Problem(str(path), None, None, value, expected, fix=fix, key=key))

    min_age = data.get("minimum_age", 18)
    if not isinstance(min_age, int) or not 0 <= min_age <= 120:
        problem("minimum_age", min_age, "an age in years (0..120)")
        min_age = 18
    roles = tuple(data.get("chain_contact_roles") or ())
    for r in roles:
        if r not in CONTACT_ROLES:
            problem("chain_contact_roles", r, f"a contract role ({', '.join(CONTACT_ROLES)})")
    months = data.get("chain_contact_months", 12)
    if not isinstance(months, int) or months <= 0:
        problem("chain_contact_months", months, "a positive whole number of months")
        months = 12

    programmes: dict[str, Programme] = {}
    for pid, p in (data.get("programmes") or {}).items():
        where = f"programmes.{pid}"
        if pid not in CONTRACT_PROGRAMMES:
            problem(where, pid, f"a programme the contract knows ({', '.join(CONTRACT_PROGRAMMES)})")
        if not isinstance(p, dict):
            problem(where, type(p).__name__, "a mapping")
            continue
        groups = {}
        for key in ("inclusion", "supporting", "excluded_if"):
            groups[key] = tuple(p.get(key) or ())
            for g in groups[key]:
                if g not in codes.icpc:
                    problem(f"{where}.{key}", g, "an ICPC group of codes.yaml")
        if not groups["inclusion"]:
            problem(f"{where}.inclusion", None, "at least one ICPC group of codes.yaml (inclusion is empty)")
        controls = []
        seen = set()
        for i, c in enumerate(p.get("controls") or []):
            at = f"{where}.controls[{i}]"
            cid = (c or {}).get("id")
            if not cid or cid in seen:
                problem(f"{at}.id", cid, "an id of its own (it is missing or repeated)")
            seen.add(cid)
            concepts = tuple((c or {}).get("concepts") or ())
            if not concepts:
                problem(f"{at}.concepts", None, f"at least one concept of codes.yaml measurements (control {cid})")
            for k in concepts:
                if k not in codes.measurements:
                    problem(f"{at}.concepts", k, f"a concept of codes.yaml measurements (control {cid})")
            iv = (c or {}).get("interval_months")
            if not isinstance(iv, int) or not 1 <= iv <= 120:
                problem(f"{at}.interval_months", iv, f"a whole number of months, 1..120 (control {cid})")
                iv = 12
            controls.append(Control(str(cid), concepts, iv))
        for moved in ("max_inclusion_pct", "annual_tariff_eur"):
            if moved in p:
                problem(f"{where}.{moved}", p[moved], f"no {moved} here: caps and tariffs are in contracts.yaml",
                        fix="set it in parameters/contracts.yaml (defaults.max_inclusion_pct or the insurer's contract)")
        cap = caps.get(pid)
        if cap is None:
            problems.append(Problem(str(contracts.path), None, None, None,
                                    f"the care group's cap of programme {pid} (it is missing)",
                                    key=f"defaults.max_inclusion_pct.{pid}"))
            cap = 100.0
        programmes[pid] = Programme(
            pid, str(p.get("title", pid)), groups["inclusion"], groups["supporting"],
            groups["excluded_if"], float(cap), tuple(controls),
        )
    if not programmes:
        problem("programmes", None, "at least one programme (none defined)")
    if problems:
        raise config_error(problems)
    return Rules(min_age, roles, months, programmes, codes)


@lru_cache(maxsize=8)
def load_programmes(path: Path = PROGRAMMES_FILE, codes_path: Path | None = None) -> Rules:
    """Load and validate ``parameters/programmes.yaml`` together with the code lists and the
    caps of ``contracts.yaml`` beside it (the project's when that folder has none)."""
    codes = load_codes(codes_path) if codes_path else load_codes()
    beside = Path(path).parent / "contracts.yaml"
    contracts = load_contracts(beside if beside.is_file() else CONTRACTS_FILE)
    return parse_programmes(read_yaml(Path(path)), codes, Path(path), contracts)
