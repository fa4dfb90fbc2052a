"""The demo generator (helpers.demo): deterministic, in the contract, realistic, and its ground
truth is exactly what docs/registration-rules.md finds.

One small care group (3 practices) is generated per module; the rules check below is an
independent, plain-pandas reading of docs/registration-rules.md (the warehouse SQL is
checked against the same ground truth in tests/spec/test_ground_truth.py).
"""

from __future__ import annotations

import filecmp
import os
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import demo
from helpers.demo import generate
from helpers.errors import ParameterError, SpiegelError
from helpers.rules.programmes import load_programmes
from helpers.quarter import Quarter

EXTRACTION = date(2026, 10, 5)
QUARTER = Quarter.latest_complete(EXTRACTION)  # 2026Q3

# The contract (spec/his-extract.md), written out here on purpose: the generator must follow the
# spec, not just whatever a module says.
CONTRACT_COLUMNS = {
    "practices": ["practice_agb", "name", "region", "hagro", "his_system", "fte_gp", "extraction_date"],
    "patients": ["patient_id", "birth_year", "sex", "postcode4", "insurer_uzovi", "registered_from",
                 "registered_until", "deceased_on"],
    "episodes": ["patient_id", "icpc", "start_date", "end_date"],
    "contacts": ["contact_id", "patient_id", "date", "kind", "role", "icpc"],
    "measurements": ["patient_id", "date", "nhg_code", "value", "unit"],
    "prescriptions": ["patient_id", "date", "atc", "duration_days"],
    "referrals": ["patient_id", "date", "specialism", "icpc"],
    "enrolments": ["patient_id", "programme", "start_date", "end_date", "main_practitioner"],
    "payments": ["practice_agb", "programme", "quarter", "insurer_uzovi", "patients_declared",
                 "patients_awarded", "amount_eur", "paid_on", "invoice_number"],
}
PRACTICE_TABLES = [t for t in CONTRACT_COLUMNS if t not in ("practices", "payments")]
CODE_LISTS = {
    ("patients", "sex"): {"M", "V", "O"},
    ("contacts", "kind"): {"consult", "consult_lang", "visite", "visite_lang", "telefonisch", "e-consult"},
    ("contacts", "role"): {"huisarts", "poh-s", "poh-ggz", "assistent"},
    ("enrolments", "programme"): {"DM2", "COPD", "CVRM", "ASTMA"},
    ("enrolments", "main_practitioner"): {"huisarts", "specialist", ""},
    ("referrals", "specialism"): {"cardiologie", "interne geneeskunde", "longziekten", "oogheelkunde",
                                  "dermatologie", "orthopedie", "neurologie", "chirurgie", "kno",
                                  "gynaecologie", "ggz", "fysiotherapie", "dietetiek"},
}
DATE_COLUMNS = {"registered_from", "registered_until", "deceased_on", "start_date", "end_date", "date",
                "extraction_date", "paid_on"}
FINDING_KINDS = ["diagnosis_not_enrolled", "enrolled_without_diagnosis", "main_practitioner_specialist",
                 "main_practitioner_unknown", "enrolled_deceased", "enrolled_deregistered", "enrolled_under_18",
                 "enrolled_dm2_and_cvrm", "enrolment_ended_with_diagnosis", "measurement_missing",
                 "measurement_overdue", "no_chain_contact"]


# ------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def demo_small(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_a") / "demo"
    summary = generate(out, practices=3, extraction_date=EXTRACTION)
    return out, summary


@pytest.fixture(scope="module")
def rules():
    return load_programmes()


def read_raw(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep=";", dtype=str, keep_default_na=False, encoding="utf-8-sig")


def parse_dates(s: pd.Series) -> pd.Series:
    """YYYY-MM-DD or DD-MM-YYYY (strict); empty -> NaT. Parses each distinct text once."""
    u = pd.Series(pd.unique(s))
    iso = pd.to_datetime(u.where(u.str.fullmatch(r"\d{4}-\d{2}-\d{2}")), format="%Y-%m-%d", errors="coerce")
    dmy = pd.to_datetime(u.where(u.str.fullmatch(r"\d{2}-\d{2}-\d{4}")), format="%d-%m-%Y", errors="coerce")
    lookup = dict(zip(u, iso.fillna(dmy)))
    return pd.to_datetime(s.map(lookup))


