"""The demo care group: a seeded, deterministic, realistic Dutch zorggroep (``spiegel demo-data``).

``generate(out)`` writes a dataset that follows the data contract (spec/his-extract.md):
``practices.csv``, ``extracts/<agb>/*.csv`` and ``payments.csv``, in the dialect real Dutch
HIS exports use (``;`` separated, decimal comma, ``YYYY-MM-DD``; the one MicroHIS practice
writes a UTF-8 BOM and ``DD-MM-YYYY`` dates, to exercise the loader). Beside the dataset it
writes ``<out>.ground_truth.csv``: every registration finding that docs/registration-rules.md
must produce for the reference quarter (the latest complete quarter before the extraction
date), plus the planted implausible values and the patients excluded by a recorded reason;
``<out>.mirror_truth.csv``: the planted care-use profiles the praktijkspiegel must find
(see :mod:`helpers.demo.plant`); and ``<out>.money_truth.csv``: the money of every practice x
programme x quarter x insurer and the regioprestatie (see :mod:`helpers.demo.payments`). Only
tests read those files. The history holds at least
``years`` full rolling years ending on the reference quarter's last day (the mirror's trend,
persistent frequent attenders), and most practices deliver a ``veelgebruikers_plan.csv``
(contract version 2) of five frequent attenders (one practice fewer, one none).

How the ground truth stays exact
--------------------------------
The population is generated *naturally clean* for the reference quarter: every adult in the
population with an active inclusion diagnosis (and no excluding one) is enrolled, with the GP
as main practitioner and an enrolment that starts after the diagnosis; nobody is in DM2 and
CVRM at once; enrolments end on the day a patient dies or leaves; every control of every
enrolled patient has its last plausible measurement inside its window (the measurement
series of a patient is built around an *anchor* date drawn inside that window), and every
enrolled patient sees the POH-S in the twelve months before the quarter's last day (same
trick). Defects are then planted on patients picked once (a patient carries one planted
kind), by changing exactly the row that makes the rule fire: an open enrolment of someone
who died, a removed enrolment, an ended one, a near-miss ICPC code, an anchor moved before
the window, and so on. The rules and code lists come from parameters/programmes.yaml and
parameters/codes.yaml (through helpers.rules.programmes), never from this package.

Everything is vectorised per practice (numpy); the per-practice random stream is derived
from (seed, practice number), so a practice does not change when another one does.

Modules, by what they generate
------------------------------
``constants``      demographics, epidemiology and care patterns; the contract's columns
``arrays``, ``text``  numpy helpers and date series; CSV text and the writer
``plan``           the dataset-level plan and the register of practices
``state``          :class:`~.state.PracticeState`: the named arrays one practice's steps share
``population``     patients, registration, leaving (death, moving), the patients table
``episodes``       diagnoses, natural enrolments, enrolment rows, other episodes, their tables
``plant``          the planted defects and their ground truth
``measurements``   controls' measurement series and values
``contacts``       GP, POH-GGZ and chain-care (POH-S) contacts; the plan patients
``prescriptions``  prescriptions and referrals
``payments``       payment rounds per programme, quarter and insurer (contracts.yaml), the money truth
``practice``       one practice: the steps in the order they draw from its random stream
``writer``         :func:`generate` (the dataset, output-folder safety) and :func:`edit_first_patient`
"""

from .constants import (GROUND_TRUTH_COLUMNS, GROUND_TRUTH_KINDS, LATEST_EXTRACTION, MARKER, PAYMENT_COLUMNS,
                        PRACTICE_COLUMNS, TABLE_COLUMNS)
from .writer import DemoSummary, edit_first_patient, generate

__all__ = ["generate", "edit_first_patient", "DemoSummary", "MARKER", "GROUND_TRUTH_COLUMNS", "GROUND_TRUTH_KINDS",
           "TABLE_COLUMNS", "PAYMENT_COLUMNS", "PRACTICE_COLUMNS", "LATEST_EXTRACTION"]
