"""The planted care-use profiles of the demo care group (helpers.demo.plant) are beyond chance,
and nothing else is.

An independent, plain-pandas mirror (not src/helpers/mirror): indirect standardisation by sex
x age band (0-4, 5-14, 15-24, 25-44, 45-64, 65-74, 75-84, 85+) over the twelve months ending on
the latest complete quarter's last day, reference = all practices; per patient-year registered
in the window; funnel limits at 99.8% widened for overdispersion as in
shared/reference/mirror-and-frequent-attenders.md §3 (SHMI: z = sqrt(E) ln(O/E) winsorised at
10/90%, phi, tau^2, limits exp(+-3.09 sqrt(1/E + tau^2))). A practice is flagged only outside
those limits and only when E >= 10.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.contract import VEELGEBRUIKERS_FILE, profile_ids
from helpers.demo.constants import CONTACT_KINDS, LOW_QUALITY_MEASURES, NON_MEDICAL, ROLES, SPECIALISMS
from helpers.demo.plant import ATC_MAIN_GROUPS
from helpers.quarter import Quarter

AGE_EDGES = [0, 5, 15, 25, 45, 65, 75, 85, 200]
Z998 = 3.09
FAR = pd.Timestamp("2200-01-01")


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep=";", dtype=str, keep_default_na=False, encoding="utf-8-sig")


def dates(s: pd.Series) -> pd.Series:
    iso = pd.to_datetime(s.where(s.str.fullmatch(r"\d{4}-\d{2}-\d{2}")), format="%Y-%m-%d", errors="coerce")
    dmy = pd.to_datetime(s.where(s.str.fullmatch(r"\d{2}-\d{2}-\d{4}")), format="%d-%m-%Y", errors="coerce")
    return iso.fillna(dmy)


def window_of(dataset: Path) -> tuple[pd.Timestamp, pd.Timestamp]:
    ext = dates(read(dataset / "practices.csv")["extraction_date"]).max().date()
    q = Quarter.latest_complete(ext)
    return pd.Timestamp(q.months_back_start(12)), pd.Timestamp(q.last_day)


def load(dataset: Path, start: pd.Timestamp, end: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """Patient-years per (practice, stratum) and the events of the window, all practices."""
    out = {"contacts": [], "referrals": [], "prescriptions": [], "patients": []}
    for agb in read(dataset / "practices.csv")["practice_agb"]:
        folder = dataset / "extracts" / agb
        p = read(folder / "patients.csv")
        frm = dates(p["registered_from"])
        until = dates(p["registered_until"]).fillna(FAR)
        dead = dates(p["deceased_on"]).fillna(FAR)
        lo = frm.clip(lower=start)
        hi = pd.concat([until, dead], axis=1).min(axis=1).clip(upper=end + pd.Timedelta(days=1))
        py = ((hi - lo).dt.days.clip(lower=0)) / 365.25
        age = end.year - p["birth_year"].astype(int)
        band = pd.cut(age, AGE_EDGES, right=False, labels=False)
        pat = pd.DataFrame({"practice_agb": agb, "patient_id": p["patient_id"], "stratum": p["sex"] + band.astype(str),
                            "py": py, "age": age})
        out["patients"].append(pat)
        for t in ("contacts", "referrals", "prescriptions"):
            df = read(folder / f"{t}.csv")
            d = dates(df["date"])
            df = df[(d >= start) & (d <= end)].copy()
            df["practice_agb"] = agb
            out[t].append(df.merge(pat[["patient_id", "stratum"]], on="patient_id"))
    return {k: pd.concat(v, ignore_index=True) for k, v in out.items()}


def measures(data: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Observed counts per (practice, stratum) for every measure: events or distinct patients."""
    c, r, rx = data["contacts"], data["referrals"], data["prescriptions"]

    def events(df):
        return df.groupby(["practice_agb", "stratum"]).size()

    def patients(df):
        return df.drop_duplicates(["practice_agb", "patient_id"]).groupby(["practice_agb", "stratum"]).size()

    out = {"contacten_totaal": events(c)}
    for k in CONTACT_KINDS:
        out[f"contacten_{k.replace('-', '_')}"] = events(c[c["kind"] == k])
    for role in ROLES:
        out[f"contacten_{role.replace('-', '_')}"] = events(c[c["role"] == role])
    out["verwijzingen_medisch_specialist"] = events(r[~r["specialism"].isin(NON_MEDICAL)])
    for s, _, _ in SPECIALISMS:
        out[f"verwijzing_{s.replace(' ', '_')}"] = events(r[r["specialism"] == s])
    out["antibiotica"] = patients(rx[rx["atc"].str.startswith("J01")])
    # a standardised count here, not the mirror's antibiotica_tweede_keus (a share of the antibiotics
    # patients, which the antibiotics practice dilutes): its number is not planted to move
    out["antibiotica_tweede_keus_patienten"] = patients(rx[rx["atc"].str.startswith("J01MA")
                                                           | (rx["atc"] == "J01CR02")])
    for g in ATC_MAIN_GROUPS:
        out[f"voorschrift_{g.lower()}"] = patients(rx[rx["atc"].str.startswith(g)])
    return out


