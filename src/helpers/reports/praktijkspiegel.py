"""The praktijkspiegel (practice mirror): one practice's care use against its peers and the
country, fairly compared, as display-ready tables, sentences and figures.

Every number comes from the quarter cube's ``mirror`` table, computed set-based for every
practice in the prepare pass by ``helpers.mirror.compute_mirror`` (the measures are the files
in ``parameters/mirror/``; the statistics are ``helpers.mirror.stats``). This module only
selects and words them, in Dutch. Care use is neither good nor bad in itself: the text says
"hoger/lager dan verwacht" and never ranks practices or colours them red and green.

Other practices appear only as anonymous points and bands, built from figures that pass the
small-number rule (``suppression.MIN_CELL``) and with an expected count of at least
``stats.MIN_EXPECTED``.

>>> sentence("Verwijzingen naar dermatologie", 1.38, 1.21, 1.57)
'Verwijzingen naar dermatologie: 38% hoger dan verwacht voor uw patiëntenpopulatie (O/E 1,38; 95%-BI 1,21-1,57).'
>>> sentence("Antibiotica (J01)", 0.72, 0.61, 0.85)
'Antibiotica (J01): 28% lager dan verwacht voor uw patiëntenpopulatie (O/E 0,72; 95%-BI 0,61-0,85).'
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from .. import escape
from ..cube import read_meta, read_slice
from ..cube.read import practice_row
from ..errors import ParameterError
from ..mirror import stats
from ..mirror.measures import SECTIONS, load_measures
from ..quarter import Quarter
from ..suppression import MIN_CELL, MIN_PRACTICES_FOR_PEERS, RULE_TEXT
from ..tables import nl_number, nl_pct

#: Dutch section headings, in report order (the section ids of the measure files)
SECTION_TITLES = {"populatie": "Populatie", "contacten": "Contacten", "verwijzingen": "Verwijzingen",
                  "voorschrijven": "Voorschrijven", "diagnostiek": "Diagnostiek",
                  "veelgebruikers": "Veelgebruikers"}
#: at most this many attention points on the first page
MAX_ATTENTION_POINTS = 5
#: the main rates drawn in the trend section
TREND_MEASURES = ("contacten_totaal", "contacten_e_consult", "verwijzingen_medisch_specialist",
                  "antibiotica", "ppi", "veelgebruikers_aandeel")
#: the measures drawn as a funnel plot, one per section
FUNNEL_MEASURES = {"contacten": "contacten_totaal", "verwijzingen": "verwijzingen_medisch_specialist",
                   "voorschrijven": "antibiotica", "diagnostiek": "diagnostiek_hba1c",
                   "veelgebruikers": "veelgebruikers_aandeel", "populatie": "multimorbiditeit"}


def nl_ratio(x) -> str:
    """An O/E ratio in Dutch notation, two decimals (``1,38``)."""
    return "–" if x is None or pd.isna(x) else f"{x:.2f}".replace(".", ",")


def sentence(title: str, ratio: float, lo: float, hi: float) -> str:
    """One attention point as a plain Dutch sentence with the figure behind it."""
    pct = round(abs(ratio - 1.0) * 100)
    direction = "hoger" if ratio > 1 else "lager"
    return (f"{title}: {pct}% {direction} dan verwacht voor uw patiëntenpopulatie "
            f"(O/E {nl_ratio(ratio)}; 95%-BI {nl_ratio(lo)}-{nl_ratio(hi)}).")


#: the measure fields the mirror reports show beside the figures
MEASURE_COLUMNS = ["measure", "title", "section", "unit", "unit_label", "standardised", "why", "source",
                   "national_value", "national_year", "national_source"]


@lru_cache(maxsize=1)
def measures_frame() -> pd.DataFrame:
    """The measure files' definitions (``helpers.mirror.events.measures_table``), read once."""
    from ..mirror.events import measures_table
    return measures_table(load_measures())[MEASURE_COLUMNS]


