"""The payment specification (betaalspecificatie) per practice and quarter: the specification
practices no longer get since chain care is paid per chain.

Every payment of the practice's chains for the quarter (chain, insurer, bank description, the
invoice number decoded, round and date, patients declared and awarded, amount), the sums per
chain and in total, the result reward, the follow-up payments, declared against enrolled on
the quarter's first day (with the enrolled patients that cannot be declared as a worklist CSV),
the differences from the previous quarter, and what is still open with the date of the next
round. The money rules are :mod:`helpers.money` and nothing else; the figures are prepared for
every practice in the quarter's prepare pass (:func:`prepare`).

Payments arrive after the HIS extraction: their state is the latest ``paid_on`` in payments.csv
(``as_of``), not the day the report is built, so a rebuild gives the same report.

>>> nl_eur(1234567)
'€\\xa012.345,67'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd

from .. import escape
from ..cube import read_meta, read_slice
from ..cube.read import practice_row
from ..money import (bank_description, decode_invoice, enrolled_on_day1, invoice_problem, list_sizes,
                     next_rounds, payment_cells, settle)
from ..quarter import Quarter
from ..rules.contracts import load_contracts
from ..rules.programmes import load_programmes
from ..tables import nl_number

PAYMENTS_TABLE = "betaal_payments"
CELLS_TABLE = "betaal_cells"
NOT_DECLARABLE_TABLE = "betaal_not_declarable"
#: enrolled on day 1 but not declarable: the insurer rejects these (HIS-analyse findings)
NOT_DECLARABLE_KINDS = ("enrolled_deceased", "enrolled_deregistered", "enrolled_under_18", "enrolled_dm2_and_cvrm")
NOT_DECLARABLE_NL = {"enrolled_deceased": "overleden", "enrolled_deregistered": "uitgeschreven",
                     "enrolled_under_18": "jonger dan 18", "enrolled_dm2_and_cvrm": "ook in DM2 (CVRM wordt dan niet betaald)"}
SEX_NL = {"M": "man", "V": "vrouw", "O": "onbekend"}


def nl_eur(amount_cents) -> str:
    """Cents as Dutch euro text (``€ 1.234,56``; a minus sign for negative amounts)."""
    if amount_cents is None or pd.isna(amount_cents):
        return "–"
    c = int(amount_cents)
    sign = "−" if c < 0 else ""
    return f"{sign}€\u00a0{nl_number(abs(c) // 100)},{abs(c) % 100:02d}"


def _day(d) -> str:
    """A date as dd-mm-yyyy that a table cell never breaks (non-breaking hyphens)."""
    return f"{d:%d-%m-%Y}".replace("-", "\u2011")


# ------------------------------------------------------------------ prepare (the cube)
def _frames(con, quarters: list[str]):
    marks = ", ".join("?" for _ in quarters)
    pay = con.execute(f"SELECT * FROM payments WHERE quarter IN ({marks})", quarters).df()
    patients = con.execute("SELECT practice_agb, patient_id, insurer_uzovi, registered_from, registered_until, "
                           "deceased_on FROM patients").df()
    enrol = con.execute("SELECT practice_agb, patient_id, programme, start_date, end_date FROM enrolments").df()
    return pay, patients, enrol


def money_tables(con, quarters: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every practice's payment rounds (invoice decoded, bank description) and its cells
    (practice x programme x quarter x insurer, with the contract's figures from
    ``helpers.money.settle``, also for cells enrolled on day 1 but never declared) for ``quarters``.
    Cells of an insurer without a contract in contracts.yaml are left out (the contract's
    problem, not this quarter's)."""
    contracts = load_contracts()
    pay, patients, enrol = _frames(con, quarters)
    pay["insurer_uzovi"] = pay["insurer_uzovi"].fillna("").astype(str)
    patients["insurer_uzovi"] = patients["insurer_uzovi"].fillna("").astype(str)
    as_of = pd.to_datetime(pay["paid_on"]).max()
    as_of = as_of.date() if pd.notna(as_of) else max(Quarter.parse(q) for q in quarters).last_day

    # per round: the invoice decoded and the bank description
    rounds = pay.copy()
    rounds["paid_on"] = pd.to_datetime(rounds["paid_on"])
    rounds = rounds.sort_values(["practice_agb", "programme", "quarter", "insurer_uzovi", "paid_on", "invoice_number"],
                                kind="stable", na_position="last")
    rounds["round"] = rounds.groupby(["practice_agb", "programme", "quarter", "insurer_uzovi"]).cumcount() + 1
    decoded = [None if invoice_problem(t) else decode_invoice(t) for t in rounds["invoice_number"]]
    rounds["invoice_year"] = [d.year if d else pd.NA for d in decoded]
    rounds["chain_number"] = [d.chain_number if d else pd.NA for d in decoded]
    rounds["seq1"] = [d.seq1 if d else pd.NA for d in decoded]
    rounds["seq2"] = [d.seq2 if d else pd.NA for d in decoded]
    rounds["bank_description"] = [bank_description(p, qq, t) if d else "" for p, qq, t, d in
                                  zip(rounds["programme"], rounds["quarter"], rounds["invoice_number"], decoded)]
    rounds["amount_cents"] = [0 if pd.isna(a) else int(round(float(a) * 100)) for a in rounds["amount_eur"]]
    rounds["insurer"] = [_insurer_name(contracts, u) for u in rounds["insurer_uzovi"]]
    rounds = rounds[["practice_agb", "programme", "quarter", "insurer_uzovi", "insurer", "round", "paid_on",
                     "invoice_number", "invoice_year", "chain_number", "seq1", "seq2", "bank_description",
                     "patients_declared", "patients_awarded", "amount_cents"]].reset_index(drop=True)

    cells = payment_cells(pay) if len(pay) else pd.DataFrame(columns=["practice_agb", "programme", "quarter",
                                                                      "insurer_uzovi"])
    enrolled = enrolled_on_day1(patients, enrol, quarters)
    known = {(r.practice_agb, r.programme, r.quarter, r.insurer_uzovi) for r in cells.itertuples()}
    absent = enrolled[[(r.practice_agb, r.programme, r.quarter, r.insurer_uzovi) not in known
                       for r in enrolled.itertuples()]]
    if len(absent):
        cells = pd.concat([cells, absent.drop(columns="enrolled").assign(
            declared=0, awarded=0, rounds=0, paid_cents=0, followup_cents=0, first_paid_on=pd.NaT,
            last_paid_on=pd.NaT, rejected=0)], ignore_index=True)
    has_contract = [_has_contract(contracts, u, Quarter.parse(qq).year) for u, qq in
                    zip(cells["insurer_uzovi"], cells["quarter"])]
    cells = cells[has_contract].reset_index(drop=True)
    settled = settle(cells, list_sizes(patients, quarters), contracts, enrolled=enrolled)
    settled["insurer"] = [contracts.insurers[i].name if i in contracts.insurers else str(i) for i in settled["insurer"]]
    settled["next_round"] = next_rounds(settled, as_of, contracts)
    settled["as_of"] = pd.Timestamp(as_of)
    settled["reward_pct"] = settled["reward_pct"].astype(float)
    settled["annual_tariff_eur"] = settled["annual_tariff_eur"].astype(float)
    return rounds, settled.reset_index(drop=True)