def standardise(observed: pd.Series, py: pd.Series) -> pd.DataFrame:
    """O and E per practice: E = sum over strata of the practice's patient-years x the reference rate."""
    obs = observed.reindex(py.index, fill_value=0)
    rate = obs.groupby(level="stratum").sum() / py.groupby(level="stratum").sum()
    expected = py * rate.reindex(py.index.get_level_values("stratum")).fillna(0).to_numpy()
    return pd.DataFrame({"O": obs.groupby(level="practice_agb").sum(),
                         "E": expected.groupby(level="practice_agb").sum()})


def funnel_flags(oe: pd.DataFrame, z_limit: float = Z998) -> pd.Series:
    """+1 above, -1 below the overdispersion-adjusted limits, 0 inside (or E < 10)."""
    ok = (oe["E"] >= 10) & (oe["O"] > 0)
    sub = oe[ok]
    z = np.sqrt(sub["E"]) * np.log(sub["O"] / sub["E"])
    zw = z.clip(z.quantile(0.1), z.quantile(0.9))
    n = len(zw)
    phi = float((zw ** 2).sum() / n)
    w = sub["E"]  # w = 1/s^2, s = 1/sqrt(E)
    tau2 = max(0.0, (n * phi - (n - 1)) / (w.sum() - (w ** 2).sum() / w.sum())) if n * phi > n - 1 else 0.0
    half = z_limit * np.sqrt(1 / sub["E"] + tau2)
    ratio = sub["O"] / sub["E"]
    flag = pd.Series(0, index=oe.index)
    flag[sub.index[ratio > np.exp(half)]] = 1
    flag[sub.index[ratio < np.exp(-half)]] = -1
    return flag


@pytest.fixture(scope="module")
def mirror(demo_dataset):
    start, end = window_of(demo_dataset)
    data = load(demo_dataset, start, end)
    pats = data["patients"]
    py = pats.groupby(["practice_agb", "stratum"])["py"].sum()
    table = {m: standardise(o, py) for m, o in measures(data).items()}
    truth = read(Path(f"{demo_dataset}.mirror_truth.csv"))
    return data, table, truth


def test_the_mirror_truth_file(mirror, demo_dataset):
    _, table, truth = mirror
    assert list(truth.columns) == ["practice_agb", "measure", "direction", "planted_factor"]
    assert set(truth["direction"]) == {"higher", "lower", "none"}
    agbs = set(read(demo_dataset / "practices.csv")["practice_agb"])
    assert set(truth["practice_agb"]) <= agbs
    profiled = truth[~truth["measure"].isin(LOW_QUALITY_MEASURES)]
    assert profiled["practice_agb"].nunique() == 4
    # the lab measurements of the one practice planted below LOW_QUALITY: all lower
    low = truth[truth["measure"].isin(LOW_QUALITY_MEASURES)]
    assert low["practice_agb"].nunique() == 1 and set(low["measure"]) == set(LOW_QUALITY_MEASURES)
    assert set(low["direction"]) == {"lower"} and (low["planted_factor"].astype(float) < 1).all()
    assert (truth["measure"] == truth["measure"].str.lower()).all()  # the ids of parameters/mirror
    wanted = {"verwijzing_dermatologie", "antibiotica", "contacten_e_consult", "populatie_65plus",
              "e_consult_aandeel", "antibiotica_tweede_keus"}
    assert wanted <= set(truth.loc[truth["direction"] != "none", "measure"])
    assert {"contacten_totaal", "verwijzingen_medisch_specialist"} <= set(truth.loc[truth["direction"] == "none",
                                                                                     "measure"])


#: Unplanted practice x measure pairs outside the 99.8% limits that chance allows: 0.2% of the
#: pairs expected, at most 1% accepted (with ~500 pairs: a handful, never a pattern).
CHANCE_SHARE = 0.01


