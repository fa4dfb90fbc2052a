"""Quarters (``2025Q2``): the unit of reporting. Population day, window, neighbours.

>>> q = Quarter.parse("2025Q2")
>>> q.first_day, q.last_day, q.window_start
(datetime.date(2025, 4, 1), datetime.date(2025, 6, 30), datetime.date(2024, 7, 1))
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from .errors import ParameterError
from .identifiers import QUARTER_RE


def add_months(day: date, months: int) -> date:
    """Same day-of-month ``months`` later (clamped to the month's end)."""
    y, m = divmod(day.month - 1 + months, 12)
    year, month = day.year + y, m + 1
    for d in (day.day, 30, 29, 28):
        try:
            return date(year, month, d)
        except ValueError:
            continue
    raise AssertionError("unreachable")


@dataclass(frozen=True, order=True)
class Quarter:
    year: int
    number: int

    @classmethod
    def parse(cls, text: object) -> "Quarter":
        """Parse ``2025Q2`` (also ``2025-Q2``, lower case). Anything else is a ParameterError."""
        if isinstance(text, Quarter):
            return text
        m = QUARTER_RE.fullmatch(str(text).strip())
        if not m:
            raise ParameterError(
                f"quarter {text!r} is not a quarter: write it as YYYYQn with n from 1 to 4, e.g. 2025Q2"
            )
        year = int(m.group(1))
        if not 1900 <= year <= 2100:
            raise ParameterError(f"quarter {text!r}: year {year} is out of range")
        return cls(year, int(m.group(2)))

    @classmethod
    def containing(cls, day: date) -> "Quarter":
        return cls(day.year, (day.month - 1) // 3 + 1)

    @classmethod
    def latest_complete(cls, day: date) -> "Quarter":
        """The last quarter that ended on or before ``day``."""
        q = cls.containing(day)
        return q if day == q.last_day else q.previous()

    def __str__(self) -> str:
        return f"{self.year}Q{self.number}"

    @property
    def first_day(self) -> date:
        return date(self.year, 3 * (self.number - 1) + 1, 1)

    @property
    def last_day(self) -> date:
        return self.next().first_day - timedelta(days=1)

    @property
    def window_start(self) -> date:
        """First day of the measurement window: the twelve months ending on the last day."""
        return self.months_back_start(12)

    def months_back_start(self, months: int) -> date:
        """First day of the ``months``-month period that ends on this quarter's last day."""
        return add_months(self.last_day + timedelta(days=1), -months)

    def previous(self) -> "Quarter":
        return Quarter(self.year - 1, 4) if self.number == 1 else Quarter(self.year, self.number - 1)

    def next(self) -> "Quarter":
        return Quarter(self.year + 1, 1) if self.number == 4 else Quarter(self.year, self.number + 1)

    @property
    def label_nl(self) -> str:
        """Dutch label for reports: ``2e kwartaal 2025``."""
        return f"{self.number}e kwartaal {self.year}"
