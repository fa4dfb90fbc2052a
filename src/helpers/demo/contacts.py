"""Contacts of a demo practice: GP contacts at Nivel rates (a heavy tail of frequent attenders),
POH-GGZ contacts for psychosocial problems and the chain-care (POH-S) rhythm of enrolled
patients, with one contact inside the window for everyone who is due."""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa

from ..quarter import add_months
from .arrays import _choice, _day, _expand, _jan1, _nivel_band, _series, _uniform_day, _weekday, _years_of
from .constants import (CONTACT_CODES, CONTACT_KINDS, E_CONSULT_FACTOR, ECONSULT_AGE, EPOCH, INF, KIND_BASE,
                        NIVEL_RATES, ROLES, SEG1_SCALE, VISIT_AGE)
from .state import PracticeState
from .text import _Text


#: Shape of the year-to-year change of a patient's contact propensity (gamma, mean 1): with the
#: lasting propensity it gives frequent attenders of whom about a third are frequent again the
#: next year (persistent frequent attenders: frequent in three years running).
YEAR_SHAPE = 0.7


def contacts(pr: PracticeState) -> None:
    """GP, assistant, POH-GGZ and POH-S contacts; fills ``mult`` (propensity) and ``contact_rows``."""
    rng, plan, n = pr.rng, pr.plan, pr.n
    H0, ext = plan.H0, pr.ext
    y0, y1 = int(_years_of(np.array([H0]))[0]), int(_years_of(np.array([ext]))[0])
    years = np.arange(y0, y1 + 1)
    # patient-level propensity (gamma: heavy tail of frequent attenders), normalised per age band
    chronic = sum(h.astype(float) for h in pr.has.values())
    psych = _psych_patients(pr)
    mult = rng.gamma(2.0, 0.5, n) * (1 + 0.25 * chronic) * np.where(psych, 1.5, 1.0)
    band = _nivel_band(pr.age_x)
    norm = np.bincount(band, weights=mult, minlength=7) / np.maximum(np.bincount(band, minlength=7), 1)
    mult = mult / np.where(norm[band] > 0, norm[band], 1)
    pr.mult = mult
    ny = years.size
    P = np.repeat(np.arange(n), ny)
    Y = np.tile(years, n)
    lo = np.maximum.reduce([_jan1(Y), np.full(P.size, H0), pr.reg[P]])
    hi = np.minimum.reduce([_jan1(Y + 1) - 1, np.full(P.size, ext), pr.leave[P]])
    expo = np.maximum(hi - lo + 1, 0) / 365.25
    age_y = Y - pr.by[P]
    rate = NIVEL_RATES[_nivel_band(age_y)] * SEG1_SCALE
    lam = rate * mult[P] * rng.gamma(YEAR_SHAPE, 1 / YEAR_SHAPE, P.size) * expo
    cnt = rng.poisson(lam)
    own, _ = _expand(cnt)
    cp = P[own]
    cd = _weekday(_uniform_day(rng, lo[own], hi[own]), lo[own], hi[own])
    cy = Y[own]
    nb = _nivel_band(cy - pr.by[cp])
    w = np.tile(KIND_BASE, (cp.size, 1))
    w[:, 2] *= VISIT_AGE[nb]
    w[:, 3] *= VISIT_AGE[nb]
    w[:, 5] = np.clip(0.03 + 0.07 * (cy - 2019), 0.03, 0.6) * ECONSULT_AGE[nb]
    cum = np.cumsum(w, axis=1)
    u = rng.random(cp.size) * cum[:, -1]
    kind = (u[:, None] > cum).sum(axis=1)
    role = np.zeros(cp.size, np.int64)  # huisarts
    r = rng.random(cp.size)
    # the assistant answers part of the phone (triage)
    triage = 0.40
    role = np.where((kind == 4) & (r < triage), 3, role)
    role = np.where((kind == 5) & (r < 0.15), 3, role)
    role = np.where((kind == 0) & (r < 0.07), 3, role)
    if pr.info.profile == "e_consult":
        kind = _more_e_consults(pr, kind, w, cd)
    # reasons as numbers into one vocabulary ("" = none): cheap to mix and to write
    vocab: dict[str, int] = {"": 0}

    def encode(values) -> np.ndarray:
        u, inv = np.unique(np.asarray(values, dtype=object).astype(str), return_inverse=True)
        return np.array([vocab.setdefault(x, len(vocab)) for x in u], dtype=np.int64)[inv.ravel()]

    chain_code = _chain_code(pr)
    chain_i, psych_i = encode(chain_code), encode(pr.psych_code)
    common = encode([c for c, _ in CONTACT_CODES])
    w_common = np.array([w_ for _, w_ in CONTACT_CODES], float)
    codes = common[rng.choice(common.size, size=cp.size, p=w_common / w_common.sum())]
    r2 = rng.random(cp.size)
    codes = np.where((chain_i[cp] != 0) & (r2 < 0.3), chain_i[cp], codes)
    codes = np.where((psych_i[cp] != 0) & (r2 >= 0.3) & (r2 < 0.55), psych_i[cp], codes)
    codes = np.where(rng.random(cp.size) < 0.12, 0, codes)
    parts = [(cp, cd, kind, role, codes)]
    for part in (_poh_ggz(pr), _poh_s(pr, chain_code)):
        parts.append(part[:4] + (encode(part[4]),))
    cp = np.concatenate([x[0] for x in parts]).astype(np.int64)
    cd = np.concatenate([x[1] for x in parts]).astype(np.int64)
    kind = np.concatenate([x[2] for x in parts]).astype(np.int64)
    role = np.concatenate([x[3] for x in parts]).astype(np.int64)
    codes = np.concatenate([x[4] for x in parts]).astype(np.int64)
    pr.contact_rows = (cp, cd, kind, role)
    # contact numbers follow the calendar, as in the HIS
    by_date = np.lexsort((cp, cd))
    cid = np.empty(cp.size, np.int64)
    cid[by_date] = int(rng.integers(2_000_000, 3_000_000)) + np.arange(cp.size) * 3 + rng.integers(0, 3, cp.size)
    order = np.lexsort((cid, cp))
    pr.tables["contacts"] = {
        "contact_id": _Text.ints(cid[order]),
        "patient_id": pr.pids(cp[order]),
        "date": plan.text.dates(cd[order], pr.info.bom),
        "kind": pa.array(np.asarray(CONTACT_KINDS, dtype=object)[kind[order]], pa.string()),
        "role": pa.array(np.asarray(ROLES, dtype=object)[role[order]], pa.string()),
        "icpc": pa.array(list(vocab), pa.string()).take(pa.array(codes[order], mask=codes[order] == 0)),
    }