def read_table(out: Path, agb: str, name: str) -> pd.DataFrame:
    df = read_raw(out / "extracts" / agb / f"{name}.csv")
    for c in df.columns:
        if c in DATE_COLUMNS:
            df[c] = parse_dates(df[c])
    return df


@pytest.fixture(scope="module")
def data(demo_small):
    out, _ = demo_small
    practices = read_raw(out / "practices.csv")
    tables = {agb: {t: read_table(out, agb, t) for t in PRACTICE_TABLES} for agb in practices.practice_agb}
    return practices, tables


# ------------------------------------------------------------------------------ determinism, files

def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_same_seed_same_bytes(demo_small, tmp_path):
    out, _ = demo_small
    again = tmp_path / "demo"
    generate(again, practices=3, extraction_date=EXTRACTION)
    assert _files(out) == _files(again)
    for rel in _files(out):
        assert filecmp.cmp(out / rel, again / rel, shallow=False), rel
    assert filecmp.cmp(f"{out}.ground_truth.csv", f"{again}.ground_truth.csv", shallow=False)


def test_other_seed_other_data(demo_small, tmp_path):
    out, _ = demo_small
    other = tmp_path / "demo"
    generate(other, practices=3, seed=7, extraction_date=EXTRACTION)
    assert (out / "practices.csv").read_bytes() != (other / "practices.csv").read_bytes()
    assert (out / "payments.csv").read_bytes() != (other / "payments.csv").read_bytes()


def test_rewrite_replaces_and_leaves_nothing_behind(tmp_path):
    out = tmp_path / "demo"
    (out / "extracts" / "99999999").mkdir(parents=True)  # an old demo dataset with a stray practice
    (out / demo.MARKER).write_text("")
    generate(out, practices=1, extraction_date=EXTRACTION)
    assert "99999999" not in {p.name for p in (out / "extracts").iterdir()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo", "demo.ground_truth.csv", "demo.mirror_truth.csv",
                                                          "demo.money_truth.csv"]


def test_crash_leaves_old_dataset_and_no_half_one(tmp_path, monkeypatch):
    out = tmp_path / "demo"
    generate(out, practices=1, extraction_date=EXTRACTION)
    before = _files(out)
    calls = {"n": 0}
    real = demo.practice.make_practice

    def flaky(plan, info):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk full")
        return real(plan, info)

    monkeypatch.setattr(demo.practice, "make_practice", flaky)
    with pytest.raises(RuntimeError):
        generate(out, practices=3, extraction_date=EXTRACTION)
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo", "demo.ground_truth.csv", "demo.mirror_truth.csv",
                                                          "demo.money_truth.csv"]


# ------------------------------------------------------------------------------ what --out may replace

def _real_delivery(tmp_path: Path) -> Path:
    """A folder that is no demo dataset: a delivery, a warehouse and a note."""
    from _datasets import build
    from helpers.warehouse import Warehouse
    ds = build(tmp_path, name="delivery")
    Warehouse(ds / "warehouse.duckdb").ingest(ds)
    (ds / "notes.txt").write_text("do not lose me")
    return ds


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_folder_that_is_no_demo_dataset_is_refused_and_left_alone(tmp_path):
    ds = _real_delivery(tmp_path)
    before = _snapshot(tmp_path)
    with pytest.raises(ParameterError, match=rf"--out {ds} is a folder that was not written by `spiegel demo-data`.*--force"):
        generate(ds, practices=1, extraction_date=EXTRACTION)
    assert _snapshot(tmp_path) == before
    generate(ds, practices=1, extraction_date=EXTRACTION, force=True)
    assert (ds / demo.MARKER).is_file() and not (ds / "warehouse.duckdb").exists()


def test_a_file_is_refused_unless_forced(tmp_path):
    out = tmp_path / "report.pdf"
    out.write_bytes(b"%PDF-1.7 precious")
    with pytest.raises(ParameterError, match=rf"--out {out} is a file"):
        generate(out, practices=1, extraction_date=EXTRACTION)
    assert out.read_bytes() == b"%PDF-1.7 precious"
    generate(out, practices=1, extraction_date=EXTRACTION, force=True)
    assert (out / demo.MARKER).is_file()


