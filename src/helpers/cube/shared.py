"""The shared part of the quarter cube: aggregated tables that passed the small-number rule.

A report of a shared scope (hagro, region, care group) is seen by more than one practice, so
it reads the cube only through ``SharedCube`` / ``read_shared``: tables in ``<cube>/shared/``
that a prepare step declared (``helpers.reports.SharedTable``) and that ``write_shared``
wrote after applying ``helpers.suppression`` to their count columns. There is no way through
this API to the patient-level tables (findings, data-quality listings), a practice's slice,
or an unsuppressed count: a name that is not a declared shared table, a path, or a file
whose stamp or counts do not show the rule is refused.

Stored per count column ``c``: ``c`` as a nullable whole number, empty (``<NA>``) where the
count is 1..MIN_CELL-1, and ``c_shown``, the display text (``<10``, ``1.234``); per rate a
percentage, empty where ``suppression.suppress_rate`` withholds it. A table that declares
``margins`` (key groups whose rows add up to a total a reader has) also has complementary
suppression (``suppression.suppress_complementary``): where a group would hold a single
withheld count, a second one is withheld (empty, shown as ``x``), and every rate and derived
column resting on a withheld count is withheld with it.

>>> shared = SharedCube("data/cube/2026Q3")                 # doctest: +SKIP
>>> shared.tables()                                         # doctest: +SKIP
['tiny_regio_practices']
>>> read_shared("data/cube/2026Q3", "findings")             # doctest: +SKIP
Traceback (most recent call last):
helpers.cube.shared.SharedReadError: shared cube table 'findings' ... is not a shared table ...
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .. import suppression
from ..errors import SpiegelError

SHARED_DIR = "shared"
INDEX = "index.json"
#: stamped into every shared parquet file's metadata: which rule was applied
STAMP_KEY = b"spiegel.suppression"
#: columns that identify a patient: never in a shared table
PATIENT_COLUMNS = ("patient_id", "patient", "birth_year", "date_of_birth")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class SharedReadError(SpiegelError):
    """A shared-scope report asked for something that is not a suppressed shared table."""


def _stamp() -> str:
    return json.dumps({"min_cell": suppression.MIN_CELL,
                       "min_denominator_for_rate": suppression.MIN_DENOMINATOR_FOR_RATE})


def suppress_table(df: pd.DataFrame, table, withhold_rows: pd.Series | None = None) -> pd.DataFrame:
    """Apply the small-number rule to one declared shared table (``SharedTable``): the
    columns must be exactly its keys, counts and nothing else; one row per key; no patient
    column. Rates are computed from the exact counts first, then the counts are suppressed;
    within each of the table's ``margins`` complementary suppression withholds more counts where
    a withheld one could be worked out from the group's total (``suppression.MIN_WITHHELD_IN_GROUP``),
    and each of its ``identities`` one more member where a row's arithmetic would give one back.
    ``withhold_rows`` (a boolean per row, from ``CoreSharedTable.linked``): rows whose every
    count is withheld before the rules run, because another shared table withholds what their
    sums would give back.

    >>> from helpers.reports import SharedTable
    >>> t = SharedTable("per_practice", keys=("hagro", "practice"), counts=("O",), margins=(("hagro",),))
    >>> df = pd.DataFrame({"hagro": ["A"] * 4, "practice": ["p", "q", "r", "s"], "O": [3, 40, 25, 90]})
    >>> suppress_table(df, t)[["practice", "O", "O_shown"]].values.tolist()
    [['p', <NA>, '<10'], ['q', <NA>, 'x'], ['r', <NA>, 'x'], ['s', 90, '90']]
    """
    where = f"shared table {table.name}"
    if not _NAME.match(table.name):
        raise SpiegelError(f"{where}: name must be lower-case letters, digits and _ (found {table.name!r})")
    cols = list(df.columns)
    bad = [c for c in cols if c in PATIENT_COLUMNS] + [c for c in [*table.keys, *table.counts] if c in PATIENT_COLUMNS]
    if bad:
        raise SpiegelError(f"{where}: column {bad[0]!r} identifies patients; aggregate it away before sharing")
    derived = tuple(getattr(table, "derived", ()))
    plain = tuple(getattr(table, "plain", ()))
    for column in plain:
        if column in PATIENT_COLUMNS or column in table.counts or column in table.keys:
            raise SpiegelError(f"{where}: plain column {column!r} must count no patients (nor be a key or a count)")
    declared = [*table.keys, *table.counts, *(d[0] for d in derived), *plain]
    extra = [c for c in cols if c not in declared]
    missing = [c for c in declared if c not in cols]
    if extra or missing:
        what = f"undeclared column {extra[0]!r}" if extra else f"declared column {missing[0]!r} is missing"
        raise SpiegelError(f"{where}: {what}; declare every column as a key or a count")
    if table.keys and df.duplicated(list(table.keys)).any():
        raise SpiegelError(f"{where}: more than one row per {', '.join(table.keys)}: a shared table is aggregated")
    margins = tuple(getattr(table, "margins", ()))
    for margin in margins:
        if isinstance(margin, str) or not all(isinstance(c, str) and c in table.keys for c in margin):
            raise SpiegelError(f"{where}: margin {margin!r} must be a tuple of key columns "
                               f"({', '.join(table.keys)}), e.g. margins=(({table.keys[0]!r},),)")
    out = df[list(table.keys)].copy()
    for key in table.keys:
        out[key] = out[key].astype("string")
    exact = {}
    for c in table.counts:
        values = pd.to_numeric(df[c], errors="raise")
        if (values.dropna() < 0).any() or (values.dropna() % 1 != 0).any():
            raise SpiegelError(f"{where}: count column {c!r} holds a value that is no count (negative or a fraction)")
        exact[c] = values.astype("Int64")
    # per count: complementary (secondary) withholding within the margins, and all it withholds
    secondary, withheld = {}, {}
    keys_frame = df[list(table.keys)]
    for c, values in exact.items():
        secondary[c] = (suppression.suppress_complementary(keys_frame.assign(**{c: values}), c, margins)
                        if margins else pd.Series(False, index=df.index)).astype(bool)
        withheld[c] = values.map(suppression.is_small).astype(bool) | secondary[c]
    if withhold_rows is not None and bool(withhold_rows.any()):
        rows = pd.Series(withhold_rows.to_numpy(dtype=bool), index=df.index)
        for c, values in exact.items():
            secondary[c] = secondary[c] | (rows & ~withheld[c])
            withheld[c] = withheld[c] | rows
            if margins:   # a withheld row may leave its group with too few withheld cells
                more = suppression.suppress_complementary(keys_frame.assign(**{c: values}), c, margins,
                                                          withheld=withheld[c]).astype(bool)
                secondary[c] = secondary[c] | (more & ~withheld[c])
                withheld[c] = withheld[c] | more
    _withhold_identities(table, where, exact, secondary, withheld, keys_frame, margins)
    _withhold_together(table, where, exact, secondary, withheld, keys_frame, margins)
    for name, num, den in table.rates:
        if num not in exact or den not in exact:
            raise SpiegelError(f"{where}: rate {name!r} must be made of two declared counts ({num}, {den})")
        out[name] = [suppression.suppress_rate(n, d) if pd.notna(n) and pd.notna(d) else None
                     for n, d in zip(exact[num], exact[den])]
        out[name] = out[name].astype("float64").mask((secondary[num] | secondary[den]).to_numpy())
    for column, count in derived:
        bases = tuple(count) if isinstance(count, (tuple, list)) else (count,)
        if not bases or any(b not in exact for b in bases):
            raise SpiegelError(f"{where}: derived column {column!r} must rest on declared counts (found {count!r})")
        hidden = pd.concat([withheld[b] for b in bases], axis=1).any(axis=1)
        out[column] = df[column].where(~hidden.to_numpy(), None)
    for column in plain:
        out[column] = df[column].to_numpy()
    for c, values in exact.items():
        out[c] = values.mask(withheld[c])
        shown = suppression.suppress_counts(values.astype("float64")).astype("string")
        out[f"{c}_shown"] = shown.mask(secondary[c], suppression.WITHHELD_TEXT)
    return out


def _complement_margins(exact: dict, secondary: dict, withheld: dict, keys_frame, margins) -> bool:
    """Complementary suppression again within the margins, given what is withheld now (after
    another rule withheld more); True when it withheld anything new."""
    changed = False
    for c, values in exact.items():
        more = suppression.suppress_complementary(keys_frame.assign(**{c: values}), c, margins,
                                                  withheld=withheld[c]).astype(bool)
        if (more & ~withheld[c]).any():
            secondary[c] = secondary[c] | more
            withheld[c] = withheld[c] | more
            changed = True
    return changed


def _withhold_identities(table, where: str, exact: dict, secondary: dict, withheld: dict, keys_frame, margins) -> None:
    """Withhold more counts where a row's identity would give a withheld one away.

    ``SharedTable.identities`` are ``(difference, minuend, subtrahend)``: difference =
    minuend - subtrahend (e.g. patients not awarded = declared - awarded). Where exactly one of
    the three is withheld in a row, the other two would give it back: one more is withheld, the
    minuend first (then the difference, then the subtrahend; a plain member is never withheld).
    A subtrahend may be a derived column (the cap rests on the list size: its count is withheld).
    Each newly withheld cell can leave a margin group with too few withheld cells: complementary
    suppression runs again, and both rules repeat until nothing changes."""
    identities = tuple(getattr(table, "identities", ()))
    if not identities:
        return
    derived_base = {c: b for c, b in getattr(table, "derived", ()) if isinstance(b, str)}
    plain = set(getattr(table, "plain", ()))

    def base(member):   # the count that hides a member, None for a plain member
        if member in exact:
            return member
        if member in derived_base:
            return derived_base[member]
        if member in plain:
            return None
        raise SpiegelError(f"{where}: identity member {member!r} is not a declared count, derived or plain column")

    for _ in range(50):
        changed = False
        for difference, minuend, subtrahend in identities:
            members = [base(m) for m in (minuend, difference, subtrahend)]
            hidden = [withheld[b] if b else pd.Series(False, index=keys_frame.index) for b in members]
            lone = sum(h.astype(int) for h in hidden) == 1
            for b, h in zip(members, hidden):
                if b is None:
                    continue
                pick = lone & ~h
                if pick.any():
                    secondary[b] = secondary[b] | pick
                    withheld[b] = withheld[b] | pick
                    lone = lone & ~pick
                    changed = True
        if margins and _complement_margins(exact, secondary, withheld, keys_frame, margins):
            changed = True
        if not changed:
            return
    raise SpiegelError(f"{where}: the identities and margins did not settle; simplify the table")


def _withhold_together(table, where: str, exact: dict, secondary: dict, withheld: dict, keys_frame, margins) -> None:
    """``together`` (a ``CoreSharedTable`` field): groups of counts of a row that are withheld
    all at once when one of them is, because totals published elsewhere give each back from the
    others (last quarter's findings = resolved + still open, this quarter's = new + still open,
    both in ``regio_practices``). Each newly withheld cell runs complementary suppression within
    the margins again, and the identities, until nothing changes."""
    together = tuple(getattr(table, "together", ()))
    if not together:
        return
    for group in together:
        if isinstance(group, str) or not all(c in exact for c in group):
            raise SpiegelError(f"{where}: together group {group!r} must be a tuple of declared counts")
    for _ in range(50):
        changed = False
        for group in together:
            any_hidden = pd.concat([withheld[c] for c in group], axis=1).any(axis=1)
            for c in group:
                pick = any_hidden & ~withheld[c]
                if pick.any():
                    secondary[c] = secondary[c] | pick
                    withheld[c] = withheld[c] | pick
                    changed = True
        if margins and _complement_margins(exact, secondary, withheld, keys_frame, margins):
            changed = True
        if changed:
            _withhold_identities(table, where, exact, secondary, withheld, keys_frame, margins)
        else:
            return
    raise SpiegelError(f"{where}: the together groups and margins did not settle; simplify the table")


def write_shared(directory: Path, declared: list, frames: dict[str, pd.DataFrame]) -> list[str]:
    """Write the declared shared tables (``SharedTable``) through ``suppress_table`` into
    ``directory`` (``<cube>/shared``, or its temporary twin) with the index the reader trusts."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    index, written = {}, {}
    # a table linked to another (``CoreSharedTable.linked``) is suppressed after it
    order = sorted(declared, key=lambda t: bool(getattr(t, "linked", ())))
    for table in order:
        out = written[table.name] = suppress_table(frames[table.name], table,
                                                   _linked_rows(table, frames[table.name], written))
        arrow = pa.Table.from_pandas(out, preserve_index=False)
        arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), STAMP_KEY: _stamp().encode()})
        pq.write_table(arrow, directory / f"{table.name}.parquet")
        index[table.name] = {"keys": list(table.keys), "counts": list(table.counts),
                             "derived": [d[0] for d in getattr(table, "derived", ())],
                             "margins": [list(m) for m in getattr(table, "margins", ())],
                             "plain": list(getattr(table, "plain", ())),
                             "identities": [list(i) for i in getattr(table, "identities", ())],
                             "rates": [r[0] for r in table.rates]}
        if getattr(table, "together", ()):
            index[table.name]["together"] = [list(g) for g in table.together]
    (directory / INDEX).write_text(json.dumps(index, indent=1, sort_keys=True))
    return sorted(index)


