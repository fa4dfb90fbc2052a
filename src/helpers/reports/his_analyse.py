"""The HIS-analyse report's sections as display-ready tables, read from the quarter cube.

The notebook ``notebooks/his_analyse.ipynb`` only calls these; every number it shows is
computed in ``findings``/``indicators``/``cube`` and formatted here, where tests reach it.

>>> data = load(cube_path, "01000001")          # doctest: +SKIP
>>> summary_table(data)                         # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd

from .. import escape
from ..cube import read_meta, read_slice
from ..cube.read import practice_row
from ..errors import ParameterError
from ..cube.findings import (CONTROL_KINDS, HISTORY_QUARTERS, KIND_LABELS_NL, REGISTRATION_KINDS,
                             WORKLIST_TITLES_NL, WORKLISTS)
from ..rules.programmes import load_programmes
from ..quarter import Quarter
from ..suppression import MIN_PRACTICES_FOR_PEERS
from ..tables import nl_delta, nl_number, nl_pct
from .worklists import control_label, history_columns, worklist

ISSUE_LABELS_NL = {
    "value_out_of_range": "waarde buiten plausibel bereik",
    "value_not_numeric": "geen getal",
    "value_unknown_code": "onbekende code",
    "date_before_birth": "datum vóór geboortejaar",
    "date_after_death": "datum na overlijden",
}


@dataclass
class HisData:
    """One practice's slice of the quarter cube (plus the care group's indicator figures)."""
    quarter: Quarter
    practice: pd.Series
    summary: pd.DataFrame
    findings: pd.DataFrame
    findings_resolved: pd.DataFrame   # last quarter's findings gone now (own practice)
    findings_history: pd.DataFrame    # per programme and group: new, still open, resolved
    indicators: pd.DataFrame      # all practices: numbers only, used for the peer comparison
    dq_recorded: pd.DataFrame
    dq_issues: pd.DataFrame
    dq_issue_counts: pd.DataFrame
    pyramid: pd.DataFrame
    meta: dict
    n_practices: int

    @property
    def own_indicators(self) -> pd.DataFrame:
        return self.indicators[self.indicators["practice_agb"] == self.practice["practice_agb"]]


def load(cube: Path | str, practice_agb: str) -> HisData:
    """Read one practice's slice; a practice missing from the cube is a ParameterError."""
    cube = Path(cube)
    meta = read_meta(cube)
    practice = practice_row(cube, practice_agb)
    return HisData(
        quarter=Quarter.parse(meta["quarter"]),
        practice=practice,
        summary=read_slice(cube, "summary", practice_agb=practice_agb),
        findings=read_slice(cube, "findings", practice_agb=practice_agb),
        findings_resolved=read_slice(cube, "findings_resolved", practice_agb=practice_agb),
        findings_history=read_slice(cube, "findings_history", practice_agb=practice_agb),
        indicators=read_slice(cube, "indicators"),
        dq_recorded=read_slice(cube, "dq_recorded", practice_agb=practice_agb),
        dq_issues=read_slice(cube, "dq_issues", practice_agb=practice_agb),
        dq_issue_counts=read_slice(cube, "dq_issue_counts", practice_agb=practice_agb),
        pyramid=read_slice(cube, "pyramid", practice_agb=practice_agb),
        meta=meta,
        n_practices=int(meta["practices"]),
    )


def key_figures(data: HisData) -> dict:
    """Headline numbers, exact: for the practice's own report. The portal shows them
    suppressed (``portal.key_figures``).

    A patient in two programmes (DM2 and CVRM) is one patient with two deelnames: both are
    counted, as ``enrolled_patients`` and ``enrolments``."""
    f = data.findings
    reg = f[f["kind"].isin(REGISTRATION_KINDS)]
    ctl = f[f["kind"].isin(CONTROL_KINDS)]
    return {
        "list_size": int(data.practice["list_size"]),
        "enrolled_patients": int(data.practice["enrolled_patients"]),
        "enrolments": int(data.summary["enrolled"].sum()),
        "registration_findings": int(len(reg)),
        "patients_with_registration_findings": int(reg["patient_id"].nunique()),
        "patients_to_call": int(ctl["patient_id"].nunique()),
        "over_cap": [p for p, o in zip(data.summary["programme"], data.summary["over_cap"]) if o],
    }


