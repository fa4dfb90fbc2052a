"""The frequent attenders one by one: the praktijkspiegel's own rule, per patient.

The rule (top ``FREQUENT_SHARE`` of contacts within each age band x sex of the whole care
group over a rolling year, ties at the boundary all counting; persistent: frequent in the
years ending 4 and 8 quarters earlier too) is written once, in the query of
:func:`helpers.mirror.events.strata_sql`. This module does not write it again: it takes that
query's own text (built without any measure, so only the patient-years and the
frequent-attender relations remain) and replaces its final aggregate ``SELECT`` by one that
returns the frequent attenders' rows (``pwf``, ``thr`` and ``fap`` of that query). The mirror's
count of frequent attenders per practice is therefore, by construction, the number of rows
here (``tests/spec/test_veelgebruikers.py`` checks it on made-up patients).

Proposed change to ``events.py`` (not made here; that file belongs to the mirror): move the
relations ``p`` .. ``fap`` of ``strata_sql`` into a function of this module
(``frequent_relations(first_day, contact_counts) -> str``) that ``strata_sql`` calls, so both
read one builder instead of this module cutting the query's text at its last ``SELECT``.

This module touches patient rows (inside its SQL and in the frame it returns); only the
practice's own report (``helpers.reports.veelgebruikers``) shows them.

>>> sql = patients_sql(date(2022, 10, 1), ks=(0, 4))
>>> "FROM pwf" in sql and "base.patient_years" not in sql.split("FROM pwf")[-1]
True
"""

from __future__ import annotations

from datetime import date

import pandas as pd

from ..quarter import Quarter
from .events import ALL_WINDOWS, FREQUENT_SHARE, PERSISTENCE_STEP, PERSISTENCE_YEARS, strata_sql, windows

__all__ = ["FREQUENT_SHARE", "ALL_WINDOWS", "patients_sql", "frequent_attenders", "window_of"]

#: where the mirror's query starts its final (aggregate) select
_FINAL_SELECT = "\nSELECT base.practice_agb"


def _relations(first_day: date) -> str:
    """``WITH p .. base``: the mirror's relations, built with no measure (no contact counts)."""
    from ..rules.programmes import load_programmes
    sql = strata_sql({}, load_programmes(), first_day)
    head, sep, _ = sql.rpartition(_FINAL_SELECT)
    if not sep or not head.lstrip().startswith("WITH"):
        raise RuntimeError("helpers.mirror.events.strata_sql changed its final SELECT: update "
                           "helpers.mirror.frequent._FINAL_SELECT")
    return head


def patients_sql(first_day: date, ks=(0,)) -> str:
    """The frequent attenders of the windows ``ks`` (``k`` of :func:`events.windows`): one row
    per practice x patient x window with the age band, sex, contacts, the band's threshold and
    ``persistent`` (also frequent 4 and 8 quarters earlier; NULL when those windows are not
    built). Reads the relation ``mirror_windows`` as the mirror does."""
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 0 or ks[-1] >= ALL_WINDOWS:
        raise ValueError(f"windows {ks}: each k must be in 0..{ALL_WINDOWS - 1}")
    steps = [PERSISTENCE_STEP * i for i in range(1, PERSISTENCE_YEARS)]
    persistent = " AND ".join(f"EXISTS (SELECT 1 FROM fap b WHERE b.pid = f.pid AND b.k = f.k + {s})" for s in steps)
    last = steps[-1] if steps else 0
    return _relations(first_day) + f"""
SELECT p.practice_agb, p.patient_id, f.k, f.age_band, f.sex, f.n AS contacts, t.thr AS threshold,
       CASE WHEN f.k + {last} < {ALL_WINDOWS} THEN {persistent or 'TRUE'} END AS persistent
FROM pwf f JOIN p ON p.pid = f.pid
JOIN thr t ON t.k = f.k AND t.age_band = f.age_band AND t.sex = f.sex
WHERE f.fa = 1 AND f.k IN ({', '.join(map(str, ks))})
ORDER BY f.k, p.practice_agb, p.patient_id"""


def frequent_attenders(con, quarter, ks=(0,)) -> pd.DataFrame:
    """Every practice's frequent attenders in the rolling years ``ks`` quarters before the one
    ending on ``quarter``'s last day (0: that year), with ``window_end``. Same windows, same
    rule and same data as :func:`helpers.mirror.compute_mirror`."""
    w = windows(quarter)
    # only the windows asked for and those their persistence looks at: a window's threshold
    # depends on that window's contacts alone, so leaving the others out changes no row
    steps = [PERSISTENCE_STEP * i for i in range(PERSISTENCE_YEARS)]
    w = w[w["k"].isin({int(k) + s for k in ks for s in steps})].reset_index(drop=True)
    cur = con.cursor()  # its own session, as compute_mirror
    try:
        cur.register("mirror_windows", w)
        cur.execute("SET enable_progress_bar = false")
        out = cur.execute(patients_sql(w["window_start"].min(), ks)).df()
    finally:
        cur.close()
    out.insert(3, "window_end", pd.to_datetime(out["k"].map(dict(zip(w["k"], w["window_end"])))))
    return out


def window_of(quarter, current) -> int | None:
    """The ``k`` of the rolling year ending on ``quarter``'s last day, seen from ``current``
    (None when it is later than ``current`` or further back than the windows built).

    >>> window_of("2025Q3", "2026Q3"), window_of("2026Q4", "2026Q3"), window_of("2020Q1", "2026Q3")
    (4, None, None)
    """
    a, b = Quarter.parse(quarter), Quarter.parse(current)
    k = (b.year * 4 + b.number) - (a.year * 4 + a.number)
    return k if 0 <= k < ALL_WINDOWS else None
