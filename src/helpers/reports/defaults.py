"""Parameters for a report opened in JupyterLab with its parameters cell left empty.

The notebook's second cell calls ``notebook_defaults(report_id, given)``: what is given is
kept (and checked against the registry), what is empty is filled in: the default warehouse,
the latest complete quarter of its extractions, the quarter cube (prepared when needed) and
the first practice, hagro or region of the cube, by the report's scope. The batch always
passes every parameter, so there nothing is filled in but the paths it already set.

>>> notebook_defaults("his_analyse", {"practice_agb": "", "quarter": ""})   # doctest: +SKIP
{'practice_agb': '01000001', 'quarter': '2026Q3', 'warehouse': 'data/warehouse.duckdb', 'cube_path': 'data/cube/2026Q3'}
"""

from __future__ import annotations

from pathlib import Path

from .registry import KEY_TYPES, get_report


def notebook_defaults(report_id: str, given: dict) -> dict:
    """The report's parameters with the empty ones filled in (the spec's ``defaults`` when it
    declares its own, else ``standard_defaults``); unknown names in ``given`` are ignored."""
    spec = get_report(report_id)
    given = {k: v for k, v in dict(given).items() if k in spec.param_names()}
    fill = spec.defaults or standard_defaults
    return fill(report_id, given)


def standard_defaults(report_id: str, given: dict) -> dict:
    """Warehouse, latest complete quarter, cube, then the scope's first key (in cube order)."""
    import pandas as pd

    from ..config import Settings
    from ..cube import prepare_quarter, read_slice
    from ..quarter import Quarter
    spec = get_report(report_id)
    out = {p.name: given.get(p.name, "") for p in spec.params}
    for p in spec.params:
        if p.type == "practice" and isinstance(out[p.name], int):   # `papermill -p practice_agb 01000001`
            out[p.name] = f"{out[p.name]:08d}"
    by_sweep = {p.sweep: p.name for p in spec.params if p.sweep}
    quarter_name = next((p.name for p in spec.params if p.type == "quarter"), None)
    wh_name, cube_name = by_sweep.get("warehouse"), by_sweep.get("cube")
    cube = out.get(cube_name) if cube_name else ""
    if not cube:
        wh = Path(out[wh_name]) if wh_name and out[wh_name] else Settings.from_env().warehouse
        if wh_name:
            out[wh_name] = str(wh)
        quarter = out.get(quarter_name) if quarter_name else ""
        if not quarter:
            from ..warehouse import Warehouse
            latest = pd.to_datetime(Warehouse(wh).practices()["extraction_date"]).max().date()
            quarter = str(Quarter.latest_complete(latest))
        cube = str(prepare_quarter(wh, Quarter.parse(quarter)))
        if cube_name:
            out[cube_name] = cube
    if quarter_name and not out[quarter_name]:
        from ..cube import read_meta
        out[quarter_name] = read_meta(Path(cube))["quarter"]
    key = spec.key_param()
    if key is not None and not out[key.name]:
        practices = read_slice(Path(cube), "practices")
        column = "practice_agb" if key.type == "practice" else key.type
        values = _first_values(practices, column)
        if not values:
            from ..errors import ParameterError
            raise ParameterError(f"{report_id}: the quarter cube {cube} has no {KEY_TYPES.get(spec.scope)}: "
                                 f"set {key.name} in the parameters cell")
        out[key.name] = values[0]
    return {k: (str(v) if v is not None else v) for k, v in out.items()}


def _first_values(practices, column: str) -> list[str]:
    if column not in practices.columns:
        return []
    values = [str(v) for v in practices[column] if v is not None and str(v) not in ("", "nan", "None", "<NA>")]
    return values if column == "practice_agb" else sorted(set(values))
