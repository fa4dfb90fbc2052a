"""Planted defects of a demo practice and their ground truth.

The practice is generated naturally clean; each planted kind is put on patients picked once (a
patient carries one kind), by changing exactly the row that makes the rule of
docs/registration-rules.md fire. Each planted finding is recorded in ``PracticeState.truth``.
The controls (missing, overdue, no chain contact, implausible value) are only marked here: the
measurement and contact steps honour the marks.

Planted care-use profiles (the praktijkspiegel)
-----------------------------------------------
With at least ``PROFILE_MIN_PRACTICES`` practices, one practice each (drawn from the stream
(seed, 4), see :func:`helpers.demo.plan._profiles`) gets a profile of ``PROFILES``; every other
practice draws its care use from the same age/sex-specific rates, so it differs only by chance
(Poisson noise, its patients' propensities, a little its quality). The profiles are written beside the
dataset to ``<out>.mirror_truth.csv`` (``practice_agb;measure;direction;planted_factor``), one row
per measure of the praktijkspiegel the profile moves, with ``direction`` ``higher``, ``lower``,
or ``none`` (the crude rate differs but the age/sex-standardised O/E must stay inside the
overdispersion-adjusted 99.8% limits: the practice must *not* be flagged after standardisation):

``dermatologie``  ``verwijzing_dermatologie`` higher x2.0: dermatology referrals on top of the
                  usual ones, so ``verwijzingen_medisch_specialist`` is higher too (its realised
                  factor is written); the other specialisms are unchanged.
``antibiotica``   ``antibiotica`` (patients with a J01 prescription) higher, about x1.5: an extra
                  first-choice antibiotic after 8% of GP contacts; the ATC main group
                  ``voorschrift_j`` moves with it. Second-choice antibiotics are not prescribed
                  more, so their number stays, but ``antibiotica_tweede_keus`` (second-choice
                  patients as a share *of the antibiotics patients*) is lower: the extra
                  first-choice patients dilute it (factor 1/1.5).
``e_consult``     ``contacten_e_consult`` higher x2.5, in place of telephone contacts:
                  ``contacten_telefonisch`` lower (its realised factor is written), and
                  ``e_consult_aandeel`` (e-consults as a share of all contacts) higher x2.5, as
                  ``contacten_totaal`` is unchanged; roles unchanged.
``older``         direction ``none`` for ``contacten_totaal``, ``verwijzingen_medisch_specialist``
                  and every ``voorschrift_<ATC main group>``: crude rates high, standardised
                  ordinary. And a row ``populatie_65plus`` higher (about twice the share of 65+):
                  a fact about the practice's population, *not* a mirror measure (no
                  parameters/mirror file): check it on the age make-up the mirror returns
                  (``mirror_strata``).

Beside the profiles, the chain-care quality (``_PracticeInfo.quality``, drawn in
:func:`helpers.demo.plan._practice_register`) moves lab measurements: a practice planted below
``LOW_QUALITY`` (constants; only the weakest practice, planted at 0.1 — the others lie within
0.3..0.95) misses so many controls that ``diagnostiek_egfr``, ``diagnostiek_hba1c`` and
``diagnostiek_lipiden`` (``LOW_QUALITY_MEASURES``) are written ``lower``, whether or not it also
has a profile. Its factor is the planted share of those controls met (1 - missed share, see
below) against that of a practice of typical quality (``QUALITY_TYPICAL``): an indication only,
as visits per year also fall with quality. These rows too are written only when the care group
has at least ``PROFILE_MIN_PRACTICES`` practices.

Measure ids are those of parameters/mirror/*.yaml, lower case (``voorschrift_j``, not
``voorschrift_J``).

Factors are the planted multipliers of the age/sex-specific rate, not the O/E a mirror finds
(that has Poisson noise and the practice's own weight in the reference).

Missing and overdue controls are planted per control (``MISSED_*`` in constants): a share of
the single-enrolled patients of each programme, falling with the practice's quality, so the
measured shares of the process indicators lie between about 80% and 98%; each missed control
is a ``measurement_missing`` or ``measurement_overdue`` row of the ground truth.
"""

