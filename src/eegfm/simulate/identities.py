"""Fake patient and staff identities planted in EDF headers, to test de-identification.

Generated identities (from the built-in name lists, never real records) go where vendors write
protected health information: patient and recording fields and free-text annotations. Every
planted string is listed in ``identifiers.json`` for byte-searching the outputs; names have at
least five letters and are not English words, so a search does not match by accident.
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta

import numpy as np

from eegfm.simulate.edf import Annotation, edf_date, edf_plus_patient, edf_plus_recording

FIRST_NAMES_F = tuple(
    "Annika Beatriz Cordelia Dorotea Evangelina Fenella Giedre Halina Ingeborg Jolanta Katarzyna "
    "Leontyne Marisol Nadezhda Ottilie Perpetua".split()
)
FIRST_NAMES_M = tuple(
    "Anselm Bartholomeus Casimir Desmond Eberhard Florian Gunnar Horatio Ignatius Jaroslav Konstantin "
    "Leopold Maximilian Nikodem Osvaldo Radomir".split()
)
LAST_NAMES = tuple(
    "Abernathy Bergstrom Castellano Dabrowski Eriksdottir Fitzgerald Gallardo Hakkinen Iwaszkiewicz "
    "Jankowska Kowalczyk Lindqvist Marchetti Nakashima Oyelaran Papadakis Quintanilla Rasmussen "
    "Szczepanski Tokarczuk Underhill Vasquezmora Wisniewska Yamaguchi Zielinski".split()
)
# Formatted with p (the patient's Identity), tech (the technician's Staff) and dob_dots.
EDF_PLUS_TECH_NOTES = (
    "Tech {tech.first} {tech.last}: pt {p.first} {p.last} drowsy",
    "{p.first} {p.last} repositioned by tech {tech.last}",
    "Pt {p.last}, {p.first} (MRN {p.mrn}) awake, eyes closed",
    "Nurse at bedside, {p.first} {p.last} DOB {dob_dots}",
)


@dataclasses.dataclass(frozen=True)
class Identity:
    """A fake person: what a hospital system would write about a patient."""

    first: str
    last: str
    sex: str  # 'F' or 'M'
    birthdate: date
    mrn: str  # medical record number (digits)


@dataclasses.dataclass(frozen=True)
class Staff:
    first: str
    last: str


@dataclasses.dataclass(frozen=True)
class PlantedHeader:
    """Header fields and annotations carrying identifiers, plus the list of planted strings."""

    patient: str
    recording: str
    annotations: tuple[Annotation, ...]
    search_strings: tuple[str, ...]


def draw_identity(rng: np.random.Generator, recording_date: date) -> Identity:
    sex = "F" if rng.random() < 0.5 else "M"
    first = str(rng.choice(FIRST_NAMES_F if sex == "F" else FIRST_NAMES_M))
    age_days = int(rng.integers(18 * 365, 90 * 365))
    return Identity(
        first=first,
        last=str(rng.choice(LAST_NAMES)),
        sex=sex,
        birthdate=recording_date - timedelta(days=age_days),
        mrn=str(int(rng.integers(1_000_000, 9_999_999))),
    )


def draw_staff(rng: np.random.Generator) -> Staff:
    names = FIRST_NAMES_F + FIRST_NAMES_M
    return Staff(first=str(rng.choice(names)), last=str(rng.choice(LAST_NAMES)))


def draw_start(rng: np.random.Generator) -> datetime:
    """A recording start between 2012 and 2023, derived from the seed (never from the clock)."""
    day = date(2012, 1, 1) + timedelta(days=int(rng.integers(0, 12 * 365)))
    seconds = int(rng.integers(6 * 3600, 22 * 3600))
    return datetime(day.year, day.month, day.day) + timedelta(seconds=seconds)


def plant(
    rng: np.random.Generator,
    identity: Identity,
    technician: Staff,
    start: datetime,
    *,
    edf_plus: bool,
    equipment: str,
    duration_s: float,
) -> PlantedHeader:
    """Patient/recording fields (EDF+ structured or free text) and technician annotations."""
    iso = identity.birthdate.isoformat()
    dots = identity.birthdate.strftime("%d.%m.%Y")
    admin = f"EEG{int(rng.integers(10_000, 99_999))}"
    if edf_plus:
        patient = edf_plus_patient(identity.mrn, identity.sex, identity.birthdate, f"{identity.last} {identity.first}")
        recording = edf_plus_recording(start.date(), admin, f"{technician.last} {technician.first}", equipment)
        onsets = np.sort(rng.uniform(1.0, max(duration_s - 2.0, 1.5), 2))  # two technician notes
        templates = [EDF_PLUS_TECH_NOTES[int(k)] for k in rng.choice(len(EDF_PLUS_TECH_NOTES), 2, replace=False)]
        notes = tuple(
            Annotation(onset=round(float(o), 2), text=t.format(p=identity, tech=technician, dob_dots=dots))
            for o, t in zip(onsets, templates)
        )
        strings = (
            f"{identity.last}_{identity.first}",
            f"{technician.last}_{technician.first}",
            edf_date(identity.birthdate),
            identity.mrn,
            f"{identity.first} {identity.last}",
            dots,
        )
    else:
        patient = f"{identity.last}, {identity.first} DOB {iso} MRN {identity.mrn}"
        recording = f"EEG {start:%Y-%m-%d} {admin} tech {technician.first} {technician.last}"
        notes = ()
        strings = (f"{identity.last}, {identity.first}", iso, identity.mrn, f"{technician.first} {technician.last}")
    texts = (patient, recording, *(n.text for n in notes))
    candidates = (identity.last, identity.first, technician.last, *strings)
    used = [s for s in dict.fromkeys(candidates) if any(s in text for text in texts)]
    return PlantedHeader(patient=patient, recording=recording, annotations=notes, search_strings=tuple(used))