def heading(data: HisData) -> str:
    """The report's title and the practice with the quarter (Markdown)."""
    return f"# HIS-analyse ketenzorg\n## {escape.markdown(data.practice['name'])} · {data.quarter.label_nl}"


def intro_text(data: HisData) -> str:
    """The opening paragraph in Dutch (Markdown)."""
    k = key_figures(data)
    p = data.practice
    q = data.quarter
    lines = [
        f"Deze HIS-analyse beschrijft de ketenzorgregistratie van **{escape.markdown(p['name'])}** voor het "
        f"**{q.label_nl}**. De populatie is geteld op {q.first_day:%d-%m-%Y} (de peildatum van de "
        f"declaratie); metingen tellen mee als ze zijn vastgelegd tussen {q.window_start:%d-%m-%Y} "
        f"en {q.last_day:%d-%m-%Y}. De gegevens komen uit de HIS-extractie van "
        f"{pd.Timestamp(p['extraction_date']):%d-%m-%Y}.",
        "",
        f"- **{nl_number(k['list_size'])}** ingeschreven patiënten, van wie **{nl_number(k['enrolled_patients'])}** "
        f"in ketenzorg, met samen **{nl_number(k['enrolments'])}** deelnames (een patiënt kan aan meer "
        f"dan één keten deelnemen).",
        f"- **{nl_number(k['registration_findings'])}** registratiebevindingen bij "
        f"{nl_number(k['patients_with_registration_findings'])} patiënten.",
        f"- **{nl_number(k['patients_to_call'])}** patiënten met een controle die ontbreekt of verlopen is.",
    ]
    h = data.findings_history
    if has_previous_quarter(data):
        departed = int(h["departed"].sum())
        lines.append(f"- Sinds het vorige kwartaal **{nl_number(int(h['resolved'].sum()))}** bevindingen en controles "
                     f"opgelost, **{nl_number(int(h['new'].sum()))}** nieuw, {nl_number(int(h['still_open'].sum()))} "
                     f"nog open" + (f"; {nl_number(departed)} vervallen doordat de patiënt is vertrokken "
                                    f"(niet meer ingeschreven of overleden)." if departed else "."))
    else:
        lines.append("- Geen vorig kwartaal in de gegevens: alle bevindingen zijn nieuw.")
    if k["over_cap"]:
        lines.append(f"- Inclusie boven het afgesproken maximum: **{', '.join(map(escape.markdown, k['over_cap']))}**.")
    if not bool(p.get("quarter_complete", True)):
        lines += ["", "> **Let op:** de extractie is van vóór het einde van het kwartaal; "
                      "cijfers over metingen kunnen onvolledig zijn."]
    return "\n".join(lines)


def summary_table(data: HisData) -> pd.DataFrame:
    """Per programme: enrolled, inclusion against the cap, findings and open controls; each count
    with its change since the previous quarter in brackets."""
    def with_delta(now, before) -> str:
        return f"{nl_number(now)} ({nl_delta(now, before)})" if before is not None and pd.notna(before) \
            else nl_number(now)
    rows = []
    for r in data.summary.itertuples():
        has_prev = pd.notna(getattr(r, "enrolled_prev", None))
        reg = sum(getattr(r, k) for k in REGISTRATION_KINDS)
        reg_prev = sum(getattr(r, f"{k}_prev") for k in REGISTRATION_KINDS) if has_prev else None
        ctl = sum(getattr(r, k) for k in CONTROL_KINDS)
        ctl_prev = sum(getattr(r, f"{k}_prev") for k in CONTROL_KINDS) if has_prev else None
        rows.append({
            "Keten": r.programme,
            "In ketenzorg": with_delta(r.enrolled, r.enrolled_prev),
            "Inclusie": nl_pct(r.inclusion_pct),
            "Afgesproken maximum": nl_pct(r.max_inclusion_pct),
            "Registratiebevindingen": with_delta(reg, reg_prev),
            "Openstaande controles": with_delta(ctl, ctl_prev),
        })
    return pd.DataFrame(rows)


