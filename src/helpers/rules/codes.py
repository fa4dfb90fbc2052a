"""Code lists (ICPC groups, NHG Tabel 45 concepts, ATC groups) from ``parameters/codes.yaml``.

One loader validates the whole file and reports every problem at once.

>>> codes = load_codes()
>>> codes.measurements["hba1c"].nhg
2816
>>> codes.icpc["astma"].matches("R96.01"), codes.icpc["astma"].matches("R96")
(False, True)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from ..config import CODES_FILE
from ..errors import ConfigError

ICPC_RE = re.compile(r"[A-Z][0-9]{2}(\.[0-9]{2})?", re.ASCII)
ATC_RE = re.compile(r"[A-Z][0-9]{2}[A-Z0-9]{0,4}", re.ASCII)


@dataclass(frozen=True)
class IcpcGroup:
    id: str
    title: str
    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()

    def matches(self, code: str) -> bool:
        """True when ``code`` is a listed code or one of its sub-codes, and not excluded."""
        def hit(listed: str) -> bool:
            return code == listed or code.startswith(listed + ".")
        return any(hit(c) for c in self.include) and not any(hit(c) for c in self.exclude)

    def sql(self, column: str = "icpc") -> str:
        """A SQL condition for this group (codes are validated, so quoting is safe)."""
        def one(c: str) -> str:
            return f"({column} = '{c}' OR {column} LIKE '{c}.%')"
        inc = " OR ".join(one(c) for c in self.include)
        cond = f"({inc})"
        if self.exclude:
            cond += " AND NOT (" + " OR ".join(one(c) for c in self.exclude) + ")"
        return f"({cond})"


@dataclass(frozen=True)
class Concept:
    id: str
    nhg: int
    title: str
    kind: str  # numeric | coded
    unit: str | None = None
    plausible: tuple[float, float] | None = None
    values: tuple[str, ...] = ()
    verified: bool = False


@dataclass(frozen=True)
class AtcGroup:
    id: str
    title: str
    prefixes: tuple[str, ...]

    def sql(self, column: str = "atc") -> str:
        return "(" + " OR ".join(f"{column} LIKE '{p}%'" for p in self.prefixes) + ")"


@dataclass(frozen=True)
class Codes:
    icpc: dict[str, IcpcGroup] = field(default_factory=dict)
    measurements: dict[str, Concept] = field(default_factory=dict)
    atc: dict[str, AtcGroup] = field(default_factory=dict)

    def concept_by_nhg(self) -> dict[int, Concept]:
        return {c.nhg: c for c in self.measurements.values()}


def _problems_list(path: Path, problems: list[str]) -> ConfigError:
    body = "\n".join(f"  - {p}" for p in problems)
    return ConfigError(f"{path}: {len(problems)} problem(s)\n{body}\n  Fix: edit {path.name} and run again.")


def read_yaml(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, found {type(data).__name__}")
    return data


def parse_codes(data: dict, path: Path = CODES_FILE) -> Codes:
    """Validate a codes mapping; raise one ConfigError listing every problem."""
    problems: list[str] = []
    icpc: dict[str, IcpcGroup] = {}
    for gid, g in (data.get("icpc") or {}).items():
        if not isinstance(g, dict):
            problems.append(f"icpc.{gid}: expected a mapping with title and include")
            continue
        inc = [str(c) for c in g.get("include") or []]
        exc = [str(c) for c in g.get("exclude") or []]
        if not inc:
            problems.append(f"icpc.{gid}: include is empty")
        for c in inc + exc:
            if not ICPC_RE.fullmatch(c):
                problems.append(f"icpc.{gid}: {c!r} is not an ICPC-1-NL code (letter, two digits, optional .dd)")
        icpc[gid] = IcpcGroup(gid, str(g.get("title", gid)), tuple(inc), tuple(exc))

    measurements: dict[str, Concept] = {}
    seen_nhg: dict[int, str] = {}
    for cid, m in (data.get("measurements") or {}).items():
        if not isinstance(m, dict):
            problems.append(f"measurements.{cid}: expected a mapping")
            continue
        nhg = m.get("nhg")
        if not isinstance(nhg, int) or nhg <= 0:
            problems.append(f"measurements.{cid}: nhg {nhg!r} is not a positive whole number")
            continue
        if nhg in seen_nhg:
            problems.append(f"measurements.{cid}: nhg {nhg} is also used by {seen_nhg[nhg]}")
        seen_nhg[nhg] = cid
        kind = m.get("kind")
        if kind not in ("numeric", "coded"):
            problems.append(f"measurements.{cid}: kind {kind!r} must be numeric or coded")
        plaus = m.get("plausible")
        if plaus is not None and (not isinstance(plaus, list) or len(plaus) != 2 or plaus[0] >= plaus[1]):
            problems.append(f"measurements.{cid}: plausible {plaus!r} must be [low, high] with low < high")
            plaus = None
        values = tuple(str(v) for v in m.get("values") or [])
        if kind == "coded" and not values:
            problems.append(f"measurements.{cid}: a coded concept needs its values")
        if "verified" not in m:
            problems.append(f"measurements.{cid}: say verified: true or false")
        measurements[cid] = Concept(
            cid, nhg, str(m.get("title", cid)), str(kind), m.get("unit"),
            tuple(plaus) if plaus else None, values, bool(m.get("verified", False)),
        )

    atc: dict[str, AtcGroup] = {}
    for aid, a in (data.get("atc") or {}).items():
        prefixes = [str(p) for p in (a or {}).get("prefixes") or []]
        if not prefixes:
            problems.append(f"atc.{aid}: prefixes is empty")
        for p in prefixes:
            if not ATC_RE.fullmatch(p):
                problems.append(f"atc.{aid}: {p!r} is not an ATC code or prefix (e.g. A10BA02, C10)")
        atc[aid] = AtcGroup(aid, str((a or {}).get("title", aid)), tuple(prefixes))

    for section in ("icpc", "measurements", "atc"):
        if not data.get(section):
            problems.append(f"section {section!r} is missing or empty")
    if problems:
        raise _problems_list(Path(path), problems)
    return Codes(icpc, measurements, atc)


@lru_cache(maxsize=8)
def load_codes(path: Path = CODES_FILE) -> Codes:
    """Load and validate ``parameters/codes.yaml`` (cached per path)."""
    return parse_codes(read_yaml(Path(path)), Path(path))
