"""The report registry: every report kind, declared once, and everything the build needs of it.

A report kind is a notebook in ``notebooks/``, one module in ``helpers.reports``, its
parameter files, and one ``ReportSpec`` here (or registered with ``register``) declaring:

- ``id`` and Dutch ``title_nl``; ``scope``: ``practice`` (a run per practice), ``hagro``,
  ``region`` (a run per peer group or region) or ``zorggroep`` (one run for the care group);
- typed ``params``: a ``Param`` of type ``practice``, ``hagro`` or ``region`` takes the run's
  key, a ``quarter`` the quarter, and ``sweep="warehouse"`` / ``sweep="cube"`` the paths;
- ``prepare``: a ``PrepareStep`` run in the quarter's prepare pass (``helpers.cube.prepare``);
- ``figures``: its key figures for the portal (``KeyFigures``); ``extras``: files beside it;
- ``defaults``: how empty parameters are filled in JupyterLab (``notebook_defaults``).

The cube, the planner, the portal and the manifest loop over ``REPORTS``; none names a report.

Reports outside the package (tests, a site's own report) are registered with ``register(spec)``
in this process, or with ``register_plugin(path_or_module)``, which also names the module in
the environment variable ``SPIEGEL_REPORT_PLUGINS`` so that the batch's worker processes
(spawned later, local or Dask) load the same specs on their first look at the registry. A
plugin module declares its specs in a module-level ``SPECS`` sequence; nothing else is run.

The batch validates parameters against this schema *before any kernel starts* (papermill
only warns about unknown parameters and hands YAML dates over as strings). A test keeps
each notebook's parameters cell in step with its ``ReportSpec``.

>>> REPORTS["his_analyse"].scope
'practice'
>>> validate_params("his_analyse", {"practice_agb": "01000001", "quarter": "2026Q5"})
Traceback (most recent call last):
...
helpers.errors.ParameterError: his_analyse.quarter: found '2026Q5', expected a quarter YYYYQn (n from 1 to 4, year 1900 to 2100); e.g. 2025Q2
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..config import DEFAULT_WAREHOUSE, NOTEBOOKS_DIR
from ..errors import ParameterError, Problem
from ..identifiers import is_agb
from ..quarter import Quarter

#: the scopes a report can have; all but ``practice`` are shared (``SHARED_SCOPES``)
SCOPES = ("practice", "hagro", "region", "zorggroep")
#: scopes whose report is seen by more than one practice: they read only ``helpers.cube.shared``
SHARED_SCOPES = ("hagro", "region", "zorggroep")
#: the parameter type that takes the run's key, per scope (``zorggroep`` has one run, no key)
KEY_TYPES = {"practice": "practice", "hagro": "hagro", "region": "region"}
#: the environment variable naming plugin modules (``os.pathsep``-separated files or module names)
PLUGINS_ENV = "SPIEGEL_REPORT_PLUGINS"


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # "str", "quarter", "practice", "hagro", "region", "path"
    required: bool = True
    default: object = None
    help: str = ""
    #: filled in by the batch: "warehouse" (the batch's warehouse) or "cube" (the quarter cube)
    sweep: str | None = None


@dataclass(frozen=True)
class SharedTable:
    """An aggregated table a prepare step hands to shared-scope reports.

    ``keys``: the grouping columns (labels: region, hagro, programme, ...; one row per key);
    ``counts``: count columns, suppressed by ``helpers.suppression`` when written;
    ``rates``: ``{column: (numerator, denominator)}`` percentages from two of the counts,
    withheld where ``suppression.suppress_rate`` says so. No other column is accepted.

    ``margins``: the key groups within which rows add up to a total a reader has (published
    elsewhere, or one a reader can add up), e.g. ``(("hagro", "measure"),)``: the practices of
    one hagro for one measure. Within each, ``suppression.suppress_complementary`` withholds a
    second cell wherever a single withheld one could be worked out from the total."""
    name: str
    keys: tuple[str, ...]
    counts: tuple[str, ...]
    rates: tuple[tuple[str, str, str], ...] = ()   # (column, numerator, denominator)
    #: statistics that rest on counts (an expected value, a ratio, its interval, a funnel
    #: position, a mean): ``(column, count)`` or ``(column, (count, ...))``, withheld (empty)
    #: wherever one of those counts is suppressed
    derived: tuple[tuple[str, str], ...] = ()
    #: key groups whose rows add up to a published total: complementary suppression within each
    margins: tuple[tuple[str, ...], ...] = ()
    #: figures that count no patients (indicators meeting their target, a contract's maximum
    #: share, a tariff): stored as they are, as ``KeyFigures.plain``
    plain: tuple[str, ...] = ()
    #: ``(difference, minuend, subtrahend)`` of a row (not awarded = declared - awarded): where
    #: one of the three is withheld, one more is, so the other two cannot give it back
    identities: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True)
class PrepareStep:
    """What a report needs prepared in the quarter cube.

    ``function(con, quarter, prepared_tables) -> {table_name: DataFrame}`` runs inside the
    quarter's prepare pass, after the core tables (``prepared_tables``) are computed, with
    the warehouse connection (read only). It must return exactly the declared tables:
    ``tables`` (practice-level, kept in the cube, read with ``read_slice``, need a
    ``practice_agb`` column) and ``shared`` (written through suppression to ``<cube>/shared/``)."""
    function: Callable
    tables: tuple[str, ...] = ()
    shared: tuple[SharedTable, ...] = ()

    def table_names(self) -> list[str]:
        return [*self.tables, *(s.name for s in self.shared)]


@dataclass(frozen=True)
class KeyFigures:
    """Key figures for the portal: ``columns`` ((manifest key, Dutch column title), ...) in
    portal order, and ``compute(source, key) -> {name: number}`` run in a worker after the
    report; ``source`` is the cube folder for a practice report, a ``helpers.cube.SharedCube``
    for a shared scope. The portal stores them suppressed (``suppression.suppress_counts``)."""
    columns: tuple[tuple[str, str], ...]
    compute: Callable
    #: figures that count no patients (practices, measures): stored as they are, not suppressed
    plain: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReportSpec:
    id: str
    title_nl: str
    notebook: Path
    scope: str  # one of SCOPES
    params: tuple[Param, ...]
    # extra files written beside the report (e.g. worklist CSVs): (source, key, outdir) -> paths;
    # source as for KeyFigures.compute (a SharedCube for a shared scope)
    extras: Callable | None = None
    #: the output formats this kind supports (``batchfile.FORMATS``); a batch asking another one
    #: (``slides`` of a kind without a deck) skips that format for this kind
    formats: tuple[str, ...] = ("html", "pdf")
    description: str = ""
    prepare: PrepareStep | None = None
    figures: KeyFigures | None = None
    #: ``(report_id, given_params) -> params`` for JupyterLab with empty parameters;
    #: None: ``helpers.reports.defaults.standard_defaults``
    defaults: Callable | None = None

    def __post_init__(self):
        if self.scope not in SCOPES:
            raise ParameterError(f"report {self.id}: scope {self.scope!r} is unknown; choose from {', '.join(SCOPES)}")
        wanted = KEY_TYPES.get(self.scope)
        takers = [p.name for p in self.params if p.type in KEY_TYPES.values()]
        if (wanted and [p.type for p in self.params if p.name in takers] != [wanted]) or (not wanted and takers):
            need = f"exactly one parameter of type {wanted!r}" if wanted else "no practice, hagro or region parameter"
            raise ParameterError(f"report {self.id}: a {self.scope} report takes {need} (it has {', '.join(takers) or 'none'})")
        if self.extras is not None and self.scope in SHARED_SCOPES and not isinstance(self.extras, _SharedSource):
            object.__setattr__(self, "extras", _SharedSource(self.extras))

    def param_names(self) -> list[str]:
        return [p.name for p in self.params]

    @property
    def shared(self) -> bool:
        return self.scope in SHARED_SCOPES

    def key_param(self) -> Param | None:
        """The parameter that takes the run's key (None for the care group's one run)."""
        return next((p for p in self.params if p.type == KEY_TYPES.get(self.scope)), None)

    def figure_columns(self) -> tuple[tuple[str, str], ...]:
        return self.figures.columns if self.figures is not None else ()

    def compute_figures(self, cube: Path, key: str) -> dict:
        """The exact key figures of one run (``figures.compute`` on the source its scope may read)."""
        if self.figures is None:
            return {}
        return self.figures.compute(source_for(self.scope, cube), key)


class _SharedSource:
    """Wraps a shared-scope report's extras: it gets a ``SharedCube``, never the cube folder."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def __call__(self, cube, key, outdir):
        return self.fn(source_for("region", cube), key, outdir)