def test_an_empty_folder_and_a_new_path_are_fine(tmp_path):
    (tmp_path / "empty").mkdir()
    generate(tmp_path / "empty", practices=1, extraction_date=EXTRACTION)
    generate(tmp_path / "new" / "demo", practices=1, extraction_date=EXTRACTION)
    assert (tmp_path / "empty" / "practices.csv").is_file() and (tmp_path / "new" / "demo" / demo.MARKER).is_file()


def test_a_demo_dataset_from_before_the_marker_is_replaced(tmp_path):
    out = tmp_path / "demo"
    generate(out, practices=1, extraction_date=EXTRACTION)
    (out / demo.MARKER).unlink()  # as `make demo` left it before markers existed
    generate(out, practices=1, seed=7, extraction_date=EXTRACTION)
    assert (out / demo.MARKER).is_file()


@pytest.mark.parametrize("where", ["data", "project", "cwd", "parent of cwd", "home", "root"])
def test_never_the_project_data_working_or_home_folder_even_forced(tmp_path, monkeypatch, where):
    from helpers import config
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("keep")
    monkeypatch.chdir(work)
    out = {"data": config.DATA_DIR, "project": config.PROJECT_ROOT, "cwd": Path("."),
           "parent of cwd": Path(".."), "home": Path.home(), "root": Path("/")}[where]
    for force in (False, True):
        with pytest.raises(ParameterError, match=rf"--out {out} (would replace|is a top-level folder)"):
            generate(out, practices=1, extraction_date=EXTRACTION, force=force)
    assert (work / "keep.txt").read_text() == "keep" and config.DATA_DIR.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]


def test_a_symbolic_link_is_replaced_only_when_forced_and_its_target_is_kept(tmp_path):
    ds = _real_delivery(tmp_path)
    link = tmp_path / "demo"
    link.symlink_to(ds, target_is_directory=True)
    before = _snapshot(ds)
    with pytest.raises(ParameterError, match="symbolic link"):
        generate(link, practices=1, extraction_date=EXTRACTION)
    generate(link, practices=1, extraction_date=EXTRACTION, force=True)
    assert not link.is_symlink() and (link / demo.MARKER).is_file() and _snapshot(ds) == before


def test_the_ground_truth_beside_it_gets_the_same_care(tmp_path):
    out = tmp_path / "demo"
    truth = tmp_path / "demo.ground_truth.csv"
    truth.write_text("invoice;amount\n1;2\n")
    with pytest.raises(ParameterError, match="is not a demo ground truth"):
        generate(out, practices=1, extraction_date=EXTRACTION)
    assert truth.read_text() == "invoice;amount\n1;2\n" and not out.exists()
    generate(out, practices=1, extraction_date=EXTRACTION, force=True)
    assert truth.read_text().startswith(";".join(demo.GROUND_TRUTH_COLUMNS))
    truth.unlink()
    truth.mkdir()
    with pytest.raises(ParameterError, match="is a folder or a link"):
        generate(out, practices=1, extraction_date=EXTRACTION, force=True)
    assert truth.is_dir()


@pytest.mark.parametrize("kwargs,match", [
    (dict(seed=-1), "seed -1 is negative"),
    (dict(extraction_date=date(1850, 1, 1)), "extraction date 1850-01-01 is outside"),
    (dict(extraction_date=date(2101, 1, 1)), "extraction date 2101-01-01 is outside"),
])
def test_values_the_generator_cannot_honour_are_refused(tmp_path, kwargs, match):
    with pytest.raises(ParameterError, match=match):
        generate(tmp_path / "demo", practices=1, **{"extraction_date": EXTRACTION, **kwargs})
    assert list(tmp_path.iterdir()) == []


def test_the_extraction_date_bounds_give_a_valid_dataset(tmp_path):
    """The earliest date the generator accepts still gives a delivery the contract accepts."""
    from helpers.warehouse import Warehouse
    earliest = demo.writer._earliest_extraction(3)
    generate(tmp_path / "demo", practices=1, extraction_date=earliest)
    report = Warehouse(tmp_path / "w.duckdb").ingest(tmp_path / "demo")
    assert report.ok, report.summary()


def test_write_error_at_the_last_step_keeps_the_old_dataset_and_is_one_line(tmp_path, monkeypatch):
    import errno
    out = tmp_path / "demo"
    generate(out, practices=1, extraction_date=EXTRACTION)
    before = _snapshot(tmp_path)

    def disk_full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))

    monkeypatch.setattr(demo.writer.os, "replace", disk_full)
    with pytest.raises(SpiegelError, match=rf"cannot write the demo dataset to {out}: No space left on device") as caught:
        generate(out, practices=2, extraction_date=EXTRACTION)
    assert "\n" not in str(caught.value)
    assert _snapshot(tmp_path) == before  # the old dataset whole, nothing half or hidden beside it