#: the core cube's own shared table (not a report's prepare step): per practice how many of the
#: previous quarter's findings were resolved (``findings.findings_history``), for the regional report
FINDINGS_RESOLUTION_TABLE = "findings_resolution"
#: the regional report's table of findings per practice (``helpers.reports.regio.PRACTICES_TABLE``)
REGIO_PRACTICES = "regio_practices"


@dataclass(frozen=True)
class CoreSharedTable:
    """A shared table that ``prepare_quarter`` writes itself: the fields of
    ``helpers.reports.SharedTable`` (same meaning), and ``together``: groups of counts withheld
    all at once when one of them is (``_withhold_together``)."""
    name: str
    keys: tuple[str, ...]
    counts: tuple[str, ...]
    rates: tuple[tuple[str, str, str], ...] = ()
    derived: tuple[tuple[str, str], ...] = ()
    margins: tuple[tuple[str, ...], ...] = ()
    plain: tuple[str, ...] = ()
    identities: tuple[tuple[str, str, str], ...] = ()
    together: tuple[tuple[str, ...], ...] = ()
    #: (other table, key columns, its counts): a row is withheld entirely where the other shared
    #: table, on the same keys, withholds any of those counts (``write_shared`` suppresses it first)
    linked: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = ()


def _linked_rows(table, frame: pd.DataFrame, written: dict[str, pd.DataFrame]) -> pd.Series | None:
    """The rows of ``frame`` to withhold entirely for ``table.linked`` (None: no link).

    >>> t = CoreSharedTable("t", keys=("practice_agb",), counts=("n",), linked=(("o", ("practice_agb",), ("a", "b")),))
    >>> other = pd.DataFrame({"practice_agb": ["1", "2"], "a": pd.array([5, None], dtype="Int64"), "b": pd.array([40, 50], dtype="Int64")})
    >>> _linked_rows(t, pd.DataFrame({"practice_agb": ["1", "2", "3"], "n": [9, 9, 9]}), {"o": other}).tolist()
    [False, True, False]
    """
    links = tuple(getattr(table, "linked", ()))
    if not links:
        return None
    rows = pd.Series(False, index=frame.index)
    for other, keys, counts in links:
        if other not in written:   # not published in this cube: nothing there to give back
            continue
        o = written[other]
        hidden = o[list(counts)].isna().any(axis=1)
        hidden_keys = o.loc[hidden, list(keys)].astype("string").drop_duplicates()
        if hidden_keys.empty:
            continue
        mine = frame[list(keys)].astype("string").reset_index(drop=True)
        flag = mine.merge(hidden_keys.assign(_hidden=True), on=list(keys), how="left")["_hidden"]
        rows = rows | pd.Series(flag.fillna(False).astype(bool).to_numpy(), index=frame.index)
    return rows