def source_for(scope: str, cube):
    """What a run of ``scope`` may read of the cube: the folder (practice: ``read_slice`` with
    its own AGB) or a ``SharedCube`` (shared scopes: suppressed aggregates only)."""
    if scope not in SHARED_SCOPES:
        return Path(cube)
    from ..cube.shared import SharedCube
    return cube if isinstance(cube, SharedCube) else SharedCube(cube)


COMMON = (
    Param("quarter", "quarter", help="reporting quarter, e.g. 2026Q3"),
    Param("warehouse", "path", required=False, default=str(DEFAULT_WAREHOUSE),
          help="the DuckDB warehouse file", sweep="warehouse"),
    Param("cube_path", "path", required=False, default="",
          help="the prepared quarter cube (empty: prepared on demand from the warehouse)", sweep="cube"),
)


def _his_analyse_extras(cube: Path, practice_agb: str, outdir: Path) -> list[Path]:
    from .worklists import write_worklists
    return write_worklists(cube, practice_agb, outdir)


def _his_analyse_figures(cube: Path, practice_agb: str) -> dict:
    from . import his_analyse
    return his_analyse.key_figures(his_analyse.load(cube, practice_agb))


def _praktijkspiegel_prepare(con, quarter, tables):
    from . import praktijkspiegel
    return praktijkspiegel.prepare(con, quarter, tables)


