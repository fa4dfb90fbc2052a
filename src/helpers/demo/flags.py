"""The ``spiegel demo-data`` flags, read as text and checked before anything is written: one
:class:`~helpers.errors.Problem` per bad flag (as ``helpers.batch.batchfile`` does for a batch
file), all of them raised together in one :class:`~helpers.errors.ParameterError`.

>>> parse_demo_flags({"practices": "12", "seed": "7"})["practices"]
12
>>> parse_demo_flags({"practices": "twelve"})
Traceback (most recent call last):
...
helpers.errors.ParameterError: --practices: found 'twelve', expected a number of practices: a whole number from 1 to 2000
"""

from __future__ import annotations

from datetime import date

from ..errors import ParameterError, Problem
from ..identifiers import is_ascii_int

#: the most practices the demo generates
MAX_PRACTICES = 2000
DEFAULT_PRACTICES = 12
DEFAULT_SEED = 20261123
DEFAULT_EXTRACTION = "2026-10-05"
#: the history of the demo in full rolling years (``generate(years=...)``)
YEARS = 3


def _flag(flag: str, value, expected: str, fix: str | None = None) -> Problem:
    return Problem(None, None, None, value, expected, fix=fix, key=flag)


def _whole(value, flag: str, low: int, high: int | None, what: str, problems: list[Problem],
           fix: str | None = None) -> int | None:
    """``value`` as a whole number from ``low`` (to ``high``), else None and a problem."""
    s = str(value).strip()
    span = f"from {low} to {high}" if high is not None else f"from {low} on"
    if not is_ascii_int(s, signed=True) or int(s) < low or (high is not None and int(s) > high):
        problems.append(_flag(flag, value, f"{what}: a whole number {span}", fix))
        return None
    return int(s)


def parse_demo_flags(flags: dict) -> dict:
    """The keyword arguments of ``helpers.demo.generate`` (practices, regions, seed,
    extraction_date) from the flags' text (``None``: the default); ParameterError lists every
    problem, one line each.

    >>> parse_demo_flags({"practices": "2", "regions": "3", "seed": "-1"})
    Traceback (most recent call last):
    ...
    helpers.errors.ParameterError: --regions: found '3', expected a number of regions from 1 to --practices (2): every region needs a practice
    --seed: found '-1', expected a seed: a whole number from 0 on; e.g. 20261123
    """
    from .constants import LATEST_EXTRACTION
    from .writer import _earliest_extraction
    problems: list[Problem] = []
    get = lambda name, default=None: default if flags.get(name) is None else flags[name]  # noqa: E731
    practices = _whole(get("practices", DEFAULT_PRACTICES), "--practices", 1, MAX_PRACTICES,
                       "a number of practices", problems)
    regions_text = get("regions")
    regions = None
    if regions_text is None:
        regions = min(2, practices) if practices is not None else None
    elif practices is not None:
        s = str(regions_text).strip()
        if not is_ascii_int(s, signed=True) or not 1 <= int(s) <= practices:
            problems.append(_flag("--regions", regions_text,
                                  f"a number of regions from 1 to --practices ({practices}): every region needs a practice"))
        else:
            regions = int(s)
    else:
        regions = _whole(regions_text, "--regions", 1, MAX_PRACTICES, "a number of regions", problems)
    seed = _whole(get("seed", DEFAULT_SEED), "--seed", 0, None, "a seed", problems, f"e.g. {DEFAULT_SEED}")
    text = str(get("extraction_date", DEFAULT_EXTRACTION)).strip()
    extraction = None
    try:
        extraction = date.fromisoformat(text) if len(text) == 10 and text.isascii() else None
    except ValueError:
        pass
    earliest = _earliest_extraction(YEARS)
    if extraction is None:
        problems.append(_flag("--extraction-date", get("extraction_date", DEFAULT_EXTRACTION),
                              "a date YYYY-MM-DD", f"e.g. {DEFAULT_EXTRACTION}"))
    elif not earliest <= extraction <= LATEST_EXTRACTION:
        problems.append(_flag("--extraction-date", text,
                              f"a date from {earliest.isoformat()} to {LATEST_EXTRACTION.isoformat()} "
                              "(what the demo can generate)"))
    if problems:
        raise ParameterError.from_problems(problems)
    return {"practices": practices, "regions": regions, "seed": seed, "extraction_date": extraction}