def _flags(table) -> dict[tuple[str, str], int]:
    found = {}
    for m, oe in table.items():
        for agb, f in funnel_flags(oe).items():
            if f:
                found[(agb, m)] = int(f)
    return found


def test_the_mirror_flags_every_planted_profile(mirror):
    _, table, truth = mirror
    planted = {(r.practice_agb, r.measure): (1 if r.direction == "higher" else -1)
               for r in truth.itertuples() if r.direction != "none" and r.measure in table}
    found = _flags(table)
    missed = {k: v for k, v in planted.items() if found.get(k) != v}
    assert not missed, f"planted but not flagged in its direction: {missed}"


def test_the_older_practice_is_not_flagged_after_standardisation(mirror):
    _, table, truth = mirror
    found = _flags(table)
    ordinary = [(r.practice_agb, r.measure) for r in truth.itertuples() if r.direction == "none"]
    assert len(ordinary) >= 3
    assert not [k for k in ordinary if k in found], [(k, found[k]) for k in ordinary if k in found]


def test_other_deviations_are_no_more_than_chance(mirror):
    _, table, truth = mirror
    planted = {(r.practice_agb, r.measure) for r in truth.itertuples() if r.direction != "none"}
    found = _flags(table)
    stray = sorted(k for k in found if k not in planted)
    pairs = sum(len(oe) for oe in table.values()) - len(planted)
    print("unplanted flags:", stray)
    assert len(stray) <= CHANCE_SHARE * pairs, stray
    # and no practice stands out on several unplanted measures
    per_practice = pd.Series([a for a, _ in stray], dtype=str).value_counts()
    assert per_practice.empty or per_practice.max() <= 2, per_practice.to_dict()


def test_planted_factors_are_what_the_brief_asks(mirror):
    _, table, truth = mirror
    prof = {r.measure: r.practice_agb for r in truth.itertuples() if r.direction == "higher"}
    oe = {m: table[m].loc[agb] for m, agb in prof.items() if m in table}
    assert 1.5 <= oe["verwijzing_dermatologie"].O / oe["verwijzing_dermatologie"].E <= 2.1
    assert 1.3 <= oe["antibiotica"].O / oe["antibiotica"].E <= 1.7
    assert 1.8 <= oe["contacten_e_consult"].O / oe["contacten_e_consult"].E <= 3.2


def test_the_older_practice_is_older_and_crude_high_but_standardised_ordinary(mirror):
    data, table, truth = mirror
    older = truth.loc[truth["measure"] == "populatie_65plus", "practice_agb"].iloc[0]
    pats = data["patients"]
    pats = pats[pats["py"] > 0]
    share = (pats["age"] >= 65).groupby(pats["practice_agb"]).mean()
    others = share.drop(older)
    assert 1.7 <= share[older] / others.mean() <= 2.4, share.to_dict()
    py = pats.groupby("practice_agb")["py"].sum()
    for m in ("contacten_totaal", "verwijzingen_medisch_specialist", "voorschrift_c"):
        crude = table[m]["O"] / py
        planted = truth.loc[(truth["measure"] == m) & (truth["direction"] != "none"), "practice_agb"]
        assert crude[older] > crude.drop([older, *planted]).max(), (m, crude.to_dict())
        assert funnel_flags(table[m])[older] == 0, m


def test_realistic_rates_and_every_code_appears(mirror):
    data, table, _ = mirror
    py = data["patients"]["py"].sum()
    c, r = data["contacts"], data["referrals"]
    assert set(c["kind"]) == set(CONTACT_KINDS) and set(c["role"]) == set(ROLES)
    assert set(r["specialism"]) == {s for s, _, _ in SPECIALISMS}
    assert 4.0 <= len(c) / py <= 6.5  # Nivel: ~5 contacts per patient-year incl. chain care
    assert 0.25 <= len(r) / py <= 0.35  # ~300 referrals per 1,000 per year


def test_frequent_attenders_persist_in_a_realistic_share(demo_dataset):
    """Top 10% by contacts within sex x age band, in each of the three rolling years before the
    reference quarter's end (patients registered the whole year): about 30% stay frequent the
    next year, and some are frequent in all three (persistent frequent attenders)."""
    start, end = window_of(demo_dataset)
    frequent = []
    for k in (2, 1, 0):
        data = load(demo_dataset, start - pd.DateOffset(years=k), end - pd.DateOffset(years=k))
        pats = data["patients"][data["patients"]["py"] >= 0.99]
        n = data["contacts"].groupby(["practice_agb", "patient_id"]).size().rename("n")
        pats = pats.join(n, on=["practice_agb", "patient_id"]).fillna({"n": 0})
        cut = pats.groupby("stratum")["n"].transform(lambda x: x.quantile(0.9))
        top = pats[pats["n"] > cut]
        assert 0.07 <= len(top) / len(pats) <= 0.11
        frequent.append(set(zip(top["practice_agb"], top["patient_id"])))
    for a, b in zip(frequent, frequent[1:]):
        assert 0.22 <= len(a & b) / len(a) <= 0.40
    persistent = frequent[0] & frequent[1] & frequent[2]
    assert 0.05 <= len(persistent) / len(frequent[2]) <= 0.25