def _praktijkspiegel_figures(cube: Path, practice_agb: str) -> dict:
    from . import praktijkspiegel
    return praktijkspiegel.key_figures(praktijkspiegel.load(cube, practice_agb))


def _spiegelbijeenkomst_figures(shared, hagro: str) -> dict:
    from . import spiegelbijeenkomst
    return spiegelbijeenkomst.key_figures(spiegelbijeenkomst.load(shared, hagro))


#: the praktijkspiegel's prepare step: its tables, and the shared table of the hagro packs
MIRROR_PREPARE = PrepareStep(
    function=_praktijkspiegel_prepare,
    tables=("mirror", "mirror_strata"),
    shared=(SharedTable(name="spiegel_hagro", keys=("hagro", "practice_agb", "name", "measure"),
                        counts=("O",), derived=tuple((c, "O") for c in ("E", "ratio", "lo", "hi", "rate", "position")),
                        # a hagro's practices add up for each measure (and E nearly gives the total away)
                        margins=(("hagro", "measure"),)),),
)


def _regio_prepare(con, quarter, tables):
    from . import regio
    return regio.prepare(con, quarter, tables)


_MONEY_COUNTS = ("list_size", "enrolled", "declared", "awarded", "rejected", "over_cap", "missed")
_MONEY_DERIVED = (("paid_eur", "awarded"), ("reward_eur", "awarded"), ("outstanding_eur", "awarded"),
                  ("exposure_eur", "over_cap"), ("missed_eur", "missed"), ("max_patients", "list_size"))
#: the rows' own arithmetic (helpers.money): not awarded = declared - awarded, missed = enrolled -
#: awarded, over the cap = awarded - the cap
_MONEY_IDENTITIES = (("rejected", "declared", "awarded"), ("missed", "enrolled", "awarded"),
                     ("over_cap", "awarded", "max_patients"))

