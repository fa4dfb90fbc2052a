"""Worklists for the practice nurse (POH): one table per action, patient number, birth year
and sex only. They appear only in the practice's own report and beside it as CSV.

>>> write_worklists(cube, "01000001", Path("outputs/2026Q3/01000001"))   # doctest: +SKIP
[PosixPath('outputs/2026Q3/01000001/werklijst_aanmelden.csv'), ...]
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..atomic import write_bytes
from ..cube import read_slice
from ..escape import csv_cell
from ..cube.findings import KIND_LABELS_NL, WORKLISTS
from ..rules.programmes import load_programmes

SEX_NL = {"M": "man", "V": "vrouw", "O": "onbekend"}
#: the history columns of every worklist and findings table (``findings.findings_history``)
SINCE, OPEN_QUARTERS = "Sinds", "Open (kwartalen)"


def since_text(first_seen: str, bounded: bool) -> str:
    """The quarter a finding was first seen; at the lookback bound "or earlier".

    >>> since_text("2025Q4", False), since_text("2024Q4", True)
    ('2025Q4', '2024Q4 of eerder')
    """
    return f"{first_seen} of eerder" if bounded else str(first_seen)


def open_text(quarters: int, bounded: bool) -> str:
    """The quarters a finding has been open, the current one included (new: 1); at the bound "8+".

    >>> open_text(3, False), open_text(8, True)
    ('3', '8+')
    """
    return f"{int(quarters)}+" if bounded else str(int(quarters))


def history_columns(quarters_open: pd.Series, bounded: pd.Series, first_seen: pd.Series) -> dict[str, list[str]]:
    """The "Sinds" and "Open (kwartalen)" cells of a table's rows."""
    return {SINCE: [since_text(f, b) for f, b in zip(first_seen, bounded)],
            OPEN_QUARTERS: [open_text(q, b) for q, b in zip(quarters_open, bounded)]}


def control_label(programme: str, control: str | None) -> str:
    """Dutch label of a control (``hba1c`` -> ``HbA1c (IFCC)``; ``bmi_or_weight`` -> ``BMI of Gewicht``)."""
    if not control:
        return ""
    rules = load_programmes()
    for c in rules.programmes[programme].controls:
        if c.id == control:
            return " of ".join(rules.codes.measurements[k].title for k in c.concepts)
    return control


def _control_labels() -> dict[tuple[str, str], str]:
    """(programme, control) -> Dutch label, for every control of every programme."""
    rules = load_programmes()
    return {(p.id, c.id): " of ".join(rules.codes.measurements[k].title for k in c.concepts)
            for p in rules.programmes.values() for c in p.controls}


def worklist(findings: pd.DataFrame, action: str) -> pd.DataFrame:
    """One worklist (an entry of ``WORKLISTS``) as a Dutch table, one row per patient and programme.

    Measurement findings of a patient are folded into one row ("ontbreekt: HbA1c, LDL").
    Built column-wise (one label per finding, then one join per patient), not per patient.
    "Sinds" and "Open (kwartalen)" are those of the row's oldest finding; the oldest rows come
    first, then programme and patient number.
    """
    kinds = WORKLISTS[action]
    f = findings[findings["kind"].isin(kinds)].copy()
    cols = ["Patiëntnummer", "Geboortejaar", "Geslacht", "Keten", "Actie", SINCE, OPEN_QUARTERS]
    if f.empty:
        return pd.DataFrame(columns=cols)
    labels = _control_labels()
    control = [labels.get((p, c), c) if isinstance(c, str) and c else "" for p, c in zip(f["programme"], f["control"])]
    last = pd.to_datetime(f["last_date"]).dt.strftime("%d-%m-%Y")
    f["item"] = [f"{c} (laatst {d})" if k == "measurement_overdue" else c
                 for c, d, k in zip(control, last, f["kind"])]
    f["kind"] = pd.Categorical(f["kind"], categories=list(kinds), ordered=True)
    f = f.sort_values(["kind", "control"], kind="stable")
    keys = ["patient_id", "programme"]
    # one part per patient, programme and kind: "ontbreekt: a, b" / "verlopen: ..." / the kind's label
    parts = f.groupby([*keys, "kind"], sort=False, observed=True)["item"].agg(", ".join).reset_index()
    prefix = {"measurement_missing": "ontbreekt: ", "measurement_overdue": "verlopen: "}
    parts["part"] = [prefix[k] + items if k in prefix else KIND_LABELS_NL[k]
                     for k, items in zip(parts["kind"].astype(str), parts["item"])]
    actions = parts.groupby(keys, sort=False)["part"].agg("; ".join)
    first = f.drop_duplicates(keys).set_index(keys)
    # the row's oldest finding (most quarters open; at the bound, first_seen is the bound for all)
    oldest = f.sort_values("quarters_open", ascending=False, kind="stable").drop_duplicates(keys) \
              .set_index(keys).reindex(first.index)
    out = pd.DataFrame({"Patiëntnummer": first.index.get_level_values(0),
                        "Geboortejaar": first["birth_year"].astype(int).to_numpy(),
                        "Geslacht": [SEX_NL.get(x, x) for x in first["sex"]],
                        "Keten": first.index.get_level_values(1),
                        "Actie": actions.reindex(first.index).to_numpy(),
                        **history_columns(oldest["quarters_open"], oldest["first_seen_bounded"],
                                          oldest["first_seen"])}, columns=cols)
    order = {p: i for i, p in enumerate(load_programmes().programmes)}
    out["_age"] = -oldest["quarters_open"].astype(int).to_numpy()
    out = out.sort_values(["_age", "Keten", "Patiëntnummer"],
                          key=lambda s: s.map(order) if s.name == "Keten" else s, kind="stable")
    return out.drop(columns="_age").reset_index(drop=True)


def write_table_csv(df: pd.DataFrame, path: Path) -> None:
    """A report table as a CSV for Excel (every cell escaped, ";" and UTF-8 with BOM), atomically."""
    # a worklist is opened in Excel: no delivered text may become a formula there
    df = df.map(csv_cell)
    df.columns = [csv_cell(c) for c in df.columns]
    # Dutch spreadsheet dialect: ';' and UTF-8 with BOM so Excel opens it right
    write_bytes(path, df.to_csv(sep=";", index=False).encode("utf-8-sig"))


def write_worklists(cube: Path, practice_agb: str, outdir: Path) -> list[Path]:
    """Write every worklist of one practice as ``werklijst_<action>.csv`` (atomically)."""
    findings = read_slice(cube, "findings", practice_agb=practice_agb)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for action in WORKLISTS:
        path = outdir / f"werklijst_{action}.csv"
        write_table_csv(worklist(findings, action), path)
        written.append(path)
    return written