def findings_overview(data: HisData) -> pd.DataFrame:
    """Count of each registration finding kind per programme, with the previous quarter."""
    rows = []
    for kind in REGISTRATION_KINDS + ("no_chain_contact",):
        row = {"Bevinding": KIND_LABELS_NL[kind]}
        for r in data.summary.itertuples():
            row[r.programme] = nl_number(getattr(r, kind))
        now = int(data.summary[kind].sum())
        prev = data.summary[f"{kind}_prev"].sum() if f"{kind}_prev" in data.summary else None
        row["Totaal"] = nl_number(now)
        row["Vorig kwartaal"] = nl_number(prev)
        rows.append(row)
    return pd.DataFrame(rows)


def finding_list(data: HisData, kind: str) -> pd.DataFrame:
    """Patients with one finding kind (own report only: patient number, birth year, sex), with
    the quarter each was first seen and how long it is open: the oldest first."""
    from .worklists import SEX_NL
    f = data.findings[data.findings["kind"] == kind]
    f = f.sort_values("quarters_open", ascending=False, kind="stable")
    return pd.DataFrame({
        "Patiëntnummer": f["patient_id"].values,
        "Geboortejaar": f["birth_year"].astype(int).values,
        "Geslacht": f["sex"].map(SEX_NL).values,
        "Keten": f["programme"].values,
        **history_columns(f["quarters_open"], f["first_seen_bounded"], f["first_seen"]),
    })


GROUP_LABELS_NL = {"registration": "Registratiebevindingen", "control": "Openstaande controles"}


def has_previous_quarter(data: HisData) -> bool:
    """Whether the practice's data covers the previous quarter (patients in its population):
    without it every finding counts as new."""
    return bool(data.findings_history["previous_quarter"].any())


def history_text(data: HisData) -> str:
    """What the table of changes since the previous quarter means (Markdown, Dutch)."""
    prev = data.quarter.previous()
    if not has_previous_quarter(data):
        return (f"**Geen vorig kwartaal**: de gegevens van deze praktijk bevatten het {prev.label_nl} niet "
                f"(geen ingeschreven patiënten op {prev.first_day:%d-%m-%Y}). Alle bevindingen tellen daarom "
                f"als nieuw; wat is opgelost is niet te zien.")
    return (f"Vergeleken met het {prev.label_nl}, berekend uit dezelfde HIS-extractie: **opgelost** is een "
            f"bevinding die er in het vorige kwartaal was en nu niet meer, terwijl de patiënt nog bij de praktijk "
            f"is ingeschreven; **vertrokken** een die er toen was bij een patiënt die sindsdien niet meer is "
            f"ingeschreven of is overleden (die telt niet als opgelost); **nieuw** een die er toen niet was, "
            f"**nog open** een die er toen al was. *Open sinds* is het kwartaal waarin de oudste nog openstaande "
            f"bevinding voor het eerst optrad (we kijken {HISTORY_QUARTERS} kwartalen terug, dit kwartaal "
            f"meegeteld).")


def history_table(data: HisData) -> pd.DataFrame:
    """Per programme and group (registration findings, open controls): resolved since the
    previous quarter, departed (gone because the patient left: not resolved), new, still open,
    and the quarter the oldest open one was first seen. Without a previous quarter resolved,
    departed and still open are "–" (everything is new)."""
    from .worklists import since_text
    prev = has_previous_quarter(data)
    h = data.findings_history
    order = {p: i for i, p in enumerate(programmes(data))}
    h = h.assign(_o=h["programme"].map(order), _g=h["group"].map({"registration": 0, "control": 1})) \
         .sort_values(["_o", "_g"], kind="stable")
    f = data.findings
    bounded = set(f.loc[f["first_seen_bounded"], "first_seen"])
    rows = []
    for r in h.itertuples():
        oldest = r.oldest_first_seen if isinstance(r.oldest_first_seen, str) else None
        rows.append({"Keten": r.programme, "Soort": GROUP_LABELS_NL[r.group],
                     "Opgelost": nl_number(r.resolved) if prev else "–",
                     "Vertrokken": nl_number(r.departed) if prev else "–",
                     "Nieuw": nl_number(r.new),
                     "Nog open": nl_number(r.still_open) if prev else "–",
                     "Open sinds": since_text(oldest, oldest in bounded) if oldest else "–"})
    return pd.DataFrame(rows, columns=["Keten", "Soort", "Opgelost", "Vertrokken", "Nieuw", "Nog open", "Open sinds"])