@dataclass
class MirrorData:
    """One practice's mirror: its own rows and the care group's anonymous peer figures."""
    quarter: Quarter
    practice: pd.Series
    own: pd.DataFrame          # this practice: every measure x window
    peers: pd.DataFrame        # every practice, publishable figures only (funnel points)
    strata: pd.DataFrame       # this practice's age/sex make-up against the care group
    measures: pd.DataFrame
    meta: dict
    n_practices: int

    @cached_property
    def current(self) -> pd.DataFrame:
        """This practice's figures for the rolling year ending on the quarter's last day."""
        cur = self.own[self.own["window"] == 0]
        return cur.merge(self.measures, on="measure", how="left")

    @cached_property
    def oe_band(self) -> pd.DataFrame:
        """Per measure the care group's P10 and P90 of O/E over the publishable practices
        (empty where fewer than ``MIN_PRACTICES_FOR_PEERS`` have a ratio)."""
        g = self.peers.groupby("measure")["ratio"]
        band = pd.DataFrame({"oe_p10": g.quantile(0.10), "oe_p90": g.quantile(0.90), "n": g.count()})
        band.loc[band["n"] < MIN_PRACTICES_FOR_PEERS, ["oe_p10", "oe_p90"]] = np.nan
        return band.reset_index()

    @property
    def window_start(self):
        end = self.quarter.last_day
        return pd.Timestamp(end) - pd.DateOffset(years=1) + pd.Timedelta(days=1)


def publishable_peers(mirror: pd.DataFrame) -> pd.DataFrame:
    """The care group's points for funnels: a ratio only where E reaches the display minimum
    and O is 0 or passes the small-number rule."""
    ok = (mirror["E"] >= stats.MIN_EXPECTED) & ((mirror["O"] == 0) | (mirror["O"] >= MIN_CELL))
    return mirror.loc[ok, ["practice_agb", "measure", "window", "O", "E", "ratio", "rate"]]


def load(cube: Path | str, practice_agb: str) -> MirrorData:
    """Read one practice's mirror from the quarter cube; an unknown practice is a ParameterError."""
    cube = Path(cube)
    meta = read_meta(cube)
    practice = practice_row(cube, practice_agb)
    mirror = read_slice(cube, "mirror")
    own = mirror[mirror["practice_agb"] == str(practice_agb)].reset_index(drop=True)
    strata = read_slice(cube, "mirror_strata", practice_agb=practice_agb)
    return MirrorData(quarter=Quarter.parse(meta["quarter"]), practice=practice, own=own,
                      peers=publishable_peers(mirror[mirror["window"] == 0]),
                      strata=strata[strata["window"] == 0].reset_index(drop=True),
                      measures=measures_frame(), meta=meta, n_practices=int(meta["practices"]))


# ------------------------------------------------------------------ text
def _period(data: MirrorData) -> str:
    return f"{data.window_start:%d-%m-%Y} t/m {data.quarter.last_day:%d-%m-%Y}"


def _extraction(data: MirrorData) -> str:
    day = data.practice.get("extraction_date")
    return pd.Timestamp(day).strftime("%d-%m-%Y") if pd.notna(day) else "–"


def heading(data: MirrorData) -> str:
    name = escape.markdown(data.practice.get("name", ""))
    return f"# Praktijkspiegel {data.quarter}\n\n**{name}** (AGB {escape.markdown(data.practice['practice_agb'])})"


def intro_text(data: MirrorData) -> str:
    """Who is compared with whom, over which period, and how to read O/E."""
    py = data.own.loc[(data.own["window"] == 0), "patient_years"].max()
    extraction = _extraction(data)
    return (f"Het zorggebruik van uw praktijk over de twaalf maanden **{_period(data)}**, vergeleken met "
            f"de {data.n_practices} praktijken van de zorggroep. Ieder cijfer is gecorrigeerd voor de leeftijd "
            f"en het geslacht van uw patiënten: *verwacht* (E) is wat u zou zien als uw patiënten even vaak "
            f"zorg gebruikten als patiënten van dezelfde leeftijd en hetzelfde geslacht in de hele zorggroep. "
            f"O/E boven 1 betekent meer dan verwacht, onder 1 minder. Zorggebruik is op zich niet goed of slecht; "
            f"de spiegel wijst aan waar het gesprek over kan gaan.\n\n"
            f"Uw praktijk telde in deze periode {nl_number(py, 0)} patiëntjaren. HIS-extractie van "
            f"{extraction}.")


def attention_points(data: MirrorData, limit: int = MAX_ATTENTION_POINTS) -> list[str]:
    """The largest deviations beyond chance (outside the overdispersion-adjusted 99.8% funnel
    limits), largest first, as sentences."""
    cur = data.current
    hit = cur[cur["beyond_chance"].fillna(False).astype(bool) & cur["ratio"].notna()].copy()
    if hit.empty:
        return []
    hit["size"] = np.abs(np.log(hit["ratio"].clip(lower=1e-9)))
    hit = hit.sort_values(["size", "measure"], ascending=[False, True]).head(limit)
    return [sentence(r.title, r.ratio, r.lo, r.hi) for r in hit.itertuples()]