def test_summary(demo_small):
    out, s = demo_small
    assert s.practices == 3 and s.reference_quarter == str(QUARTER) and s.ground_truth == Path(f"{out}.ground_truth.csv")
    assert s.rows["patients"] == s.patients > 0 and all(v > 0 for v in s.rows.values())
    text = s.describe()
    assert "\n" not in text and "3 practices" in text and str(QUARTER) in text
    assert all(s.planted[k] > 0 for k in FINDING_KINDS)


# ------------------------------------------------------------------------------ the contract

def test_layout_headers_and_dialect(demo_small):
    out, _ = demo_small
    practices = read_raw(out / "practices.csv")
    assert sorted(p.name for p in out.iterdir()) == [demo.MARKER, "extracts", "payments.csv", "practices.csv"]
    assert sorted(p.name for p in (out / "extracts").iterdir()) == sorted(practices.practice_agb)
    boms = []
    for name in ("practices", "payments"):
        first = (out / f"{name}.csv").read_bytes().split(b"\n", 1)[0].decode()
        assert first.split(";") == CONTRACT_COLUMNS[name]
    for agb in practices.practice_agb:
        folder = out / "extracts" / agb
        names = sorted(p.name for p in folder.iterdir())
        optional = ["veelgebruikers_plan.csv"] if "veelgebruikers_plan.csv" in names else []
        assert names == sorted([f"{t}.csv" for t in PRACTICE_TABLES] + optional)
        if optional:  # contract version 2: the plan patients, frequent attenders of the practice
            plan = read_raw(folder / "veelgebruikers_plan.csv")
            assert list(plan.columns) == ["patient_id", "selected_on", "profile", "ended_on"]
            assert 1 <= len(plan) <= 5 and plan.patient_id.is_unique
        has_bom = set()
        for t in PRACTICE_TABLES:
            raw = (folder / f"{t}.csv").read_bytes()
            has_bom.add(raw.startswith(b"\xef\xbb\xbf"))
            header = raw.decode("utf-8-sig").split("\n", 1)[0]
            assert header.split(";") == CONTRACT_COLUMNS[t], (agb, t)
            assert b"\r" not in raw and b'"' not in raw
        assert len(has_bom) == 1  # a practice's files all have one, or none do
        boms.append(has_bom.pop())
    assert sum(boms) == 1  # exactly one practice exports with a BOM and Dutch dates
    bom_agb = practices.practice_agb[boms.index(True)]
    assert practices.set_index("practice_agb").his_system[bom_agb] == "MicroHIS"
    pat = read_raw(out / "extracts" / bom_agb / "patients.csv")
    assert pat.registered_from.str.fullmatch(r"\d{2}-\d{2}-\d{4}").all()
    other = practices.practice_agb[boms.index(False)]
    assert read_raw(out / "extracts" / other / "patients.csv").registered_from.str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()


