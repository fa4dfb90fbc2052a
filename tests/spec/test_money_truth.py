"""The demo's money ground truth (``<out>.money_truth.csv``, written by helpers.demo.payments
from its own counts) matches what helpers.money computes from the delivered files, to the cent:
payments.csv through the contract loader, patients and enrolments read plainly."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from helpers import contract, money
from helpers.demo.constants import MONEY_TRUTH_COLUMNS, PROFILE_MIN_PRACTICES
from helpers.quarter import Quarter
from helpers.rules.contracts import load_contracts


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep=";", dtype=str, keep_default_na=False, encoding="utf-8-sig")


def dates(s: pd.Series) -> pd.Series:
    iso = pd.to_datetime(s.where(s.str.fullmatch(r"\d{4}-\d{2}-\d{2}")), format="%Y-%m-%d", errors="coerce")
    dmy = pd.to_datetime(s.where(s.str.fullmatch(r"\d{2}-\d{2}-\d{4}")), format="%d-%m-%Y", errors="coerce")
    return iso.fillna(dmy)


@pytest.fixture(scope="module")
def money_data(demo_dataset):
    truth = read(Path(f"{demo_dataset}.money_truth.csv"))
    register = contract.read_practices(demo_dataset)
    payments, problems, _ = contract.load_payments(demo_dataset, set(register.practices.practice_agb))
    assert problems == []
    pats, enrs = [], []
    for agb in register.practices.practice_agb:
        folder = demo_dataset / "extracts" / agb
        p = read(folder / "patients.csv")
        for c in ("registered_from", "registered_until", "deceased_on"):
            p[c] = dates(p[c])
        e = read(folder / "enrolments.csv")
        for c in ("start_date", "end_date"):
            e[c] = dates(e[c])
        pats.append(p.assign(practice_agb=agb))
        enrs.append(e.assign(practice_agb=agb))
    return truth, payments, pd.concat(pats, ignore_index=True), pd.concat(enrs, ignore_index=True)


def _eur(cents: pd.Series) -> pd.Series:
    return cents.map(lambda c: str(money.eur(int(c))))


def test_every_cell_to_the_cent(money_data):
    truth, payments, patients, enrolments = money_data
    assert tuple(truth.columns) == MONEY_TRUTH_COLUMNS
    quarters = sorted(set(payments["quarter"]), key=Quarter.parse)
    cells = money.payment_cells(payments)
    got = money.settle(cells, money.list_sizes(patients, quarters), load_contracts(),
                       money.enrolled_on_day1(patients, enrolments, quarters))
    found = pd.DataFrame({
        **{c: got[c] for c in ("practice_agb", "programme", "quarter", "insurer_uzovi")},
        **{c: got[c].astype(str) for c in ("declared", "awarded", "rejected", "rounds", "list_size", "max_patients",
                                             "over_cap", "reward_pct")},
        "paid_eur": _eur(got["paid_cents"]), "followup_eur": _eur(got["followup_cents"]),
        "exposure_eur": _eur(got["exposure_cents"]), "reward_eur": _eur(got["reward_cents"]),
    })
    expected = truth[truth["programme"] != ""][list(found.columns)]
    key = ["practice_agb", "programme", "quarter", "insurer_uzovi"]
    merged = expected.merge(found, on=key, how="outer", suffixes=("_truth", "_money"), indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"][key].head(10).to_string()
    for col in [c for c in found.columns if c not in key]:
        wrong = merged[merged[f"{col}_truth"] != merged[f"{col}_money"]]
        assert wrong.empty, f"{col}: " + wrong[key + [f"{col}_truth", f"{col}_money"]].head(5).to_string()
    # paid is exactly what was awarded at the contract's price: nothing outstanding in the demo
    assert (got["outstanding_cents"] == 0).all()
    # the enrolled on day 1 that were not awarded: the money missed (the ineligible and rejected ones)
    assert (got["missed"] >= got["rejected"].where(got["declared"] == got["enrolled"], 0)).all()
    assert (got["enrolled"] == got["declared"]).all()  # the demo declares everyone enrolled on day 1


def test_totals_and_the_planted_money(money_data):
    truth, payments, _, _ = money_data
    cells = truth[truth["programme"] != ""]
    paid = sum(Decimal(v) for v in cells["paid_eur"])
    assert paid == sum(Decimal(str(v)).quantize(Decimal("0.01")) for v in payments["amount_eur"])
    over = cells[cells["over_cap"].astype(int) > 0]
    # exactly one practice above the CVRM cap (the older practice, planted from PROFILE_MIN_PRACTICES on),
    # with its exposure
    planted = int(cells["practice_agb"].nunique() >= PROFILE_MIN_PRACTICES)
    assert over[over["programme"] == "CVRM"]["practice_agb"].nunique() == planted
    assert (sum(Decimal(v) for v in over[over["programme"] == "CVRM"]["exposure_eur"]) > 0) == bool(planted)
    # several insurers; the 2% reward (a contract signed on or after 1 November) and the 4% one
    assert cells["insurer_uzovi"].nunique() >= 4 and set(cells["reward_pct"]) == {"2", "4"}
    # follow-up payments, declarations awarded later and rejected ones (a round with 0 awarded)
    assert (cells["rounds"].astype(int) > 1).any() and (cells["rejected"].astype(int) > 0).any()
    assert (payments["amount_eur"] == 0).any() and (payments["patients_awarded"] < payments["patients_declared"]).any()
    assert (cells["followup_eur"].map(Decimal) > 0).any()


def test_rounds_and_invoices_follow_the_contract(money_data):
    _, payments, _, _ = money_data
    c = load_contracts()
    for r in payments.itertuples(index=False):
        inv = money.decode_invoice(r.invoice_number)
        q = Quarter.parse(r.quarter)
        assert inv.year == q.year and c.programme_of_chain(inv.chain_number) == r.programme
        text = money.bank_description(r.programme, r.quarter, r.invoice_number)
        assert money.decode_bank_description(text) == (r.programme, r.quarter, inv)
        assert pd.Timestamp(r.paid_on).date() in money.round_dates(q, c.rounds, 3)
    assert payments["invoice_number"].is_unique
    first = payments.groupby(["practice_agb", "programme", "quarter", "insurer_uzovi"])["paid_on"].min()
    assert all(d.day == 1 and d.month % 3 == 0 for d in first)


def test_the_regioprestatie(money_data):
    truth, payments, patients, _ = money_data
    quarters = sorted(set(payments["quarter"]), key=Quarter.parse)
    got = money.regioprestatie(patients, quarters)
    expected = truth[truth["programme"] == ""]
    assert len(expected) > 0 and set(expected["insurer_uzovi"]) == {"7029"}  # VGZ
    merged = expected.merge(got, on=["practice_agb", "quarter", "insurer_uzovi"], how="outer", indicator=True)
    assert (merged["_merge"] == "both").all()
    assert (merged["list_size"].astype(int) == merged["registered"]).all()
    assert (merged["regioprestatie_eur"] == _eur(merged["regioprestatie_cents"])).all()
    assert (merged["regioprestatie_cents"] == merged["registered"] * 50).all()  # 2.00 a year = 0.50 a quarter


def test_vgz_is_the_largest_insurer_of_a_region(demo_dataset, money_data):
    _, _, patients, _ = money_data
    regions = read(demo_dataset / "practices.csv")[["practice_agb", "region"]]
    shares = patients.merge(regions, on="practice_agb").groupby("region")["insurer_uzovi"].agg(
        lambda s: s.value_counts().idxmax())
    assert "7029" in set(shares)


def test_per_practice_the_cvrm_over_cap_exposure_reward_and_regioprestatie(money_data):
    truth, payments, patients, enrolments = money_data
    quarters = sorted(set(payments["quarter"]), key=Quarter.parse)
    settled = money.settle(money.payment_cells(payments), money.list_sizes(patients, quarters))
    regio = money.regioprestatie(patients, quarters)
    got = money.practice_totals(settled, regio, by=("practice_agb",))
    cvrm = money.practice_totals(settled[settled["programme"] == "CVRM"], by=("practice_agb",))
    cells, rp = truth[truth["programme"] != ""], truth[truth["programme"] == ""]

    def total(df, col):
        return df.groupby("practice_agb")[col].agg(lambda s: sum(Decimal(v) for v in s))

    exp = pd.DataFrame({"reward": total(cells, "reward_eur"), "regio": total(rp, "regioprestatie_eur"),
                        "paid": total(cells, "paid_eur")}).fillna(Decimal(0))
    cv = cells[cells["programme"] == "CVRM"]
    exp_cvrm = pd.DataFrame({"over": cv.groupby("practice_agb")["over_cap"].agg(lambda s: s.astype(int).sum()),
                             "exposure": total(cv, "exposure_eur")})
    g = got.set_index("practice_agb")
    assert (g["reward_cents"].map(money.eur) == exp["reward"].reindex(g.index)).all()
    assert (g["regioprestatie_cents"].map(money.eur) == exp["regio"].reindex(g.index)).all()
    assert (g["paid_cents"].map(money.eur) == exp["paid"].reindex(g.index)).all()
    c = cvrm.set_index("practice_agb")
    assert (c["over_cap"] == exp_cvrm["over"].reindex(c.index)).all()
    assert (c["exposure_cents"].map(money.eur) == exp_cvrm["exposure"].reindex(c.index)).all()