def resolved_list(data: HisData) -> pd.DataFrame:
    """The previous quarter's findings that are resolved now (own report only): what the
    practice fixed, one row per finding; findings of patients who left (``departed``) are not
    in it."""
    from .worklists import SEX_NL, _control_labels
    r = data.findings_resolved
    labels = _control_labels()
    what = [KIND_LABELS_NL[k] + (f": {labels.get((p, c), c)}" if isinstance(c, str) and c else "")
            for k, p, c in zip(r["kind"], r["programme"], r["control"])]
    order = {p: i for i, p in enumerate(programmes(data))}
    out = pd.DataFrame({"Patiëntnummer": r["patient_id"].values,
                        "Geboortejaar": r["birth_year"].astype(int).values,
                        "Geslacht": r["sex"].map(SEX_NL).values,
                        "Keten": r["programme"].values, "Opgelost": what},
                       columns=["Patiëntnummer", "Geboortejaar", "Geslacht", "Keten", "Opgelost"])
    return out.sort_values(["Keten", "Opgelost", "Patiëntnummer"],
                           key=lambda s: s.map(order) if s.name == "Keten" else s, kind="stable").reset_index(drop=True)


def controls_table(data: HisData, programme: str) -> pd.DataFrame:
    """The call-up list of one programme: a row per patient with what is missing or overdue."""
    f = data.findings[(data.findings["programme"] == programme) & data.findings["kind"].isin(CONTROL_KINDS)]
    return worklist(f, "oproepen").drop(columns="Keten")


def controls_overview(data: HisData) -> pd.DataFrame:
    """Per programme and control: patients missing it and patients overdue."""
    rules = load_programmes()
    f = data.findings
    rows = []
    for p in rules.programmes.values():
        enrolled = int(data.summary.loc[data.summary["programme"] == p.id, "enrolled"].sum())
        for c in p.controls:
            sel = f[(f["programme"] == p.id) & (f["control"] == c.id)]
            miss = int((sel["kind"] == "measurement_missing").sum())
            over = int((sel["kind"] == "measurement_overdue").sum())
            rows.append({"Keten": p.id, "Controle": control_label(p.id, c.id),
                         "Interval": f"{c.interval_months} mnd", "In ketenzorg": nl_number(enrolled),
                         "Ontbreekt": nl_number(miss), "Verlopen": nl_number(over),
                         "Op orde": nl_pct(100 * (enrolled - miss - over) / enrolled if enrolled else None)})
    return pd.DataFrame(rows)


def indicator_table(data: HisData, programme: str) -> pd.DataFrame:
    """Indicators of one programme: numerator, denominator, %, target, care-group median, position."""
    own = data.own_indicators[data.own_indicators["programme"] == programme]
    rows = []
    for r in own.itertuples():
        peers_ok = pd.notna(r.peer_n) and r.peer_n >= MIN_PRACTICES_FOR_PEERS
        target = "–" if pd.isna(r.target_pct) else ("≤ " if r.low_is_good else "≥ ") + nl_pct(r.target_pct, 0)
        rows.append({
            "Indicator": r.title,
            "Teller": nl_number(r.numerator),
            "Noemer": nl_number(r.denominator),
            "Percentage": nl_pct(r.pct),
            "Streefwaarde": target,
            "Mediaan zorggroep": nl_pct(r.peer_median) if peers_ok else "–",
            "Positie": f"{int(r.rank)}\u00a0van\u00a0{int(r.peer_n)}" if peers_ok and pd.notna(r.rank) else "–",
        })
    return pd.DataFrame(rows)


