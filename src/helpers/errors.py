"""One small exception family. Messages name the thing, show the value and hint at the fix.

The CLI prints a ``SpiegelError`` as one line (or one block for many problems) without a
traceback and exits non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class SpiegelError(Exception):
    """Base of every error a user can cause and fix."""


class ParameterError(SpiegelError):
    """A batch file, notebook parameter or command-line value is wrong."""


class ConfigError(SpiegelError):
    """A file under ``parameters/`` (codes, programmes, indicators) is wrong."""


class IndicatorError(ConfigError):
    """An indicator definition in ``parameters/indicators/`` is wrong."""


@dataclass(frozen=True)
class Problem:
    """One contract violation: where it is, what was found and what was expected.

    >>> Problem("patients.csv", 14, "birth_year", "19x5", "a whole number").describe()
    "patients.csv, line 14, column birth_year: found '19x5', expected a whole number"
    """

    file: str
    line: int | None
    column: str | None
    value: object
    expected: str

    def describe(self) -> str:
        where = [self.file]
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.column is not None:
            where.append(f"column {self.column}")
        found = "" if self.value is None else f"found {str(self.value)!r}, "
        return f"{', '.join(where)}: {found}expected {self.expected}"


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
