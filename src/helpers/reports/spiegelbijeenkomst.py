"""The peer-meeting pack (spiegelbijeenkomst): the praktijkspiegel of one hagro's practices side
by side, the largest differences as discussion points, a meeting-report template and an
attendance list, for the intervisie the insurer's Praktijkspiegel module asks for three times
a year.

A shared-scope report: it reads only the cube's shared table ``spiegel_hagro`` (through
``helpers.cube.SharedCube``), written by the praktijkspiegel's prepare step through the
small-number rule. It names its own practices (that is the point of intervisie) but shows no
patient and no count below the rule.

>>> discussion_sentence("Verwijzingen naar dermatologie", "Praktijk A", 1.72, "Praktijk B", 0.91)
'Verwijzingen naar dermatologie: van O/E 0,91 (Praktijk B) tot 1,72 (Praktijk A).'
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import escape
from ..cube.shared import SharedCube
from ..errors import ParameterError
from ..suppression import RULE_TEXT
from .praktijkspiegel import HAGRO_TABLE, SECTION_TITLES, measures_frame, nl_ratio

#: at most this many discussion points
MAX_DISCUSSION_POINTS = 6
#: lines to sign per practice on the attendance list
SIGN_LINES_PER_PRACTICE = 3
POSITION_MARK = {"boven": " ▲", "onder": " ▼"}


def discussion_sentence(title: str, hi_name: str, hi_ratio: float, lo_name: str, lo_ratio: float) -> str:
    """One discussion point: the spread of a measure within the group."""
    return f"{title}: van O/E {nl_ratio(lo_ratio)} ({lo_name}) tot {nl_ratio(hi_ratio)} ({hi_name})."


@dataclass
class HagroData:
    quarter: str
    hagro: str
    rows: pd.DataFrame         # practice x measure, suppressed
    practices: pd.DataFrame    # practice_agb, name
    measures: pd.DataFrame


def load(source, hagro: str, quarter: str = "") -> HagroData:
    """The hagro's rows of the shared mirror table (``source``: a SharedCube or a cube folder)."""
    shared = source if isinstance(source, SharedCube) else SharedCube(source)
    table = shared.read(HAGRO_TABLE)
    rows = table[table["hagro"] == str(hagro)].copy()
    if rows.empty:
        known = sorted(table["hagro"].dropna().unique())
        raise ParameterError(f"hagro {hagro!r} has no practices in the quarter cube (known: {', '.join(known[:20])})")
    measures = measures_frame()[["measure", "title", "section", "unit_label"]]
    practices = rows[["practice_agb", "name"]].drop_duplicates().sort_values("name").reset_index(drop=True)
    return HagroData(quarter=str(quarter), hagro=str(hagro), rows=rows, practices=practices, measures=measures)


def heading(data: HagroData) -> str:
    return f"# Spiegelbijeenkomst {escape.markdown(data.hagro)}\n\n**Praktijkspiegel {escape.markdown(data.quarter)}**"


def intro_text(data: HagroData) -> str:
    names = ", ".join(f"{escape.markdown(r.name)} ({escape.markdown(r.practice_agb)})" for r in data.practices.itertuples())
    return (f"Dit pakket is voor de intervisie van de hagro: de cijfers van de praktijkspiegel van "
            f"**{len(data.practices)} praktijken** naast elkaar ({names}), de grootste verschillen als "
            f"gespreksonderwerpen, een verslag om in te vullen en een presentielijst. Ieder cijfer is "
            f"waargenomen/verwacht (O/E) over de laatste twaalf maanden, gecorrigeerd voor leeftijd en geslacht "
            f"ten opzichte van de hele zorggroep. ▲ of ▼: buiten de 99,8%-grenzen van de trechter, dus niet door "
            f"toeval te verklaren. Hoger of lager is op zich niet goed of slecht: het is een vraag voor het gesprek.")