def prepare(con, quarter, tables: dict) -> dict[str, pd.DataFrame]:
    """Every practice's payments of this quarter and the previous one, per round and per cell
    (practice x programme x quarter x insurer) with the contract's figures, and the enrolled
    patients the insurer will not pay."""
    q = Quarter.parse(quarter)
    rounds, settled = money_tables(con, [str(q.previous()), str(q)])
    f = tables["findings"]
    nd = f[f["kind"].isin(NOT_DECLARABLE_KINDS)][["practice_agb", "patient_id", "programme", "kind",
                                                   "birth_year", "sex"]]
    return {PAYMENTS_TABLE: rounds, CELLS_TABLE: settled, NOT_DECLARABLE_TABLE: nd.reset_index(drop=True)}


def _insurer_name(contracts, uzovi: str) -> str:
    try:
        return contracts.insurer_of(uzovi).name
    except KeyError:
        return f"UZOVI {uzovi}" if uzovi else "onbekend"


def _has_contract(contracts, uzovi: str, year: int) -> bool:
    try:
        contracts.contract(uzovi, year)
        return True
    except KeyError:
        return False


# ------------------------------------------------------------------ the report
@dataclass
class PaymentData:
    quarter: Quarter
    practice: pd.Series
    rounds: pd.DataFrame        # this practice, both quarters
    cells: pd.DataFrame
    not_declarable: pd.DataFrame
    meta: dict

    @property
    def as_of(self) -> date:
        v = self.cells["as_of"].dropna()
        return v.iloc[0].date() if len(v) else self.quarter.last_day

    def now(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame[frame["quarter"] == str(self.quarter)]

    def before(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame[frame["quarter"] == str(self.quarter.previous())]


def load(cube: Path | str, practice_agb: str) -> PaymentData:
    cube = Path(cube)
    meta = read_meta(cube)
    practice = practice_row(cube, practice_agb)
    return PaymentData(quarter=Quarter.parse(meta["quarter"]), practice=practice,
                       rounds=read_slice(cube, PAYMENTS_TABLE, practice_agb=practice_agb),
                       cells=read_slice(cube, CELLS_TABLE, practice_agb=practice_agb),
                       not_declarable=read_slice(cube, NOT_DECLARABLE_TABLE, practice_agb=practice_agb),
                       meta=meta)


def heading(data: PaymentData) -> str:
    return (f"# Betaalspecificatie ketenzorg\n## {escape.markdown(data.practice['name'])} · "
            f"{data.quarter.label_nl}")


def _order(frame: pd.DataFrame) -> pd.DataFrame:
    order = {p: i for i, p in enumerate(load_programmes().programme_ids)}
    return frame.assign(_o=frame["programme"].map(order)).sort_values(["_o", "insurer_uzovi"]).drop(columns="_o")


def intro_text(data: PaymentData) -> str:
    now = data.now(data.cells)
    paid = int(now["paid_cents"].sum())
    return (f"Welke patiënten zijn in {data.quarter.label_nl} per keten gedeclareerd, toegekend en betaald, "
            f"per verzekeraar en per betaalronde. Stand van de betalingen: {data.as_of:%d-%m-%Y} (de laatste "
            f"betaaldatum in het betaalbestand). Dit kwartaal is tot nu toe **{nl_eur(paid)}** betaald voor "
            f"**{nl_number(int(now['awarded'].sum()))}** toegekende patiënten.")


def uncontracted_text(data: PaymentData) -> str:
    """A warning when this quarter holds payments of an insurer without a contract in
    contracts.yaml for the year: they are listed per round but left out of the sums."""
    r = data.now(data.rounds)
    known = set(zip(data.now(data.cells)["programme"], data.now(data.cells)["insurer_uzovi"]))
    missing = r[[(p, u) not in known for p, u in zip(r["programme"], r["insurer_uzovi"])]]
    if missing.empty:
        return ""
    who = ", ".join(sorted({escape.markdown(str(x)) for x in missing["insurer"]}))
    return (f"**Let op:** {len(missing)} betaling(en) van {who} hebben geen contract voor {data.quarter.year} in "
            f"`parameters/contracts.yaml`. Ze staan bij de betalingen, maar tellen niet mee in de sommen "
            f"({nl_eur(int(missing['amount_cents'].sum()))}). Vul het contract aan.")


def summary_table(data: PaymentData) -> pd.DataFrame:
    """Per programme: enrolled on day 1, declared, awarded, not (yet) awarded, paid, reward,
    money missed; with a total row."""
    now = data.now(data.cells)
    g = now.groupby("programme", sort=False).agg(
        enrolled=("enrolled", "sum"), declared=("declared", "sum"), awarded=("awarded", "sum"),
        rejected=("rejected", "sum"), paid=("paid_cents", "sum"), reward=("reward_cents", "sum"),
        missed=("missed_cents", "sum"), outstanding=("outstanding_cents", "sum")).reset_index()
    g = _order(g.assign(insurer_uzovi=""))
    g.loc[len(g)] = ["Totaal", *g.drop(columns=["programme", "insurer_uzovi"]).sum().tolist(), ""]
    return pd.DataFrame({
        "Keten": g["programme"], "In ketenzorg (dag 1)": g["enrolled"].map(nl_number),
        "Gedeclareerd": g["declared"].map(nl_number), "Toegekend": g["awarded"].map(nl_number),
        "Niet (nog niet) toegekend": g["rejected"].map(nl_number), "Betaald": g["paid"].map(nl_eur),
        "Waarvan resultaatbeloning": g["reward"].map(nl_eur), "Gemist (niet toegekend)": g["missed"].map(nl_eur),
    })


def payments_table(data: PaymentData, programme: str) -> pd.DataFrame:
    """Every payment round of one programme this quarter, with a sum row."""
    r = data.now(data.rounds)
    r = r[r["programme"] == programme].sort_values(["insurer", "round"])
    rows = pd.DataFrame({
        "Verzekeraar": r["insurer"].astype(str), "Ronde": r["round"].map(lambda x: nl_number(x)),
        "Betaald op": [_day(d) if pd.notna(d) else "nog niet" for d in pd.to_datetime(r["paid_on"])],
        "Bankomschrijving": r["bank_description"].astype(str),
        "Factuur (jaar · keten · volgnrs)": [f"{y} · {c} · {a}-{b}" if pd.notna(y) else f"{t} (onleesbaar)"
                                             for y, c, a, b, t in zip(r["invoice_year"], r["chain_number"], r["seq1"],
                                                                      r["seq2"], r["invoice_number"])],
        "Gedeclareerd": r["patients_declared"].map(nl_number), "Toegekend": r["patients_awarded"].map(nl_number),
        "Bedrag": r["amount_cents"].map(nl_eur),
    })
    rows = rows.reset_index(drop=True)
    if len(rows):
        rows.loc[len(rows)] = ["Totaal " + programme, "", "", "", "", nl_number(int(r["patients_declared"].sum())),
                               nl_number(int(r["patients_awarded"].sum())), nl_eur(int(r["amount_cents"].sum()))]
    return rows


def reward_table(data: PaymentData) -> pd.DataFrame:
    """Per programme and insurer: the contract's reward percentage (from the date signed) and
    what it added to this quarter's payments."""
    now = _order(data.now(data.cells))
    now = now[now["awarded"] > 0]
    return pd.DataFrame({
        "Keten": now["programme"], "Verzekeraar": now["insurer"].astype(str),
        "Jaartarief": [nl_eur(int(round(t * 100))) for t in now["annual_tariff_eur"]],
        "Resultaatbeloning": [f"{nl_number(p, 0)}%" for p in now["reward_pct"]],
        "Toegekend": now["awarded"].map(nl_number), "Beloning": now["reward_cents"].map(nl_eur),
    })


def followup_table(data: PaymentData) -> pd.DataFrame:
    """The payments after the first round (vervolgbetalingen) of this quarter."""
    r = data.now(data.rounds)
    r = _order(r[r["round"] > 1])
    return pd.DataFrame({
        "Keten": r["programme"], "Verzekeraar": r["insurer"].astype(str), "Ronde": r["round"].map(nl_number),
        "Betaald op": [_day(d) if pd.notna(d) else "nog niet" for d in pd.to_datetime(r["paid_on"])],
        "Toegekend": r["patients_awarded"].map(nl_number), "Bedrag": r["amount_cents"].map(nl_eur),
    })


def declared_table(data: PaymentData) -> pd.DataFrame:
    """Per programme and insurer: enrolled on day 1 against declared and awarded."""
    now = _order(data.now(data.cells))
    return pd.DataFrame({
        "Keten": now["programme"], "Verzekeraar": now["insurer"].astype(str),
        "In ketenzorg (dag 1)": now["enrolled"].map(nl_number), "Gedeclareerd": now["declared"].map(nl_number),
        "Toegekend": now["awarded"].map(nl_number),
        "Verschil met dag 1": [nl_number(int(e) - int(a)) for e, a in zip(now["enrolled"], now["awarded"])],
        "Gemist": now["missed_cents"].map(nl_eur),
    })


def not_declarable_table(data: PaymentData) -> pd.DataFrame:
    """The patients in chain care on day 1 that cannot be declared, with the reason (the
    worklist CSV beside the report)."""
    f = _order(data.not_declarable.assign(insurer_uzovi=""))
    return pd.DataFrame({
        "Patiëntnummer": f["patient_id"].astype(str), "Geboortejaar": f["birth_year"].map(lambda y: str(int(y))),
        "Geslacht": f["sex"].map(SEX_NL).fillna(f["sex"]), "Keten": f["programme"],
        "Reden": f["kind"].map(NOT_DECLARABLE_NL),
    }).reset_index(drop=True)


def change_table(data: PaymentData) -> pd.DataFrame:
    """Per programme: this quarter against the previous one (enrolled, awarded, paid)."""
    def per(frame):
        return frame.groupby("programme").agg(enrolled=("enrolled", "sum"), awarded=("awarded", "sum"),
                                              paid=("paid_cents", "sum"))
    now, before = per(data.now(data.cells)), per(data.before(data.cells))
    progs = [p for p in load_programmes().programme_ids if p in now.index or p in before.index]
    rows = []
    for p in progs:
        a = now.loc[p] if p in now.index else pd.Series({"enrolled": 0, "awarded": 0, "paid": 0})
        b = before.loc[p] if p in before.index else pd.Series({"enrolled": 0, "awarded": 0, "paid": 0})
        rows.append({"Keten": p, "In ketenzorg": f"{nl_number(b.enrolled)} → {nl_number(a.enrolled)}",
                     "Toegekend": f"{nl_number(b.awarded)} → {nl_number(a.awarded)}",
                     "Betaald": f"{nl_eur(b.paid)} → {nl_eur(a.paid)}",
                     "Verschil betaald": nl_eur(int(a.paid) - int(b.paid))})
    return pd.DataFrame(rows)


def open_table(data: PaymentData) -> pd.DataFrame:
    """What is still open: declarations not (yet) awarded and amounts not paid, with the date
    of the next payment round."""
    now = _order(data.now(data.cells))
    now = now[(now["rejected"] > 0) | (now["outstanding_cents"] != 0)]
    return pd.DataFrame({
        "Keten": now["programme"], "Verzekeraar": now["insurer"].astype(str),
        "Niet (nog niet) toegekend": now["rejected"].map(nl_number),
        "Toegekend, niet betaald": now["outstanding_cents"].map(nl_eur),
        "Volgende ronde": [_day(d) if pd.notna(d) else "–" for d in pd.to_datetime(now["next_round"])],
    })


def method_text(data: PaymentData) -> str:
    c = load_contracts()
    r = c.reward
    return "\n".join([
        "- **Tarief**: per patiënt in ketenzorg op de eerste dag van het kwartaal een kwart van het jaartarief "
        "uit het contract met de verzekeraar (`parameters/contracts.yaml`).",
        f"- **Resultaatbeloning**: een opslag op het tarief van {r.pct_before_cutoff}% voor een contract dat vóór "
        f"{r.cutoff_day} november van het jaar vóór het contractjaar is getekend, anders {r.pct_on_or_after_cutoff}%.",
        f"- **Betaalrondes**: de eerste ronde op de {c.rounds.first_round_day}e van de "
        f"{c.rounds.first_round_month_of_quarter}e maand van het kwartaal, vervolgbetalingen iedere "
        f"{c.rounds.follow_up_days} dagen daarna.",
        "- **Factuurnummer**: `<jaar><ketennummer>-<volgnummer>-<volgnummer>`; de bankomschrijving is "
        "`DBC/<keten>/Q<kwartaal>/<jj>/<factuurnummer>`.",
        "- **Gemist**: patiënten in ketenzorg op dag 1 die niet zijn toegekend (niet gedeclareerd, afgewezen of nog "
        "open), maal het kwartaaltarief.",
        f"- **Stand**: de betalingen tot en met {data.as_of:%d-%m-%Y}.",
    ])


def key_figures(data: PaymentData) -> dict:
    now = data.now(data.cells)
    return {"awarded": int(now["awarded"].sum()), "not_awarded": int((now["enrolled"] - now["awarded"]).clip(lower=0).sum())}


def write_extras(cube: Path, practice_agb: str, outdir: Path) -> list[Path]:
    """The worklist of enrolled patients that cannot be declared (CSV for Excel)."""
    from .worklists import write_table_csv
    data = load(cube, practice_agb)
    path = Path(outdir) / "betaalspecificatie_niet_declarabel.csv"
    write_table_csv(not_declarable_table(data), path)
    return [path]


def programmes_paid(data: PaymentData) -> list[str]:
    """The programmes with a payment round this quarter, in the programmes' order."""
    present = set(data.now(data.rounds)["programme"])
    return [p for p in load_programmes().programme_ids if p in present]