def test_plan_patients_are_frequent_attenders(demo_dataset):
    practices = read(demo_dataset / "practices.csv")["practice_agb"]
    sizes = {}
    # picked among the frequent attenders of the year that ends four quarters before the reference
    # quarter's end, and taken into the plan in the three weeks after it (the year before is their
    # 0-meting; the reference year monitors them)
    start, _ = window_of(demo_dataset)
    start, end = start - pd.DateOffset(years=1), start - pd.Timedelta(days=1)
    data = load(demo_dataset, start, end)
    n = data["contacts"].groupby(["practice_agb", "patient_id"]).size()
    pats = data["patients"].join(n.rename("n"), on=["practice_agb", "patient_id"]).fillna({"n": 0})
    pats = pats[pats["py"] >= 0.99]  # registered the whole window, as the generator picks them
    # the generator sees one practice at a time: frequent within the practice's own sex x age bands
    pats["cut"] = pats.groupby(["practice_agb", "stratum"])["n"].transform(lambda x: x.quantile(0.9))
    for agb in practices:
        path = demo_dataset / "extracts" / agb / "veelgebruikers_plan.csv"
        if not path.exists():
            sizes[agb] = 0
            continue
        plan = read(path)
        sizes[agb] = len(plan)
        assert plan["profile"].isin(["", *profile_ids(VEELGEBRUIKERS_FILE)]).all() and (plan["ended_on"] == "").all()
        mine = pats[pats["practice_agb"] == agb].set_index("patient_id")
        chosen = mine.loc[plan["patient_id"]]
        assert (chosen["n"] > chosen["cut"]).all(), chosen[["n", "cut"]]
        assert dates(plan["selected_on"]).between(end + pd.Timedelta(days=1), end + pd.Timedelta(days=21)).all()
    counts = pd.Series(sizes).value_counts()
    assert counts.get(0) == 1 and counts.get(5) == len(practices) - 2 and counts.drop([0, 5]).sum() == 1


def test_chain_care_measured_shares_are_realistic(demo_dataset):
    """Per control: 1 - (missing + overdue in the ground truth) / enrolled in the population on
    the reference quarter's first day. Between about 80% and 98% across practices."""
    truth = read(Path(f"{demo_dataset}.ground_truth.csv"))
    start, end = window_of(demo_dataset)
    first = pd.Timestamp(Quarter.latest_complete(end.date() + pd.Timedelta(days=1)).first_day)
    missed = truth[truth["kind"].isin(["measurement_missing", "measurement_overdue"])]
    rows = []
    for agb in read(demo_dataset / "practices.csv")["practice_agb"]:
        folder = demo_dataset / "extracts" / agb
        e = read(folder / "enrolments.csv")
        p = read(folder / "patients.csv")
        s, en = dates(e["start_date"]), dates(e["end_date"]).fillna(FAR)
        gone = pd.concat([dates(p["registered_until"]).fillna(FAR), dates(p["deceased_on"]).fillna(FAR)],
                         axis=1).min(axis=1)
        in_pop = set(p.loc[(dates(p["registered_from"]) <= first) & (gone > first), "patient_id"])
        enrolled = e[(s <= first) & (en >= first) & e["patient_id"].isin(in_pop)]
        denom = enrolled.drop_duplicates(["patient_id", "programme"]).groupby("programme").size()
        m = missed[missed["practice_agb"] == agb].groupby(["programme", "control"])["patient_id"].nunique()
        for (prog, control), k in m.items():
            rows.append((agb, prog, control, 1 - k / denom[prog]))
    shares = pd.DataFrame(rows, columns=["practice_agb", "programme", "control", "share"])
    assert shares["share"].between(0.72, 0.995).all(), shares.sort_values("share").head()
    per_practice = shares.groupby("practice_agb")["share"].mean()
    assert per_practice.min() < 0.9 and per_practice.max() > 0.95, per_practice.to_dict()
    assert per_practice.between(0.8, 0.98).all(), per_practice.to_dict()