#: the regional report's prepare step: four shared tables, suppressed within each region because
#: the region's totals are published (``helpers.reports.regio``)
REGIO_PREPARE = PrepareStep(
    function=_regio_prepare,
    shared=(
        SharedTable("regio_practices", keys=("region", "practice_agb", "name"),
                    counts=("list_size", "enrolled_patients", "registration_findings", "registration_findings_prev",
                            "open_controls", "open_controls_prev"),
                    plain=("indicators_met", "indicators_scored"), margins=(("region",),)),
        SharedTable("regio_programmes", keys=("region", "practice_agb", "name", "programme"),
                    counts=("list_size", "enrolled", "enrolled_prev", "above_cap", "registration_findings",
                            "open_controls"),
                    rates=(("inclusion_pct", "enrolled", "list_size"),), plain=("max_inclusion_pct", "cap"),
                    margins=(("region", "programme"),), identities=(("above_cap", "enrolled", "cap"),)),
        SharedTable("regio_indicators", keys=("region", "practice_agb", "name", "indicator_id", "quarter"),
                    counts=("numerator", "denominator", "remainder"), rates=(("pct", "numerator", "denominator"),),
                    identities=(("remainder", "denominator", "numerator"),)),
        SharedTable("regio_totals", keys=("scope", "region", "programme"),
                    counts=("list_size", "enrolled", "enrolled_prev", "above_cap", "registration_findings",
                            "open_controls"),
                    rates=(("inclusion_pct", "enrolled", "list_size"),), plain=("practices",),
                    margins=(("scope", "programme"),)),
        # the money of the contract year's quarters: euro amounts rest on a patient count (an
        # amount divided by the tariff gives it back), so each is withheld with its count
        SharedTable("regio_money_practice", keys=("region", "practice_agb", "name", "programme", "quarter"),
                    counts=_MONEY_COUNTS, derived=_MONEY_DERIVED, plain=("rounds",),
                    margins=(("region", "programme", "quarter"),), identities=_MONEY_IDENTITIES),
        SharedTable("regio_money_insurer", keys=("scope", "region", "programme", "quarter", "insurer"),
                    counts=_MONEY_COUNTS, derived=_MONEY_DERIVED,
                    plain=("reward_pct", "annual_tariff_eur", "practices"),
                    margins=(("scope", "region", "programme", "quarter"), ("scope", "programme", "quarter", "insurer")),
                    identities=_MONEY_IDENTITIES),
        SharedTable("regio_money_totals", keys=("scope", "region", "programme", "quarter"),
                    counts=_MONEY_COUNTS, derived=_MONEY_DERIVED, margins=(("scope", "programme", "quarter"),),
                    identities=_MONEY_IDENTITIES),
        SharedTable("regio_money_rounds", keys=("scope", "region", "programme", "quarter", "insurer", "paid_on"),
                    counts=("declared", "awarded"), derived=(("amount_eur", "awarded"),),
                    plain=("invoices", "first_invoice", "last_invoice", "bank_description"),
                    margins=(("scope", "region", "programme", "quarter", "insurer"),
                             ("scope", "programme", "quarter", "insurer", "paid_on"))),
        SharedTable("regio_regioprestatie", keys=("region", "practice_agb", "name", "quarter"),
                    counts=("registered",), derived=(("regioprestatie_eur", "registered"),),
                    margins=(("region", "quarter"),)),
    ),
)


def _betaal_prepare(con, quarter, tables):
    from . import betaalspecificatie
    return betaalspecificatie.prepare(con, quarter, tables)


def _betaal_figures(cube: Path, practice_agb: str) -> dict:
    from . import betaalspecificatie
    return betaalspecificatie.key_figures(betaalspecificatie.load(cube, practice_agb))


def _betaal_extras(cube: Path, practice_agb: str, outdir: Path) -> list[Path]:
    from . import betaalspecificatie
    return betaalspecificatie.write_extras(cube, practice_agb, outdir)


def _veelgebruikers_prepare(con, quarter, tables):
    from . import veelgebruikers
    return veelgebruikers.prepare(con, quarter, tables)


def _veelgebruikers_figures(cube: Path, practice_agb: str) -> dict:
    from . import veelgebruikers
    return veelgebruikers.key_figures(veelgebruikers.load(cube, practice_agb))


def _veelgebruikers_extras(cube: Path, practice_agb: str, outdir: Path) -> list[Path]:
    from . import veelgebruikers
    return veelgebruikers.write_csvs(cube, practice_agb, outdir)


