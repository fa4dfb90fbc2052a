"""The one definition of the identifiers that deliveries, batch files and report parameters share.

ASCII only, everywhere: Python's ``\\d`` and ``str.isdigit()`` accept full-width (``０``) and
Arabic-Indic (``٠``) digits, which ``int()`` then converts silently, so an AGB code could pass
the batch while the contract refuses it. The ``*_PATTERN`` strings are plain ``[0-9]`` classes
that mean the same in Python's ``re`` and in RE2 (pyarrow, used by the contract checks).

>>> is_agb("01000001"), is_agb("０１０００００１"), is_agb("0100000")
(True, False, False)
>>> is_ascii_int("12"), is_ascii_int("-3", signed=True), is_ascii_int("٣")
(True, True, False)
>>> QUARTER_RE.fullmatch("2025-q2").groups()
('2025', '2')
"""

from __future__ import annotations

import re

AGB_PATTERN = "[0-9]{8}"
UZOVI_PATTERN = "[0-9]{4}"
POSTCODE4_PATTERN = "[0-9]{4}"
#: A quarter as a delivery writes it (payments.csv): ``2025Q2``.
QUARTER_PATTERN = "[0-9]{4}Q[1-4]"
ISO_DATE_PATTERN = "[0-9]{4}-[0-9]{2}-[0-9]{2}"

AGB_RE = re.compile(AGB_PATTERN, re.ASCII)
#: A quarter as a user may type it (``2025Q2``, ``2025-Q2``, ``2025 q2``); groups: year, number.
QUARTER_RE = re.compile(r"([0-9]{4})[ \t]*-?[ \t]*Q([1-4])", re.ASCII | re.IGNORECASE)
ISO_DATE_RE = re.compile(ISO_DATE_PATTERN, re.ASCII)
_INT_RE = re.compile("[0-9]+", re.ASCII)
_SIGNED_INT_RE = re.compile("[+-]?[0-9]+", re.ASCII)


def is_agb(text: object) -> bool:
    """True for exactly 8 ASCII digits (a string: the number 1000001 lost its leading zero)."""
    return isinstance(text, str) and AGB_RE.fullmatch(text) is not None


def is_ascii_int(text: object, signed: bool = False) -> bool:
    """True for a whole number written in ASCII digits (with an optional sign if ``signed``)."""
    pattern = _SIGNED_INT_RE if signed else _INT_RE
    return isinstance(text, str) and pattern.fullmatch(text) is not None