def attention_text(data: MirrorData) -> str:
    points = attention_points(data)
    if not points:
        return ("Geen enkel cijfer van uw praktijk wijkt meer af dan op grond van toeval te verwachten is "
                "(alle cijfers liggen binnen de 99,8%-grenzen van de trechter). Bekijk de hoofdstukken hieronder "
                "voor de cijfers zelf.")
    lines = "\n".join(f"- {p}" for p in points)
    return (f"De {len(points)} grootste afwijkingen die niet door toeval te verklaren zijn (buiten de "
            f"99,8%-grenzen van de trechter, gecorrigeerd voor de spreiding tussen praktijken):\n\n{lines}")


# ------------------------------------------------------------------ tables
def _value(x, unit: str) -> str:
    if x is None or pd.isna(x):
        return "–"
    if unit == "percent":
        return nl_pct(x, 1)
    return nl_number(x, 2 if unit == "per_patient_year" else 0)


def _interval(r) -> str:
    if pd.isna(r.ratio) or r.E < stats.MIN_EXPECTED:
        return "– (E < 10)"
    return f"{nl_ratio(r.ratio)} {_range(nl_ratio(r.lo), nl_ratio(r.hi))}"


def _range(lo: str, hi: str) -> str:
    """``(lo–hi)`` that a table cell may put on its own line but never breaks inside."""
    return f"({lo}\u2013\u2060{hi})"


POSITION_NL = {"boven": "hoger dan verwacht", "onder": "lager dan verwacht", "binnen": "binnen toeval", "": "–"}


def section_table(data: MirrorData, section: str) -> pd.DataFrame:
    """Every measure of a section: O, E, O/E with its exact 95% interval, the rate with the
    care group's median and P10-P90, the funnel position and the national figure if any."""
    cur = data.current[data.current["section"] == section]
    rows = []
    for r in cur.itertuples():
        national = "–"
        if pd.notna(r.national_value):
            year = int(r.national_year) if pd.notna(r.national_year) and str(r.national_year).replace(".0", "").isdigit() \
                else r.national_year
            national = f"{_value(r.national_value, r.unit)} ({year})"
        band = "–" if pd.isna(r.median) else f"{_value(r.median, r.unit)} {_range(_value(r.p10, r.unit), _value(r.p90, r.unit))}"
        rows.append({"Maat": f"{r.title} ({r.unit_label})" if r.unit_label and r.unit_label != "%" else r.title,
                     "Waargenomen (O)": nl_number(r.O), "Verwacht (E)": nl_number(r.E, 1),
                     "O/E (95%-BI)": _interval(r), "Uw praktijk": _value(r.rate, r.unit),
                     "Zorggroep mediaan (P10-P90)": band, "Trechter": POSITION_NL.get(r.position or "", "–"),
                     "Landelijk": national})
    return pd.DataFrame(rows)


RIGHT = ("Waargenomen (O)", "Verwacht (E)", "O/E (95%-BI)", "Uw praktijk", "Zorggroep mediaan (P10-P90)", "Landelijk")


def section_dots(data: MirrorData, section: str) -> pd.DataFrame:
    """Rows for ``plots.ratio_dots``: O/E with interval, and the care group's P10-P90 of O/E."""
    cur = data.current[data.current["section"] == section]
    out = cur.merge(data.oe_band, on="measure", how="left")
    shown = out["E"] >= stats.MIN_EXPECTED
    return pd.DataFrame({"label": out["title"], "ratio": out["ratio"].where(shown),
                         "lo": out["lo"].where(shown), "hi": out["hi"].where(shown),
                         "p10": out["oe_p10"], "p90": out["oe_p90"]})


