"""MONEY: the chain-care payment rules, as pure functions over plain values and pandas frames
(no I/O but reading parameters/contracts.yaml through :func:`helpers.rules.contracts.load_contracts`).

Money is integer cents (exact sums); :func:`eur` shows cents as a Decimal in euro.

- :mod:`.rules`: the quarterly tariff, the price with the result reward, the cap, patients above
  it and the nacalculatie exposure, the reward percentage and amount, the payment-round dates,
  the regioprestatie;
- :mod:`.invoice`: invoice numbers (``20211-1-1``) and bank descriptions (``DBC/DM2/Q1/21/20211-1-1``);
- :mod:`.figures`: per practice x programme x quarter x insurer from payments.csv, patients and
  enrolments: declared, awarded, paid, rounds, follow-ups, rejected, outstanding, cap, exposure,
  reward, missed money, the next round, the regioprestatie per practice and quarter, and the
  totals per practice and quarter (:func:`practice_totals`).

>>> from datetime import date
>>> from decimal import Decimal
>>> eur(patient_price_cents(Decimal("150.00"), reward_pct(date(2025, 10, 1), 2026, load_contracts().reward)))
Decimal('39.00')
"""

from ..rules.contracts import load_contracts
from .figures import (enrolled_on_day1, in_population, list_sizes, next_rounds, payment_cells, practice_totals,
                      regioprestatie, settle)
from .invoice import (Invoice, InvoiceError, bank_description, decode_bank_description, decode_invoice,
                      invoice_number, invoice_problem)
from .rules import (cents, eur, exposure_cents, first_round_date, max_patients, next_round_date,
                    patient_price_cents, patients_above_cap, quarter_tariff_cents, regioprestatie_cents,
                    reward_cents, reward_cutoff, reward_pct, round_dates)

__all__ = [
    "cents", "eur", "quarter_tariff_cents", "patient_price_cents", "max_patients", "patients_above_cap",
    "exposure_cents", "reward_cutoff", "reward_pct", "reward_cents", "first_round_date", "round_dates",
    "next_round_date", "regioprestatie_cents", "Invoice", "InvoiceError", "invoice_number", "decode_invoice",
    "invoice_problem", "bank_description", "decode_bank_description", "payment_cells", "in_population",
    "list_sizes", "enrolled_on_day1", "settle", "next_rounds", "regioprestatie", "practice_totals", "load_contracts",
]