def _more_e_consults(pr: PracticeState, kind: np.ndarray, w: np.ndarray, day: np.ndarray) -> np.ndarray:
    """The e-consult practice: telephone contacts become e-consults until there are about
    E_CONSULT_FACTOR times as many e-consults; roles stay (an assistant answers either), so
    only the telephone and e-consult figures move. Records the realised telephone factor."""
    tel, econ = CONTACT_KINDS.index("telefonisch"), CONTACT_KINDS.index("e-consult")
    p = np.minimum((E_CONSULT_FACTOR - 1) * w[:, econ] / w[:, tel], 0.9)
    conv = (kind == tel) & (pr.rng.random(kind.size) < p)
    window = day >= pr.plan.ws(12)
    was_tel = ((kind == tel) & window).sum()
    pr.profile_truth.append(("contacten_telefonisch", "lower",
                             float(1 - (conv & window).sum() / max(was_tel, 1))))
    return np.where(conv, econ, kind)


def plan_patients(pr: PracticeState) -> None:
    """veelgebruikers_plan.csv: ``info.plan_size`` patients picked among the practice's frequent
    attenders (top 10% of GP-practice contacts within sex x age band) of the twelve months that
    end four quarters before the reference quarter's end, taken into the plan in the three
    weeks after that year: the year before is their 0-meting, and the reference year shows
    four quarters of monitoring. A patient gets the profile the monitor's parameters would
    suggest first (GGZ for a psychosocial episode, multimorbidity for two or more chronic
    conditions, frail elderly from 75), else none; nobody has left the plan.

    The plan comes from its own random stream (seed, 6, practice); the practice's stream draws
    exactly what this step drew before the plan moved back a year, so every later step
    (prescriptions, referrals) is unchanged."""
    size = pr.info.plan_size
    if size == 0:
        return
    rng, plan = pr.rng, pr.plan
    listed = (pr.reg <= plan.ws(12)) & (pr.leave > pr.ext)
    kept = _frequent(pr, plan.ws(12), plan.L, listed)   # the stream as it was
    if kept.size == 0:
        return
    rng.choice(kept, size=min(size, kept.size), replace=False)
    rng.integers(0, max(min(pr.ext - plan.L - 1, 3), 0) + 1, min(size, kept.size))
    own = np.random.default_rng([plan.seed, 6, pr.info.seq])
    lo, hi = plan.ws(24), plan.ws(12) - 1
    cand = _frequent(pr, lo, hi, (pr.reg <= lo) & (pr.leave > pr.ext))
    if cand.size == 0:
        return
    chosen = np.sort(own.choice(cand, size=min(size, cand.size), replace=False))
    selected = np.minimum(hi + 1 + own.integers(0, 21, chosen.size), pr.ext)
    sel_t = plan.text.dates(selected, pr.info.bom)
    profile = _plan_profiles(pr, hi)
    pr.plan_rows = [(pr.pid[i], sel_t[k].as_py(), profile[i], "") for k, i in enumerate(chosen)]  # PLAN_COLUMNS


