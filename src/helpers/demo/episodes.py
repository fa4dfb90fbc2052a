"""Episodes and enrolments of a demo practice: which patients have which ICPC group and since
when, the natural (clean) enrolments in every programme, the final enrolment rows after the
planted defects, the other problem-list episodes and decoys, and the episodes and enrolments
tables."""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa

from .arrays import _band5, _day, _expand, _jan1, _uniform_day
from .constants import (DECOYS, DEFAULT_PREVALENCE, DM2_LINKED, ENDABLE, INF, OTHER_EPISODES, PREVALENCE, PSYCH_CODES,
                        SUBCODES)
from .state import PracticeState


def diagnoses(pr: PracticeState) -> None:
    """Which patients have which ICPC group (before dates: mortality depends on it)."""
    rng, plan, n = pr.rng, pr.plan, pr.n
    band = _band5(pr.age_x)
    pr.has, pr.code, pr.gstart, pr.gend = {}, {}, {}, {}
    order = sorted(plan.national_mean, key=lambda g: (g != "dm2", g))
    for g in order:
        target, shape, *_ = PREVALENCE.get(g, DEFAULT_PREVALENCE)
        p = target * np.asarray(shape, dtype=float)[band] / plan.national_mean[g]
        if g in DM2_LINKED and "dm2" in pr.has:
            p = np.where(pr.has["dm2"], p * DM2_LINKED[g], p)
        pr.has[g] = rng.random(n) < np.minimum(p, 0.9)
    if "copd" in pr.has and "astma" in pr.has:
        pr.has["astma"] &= ~pr.has["copd"]  # COPD patients are followed in the COPD chain


def diagnosis_dates(pr: PracticeState) -> None:
    """Start (and for some groups end) of each ICPC group, and the code each patient has."""
    rng, plan, n = pr.rng, pr.plan, pr.n
    anchor = np.minimum(pr.ext, pr.leave)
    for g in list(pr.has):
        _, _, dur_mean, onset, _ = PREVALENCE.get(g, DEFAULT_PREVALENCE)
        start = anchor - np.rint(rng.exponential(dur_mean, n) * 365.25).astype(np.int64)
        min_start = pr.bd + int(onset * 365.25)
        early = start < min_start
        start = np.where(early, _uniform_day(rng, np.minimum(min_start, anchor), anchor), start)
        start = np.minimum(start, anchor - 1)
        pr.has[g] &= min_start <= anchor - 1
        end = np.full(n, INF, dtype=np.int64)
        if g in ENDABLE:
            ended = pr.has[g] & (rng.random(n) < ENDABLE[g]) & (anchor - start > 400)
            e = start + 200 + np.floor(rng.random(n) * np.maximum(anchor - start - 200, 1)).astype(np.int64)
            end = np.where(ended, np.minimum(e, pr.ext), INF)
        pr.gstart[g], pr.gend[g] = start, end
        include = plan.rules.codes.icpc[g].include
        codes = np.asarray(include)[rng.integers(0, len(include), n)].astype(object)
        for base, subs in SUBCODES.items():
            sub = (codes == base) & (rng.random(n) < 0.35)
            if sub.any():
                alt = np.asarray(subs)[rng.integers(0, len(subs), n)]
                ok = np.array([plan.rules.codes.icpc[g].matches(s) for s in subs]).all()
                if ok:
                    codes = np.where(sub, alt, codes).astype(object)
        pr.code[g] = codes