#: the frequent-attender monitor's prepare step: patient-level tables, the practice's own report only
_FOLLOWED = ("consult", "telefonisch", "visite", "e_consult")
VEELGEBRUIKERS_PREPARE = PrepareStep(
    function=_veelgebruikers_prepare,
    tables=("veelgebruikers_patienten", "veelgebruikers_kwartalen", "veelgebruikers_plan_monitor",
            "veelgebruikers_praktijk"),
    # and, aggregated, what the regional report sends the insurer (regioprestatie Veelgebruikers)
    shared=(
        SharedTable("regio_veelgebruikers", keys=("region", "practice_agb", "name", "quarter"),
                    counts=("frequent_attenders", *_FOLLOWED),
                    derived=tuple((f"mean_{c}", ("frequent_attenders", c)) for c in _FOLLOWED),
                    plain=("plan_complete",), margins=(("region", "quarter"),)),
        SharedTable("regio_veelgebruikers_plan", keys=("scope", "region", "seq"),
                    counts=("plan_patients", *_FOLLOWED),
                    derived=tuple((f"per_quarter_{c}", ("plan_patients", c)) for c in _FOLLOWED),
                    margins=(("scope", "seq"),)),
    ),
)


def _verkenning_prepare(con, quarter, tables):
    from . import verkenning
    return verkenning.prepare(con, quarter, tables)


def _verkenning_extras(shared, key: str, outdir: Path) -> list[Path]:
    from . import verkenning
    return verkenning.extras(shared, key, outdir)


#: the exploration notebook's prepare step: the praktijkspiegel of every practice and measure for
#: two rolling years that share no quarter (``verkenning.PUBLISHED_WINDOWS``: two years a quarter
#: apart would differ by one quarter's count minus the same quarter a year earlier), shared;
#: suppressed within the same margin as ``spiegel_hagro`` (the current year then withholds exactly
#: its cells; ``tests/unit/test_verkenning.py``); ``tau2`` is the width of each measure's funnel
#: (every praktijkspiegel draws it), no count. ``verkenning_decielen``: the care group's deciles of
#: every measure and all eight rolling years (the trend), no practice key, computed with the
#: praktijkspiegel's peer rule; ``practices`` counts practices, no patients
VERKENNING_PREPARE = PrepareStep(
    function=_verkenning_prepare,
    shared=(SharedTable(name="verkenning_spiegel",
                        keys=("hagro", "region", "practice_agb", "name", "measure", "quarter"), counts=("O",),
                        derived=tuple((c, "O") for c in ("E", "ratio", "lo", "hi", "rate", "position")),
                        plain=("tau2",), margins=(("hagro", "measure", "quarter"),)),
            SharedTable(name="verkenning_decielen", keys=("measure", "quarter"), counts=(),
                        plain=(*(f"P{10 * i}" for i in range(1, 10)), "practices"))),
)


def _regio_figures(shared, region: str) -> dict:
    from . import regio
    return regio.key_figures(regio.load(shared, region))