def _frequent(pr: PracticeState, lo: int, hi: int, listed: np.ndarray) -> np.ndarray:
    """The practice's frequent attenders among ``listed`` in the days ``lo`` .. ``hi``: more
    contacts than 90% of their sex x age band (age as a mirror reads it: from the birth year)."""
    cp, cd = pr.contact_rows[0], pr.contact_rows[1]
    n_c = np.bincount(cp[(cd >= lo) & (cd <= hi)], minlength=pr.n).astype(float)
    age = _years_of(np.array([hi]))[0] - pr.by
    band = np.searchsorted(np.array([5, 15, 25, 45, 65, 75, 85]), age, side="right") * 3 + np.searchsorted(
        np.array(["M", "V"]), pr.sex)
    frequent = np.zeros(pr.n, bool)
    for b in np.unique(band[listed]):
        members = listed & (band == b)
        cut = np.quantile(n_c[members], 0.9)
        frequent |= members & (n_c > cut) & (n_c > 0)
    return np.flatnonzero(frequent)


def _plan_profiles(pr: PracticeState, day: int) -> np.ndarray:
    """The profile a practice would write for each patient (ids of parameters/veelgebruikers.yaml
    when it lists them): ggz, multimorbiditeit, kwetsbare_oudere, else empty."""
    from ..contract import VEELGEBRUIKERS_FILE, profile_ids
    ids = set(profile_ids(VEELGEBRUIKERS_FILE) or ())
    chronic = sum(h.astype(int) for g, h in pr.has.items() if g not in ("lipids", "frailty"))
    age = _years_of(np.array([day]))[0] - pr.by
    out = np.full(pr.n, "", dtype=object)
    for pid, mask in (("kwetsbare_oudere", age >= 75), ("multimorbiditeit", chronic >= 2),
                      ("ggz", _psych_patients(pr))):
        if pid in ids:
            out = np.where(mask, pid, out)
    return out


def _chain_code(pr: PracticeState) -> np.ndarray:
    """The ICPC code a patient's chain-care contacts are about (first programme's diagnosis)."""
    out = np.full(pr.n, "", dtype=object)
    for p in reversed(pr.plan.programmes):
        for g in reversed(p.diagnosis_groups):
            if g in pr.has:
                out = np.where(pr.has[g] & pr.ever_enrolled, pr.code[g], out)
    return out


def _psych_patients(pr: PracticeState) -> np.ndarray:
    return pr.psych_code != ""


