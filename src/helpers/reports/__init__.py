"""REPORTS: the registry of report kinds (``registry``: id, Dutch title, scope, typed
parameters, extras) and one module per report with its sections (``his_analyse``, with its
POH worklists in ``worklists``). The batch validates every run's parameters against the
registry before any kernel starts; the notebooks call the report modules.
"""

from .registry import COMMON, REPORTS, Param, ReportSpec, get_report, validate_params

__all__ = ["COMMON", "REPORTS", "Param", "ReportSpec", "get_report", "validate_params"]