_BUILTIN = (
    ReportSpec(
        id="his_analyse",
        title_nl="HIS-analyse ketenzorg",
        notebook=NOTEBOOKS_DIR / "his_analyse.ipynb",
        scope="practice",
        params=(Param("practice_agb", "practice", help="AGB code of the practice (8 digits)"), *COMMON),
        extras=_his_analyse_extras,
        formats=("html", "pdf", "slides"),
        figures=KeyFigures(columns=(("list_size", "Ingeschreven"), ("enrolled_patients", "Patiënten in ketenzorg"),
                                    ("enrolments", "Deelnames ketenzorg"),
                                    ("registration_findings", "Registratiebevindingen"),
                                    ("patients_to_call", "Op te roepen")),
                           compute=_his_analyse_figures),
        description="Registration and chain-care quality per practice and quarter, with POH worklists.",
    ),
    ReportSpec(
        id="praktijkspiegel",
        title_nl="Praktijkspiegel",
        notebook=NOTEBOOKS_DIR / "praktijkspiegel.ipynb",
        scope="practice",
        params=(Param("practice_agb", "practice", help="AGB code of the practice (8 digits)"), *COMMON),
        prepare=MIRROR_PREPARE,
        formats=("html", "pdf", "slides"),
        figures=KeyFigures(columns=(("patient_years", "Patiëntjaren"),
                                    ("beyond_chance", "Maten buiten toeval")),
                           compute=_praktijkspiegel_figures, plain=("beyond_chance",)),
        description="The practice's care use against its peers, age/sex standardised, rolling year.",
    ),
    ReportSpec(
        id="spiegelbijeenkomst",
        title_nl="Spiegelbijeenkomst hagro",
        notebook=NOTEBOOKS_DIR / "spiegelbijeenkomst.ipynb",
        scope="hagro",
        params=(Param("hagro", "hagro", help="the peer group (hagro), as in practices.csv"), *COMMON),
        figures=KeyFigures(columns=(("practices", "Praktijken"), ("discussion_points", "Gespreksonderwerpen")),
                           compute=_spiegelbijeenkomst_figures, plain=("practices", "discussion_points")),
        description="The peer-meeting pack of one hagro: the mirror side by side, discussion points, report and attendance list.",
    ),
    ReportSpec(
        id="betaalspecificatie",
        title_nl="Betaalspecificatie ketenzorg",
        notebook=NOTEBOOKS_DIR / "betaalspecificatie.ipynb",
        scope="practice",
        params=(Param("practice_agb", "practice", help="AGB code of the practice (8 digits)"), *COMMON),
        prepare=PrepareStep(function=_betaal_prepare,
                            tables=("betaal_payments", "betaal_cells", "betaal_not_declarable")),
        extras=_betaal_extras,
        figures=KeyFigures(columns=(("awarded", "Toegekend"), ("not_awarded", "Niet toegekend")),
                           compute=_betaal_figures),
        description="The payment specification per practice and quarter: every chain-care payment, decoded.",
    ),
    ReportSpec(
        id="veelgebruikers",
        title_nl="Veelgebruikers",
        notebook=NOTEBOOKS_DIR / "veelgebruikers.ipynb",
        scope="practice",
        params=(Param("practice_agb", "practice", help="AGB code of the practice (8 digits)"), *COMMON),
        extras=_veelgebruikers_extras,
        prepare=VEELGEBRUIKERS_PREPARE,
        figures=KeyFigures(columns=(("frequent_attenders", "Veelgebruikers"), ("plan_patients", "In plan")),
                           compute=_veelgebruikers_figures),
        description="The practice's frequent attenders (regioprestatie Veelgebruikers): profiles, plan candidates, "
                    "the plan's 0-meting and quarterly monitor; patient level, the practice's own folder only.",
    ),
    ReportSpec(
        id="regio",
        title_nl="Regiorapportage",
        notebook=NOTEBOOKS_DIR / "regio.ipynb",
        scope="region",
        params=(Param("region", "region", help="the region, as in practices.csv"), *COMMON),
        prepare=REGIO_PREPARE,
        figures=KeyFigures(columns=(("practices", "Praktijken"), ("enrolled_patients", "Patiënten in ketenzorg")),
                           compute=_regio_figures, plain=("practices",)),
        description="All practices of a region side by side: chain care, inclusion against the caps, indicators.",
    ),
    ReportSpec(
        id="regio_zorggroep",
        title_nl="Regiorapportage zorggroep",
        notebook=NOTEBOOKS_DIR / "regio.ipynb",
        scope="zorggroep",
        params=(Param("region", "str", required=False, default="zorggroep",
                      help="'zorggroep': the whole care group (the regional report's notebook)"), *COMMON),
        figures=KeyFigures(columns=(("practices", "Praktijken"), ("enrolled_patients", "Patiënten in ketenzorg")),
                           compute=_regio_figures, plain=("practices",)),
        description="The regional report for the whole care group.",
    ),
    ReportSpec(
        id="verkenning",
        title_nl="Verkenning zorggroep",
        notebook=NOTEBOOKS_DIR / "verkenning.ipynb",
        scope="zorggroep",
        params=COMMON,
        prepare=VERKENNING_PREPARE,
        extras=_verkenning_extras,
        description="The researchers' exploration notebook: funnel, trend against the deciles and the table of an "
                    "indicator or mirror measure for a selection; in the batch a static report of the care group.",
    ),
)


