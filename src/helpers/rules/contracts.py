"""Insurer contracts from ``parameters/contracts.yaml``: insurers and their UZOVI codes, per
insurer and year the tariff and inclusion cap of every programme, the date signed, the
result-reward rule, the payment rounds, the invoice's chain numbers, the regioprestatie and the
care group's default caps. One loader validates the whole file and lists every problem at once
(one :func:`~helpers.errors.format_problem` line each), as the other rule loaders do.

Amounts and percentages are :class:`~decimal.Decimal` (exact to the cent); the money rules
that use them are :mod:`helpers.money`.

>>> c = load_contracts()
>>> c.insurer_of("7029").name, c.insurer_of("7029").regioprestatie_veelgebruikers
('VGZ', True)
>>> t = c.contract("3311", 2026).programmes["DM2"]
>>> t.annual_tariff_eur, t.max_inclusion_pct
(Decimal('396.00'), Decimal('12.0'))
>>> c.default_max_inclusion_pct["CVRM"], c.chain_numbers["CVRM"]
(Decimal('10.0'), 3)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path

from ..config import CONTRACTS_FILE
from ..contract.tables import PROGRAMMES as CONTRACT_PROGRAMMES
from ..errors import Problem
from .codes import config_error, read_yaml

UZOVI_RE = re.compile(r"[0-9]{4}", re.ASCII)
CAP_BASES = ("insurer_list", "practice_list")


@dataclass(frozen=True)
class Uzovi:
    code: str
    #: checked against the published UZOVI register (Vektis); False for the demo's codes
    verified: bool = False


@dataclass(frozen=True)
class Insurer:
    id: str
    name: str
    uzovi: tuple[Uzovi, ...]
    #: pays the regioprestatie 'Regie op Veelgebruikers' (VGZ)
    regioprestatie_veelgebruikers: bool = False

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(u.code for u in self.uzovi)


@dataclass(frozen=True)
class ProgrammeTerms:
    """What one contract says about one programme."""
    annual_tariff_eur: Decimal
    max_inclusion_pct: Decimal


@dataclass(frozen=True)
class Contract:
    insurer: str  # Insurer.id
    year: int
    signed_on: date
    cap_basis: str  # one of CAP_BASES
    programmes: dict[str, ProgrammeTerms]
    #: euro per registered patient per year (regioprestatie), None when the contract has none
    regioprestatie_eur_per_patient_year: Decimal | None = None


@dataclass(frozen=True)
class RewardRule:
    """The result reward: ``pct_before_cutoff`` when signed before the cut-off, else
    ``pct_on_or_after_cutoff``; the cut-off is ``cutoff_month``/``cutoff_day`` of the contract
    year minus ``cutoff_years_before`` (1 November preceding the contract year)."""
    cutoff_month: int
    cutoff_day: int
    cutoff_years_before: int
    pct_before_cutoff: Decimal
    pct_on_or_after_cutoff: Decimal


@dataclass(frozen=True)
class PaymentRounds:
    first_round_month_of_quarter: int  # 1..3
    first_round_day: int
    follow_up_days: int


@dataclass(frozen=True)
class Contracts:
    insurers: dict[str, Insurer]
    contracts: dict[tuple[str, int], Contract]  # (insurer id, year) -> contract
    reward: RewardRule
    rounds: PaymentRounds
    chain_numbers: dict[str, int]
    default_max_inclusion_pct: dict[str, Decimal]
    path: str = str(CONTRACTS_FILE)

    def insurer_of(self, uzovi: str) -> Insurer:
        """The insurer a UZOVI code belongs to; KeyError naming the code when none."""
        for ins in self.insurers.values():
            if str(uzovi) in ins.codes:
                return ins
        raise KeyError(f"UZOVI {uzovi!r} belongs to no insurer of {self.path}")

    def contract(self, insurer: str, year: int) -> Contract:
        """The contract of ``insurer`` (an insurer id or one of its UZOVI codes) for ``year``;
        KeyError naming both when there is none."""
        iid = insurer if insurer in self.insurers else self.insurer_of(insurer).id
        try:
            return self.contracts[(iid, int(year))]
        except KeyError:
            raise KeyError(f"no contract of {iid} for {year} in {self.path}") from None

    def programme_of_chain(self, number: int) -> str:
        """The programme of a chain number (the invoice's); KeyError when none."""
        for p, n in self.chain_numbers.items():
            if n == int(number):
                return p
        raise KeyError(f"chain number {number} is no programme's in {self.path}")


def _decimal(value, places: int) -> Decimal | None:
    """``value`` as a Decimal with at most ``places`` decimals, or None when it is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        return None
    if not d.is_finite() or d.as_tuple().exponent < -places:
        return None
    return d


def parse_contracts(data: dict, path: Path = CONTRACTS_FILE) -> Contracts:
    """Validate a contracts mapping; one ConfigError lists every problem (one line each).

    >>> parse_contracts({"insurers": {"vgz": {"name": "VGZ", "uzovi": [{"code": "70x9"}]}}}, Path("contracts.yaml"))
    Traceback (most recent call last):
    ...
    helpers.errors.ConfigError: contracts.yaml, insurers.vgz.uzovi[0].code: found '70x9', expected a UZOVI code of 4 digits
    contracts.yaml, result_reward: expected a mapping with cutoff_month, cutoff_day, cutoff_years_before, pct_before_cutoff, pct_on_or_after_cutoff (it is missing)
    contracts.yaml, payment_rounds: expected a mapping with first_round_month_of_quarter, first_round_day, follow_up_days (it is missing)
    contracts.yaml, invoice.chain_numbers: expected a chain number for every programme (it is missing)
    contracts.yaml, defaults.max_inclusion_pct: expected the care group's cap per programme (it is missing)
    contracts.yaml, contracts: expected at least one contract (none defined)
    """
    problems: list[Problem] = []

    def problem(key: str, value, expected: str, fix: str | None = None) -> None:
        problems.append(Problem(str(path), None, None, value, expected, fix=fix, key=key))

    def pct(key: str, value) -> Decimal:
        d = _decimal(value, 2)
        if d is None or not 0 < d <= 100:
            problem(key, value, "a percentage in (0, 100] with at most 2 decimals")
            return Decimal(100)
        return d

    # ---- insurers
    insurers: dict[str, Insurer] = {}
    owner: dict[str, str] = {}
    raw_insurers = data.get("insurers")
    if not isinstance(raw_insurers, dict) or not raw_insurers:
        problem("insurers", None, "at least one insurer (none defined)")
        raw_insurers = {}
    for iid, ins in raw_insurers.items():
        where = f"insurers.{iid}"
        if not isinstance(ins, dict):
            problem(where, type(ins).__name__, "a mapping with name and uzovi")
            continue
        if not str(ins.get("name") or "").strip():
            problem(f"{where}.name", None, "the insurer's name (it is missing)")
        codes = []
        raw_codes = ins.get("uzovi")
        if not isinstance(raw_codes, list) or not raw_codes:
            problem(f"{where}.uzovi", None, "a list of UZOVI codes ({code: '7029', verified: false})")
            raw_codes = []
        for i, u in enumerate(raw_codes):
            at = f"{where}.uzovi[{i}]"
            code = u.get("code") if isinstance(u, dict) else u
            code = str(code) if isinstance(code, (str, int)) and not isinstance(code, bool) else code
            if not isinstance(code, str) or not UZOVI_RE.fullmatch(code):
                problem(f"{at}.code", code, "a UZOVI code of 4 digits")
                continue
            verified = u.get("verified", False) if isinstance(u, dict) else False
            if not isinstance(verified, bool):
                problem(f"{at}.verified", verified, "true or false (checked against the UZOVI register)")
                verified = False
            if code in owner:
                problem(f"{at}.code", code, f"a code of one insurer only (also listed under {owner[code]})")
            owner[code] = str(iid)
            codes.append(Uzovi(code, verified))
        flag = ins.get("regioprestatie_veelgebruikers", False)
        if not isinstance(flag, bool):
            problem(f"{where}.regioprestatie_veelgebruikers", flag, "true or false")
            flag = False
        insurers[str(iid)] = Insurer(str(iid), str(ins.get("name") or iid), tuple(codes), flag)

    # ---- result reward, payment rounds, invoice, defaults
    rr = data.get("result_reward")
    reward = RewardRule(11, 1, 1, Decimal(4), Decimal(2))
    if not isinstance(rr, dict):
        problem("result_reward", None, "a mapping with cutoff_month, cutoff_day, cutoff_years_before, "
                "pct_before_cutoff, pct_on_or_after_cutoff (it is missing)")
    else:
        month, day, back = rr.get("cutoff_month"), rr.get("cutoff_day"), rr.get("cutoff_years_before")
        if not isinstance(month, int) or isinstance(month, bool) or not 1 <= month <= 12:
            problem("result_reward.cutoff_month", month, "a month (1..12)")
            month = 11
        if not isinstance(day, int) or isinstance(day, bool) or not 1 <= day <= 28:
            problem("result_reward.cutoff_day", day, "a day of the month (1..28)")
            day = 1
        if not isinstance(back, int) or isinstance(back, bool) or not 0 <= back <= 5:
            problem("result_reward.cutoff_years_before", back, "a number of years (0..5; 1 = the year before)")
            back = 1
        before = _decimal(rr.get("pct_before_cutoff"), 2)
        after = _decimal(rr.get("pct_on_or_after_cutoff"), 2)
        for key, d in (("pct_before_cutoff", before), ("pct_on_or_after_cutoff", after)):
            if d is None or not 0 <= d <= 100:
                problem(f"result_reward.{key}", rr.get(key), "a percentage in [0, 100] with at most 2 decimals")
        reward = RewardRule(month, day, back, before if before is not None and 0 <= before <= 100 else Decimal(0),
                            after if after is not None and 0 <= after <= 100 else Decimal(0))

    pr = data.get("payment_rounds")
    rounds = PaymentRounds(3, 1, 14)
    if not isinstance(pr, dict):
        problem("payment_rounds", None, "a mapping with first_round_month_of_quarter, first_round_day, "
                "follow_up_days (it is missing)")
    else:
        m, d, f = pr.get("first_round_month_of_quarter"), pr.get("first_round_day"), pr.get("follow_up_days")
        ok = True
        for key, v, lo, hi in (("first_round_month_of_quarter", m, 1, 3), ("first_round_day", d, 1, 28),
                               ("follow_up_days", f, 1, 92)):
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                problem(f"payment_rounds.{key}", v, f"a whole number, {lo}..{hi}")
                ok = False
        if ok:
            rounds = PaymentRounds(m, d, f)

    chain_numbers: dict[str, int] = {}
    cn = (data.get("invoice") or {}).get("chain_numbers") if isinstance(data.get("invoice"), dict) else None
    if not isinstance(cn, dict) or not cn:
        problem("invoice.chain_numbers", None, "a chain number for every programme (it is missing)")
    else:
        for p, n in cn.items():
            if p not in CONTRACT_PROGRAMMES:
                problem(f"invoice.chain_numbers.{p}", p, f"a programme the contract knows ({', '.join(CONTRACT_PROGRAMMES)})")
            elif not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 9:
                problem(f"invoice.chain_numbers.{p}", n, "a chain number of one digit (1..9)")
            elif n in chain_numbers.values():
                problem(f"invoice.chain_numbers.{p}", n, "a number of its own (another programme has it)")
            else:
                chain_numbers[p] = n

    defaults: dict[str, Decimal] = {}
    dm = (data.get("defaults") or {}).get("max_inclusion_pct") if isinstance(data.get("defaults"), dict) else None
    if not isinstance(dm, dict) or not dm:
        problem("defaults.max_inclusion_pct", None, "the care group's cap per programme (it is missing)")
    else:
        for p, v in dm.items():
            if p not in CONTRACT_PROGRAMMES:
                problem(f"defaults.max_inclusion_pct.{p}", p,
                        f"a programme the contract knows ({', '.join(CONTRACT_PROGRAMMES)})")
                continue
            defaults[p] = pct(f"defaults.max_inclusion_pct.{p}", v)

    # ---- contracts
    contracts: dict[tuple[str, int], Contract] = {}
    raw = data.get("contracts")
    if not isinstance(raw, dict) or not raw:
        problem("contracts", None, "at least one contract (none defined)")
        raw = {}
    for iid, years in raw.items():
        where = f"contracts.{iid}"
        if iid not in insurers:
            problem(where, iid, f"an insurer of insurers ({', '.join(insurers) or 'none defined'})")
        if not isinstance(years, dict) or not years:
            problem(where, None, "contracts per year (<year>: {signed_on, cap_basis, programmes})")
            continue
        for year, c in years.items():
            at = f"{where}.{year}"
            if not isinstance(year, int) or isinstance(year, bool) or not 2000 <= year <= 2100:
                problem(at, year, "a contract year (2000..2100)")
                continue
            if not isinstance(c, dict):
                problem(at, type(c).__name__, "a mapping with signed_on, cap_basis and programmes")
                continue
            signed = c.get("signed_on")
            if not isinstance(signed, date):
                problem(f"{at}.signed_on", signed, "a date (YYYY-MM-DD)")
                signed = date(year - 1, 1, 1)
            elif not date(year - 3, 1, 1) <= signed <= date(year, 12, 31):
                problem(f"{at}.signed_on", signed.isoformat(), f"a date from {year - 3}-01-01 to {year}-12-31")
            basis = c.get("cap_basis")
            if basis not in CAP_BASES:
                problem(f"{at}.cap_basis", basis, f"one of {', '.join(CAP_BASES)}")
                basis = CAP_BASES[0]
            terms: dict[str, ProgrammeTerms] = {}
            progs = c.get("programmes")
            if not isinstance(progs, dict) or not progs:
                problem(f"{at}.programmes", None, "the tariff and cap of at least one programme")
                progs = {}
            for p, t in progs.items():
                pa = f"{at}.programmes.{p}"
                if p not in CONTRACT_PROGRAMMES:
                    problem(pa, p, f"a programme the contract knows ({', '.join(CONTRACT_PROGRAMMES)})")
                    continue
                if not isinstance(t, dict):
                    problem(pa, type(t).__name__, "a mapping with annual_tariff_eur and max_inclusion_pct")
                    continue
                tariff = _decimal(t.get("annual_tariff_eur"), 2)
                if tariff is None or tariff < 0:
                    problem(f"{pa}.annual_tariff_eur", t.get("annual_tariff_eur"),
                            "a non-negative amount in euro with at most 2 decimals")
                    tariff = Decimal(0)
                terms[p] = ProgrammeTerms(tariff.quantize(Decimal("0.01")), pct(f"{pa}.max_inclusion_pct",
                                                                                t.get("max_inclusion_pct")))
            regio = c.get("regioprestatie_eur_per_patient_year")
            if regio is not None:
                d = _decimal(regio, 2)
                if d is None or d < 0:
                    problem(f"{at}.regioprestatie_eur_per_patient_year", regio,
                            "a non-negative amount in euro with at most 2 decimals")
                    d = None
                elif iid in insurers and not insurers[iid].regioprestatie_veelgebruikers:
                    problem(f"{at}.regioprestatie_eur_per_patient_year", regio,
                            "no amount: the insurer does not pay the regioprestatie",
                            fix=f"set regioprestatie_veelgebruikers: true under insurers.{iid}, or drop the amount")
                    d = None
                regio = None if d is None else d.quantize(Decimal("0.01"))
            contracts[(str(iid), year)] = Contract(str(iid), year, signed, basis, terms, regio)
    if problems:
        raise config_error(problems)
    return Contracts(insurers, contracts, reward, rounds, chain_numbers, defaults, str(path))


@lru_cache(maxsize=8)
def load_contracts(path: Path = CONTRACTS_FILE) -> Contracts:
    """Load and validate ``parameters/contracts.yaml`` (or ``path``)."""
    return parse_contracts(read_yaml(Path(path)), Path(path))