def funnel_data(data: MirrorData, measure: str) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(points, limits grid, title) for ``plots.funnel`` of one measure."""
    points = data.peers[data.peers["measure"] == measure]
    cur = data.current[data.current["measure"] == measure]
    tau2 = float(cur["tau2"].iloc[0]) if len(cur) and "tau2" in cur and pd.notna(cur["tau2"].iloc[0]) else 0.0
    e_max = max(float(points["E"].max()) if len(points) else 0.0, float(cur["E"].max()) if len(cur) else 0.0)
    grid = np.geomspace(stats.MIN_EXPECTED, max(e_max * 1.15, stats.MIN_EXPECTED * 2), 80)
    limits = {"expected": grid}
    for level, name in zip(stats.FUNNEL_LEVELS, ("95", "998")):
        lo, hi = stats.funnel_limits(pd.Series(grid), np.full(len(grid), tau2), level)
        limits[f"lo{name}"], limits[f"hi{name}"] = np.asarray(lo), np.asarray(hi)
    title = cur["title"].iloc[0] if len(cur) else measure
    points = points.rename(columns={"E": "expected"})[["practice_agb", "expected", "ratio"]]
    return points, pd.DataFrame(limits), f"Trechter: {title}"


def trend_rows(data: MirrorData, measure: str) -> pd.DataFrame:
    """The last eight rolling years of one measure, oldest first, for ``plots.trend_band``."""
    t = data.own[data.own["measure"] == measure].sort_values("window", ascending=False)
    labels = [str(Quarter.containing(pd.Timestamp(d).date())) for d in t["window_end"]]
    return pd.DataFrame({"window_label": labels, "rate": t["rate"].to_numpy(),
                         "median": t["median"].to_numpy(), "p10": t["p10"].to_numpy(),
                         "p90": t["p90"].to_numpy()})


def trend_title(data: MirrorData, measure: str) -> tuple[str, str]:
    m = data.measures.set_index("measure").loc[measure]
    return m["title"], m["unit_label"]


def trend_panels(data: MirrorData) -> list[tuple[pd.DataFrame, str, str]]:
    """The trend of every measure of ``TREND_MEASURES`` as (rows, title, unit), the panels of
    ``plots.trend_grid``."""
    return [(trend_rows(data, m), *trend_title(data, m)) for m in TREND_MEASURES]


def population_table(data: MirrorData) -> pd.DataFrame:
    """List size, patient-years, share 65+ and 75+ against the care group."""
    s = data.strata
    old = s["age_band"].isin(["65-74", "75-84", "85+"])
    older = s["age_band"].isin(["75-84", "85+"])
    share = lambda mask, col: 100 * s.loc[mask, col].sum() / s[col].sum() if s[col].sum() else np.nan  # noqa: E731
    return pd.DataFrame([
        {"": "Ingeschreven patiënten (peildatum)", "Uw praktijk": nl_number(data.practice.get("list_size")), "Zorggroep": "–"},
        {"": "Patiëntjaren in de periode", "Uw praktijk": nl_number(s["patient_years"].sum()),
         "Zorggroep": nl_number(s["care_group_patient_years"].sum())},
        {"": "Aandeel 65 jaar en ouder", "Uw praktijk": nl_pct(share(old, "patient_years")),
         "Zorggroep": nl_pct(share(old, "care_group_patient_years"))},
        {"": "Aandeel 75 jaar en ouder", "Uw praktijk": nl_pct(share(older, "patient_years")),
         "Zorggroep": nl_pct(share(older, "care_group_patient_years"))},
    ])


def pyramid_frames(data: MirrorData) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    s = data.strata[data.strata["sex"].isin(["M", "V"])]
    own = s.assign(share=100 * s["share"])[["age_band", "sex", "share"]]
    ref = s.assign(share=100 * s["care_group_share"])[["age_band", "sex", "share"]]
    return own, ref, list(stats.AGE_BAND_LABELS)


def method_text(data: MirrorData) -> str:
    """How each figure is computed (the Methode section)."""
    extraction = _extraction(data)
    bands = ", ".join(stats.AGE_BAND_LABELS)
    return f"""
