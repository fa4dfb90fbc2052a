"""Invoice numbers and bank descriptions of chain-care payments (spec/his-extract.md, payments.csv).

An invoice number is ``<year><chain nr>-<seq>-<seq>`` (``20211-1-1``: year 2021, chain 1, then
two sequence numbers); the bank description of the payment is
``DBC/<chain>/Q<n>/<yy>/<invoice number>`` with the programme code as ``<chain>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import Problem, format_problem
from ..quarter import Quarter

INVOICE_RE = re.compile(r"(?P<year>[0-9]{4})(?P<chain>[1-9])-(?P<seq1>[0-9]+)-(?P<seq2>[0-9]+)", re.ASCII)
DESCRIPTION_RE = re.compile(r"DBC/(?P<programme>[A-Z0-9]+)/Q(?P<q>[1-4])/(?P<yy>[0-9]{2})/(?P<invoice>\S+)", re.ASCII)
INVOICE_EXPECTED = "an invoice number <year><chain nr>-<seq>-<seq> (e.g. 20211-1-1)"


class InvoiceError(ValueError):
    """A malformed invoice number or bank description; ``problem`` says which and what was expected."""

    def __init__(self, problem: Problem):
        self.problem = problem
        super().__init__(format_problem(problem))


@dataclass(frozen=True)
class Invoice:
    year: int
    chain_number: int
    seq1: int
    seq2: int

    def __str__(self) -> str:
        return f"{self.year}{self.chain_number}-{self.seq1}-{self.seq2}"


def invoice_number(year: int, chain_number: int, seq1: int, seq2: int) -> str:
    """The invoice number ``<year><chain nr>-<seq>-<seq>``.

    >>> invoice_number(2021, 1, 1, 1)
    '20211-1-1'
    """
    return str(Invoice(int(year), int(chain_number), int(seq1), int(seq2)))


def decode_invoice(text: object, where: str = "invoice_number") -> Invoice:
    """Year, chain number and the two sequence numbers of an invoice number; a malformed one
    raises :class:`InvoiceError` (a ValueError) whose message is a Problem line.

    >>> decode_invoice("20211-1-1")
    Invoice(year=2021, chain_number=1, seq1=1, seq2=1)
    >>> decode_invoice("2021-1-1")
    Traceback (most recent call last):
    ...
    helpers.money.invoice.InvoiceError: invoice_number: found '2021-1-1', expected an invoice number <year><chain nr>-<seq>-<seq> (e.g. 20211-1-1)
    """
    m = INVOICE_RE.fullmatch(str(text).strip()) if isinstance(text, (str, int)) else None
    if not m:
        raise InvoiceError(Problem(None, None, None, text, INVOICE_EXPECTED, key=where))
    return Invoice(int(m["year"]), int(m["chain"]), int(m["seq1"]), int(m["seq2"]))


def invoice_problem(text: object, where: str = "invoice_number") -> Problem | None:
    """The Problem of a malformed invoice number, or None when it is well formed.

    >>> invoice_problem("20263-4-7") is None, invoice_problem("x").expected == INVOICE_EXPECTED
    (True, True)
    """
    try:
        decode_invoice(text, where)
    except InvoiceError as exc:
        return exc.problem
    return None


def bank_description(programme: str, quarter: Quarter | str, invoice: str) -> str:
    """The bank description of a payment: ``DBC/<chain>/Q<n>/<yy>/<invoice number>``.

    >>> bank_description("DM2", "2021Q1", "20211-1-1")
    'DBC/DM2/Q1/21/20211-1-1'
    """
    q = Quarter.parse(str(quarter))
    decode_invoice(invoice)
    return f"DBC/{programme}/Q{q.number}/{q.year % 100:02d}/{invoice}"


def decode_bank_description(text: str) -> tuple[str, str, Invoice]:
    """``(programme, quarter, invoice)`` of a bank description; InvoiceError when malformed.
    The century is that of the invoice's year.

    >>> decode_bank_description("DBC/CVRM/Q3/26/20263-4-12")
    ('CVRM', '2026Q3', Invoice(year=2026, chain_number=3, seq1=4, seq2=12))
    """
    m = DESCRIPTION_RE.fullmatch(str(text).strip())
    if not m:
        raise InvoiceError(Problem(None, None, None, text, "a bank description DBC/<chain>/Q<n>/<yy>/<invoice number>",
                                   key="description"))
    inv = decode_invoice(m["invoice"], "description")
    if inv.year % 100 != int(m["yy"]):
        raise InvoiceError(Problem(None, None, None, text, f"the year {m['yy']} of the invoice ({inv.year})",
                                   key="description"))
    return m["programme"], f"{inv.year}Q{m['q']}", inv
