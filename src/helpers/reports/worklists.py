"""Worklists for the practice nurse (POH): one table per action, patient number, birth year
and sex only. They appear only in the practice's own report and beside it as CSV.

>>> write_worklists(cube, "01000001", Path("outputs/2026Q3/01000001"))   # doctest: +SKIP
[PosixPath('outputs/2026Q3/01000001/werklijst_aanmelden.csv'), ...]
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..cube import read_slice
from ..escape import csv_cell
from ..cube.findings import KIND_LABELS_NL, WORKLISTS
from ..rules.programmes import load_programmes

SEX_NL = {"M": "man", "V": "vrouw", "O": "onbekend"}


def control_label(programme: str, control: str | None) -> str:
    """Dutch label of a control (``hba1c`` -> ``HbA1c (IFCC)``; ``bmi_or_weight`` -> ``BMI of Gewicht``)."""
    if not control:
        return ""
    rules = load_programmes()
    for c in rules.programmes[programme].controls:
        if c.id == control:
            return " of ".join(rules.codes.measurements[k].title for k in c.concepts)
    return control


def worklist(findings: pd.DataFrame, action: str) -> pd.DataFrame:
    """One worklist (an entry of ``WORKLISTS``) as a Dutch table, one row per patient and programme.

    Measurement findings of a patient are folded into one row ("ontbreekt: HbA1c, LDL").
    """
    kinds = WORKLISTS[action]
    f = findings[findings["kind"].isin(kinds)].copy()
    cols = ["Patiëntnummer", "Geboortejaar", "Geslacht", "Keten", "Actie"]
    if f.empty:
        return pd.DataFrame(columns=cols)

    def reason(rows: pd.DataFrame) -> str:
        parts = []
        for kind, grp in rows.groupby("kind", sort=False):
            if kind == "measurement_missing":
                parts.append("ontbreekt: " + ", ".join(control_label(r.programme, r.control) for r in grp.itertuples()))
            elif kind == "measurement_overdue":
                parts.append("verlopen: " + ", ".join(
                    f"{control_label(r.programme, r.control)} (laatst {pd.Timestamp(r.last_date):%d-%m-%Y})"
                    for r in grp.itertuples()))
            else:
                parts.append(KIND_LABELS_NL[kind])
        return "; ".join(parts)

    f["kind"] = pd.Categorical(f["kind"], categories=list(kinds), ordered=True)
    rows = []
    for (pid, prog), grp in f.sort_values(["kind", "control"]).groupby(["patient_id", "programme"], sort=False, observed=True):
        first = grp.iloc[0]
        rows.append({"Patiëntnummer": pid, "Geboortejaar": int(first["birth_year"]),
                     "Geslacht": SEX_NL.get(first["sex"], first["sex"]), "Keten": prog, "Actie": reason(grp)})
    out = pd.DataFrame(rows, columns=cols)
    order = {p: i for i, p in enumerate(load_programmes().programmes)}
    return out.sort_values(["Keten", "Patiëntnummer"], key=lambda s: s.map(order) if s.name == "Keten" else s) \
              .reset_index(drop=True)


def _atomic_csv(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    # a worklist is opened in Excel: no delivered text may become a formula there
    df = df.map(csv_cell)
    df.columns = [csv_cell(c) for c in df.columns]
    # Dutch spreadsheet dialect: ';' and UTF-8 with BOM so Excel opens it right
    df.to_csv(tmp, sep=";", index=False, encoding="utf-8-sig")
    os.replace(tmp, path)


def write_worklists(cube: Path, practice_agb: str, outdir: Path) -> list[Path]:
    """Write every worklist of one practice as ``werklijst_<action>.csv`` (atomically)."""
    findings = read_slice(cube, "findings", practice_agb=practice_agb)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for action in WORKLISTS:
        path = outdir / f"werklijst_{action}.csv"
        _atomic_csv(worklist(findings, action), path)
        written.append(path)
    return written