def test_values_follow_the_contract(demo_small, data, rules):
    out, _ = demo_small
    practices, tables = data
    assert practices.practice_agb.str.fullmatch(r"01\d{6}").all() and practices.practice_agb.is_unique
    assert practices.fte_gp.str.fullmatch(r"\d+,\d").all()
    nhg = {c.nhg for c in rules.codes.measurements.values()}
    for agb, t in tables.items():
        ext = pd.Timestamp(practices.set_index("practice_agb").extraction_date[agb])
        p = t["patients"]
        assert p.patient_id.str.fullmatch(r"\d{6}").all() and p.patient_id.is_unique
        assert p.birth_year.astype(int).between(1890, ext.year).all()
        assert p.postcode4.str.fullmatch(r"\d{4}").all() and p.insurer_uzovi.str.fullmatch(r"\d{4}").all()
        ids = set(p.patient_id)
        for name, df in t.items():
            assert set(df.patient_id) <= ids, (agb, name)
            for (tab, col), allowed in CODE_LISTS.items():
                if tab == name:
                    assert set(df[col]) <= allowed, (agb, name, col, set(df[col]) - allowed)
            for col in df.columns:
                if col in DATE_COLUMNS:
                    raw_missing = df[col].isna()
                    assert (df[col][~raw_missing] >= pd.Timestamp("1900-01-01")).all()
                    assert (df[col][~raw_missing] <= ext).all(), (agb, name, col)
        assert t["contacts"].contact_id.is_unique
        for name in ("episodes", "contacts", "referrals"):
            codes = t[name].icpc[t[name].icpc != ""]
            assert codes.str.fullmatch(r"[A-Z]\d{2}(\.\d{2})?").all(), name
        assert t["prescriptions"].atc.str.fullmatch(r"[A-Z]\d{2}[A-Z0-9]*").all()
        assert t["prescriptions"].duration_days.str.fullmatch(r"\d+").all()
        m = t["measurements"]
        assert set(m.nhg_code.astype(int)) <= nhg and (m.value != "").all()
        assert not m.value.str.contains(r"\.").any()  # decimal comma, as the HIS writes it
        assert m.value.str.contains(",").any()
        for name, a, b in (("patients", "registered_from", "registered_until"), ("episodes", "start_date", "end_date"),
                           ("enrolments", "start_date", "end_date")):
            df = t[name]
            assert not (df[b] < df[a]).any(), (agb, name)
        dead = p.deceased_on.notna()
        assert (p.registered_until[dead] == p.deceased_on[dead]).all()  # deregistered on the day of death
        # nothing happens to a patient after death
        died = p.set_index("patient_id").deceased_on.dropna()
        for name in ("contacts", "measurements", "prescriptions", "referrals"):
            df = t[name]
            later = df.date > df.patient_id.map(died)
            assert not later.any(), (agb, name)


def test_loads_through_the_contract_module(demo_small):
    contract = pytest.importorskip("helpers.contract")
    out, _ = demo_small
    register = contract.read_practices(out)
    assert not register.problems and not register.file_problems and not register.warnings
    assert len(register.practices) == 3
    for _, row in register.practices.iterrows():
        loaded = contract.load_practice(out, row)
        assert not loaded.warnings
        assert min(loaded.row_counts().values()) > 0
    payments = contract.read_payments(out, register.practices.practice_agb)
    assert not payments.all_problems() and not payments.warnings and len(payments.payments) > 0


# ------------------------------------------------------------------------------ realism

def _population(p: pd.DataFrame, day: pd.Timestamp) -> pd.Series:
    return ((p.registered_from <= day) & (p.registered_until.isna() | (p.registered_until >= day))
            & (p.deceased_on.isna() | (p.deceased_on > day)))


def test_practice_register(data):
    practices, tables = data
    reg = practices.set_index("practice_agb")
    for agb, t in tables.items():
        ext = pd.Timestamp(reg.extraction_date[agb])
        listed = int(_population(t["patients"], ext).sum())
        assert 1500 <= listed <= 6000, (agb, listed)
        fte = float(reg.fte_gp[agb].replace(",", "."))
        assert abs(fte - listed / 2095) <= 0.15 * listed / 2095 + 0.1
        assert reg.name[agb] and reg.region[agb].startswith("Regio") and reg.hagro[agb]
        assert Quarter.latest_complete(ext.date()) == QUARTER
    assert practices.region.nunique() == 2 and practices.name.is_unique


def test_prevalence(data, rules):
    _, tables = data
    F = pd.Timestamp(QUARTER.first_day)
    n = 0
    count = {"dm2": 0, "copd": 0, "astma": 0}
    for t in tables.values():
        pop = set(t["patients"].patient_id[_population(t["patients"], F)])
        n += len(pop)
        e = t["episodes"]
        active = e[(e.start_date <= F) & (e.end_date.isna() | (e.end_date >= F)) & e.patient_id.isin(pop)]
        for g in count:
            count[g] += active[active.icpc.map(rules.codes.icpc[g].matches)].patient_id.nunique()
    pct = {g: 100 * c / n for g, c in count.items()}
    assert 5 <= pct["dm2"] <= 8, pct
    assert 2 <= pct["copd"] <= 4.5, pct
    assert 3.5 <= pct["astma"] <= 7, pct


