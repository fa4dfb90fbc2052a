"""One demo practice, generated step by step on its own random stream.

The order of the steps is part of the output: every step draws from the practice's random
stream in turn, so moving a step changes every number after it (the dataset is byte-identical
for a seed only in this order). Planting comes after the natural enrolments and before the
final enrolment rows, measurements and contacts, which honour what was planted.
"""

from __future__ import annotations

from . import contacts, episodes, measurements, plant, population, prescriptions
from .plan import _PracticeInfo, _Plan
from .state import PracticeState

#: The steps, in the order they draw from the random stream.
STEPS = (
    population.patients,
    episodes.diagnoses,
    population.leaving,
    episodes.diagnosis_dates,
    episodes.natural_enrolments,
    plant.plant,
    plant.care_use_profile,
    episodes.enrolment_rows,
    episodes.other_episodes,
    measurements.measurements,
    contacts.contacts,
    contacts.plan_patients,
    prescriptions.prescriptions,
    prescriptions.referrals,
    population.patient_table,
    episodes.episode_and_enrolment_tables,
)


def make_practice(plan: _Plan, info: _PracticeInfo) -> PracticeState:
    """Generate one practice's extraction (``.tables``) and its ground truth (``.truth``)."""
    pr = PracticeState(plan, info)
    for step in STEPS:
        step(pr)
    return pr
