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
from ..errors import ConfigError, Problem, format_problem

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


def config_error(problems: list[Problem], cls: type[ConfigError] = ConfigError) -> ConfigError:
    """One ``cls`` holding every problem of a parameters file; its message is their lines,
    each written by :func:`~helpers.errors.format_problem` and said once.

    >>> e = config_error([Problem("codes.yaml", None, None, "T9002", "an ICPC-1-NL code", key="icpc.dm2.include")])
    >>> str(e), e.problems[0].key
    ("codes.yaml, icpc.dm2.include: found 'T9002', expected an ICPC-1-NL code", 'icpc.dm2.include')
    """
    exc = cls("\n".join(dict.fromkeys(format_problem(p) for p in problems)))
    exc.problems = list(problems)
    return exc


def read_yaml(path: Path) -> dict:
    """The top-level mapping of the YAML file ``path``; a ConfigError (with its Problem) if not."""
    def fail(value, expected: str) -> ConfigError:
        return config_error([Problem(str(path), None, None, value, expected)])
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise fail(None, "a file (it is not found)") from None
    except yaml.YAMLError as exc:
        raise fail(None, f"valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise fail(type(data).__name__, "a mapping at the top level")
    return data


def parse_codes(data: dict, path: Path = CODES_FILE) -> Codes:
    """Validate a codes mapping; raise one ConfigError listing every problem (one line each).

    >>> parse_codes({"icpc": {"dm2": {"include": ["T9002"]}}, "measurements": {}, "atc": {}}, Path("codes.yaml"))
    Traceback (most recent call last):
    ...
    helpers.errors.ConfigError: codes.yaml, icpc.dm2.include: found 'T9002', expected an ICPC-1-NL code (letter, two digits, optional .dd); e.g. T90 or T90.02
    codes.yaml, measurements: expected a non-empty measurements section (it is missing or empty)
    codes.yaml, atc: expected a non-empty atc section (it is missing or empty)
    """
    problems: list[Problem] = []

    def problem(key: str, value, expected: str, fix: str | None = None) -> None:
        problems.append(Problem(str(path), None, None, value, expected, fix=fix, key=key))

    icpc: dict[str, IcpcGroup] = {}
    for gid, g in (data.get("icpc") or {}).items():
        if not isinstance(g, dict):
            problem(f"icpc.{gid}", type(g).__name__, "a mapping with title and include")
            continue
        inc = [str(c) for c in g.get("include") or []]
        exc = [str(c) for c in g.get("exclude") or []]
        if not inc:
            problem(f"icpc.{gid}.include", None, "at least one ICPC-1-NL code (include is empty)")
        for key, listed in (("include", inc), ("exclude", exc)):
            for c in listed:
                if not ICPC_RE.fullmatch(c):
                    problem(f"icpc.{gid}.{key}", c, "an ICPC-1-NL code (letter, two digits, optional .dd)",
                            "e.g. T90 or T90.02")
        icpc[gid] = IcpcGroup(gid, str(g.get("title", gid)), tuple(inc), tuple(exc))

    measurements: dict[str, Concept] = {}
    seen_nhg: dict[int, str] = {}
    for cid, m in (data.get("measurements") or {}).items():
        where = f"measurements.{cid}"
        if not isinstance(m, dict):
            problem(where, type(m).__name__, "a mapping")
            continue
        nhg = m.get("nhg")
        if not isinstance(nhg, int) or nhg <= 0:
            problem(f"{where}.nhg", nhg, "a positive whole number (the NHG Tabel 45 number)"
                    + (" (nhg is missing)" if nhg is None else ""))
            continue
        if nhg in seen_nhg:
            problem(f"{where}.nhg", nhg, f"an NHG number of its own ({nhg} is also used by {seen_nhg[nhg]})")
        seen_nhg[nhg] = cid
        kind = m.get("kind")
        if kind not in ("numeric", "coded"):
            problem(f"{where}.kind", kind, "numeric or coded" + (" (kind is missing)" if kind is None else ""))
        plaus = m.get("plausible")
        if plaus is not None and (not isinstance(plaus, list) or len(plaus) != 2 or plaus[0] >= plaus[1]):
            problem(f"{where}.plausible", plaus, "[low, high] with low < high")
            plaus = None
        values = tuple(str(v) for v in m.get("values") or [])
        if kind == "coded" and not values:
            problem(f"{where}.values", None, "the values of the coded concept (a coded concept needs its values)")
        if "verified" not in m:
            problem(f"{where}.verified", None, "true or false (verified is missing)",
                    "say verified: true once the NHG number is checked, else false")
        measurements[cid] = Concept(
            cid, nhg, str(m.get("title", cid)), str(kind), m.get("unit"),
            tuple(plaus) if plaus else None, values, bool(m.get("verified", False)),
        )

    atc: dict[str, AtcGroup] = {}
    for aid, a in (data.get("atc") or {}).items():
        prefixes = [str(p) for p in (a or {}).get("prefixes") or []]
        if not prefixes:
            problem(f"atc.{aid}.prefixes", None, "at least one ATC code or prefix (prefixes is empty)")
        for p in prefixes:
            if not ATC_RE.fullmatch(p):
                problem(f"atc.{aid}.prefixes", p, "an ATC code or prefix", "e.g. A10BA02, C10")
        atc[aid] = AtcGroup(aid, str((a or {}).get("title", aid)), tuple(prefixes))

    for section in ("icpc", "measurements", "atc"):
        if not data.get(section):
            problem(section, None, f"a non-empty {section} section (it is missing or empty)")
    if problems:
        raise config_error(problems)
    return Codes(icpc, measurements, atc)


@lru_cache(maxsize=8)
def load_codes(path: Path = CODES_FILE) -> Codes:
    """Load and validate ``parameters/codes.yaml`` (cached per path)."""
    return parse_codes(read_yaml(Path(path)), Path(path))