from __future__ import annotations

import numpy as np

from .arrays import _uniform_day
from .constants import (ACUTE, BAND_MID, DERMATOLOGY_FACTOR, E_CONSULT_FACTOR, IMPLAUSIBLE_CONCEPTS, INF, LOW_QUALITY,
                        LOW_QUALITY_MEASURES, MISSED_FACTOR, MISSED_HIGH, MISSED_LOW, MISSING_SHARE, NEAR_MISS,
                        NL_PYRAMID, OLDER_TILT, PLANT_RANGE, PROFILE_MIN_PRACTICES, QUALITY_TYPICAL, REGIMENS)
from .state import PracticeState


def _missed_base(q: float) -> float:
    """The share of a programme's single-enrolled patients that misses a control, at quality ``q``."""
    return MISSED_LOW + (MISSED_HIGH - MISSED_LOW) * (1 - q) ** 1.2


def _missed_share(base: float, key) -> float:
    """The missed share of the control measuring the concepts ``key``."""
    return min(base * max((MISSED_FACTOR.get(k, 1.0) for k in key), default=1.0), 0.25)


def _count(pr: PracticeState, kind: str) -> int:
    """How many of ``kind`` to plant: more in a weak and in a large practice."""
    lo, hi = PLANT_RANGE[kind]
    x = lo + (hi - lo) * (1 - pr.q) ** 1.3 * (pr.info.target / 3500) * pr.rng.uniform(0.8, 1.2)
    return max(1, int(round(x)))


