"""The report registry: every notebook, its scope, and its typed parameters.

The batch validates parameters against this schema *before any kernel starts* (papermill
only warns about unknown parameters and hands YAML dates over as strings). A test keeps
each notebook's parameters cell in step with its ``ReportSpec``.

>>> REPORTS["his_analyse"].scope
'practice'
>>> validate_params("his_analyse", {"practice_agb": "01000001", "quarter": "2026Q5"})
Traceback (most recent call last):
...
helpers.errors.ParameterError: his_analyse: parameter quarter: quarter '2026Q5' is not a quarter: write it as YYYYQn with n from 1 to 4, e.g. 2025Q2
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..config import DEFAULT_WAREHOUSE, NOTEBOOKS_DIR
from ..errors import ParameterError
from ..identifiers import is_agb
from ..quarter import Quarter


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # "str", "quarter", "practice", "region", "path"
    required: bool = True
    default: object = None
    help: str = ""


@dataclass(frozen=True)
class ReportSpec:
    id: str
    title_nl: str
    notebook: Path
    scope: str  # "practice" (one run per practice) or "region" (one run per region)
    params: tuple[Param, ...]
    # extra files written beside the report (e.g. worklist CSVs): (cube, key, outdir) -> paths
    extras: Callable | None = None
    formats: tuple[str, ...] = ("html", "pdf")
    description: str = ""

    def param_names(self) -> list[str]:
        return [p.name for p in self.params]


def _his_analyse_extras(cube: Path, practice_agb: str, outdir: Path) -> list[Path]:
    from .worklists import write_worklists
    return write_worklists(cube, practice_agb, outdir)


COMMON = (
    Param("quarter", "quarter", help="reporting quarter, e.g. 2026Q3"),
    Param("warehouse", "path", required=False, default=str(DEFAULT_WAREHOUSE),
          help="the DuckDB warehouse file"),
    Param("cube_path", "path", required=False, default="",
          help="the prepared quarter cube (empty: prepared on demand from the warehouse)"),
)

REPORTS: dict[str, ReportSpec] = {
    "his_analyse": ReportSpec(
        id="his_analyse",
        title_nl="HIS-analyse ketenzorg",
        notebook=NOTEBOOKS_DIR / "his_analyse.ipynb",
        scope="practice",
        params=(Param("practice_agb", "practice", help="AGB code of the practice (8 digits)"), *COMMON),
        extras=_his_analyse_extras,
        description="Registration and chain-care quality per practice and quarter, with POH worklists.",
    ),
}


def get_report(report_id: str) -> ReportSpec:
    if report_id not in REPORTS:
        raise ParameterError(f"report {report_id!r} is unknown; choose from {', '.join(REPORTS)}")
    return REPORTS[report_id]


def validate_params(report_id: str, params: dict, known_practices: set[str] | None = None,
                    known_regions: set[str] | None = None) -> dict:
    """Check and normalise one run's parameters; raise ParameterError naming the first problem.

    Unknown keys are refused (papermill would only warn); quarters are parsed explicitly;
    a practice or region must exist when the known sets are given.
    """
    spec = get_report(report_id)
    out = {}
    unknown = set(params) - set(spec.param_names())
    if unknown:
        raise ParameterError(f"{report_id}: unknown parameter(s) {', '.join(sorted(unknown))}; "
                             f"it takes {', '.join(spec.param_names())}")
    for p in spec.params:
        value = params.get(p.name, p.default)
        if value is None or value == "" and p.required:
            if p.required:
                raise ParameterError(f"{report_id}: parameter {p.name} is required ({p.help})")
            out[p.name] = value
            continue
        try:
            if p.type == "quarter":
                value = str(Quarter.parse(value))
            elif p.type == "practice":
                value = str(value).strip()
                if not is_agb(value):
                    raise ParameterError(f"practice {value!r} is not an AGB code (8 digits 0-9)")
                if known_practices is not None and value not in known_practices:
                    raise ParameterError(f"practice {value} is not in the warehouse")
            elif p.type == "region":
                value = str(value)
                if known_regions is not None and value not in known_regions:
                    raise ParameterError(f"region {value!r} is unknown; known: {', '.join(sorted(known_regions))}")
            else:
                value = str(value)
        except ParameterError as exc:
            raise ParameterError(f"{report_id}: parameter {p.name}: {exc}") from None
        out[p.name] = value
    return out