def test_contact_rates(data):
    _, tables = data
    year = EXTRACTION.year - 1  # the last complete calendar year
    start, end = pd.Timestamp(year, 1, 1), pd.Timestamp(year, 12, 31)
    bands = [-1, 4, 17, 44, 64, 74, 84, 200]
    labels = ["0-4", "5-17", "18-44", "45-64", "65-74", "75-84", "85+"]
    contacts = pd.Series(0.0, index=labels)
    years = pd.Series(0.0, index=labels)
    zero = total = 0
    for t in tables.values():
        p = t["patients"].set_index("patient_id")
        lo = p.registered_from.clip(lower=start)
        hi = p.registered_until.fillna(end).clip(upper=end)
        expo = ((hi - lo).dt.days + 1).clip(lower=0) / 365.25
        band = pd.cut(year - p.birth_year.astype(int), bands, labels=labels)
        years += expo.groupby(band, observed=False).sum()
        c = t["contacts"]
        c = c[c.date.dt.year == year]
        contacts += c.patient_id.map(band).value_counts().reindex(labels, fill_value=0)
        whole = p.index[(p.registered_from <= start) & (p.registered_until.isna() | (p.registered_until > end))]
        per = c.patient_id.value_counts().reindex(whole, fill_value=0)
        zero += int((per == 0).sum())
        total += len(whole)
    rate = contacts / years
    overall = contacts.sum() / years.sum()
    assert 3.5 <= overall <= 5.5, overall
    assert rate["85+"] > rate["5-17"], rate.to_dict()
    assert rate["75-84"] > rate["45-64"] > rate["5-17"], rate.to_dict()
    assert 0.15 <= zero / total <= 0.32, zero / total  # Nivel: about 24% see nobody in a year


def test_chain_care_rhythm(data, rules):
    """POH-S several times a year per enrolled patient; HbA1c values around 53 mmol/mol."""
    _, tables = data
    year = EXTRACTION.year - 1
    start, end = pd.Timestamp(year, 1, 1), pd.Timestamp(year, 12, 31)
    visits, patients = 0, 0
    hba1c = rules.codes.measurements["hba1c"]
    values = []
    for t in tables.values():
        e = t["enrolments"]
        whole = set(e.patient_id[(e.start_date <= start) & (e.end_date.isna() | (e.end_date > end))])
        p = t["patients"]
        whole &= set(p.patient_id[_population(p, end)])
        c = t["contacts"]
        visits += int(((c.role == "poh-s") & (c.date.dt.year == year) & c.patient_id.isin(whole)).sum())
        patients += len(whole)
        m = t["measurements"]
        v = pd.to_numeric(m.value[m.nhg_code == str(hba1c.nhg)].str.replace(",", "."))
        values.append(v[v.between(*hba1c.plausible)])
    assert 2 <= visits / patients <= 4.5
    v = pd.concat(values)
    assert 48 <= v.mean() <= 58 and 6 <= v.std() <= 14


# ------------------------------------------------------------------------------ ground truth

@pytest.fixture(scope="module")
def truth(demo_small):
    out, _ = demo_small
    return read_raw(Path(f"{out}.ground_truth.csv"))


def test_ground_truth_file(truth, data, rules):
    _, tables = data
    assert list(truth.columns) == ["practice_agb", "patient_id", "programme", "kind", "control", "quarter"]
    assert set(truth.quarter) == {str(QUARTER)}
    assert set(FINDING_KINDS) <= set(truth.kind)
    assert {"excluded_by_reason", "implausible_value"} <= set(truth.kind)
    assert set(truth.programme) <= set(rules.programmes)
    ids = {agb: set(t["patients"].patient_id) for agb, t in tables.items()}
    for r in truth.itertuples():
        assert r.patient_id in ids[r.practice_agb]
        controls = {c.id for c in rules.programmes[r.programme].controls}
        if r.kind in ("measurement_missing", "measurement_overdue"):
            assert r.control in controls
        elif r.kind == "implausible_value":
            assert r.control in rules.codes.measurements
        else:
            assert r.control == ""
    assert not truth.duplicated().any()
    # every practice has some of each kind of work, the weak ones more
    assert truth.groupby("practice_agb").size().min() >= 10