class _Registry(dict):
    """``REPORTS``: a dict of id -> ReportSpec that loads the plugins named in
    ``SPIEGEL_REPORT_PLUGINS`` on any look (so a spawned worker sees what its parent registered)."""

    def _load(self):
        for source in _plugin_sources():
            if source not in _LOADED:
                _LOADED.add(source)
                for spec in _plugin_specs(source):
                    dict.__setitem__(self, spec.id, spec)

    def __getitem__(self, k):
        self._load()
        return dict.__getitem__(self, k)

    def __contains__(self, k):
        self._load()
        return dict.__contains__(self, k)

    def __iter__(self):
        self._load()
        return dict.__iter__(self)

    def __len__(self):
        self._load()
        return dict.__len__(self)

    def get(self, k, default=None):
        self._load()
        return dict.get(self, k, default)

    def keys(self):
        self._load()
        return dict.keys(self)

    def values(self):
        self._load()
        return dict.values(self)

    def items(self):
        self._load()
        return dict.items(self)


_LOADED: set[str] = set()
REPORTS: dict[str, ReportSpec] = _Registry({s.id: s for s in _BUILTIN})


def _plugin_sources() -> list[str]:
    return [s for s in os.environ.get(PLUGINS_ENV, "").split(os.pathsep) if s]


def _plugin_module(source: str):
    """A plugin module by file path (reused when already imported from that file) or module name."""
    if not source.endswith(".py"):
        return importlib.import_module(source)
    path = str(Path(source).resolve())
    for mod in list(sys.modules.values()):
        f = getattr(mod, "__file__", None)
        if f and os.path.abspath(f) == path:
            return mod
    name = f"spiegel_plugin_{Path(path).stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ParameterError(f"report plugin {source}: not a Python file; fix {PLUGINS_ENV}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _plugin_specs(source: str) -> list[ReportSpec]:
    try:
        mod = _plugin_module(source)
    except (ImportError, OSError) as exc:
        raise ParameterError(f"report plugin {source} (in {PLUGINS_ENV}) cannot be loaded: {exc}") from None
    specs = list(getattr(mod, "SPECS", ()))
    if not specs or not all(isinstance(s, ReportSpec) for s in specs):
        raise ParameterError(f"report plugin {source}: declare its reports as SPECS = (ReportSpec(...), ...)")
    return specs


def register(spec: ReportSpec) -> ReportSpec:
    """Add (or replace) a report kind in this process's registry.

    >>> spec = ReportSpec(id="demo_x", title_nl="X", notebook=Path("x.ipynb"), scope="zorggroep", params=COMMON)
    >>> register(spec).id in REPORTS, unregister("demo_x")
    (True, None)
    """
    if not isinstance(spec, ReportSpec):
        raise TypeError("register() takes a ReportSpec")
    dict.__setitem__(REPORTS, spec.id, spec)
    return spec


def unregister(report_id: str) -> None:
    """Remove a registered report kind (a built-in one too: tests only)."""
    dict.pop(REPORTS, report_id, None)


def register_plugin(source: str | Path) -> list[ReportSpec]:
    """Register the ``SPECS`` of a plugin module (a ``.py`` file or a module name), here and in
    every worker process started from now on (``SPIEGEL_REPORT_PLUGINS``)."""
    source = str(Path(source).resolve()) if str(source).endswith(".py") else str(source)
    specs = _plugin_specs(source)
    for spec in specs:
        register(spec)
    _LOADED.add(source)
    if source not in _plugin_sources():
        os.environ[PLUGINS_ENV] = os.pathsep.join([*_plugin_sources(), source])
    return specs


def unregister_plugin(source: str | Path) -> None:
    """Undo ``register_plugin``: its reports leave the registry and the environment."""
    source = str(Path(source).resolve()) if str(source).endswith(".py") else str(source)
    for spec in _plugin_specs(source):
        unregister(spec.id)
    _LOADED.discard(source)
    rest = [s for s in _plugin_sources() if s != source]
    if rest:
        os.environ[PLUGINS_ENV] = os.pathsep.join(rest)
    else:
        os.environ.pop(PLUGINS_ENV, None)