def natural_enrolments(pr: PracticeState) -> None:
    """Clean enrolments: every eligible patient enrolled on the first day, plus earlier ones."""
    rng, plan, n, F, q = pr.rng, pr.plan, pr.n, pr.plan.F, pr.q
    chain0 = _day(date(2008, 1, 1)) + int(rng.integers(0, 1500))
    pr.main, pr.extra, pr.basis = {}, {}, {}
    # programmes that others exclude (DM2 for CVRM) first: their start ends the other
    excluded_by = {p.id: [o.id for o in plan.programmes if set(o.inclusion) & set(p.excluded_if)]
                   for p in plan.programmes}
    order = sorted(plan.programmes, key=lambda p: bool(p.excluded_if))
    for p in order:
        incl, supp = pr.present(p.inclusion), pr.present(p.supporting)
        share = 0.2 + 0.1 * q  # practices differ a little in enrolling on a supporting diagnosis only
        supp_only = supp & ~incl & (rng.random(n) < share)
        also = supp & incl & (rng.random(n) < share)
        cand = incl | supp_only
        i_start, s_start = pr.first_start(p.inclusion), pr.first_start(p.supporting)
        basis = np.where(incl, i_start, s_start)
        basis = np.where(also, np.minimum(i_start, s_start), basis)
        b_end = np.where(incl, pr.last_end(p.inclusion), pr.last_end(p.supporting))
        b_end = np.where(also, np.maximum(pr.last_end(p.inclusion), pr.last_end(p.supporting)), b_end)
        lo_nat = np.maximum.reduce([basis, pr.reg, pr.t18])
        lo = np.maximum(lo_nat, chain0)
        s = lo + np.rint(rng.exponential(20 + 70 * (1 - q), n)).astype(np.int64)
        elig = pr.in_pop & pr.adult & pr.active(p.inclusion, F) & ~pr.active(p.excluded_if, F)
        fix = elig & (s > F)
        if (lo_nat[fix] > F).any():
            raise AssertionError("eligible patient without a possible enrolment start")
        s = np.where(fix, _uniform_day(rng, np.minimum(lo_nat, F), F), s)
        ex_start = pr.first_start(p.excluded_if)
        cand &= ~(ex_start <= s)
        cut = np.where(ex_start < INF, ex_start + rng.integers(14, 120, n), INF)
        for o in excluded_by[p.id]:
            om = pr.main[o]
            cut = np.where(om["has"], np.minimum(cut, om["s"] - 1), cut)
        cut = np.where(ex_start <= F, np.minimum(cut, F - 1), cut)
        e = np.minimum.reduce([pr.leave, b_end, cut])
        e = np.where(e > pr.ext, INF, e)  # ends after the extraction are not known yet
        cand &= (e >= s) & (s <= pr.ext)
        if (elig & ~(cand & (s <= F) & (e >= F))).any():
            raise AssertionError(f"{p.id}: an eligible patient would not be enrolled")
        mp = np.where(cand & (e < F) & (rng.random(n) < 0.015), 1, 0).astype(np.int8)
        pr.main[p.id] = {"has": cand, "s": s, "e": e, "mp": mp}
        pr.basis[p.id] = (basis, lo_nat)
        # some patients were enrolled before (e.g. under the specialist) and came back
        prior = cand & (s <= F) & (e >= F) & pr.in_pop & (rng.random(n) < 0.03)
        s0 = s - rng.integers(400, 1500, n)
        e0 = s - rng.integers(30, 300, n)
        prior &= s0 >= lo_nat
        pr.extra[p.id] = {"pid": np.flatnonzero(prior), "s": s0[prior], "e": e0[prior],
                            "mp": np.where(rng.random(int(prior.sum())) < 0.25, 1, 0).astype(np.int8)}


def enrolment_rows(pr: PracticeState) -> None:
    """The final enrolment rows (after planting) and who was ever enrolled."""
    pid, prog, s, e, mp = [], [], [], [], []
    for p in pr.plan.programmes:
        m, x = pr.main[p.id], pr.extra[p.id]
        idx = np.flatnonzero(m["has"])
        for arrs, src in ((idx, (m["s"][idx], m["e"][idx], m["mp"][idx])), (x["pid"], (x["s"], x["e"], x["mp"]))):
            pid.append(arrs)
            prog.append(np.full(arrs.size, p.id, dtype=object))
            s.append(src[0])
            e.append(src[1])
            mp.append(src[2])
    pr.rows = {"pid": np.concatenate(pid).astype(np.int64), "prog": np.concatenate(prog),
                 "s": np.concatenate(s).astype(np.int64), "e": np.concatenate(e).astype(np.int64),
                 "mp": np.concatenate(mp).astype(np.int8)}
    if (pr.rows["e"] < pr.rows["s"]).any():
        raise AssertionError("an enrolment ends before it starts")
    pr.ever_enrolled = np.zeros(pr.n, bool)
    pr.ever_enrolled[pr.rows["pid"]] = True


