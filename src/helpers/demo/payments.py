"""Payments of a demo practice: declarations per programme, quarter and insurer (enrolled on
the quarter's first day; rejected when not in the population, a minor, or DM2 and CVRM at once)."""

from __future__ import annotations

import numpy as np

from ..quarter import Quarter
from .arrays import _day, _weekday
from .constants import CHAIN_NUMBERS, INF, INSURERS
from .state import PracticeState


def declarations(pr: PracticeState, quarters: list[Quarter], max_ext: int) -> list[tuple]:
    """Declarations per programme, quarter and insurer: enrolled on day 1, awarded = paid for."""
    rng, plan = pr.rng, pr.plan
    r = pr.rows
    out = []
    seq = {}
    ins_codes = [c for c, _ in INSURERS]
    ins_idx = np.searchsorted(np.array(ins_codes), pr.ins, sorter=np.argsort(ins_codes))
    ins_idx = np.argsort(ins_codes)[ins_idx]
    k_ins = len(ins_codes)
    for quarter in quarters:
        Fq = _day(quarter.first_day)
        in_pop = (pr.reg <= Fq) & (pr.leave > Fq) | ((pr.leave == Fq) & ~pr.dead & (pr.reg <= Fq))
        adult = quarter.first_day.year - pr.by >= plan.rules.minimum_age
        act = (r["s"] <= Fq) & (r["e"] >= Fq)
        enrolled = {p.id: np.zeros(pr.n, bool) for p in plan.programmes}
        for p in plan.programmes:
            enrolled[p.id][r["pid"][act & (r["prog"] == p.id)]] = True
        for p in plan.programmes:
            m = enrolled[p.id]
            bad = m & (~in_pop | ~adult)
            if p.id == "CVRM" and "DM2" in enrolled:
                bad |= m & enrolled["DM2"]
            chain = CHAIN_NUMBERS.get(p.id, 5 + [x.id for x in plan.programmes].index(p.id))
            n_decl = np.bincount(ins_idx[m], minlength=k_ins)
            n_bad = np.bincount(ins_idx[bad], minlength=k_ins)
            for j, code in enumerate(ins_codes):
                declared = int(n_decl[j])
                if declared == 0:
                    continue
                rejected = int(n_bad[j]) + int(rng.binomial(declared, 0.004))
                awarded = max(0, declared - rejected)
                amount = awarded * p.annual_tariff_eur / 4
                paid = Fq + int(rng.integers(42, 71))
                paid = int(_weekday(np.array([paid]), np.array([paid - 2]), np.array([paid + 2]))[0])
                k = (quarter.year, chain)
                seq[k] = seq.get(k, 0) + 1
                out.append((pr.info.agb, p.id, str(quarter), code, declared, awarded, amount,
                            paid if paid <= max_ext else INF, f"{quarter.year}{chain}-{pr.info.seq}-{seq[k]}"))
    return out
