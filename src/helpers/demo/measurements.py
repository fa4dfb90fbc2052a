"""Measurements of a demo practice: for every control of every enrolment a series of visits
around an anchor inside its window (or, where a defect is planted, missing or before it), the
values of each concept, companions (diastolic, total cholesterol, height), the planted typos,
the measurements of patients outside the chains, and the measurements table."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .arrays import _choice, _poisson_days, _series, _uniform_day, _weekday
from .constants import COMPANIONS, CODED_WEIGHTS, INF, TABLE_COLUMNS, TOGETHER, VISITS_PER_YEAR
from .state import PracticeState
from .text import _decimals, _Text


def measurements(pr: PracticeState) -> None:
    """Every measurement of the practice: control series, companions, typos, general ones."""
    rng, plan, q = pr.rng, pr.plan, pr.q
    L, H0 = plan.L, plan.H0
    rows = pr.rows
    key_index = {k: i for i, k in enumerate(plan.keys)}
    nk = len(plan.keys)
    # tasks: (patient, concept set) over every enrolment row of a programme that needs it
    t_code, t_s, t_e = [], [], []
    for p in plan.programmes:
        sel = rows["prog"] == p.id
        for k in dict.fromkeys(tuple(sorted(c.concepts)) for c in p.controls):
            t_code.append(rows["pid"][sel] * nk + key_index[k])
            t_s.append(rows["s"][sel])
            t_e.append(rows["e"][sel])
    if not t_code:
        pr.tables["measurements"] = _measurement_table(pr, [])
        return
    code = np.concatenate(t_code)
    s_all, e_all = np.concatenate(t_s), np.concatenate(t_e)
    order = np.lexsort((s_all, code))
    code, s_all, e_all = code[order], s_all[order], e_all[order]
    uniq, first = np.unique(code, return_index=True)
    s_min = np.minimum.reduceat(s_all, first)
    e_max = np.maximum.reduceat(e_all, first)
    tp, tk = uniq // nk, uniq % nk
    # due on the reference day: in population and enrolled in a programme with this key
    need = np.zeros(uniq.size, bool)
    for p in plan.programmes:
        ks = [key_index[tuple(sorted(c.concepts))] for c in p.controls]
        need |= pr.enrF[p.id][tp] & np.isin(tk, ks)
    need &= pr.in_pop[tp]
    int_days = np.array([plan.key_interval_max[k] * 30.44 for k in plan.keys])[tk]
    S = np.maximum.reduce([s_min - 30, pr.reg[tp], np.rint(H0 - int_days - 60).astype(np.int64)])
    E = np.minimum.reduce([e_max, pr.leave[tp], np.full(tp.size, pr.ext)])
    state = np.zeros(uniq.size, np.int8)  # 0 natural, 1 missing, 2 overdue
    t_over = np.zeros(uniq.size, np.int64)
    for (i, key), (st, t) in pr.planted_tasks.items():
        j = np.searchsorted(uniq, i * nk + key_index[key])
        state[j] = 1 if st == "missing" else 2
        t_over[j] = t
    ws_key = np.array([plan.key_ws[k] for k in plan.keys])[tk]
    ok_need = need & (state == 0)
    lo_slot, hi_slot = np.maximum(ws_key, S), np.minimum(L, E)
    if (lo_slot[ok_need] > hi_slot[ok_need]).any():
        raise AssertionError("a due control has no room for a measurement in its window")
    A = np.where(ok_need, _uniform_day(rng, lo_slot, np.maximum(hi_slot, lo_slot)),
                 np.where(state == 2, t_over, _uniform_day(rng, S, np.maximum(E, S))))
    a_lo = np.where(ok_need, lo_slot, np.where(state == 2, t_over, S))  # overdue: exactly t_over
    a_hi = np.where(ok_need, hi_slot, np.where(state == 2, t_over, E))
    live = (state != 1) & ((E >= S) | ok_need)
    if (need & (state == 2) & (t_over < S)).any():
        raise AssertionError("an overdue control falls before the measurement history")
    # visits per year by concept set: the yearly check a bit more often than the interval
    visits = np.zeros(nk)
    for i, k in enumerate(plan.keys):
        m = plan.key_interval[k]
        v = 12 / m / (0.8 if m <= 12 else 0.65)
        for c in k:
            if c in VISITS_PER_YEAR:
                lo_v, hi_v = VISITS_PER_YEAR[c]
                v = max(v, lo_v + (hi_v - lo_v) * q)
        visits[i] = v
    period = 365.25 / visits[tk] * rng.uniform(0.92, 1.08, tk.size)
    # intake: everything measured within weeks of the enrolment (when that is in the history)
    intake = np.where(s_min - 30 == S, s_min + rng.integers(0, 45, tk.size), INF)
    ti = np.flatnonzero(live)
    owner, d, anchor, lo_b, hi_b = _series(pr.rng, A[ti], S[ti], E[ti], period[ti], state[ti] == 2,
                                                0.005 + 0.08 * (1 - q), intake[ti])
    lo_b = np.where(anchor, a_lo[ti][owner], lo_b)
    hi_b = np.where(anchor, a_hi[ti][owner], hi_b)
    d = _weekday(d, lo_b, hi_b)
    task = ti[owner]
    mp_ = tp[task]
    mk = tk[task]
    chunks = []  # (patient idx, day, concept, values)
    pr.vcache: dict = {}
    for i, k in enumerate(plan.keys):
        sel = mk == i
        if not sel.any():
            continue
        p_i, d_i, t_i = mp_[sel], d[sel], task[sel]
        if set(k) <= set(TOGETHER):
            names = [c for c in TOGETHER if c in k]
            base = _values(pr, names[0], p_i, d_i)
            chunks.append((p_i, d_i, names[0], base))
            for c in names[1:]:
                m = rng.random(p_i.size) < 0.75
                chunks.append((p_i[m], d_i[m], c, _values(pr, c, p_i[m], d_i[m], base=base[m])))
        else:
            choice = rng.integers(0, len(k), uniq.size)  # one concept per patient and set
            for j, c in enumerate(k):
                m = choice[t_i] == j
                if m.any():
                    chunks.append((p_i[m], d_i[m], c, _values(pr, c, p_i[m], d_i[m])))
    # companions (diastolic with systolic, total cholesterol with LDL, height once)
    measured = {c for _, _, c, _ in chunks}
    for primary, comp, share in COMPANIONS:
        if comp in plan.rules.codes.measurements and comp not in plan.concept_in_control and primary in measured:
            for p_i, d_i, c, v in list(chunks):
                if c == primary:
                    m = rng.random(p_i.size) < share
                    chunks.append((p_i[m], d_i[m], comp, _values(pr, comp, p_i[m], d_i[m], base=v[m])))
    if "height" in plan.rules.codes.measurements and "height" not in plan.concept_in_control:
        for p_i, d_i, c, v in list(chunks):
            if c == "bmi":
                o = np.lexsort((d_i, p_i))
                u, f = np.unique(p_i[o], return_index=True)
                chunks.append((u, d_i[o][f], "height", _values(pr, "height", u, d_i[o][f])))
    # implausible typos, inside the reference window, beside the kept plausible values
    for i, p, concept in pr.implausible:
        lo, hi = plan.ws(12), L
        dd = _weekday(_uniform_day(rng, np.array([lo]), np.array([hi])), lo, hi)
        good = _values(pr, concept, np.array([i]), dd)
        bad = np.round(good * 10)
        high = plan.rules.codes.measurements[concept].plausible[1]
        if not (bad > high).all():
            raise AssertionError("a planted typo is not implausible")
        chunks.append((np.array([i]), dd, concept, bad))
    # patients outside the chains: blood pressure for hypertension, the odd lab test
    chunks += _general_measurements(pr)
    pr.tables["measurements"] = _measurement_table(pr, chunks)


def _general_measurements(pr: PracticeState) -> list:
    """Measurements of patients never enrolled: blood pressure for hypertension, the odd lab test."""
    plan = pr.plan
    out = []
    never = ~pr.ever_enrolled
    lo = np.maximum(pr.reg, plan.H0)
    hi = np.minimum(pr.leave, pr.ext)
    ms = plan.rules.codes.measurements
    if "hypertension" in pr.has and "sbp" in ms:
        who = never & pr.has["hypertension"] & (hi > lo)
        lo_h = np.maximum(lo, pr.gstart["hypertension"])
        owner, d = _poisson_days(pr.rng, np.flatnonzero(who & (hi > lo_h)), lo_h, hi, 1.5)
        v = _values(pr, "sbp", owner, d)
        out.append((owner, d, "sbp", v))
        if "dbp" in ms:
            out.append((owner, d, "dbp", _values(pr, "dbp", owner, d, base=v)))
    adults = never & ((pr.ext - pr.bd) / 365.25 >= 40) & (hi > lo)
    for c, rate in (("hba1c", 0.08), ("ldl", 0.1), ("egfr", 0.12), ("weight", 0.08)):
        if c in ms:
            owner, d = _poisson_days(pr.rng, np.flatnonzero(adults), lo, hi, rate)
            out.append((owner, d, c, _values(pr, c, owner, d)))
    return out


def _patient_latent(pr: PracticeState, name: str, make):
    """A per-patient latent array, drawn once (the first time it is asked for)."""
    if name not in pr.vcache:
        pr.vcache[name] = make()
    return pr.vcache[name]


def _values(pr: PracticeState, concept: str, p: np.ndarray, d: np.ndarray, base=None) -> np.ndarray:
    """Values of one concept for rows (patient, day); numbers, or text for coded concepts."""
    rng, n, q = pr.rng, pr.n, pr.q
    spec = pr.plan.rules.codes.measurements[concept]
    age = (d - pr.bd[p]) / 365.25
    k = p.size
    dm2 = pr.has.get("dm2", np.zeros(n, bool))
    copd = pr.has.get("copd", np.zeros(n, bool))

    def latent(name, mean, sd):
        return _patient_latent(pr, name, lambda: rng.normal(mean, sd, n))

    if spec.kind == "coded":
        values = list(spec.values)
        wmap = CODED_WEIGHTS.get(concept, {})
        w = np.array([wmap.get(v.lower(), 1.0 / len(values)) for v in values])
        if concept == "smoking":
            w_copd = np.array([{"ja": .32, "nee": .08, "gestopt": .60}.get(v.lower(), .1) for v in values])
            status = _patient_latent(pr, "smoking", lambda: np.where(
                copd, rng.choice(len(values), n, p=w_copd / w_copd.sum()),
                rng.choice(len(values), n, p=w / w.sum())))
            return np.asarray(values, dtype=object)[status[p]]
        if concept == "foot":
            level = _patient_latent(pr, "foot", lambda: rng.choice(len(values), n, p=w / w.sum()))
            return np.asarray(values, dtype=object)[level[p]]
        return _choice(rng, values, w, k).astype(object)
    if concept == "hba1c":
        v = np.clip(latent("hba1c", 53 + 6 * (0.5 - q), 9), 36, 110)[p] + rng.normal(0, 4, k)
        v = np.clip(v, 32, 140)
    elif concept == "sbp":
        v = latent("sbp", 138 + 8 * (0.5 - q), 12)[p] + 0.15 * (age - 65) + rng.normal(0, 9, k)
        v = np.clip(v, 90, 210)
    elif concept == "dbp":
        v = latent("dbp", 80, 7)[p] - 0.12 * (age - 65) + rng.normal(0, 6, k)
        if base is not None:
            v = np.minimum(v, np.asarray(base, float) - 25)
        v = np.clip(v, 45, 125)
    elif concept == "ldl":
        v = np.clip(latent("ldl", 2.5 + 0.4 * (0.5 - q), 0.7)[p], 0.8, 6) + rng.normal(0, 0.25, k)
        v = np.clip(v, 0.6, 8)
    elif concept == "total_cholesterol":
        v = (np.asarray(base, float) if base is not None else latent("ldl", 2.5, .7)[p]) + 2.1 + rng.normal(0, .3, k)
        v = np.clip(v, 2.0, 12)
    elif concept == "egfr":
        v = np.minimum(118, 128 - 0.75 * age) + latent("egfr", 0, 13)[p] + rng.normal(0, 4, k)
        v = np.clip(v, 10, 130)
    elif concept == "acr":
        v = np.exp(latent("acr", np.log(1.3), 0.9)[p] + rng.normal(0, 0.35, k))
        v = np.clip(v, 0.1, 250)
    elif concept in ("weight", "bmi", "height"):
        sex = pr.sex
        h = _patient_latent(pr, "height", lambda: np.where(sex == "M", rng.normal(180, 7, n),
                                 np.where(sex == "V", rng.normal(167, 6.5, n), rng.normal(173, 8, n))))
        bmi_p = _patient_latent(pr, "bmi", lambda: np.clip(rng.normal(26.5 + 3 * dm2 - 1.5 * copd, 4.5), 17, 50))
        if concept == "height":
            v = np.clip(h[p], 140, 205)
        elif concept == "weight":
            v = np.clip(bmi_p[p] * (h[p] / 100) ** 2 + rng.normal(0, 1.5, k), 38, 220)
        else:
            w = np.asarray(base, float) if base is not None else bmi_p[p] * (h[p] / 100) ** 2
            v = np.clip(w / (h[p] / 100) ** 2, 14, 70)
    elif concept == "exacerbations":
        lam = _patient_latent(pr, "exac", lambda: np.where(copd, 0.7, 0.35) * rng.gamma(1.5, 1 / 1.5, n))
        v = rng.poisson(lam[p]).astype(float)
    elif concept == "mrc":
        grade = _patient_latent(pr, "mrc", lambda: 1 + rng.binomial(4, 0.3, n))
        v = np.clip(grade[p] + rng.integers(-1, 2, k) * (rng.random(k) < 0.2), 1, 5)
        v = v.astype(float)
    elif concept == "ccq":
        v = np.clip(np.clip(latent("ccq", 1.6, 0.8)[p], 0, 5) + rng.normal(0, 0.3, k), 0, 5.5)
    elif concept == "fev1_pct":
        v = np.clip(np.clip(latent("fev1", 62, 16)[p], 25, 115) + rng.normal(0, 4, k), 20, 120)
    elif concept == "acq":
        v = np.clip(np.clip(latent("acq", 1.1, 0.7)[p], 0, 5) + rng.normal(0, 0.35, k), 0, 5.5)
    elif concept == "act":
        v = np.clip(np.clip(latent("act", 20, 3)[p], 6, 25) + rng.normal(0, 1.5, k), 5, 25)
    else:  # a concept this file does not know: the middle of its plausible range
        lo, hi = spec.plausible or (0, 100)
        v = lo + (hi - lo) * (0.3 + 0.2 * rng.random(k))
    lo, hi = spec.plausible or (-np.inf, np.inf)
    decimals = _decimals(concept)
    v = np.round(v, decimals)
    return np.clip(v, lo, hi)


def _measurement_table(pr: PracticeState, chunks) -> dict[str, pa.Array]:
    """The measurements table from (patient, day, concept, values) chunks."""
    ms = pr.plan.rules.codes.measurements
    if not chunks:
        return {c: pa.array([], pa.string()) for c in TABLE_COLUMNS["measurements"]}
    p = np.concatenate([c[0] for c in chunks]).astype(np.int64)
    d = np.concatenate([c[1] for c in chunks]).astype(np.int64)
    values, nhg, unit = [], [], []
    for _, _, concept, v in chunks:
        spec = ms[concept]
        if spec.kind == "coded":
            values.append(pa.array(np.asarray(v, dtype=object), pa.string()))
        else:
            values.append(_Text.decimal(np.asarray(v, float), _decimals(concept)))
        nhg.append(np.full(len(v), spec.nhg, dtype=np.int64))
        unit.append(np.full(len(v), spec.unit or "", dtype=object))
    value = pa.concat_arrays([a.cast(pa.string()) for a in values])
    nhg_a, unit_a = np.concatenate(nhg), np.concatenate(unit)
    order = np.lexsort((nhg_a, d, p))
    return {
        "patient_id": pr.pids(p[order]),
        "date": pr.plan.text.dates(d[order], pr.info.bom),
        "nhg_code": _Text.ints(nhg_a[order]),
        "value": value.take(pa.array(order)),
        "unit": pa.array(unit_a[order], pa.string(), mask=unit_a[order] == ""),
    }