def other_episodes(pr: PracticeState) -> None:
    """Other problem-list episodes, the psychosocial patients (POH-GGZ) and decoy codes."""
    rng, plan, n = pr.rng, pr.plan, pr.n
    # codes must not count as a programme diagnosis
    groups = plan.rules.codes.icpc.values()
    table = [(c, w, d) for c, w, d in OTHER_EPISODES if not any(g.matches(c) for g in groups)]
    lo = np.maximum(pr.reg, plan.H0 - 730)
    hi = np.minimum(pr.leave, pr.ext)
    age = pr.age_x
    lam = (0.55 * (plan.years + 2)) * np.where(age >= 65, 1.3, np.where(age < 18, 0.7, 1.0))
    cnt = np.where(hi > lo, rng.poisson(lam), 0)
    owner, _ = _expand(cnt)
    pick = rng.choice(len(table), size=owner.size, p=np.array([w for _, w, _ in table], float)
                      / sum(w for _, w, _ in table))
    codes = np.asarray([c for c, _, _ in table], dtype=object)[pick]
    durs = np.array([d if d is not None else -1 for _, _, d in table], dtype=float)[pick]
    start = _uniform_day(rng, lo[owner], hi[owner] - 1)
    end = np.where(durs < 0, INF, start + np.rint(rng.exponential(np.maximum(durs, 1))).astype(np.int64) + 1)
    end = np.where(end > pr.ext, INF, end)
    pr.other = (owner, codes, start, end)
    # the psychosocial patients (for POH-GGZ) and their code
    psy = np.isin(codes, PSYCH_CODES)
    pr.psych_code = np.full(n, "", dtype=object)
    pr.psych_code[owner[psy]] = codes[psy]
    pr.psych_rows = (owner[psy], codes[psy], start[psy], end[psy])
    # decoys that look like a diagnosis but are not one (R96.01 is not astma)
    decoys = []
    for code, share in DECOYS.items():
        if any(g.matches(code) for g in groups):
            continue
        d_lo = np.maximum(pr.bd + 4 * 365, pr.reg - 3650)
        d_hi = np.minimum(pr.leave, pr.ext) - 1
        who = np.flatnonzero((rng.random(n) < share) & ~pr.present(list(pr.has)) & (d_hi >= d_lo))
        st = _uniform_day(rng, d_lo[who], d_hi[who])
        decoys.append((who, np.full(who.size, code, dtype=object), st, np.full(who.size, INF, np.int64)))
    pr.decoys = decoys


def episode_and_enrolment_tables(pr: PracticeState) -> None:
    """The episodes (programme diagnoses, other problems, decoys) and enrolments tables."""
    plan, bom = pr.plan, pr.info.bom
    p, c, s, e = [], [], [], []
    for g in pr.has:
        who = np.flatnonzero(pr.has[g])
        p.append(who)
        c.append(pr.code[g][who])
        s.append(pr.gstart[g][who])
        e.append(pr.gend[g][who])
    for who, codes, st, en in [pr.other] + pr.decoys:
        p.append(who)
        c.append(codes)
        s.append(st)
        e.append(en)
    p, c = np.concatenate(p).astype(np.int64), np.concatenate(c).astype(object)
    s, e = np.concatenate(s).astype(np.int64), np.concatenate(e).astype(np.int64)
    s = np.maximum(s, _jan1(pr.by[p]))  # never before the birth year
    order = np.lexsort((c, s, p))
    pr.tables["episodes"] = {
        "patient_id": pr.pids(p[order]),
        "icpc": pa.array(c[order], pa.string()),
        "start_date": plan.text.dates(s[order], bom),
        "end_date": plan.text.dates(e[order], bom),
    }
    r = pr.rows
    order = np.lexsort((r["s"], r["prog"].astype(str), r["pid"]))
    mp = r["mp"][order]
    pr.tables["enrolments"] = {
        "patient_id": pr.pids(r["pid"][order]),
        "programme": pa.array(r["prog"][order], pa.string()),
        "start_date": plan.text.dates(r["s"][order], bom),
        "end_date": plan.text.dates(r["e"][order], bom),
        "main_practitioner": pa.array(np.asarray(["huisarts", "specialist", ""], dtype=object)[mp], pa.string(),
                                      mask=mp == 2),
    }
