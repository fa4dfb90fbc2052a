"""The DuckDB warehouse: one table per contract table, ``practice_agb`` on every row.

``ingest`` loads a dataset practice by practice. Each accepted practice replaces all of its
rows (register row, extraction tables, payments, ``loads`` entry) in one transaction, so
the warehouse holds either the old or the new delivery of a practice, never a mix. A
refused practice (see :mod:`helpers.contract`) leaves the warehouse untouched. Tables added
by a later contract version (``veelgebruikers_plan``, version 2) are created in an older
warehouse by the next writable connection; until then a read-only one sees them empty.

>>> wh = Warehouse(tmp_path / "warehouse.duckdb")              # doctest: +SKIP
>>> report = wh.ingest(Path("data/demo"))                       # doctest: +SKIP
>>> print(report.summary())                                     # doctest: +SKIP
>>> with wh.connect(read_only=True) as con:                     # doctest: +SKIP
...     con.sql("select count(*) from contacts").fetchone()

This module touches patient rows (it writes them); the report holds counts and messages only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd

from . import config, contract
from .errors import ContractError, Problem, SpiegelError, WarehouseBusyError

log = logging.getLogger("spiegel.warehouse")

#: Bump when typing or the table layout changes: every practice then loads again.
#: (Not bumped for contract version 2: adding the veelgebruikers_plan table changes no row of
#: a version-1 delivery, and a practice that delivers a plan gets a new content hash anyway,
#: since :func:`content_hash` covers every contract file of its folder.)
LOADER_VERSION = "1"

_SQL_TYPES = {"str": "VARCHAR", "code": "VARCHAR", "int": "INTEGER", "num": "DOUBLE", "date": "DATE"}

#: Warehouse tables in load order; the practice's own rows go in all of them.
DATA_TABLES = ("practices",) + contract.PRACTICE_TABLES + ("payments",)


def _columns(table: str) -> list[tuple[str, str]]:
    spec = contract.TABLES[table]
    cols = [("practice_agb", "VARCHAR")]
    cols += [(c.name, _SQL_TYPES[c.type]) for c in spec.columns if c.name != "practice_agb"]
    if table == "measurements":
        cols.append(("value_num", "DOUBLE"))
    return cols


#: Tables added after the first warehouse layout. A writable connection creates them in an
#: older warehouse (:meth:`Warehouse.connect`); a read-only one sees them as empty temporary
#: tables until then, so readers need not know which version made the file.
ADDED_TABLES = contract.VERSION_2_TABLES

#: table -> [(column, SQL type)], the warehouse layout.
SCHEMA: dict[str, list[tuple[str, str]]] = {t: _columns(t) for t in DATA_TABLES}
SCHEMA["loads"] = [
    ("practice_agb", "VARCHAR"),
    ("content_hash", "VARCHAR"),
    ("loaded_at", "TIMESTAMP"),
    ("source", "VARCHAR"),
    ("row_counts", "JSON"),
]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class IngestReport:
    """What an ingest did, per practice. Holds no patient rows.

    ``loaded``: practices written; ``unchanged``: skipped because their content hash is
    the one already loaded; ``refused``: agb -> contract message (nothing written);
    ``failed``: agb -> error while writing (rolled back, previous data kept);
    ``dataset_problems``: problems tied to no practice (e.g. a payments row of an unknown
    practice); ``timings``: seconds per practice and ``total``.
    """

    loaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    dataset_problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    row_counts: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.refused or self.failed or self.dataset_problems)

    def summary(self) -> str:
        """Text for the CLI: counts, then every refusal with its problems."""
        total = self.timings.get("total")
        lines = [
            f"ingest: {len(self.loaded)} loaded, {len(self.unchanged)} unchanged, "
            f"{len(self.refused)} refused, {len(self.failed)} failed"
            + (f" in {total:.1f}s" if total is not None else "")
        ]
        for agb in self.loaded:
            counts = self.row_counts.get(agb, {})
            detail = ", ".join(f"{n} {t}" for t, n in counts.items()
                               if t != "practices" and not (t in ADDED_TABLES and n == 0))
            lines.append(f"  loaded    {agb}" + (f" ({detail})" if detail else ""))
        for agb in self.unchanged:
            lines.append(f"  unchanged {agb} (same files as the last load; use force to reload)")
        for agb, message in self.refused.items():
            lines.append(f"  refused   {agb}:")
            lines += ["    " + m for m in message.splitlines()]
        for agb, message in self.failed.items():
            lines.append(f"  failed    {agb} (previous data kept): {message}")
        if self.dataset_problems:
            lines.append("  problems outside any practice:")
            lines += [f"    - {p}" for p in self.dataset_problems]
        if self.warnings:
            lines.append("  warnings:")
            lines += [f"    - {w}" for w in self.warnings]
        return "\n".join(lines)


class Warehouse:
    """One DuckDB file holding every loaded practice.

    >>> wh = Warehouse()                  # config.DEFAULT_WAREHOUSE   # doctest: +SKIP
    >>> wh.practice_hashes()              # {'12345678': 'ab12...'}     # doctest: +SKIP
    """

    def __init__(self, path: Path | str | None = None, lock_wait: float | None = None):
        """``lock_wait``: seconds to wait while another process holds the file (default:
        ``Settings.from_env().lock_wait``, i.e. $SPIEGEL_LOCK_WAIT or 30)."""
        self.path = Path(path) if path is not None else config.DEFAULT_WAREHOUSE
        self.lock_wait = config.Settings.from_env().lock_wait if lock_wait is None else float(lock_wait)

    # -- connections and schema ---------------------------------------------------------

    def connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection to the file; use it as ``with wh.connect() as con:``.

        A writable connection creates the file and the schema when missing. While another
        process holds the file, waits up to ``lock_wait`` seconds (saying so once on stderr),
        then raises :class:`~helpers.errors.WarehouseBusyError` naming that process.
        """
        if self.path.is_dir():
            raise SpiegelError(f"warehouse {self.path} is a folder, not a DuckDB file: give a file path, "
                               f"e.g. {self.path / 'warehouse.duckdb'}")
        if read_only:
            if not self.path.exists():
                raise SpiegelError(f"no warehouse at {self.path}: run `spiegel ingest` first")
            con = self._open(read_only=True)
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise SpiegelError(f"warehouse {self.path}: cannot create its folder {self.path.parent} "
                                   f"({e.strerror}): give a path you can write to") from None
            con = self._open(read_only=False)
        try:
            self._check_layout(con, create=not read_only)
        except BaseException:
            con.close()
            raise
        return con

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.lock_wait
        announced = False
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
                # no progress bar: a log is no terminal, and in a notebook it is a widget in the output
                con.execute("SET enable_progress_bar = false")
                return con
            except duckdb.Error as e:
                holder = _lock_holder(str(e))
                if holder is None:
                    raise self._unusable(e) from None
            left = deadline - time.monotonic()
            if left <= 0:
                raise WarehouseBusyError(self.path, holder, self.lock_wait) from None
            if not announced:
                print(f"warehouse {self.path} is in use by {holder}; waiting up to {self.lock_wait:g} s "
                      "(SPIEGEL_LOCK_WAIT)", file=sys.stderr, flush=True)
                announced = True
            time.sleep(min(_LOCK_POLL, left))

    def _unusable(self, error: duckdb.Error) -> SpiegelError:
        text = str(error)
        if "not a valid DuckDB database file" in text:
            return SpiegelError(f"warehouse {self.path} is not a DuckDB database: give the path of a "
                                "warehouse file, or a new path to create one")
        first = text.splitlines()[0] if text else type(error).__name__
        return SpiegelError(f"warehouse {self.path} cannot be opened ({first}): check the path and its permissions")

    def _check_layout(self, con: duckdb.DuckDBPyConnection, create: bool) -> None:
        """Refuse a DuckDB file that is no warehouse, or whose tables have another layout;
        create the missing tables when ``create``."""
        have = self._layout(con)
        if have and not any(t in have for t in SCHEMA):
            raise SpiegelError(
                f"warehouse {self.path} is a DuckDB database but not a Spiegel warehouse (it holds "
                f"{', '.join(sorted(have)[:5])}): give the path of a warehouse file, or a new path to create one")
        if not create and not have:
            raise SpiegelError(f"warehouse {self.path} is empty: run `spiegel ingest <dataset> --warehouse "
                               f"{self.path}` first")
        missing = [t for t in SCHEMA if t not in have]
        if create and missing:
            for table in missing:
                body = ", ".join(f"{_q(c)} {t}" for c, t in SCHEMA[table])
                con.execute(f"CREATE TABLE IF NOT EXISTS {_q(table)} ({body})")
            have = self._layout(con)
        elif missing and have and all(t in ADDED_TABLES for t in missing):
            # An older warehouse opened read-only: the tables added since hold no rows yet.
            for table in missing:
                body = ", ".join(f"{_q(c)} {t}" for c, t in SCHEMA[table])
                con.execute(f"CREATE TEMP TABLE {_q(table)} ({body})")
            have = self._layout(con)
        for table, cols in SCHEMA.items():
            if have.get(table) != [c for c, _ in cols]:
                raise SpiegelError(
                    f"warehouse {self.path}: table {table} has columns {have.get(table)}, "
                    f"expected {[c for c, _ in cols]}. It was made by another version: "
                    "delete the file and run `spiegel ingest` again."
                )

    @staticmethod
    def _layout(con) -> dict[str, list[str]]:
        found = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'main' ORDER BY table_name, ordinal_position"
        ).fetchall()
        have: dict[str, list[str]] = {}
        for table, column in found:
            have.setdefault(table, []).append(column)
        return have

    # -- reading ------------------------------------------------------------------------

    def practice_hashes(self) -> dict[str, str]:
        """practice_agb -> content hash of its last successful load."""
        if not self.path.exists():
            return {}
        with self.connect(read_only=True) as con:
            rows = con.execute("SELECT practice_agb, content_hash FROM loads").fetchall()
        return {agb: h for agb, h in rows}

    def practices(self) -> pd.DataFrame:
        """The practices table (one row per loaded practice)."""
        if not self.path.exists():
            return pd.DataFrame(columns=[c for c, _ in SCHEMA["practices"]])
        with self.connect(read_only=True) as con:
            return con.execute("SELECT * FROM practices ORDER BY practice_agb").df()

    # -- loading ------------------------------------------------------------------------

    def ingest(self, dataset: Path | str, practices: list[str] | None = None, force: bool = False) -> IngestReport:
        """Validate and load a dataset, practice by practice (see the module docstring).

        ``practices`` limits the load to these AGB codes (an unknown code is a SpiegelError);
        ``force`` reloads practices whose files did not change.

        >>> Warehouse(tmp_path / "w.duckdb").ingest(Path("tests/fixtures/good_minimal")).loaded  # doctest: +SKIP
        ['12345678', '87654321']
        """
        started = time.perf_counter()
        dataset = Path(dataset)
        report = IngestReport()
        register = contract.read_practices(dataset)
        report.warnings += register.warnings
        report.dataset_problems += [p.describe() for p in register.file_problems]

        if practices is not None:
            wanted = [str(p) for p in practices]
            unknown = [p for p in wanted if p not in register.known]
            if unknown:
                raise SpiegelError(
                    f"practice(s) {', '.join(unknown)} not in {dataset} "
                    f"(known: {', '.join(register.known) or 'none'})"
                )
        else:
            wanted = list(register.known)

        registered = set(register.fingerprints)
        payments = contract.read_payments(dataset, registered)
        report.warnings += payments.warnings
        report.dataset_problems += [p.describe() for p in payments.file_problems]

        rows = {str(r["practice_agb"]): r for r in register.practices.to_dict("records")}
        with self.connect() as con:
            previous = dict(con.execute("SELECT practice_agb, content_hash FROM loads").fetchall())
            # Pipeline: the next practice is read and validated in a background thread while
            # DuckDB (which releases the GIL) writes the current one. Writes stay sequential,
            # one transaction per practice, in the register's order.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="spiegel-validate") as pool:
                pending = None
                for i, agb in enumerate(wanted):
                    t0 = time.perf_counter()
                    current = pending or pool.submit(self._read_one, dataset, agb, register, payments,
                                                     rows, previous, force)
                    pending = (pool.submit(self._read_one, dataset, wanted[i + 1], register, payments,
                                           rows, previous, force) if i + 1 < len(wanted) else None)
                    try:
                        self._load_one(con, agb, current.result(), report)
                    finally:
                        report.timings[agb] = round(time.perf_counter() - t0, 4)
        report.timings["total"] = round(time.perf_counter() - started, 4)
        log.info("ingest %s: %d loaded, %d unchanged, %d refused, %d failed", dataset,
                 len(report.loaded), len(report.unchanged), len(report.refused), len(report.failed))
        return report

    def _read_one(self, dataset, agb, register, payments, rows, previous, force) -> dict:
        """Hash, read and validate one practice (no warehouse access): what _load_one needs."""
        problems: list[Problem] = list(register.problems.get(agb, []))
        problems += payments.problems.get(agb, [])
        if agb not in rows:
            return {"refused": str(ContractError(problems, subject=f"practice {agb}"))}
        try:
            digest = content_hash(dataset, agb, register.fingerprints.get(agb, ""),
                                  payments.fingerprints.get(agb, ""))
        except OSError as e:  # unreadable or vanished file: this practice fails, the others go on
            return {"failed": f"{type(e).__name__}: cannot read the files of practice {agb} ({e.strerror})"}
        if not problems and not force and previous.get(agb) == digest:
            return {"unchanged": True}
        try:
            data = contract.load_practice(dataset, rows[agb])
        except ContractError as e:
            problems = e.problems + problems
            data = None
        except Exception as e:  # noqa: BLE001 - a loader bug on odd data must not stop the batch
            log.exception("reading practice %s failed", agb)
            return {"failed": f"{type(e).__name__}: {e}"}
        if problems:
            return {"refused": str(ContractError(problems, subject=f"practice {agb}"))}
        frames = {"practices": pd.DataFrame([rows[agb]])}
        frames.update(data.tables)
        pay = payments.payments
        frames["payments"] = pay[pay["practice_agb"] == agb]
        return {"frames": frames, "digest": digest, "warnings": data.warnings, "source": str(dataset.resolve())}

    def _load_one(self, con, agb: str, read: dict, report: IngestReport) -> None:
        """Write one validated practice in its own transaction and record the outcome."""
        if "refused" in read:
            report.refused[agb] = read["refused"]
            return
        if "unchanged" in read:
            report.unchanged.append(agb)
            return
        if "failed" in read:
            report.failed[agb] = read["failed"]
            return
        report.warnings += read["warnings"]
        frames = read["frames"]
        counts = {t: int(len(df)) for t, df in frames.items()}
        try:
            self._replace(con, agb, frames, read["digest"], read["source"], counts)
        except Exception as e:  # noqa: BLE001 - any failure: roll back, keep old data, report
            log.exception("loading practice %s failed; rolled back", agb)
            report.failed[agb] = f"{type(e).__name__}: {e}"
            return
        report.loaded.append(agb)
        report.row_counts[agb] = counts

    def _replace(self, con, agb: str, frames: dict[str, pd.DataFrame], digest: str, source: str,
                 counts: dict[str, int]) -> None:
        """Delete and insert every table of one practice in one transaction."""
        con.execute("BEGIN TRANSACTION")
        try:
            for table in DATA_TABLES:
                con.execute(f"DELETE FROM {_q(table)} WHERE practice_agb = ?", [agb])
                self._insert(con, table, frames[table])
            con.execute("DELETE FROM loads WHERE practice_agb = ?", [agb])
            con.execute(
                "INSERT INTO loads VALUES (?, ?, ?, ?, ?)",
                [agb, digest, datetime.now(), source, json.dumps(counts)],
            )
            con.execute("COMMIT")
        except BaseException:
            try:
                con.execute("ROLLBACK")
            except duckdb.Error:  # the transaction may already be aborted; nothing was committed
                pass
            raise

    def _insert(self, con, table: str, df: pd.DataFrame) -> None:
        """Insert a typed frame, casting each column to its warehouse type."""
        if len(df) == 0:
            return
        cols = SCHEMA[table]
        view = f"_spiegel_{table}"
        con.register(view, df[[c for c, _ in cols]])
        try:
            select = ", ".join(f"CAST({_q(c)} AS {t})" for c, t in cols)
            names = ", ".join(_q(c) for c, _ in cols)
            con.execute(f"INSERT INTO {_q(table)} ({names}) SELECT {select} FROM {view}")
        finally:
            con.unregister(view)


