"""One small exception family. Messages name the thing, show the value and hint at the fix.

The CLI prints a ``SpiegelError`` as one line (or one block for many problems) without a
traceback and exits with :func:`exit_code`; anything else is a bug and keeps its traceback.

Every error of the family survives pickling with its message and attributes (the batch
raises them in worker processes and on Dask workers):

>>> import pickle
>>> e = pickle.loads(pickle.dumps(ContractError([Problem("practices.csv", None, None, None, "a file")])))
>>> e.problems[0].describe(), e.subject
('practices.csv: expected a file', 'delivery')
"""

from __future__ import annotations

from dataclasses import dataclass


def _rebuild(cls: type, args: tuple, state: dict) -> "SpiegelError":
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class SpiegelError(Exception):
    """Base of every error a user can cause and fix."""

    def __reduce__(self):
        # Exception's own pickling calls ``cls(*self.args)``, which breaks every subclass whose
        # __init__ takes other arguments than the message (ContractError took the message for
        # its problem list); restore message and attributes without calling __init__.
        return _rebuild, (type(self), self.args, dict(self.__dict__))


@dataclass(frozen=True)
class Problem:
    """One validation problem of any input (a delivered file, a batch file, a flag): where it
    is, what was found, what was expected and, where one helps, the fix. Every problem of every
    input is written by one function, :func:`format_problem`.

    ``column`` is a table's column (a delivery); ``key`` a YAML key or a command-line flag
    (a batch file, ``--quarter``). ``file`` is None for a flag.

    >>> Problem("patients.csv", 14, "birth_year", "19x5", "a whole number").describe()
    "patients.csv, line 14, column birth_year: found '19x5', expected a whole number"
    >>> Problem("demo.yaml", None, None, "2025Q5", "a quarter (YYYYQn)", fix="e.g. 2025Q2", key="quarters").describe()
    "demo.yaml, quarters: found '2025Q5', expected a quarter (YYYYQn); e.g. 2025Q2"
    """

    file: str | None
    line: int | None
    column: str | None
    value: object
    expected: str
    fix: str | None = None
    key: str | None = None

    def describe(self) -> str:
        return format_problem(self)


def format_problem(problem: Problem) -> str:
    """The one line of a :class:`Problem`: ``file, line N, column C|key: found 'v', expected X; fix``.

    >>> format_problem(Problem(None, None, None, "Q3", "a quarter (YYYYQn)", key="--quarter"))
    "--quarter: found 'Q3', expected a quarter (YYYYQn)"
    """
    where = [str(problem.file)] if problem.file is not None else []
    if problem.line is not None:
        where.append(f"line {problem.line}")
    if problem.column is not None:
        where.append(f"column {problem.column}")
    if problem.key is not None:
        where.append(str(problem.key))
    found = "" if problem.value is None else f"found {str(problem.value)!r}, "
    fix = f"; {problem.fix}" if problem.fix else ""
    return f"{', '.join(where)}: {found}expected {problem.expected}{fix}"


class ParameterError(SpiegelError):
    """A batch file, notebook parameter or command-line value is wrong.

    Raised with one message, or with every problem found (:meth:`from_problems`), one line each:

    >>> e = ParameterError.from_problems([Problem("b.yaml", None, None, "x", "html or pdf", key="formats")])
    >>> str(e), e.problems[0].key
    ("b.yaml, formats: found 'x', expected html or pdf", 'formats')
    """

    problems: tuple = ()   # set by from_problems

    @classmethod
    def from_problems(cls, problems: list[Problem]) -> "ParameterError":
        """One error holding ``problems``; its message is their lines, each said once."""
        exc = cls("\n".join(dict.fromkeys(format_problem(p) for p in problems)))
        exc.problems = list(problems)
        return exc


class ConfigError(SpiegelError):
    """A file under ``parameters/`` (codes, programmes, indicators) is wrong."""


class IndicatorError(ConfigError):
    """An indicator definition in ``parameters/indicators/`` is wrong."""


class ContractError(SpiegelError):
    """A delivery breaks the data contract (spec/his-extract.md). Holds every problem found."""

    def __init__(self, problems: list[Problem], subject: str = "delivery", limit: int = 50):
        self.problems = list(problems)
        self.subject = subject
        shown = [p.describe() for p in self.problems[:limit]]
        more = len(self.problems) - len(shown)
        lines = [f"{subject} refused: {len(self.problems)} problem(s) with the data contract"]
        lines += [f"  - {s}" for s in shown]
        if more > 0:
            lines.append(f"  ... and {more} more")
        lines.append(
            "  Fix: correct the export in the HIS (or the file) and deliver it again; "
            "the contract is spec/his-extract.md."
        )
        super().__init__("\n".join(lines))


class WarehouseBusyError(SpiegelError):
    """Another process holds the warehouse's write lock, still after waiting for it."""

    def __init__(self, path, holder: str, waited: float):
        self.path = str(path)
        self.holder = holder
        self.waited = waited
        super().__init__(
            f"warehouse {path} is in use by {holder}, still after {waited:g} s: let that finish and run "
            "the command again, or wait longer with SPIEGEL_LOCK_WAIT=<seconds>"
        )


#: Exit status of the ``spiegel`` command per kind of error (the most specific class wins).
#: 1 is not here: it means the command ran but a practice was refused or a run failed.
EXIT_CODES: dict[type[BaseException], int] = {
    SpiegelError: 2,
    WarehouseBusyError: 3,
    KeyboardInterrupt: 130,
}

EXIT_CODES_HELP = (
    "exit status: 0 done; 1 done, but a practice was refused or a run failed; "
    "2 a user error (the message names the thing and the fix); 3 the warehouse is busy "
    "(another spiegel process holds it; try again later); 130 interrupted"
)


def exit_code(exc: BaseException) -> int:
    """The exit status for ``exc``: that of its most specific class in :data:`EXIT_CODES`.

    >>> exit_code(WarehouseBusyError("w.duckdb", "process 12", 30)), exit_code(ParameterError("x"))
    (3, 2)
    """
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    raise TypeError(f"no exit status for {type(exc).__name__}: it is not a SpiegelError")
