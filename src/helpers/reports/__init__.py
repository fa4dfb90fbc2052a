"""REPORTS: the registry of report kinds (``registry``: id, Dutch title, scope, typed
parameters, prepare step, key figures, extras, defaults) and one module per report with its
sections (``his_analyse``, with its POH worklists in ``worklists``). The batch validates every
run's parameters against the registry before any kernel starts; the notebooks call the report
modules, and ``notebook_defaults`` fills empty parameters in JupyterLab.

A new report kind: a notebook in ``notebooks/``, a module here, its parameter files, and one
``ReportSpec`` in ``registry._BUILTIN``; outside the package (tests) ``register(spec)`` or
``register_plugin(path)``.
"""

from .defaults import notebook_defaults
from .registry import (COMMON, KEY_TYPES, REPORTS, SCOPES, SHARED_SCOPES, KeyFigures, Param, PrepareStep,
                       ReportSpec, SharedTable, get_report, prepare_steps, register, register_plugin, unregister,
                       unregister_plugin, validate_params)

__all__ = ["COMMON", "KEY_TYPES", "REPORTS", "SCOPES", "SHARED_SCOPES", "KeyFigures", "Param", "PrepareStep",
           "ReportSpec", "SharedTable", "get_report", "notebook_defaults", "prepare_steps", "register",
           "register_plugin", "unregister", "unregister_plugin", "validate_params"]
