"""The praktijkspiegel's method: measures as data files, one set-based pass, one tested stats module.

- :mod:`.measures`: ``parameters/mirror/<id>.yaml``, loaded and validated (all problems at once);
- :mod:`.events`: :func:`compute_mirror` (every practice × measure × window in one DuckDB query);
- :mod:`.stats`: indirect standardisation, exact Poisson intervals, funnel limits, peer band.

This package touches patient rows only inside the SQL of :mod:`.events`; what it returns is
aggregated per practice and stratum.
"""

from .events import compute_mirror
from .measures import Measure, MeasureError, load_measures

__all__ = ["compute_mirror", "load_measures", "Measure", "MeasureError"]
