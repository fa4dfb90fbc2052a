"""The plan of a demo care group: what holds for the whole dataset (the reference quarter, the
history, the programmes and their controls from parameters/) and the register of practices
(name, region, hagro, HIS, quality, list size, insurers), drawn once from the seed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np

from ..errors import ConfigError
from ..rules.programmes import Rules
from ..quarter import Quarter
from .arrays import _choice, _day
from .constants import (BOM_HIS, DEFAULT_PREVALENCE, HIS_SYSTEMS, INSURERS, NL_PYRAMID, OLDER_TILT, PLAN_SIZE, PLAN_SIZE_FEW,
                        PRACTICE_NAMES,
                        PRACTICE_PREFIXES, PREVALENCE, PROFILE_MIN_PRACTICES, PROFILES, REGIONS, ROLES)
from .text import _Text


@dataclass
class _Plan:
    rules: Rules
    seed: int
    extraction: date
    years: int
    quarter: Quarter
    F: int
    L: int
    H0: int
    programmes: list  # Programme objects in programmes.yaml order
    keys: list  # distinct concept sets of controls (sorted tuples), first-seen order
    key_interval: dict  # key -> shortest interval (months) of a control with that key
    key_interval_max: dict
    key_ws: dict  # key -> window start (day) of its shortest interval
    chain_ws: int
    chain_role: str
    concept_in_control: set
    national_mean: dict = field(default_factory=dict)
    text: _Text = field(default_factory=_Text)
    contracts: object = None  # helpers.rules.contracts.Contracts: tariffs, rounds, chain numbers

    def ws(self, months: int) -> int:
        return _day(self.quarter.months_back_start(months))


def _make_plan(rules: Rules, seed: int, extraction: date, years: int) -> _Plan:
    """The plan from the rules: reference quarter, history, control keys and windows."""
    q = Quarter.latest_complete(extraction)
    programmes = list(rules.programmes.values())
    keys, key_interval, key_interval_max = [], {}, {}
    for p in programmes:
        for c in p.controls:
            k = tuple(sorted(c.concepts))
            if k not in key_interval:
                keys.append(k)
            key_interval[k] = min(key_interval.get(k, 10**6), c.interval_months)
            key_interval_max[k] = max(key_interval_max.get(k, 0), c.interval_months)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            if set(a) & set(b):
                raise ConfigError(
                    f"programmes.yaml: controls with concepts {list(a)} and {list(b)} overlap; the demo generator "
                    "needs the concept lists of controls to be either equal or disjoint")
    roles = [r for r in rules.chain_contact_roles if r in ROLES]
    if not roles:
        raise ConfigError("programmes.yaml: chain_contact_roles names no contract role the demo can write")
    try:
        h0 = extraction.replace(year=extraction.year - years)
    except ValueError:  # 29 February
        h0 = extraction.replace(year=extraction.year - years, day=28)
    plan = _Plan(
        rules=rules, seed=seed, extraction=extraction, years=years, quarter=q,
        F=_day(q.first_day), L=_day(q.last_day), H0=min(_day(h0), _history_start(q, years)), programmes=programmes, keys=keys,
        key_interval=key_interval, key_interval_max=key_interval_max,
        key_ws={k: _day(q.months_back_start(m)) for k, m in key_interval.items()},
        chain_ws=_day(q.months_back_start(rules.chain_contact_months)), chain_role=roles[0],
        concept_in_control={c for k in keys for c in k},
    )
    w = NL_PYRAMID / NL_PYRAMID.sum()
    for g in rules.codes.icpc:
        model = PREVALENCE.get(g)
        if model is not None or any(g in p.diagnosis_groups for p in programmes):
            shape = np.asarray((model or DEFAULT_PREVALENCE)[1], dtype=float)
            plan.national_mean[g] = float((w * shape).sum())
    return plan


def _history_start(q: Quarter, years: int) -> int:
    """The day after the reference quarter's end, ``years`` years back: the history then holds
    ``years`` full rolling years ending on the reference quarter's last day (persistent frequent
    attenders, the mirror's trend)."""
    end = q.last_day
    try:
        back = end.replace(year=end.year - years)
    except ValueError:  # never for a quarter's last day, but keep the rule total
        back = end.replace(year=end.year - years, day=28)
    return _day(back) + 1


@dataclass
class _PracticeInfo:
    seq: int  # 1-based number in the care group
    agb: str
    name: str
    region: str
    region_idx: int
    hagro: str
    his: str
    ext: int  # extraction day
    quality: float  # 0 = weak .. 1 = excellent
    target: int  # list size aimed at
    tilt: float  # age structure: < 0 younger, > 0 older than the country
    bom: bool
    pc4_core: np.ndarray
    pc4_range: tuple
    insurer_shares: np.ndarray
    profile: str = ""  # planted care-use profile (see helpers.demo.plant), "" = none
    plan_size: int = 0  # patients in its veelgebruikers_plan.csv (0 = no file)
    care_group_size: int = 0  # practices in the care group (profiles need PROFILE_MIN_PRACTICES)


