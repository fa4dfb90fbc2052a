"""Chain-care money per practice x programme x quarter x insurer, from the typed tables of the
data contract (payments.csv as :func:`helpers.contract.load_payments` returns it; patients and
enrolments as :func:`helpers.contract.load_practice` does, with a ``practice_agb`` column).

Definitions (a *cell* is one practice x programme x quarter x insurer; a payments row is one
payment round of a cell, see spec/his-extract.md):

- ``declared``: the patients declared for the quarter, ``patients_declared`` of the cell's
  first round (a follow-up row's ``patients_declared`` are those it reconsidered);
- ``awarded``: patients the insurer paid for, summed over the rounds;
- ``paid_cents``: the sum of ``amount_eur`` over the rounds (exact, in cents);
- ``rounds``, ``first_paid_on``, ``last_paid_on``; ``followup_cents``: paid in the rounds after
  the first (by ``paid_on``, then the invoice's last sequence number);
- ``rejected``: ``declared - awarded`` after the last round in the data (not (yet) awarded);
- ``price_cents``: paid per awarded patient (quarterly tariff plus the result-reward surcharge);
  ``expected_cents = awarded * price_cents``; ``outstanding_cents = expected_cents - paid_cents``
  (awarded but not paid; negative = paid too much). Declarations not yet awarded are ``rejected``
  patients, and :func:`next_rounds` says when the next round that may award them falls;
- ``list_size``: the cap's basis on the quarter's first day (the insurer's registered patients
  for ``insurer_list``, the whole list for ``practice_list``); ``max_patients`` the cap;
  ``over_cap``: awarded patients above it; ``exposure_cents``: over_cap x quarterly tariff
  (the nacalculatie); ``reward_cents``: what the surcharge added for the awarded patients;
- ``enrolled``: enrolled on the quarter's first day (KIS), ``missed``: enrolled but not awarded
  (not declared, rejected or still open), ``missed_cents = missed x quarterly tariff``.
"""

from __future__ import annotations

from datetime import date

import pandas as pd

from ..quarter import Quarter
from ..rules.contracts import Contracts, load_contracts
from .invoice import decode_invoice, invoice_problem
from .rules import (cents, eur, exposure_cents, max_patients, next_round_date, patient_price_cents, patients_above_cap,
                    quarter_tariff_cents, regioprestatie_cents, reward_pct)

CELL = ["practice_agb", "programme", "quarter", "insurer_uzovi"]


def payment_cells(payments: pd.DataFrame) -> pd.DataFrame:
    """Per cell: declared, awarded, rejected, rounds, paid_cents, followup_cents, first and last paid_on.

    >>> rows = pd.DataFrame({"practice_agb": ["01000001"] * 3, "programme": ["DM2"] * 3,
    ...     "quarter": ["2026Q3"] * 3, "insurer_uzovi": ["7029"] * 3, "patients_declared": [10, 3, 1],
    ...     "patients_awarded": [7, 2, 0], "amount_eur": [665.0, 190.0, 0.0],
    ...     "paid_on": pd.to_datetime(["2026-09-01", "2026-09-15", "2026-09-29"]),
    ...     "invoice_number": ["20261-1-1", "20261-1-2", "20261-1-3"]})
    >>> c = payment_cells(rows).iloc[0]
    >>> int(c.declared), int(c.awarded), int(c.rejected), int(c.rounds), int(c.paid_cents), int(c.followup_cents)
    (10, 9, 1, 3, 85500, 19000)
    """
    df = payments.copy()
    df["insurer_uzovi"] = df["insurer_uzovi"].fillna("").astype(str)
    df["amount_cents"] = df["amount_eur"].map(lambda v: 0 if pd.isna(v) else cents(v)).astype("int64")
    # rounds in the order paid; within a day by the invoice's last sequence number (a malformed
    # invoice number, see helpers.money.invoice_problem, sorts first and breaks nothing here)
    df["_seq"] = df["invoice_number"].map(lambda t: 0 if invoice_problem(t) else decode_invoice(t).seq2)
    df["_paid"] = pd.to_datetime(df["paid_on"])
    df = df.sort_values(CELL + ["_paid", "_seq"], na_position="last", kind="stable")
    df["_round"] = df.groupby(CELL).cumcount()
    df["_followup"] = df["amount_cents"].where(df["_round"] > 0, 0)
    g = df.groupby(CELL, sort=True)
    out = pd.DataFrame({
        "declared": g["patients_declared"].first().astype("int64"),
        "awarded": g["patients_awarded"].sum().astype("int64"),
        "rounds": g.size().astype("int64"),
        "paid_cents": g["amount_cents"].sum().astype("int64"),
        "followup_cents": g["_followup"].sum().astype("int64"),
        "first_paid_on": g["_paid"].min(),
        "last_paid_on": g["_paid"].max(),
    }).reset_index()
    out["rejected"] = out["declared"] - out["awarded"]
    return out


