"""Payments of a demo practice, as a care group sees them in payments.csv: per programme,
quarter and insurer the patients declared (enrolled on the quarter's first day) and one row per
payment round, priced by that insurer's contract of that year (parameters/contracts.yaml, read
through helpers.rules.contracts; the money rules are helpers.money's).

Per cell (practice x programme x quarter x insurer):

- *rejected*: patients not in the population, minors, and CVRM patients also in DM2, plus a few
  at random (0.4%): never awarded;
- *pending*: 3% of the rest, awarded in a follow-up round (70% in the first follow-up, 14 days
  after the first round, the others in the second);
- round 1 (the 1st of the quarter's third month): all declared, awarded = declared - rejected -
  pending; each follow-up reconsiders what is still open and awards the pending ones; when
  patients were rejected the first follow-up shows them with fewer (or no) patients awarded, so
  a row with ``amount_eur`` 0 is a declaration rejected entirely;
- a round after the latest extraction has not happened yet and is not written.

The amount of a round is its awarded patients x the contract's price per patient (the quarterly
tariff plus the result-reward surcharge: 4%, or 2% when signed on or after 1 November preceding
the contract year). Beside every cell :func:`declarations` returns the money ground truth
(:data:`~.constants.MONEY_TRUTH_COLUMNS`): the cell's figures, the cap and what is above it
(the demo's older practice is above the CVRM cap), the reward, and per quarter the
regioprestatie of the practice's VGZ patients.
"""

from __future__ import annotations

import numpy as np

from ..money.invoice import invoice_number
from ..money.rules import (eur, exposure_cents, max_patients, patient_price_cents, patients_above_cap,
                           quarter_tariff_cents, regioprestatie_cents, reward_cents, reward_pct, round_dates)
from ..quarter import Quarter
from ..rules.contracts import Contract, Contracts
from .arrays import _day
from .constants import INSURERS
from .state import PracticeState

#: Shares of a cell's declarations: rejected at random (on top of the ineligible), awarded later.
RANDOM_REJECTED, PENDING, PENDING_FIRST_FOLLOW_UP = 0.004, 0.03, 0.7


def demo_contract(contracts: Contracts, uzovi: str, year: int) -> Contract:
    """The contract of ``uzovi`` for ``year``; for a year contracts.yaml does not cover (a demo
    far in the past or future) the nearest year's, so any extraction date can be generated."""
    ins = contracts.insurer_of(uzovi).id
    years = sorted(y for i, y in contracts.contracts if i == ins)
    if not years:
        raise KeyError(f"no contract of {ins} in {contracts.path}")
    return contracts.contracts[(ins, min(years, key=lambda y: (abs(y - year), -y)))]


def _fmt(amount_cents: int) -> str:
    return str(eur(amount_cents))


def declarations(pr: PracticeState, quarters: list[Quarter], max_ext: int) -> tuple[list[tuple], list[tuple]]:
    """``(payments rows, money truth rows)`` of one practice (PAYMENT_COLUMNS, MONEY_TRUTH_COLUMNS)."""
    rng, plan = pr.rng, pr.plan
    contracts: Contracts = plan.contracts
    r = pr.rows
    out, truth = [], []
    seq: dict[tuple, int] = {}
    ins_codes = [c for c, _ in INSURERS]
    ins_idx = np.searchsorted(np.array(ins_codes), pr.ins, sorter=np.argsort(ins_codes))
    ins_idx = np.argsort(ins_codes)[ins_idx]
    k_ins = len(ins_codes)
    for quarter in quarters:
        Fq = _day(quarter.first_day)
        in_pop = (pr.reg <= Fq) & (pr.leave > Fq) | ((pr.leave == Fq) & ~pr.dead & (pr.reg <= Fq))
        adult = quarter.first_day.year - pr.by >= plan.rules.minimum_age
        n_list = np.bincount(ins_idx[in_pop], minlength=k_ins)
        act = (r["s"] <= Fq) & (r["e"] >= Fq)
        enrolled = {p.id: np.zeros(pr.n, bool) for p in plan.programmes}
        for p in plan.programmes:
            enrolled[p.id][r["pid"][act & (r["prog"] == p.id)]] = True
        dates = [_day(d) for d in round_dates(quarter, contracts.rounds, 3)]
        for p in plan.programmes:
            m = enrolled[p.id]
            bad = m & (~in_pop | ~adult)
            if p.id == "CVRM" and "DM2" in enrolled:
                bad |= m & enrolled["DM2"]
            chain = contracts.chain_numbers[p.id]
            n_decl = np.bincount(ins_idx[m], minlength=k_ins)
            n_bad = np.bincount(ins_idx[bad], minlength=k_ins)
            for j, code in enumerate(ins_codes):
                declared = int(n_decl[j])
                if declared == 0:
                    continue
                contract = demo_contract(contracts, code, quarter.year)
                terms = contract.programmes[p.id]
                pct = reward_pct(contract.signed_on, contract.year, contracts.reward)
                price = patient_price_cents(terms.annual_tariff_eur, pct)
                rejected = min(declared, int(n_bad[j]) + int(rng.binomial(declared, RANDOM_REJECTED)))
                pending = int(rng.binomial(declared - rejected, PENDING))
                p2 = int(rng.binomial(pending, PENDING_FIRST_FOLLOW_UP))
                rounds = [(declared, declared - rejected - pending)]
                if pending or rejected:
                    rounds.append((pending + rejected, p2))
                if pending - p2:
                    rounds.append((pending - p2 + rejected, pending - p2))
                rounds = [(d, a, day) for (d, a), day in zip(rounds, dates) if day <= max_ext]
                if not rounds:
                    continue
                for considered, awarded, day in rounds:
                    k = (quarter.year, chain)
                    seq[k] = seq.get(k, 0) + 1
                    out.append((pr.info.agb, p.id, str(quarter), code, considered, awarded, awarded * price / 100,
                                day, invoice_number(quarter.year, chain, pr.info.seq, seq[k])))
                awarded = sum(a for _, a, _ in rounds)
                paid = awarded * price
                follow = sum(a for _, a, _ in rounds[1:]) * price
                ls = int(n_list[j]) if contract.cap_basis == "insurer_list" else int(in_pop.sum())
                over = patients_above_cap(awarded, ls, terms.max_inclusion_pct)
                truth.append((pr.info.agb, p.id, str(quarter), code, str(declared), str(awarded),
                              str(declared - awarded), str(len(rounds)), _fmt(paid), _fmt(follow), str(ls),
                              str(max_patients(ls, terms.max_inclusion_pct)), str(over),
                              _fmt(exposure_cents(over, terms.annual_tariff_eur)), str(pct),
                              _fmt(reward_cents(awarded, terms.annual_tariff_eur, pct)), ""))
                assert paid == awarded * (quarter_tariff_cents(terms.annual_tariff_eur)) + \
                    reward_cents(awarded, terms.annual_tariff_eur, pct)
        # the regioprestatie: registered patients of the insurer that pays it, from its contract
        for j, code in enumerate(ins_codes):
            ins = contracts.insurer_of(code)
            c = contracts.contracts.get((ins.id, quarter.year))
            if ins.regioprestatie_veelgebruikers and c is not None and c.regioprestatie_eur_per_patient_year is not None:
                truth.append((pr.info.agb, "", str(quarter), code, "", "", "", "", "", "", str(int(n_list[j])),
                              "", "", "", "", "", _fmt(regioprestatie_cents(int(n_list[j]),
                                                                             c.regioprestatie_eur_per_patient_year))))
    return out, truth


__all__ = ["declarations", "demo_contract"]