def core_shared_tables() -> list[CoreSharedTable]:
    """The shared tables ``prepare_quarter`` writes itself (not a report's prepare step).

    ``findings_resolution``: per region and practice the registration findings and open
    controls of the previous quarter (``previous``), of them ``resolved`` and ``still_open``,
    and this quarter's ``new`` ones; the resolved share ``resolved_pct`` = resolved / previous.
    The practices of a region add up to a region total a reader can form (the margin). Last
    quarter's findings and this quarter's are published in ``regio_practices`` (findings and
    open controls, now and last quarter), so resolved = previous - still open, new = now -
    still open and ``departed`` (findings of patients who left since: not resolved) = last
    quarter's total - previous: where one of them is withheld, the whole row is (``together``).
    ``previous_quarter`` (the practice's data covers the previous quarter) counts no patients."""
    return [CoreSharedTable(FINDINGS_RESOLUTION_TABLE, keys=("region", "practice_agb", "name"),
                            counts=("previous", "resolved", "still_open", "new", "departed"),
                            rates=(("resolved_pct", "resolved", "previous"),), plain=("previous_quarter",),
                            margins=(("region",),), identities=(("resolved", "previous", "still_open"),),
                            # departed = last quarter's total (regio_practices) - previous: with
                            # a withheld departed count, previous (and so all of the row) goes too
                            together=(("previous", "resolved", "still_open", "new", "departed"),),
                            # their sums give back last quarter's and this quarter's findings and
                            # open controls, which regio_practices publishes (and withholds) apart
                            linked=((REGIO_PRACTICES, ("practice_agb",),
                                     ("registration_findings", "registration_findings_prev",
                                      "open_controls", "open_controls_prev")),))]


