"""Population of a demo practice: who is on the list (birth, registration, sex, insurer,
postcode), who leaves it (death or moving away) and the patients table."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .arrays import _band5, _choice, _jan1, _years_of
from .constants import (BAND_MID, BIRTH_RATE, DEFAULT_PREVALENCE, INF, INSURERS, MORTALITY_Q, MOVE_IN_RATE,
                        MOVE_OUT_RATE, MOVER_PROP, N_BANDS, NL_PYRAMID, PREVALENCE)
from .state import PracticeState
from .text import _Text


def patients(pr: PracticeState) -> None:
    """The list over the history: patients at its start, movers in and births."""
    rng, plan, info = pr.rng, pr.plan, pr.info
    H0, ext = plan.H0, pr.ext
    span = ext - H0
    yrs = span / 365.25
    T = info.target
    w = NL_PYRAMID * np.exp(info.tilt * (BAND_MID - 42) / 40)

    def ages(weights, n):
        band = rng.choice(N_BANDS, size=n, p=weights / weights.sum())
        return band * 5 + rng.random(n) * 5

    n_base, n_move, n_birth = T, rng.poisson(T * MOVE_IN_RATE * yrs), rng.poisson(T * BIRTH_RATE * yrs)
    bd_b = H0 - np.rint(ages(w, n_base) * 365.25).astype(np.int64) - 1
    stay = np.minimum(rng.exponential(11.0, n_base), rng.uniform(30, 42, n_base))  # years on the list
    reg_b = H0 - 1 - np.rint(stay * 365.25).astype(np.int64)
    reg_b = np.maximum(reg_b, bd_b + rng.integers(5, 45, n_base))
    reg_m = H0 + rng.integers(0, span + 1, n_move)
    bd_m = reg_m - np.rint(ages(w * MOVER_PROP, n_move) * 365.25).astype(np.int64) - 1
    bd_n = H0 + rng.integers(0, max(span - 20, 1), n_birth)
    reg_n = np.minimum(bd_n + rng.integers(5, 45, n_birth), ext)
    bd = np.concatenate([bd_b, bd_m, bd_n])
    reg = np.concatenate([reg_b, reg_m, reg_n])
    order = np.argsort(reg, kind="stable")  # HIS numbers grow with the registration date
    pr.bd, pr.reg = bd[order], reg[order]
    n = pr.n = bd.size
    pr.by = _years_of(pr.bd)
    ids = rng.integers(100000, 300000) + np.cumsum(rng.integers(1, 40, n))
    pr.pid = ids.astype(str)
    age_x = (ext - pr.bd) / 365.25
    p_male = np.where(age_x < 65, .505, np.where(age_x < 80, .48, np.where(age_x < 90, .40, .30)))
    u = rng.random(n)
    pr.sex = np.where(u < 0.001, "O", np.where(rng.random(n) < p_male, "M", "V"))
    pr.ins = _choice(rng, [c for c, _ in INSURERS], info.insurer_shares, n)
    lo, hi = info.pc4_range
    pr.pc4 = np.where(rng.random(n) < 0.85, info.pc4_core[rng.integers(0, len(info.pc4_core), n)],
                        rng.integers(lo, hi + 1, n))
    pr.age_x = age_x


def leaving(pr: PracticeState) -> None:
    """Death and moving away (mortality rises with chronic groups), and who is in the population."""
    rng, plan = pr.rng, pr.plan
    t0 = np.maximum(pr.reg, plan.H0)
    age0 = (t0 - pr.bd) / 365.25
    b = _band5(age0)
    mult = np.ones(pr.n)
    for g, has in pr.has.items():
        mult = np.where(has, mult * PREVALENCE.get(g, DEFAULT_PREVALENCE)[4], mult)
    lam_d = -np.log1p(-MORTALITY_Q[b]) * np.minimum(mult, 5)
    mean_prop = (NL_PYRAMID * MOVER_PROP).sum() / NL_PYRAMID.sum()
    lam_m = MOVE_OUT_RATE * MOVER_PROP[b] / mean_prop
    t_death = t0 + rng.exponential(1.0, pr.n) / lam_d * 365.25
    t_move = t0 + rng.exponential(1.0, pr.n) / lam_m * 365.25
    leave = np.rint(np.minimum(t_death, t_move)).astype(np.int64)
    gone = leave <= pr.ext
    pr.dead = gone & (t_death <= t_move)
    leave = np.where(gone, leave, INF)
    leave = np.where(leave == plan.F, plan.F + 1, leave)  # nobody leaves on the population day itself
    pr.leave = leave
    F = plan.F
    pr.in_pop = (pr.reg <= F) & (leave > F)
    pr.deceased = pr.dead & (leave <= F)
    pr.dereg = ~pr.dead & (leave < F)
    pr.age_F = plan.quarter.first_day.year - pr.by
    pr.adult = pr.age_F >= plan.rules.minimum_age
    pr.t18 = _jan1(pr.by + plan.rules.minimum_age)


def patient_table(pr: PracticeState) -> None:
    """The patients table of the contract."""
    plan, bom = pr.plan, pr.info.bom
    dead_on = np.where(pr.dead, pr.leave, INF)
    pr.tables["patients"] = {
        "patient_id": pr.pids(np.arange(pr.n)),
        "birth_year": _Text.ints(pr.by),
        "sex": pa.array(pr.sex.astype(object), pa.string()),
        "postcode4": _Text.ints(pr.pc4),
        "insurer_uzovi": pa.array(pr.ins.astype(object), pa.string()),
        "registered_from": plan.text.dates(pr.reg, bom),
        "registered_until": plan.text.dates(pr.leave, bom),
        "deceased_on": plan.text.dates(dead_on, bom),
    }