- **Periode**: de twaalf maanden {_period(data)} (een voortschrijdend jaar: ieder kwartaal is vergelijkbaar met het vorige). HIS-extractie van {extraction}.
- **Noemer**: patiëntjaren. Iedere patiënt telt de dagen dat hij in de periode bij de praktijk ingeschreven was en in leven was, gedeeld door 365,25. Verhuizen en overlijden tellen zo eerlijk mee; gebeurtenissen tellen alleen op dagen dat de patiënt ingeschreven was.
- **Verwacht (E)**: indirecte standaardisatie naar geslacht en leeftijd ({bands}): per groep het aantal patiëntjaren van uw praktijk maal het cijfer van de hele zorggroep in die groep, opgeteld. De leeftijd is het kalenderjaar van het einde van de periode min het geboortejaar. Aandelen (zoals het aandeel e-consulten) worden niet gestandaardiseerd; daar is E het zorggroepgemiddelde.
- **Betrouwbaarheidsinterval**: exact Poisson-interval (chi-kwadraat) voor O, gedeeld door E. Een verhouding wordt alleen getoond als E minstens {nl_number(stats.MIN_EXPECTED)} is.
- **Trechter**: O/E tegen E voor alle praktijken van de zorggroep, met grenzen op 95% en 99,8%, verbreed voor de spreiding tussen praktijken (overdispersie: gewinsoriseerde z-scores, additief random-effects-model zoals de SHMI en de CQC). Alleen een cijfer buiten de verbrede 99,8%-grenzen heet *niet door toeval te verklaren* en komt bij de aandachtspunten.
- **Zorggroep**: mediaan en P10-P90 van de praktijken waarvan het cijfer gepubliceerd mag worden (minstens {MIN_PRACTICES_FOR_PEERS} praktijken).
- **Landelijk**: alleen cijfers uit een gecontroleerde bron (Nivel, GIPdatabank), met bron en jaar; schattingen worden nooit als landelijk cijfer getoond. Landelijke cijfers zijn niet gestandaardiseerd en tellen per ingeschreven patiënt: lees ze als achtergrond.
- **Veelgebruikers**: de 10% patiënten met de meeste contacten binnen hun leeftijds- en geslachtsgroep van de zorggroep in de periode; persisterend: veelgebruiker in elk van de laatste drie jaren.
- **Kleine aantallen**: {RULE_TEXT}.
- **Definities**: elke maat staat in `parameters/mirror/<maat>.yaml`; `spiegel explain <maat>` toont de definitie en de berekening.
"""


def key_figures(data: MirrorData) -> dict:
    """Headline counts for the portal (stored suppressed)."""
    cur = data.current
    return {"patient_years": int(round(float(cur["patient_years"].max() or 0))),
            "beyond_chance": int(cur["beyond_chance"].fillna(False).astype(bool).sum())}


def funnel_args(data: MirrorData, section: str) -> dict:
    """Keyword arguments of ``plots.funnel`` for the section's funnel measure."""
    points, limits, title = funnel_data(data, FUNNEL_MEASURES[section])
    return dict(points=points, limits=limits, own=str(data.practice["practice_agb"]), title=title)


# ------------------------------------------------------------------ the prepare step
#: the shared table the hagro pack reads: one row per practice x measure, rolling year 0
HAGRO_TABLE = "spiegel_hagro"
HAGRO_KEYS = ("hagro", "practice_agb", "name", "measure")
HAGRO_DERIVED = ("E", "ratio", "lo", "hi", "rate", "position")


def prepare(con, quarter, tables: dict) -> dict[str, pd.DataFrame]:
    """The mirror's figures for every practice (``helpers.mirror.compute_mirror``), kept in the
    cube for the practice reports, and the current year per practice and measure for the
    hagro packs (written through the small-number rule: ``cube.shared``)."""
    from ..cube.memo import pass_memo
    from ..mirror import compute_mirror
    out = pass_memo(("mirror", str(quarter)), lambda: compute_mirror(con, quarter))   # shared with verkenning
    mirror = out["mirror"]
    practices = tables["practices"][["practice_agb", "name", "hagro"]].copy()
    practices = practices[practices["hagro"].notna() & (practices["hagro"].astype(str).str.strip() != "")]
    cur = mirror[mirror["window"] == 0].merge(practices, on="practice_agb", how="inner")
    shown = cur["E"] >= stats.MIN_EXPECTED
    for c in ("ratio", "lo", "hi"):
        cur[c] = cur[c].where(shown)
    hagro = cur[[*HAGRO_KEYS, "O", *HAGRO_DERIVED]].copy()
    hagro["position"] = hagro["position"].fillna("").astype(str)
    return {"mirror": mirror, "mirror_strata": out["mirror_strata"], HAGRO_TABLE: hagro.reset_index(drop=True)}


def largest_differences(data: MirrorData, section: str, n: int = 3) -> str:
    """One Dutch line naming the measures of a section that differ most from expected (largest
    |ln O/E| among those with E >= 10), e.g. the specialisms a practice refers to most unlike
    its peers; words only, the figures are in the table."""
    cur = data.current[(data.current["section"] == section) & (data.current["E"] >= stats.MIN_EXPECTED)
                       & data.current["ratio"].notna() & (data.current["ratio"] > 0)].copy()
    if cur.empty:
        return ""
    cur["size"] = np.abs(np.log(cur["ratio"]))
    top = cur.sort_values(["size", "measure"], ascending=[False, True]).head(n)
    parts = [f"{r.title} (O/E {nl_ratio(r.ratio)}, {'hoger' if r.ratio > 1 else 'lager'} dan verwacht"
             f"{', buiten toeval' if r.beyond_chance else ''})" for r in top.itertuples()]
    return "Het meest afwijkend van verwacht: " + "; ".join(parts) + "."
