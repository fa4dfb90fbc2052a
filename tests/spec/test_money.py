"""The money rules of chain care (helpers.money), each with a small example computed by hand."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pandas as pd
import pytest

from helpers import money
from helpers.rules.contracts import PaymentRounds, RewardRule, load_contracts

RULE = RewardRule(cutoff_month=11, cutoff_day=1, cutoff_years_before=1,
                  pct_before_cutoff=Decimal(4), pct_on_or_after_cutoff=Decimal(2))
ROUNDS = PaymentRounds(first_round_month_of_quarter=3, first_round_day=1, follow_up_days=14)


def test_the_quarterly_tariff_and_price():
    # 150 a year -> 37.50 a quarter; with 4%: 39.00; 380 with 2%: 95.00 * 1.02 = 96.90
    assert money.quarter_tariff_cents(Decimal("150.00")) == 3750
    assert money.patient_price_cents(Decimal("150.00"), Decimal(4)) == 3900
    assert money.patient_price_cents(Decimal("380.00"), Decimal(2)) == 9690
    # 101.01 / 4 = 25.2525 -> 25.25 (half up at the cent); 101.02 / 4 = 25.255 -> 25.26
    assert money.quarter_tariff_cents(Decimal("101.01")) == 2525
    assert money.quarter_tariff_cents(Decimal("101.02")) == 2526


def test_the_cap_is_floored_to_whole_patients():
    # 10% of 2,345 = 234.5 -> 234 patients; 11% of 300 = 33
    assert money.max_patients(2345, Decimal("10.0")) == 234
    assert money.max_patients(300, Decimal("11.0")) == 33
    assert money.patients_above_cap(240, 2345, Decimal("10.0")) == 6
    assert money.patients_above_cap(234, 2345, Decimal("10.0")) == 0


def test_the_nacalculatie_exposure():
    # 6 patients above the cap x 150/4 = 6 x 37.50 = 225.00 (the tariff, without the reward)
    assert money.eur(money.exposure_cents(6, Decimal("150.00"))) == Decimal("225.00")
    assert money.exposure_cents(0, Decimal("150.00")) == 0


@pytest.mark.parametrize("signed, pct", [
    (date(2025, 10, 31), 4),   # the day before 1 November preceding 2026
    (date(2025, 11, 1), 2),    # on 1 November exactly: on or after the cut-off
    (date(2025, 11, 2), 2),
    (date(2024, 12, 15), 4),   # long before
    (date(2026, 1, 10), 2),    # in the contract year itself
])
def test_the_reward_rate_on_both_sides_of_1_november(signed, pct):
    assert money.reward_cutoff(2026, RULE) == date(2025, 11, 1)
    assert money.reward_pct(signed, 2026, RULE) == Decimal(pct)


def test_the_reward_in_euro():
    # 100 patients, DM2 at 380 a year: 95.00 a quarter; 4% = 3.80 each -> 380.00; 2% = 1.90 -> 190.00
    assert money.eur(money.reward_cents(100, Decimal("380.00"), Decimal(4))) == Decimal("380.00")
    assert money.eur(money.reward_cents(100, Decimal("380.00"), Decimal(2))) == Decimal("190.00")


def test_the_demo_contracts_reward():
    c = load_contracts()
    cz, menzis, vgz = c.contract("cz", 2026), c.contract("menzis", 2025), c.contract("vgz", 2026)
    assert money.reward_pct(cz.signed_on, 2026, c.reward) == 2       # signed 2025-11-18
    assert money.reward_pct(menzis.signed_on, 2025, c.reward) == 2   # signed 2024-11-01
    assert money.reward_pct(vgz.signed_on, 2026, c.reward) == 4      # signed 2025-10-13


def _rows(**cols) -> pd.DataFrame:
    n = len(cols["patients_declared"])
    base = {"practice_agb": ["01000001"] * n, "programme": ["CVRM"] * n, "quarter": ["2026Q3"] * n,
            "insurer_uzovi": ["7029"] * n}
    df = pd.DataFrame({**base, **cols})
    df["paid_on"] = pd.to_datetime(df["paid_on"])
    return df


def test_a_follow_up_payment_and_a_rejected_declaration():
    # VGZ 2026, CVRM: 156 a year, signed before 1 Nov 2025 -> 4%: 39.00 * 1.04 = 40.56 a patient.
    # Round 1 (1 Sep): 20 declared, 17 awarded = 689.52. Round 2 (15 Sep): the 3 open ones, 2
    # awarded = 81.12; the third is rejected: awarded 19, paid 770.64, rejected 1.
    pay = _rows(patients_declared=[20, 3], patients_awarded=[17, 2], amount_eur=[689.52, 81.12],
                paid_on=["2026-09-01", "2026-09-15"], invoice_number=["20263-1-1", "20263-1-2"])
    cell = money.payment_cells(pay).iloc[0]
    assert (cell.declared, cell.awarded, cell.rejected, cell.rounds) == (20, 19, 1, 2)
    assert money.eur(cell.paid_cents) == Decimal("770.64") and money.eur(cell.followup_cents) == Decimal("81.12")
    assert cell.first_paid_on == pd.Timestamp("2026-09-01")
    lists = pd.DataFrame({"practice_agb": ["01000001"], "quarter": ["2026Q3"], "insurer_uzovi": ["7029"],
                          "list_size": [150]})
    s = money.settle(money.payment_cells(pay), lists).iloc[0]
    # cap 11% of 150 = 16.5 -> 16; 19 awarded -> 3 above; exposure 3 x 39.00 = 117.00
    assert (s.max_patients, s.over_cap, s.price_cents, s.outstanding_cents) == (16, 3, 4056, 0)
    assert money.eur(s.exposure_cents) == Decimal("117.00")
    # reward: 19 x (40.56 - 39.00) = 29.64
    assert money.eur(s.reward_cents) == Decimal("29.64")
    # still open (1 not awarded): the next round after 20 September is 29 September
    assert money.next_rounds(money.payment_cells(pay), date(2026, 9, 20)).iloc[0] == pd.Timestamp("2026-09-29")


def test_a_declaration_rejected_entirely_and_money_missed():
    # a follow-up row with 0 awarded and amount 0: the open declaration rejected entirely
    pay = _rows(patients_declared=[5, 1], patients_awarded=[4, 0], amount_eur=[162.24, 0.0],
                paid_on=["2026-09-01", "2026-09-15"], invoice_number=["20263-1-3", "20263-1-4"])
    cells = money.payment_cells(pay)
    assert (cells.iloc[0].awarded, cells.iloc[0].rejected, cells.iloc[0].followup_cents) == (4, 1, 0)
    lists = pd.DataFrame({"practice_agb": ["01000001"], "quarter": ["2026Q3"], "insurer_uzovi": ["7029"],
                          "list_size": [1000]})
    enrolled = pd.DataFrame({"practice_agb": ["01000001"], "programme": ["CVRM"], "quarter": ["2026Q3"],
                             "insurer_uzovi": ["7029"], "enrolled": [7]})
    s = money.settle(cells, lists, enrolled=enrolled).iloc[0]
    # 7 enrolled on day 1, 4 awarded: 3 missed x 39.00 = 117.00
    assert (s.missed, money.eur(s.missed_cents)) == (3, Decimal("117.00"))


def test_an_unknown_insurer_is_named():
    pay = _rows(patients_declared=[5], patients_awarded=[5], amount_eur=[1.0], paid_on=["2026-09-01"],
                invoice_number=["20263-1-1"]).assign(insurer_uzovi="9999")
    with pytest.raises(ValueError, match="01000001 CVRM 2026Q3 UZOVI 9999"):
        money.settle(money.payment_cells(pay), pd.DataFrame(columns=["practice_agb", "quarter", "insurer_uzovi",
                                                                     "list_size"]))


def test_decoding_an_invoice_number():
    inv = money.decode_invoice("20211-1-1")
    assert (inv.year, inv.chain_number, inv.seq1, inv.seq2) == (2021, 1, 1, 1)
    inv = money.decode_invoice("20263-12-407")
    assert (inv.year, inv.chain_number, inv.seq1, inv.seq2) == (2026, 3, 12, 407)
    assert str(inv) == "20263-12-407" == money.invoice_number(2026, 3, 12, 407)
    assert load_contracts().programme_of_chain(inv.chain_number) == "CVRM"
    assert money.bank_description("CVRM", "2026Q3", "20263-12-407") == "DBC/CVRM/Q3/26/20263-12-407"
    assert money.decode_bank_description("DBC/CVRM/Q3/26/20263-12-407") == ("CVRM", "2026Q3", inv)


@pytest.mark.parametrize("bad", ["2021-1-1", "20211-1", "20211/1/1", "x20211-1-1", "", None, "20210-1-1"])
def test_a_malformed_invoice_number_is_a_problem_not_a_crash(bad):
    with pytest.raises(ValueError) as exc:
        money.decode_invoice(bad)
    assert isinstance(exc.value, money.InvoiceError)
    assert exc.value.problem.value == bad and "expected an invoice number <year><chain nr>-<seq>-<seq>" in str(exc.value)
    assert money.invoice_problem(bad) == exc.value.problem


def test_the_next_round_date():
    # 2026Q3: first round 1 September; follow-ups 15 Sep, 29 Sep, 13 Oct ...
    assert money.first_round_date("2026Q3", ROUNDS) == date(2026, 9, 1)
    assert money.first_round_date("2026Q1", ROUNDS) == date(2026, 3, 1)
    assert money.next_round_date("2026Q3", date(2026, 8, 31), ROUNDS) == date(2026, 9, 1)
    assert money.next_round_date("2026Q3", date(2026, 9, 1), ROUNDS) == date(2026, 9, 15)
    assert money.next_round_date("2026Q3", date(2026, 9, 14), ROUNDS) == date(2026, 9, 15)
    assert money.next_round_date("2026Q3", date(2026, 9, 15), ROUNDS) == date(2026, 9, 29)
    assert money.next_round_date("2026Q3", date(2026, 10, 5), ROUNDS) == date(2026, 10, 13)


def test_the_regioprestatie():
    # 2.00 per registered VGZ patient per year, declared per quarter: 0.50; 1,234 patients -> 617.00
    assert money.eur(money.regioprestatie_cents(1234, Decimal("2.00"))) == Decimal("617.00")
    patients = pd.DataFrame({
        "practice_agb": ["01000001"] * 4, "patient_id": ["a", "b", "c", "d"],
        "insurer_uzovi": ["7029", "7029", "3311", "7029"],
        "registered_from": pd.to_datetime(["2020-01-01", "2020-01-01", "2020-01-01", "2026-07-02"]),
        "registered_until": pd.to_datetime([None, "2026-07-01", None, None]),
        "deceased_on": pd.to_datetime([None, None, None, None])})
    # a and b (b deregistered on day 1 itself still counts) are VGZ on 1 July; d registered later
    got = money.regioprestatie(patients, ["2026Q3"])
    assert got.to_dict("records") == [{"practice_agb": "01000001", "quarter": "2026Q3", "insurer_uzovi": "7029",
                                       "registered": 2, "regioprestatie_cents": 100}]
    # no regioprestatie in a year whose VGZ contract has none (2024)
    assert money.regioprestatie(patients, ["2024Q3"]).empty


def test_the_cap_on_the_whole_practice_list():
    # a contract with cap_basis practice_list: 11% of the whole list (400) = 44, not of the insurer's 150 (16)
    c = load_contracts()
    data = {**c.contracts}
    vgz = data[("vgz", 2026)]
    data[("vgz", 2026)] = type(vgz)(vgz.insurer, vgz.year, vgz.signed_on, "practice_list", vgz.programmes,
                                    vgz.regioprestatie_eur_per_patient_year)
    whole = type(c)(c.insurers, data, c.reward, c.rounds, c.chain_numbers, c.default_max_inclusion_pct, c.path)
    pay = _rows(patients_declared=[20], patients_awarded=[20], amount_eur=[811.20], paid_on=["2026-09-01"],
                invoice_number=["20263-1-1"])
    lists = pd.DataFrame({"practice_agb": ["01000001"] * 2, "quarter": ["2026Q3"] * 2, "insurer_uzovi": ["7029", "*"],
                          "list_size": [150, 400]})
    assert money.settle(money.payment_cells(pay), lists).iloc[0][["list_size", "max_patients", "over_cap"]].tolist() \
        == [150, 16, 4]
    assert money.settle(money.payment_cells(pay), lists, whole).iloc[0][["list_size", "max_patients", "over_cap"]] \
        .tolist() == [400, 44, 0]


def test_nothing_open_has_no_next_round_and_a_malformed_invoice_breaks_no_sum():
    # 5 declared, 4 awarded on 1 Sep, the fifth on 15 Sep (its invoice number malformed): nothing open
    pay = _rows(patients_declared=[5, 1], patients_awarded=[4, 1], amount_eur=[162.24, 40.56],
                paid_on=["2026-09-01", "2026-09-15"], invoice_number=["20263-1-1", "not an invoice"])
    cells = money.payment_cells(pay)
    assert (cells.iloc[0].rejected, cells.iloc[0].paid_cents, cells.iloc[0].followup_cents) == (0, 20280, 4056)
    assert money.invoice_problem("not an invoice").key == "invoice_number"
    assert money.next_rounds(cells, date(2026, 9, 20)).isna().all()