def prepare_steps() -> list[tuple[str, PrepareStep]]:
    """(report id, step) of every registered report that declares one, in id order."""
    return [(rid, REPORTS[rid].prepare) for rid in sorted(REPORTS) if REPORTS[rid].prepare is not None]


def get_report(report_id: str) -> ReportSpec:
    if report_id not in REPORTS:
        raise ParameterError(f"report {report_id!r} is unknown; choose from {', '.join(REPORTS)}")
    return REPORTS[report_id]


#: what a quarter parameter must look like (as ``helpers.batch.batchfile`` says it for ``quarters``)
_QUARTER = "a quarter YYYYQn (n from 1 to 4, year 1900 to 2100)"


def _param_problems(report_id: str, params: dict, known_practices: set[str] | None = None,
                    known_regions: set[str] | None = None, known_hagros: set[str] | None = None
                    ) -> tuple[dict, list[Problem]]:
    """One run's parameters checked and normalised, and every problem found (one
    :class:`~helpers.errors.Problem` each, keyed ``<report>.<parameter>``).

    >>> out, problems = _param_problems("his_analyse", {"practice_agb": "123", "quarter": "2026q3"})
    >>> out["quarter"], [p.describe() for p in problems]
    ('2026Q3', ["his_analyse.practice_agb: found '123', expected an AGB code (8 digits 0-9)"])
    """
    if report_id not in REPORTS:
        return {}, [Problem(None, None, None, report_id, f"a report id: {', '.join(REPORTS)}", key="report")]
    spec = REPORTS[report_id]
    problems: list[Problem] = []
    names = spec.param_names()
    for name in sorted(set(params) - set(names), key=str):
        problems.append(Problem(None, None, None, name, f"a parameter of {report_id}: {', '.join(names)}",
                                key=report_id))
    out = {}
    for p in spec.params:
        value = params.get(p.name, p.default)
        where = f"{report_id}.{p.name}"

        def problem(expected: str, fix: str | None = None, found=value) -> None:
            problems.append(Problem(None, None, None, found, expected, fix=fix, key=where))

        if value is None or value == "" and p.required:
            if p.required:
                problem(f"a value: {p.name} is required" + (f" ({p.help})" if p.help else ""), found=None)
            else:
                out[p.name] = value
            continue
        if p.type == "quarter":
            try:
                value = str(Quarter.parse(value))
            except ParameterError:
                problem(_QUARTER, "e.g. 2025Q2")
                continue
        elif p.type == "practice":
            value = str(value).strip()
            if not is_agb(value):
                problem("an AGB code (8 digits 0-9)")
                continue
            if known_practices is not None and value not in known_practices:
                problem("a practice in the warehouse", "ingest its delivery first (`spiegel ingest <dataset>`)")
                continue
        elif p.type in ("region", "hagro"):
            value = str(value)
            known = known_regions if p.type == "region" else known_hagros
            if known is not None and value not in known:
                problem(f"a {p.type} of the warehouse's practices: {', '.join(sorted(known)) or 'none'}")
                continue
        else:
            value = str(value)
        out[p.name] = value
    return out, problems


def validate_params(report_id: str, params: dict, known_practices: set[str] | None = None,
                    known_regions: set[str] | None = None, known_hagros: set[str] | None = None) -> dict:
    """Check and normalise one run's parameters; raise ParameterError listing every problem
    (:func:`_param_problems`, one line each).

    Unknown keys are refused (papermill would only warn); quarters are parsed explicitly;
    a practice, region or hagro must exist when the known sets are given.

    >>> validate_params("his_analyse", {"practice_agb": "01000001", "quarter": "2026Q3", "colour": "red"})
    Traceback (most recent call last):
    ...
    helpers.errors.ParameterError: his_analyse: found 'colour', expected a parameter of his_analyse: practice_agb, quarter, warehouse, cube_path
    """
    out, problems = _param_problems(report_id, params, known_practices, known_regions, known_hagros)
    if problems:
        raise ParameterError.from_problems(problems)
    return out