def side_by_side(data: HagroData, section: str) -> pd.DataFrame:
    """Measures (rows) x practices (columns): O/E with ▲/▼ for a position beyond chance; '–'
    where E is below 10 or the count is withheld."""
    m = data.measures[data.measures["section"] == section]
    rows = data.rows.merge(m, on="measure", how="inner")
    if rows.empty:
        return pd.DataFrame()
    rows["cell"] = [("–" if pd.isna(r.ratio) else nl_ratio(r.ratio) + POSITION_MARK.get(r.position or "", ""))
                    for r in rows.itertuples()]
    wide = rows.pivot_table(index="measure", columns="practice_agb", values="cell", aggfunc="first")
    wide = wide.reindex(index=[x for x in m["measure"] if x in wide.index],
                        columns=list(data.practices["practice_agb"]))
    titles = m.set_index("measure").loc[wide.index, "title"].to_numpy()
    wide.columns = list(data.practices["name"])
    wide = wide.reset_index(drop=True).fillna("–")
    wide.insert(0, "Maat", titles)
    return wide


def discussion_points(data: HagroData, limit: int = MAX_DISCUSSION_POINTS) -> list[str]:
    """The measures on which the group's practices differ most (ratio of the highest to the
    lowest O/E among practices with E >= 10), any beyond chance first."""
    rows = data.rows[data.rows["ratio"].notna() & (data.rows["ratio"] > 0)].merge(data.measures, on="measure")
    if rows.empty:
        return []
    points = []
    for measure, g in rows.groupby("measure"):
        if len(g) < 2:
            continue
        hi, lo = g.loc[g["ratio"].idxmax()], g.loc[g["ratio"].idxmin()]
        beyond = g["position"].isin(["boven", "onder"]).any()
        points.append((not beyond, -float(np.log(hi["ratio"] / lo["ratio"])), measure,
                       discussion_sentence(hi["title"], escape.markdown(hi["name"]), hi["ratio"],
                                           escape.markdown(lo["name"]), lo["ratio"])))
    points.sort()
    return [p[3] for p in points[:limit]]


def discussion_text(data: HagroData) -> str:
    points = discussion_points(data)
    if not points:
        return "Er zijn te weinig vergelijkbare cijfers om gespreksonderwerpen voor te stellen."
    return "Voorgestelde onderwerpen, de grootste verschillen binnen de groep eerst:\n\n" + \
        "\n".join(f"{i}. {p}" for i, p in enumerate(points, 1))


def section_ids() -> list[tuple[str, str]]:
    return list(SECTION_TITLES.items())


def report_template_html() -> str:
    """The meeting-report template as an HTML table with empty lines to write on."""
    fields = ["Datum bijeenkomst", "Aanwezigen (zie presentielijst)", "Besproken cijfers",
              "Gemaakte afspraken", "Vervolgacties (wie, wat, wanneer)", "Datum volgende bijeenkomst"]
    heights = [1, 1, 4, 5, 4, 1]
    rows = "".join(f'<tr><th style="width:30%;text-align:left;vertical-align:top">{escape.html_text(f)}</th>'
                   f'<td style="height:{1.6 * h}em;border-bottom:1px solid #9aa5b1"></td></tr>'
                   for f, h in zip(fields, heights))
    return f'<table class="spiegel-table spiegel-form">{rows}</table>'


def attendance_html(data: HagroData) -> str:
    """The attendance list: per practice lines for name and signature of each GP present."""
    rows = []
    for r in data.practices.itertuples():
        for i in range(SIGN_LINES_PER_PRACTICE):
            practice = escape.html_text(r.name) if i == 0 else ""
            rows.append(f'<tr><td>{practice}</td><td style="height:1.9em"></td><td></td><td></td></tr>')
    head = "<tr><th>Praktijk</th><th>Naam huisarts</th><th>AGB huisarts</th><th>Handtekening</th></tr>"
    return f'<table class="spiegel-table spiegel-form"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def method_text() -> str:
    return ("- De cijfers zijn die van de praktijkspiegel van elke praktijk (zie daar de methode): "
            "waargenomen/verwacht over de twaalf maanden tot en met het kwartaal, indirect gestandaardiseerd "
            "naar leeftijd en geslacht met de hele zorggroep als referentie.\n"
            "- ▲/▼: buiten de 99,8%-grenzen van de trechter, verbreed voor de spreiding tussen praktijken.\n"
            "- Een verhouding staat er alleen als het verwachte aantal minstens 10 is.\n"
            f"- Kleine aantallen: {RULE_TEXT}.")


def key_figures(data: HagroData) -> dict:
    return {"practices": len(data.practices), "discussion_points": len(discussion_points(data))}
