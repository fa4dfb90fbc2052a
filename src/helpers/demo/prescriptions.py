"""Prescriptions and referrals of a demo practice: chronic regimens per ICPC group (one drug per
class), exacerbation courses, acute prescribing after GP contacts, and referrals by specialism."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .arrays import _choice, _expand, _poisson_days, _uniform_day, _weekday
from .constants import (ACUTE, ACUTE_SHARE, DERMATOLOGY_FACTOR, EXACERBATION_RATE, EXTRA_ANTIBIOTIC_SHARE,
                        FIRST_CHOICE_ANTIBIOTICS, NON_MEDICAL, REFERRAL_RATE, REGIMENS, SPECIALISMS)
from .state import PracticeState
from .text import _Text


def prescriptions(pr: PracticeState) -> None:
    """Chronic regimens, exacerbation courses and acute prescriptions after GP contacts."""
    rng, plan = pr.rng, pr.plan
    H0, ext = plan.H0, pr.ext
    pids, days, atcs, durs = [], [], [], []
    seen = np.zeros(0, np.int64)  # patient * 1000 + drug class already prescribed
    classes: dict[str, int] = {}
    for g, regimen in REGIMENS.items():
        if g not in pr.has:
            continue
        for options, share, dur in regimen:
            who = np.flatnonzero(pr.has[g] & (rng.random(pr.n) < share))
            opt = rng.integers(0, len(options), who.size)
            atc = np.asarray(options, dtype=object)[opt]
            # one drug per class and patient (a DM2 patient with HVZ gets one statin)
            cls = np.array([classes.setdefault(o[:5], len(classes)) for o in options])
            key = who * 1000 + cls[opt]
            fresh = ~np.isin(key, seen)
            seen = np.concatenate([seen, key[fresh]])
            who, atc = who[fresh], atc[fresh]
            lo = np.maximum.reduce([pr.gstart[g][who], pr.reg[who], np.full(who.size, H0)])
            lo = lo + rng.integers(0, 30, who.size)
            hi = np.minimum.reduce([pr.gend[g][who], pr.leave[who], np.full(who.size, ext)])
            ok = hi >= lo
            who, atc, lo, hi = who[ok], atc[ok], lo[ok], hi[ok]
            per = dur * rng.uniform(1.0, 1.15, who.size)
            cnt = np.floor((hi - lo) / per).astype(np.int64) + 1
            owner, k = _expand(cnt)
            d = lo[owner] + np.rint(k * per[owner]).astype(np.int64)
            d = _weekday(d, lo[owner], hi[owner])
            pids.append(who[owner])
            days.append(d)
            atcs.append(atc[owner])
            durs.append(np.full(owner.size, dur))
    for g, rate in EXACERBATION_RATE.items():
        if g not in pr.has:
            continue
        who = np.flatnonzero(pr.has[g])
        lo = np.maximum.reduce([pr.gstart[g][who], pr.reg[who], np.full(who.size, H0)])
        hi = np.minimum.reduce([pr.leave[who], np.full(who.size, ext)])
        o, d = _poisson_days(pr.rng, np.arange(who.size), lo, hi, rate)
        pids.append(who[o])
        days.append(d)
        atcs.append(np.full(o.size, "H02AB06", dtype=object))
        durs.append(np.full(o.size, 5))
        if g == "copd":
            m = rng.random(o.size) < 0.5
            pids.append(who[o][m])
            days.append(d[m])
            atcs.append(_choice(rng, ["J01AA02", "J01CA04"], [.6, .4], int(m.sum())).astype(object))
            durs.append(np.full(int(m.sum()), 7))
    cp, cd, kind, role = pr.contact_rows
    acute = np.flatnonzero((role == 0) & (rng.random(cp.size) < ACUTE_SHARE))
    pick = rng.choice(len(ACUTE), size=acute.size, p=np.array([w for _, w, _ in ACUTE], float)
                      / sum(w for _, w, _ in ACUTE))
    pids.append(cp[acute])
    days.append(cd[acute])
    atcs.append(np.asarray([a for a, _, _ in ACUTE], dtype=object)[pick])
    durs.append(np.array([d for _, _, d in ACUTE])[pick])
    if pr.info.profile == "antibiotica":
        # the antibiotics practice: an extra first-choice antibiotic after some GP contacts
        extra = np.flatnonzero((role == 0) & (rng.random(cp.size) < EXTRA_ANTIBIOTIC_SHARE))
        pids.append(cp[extra])
        days.append(cd[extra])
        atcs.append(_choice(rng, [a for a, _ in FIRST_CHOICE_ANTIBIOTICS], [w for _, w in FIRST_CHOICE_ANTIBIOTICS],
                            extra.size).astype(object))
        durs.append(np.full(extra.size, 7))
    p = np.concatenate(pids).astype(np.int64)
    d = np.concatenate(days).astype(np.int64)
    a = np.concatenate(atcs).astype(object)
    du = np.concatenate(durs).astype(np.int64)
    order = np.lexsort((a, d, p))
    pr.tables["prescriptions"] = {
        "patient_id": pr.pids(p[order]),
        "date": plan.text.dates(d[order], pr.info.bom),
        "atc": pa.array(a[order], pa.string()),
        "duration_days": _Text.ints(du[order]),
    }


def referrals(pr: PracticeState) -> None:
    """Referrals by specialism, more for the old and for frequent attenders."""
    rng, plan = pr.rng, pr.plan
    lo = np.maximum(pr.reg, plan.H0)
    hi = np.minimum(pr.leave, pr.ext)
    expo = np.maximum(hi - lo, 0) / 365.25
    age = pr.age_x
    af = np.where(age < 18, 0.6, np.where(age < 45, 0.8, np.where(age < 65, 1.1, 1.4)))
    lam = REFERRAL_RATE * af * np.sqrt(pr.mult) * expo
    cnt = rng.poisson(lam)
    owner, _ = _expand(cnt)
    p_spec = np.array([w for _, w, _ in SPECIALISMS], float)
    p_spec /= p_spec.sum()
    spec_i = rng.choice(len(SPECIALISMS), size=owner.size, p=p_spec)
    if pr.info.profile == "dermatologie":
        # the referring practice: dermatology referrals on top of the usual ones (so more in all)
        derm = [s for s, _, _ in SPECIALISMS].index("dermatologie")
        extra, _ = _expand(rng.poisson(lam * p_spec[derm] * (DERMATOLOGY_FACTOR - 1)))
        lo12 = plan.ws(12)
        owner = np.concatenate([owner, extra])
        spec_i = np.concatenate([spec_i, np.full(extra.size, derm)])
    d = _weekday(_uniform_day(rng, lo[owner], np.maximum(hi[owner], lo[owner])), lo[owner], hi[owner])
    if pr.info.profile == "dermatologie":
        in_w = (d >= lo12) & (d <= plan.L)
        medical = ~np.isin(np.asarray([s for s, _, _ in SPECIALISMS])[spec_i], NON_MEDICAL)
        is_extra = np.arange(owner.size) >= owner.size - extra.size
        base = (in_w & medical & ~is_extra).sum()
        pr.profile_truth.append(("verwijzingen_medisch_specialist", "higher",
                                 float((in_w & medical).sum() / max(base, 1))))
    reasons = [s[2] for s in SPECIALISMS]
    codes = np.array([reasons[s][j % len(reasons[s])] for s, j in
                      zip(spec_i, rng.integers(0, 12, owner.size))], dtype=object)
    codes = np.where(rng.random(owner.size) < 0.1, "", codes)
    order = np.lexsort((spec_i, d, owner))
    pr.tables["referrals"] = {
        "patient_id": pr.pids(owner[order]),
        "date": plan.text.dates(d[order], pr.info.bom),
        "specialism": pa.array(np.asarray([s[0] for s in SPECIALISMS], dtype=object)[spec_i[order]], pa.string()),
        "icpc": pa.array(codes[order], pa.string(), mask=codes[order] == ""),
    }