def _pick(pr: PracticeState, masks: dict[str, np.ndarray], kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Pick (patient, programme) pairs among candidates, one per patient, marking them used."""
    want = _count(pr, kind)
    names = [p for p in masks]
    pid = np.concatenate([np.flatnonzero(masks[p] & ~pr.used) for p in names] + [np.zeros(0, np.int64)])
    prog = np.concatenate([np.full(int((masks[p] & ~pr.used).sum()), i) for i, p in enumerate(names)]
                          + [np.zeros(0, np.int64)]).astype(np.int64)
    if pid.size == 0:
        return pid, prog
    perm = pr.rng.permutation(pid.size)
    pid, prog = pid[perm], prog[perm]
    _, first = np.unique(pid, return_index=True)
    take = np.sort(first)[:want]
    pr.used[pid[take]] = True
    return pid[take], np.asarray(names, dtype=object)[prog[take]]


def _truth(pr: PracticeState, pids, programmes, kind: str, controls=None) -> None:
    """Record planted findings in the ground truth."""
    progs = np.broadcast_to(np.asarray(programmes, dtype=object), np.shape(pids))
    ctrls = [""] * len(pids) if controls is None else controls
    pr.truth += [(int(i), str(p), kind, str(c)) for i, p, c in zip(pids, progs, ctrls)]


def plant(pr: PracticeState) -> None:
    """Plant every kind of PLANT_RANGE on the natural enrolments, in a fixed order."""
    rng, plan, n, F = pr.rng, pr.plan, pr.n, pr.plan.F
    pr.used = np.zeros(n, bool)
    progs = {p.id: p for p in plan.programmes}
    enrF = {p: pr.enrolled_at(F, p) for p in progs}
    elig = {p.id: pr.in_pop & pr.adult & pr.active(p.inclusion, F) & ~pr.active(p.excluded_if, F)
            for p in plan.programmes}
    single = {p: np.ones(n, bool) for p in progs}
    for p in progs:
        single[p][pr.extra[p]["pid"]] = False

    # enrolled but died / moved away: the enrolment was never closed
    for kind, state in (("enrolled_deceased", pr.deceased), ("enrolled_deregistered", pr.dereg)):
        at_leave = {p: m["has"] & (m["e"] == pr.leave) & (m["s"] <= pr.leave) for p, m in pr.main.items()}
        any_row = np.zeros(n, bool)
        for m in at_leave.values():
            any_row |= m
        picked, _ = _pick(pr, {"*": state & any_row}, kind)
        for p in progs:
            sel = picked[at_leave[p][picked]]
            pr.main[p]["e"][sel] = INF
            _truth(pr, sel, p, kind)

    # a minor in a chain (astma in practice)
    masks = {p.id: pr.in_pop & ~pr.adult & (pr.age_F >= 12) & pr.active(p.inclusion, F)
             & ~pr.active(p.excluded_if, F) for p in plan.programmes}
    pids, pp = _pick(pr, masks, "enrolled_under_18")
    for p in progs:
        sel = pids[pp == p]
        m = pr.main[p]
        lo = np.maximum(pr.first_start(progs[p].inclusion)[sel], pr.reg[sel])
        m["s"][sel] = np.maximum(lo, F - rng.integers(30, 700, sel.size))
        m["e"][sel] = pr.leave[sel]
        m["mp"][sel] = 0
        m["has"][sel] = True
        pr.drop_extra(p, sel)
        _truth(pr, sel, p, "enrolled_under_18")

    # a DM2 patient also enrolled in CVRM (the rule names these two programmes)
    if "DM2" in progs and "CVRM" in progs:
        cv = progs["CVRM"]
        mask = pr.in_pop & pr.adult & enrF["DM2"] & pr.active(cv.diagnosis_groups, F) & ~enrF["CVRM"]
        pids, _ = _pick(pr, {"CVRM": mask}, "enrolled_dm2_and_cvrm")
        m = pr.main["CVRM"]
        old = pids[m["has"][pids]]  # an earlier CVRM enrolment stays in the history
        x = pr.extra["CVRM"]
        pr.extra["CVRM"] = {"pid": np.concatenate([x["pid"], old]), "s": np.concatenate([x["s"], m["s"][old]]),
                              "e": np.concatenate([x["e"], m["e"][old]]),
                              "mp": np.concatenate([x["mp"], m["mp"][old]])}
        lo = np.maximum.reduce([pr.first_start(cv.diagnosis_groups)[pids], pr.reg[pids], pr.t18[pids],
                                pr.main["DM2"]["s"][pids]])
        lo = np.where(m["has"][pids], np.maximum(lo, np.minimum(m["e"][pids], F - 1) + 1), lo)
        lo = np.minimum(lo, F)
        m["s"][pids] = _uniform_day(rng, lo, np.full(pids.size, F))
        m["e"][pids] = pr.leave[pids]
        m["mp"][pids] = 0
        m["has"][pids] = True
        _truth(pr, pids, "CVRM", "enrolled_dm2_and_cvrm")

    # an ended enrolment while the diagnosis is active: with the specialist as recorded
    # reason (excluded, no finding) or without it (a finding)
    for kind, mp in (("excluded_by_reason", 1), ("enrolment_ended_with_diagnosis", 0)):
        masks = {p: elig[p] & enrF[p] & single[p] & (pr.main[p]["s"] <= F - 90) for p in progs}
        pids, pp = _pick(pr, masks, kind)
        for p in progs:
            sel = pids[pp == p]
            s = pr.main[p]["s"][sel]
            pr.main[p]["e"][sel] = s + 30 + np.floor(rng.random(sel.size) * (F - 1 - s - 30)).astype(np.int64)
            pr.main[p]["mp"][sel] = mp
            _truth(pr, sel, p, kind)

    # diagnosis, never enrolled
    pids, pp = _pick(pr, {p: elig[p] & enrF[p] for p in progs}, "diagnosis_not_enrolled")
    for p in progs:
        sel = pids[pp == p]
        pr.main[p]["has"][sel] = False
        pr.drop_extra(p, sel)
        _truth(pr, sel, p, "diagnosis_not_enrolled")

    # enrolled without a programme diagnosis: a near-miss code, or the episode closed
    masks = {}
    for p in plan.programmes:
        ok = pr.in_pop & pr.adult & enrF[p.id]
        for o in plan.programmes:
            if o.id != p.id and set(p.diagnosis_groups) & set(o.excluded_if):
                ok &= ~pr.present(o.inclusion)  # the diagnosis also keeps them out of `o`
            if o.id != p.id and set(p.diagnosis_groups) & set(o.diagnosis_groups):
                ok &= ~pr.present(set(p.diagnosis_groups) & set(o.diagnosis_groups))
        masks[p.id] = ok
    pids, pp = _pick(pr, masks, "enrolled_without_diagnosis")
    for p in progs:
        sel = pids[pp == p]
        near = NEAR_MISS.get(p)
        if near is not None and any(g.matches(near) for g in plan.rules.codes.icpc.values()):
            near = None
        use_near = rng.random(sel.size) < 0.5 if near is not None else np.zeros(sel.size, bool)
        start_max = np.full(sel.size, -1, dtype=np.int64)
        for g in progs[p].diagnosis_groups:
            if g in pr.has:
                start_max = np.where(pr.has[g][sel], np.maximum(start_max, pr.gstart[g][sel]), start_max)
        if near is None:
            keep = start_max <= F - 2
            pr.used[sel[~keep]] = False  # could not plant: stays clean
            sel, use_near, start_max = sel[keep], use_near[keep], start_max[keep]
        else:
            use_near |= start_max > F - 2
        for g in progs[p].diagnosis_groups:
            if g not in pr.has:
                continue
            h = pr.has[g][sel]
            nm = sel[h & use_near]
            pr.code[g][nm] = near
            en = sel[h & ~use_near]
            st = pr.gstart[g][en]
            pr.gend[g][en] = st + np.floor(rng.random(en.size) * (F - 1 - st)).astype(np.int64)
        _truth(pr, sel, p, "enrolled_without_diagnosis")

    # main practitioner: specialist, or not recorded
    for kind, mp in (("main_practitioner_specialist", 1), ("main_practitioner_unknown", 2)):
        pids, pp = _pick(pr, {p: enrF[p] & pr.in_pop for p in progs}, kind)
        for p in progs:
            sel = pids[pp == p]
            pr.main[p]["mp"][sel] = mp
            _truth(pr, sel, p, kind)

    # ---- controls: on the final enrolments
    pr.enrF = {p: pr.enrolled_at(F, p) for p in progs}
    n_enr = sum(m.astype(int) for m in pr.enrF.values())
    any_enr = n_enr > 0
    pids, _ = _pick(pr, {"*": pr.in_pop & any_enr}, "no_chain_contact")
    pr.nochain = np.zeros(n, bool)
    pr.nochain[pids] = True
    first = np.full(n, "", dtype=object)
    for p in reversed(plan.programmes):
        first = np.where(pr.enrF[p.id], p.id, first)
    _truth(pr, pids, first[pids], "no_chain_contact")

    # missing and overdue measurements: per control, on a share of the single-enrolled patients
    # that falls with the practice's quality (measured shares about 80-98%); a patient may miss
    # several controls, and carries no other planted kind
    pr.planted_tasks: dict[tuple[int, tuple], tuple[str, int]] = {}
    free = pr.in_pop & (n_enr == 1) & ~pr.used
    base = _missed_base(pr.q)
    for p in plan.programmes:
        if not p.controls:
            continue
        cand = np.flatnonzero(free & pr.enrF[p.id])
        longest = max(c.interval_months for c in p.controls)
        first_start = pr.main[p.id]["s"].copy()
        x = pr.extra[p.id]
        np.minimum.at(first_start, x["pid"], x["s"])
        limit = plan.ws(longest) - 400
        can_overdue = (first_start[cand] <= limit) & (pr.reg[cand] <= limit)
        for key in dict.fromkeys(tuple(sorted(c.concepts)) for c in p.controls):
            r = _missed_share(base, key)
            u = rng.random(cand.size)
            missing = u < r * MISSING_SHARE
            overdue = ~missing & can_overdue & (u < r)
            missing |= ~can_overdue & (u < r)
            t_over = plan.key_ws[key] - rng.integers(32, 361, cand.size)
            for i in cand[missing]:
                pr.planted_tasks[(int(i), key)] = ("missing", 0)
                hits = [c2.id for c2 in p.controls if tuple(sorted(c2.concepts)) == key]
                _truth(pr, [i] * len(hits), p.id, "measurement_missing", hits)
            for i, t in zip(cand[overdue], t_over[overdue]):
                pr.planted_tasks[(int(i), key)] = ("overdue", int(t))
                hits = [c2.id for c2 in p.controls
                        if tuple(sorted(c2.concepts)) == key and t < plan.ws(c2.interval_months)]
                _truth(pr, [i] * len(hits), p.id, "measurement_overdue", hits)
            pr.used[cand[missing | overdue]] = True

    # a typed-in value out of the plausible range, beside an in-window plausible one
    pr.implausible: list[tuple[int, str, str]] = []
    masks = {}
    for lead in (IMPLAUSIBLE_CONCEPTS[0], None):  # DM2 (HbA1c) patients; else any with such a concept
        for p in plan.programmes:
            concepts = [k for c in p.controls for k in c.concepts if k in IMPLAUSIBLE_CONCEPTS]
            if concepts and (lead is None or lead in concepts):
                masks[p.id] = pr.in_pop & pr.enrF[p.id]
        if masks:
            break
    if masks:
        pids, pp = _pick(pr, masks, "implausible_value")
        for i, p in zip(pids, pp):
            concepts = [k for c in progs[p].controls for k in c.concepts if k in IMPLAUSIBLE_CONCEPTS]
            concept = concepts[0] if rng.random() < 0.75 else concepts[-1]
            pr.implausible.append((int(i), p, concept))
            _truth(pr, [i], p, "implausible_value", [concept])


#: The ATC main groups the generator prescribes (the ``voorschrift_<letter>`` measures).
ATC_MAIN_GROUPS = tuple(sorted({a[0] for a, _, _ in ACUTE} | {o[0] for r in REGIMENS.values() for opts, _, _ in r
                                                              for o in opts} | {"H"}))


def care_use_profile(pr: PracticeState) -> None:
    """Record the practice's planted care-use profile (``info.profile``) and, for a practice of
    low planted quality, its fewer lab measurements in ``profile_truth``; the contact,
    prescription and referral steps plant the profile. Draws nothing from the stream."""
    prof = pr.info.profile
    if prof == "dermatologie":
        pr.profile_truth.append(("verwijzing_dermatologie", "higher", DERMATOLOGY_FACTOR))
    elif prof == "antibiotica":
        pr.profile_truth += [("antibiotica", "higher", 1.5), ("voorschrift_j", "higher", 1.5),
                             ("antibiotica_tweede_keus", "lower", 1 / 1.5)]
    elif prof == "e_consult":
        pr.profile_truth += [("contacten_e_consult", "higher", E_CONSULT_FACTOR),
                             ("e_consult_aandeel", "higher", E_CONSULT_FACTOR)]
    elif prof == "older":
        def share(tilt):
            w = NL_PYRAMID * np.exp(tilt * (BAND_MID - 42) / 40)
            return w[BAND_MID > 65].sum() / w.sum()
        pr.profile_truth.append(("populatie_65plus", "higher", share(OLDER_TILT) / share(0.0)))
        pr.profile_truth += [(m, "none", 1.0) for m in
                             ("contacten_totaal", "verwijzingen_medisch_specialist",
                              *(f"voorschrift_{g.lower()}" for g in ATC_MAIN_GROUPS))]
    if pr.info.care_group_size >= PROFILE_MIN_PRACTICES and pr.q < LOW_QUALITY:
        for m, key in LOW_QUALITY_MEASURES.items():
            met = 1 - _missed_share(_missed_base(pr.q), key)
            pr.profile_truth.append((m, "lower", met / (1 - _missed_share(_missed_base(QUALITY_TYPICAL), key))))