def indicator_points(data: HisData, programme: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For the indicator figure: this practice's rows, and the other practices' percentages
    that the small-number rules allow: only publishable rates, and only for an indicator
    whose care-group figures are shown (``peer_n``, see ``suppression.PEER_RULE``)."""
    from ..suppression import peer_rates
    ind = data.indicators[data.indicators["programme"] == programme]
    mine = ind["practice_agb"] == data.practice["practice_agb"]
    own = ind[mine][["indicator_id", "title", "pct", "target_pct"]]
    others = ind[~mine & (ind["peer_n"].fillna(0) >= MIN_PRACTICES_FOR_PEERS)].copy()
    others["pct"] = peer_rates(others["numerator"], others["denominator"])
    return own, others[["indicator_id", "pct"]]


@lru_cache(maxsize=1)
def _indicator_definitions() -> dict:
    """The indicator files, read once per process (the notes of every programme need them)."""
    from ..rules.indicators import load_indicators
    return load_indicators()


def indicator_notes(data: HisData, programme: str) -> str:
    """How each indicator of a programme is counted (Markdown list)."""
    defs = _indicator_definitions()
    lines = []
    for iid in data.own_indicators[data.own_indicators["programme"] == programme]["indicator_id"]:
        d = defs[iid]
        lines.append(f"- *{d.title}*: {d.why} Noemer: {d.denominator_note} Bron: {d.source}.")
    return "\n".join(lines)


def worklist_tables(data: HisData) -> dict[str, tuple[str, pd.DataFrame]]:
    """Every worklist: action id -> (Dutch title, table)."""
    return {a: (WORKLIST_TITLES_NL[a], worklist(data.findings, a)) for a in WORKLISTS}


def dq_recorded_table(data: HisData) -> pd.DataFrame:
    """Share of enrolled patients with each measurement recorded in the window."""
    codes = load_programmes().codes
    d = data.dq_recorded
    return pd.DataFrame({
        "Keten": d["programme"].values,
        "Meting": [codes.measurements[c].title for c in d["concept"]],
        "In ketenzorg": [nl_number(x) for x in d["enrolled"]],
        "Vastgelegd": [nl_number(x) for x in d["recorded"]],
        "Percentage": [nl_pct(x) for x in d["recorded_pct"]],
    })


def dq_issue_table(data: HisData) -> pd.DataFrame:
    """Values and dates that were left out of the figures, counted per source and reason."""
    codes = load_programmes().codes
    d = data.dq_issue_counts
    def source(s: str) -> str:
        if s.startswith("measurements:"):
            return "Meting " + codes.measurements[s.split(":", 1)[1]].title
        return {"contacts": "Contacten", "prescriptions": "Voorschriften", "episodes": "Episodes"}.get(s, s)
    return pd.DataFrame({
        "Bron": [source(s) for s in d["source"]],
        "Probleem": [ISSUE_LABELS_NL.get(i, i) for i in d["issue"]],
        "Aantal": [nl_number(n) for n in d["n"]],
    })


def dq_issue_list(data: HisData) -> pd.DataFrame:
    """The measurements left out, one row each (own report only)."""
    codes = load_programmes().codes
    d = data.dq_issues
    return pd.DataFrame({
        "Patiëntnummer": d["patient_id"].values,
        "Datum": [f"{pd.Timestamp(x):%d-%m-%Y}" for x in d["date"]],
        "Meting": [codes.measurements[c].title for c in d["concept"]],
        "Waarde": d["value"].values,
        "Reden": [ISSUE_LABELS_NL.get(i, i) for i in d["issue"]],
    })


def resolve(practice_agb: str = "", quarter: str = "", warehouse: str = "", cube_path: str = "") -> tuple[Path, str]:
    """Fill in the notebook's parameters for a researcher who runs it without any:
    the default warehouse, the latest complete quarter, the first practice. Returns
    (cube folder, practice AGB). The batch always passes all of them.
    (``helpers.reports.notebook_defaults`` with this report's id.)"""
    from .defaults import notebook_defaults
    p = notebook_defaults("his_analyse", {"practice_agb": practice_agb, "quarter": quarter,
                                          "warehouse": warehouse, "cube_path": cube_path})
    return Path(p["cube_path"]), p["practice_agb"]


def programmes(data: HisData) -> list[str]:
    """The chain-care programmes in the one order of ``parameters/programmes.yaml``."""
    return list(load_programmes().programme_ids)