def findings_resolution_frame(practices: pd.DataFrame, counts: pd.DataFrame) -> pd.DataFrame:
    """The exact frame of ``findings_resolution`` (suppressed when written) from the cube's
    ``practices`` and the history counts (``findings.findings_history``), one row per practice.

    >>> p = pd.DataFrame({"practice_agb": ["1"], "name": ["A"], "region": ["R"]})
    >>> c = pd.DataFrame({"practice_agb": ["1", "1"], "previous_quarter": [True, True],
    ...                   "new": [2, 1], "still_open": [10, 3], "resolved": [4, 0], "departed": [1, 0]})
    >>> [int(x) for x in findings_resolution_frame(p, c).iloc[0][["previous", "resolved", "still_open", "new", "departed"]]]
    [17, 4, 13, 3, 1]
    """
    if "departed" not in counts:
        counts = counts.assign(departed=0)
    per = counts.groupby("practice_agb").agg(previous_quarter=("previous_quarter", "any"), new=("new", "sum"),
                                             still_open=("still_open", "sum"), resolved=("resolved", "sum"),
                                             departed=("departed", "sum"))
    out = practices[["region", "practice_agb", "name"]].copy()
    out["region"] = out["region"].fillna("").astype(str)
    out = out.merge(per.reset_index(), on="practice_agb", how="left")
    for c in ("new", "still_open", "resolved", "departed"):
        out[c] = out[c].fillna(0).astype("int64")
    out["previous_quarter"] = out["previous_quarter"].fillna(False).astype(bool)
    out["previous"] = out["resolved"] + out["still_open"]
    return out[["region", "practice_agb", "name", "previous", "resolved", "still_open", "new", "departed",
                "previous_quarter"]]