def findings_by_the_rules(t: dict, rules, quarter: Quarter) -> set[tuple]:
    """docs/registration-rules.md, read literally, on one practice's tables."""
    F, L = pd.Timestamp(quarter.first_day), pd.Timestamp(quarter.last_day)
    p = t["patients"].set_index("patient_id")
    in_pop = _population(t["patients"], F).set_axis(p.index).to_dict()
    dead = p.deceased_on.notna() & (p.deceased_on <= F)
    deceased = dead.to_dict()
    dereg = (~dead & p.registered_until.notna() & (p.registered_until < F)).to_dict()
    age = (quarter.first_day.year - p.birth_year.astype(int)).to_dict()
    adult = {pid: a >= rules.minimum_age for pid, a in age.items()}

    e = t["episodes"]
    e = e[(e.start_date <= F) & (e.end_date.isna() | (e.end_date >= F))]
    groups = {g: set(e.patient_id[e.icpc.map(grp.matches)]) for g, grp in rules.codes.icpc.items()}

    def has(gs):
        return set().union(*[groups[g] for g in gs]) if gs else set()

    en = t["enrolments"]
    active = en[(en.start_date <= F) & (en.end_date.isna() | (en.end_date >= F))]
    active = active.sort_values(["start_date", "end_date"], ascending=[False, False], na_position="first")
    current = active.drop_duplicates(["patient_id", "programme"])  # latest start_date wins
    enrolled = {P: dict(zip(g.patient_id, g.main_practitioner)) for P, g in current.groupby("programme")}
    ended = en[en.end_date.notna() & (en.end_date < F)].sort_values(["end_date", "start_date"], ascending=False)
    ended = ended.drop_duplicates(["patient_id", "programme"])
    ended_mp = {P: dict(zip(g.patient_id, g.main_practitioner)) for P, g in ended.groupby("programme")}

    found = set()
    for P, prog in rules.programmes.items():
        enr = enrolled.get(P, {})
        incl, excl, diag = has(prog.inclusion), has(prog.excluded_if), has(prog.diagnosis_groups)
        for pid in incl - excl - set(enr):
            if in_pop[pid] and adult[pid]:
                if pid not in ended_mp.get(P, {}):
                    found.add((pid, P, "diagnosis_not_enrolled", ""))
                elif ended_mp[P][pid] != "specialist":
                    found.add((pid, P, "enrolment_ended_with_diagnosis", ""))
        for pid, mp in enr.items():
            if deceased[pid]:
                found.add((pid, P, "enrolled_deceased", ""))
            elif dereg[pid]:
                found.add((pid, P, "enrolled_deregistered", ""))
            elif in_pop[pid]:
                if age[pid] < rules.minimum_age:
                    found.add((pid, P, "enrolled_under_18", ""))
                if pid not in diag:
                    found.add((pid, P, "enrolled_without_diagnosis", ""))
                if mp == "specialist":
                    found.add((pid, P, "main_practitioner_specialist", ""))
                if mp == "":
                    found.add((pid, P, "main_practitioner_unknown", ""))
    for pid in set(enrolled.get("DM2", {})) & set(enrolled.get("CVRM", {})):
        if in_pop[pid]:
            found.add((pid, "CVRM", "enrolled_dm2_and_cvrm", ""))

    # controls: last plausible measurement on or before L per concept
    m = t["measurements"]
    by_nhg = {c.nhg: (k, c) for k, c in rules.codes.measurements.items()}
    m = m[(m.date <= L)].copy()
    m["concept"] = m.nhg_code.astype(int).map(lambda x: by_nhg.get(x, (None, None))[0])
    ok = pd.Series(False, index=m.index)
    for k, c in rules.codes.measurements.items():
        sel = m.concept == k
        if c.kind == "numeric":
            v = pd.to_numeric(m.value[sel].str.replace(",", "."), errors="coerce")
            ok[sel] = v.between(*c.plausible)
        else:
            ok[sel] = m.value[sel].str.strip().str.lower().isin([x.lower() for x in c.values])
    last = m[ok].groupby(["patient_id", "concept"]).date.max().to_dict()
    c = t["contacts"]
    since = pd.Timestamp(quarter.months_back_start(rules.chain_contact_months))
    chain = set(c.patient_id[c.role.isin(rules.chain_contact_roles) & (c.date >= since) & (c.date <= L)])
    reported_chain = set()
    for P, prog in rules.programmes.items():
        for pid in enrolled.get(P, {}):
            if not in_pop[pid]:
                continue
            for ctl in prog.controls:
                dates = [last[(pid, k)] for k in ctl.concepts if (pid, k) in last]
                if not dates:
                    found.add((pid, P, "measurement_missing", ctl.id))
                elif max(dates) < pd.Timestamp(quarter.months_back_start(ctl.interval_months)):
                    found.add((pid, P, "measurement_overdue", ctl.id))
            if pid not in chain and pid not in reported_chain:
                reported_chain.add(pid)  # programmes are visited in programmes.yaml order
                found.add((pid, P, "no_chain_contact", ""))
    return found