_LOCK_POLL = 0.25  # seconds between attempts while another process holds the file
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<exe>.*?) \(PID (?P<pid>[0-9]+)\)", re.ASCII)


def _lock_holder(message: str) -> str | None:
    """Who holds the file, from DuckDB's lock error ("... held in <program> (PID n)"); None when
    the error is not about a lock.

    >>> _lock_holder('IO Error: Could not set lock on file "w.duckdb": Conflicting lock is held in /usr/bin/python3 (PID 0). See also ...')
    'process 0 (/usr/bin/python3)'
    """
    m = _LOCK_HOLDER.search(message)
    if m is None:
        return None
    pid = m["pid"]
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:  # not Linux, or the holder just ended
        argv = []
    if len(argv) >= 2 and Path(argv[1]).name == "spiegel":
        what = " ".join(["spiegel", *argv[2:]])
    else:
        what = m["exe"]
    return f"process {pid} ({what if len(what) <= 120 else what[:119] + '…'})"


def content_hash(dataset: Path, agb: str, register_row: str, payment_rows: str = "") -> str:
    """sha256 over a practice's source files (name and bytes), its register row and its payments rows.

    >>> content_hash(Path("tests/fixtures/good_minimal"), "12345678", "row text")[:8]  # doctest: +SKIP
    """
    h = hashlib.sha256()
    h.update(f"spiegel-loader {LOADER_VERSION}\n".encode())
    for path in contract.practice_files(dataset, agb):
        h.update(f"file {path.name}\n".encode())
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\n")
    h.update(b"practices row\n" + register_row.encode())
    h.update(b"\npayments rows\n" + payment_rows.encode())
    return h.hexdigest()
