"""The prepared state of one quarter: the names of the temp tables the prepare pass built.

:func:`helpers.cube.findings.prepare_state` creates the tables and returns a
:class:`PreparedState`; every SQL builder of the cube (findings, indicators, data quality, the
summary) takes one and reads only the tables it names, so no builder depends on what happened
to be created earlier on the connection, and the previous quarter's state is simply another
``PreparedState`` (other table names) beside the current one.

>>> from helpers.quarter import Quarter
>>> s = PreparedState.named(Quarter.parse("2026Q3"))
>>> s.pat, s.meas
('pat', 'meas')
>>> PreparedState.named(Quarter.parse("2026Q2"), prefix="prev_").enr
'prev_enr'
"""

from __future__ import annotations

from dataclasses import dataclass

from ..quarter import Quarter


@dataclass(frozen=True)
class PreparedState:
    """One quarter's temp tables on a connection (names only; the connection holds the rows).

    - ``pat``: one row per patient with its state on the population day (age, in_population, ...)
    - ``dx``: (practice, patient, ICPC group) for every episode active on the population day
    - ``enr``: enrolments active on the population day; ``enr_ended``: the latest ended before it
    - ``meas``: every measurement of a configured concept up to the quarter's last day, with its issue
    - ``concepts``: NHG number -> concept and plausible range; ``controls_def``: controls per programme
    """

    quarter: Quarter
    pat: str
    dx: str
    enr: str
    enr_ended: str
    meas: str
    concepts: str
    controls_def: str

    @classmethod
    def named(cls, quarter: Quarter, prefix: str = "") -> "PreparedState":
        """The state of ``quarter`` under the standard table names, each with ``prefix``."""
        return cls(quarter, *(f"{prefix}{t}" for t in
                              ("pat", "dx", "enr", "enr_ended", "meas", "concepts", "controls_def")))