class SharedCube:
    """The only view of the quarter cube a shared-scope report gets: suppressed aggregates."""

    def __init__(self, cube: Path | str):
        self._root = (Path(cube) / SHARED_DIR).resolve()

    def __repr__(self) -> str:
        return f"SharedCube({str(self._root.parent)!r})"

    def _index(self) -> dict:
        try:
            return json.loads((self._root / INDEX).read_text())
        except (OSError, ValueError):
            return {}

    def tables(self) -> list[str]:
        """The shared tables of this cube."""
        return sorted(self._index())

    def read(self, table: str) -> pd.DataFrame:
        """One shared table; anything else (a patient-level table, a path, a file that did not
        pass the rule) raises SharedReadError."""
        index = self._index()
        fix = f"a shared-scope report reads only {', '.join(sorted(index)) or 'no tables (none declared)'}"
        if not isinstance(table, str) or not _NAME.match(table) or table not in index:
            raise SharedReadError(f"shared cube table {str(table)[:80]!r} in {self._root.parent}: is not a shared "
                                  f"table; {fix} (declare an aggregated SharedTable in the report's prepare step)")
        path = (self._root / f"{table}.parquet").resolve()
        if path.parent != self._root or not path.is_file() or path.is_symlink() or (self._root / f"{table}.parquet").is_symlink():
            raise SharedReadError(f"shared cube table {table!r}: {path} is not a file of {self._root}; prepare the quarter again")
        pf = pq.ParquetFile(path)
        if (pf.schema_arrow.metadata or {}).get(STAMP_KEY) != _stamp().encode():
            raise SharedReadError(f"shared cube table {table!r}: not written through the small-number rule "
                                  f"(MIN_CELL {suppression.MIN_CELL}); prepare the quarter again")
        df = pf.read().to_pandas()
        spec = index[table]
        if any(c in df.columns for c in PATIENT_COLUMNS):
            raise SharedReadError(f"shared cube table {table!r}: holds a patient column; prepare the quarter again")
        allowed = {*spec["keys"], *spec["counts"], *(f"{c}_shown" for c in spec["counts"]), *spec["rates"],
                   *spec.get("derived", ()), *spec.get("plain", ())}
        for c in spec["counts"]:
            if c in df.columns and df[c].dropna().map(suppression.is_small).any():
                raise SharedReadError(f"shared cube table {table!r}: column {c!r} holds an unsuppressed small count; "
                                      f"prepare the quarter again")
        if set(df.columns) - allowed:
            raise SharedReadError(f"shared cube table {table!r}: undeclared column "
                                  f"{sorted(set(df.columns) - allowed)[0]!r}; prepare the quarter again")
        return df


def read_shared(cube: Path | str, table: str) -> pd.DataFrame:
    """``SharedCube(cube).read(table)``."""
    return SharedCube(cube).read(table)