def test_ground_truth_is_exactly_what_the_rules_find(truth, data, rules):
    _, tables = data
    for agb, t in tables.items():
        mine = truth[truth.practice_agb == agb]
        planted = {(r.patient_id, r.programme, r.kind, r.control) for r in mine.itertuples()
                   if r.kind in FINDING_KINDS}
        found = findings_by_the_rules(t, rules, QUARTER)
        assert found == planted, (agb, sorted(found - planted)[:5], sorted(planted - found)[:5])
        excluded = {(r.patient_id, r.programme) for r in mine.itertuples() if r.kind == "excluded_by_reason"}
        assert excluded and not excluded & {(f[0], f[1]) for f in found}


def test_implausible_values_are_the_planted_ones(truth, data, rules):
    _, tables = data
    ws, L = pd.Timestamp(QUARTER.window_start), pd.Timestamp(QUARTER.last_day)
    for agb, t in tables.items():
        m = t["measurements"]
        bad = set()
        for k, c in rules.codes.measurements.items():
            sel = m.nhg_code == str(c.nhg)
            if c.kind == "numeric":
                v = pd.to_numeric(m.value[sel].str.replace(",", "."), errors="coerce")
                out = m[sel][~v.between(*c.plausible)]
            else:
                out = m[sel][~m.value[sel].str.lower().isin([x.lower() for x in c.values])]
            assert out.date.between(ws, L).all()  # typos only inside the reference window
            bad |= {(pid, k) for pid in out.patient_id}
        planted = {(r.patient_id, r.control) for r in truth[(truth.practice_agb == agb)
                                                            & (truth.kind == "implausible_value")].itertuples()}
        assert bad == planted


# ------------------------------------------------------------------------------ payments

def test_payments(demo_small, data, rules):
    from helpers import money
    from helpers.rules.contracts import load_contracts
    out, _ = demo_small
    practices, _ = data
    contracts = load_contracts()
    pay = read_raw(out / "payments.csv")
    chain = {p: str(n) for p, n in contracts.chain_numbers.items()}
    assert pay.invoice_number.str.fullmatch(r"\d{4}[1-4]-\d+-\d+").all()
    assert (pay.invoice_number.str[:4] == pay.quarter.str[:4]).all()
    assert (pay.invoice_number.str[4] == pay.programme.map(chain)).all()
    assert pay.invoice_number.is_unique
    assert set(pay.practice_agb) == set(practices.practice_agb)
    assert pay.insurer_uzovi.str.fullmatch(r"\d{4}").all() and pay.insurer_uzovi.nunique() >= 4
    declared, awarded = pay.patients_declared.astype(int), pay.patients_awarded.astype(int)
    assert (awarded <= declared).all() and (awarded < declared).any()
    # each round's amount: its awarded patients at the price of that insurer's contract of that year
    # (quarterly tariff plus the result reward), to the cent
    amount = pay.amount_eur.map(lambda v: money.cents(v.replace(",", ".")))
    def price(uzovi: str, quarter: str, programme: str) -> int:
        c = contracts.contract(uzovi, int(quarter[:4]))
        pct = money.reward_pct(c.signed_on, c.year, contracts.reward)
        return money.patient_price_cents(c.programmes[programme].annual_tariff_eur, pct)
    price = [price(u, q, p) for u, q, p in zip(pay.insurer_uzovi, pay.quarter, pay.programme)]
    assert (amount == awarded * pd.Series(price)).all()
    assert pay.amount_eur.str.fullmatch(r"\d+,\d{2}").all()
    paid = parse_dates(pay.paid_on)
    max_ext = parse_dates(practices.extraction_date).max()
    assert (paid <= max_ext).all()
    quarters = sorted(set(pay.quarter), key=Quarter.parse)
    assert quarters[-1] == str(QUARTER) and len(quarters) == 12  # three years of history
    # rounds: the first on the 1st of the quarter's third month, follow-ups every 14 days after it
    first = pay.quarter.map(lambda q: pd.Timestamp(money.first_round_date(q, contracts.rounds)))
    days = (paid - first).dt.days
    assert days.isin([0, 14, 28]).all() and (days > 0).any()