def _practice_register(plan: _Plan, practices: int, regions: int) -> list[_PracticeInfo]:
    """The practices of the care group, from their own random stream (seed, 1)."""
    rng = np.random.default_rng([plan.seed, 1])
    regions = max(1, min(regions, practices))
    region_defs = []
    for r in range(regions):
        if r < len(REGIONS):
            region_defs.append(REGIONS[r])
        else:
            lo = 1000 + (r * 137) % 8800
            region_defs.append((f"Regio {r + 1}", (f"Kern {r + 1}A", f"Kern {r + 1}B"), (lo, lo + 99)))
    agb_nums = rng.choice(10**6, size=practices, replace=False)
    region_of = (np.arange(practices) * regions) // practices
    quality = np.clip(rng.beta(4, 3, practices), 0.3, 0.85)
    if practices >= 2:
        best, worst = rng.choice(practices, size=2, replace=False)
        quality[best], quality[worst] = 0.95, 0.1
    sizes = np.clip(np.rint(np.exp(rng.normal(np.log(3300), 0.33, practices))), 1700, 5600).astype(int)
    tilts = rng.normal(0, 0.15, practices)
    his = _choice(rng, [h for h, _ in HIS_SYSTEMS], [w for _, w in HIS_SYSTEMS], practices)
    if BOM_HIS not in his:
        his[min(1, practices - 1)] = BOM_HIS
    bom_idx = int(np.flatnonzero(his == BOM_HIS)[0])
    # names: a prefix and a name, unique; towns added when the names run out
    name_order = rng.permutation(len(PRACTICE_NAMES))
    prefixes = _choice(rng, [p for p, _ in PRACTICE_PREFIXES], [w for _, w in PRACTICE_PREFIXES], practices)
    seen, names = set(), []
    for i in range(practices):
        base = PRACTICE_NAMES[name_order[i % len(PRACTICE_NAMES)]]
        towns = region_defs[region_of[i]][1]
        name = f"{prefixes[i]} {base}"
        if name in seen or i >= len(PRACTICE_NAMES):
            name = f"{prefixes[i]} {base} {towns[(i // len(PRACTICE_NAMES)) % len(towns)]}"
        k, unique = 2, name
        while unique in seen:
            unique, k = f"{name} {k}", k + 1
        seen.add(unique)
        names.append(unique)
    # extraction: the practices took theirs over a few days, all after the reference quarter
    L = plan.L
    max_back = max(0, min(3, _day(plan.extraction) - (L + 1)))
    backs = rng.integers(0, max_back + 1, practices)
    base_shares = np.array([s for _, s in INSURERS])
    profiles = _profiles(plan.seed, practices)
    plan_sizes = _plan_sizes(plan.seed, practices)
    for i, prof in enumerate(profiles):
        if prof == "older":
            tilts[i] = OLDER_TILT
    out = []
    for i in range(practices):
        r = int(region_of[i])
        rname, towns, (lo, hi) = region_defs[r]
        members = np.flatnonzero(region_of == r)
        k = int(np.searchsorted(members, i)) // 4
        hagro = f"Hagro {towns[k % len(towns)]}" + (f" {k // len(towns) + 1}" if k >= len(towns) else "")
        rr = np.random.default_rng([plan.seed, 2, r])
        shares = base_shares * np.exp(rr.normal(0, 0.35, len(base_shares)))
        if r == 0 and plan.contracts is not None:
            shares = vgz_largest(shares, [c for c, _ in INSURERS], plan.contracts)
        out.append(_PracticeInfo(
            seq=i + 1, agb=f"01{int(agb_nums[i]):06d}", name=names[i], region=rname, region_idx=r, hagro=hagro,
            his=str(his[i]), ext=_day(plan.extraction) - int(backs[i]), quality=float(quality[i]),
            target=int(sizes[i]), tilt=float(tilts[i]), bom=(i == bom_idx),
            pc4_core=rng.integers(lo, hi + 1, 4), pc4_range=(lo, hi), insurer_shares=shares / shares.sum(),
            profile=profiles[i], plan_size=plan_sizes[i], care_group_size=practices,
        ))
    return out


def vgz_largest(shares: np.ndarray, codes: list[str], contracts) -> np.ndarray:
    """``shares`` with the regioprestatie insurer (VGZ) swapped with the largest when it is not
    the largest already: the demo's first region has VGZ as its largest insurer."""
    vgz = [i for i, c in enumerate(codes) if contracts.insurer_of(c).regioprestatie_veelgebruikers]
    if not vgz:
        return shares
    out = shares.copy()
    top, v = int(np.argmax(out)), vgz[0]
    out[top], out[v] = out[v], out[top]
    return out


def _plan_sizes(seed: int, practices: int) -> list[int]:
    """Plan patients per practice (stream (seed, 5)): PLAN_SIZE for most, one practice with
    fewer and one without the file (when there are at least three practices)."""
    out = [PLAN_SIZE] * practices
    if practices >= 3:
        few, none = np.random.default_rng([seed, 5]).choice(practices, size=2, replace=False)
        out[int(few)], out[int(none)] = PLAN_SIZE_FEW, 0
    return out


def _profiles(seed: int, practices: int) -> list[str]:
    """The planted care-use profile of each practice (its own random stream (seed, 4)): each
    profile of :data:`PROFILES` on one practice, when the care group has at least
    :data:`PROFILE_MIN_PRACTICES` (else peers are too few to tell a profile from chance)."""
    out = [""] * practices
    if practices < PROFILE_MIN_PRACTICES:
        return out
    rng = np.random.default_rng([seed, 4])
    for i, prof in zip(rng.choice(practices, size=len(PROFILES), replace=False), PROFILES):
        out[int(i)] = prof
    return out

