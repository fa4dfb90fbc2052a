"""The money rules of chain care, one pure function each (plain values in, plain values out).

Money is integer euro cents everywhere (``int``); :func:`eur` turns cents into a Decimal for
showing. Percentages and tariffs are Decimals (as :mod:`helpers.rules.contracts` loads them).

Rounding, stated once:

- the quarterly tariff per patient is 1/4 of the annual tariff, rounded to the cent half up
  (:func:`quarter_tariff_cents`); an amount for n patients is n times that (never rounded again);
- the price paid per patient per quarter is the quarterly tariff plus the result-reward
  surcharge, ``tariff/4 * (1 + pct/100)``, rounded to the cent half up (:func:`patient_price_cents`);
- the cap is ``floor(max_inclusion_pct * list size / 100)`` whole patients (:func:`max_patients`):
  a cap of 10% of 1,009 patients is 100, not 101;
- the regioprestatie per patient per quarter is 1/4 of the yearly amount, rounded to the cent half up.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

from ..quarter import Quarter
from ..rules.contracts import PaymentRounds, RewardRule

CENT = Decimal("0.01")


def cents(amount) -> int:
    """An amount in euro (Decimal, str, int or float as delivered) as whole cents, half up.

    >>> cents("412.50"), cents(98.1), cents(Decimal("0.005")), cents(137)
    (41250, 9810, 1, 13700)
    """
    return int((Decimal(str(amount)) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def eur(amount_cents: int) -> Decimal:
    """Cents as a Decimal amount in euro with two decimals.

    >>> eur(41250), eur(-5)
    (Decimal('412.50'), Decimal('-0.05'))
    """
    return (Decimal(int(amount_cents)) / 100).quantize(CENT)


def quarter_tariff_cents(annual_tariff_eur) -> int:
    """The quarterly tariff per patient: 1/4 of the annual tariff, in cents (half up).

    >>> quarter_tariff_cents(Decimal("380.00")), quarter_tariff_cents(Decimal("150.01"))
    (9500, 3750)
    """
    return int((Decimal(str(annual_tariff_eur)) * 100 / 4).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def patient_price_cents(annual_tariff_eur, reward_pct) -> int:
    """What the insurer pays per awarded patient per quarter: the quarterly tariff with the
    result-reward surcharge of ``reward_pct`` % on top, in cents (half up).

    >>> patient_price_cents(Decimal("150.00"), Decimal(4)), patient_price_cents(Decimal("380.00"), Decimal(2))
    (3900, 9690)
    """
    base = Decimal(str(annual_tariff_eur)) * 100 / 4
    return int((base * (1 + Decimal(str(reward_pct)) / 100)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def max_patients(list_size: int, max_inclusion_pct) -> int:
    """The cap in patients: ``floor(max_inclusion_pct * list_size / 100)``.

    >>> max_patients(3000, Decimal("10.0")), max_patients(1009, Decimal("10")), max_patients(0, 5)
    (300, 100, 0)
    """
    return int((Decimal(str(max_inclusion_pct)) * int(list_size) / 100).to_integral_value(rounding=ROUND_FLOOR))


def patients_above_cap(patients: int, list_size: int, max_inclusion_pct) -> int:
    """Patients above the cap (0 when at or under it): the nacalculatie's patients.

    >>> patients_above_cap(310, 3000, Decimal("10")), patients_above_cap(290, 3000, Decimal("10"))
    (10, 0)
    """
    return max(0, int(patients) - max_patients(list_size, max_inclusion_pct))


def exposure_cents(above_cap: int, annual_tariff_eur) -> int:
    """The nacalculatie exposure: patients above the cap times the quarterly tariff (no reward).

    >>> eur(exposure_cents(10, Decimal("150.00")))
    Decimal('375.00')
    """
    return int(above_cap) * quarter_tariff_cents(annual_tariff_eur)


def reward_cutoff(contract_year: int, rule: RewardRule) -> date:
    """The day that splits the result reward: 1 November preceding the contract year.

    >>> from helpers.rules.contracts import load_contracts
    >>> reward_cutoff(2026, load_contracts().reward)
    datetime.date(2025, 11, 1)
    """
    return date(int(contract_year) - rule.cutoff_years_before, rule.cutoff_month, rule.cutoff_day)


def reward_pct(signed_on: date, contract_year: int, rule: RewardRule) -> Decimal:
    """The result-reward percentage: ``pct_before_cutoff`` (4) when signed before the cut-off,
    ``pct_on_or_after_cutoff`` (2) when signed on or after it.

    >>> from helpers.rules.contracts import load_contracts
    >>> r = load_contracts().reward
    >>> [reward_pct(date(2025, m, d), 2026, r) for m, d in ((10, 31), (11, 1), (11, 2))]
    [Decimal('4'), Decimal('2'), Decimal('2')]
    """
    return rule.pct_before_cutoff if signed_on < reward_cutoff(contract_year, rule) else rule.pct_on_or_after_cutoff


def reward_cents(awarded: int, annual_tariff_eur, pct) -> int:
    """The result reward in cents for ``awarded`` patients in a quarter: what the surcharge adds
    to the quarterly tariff (the price per patient minus the tariff, times the patients).

    >>> eur(reward_cents(100, Decimal("150.00"), Decimal(4))), eur(reward_cents(100, Decimal("380.00"), Decimal(2)))
    (Decimal('150.00'), Decimal('190.00'))
    """
    return int(awarded) * (patient_price_cents(annual_tariff_eur, pct) - quarter_tariff_cents(annual_tariff_eur))


def first_round_date(quarter: Quarter | str, rounds: PaymentRounds) -> date:
    """The first payment round of a quarter: the 1st of its third month.

    >>> from helpers.rules.contracts import load_contracts
    >>> first_round_date("2026Q3", load_contracts().rounds)
    datetime.date(2026, 9, 1)
    """
    q = Quarter.parse(str(quarter))
    first = q.first_day
    return date(first.year, first.month + rounds.first_round_month_of_quarter - 1, rounds.first_round_day)


def round_dates(quarter: Quarter | str, rounds: PaymentRounds, n: int) -> list[date]:
    """The first ``n`` round dates of a quarter: the first round, then every follow-up.

    >>> from helpers.rules.contracts import load_contracts
    >>> [d.isoformat() for d in round_dates("2026Q3", load_contracts().rounds, 3)]
    ['2026-09-01', '2026-09-15', '2026-09-29']
    """
    first = first_round_date(quarter, rounds)
    return [first + timedelta(days=rounds.follow_up_days * k) for k in range(int(n))]


def next_round_date(quarter: Quarter | str, as_of: date, rounds: PaymentRounds) -> date:
    """The next payment round of a quarter after ``as_of``: the first round when it is still to
    come, else the first follow-up date (every ``follow_up_days`` after it) later than ``as_of``.

    >>> from helpers.rules.contracts import load_contracts
    >>> r = load_contracts().rounds
    >>> next_round_date("2026Q3", date(2026, 7, 20), r), next_round_date("2026Q3", date(2026, 9, 1), r)
    (datetime.date(2026, 9, 1), datetime.date(2026, 9, 15))
    >>> next_round_date("2026Q3", date(2026, 10, 5), r)
    datetime.date(2026, 10, 13)
    """
    first = first_round_date(quarter, rounds)
    if as_of < first:
        return first
    k = (as_of - first).days // rounds.follow_up_days + 1
    return first + timedelta(days=rounds.follow_up_days * k)


def regioprestatie_cents(registered: int, eur_per_patient_year) -> int:
    """The regioprestatie of a quarter: registered patients of the insurer times 1/4 of the yearly
    amount per patient (rounded to the cent half up per patient).

    >>> eur(regioprestatie_cents(1000, Decimal("2.00")))
    Decimal('500.00')
    """
    per_quarter = (Decimal(str(eur_per_patient_year)) * 100 / 4).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return int(registered) * int(per_quarter)