def _day1(quarter) -> pd.Timestamp:
    return pd.Timestamp(Quarter.parse(str(quarter)).first_day)


def in_population(patients: pd.DataFrame, day) -> pd.Series:
    """Registered on ``day``, alive and not deregistered (the contract's population rule)."""
    d = pd.Timestamp(day)
    frm = pd.to_datetime(patients["registered_from"])
    until = pd.to_datetime(patients["registered_until"])
    dead = pd.to_datetime(patients["deceased_on"])
    return (frm <= d) & (until.isna() | (until >= d)) & (dead.isna() | (dead > d))


def list_sizes(patients: pd.DataFrame, quarters) -> pd.DataFrame:
    """Registered patients on each quarter's first day per practice and insurer
    (``practice_agb, quarter, insurer_uzovi, list_size``) and per practice (``insurer_uzovi`` "*")."""
    frames = []
    for q in quarters:
        pop = patients[in_population(patients, _day1(q))]
        ins = pop.groupby(["practice_agb", pop["insurer_uzovi"].fillna("").astype(str)]).size()
        ins = ins.rename("list_size").reset_index()
        tot = pop.groupby("practice_agb").size().rename("list_size").reset_index().assign(insurer_uzovi="*")
        frames += [ins.assign(quarter=str(q)), tot.assign(quarter=str(q))]
    cols = ["practice_agb", "quarter", "insurer_uzovi", "list_size"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def enrolled_on_day1(patients: pd.DataFrame, enrolments: pd.DataFrame, quarters) -> pd.DataFrame:
    """Patients enrolled (KIS) on each quarter's first day per practice, programme and insurer
    (``practice_agb, programme, quarter, insurer_uzovi, enrolled``), whatever their registration."""
    ins = patients[["practice_agb", "patient_id", "insurer_uzovi"]]
    frames = []
    for q in quarters:
        d = _day1(q)
        s, e = pd.to_datetime(enrolments["start_date"]), pd.to_datetime(enrolments["end_date"])
        act = enrolments[(s <= d) & (e.isna() | (e >= d))].drop_duplicates(["practice_agb", "patient_id", "programme"])
        act = act.merge(ins, on=["practice_agb", "patient_id"], how="left")
        act["insurer_uzovi"] = act["insurer_uzovi"].fillna("").astype(str)
        frames.append(act.groupby(["practice_agb", "programme", "insurer_uzovi"]).size().rename("enrolled")
                      .reset_index().assign(quarter=str(q)))
    cols = CELL + ["enrolled"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def settle(cells: pd.DataFrame, lists: pd.DataFrame, contracts: Contracts | None = None,
           enrolled: pd.DataFrame | None = None) -> pd.DataFrame:
    """The cells of :func:`payment_cells` with their contract's figures: ``insurer``,
    ``annual_tariff_eur``, ``reward_pct``, ``quarter_tariff_cents``, ``price_cents``,
    ``expected_cents``, ``outstanding_cents``, ``list_size``, ``max_patients``, ``over_cap``,
    ``exposure_cents``, ``reward_cents`` and, with ``enrolled`` (:func:`enrolled_on_day1`),
    ``enrolled``, ``missed``, ``missed_cents``. A cell whose insurer or contract is not in
    contracts.yaml is a ValueError naming every such cell."""
    contracts = contracts or load_contracts()
    size = {(r.practice_agb, r.quarter, r.insurer_uzovi): int(r.list_size) for r in lists.itertuples()}
    rows, missing = [], []
    for r in cells.itertuples(index=False):
        q = Quarter.parse(r.quarter)
        try:
            c = contracts.contract(r.insurer_uzovi, q.year)
            terms = c.programmes[r.programme]
        except KeyError as exc:
            missing.append(f"{r.practice_agb} {r.programme} {r.quarter} UZOVI {r.insurer_uzovi}: {exc.args[0]}")
            continue
        pct = reward_pct(c.signed_on, q.year, contracts.reward)
        qt = quarter_tariff_cents(terms.annual_tariff_eur)
        price = patient_price_cents(terms.annual_tariff_eur, pct)
        basis = r.insurer_uzovi if c.cap_basis == "insurer_list" else "*"
        ls = size.get((r.practice_agb, r.quarter, basis), 0)
        over = patients_above_cap(r.awarded, ls, terms.max_inclusion_pct)
        rows.append({"insurer": c.insurer, "annual_tariff_eur": terms.annual_tariff_eur, "reward_pct": pct,
                     "quarter_tariff_cents": qt, "price_cents": price, "expected_cents": r.awarded * price,
                     "outstanding_cents": r.awarded * price - r.paid_cents, "list_size": ls,
                     "max_patients": max_patients(ls, terms.max_inclusion_pct), "over_cap": over,
                     "exposure_cents": exposure_cents(over, terms.annual_tariff_eur),
                     "reward_cents": r.awarded * (price - qt)})
    if missing:
        raise ValueError("payments without a contract in contracts.yaml:\n" + "\n".join(missing))
    out = pd.concat([cells.reset_index(drop=True), pd.DataFrame(rows, index=range(len(cells)))], axis=1)
    if enrolled is not None:
        out = out.merge(enrolled, on=CELL, how="left")
        out["enrolled"] = out["enrolled"].fillna(0).astype("int64")
        out["missed"] = (out["enrolled"] - out["awarded"]).clip(lower=0)
        out["missed_cents"] = out["missed"] * out["quarter_tariff_cents"]
    return out


def next_rounds(cells: pd.DataFrame, as_of: date, contracts: Contracts | None = None) -> pd.Series:
    """Per cell, the expected date of the next payment round after ``as_of`` when declarations
    are still open (``rejected`` > 0), else NaT (:func:`helpers.money.rules.next_round_date`)."""
    rounds = (contracts or load_contracts()).rounds
    return pd.Series([pd.Timestamp(next_round_date(q, as_of, rounds)) if open_ > 0 else pd.NaT
                      for q, open_ in zip(cells["quarter"], cells["rejected"])], index=cells.index,
                     dtype="datetime64[ns]")


def regioprestatie(patients: pd.DataFrame, quarters, contracts: Contracts | None = None) -> pd.DataFrame:
    """Per practice and quarter, for each insurer that pays the regioprestatie and has an amount in
    that year's contract: its registered patients on the first day and the regioprestatie in cents
    (``practice_agb, quarter, insurer_uzovi, registered, regioprestatie_cents``)."""
    contracts = contracts or load_contracts()
    lists = list_sizes(patients, quarters)
    rows = []
    for r in lists[lists["insurer_uzovi"] != "*"].itertuples(index=False):
        try:
            ins = contracts.insurer_of(r.insurer_uzovi)
            c = contracts.contract(ins.id, Quarter.parse(r.quarter).year)
        except KeyError:
            continue
        if ins.regioprestatie_veelgebruikers and c.regioprestatie_eur_per_patient_year is not None:
            rows.append({"practice_agb": r.practice_agb, "quarter": r.quarter, "insurer_uzovi": r.insurer_uzovi,
                         "registered": int(r.list_size),
                         "regioprestatie_cents": regioprestatie_cents(r.list_size, c.regioprestatie_eur_per_patient_year)})
    cols = ["practice_agb", "quarter", "insurer_uzovi", "registered", "regioprestatie_cents"]
    return pd.DataFrame(rows, columns=cols).sort_values(cols[:3]).reset_index(drop=True)


def practice_totals(settled: pd.DataFrame, regio: pd.DataFrame | None = None,
                    by: tuple[str, ...] = ("practice_agb", "quarter")) -> pd.DataFrame:
    """The settled cells (:func:`settle`) summed per practice and quarter (or ``by``): patients
    declared, awarded, rejected and above the cap; cents paid, paid in follow-ups, outstanding,
    exposure, reward and (when settled with ``enrolled``) missed; with ``regio``
    (:func:`regioprestatie`) the regioprestatie in cents (0 where none).

    >>> cells = pd.DataFrame({"practice_agb": ["01000001"] * 2, "quarter": ["2026Q3"] * 2,
    ...     "declared": [20, 5], "awarded": [19, 5], "rejected": [1, 0], "over_cap": [3, 0],
    ...     "paid_cents": [77064, 19500], "followup_cents": [8112, 0], "outstanding_cents": [0, 0],
    ...     "exposure_cents": [11700, 0], "reward_cents": [2964, 750]})
    >>> t = practice_totals(cells).iloc[0]
    >>> int(t.awarded), str(eur(t.paid_cents)), str(eur(t.reward_cents)), int(t.regioprestatie_cents)
    (24, '965.64', '37.14', 0)
    """
    by = list(by)
    sums = [c for c in ("declared", "awarded", "rejected", "over_cap", "paid_cents", "followup_cents",
                        "outstanding_cents", "exposure_cents", "reward_cents", "missed", "missed_cents")
            if c in settled.columns]
    out = settled.groupby(by, sort=True)[sums].sum().astype("int64").reset_index()
    if regio is not None and len(regio):
        r = regio.groupby([c for c in by if c in regio.columns])["regioprestatie_cents"].sum().reset_index()
        out = out.merge(r, on=list(r.columns[:-1]), how="outer")
    out["regioprestatie_cents"] = out.get("regioprestatie_cents", pd.Series(0, index=out.index)).fillna(0) \
        .astype("int64")
    return out.fillna(0).sort_values(by).reset_index(drop=True)