def _poh_ggz(pr: PracticeState):
    """POH-GGZ contacts in the year after a psychosocial episode starts."""
    rng, plan = pr.rng, pr.plan
    p, codes, start, end = pr.psych_rows
    lo = np.maximum.reduce([start, pr.reg[p], np.full(p.size, plan.H0)])
    hi = np.minimum.reduce([np.minimum(end, start + 365), pr.leave[p], np.full(p.size, pr.ext)])
    ok = hi >= lo
    cnt = np.where(ok, rng.poisson(4.0, p.size), 0)
    owner, _ = _expand(cnt)
    d = _weekday(_uniform_day(rng, lo[owner], hi[owner]), lo[owner], hi[owner])
    kind = _choice(rng, [1, 0, 4], [.7, .2, .1], owner.size)
    return p[owner], d, kind, np.full(owner.size, 2), codes[owner]


def _poh_s(pr: PracticeState, chain_code):
    """Chain-care contacts: several a year while enrolled; one inside the window for the due."""
    rng, plan, q = pr.rng, pr.plan, pr.q
    role = ROLES.index(plan.chain_role)
    rows = pr.rows
    if rows["pid"].size == 0:
        z = np.zeros(0, np.int64)
        return z, z, z, z, np.zeros(0, object)
    order = np.lexsort((rows["s"], rows["pid"]))
    pid_sorted = rows["pid"][order]
    u, first = np.unique(pid_sorted, return_index=True)
    s_min = np.minimum.reduceat(rows["s"][order], first)
    e_max = np.maximum.reduceat(rows["e"][order], first)
    # the KIS keeps chain contacts one window further back: every quarter of the history is complete
    h_chain = _day(add_months(date.fromordinal(EPOCH.toordinal() + plan.H0), -plan.rules.chain_contact_months))
    S = np.maximum.reduce([s_min, pr.reg[u], np.full(u.size, h_chain)])
    E = np.minimum.reduce([e_max, pr.leave[u], np.full(u.size, pr.ext)])
    any_enr = np.zeros(pr.n, bool)
    for m in pr.enrF.values():
        any_enr |= m
    need = pr.in_pop[u] & any_enr[u] & ~pr.nochain[u]
    lo_slot, hi_slot = np.maximum(plan.chain_ws, S), np.minimum(plan.L, E)
    if (lo_slot[need] > hi_slot[need]).any():
        raise AssertionError("an enrolled patient has no room for a chain contact in the window")
    nochain = pr.nochain[u]
    t_nc = plan.chain_ws - rng.integers(32, 200, u.size)
    A = np.where(need, _uniform_day(rng, lo_slot, np.maximum(hi_slot, lo_slot)),
                 np.where(nochain, t_nc, _uniform_day(rng, S, np.maximum(E, S))))
    live = need | (nochain & (t_nc >= S)) | (~need & ~nochain & (E >= S))
    period = 365.25 / 3.3 * rng.uniform(0.95, 1.05) * rng.uniform(0.85, 1.15, u.size)  # practice staffing
    intake = np.where(s_min == S, s_min + rng.integers(0, 30, u.size), INF)
    ti = np.flatnonzero(live)
    owner, d, anchor, lo_b, hi_b = _series(pr.rng, A[ti], S[ti], E[ti], period[ti], nochain[ti],
                                                0.06, intake[ti])
    lo_b = np.where(anchor, np.where(need[ti][owner], lo_slot[ti][owner], S[ti][owner]), lo_b)
    hi_b = np.where(anchor, np.where(need[ti][owner], hi_slot[ti][owner], A[ti][owner]), hi_b)
    d = _weekday(d, lo_b, hi_b)
    # a few patients drop out for a while (13-18 months) before the reference window
    gap = rng.integers(400, 540, u.size)
    g_start = _uniform_day(rng, S, np.maximum(plan.chain_ws - 30 - gap, S))
    paused = (rng.random(u.size) < 0.04) & (plan.chain_ws - 30 - gap >= S)
    t = ti[owner]
    keep = anchor | ~(paused[t] & (d >= g_start[t]) & (d <= g_start[t] + gap[t]))
    owner, d = owner[keep], d[keep]
    p = u[ti][owner]
    kind = _choice(rng, [0, 1, 4], [.65, .2, .15], p.size)
    return p, d, kind, np.full(p.size, role), chain_code[p]
