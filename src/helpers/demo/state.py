"""The state of one demo practice while it is generated: every array the generator steps hand
to each other, named here, so a step says what it reads and what it fills.

Arrays are per patient (index 0 .. n-1, in order of registration) unless noted; days are day
numbers since 1970-01-01 (:data:`INF` = no date). A field is filled by the step named beside
it (see :func:`helpers.demo.practice.make_practice` for the order) and is absent before.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from .constants import INF
from .plan import _PracticeInfo, _Plan


@dataclass(eq=False, repr=False)
class PracticeState:
    """One practice: its plan, its own random stream, the arrays of every step and its output."""

    plan: _Plan
    info: _PracticeInfo
    rng: np.random.Generator = field(init=False)
    ext: int = field(init=False)  # extraction day
    q: float = field(init=False)  # quality: 0 = weak .. 1 = excellent
    truth: list[tuple] = field(default_factory=list)  # (patient index, programme, kind, control)
    tables: dict[str, dict[str, pa.Array]] = field(default_factory=dict)  # contract table -> columns
    profile_truth: list[tuple] = field(default_factory=list)  # (measure, direction, planted factor)
    plan_rows: list[tuple] = field(default_factory=list)  # veelgebruikers_plan rows (PLAN_COLUMNS)

    # population.patients
    n: int = field(init=False)
    bd: np.ndarray = field(init=False)  # birth day
    reg: np.ndarray = field(init=False)  # registered from
    by: np.ndarray = field(init=False)  # birth year
    pid: np.ndarray = field(init=False)  # HIS patient number (text)
    sex: np.ndarray = field(init=False)
    ins: np.ndarray = field(init=False)  # insurer (UZOVI)
    pc4: np.ndarray = field(init=False)
    age_x: np.ndarray = field(init=False)  # age on the extraction day (years)
    # episodes.diagnoses, episodes.diagnosis_dates: per ICPC group of codes.yaml
    has: dict[str, np.ndarray] = field(init=False)
    code: dict[str, np.ndarray] = field(init=False)
    gstart: dict[str, np.ndarray] = field(init=False)
    gend: dict[str, np.ndarray] = field(init=False)
    # population.leaving
    dead: np.ndarray = field(init=False)
    leave: np.ndarray = field(init=False)  # day of leaving the list (death or move), INF = still listed
    in_pop: np.ndarray = field(init=False)  # in the population on the reference quarter's first day
    deceased: np.ndarray = field(init=False)
    dereg: np.ndarray = field(init=False)
    age_F: np.ndarray = field(init=False)
    adult: np.ndarray = field(init=False)
    t18: np.ndarray = field(init=False)  # 1 January of the year of the minimum age
    # episodes.natural_enrolments: per programme, the main enrolment and earlier ones (changed by plant)
    main: dict[str, dict] = field(init=False)  # {"has", "s", "e", "mp"} per patient
    extra: dict[str, dict] = field(init=False)  # {"pid", "s", "e", "mp"} per earlier enrolment
    basis: dict[str, tuple] = field(init=False)  # (basis day, earliest natural start); kept, read by no step
    # plant.plant
    used: np.ndarray = field(init=False)  # carries a planted kind
    enrF: dict[str, np.ndarray] = field(init=False)  # enrolled on the first day, final enrolments
    nochain: np.ndarray = field(init=False)  # planted: no chain-care contact
    planted_tasks: dict = field(init=False)  # (patient, concept set) -> ("missing", 0) | ("overdue", day)
    implausible: list = field(init=False)  # (patient, programme, concept)
    # episodes.enrolment_rows
    rows: dict[str, np.ndarray] = field(init=False)  # every enrolment row: pid, prog, s, e, mp
    ever_enrolled: np.ndarray = field(init=False)
    # episodes.other_episodes
    other: tuple = field(init=False)  # (patient, code, start, end) of other problem-list episodes
    psych_code: np.ndarray = field(init=False)  # psychosocial code per patient ("" = none)
    psych_rows: tuple = field(init=False)
    decoys: list = field(init=False)
    # measurements.measurements
    vcache: dict = field(init=False)  # latent per-patient values by name
    # contacts.contacts
    mult: np.ndarray = field(init=False)  # contact propensity
    contact_rows: tuple = field(init=False)  # (patient, day, kind, role) of every contact
    pid_arrow: pa.Array = field(init=False)  # pid as Arrow text (pids() fills it)

    def __post_init__(self):
        self.rng = np.random.default_rng([self.plan.seed, 3, self.info.seq])
        self.ext = self.info.ext
        self.q = self.info.quality

    # ------------------------------------------------------------------ ICPC groups
    def present(self, groups) -> np.ndarray:
        """Has an episode of any of ``groups`` (at any time)."""
        out = np.zeros(self.n, bool)
        for g in groups:
            if g in self.has:
                out |= self.has[g]
        return out

    def active(self, groups, day: int) -> np.ndarray:
        """Has an episode of any of ``groups`` that is open on ``day``."""
        out = np.zeros(self.n, bool)
        for g in groups:
            if g in self.has:
                out |= self.has[g] & (self.gstart[g] <= day) & (self.gend[g] >= day)
        return out

    def first_start(self, groups) -> np.ndarray:
        out = np.full(self.n, INF, dtype=np.int64)
        for g in groups:
            if g in self.has:
                out = np.where(self.has[g], np.minimum(out, self.gstart[g]), out)
        return out

    def last_end(self, groups) -> np.ndarray:
        out = np.full(self.n, -1, dtype=np.int64)
        for g in groups:
            if g in self.has:
                out = np.where(self.has[g], np.maximum(out, self.gend[g]), out)
        return out

    # ------------------------------------------------------------------ enrolments
    def enrolled_at(self, day: int, programme: str) -> np.ndarray:
        m = self.main[programme]
        out = m["has"] & (m["s"] <= day) & (m["e"] >= day)
        x = self.extra[programme]
        act = (x["s"] <= day) & (x["e"] >= day)
        out[x["pid"][act]] = True
        return out

    def drop_extra(self, programme: str, pids: np.ndarray) -> None:
        x = self.extra[programme]
        keep = ~np.isin(x["pid"], pids)
        self.extra[programme] = {k: v[keep] for k, v in x.items()}

    # ------------------------------------------------------------------ output
    def pids(self, idx: np.ndarray) -> pa.Array:
        """The HIS patient numbers of patient indices, as an Arrow text column."""
        if not hasattr(self, "pid_arrow"):
            self.pid_arrow = pa.array(self.pid.astype(object), pa.string())
        return self.pid_arrow.take(pa.array(np.asarray(idx, dtype=np.int64)))
