"""Planted identities: EDF+ syntax that strict readers accept, and a complete list of strings."""

from datetime import date, datetime

import numpy as np
import pytest

from eegfm.simulate.identities import (
    FIRST_NAMES_F,
    FIRST_NAMES_M,
    LAST_NAMES,
    draw_identity,
    draw_staff,
    draw_start,
    plant,
)


def _planted(edf_plus, seed=0):
    rng = np.random.default_rng(seed)
    start = draw_start(rng)
    identity = draw_identity(rng, start.date())
    return identity, plant(
        rng, identity, draw_staff(rng), start, edf_plus=edf_plus, equipment="XLTEK EEG32U", duration_s=300.0
    )


def test_edf_plus_fields_have_the_four_and_five_subfield_syntax():
    identity, planted = _planted(edf_plus=True)
    code, sex, birth, name = planted.patient.split(" ")
    assert (code, sex, name) == (identity.mrn, identity.sex, f"{identity.last}_{identity.first}")
    assert datetime.strptime(birth.title(), "%d-%b-%Y").date() == identity.birthdate
    words = planted.recording.split(" ")
    assert words[0] == "Startdate" and len(words) == 5 and words[-1] == "XLTEK_EEG32U"
    assert planted.annotations and all(0 < a.onset < 300 for a in planted.annotations)


@pytest.mark.parametrize("edf_plus", [True, False])
def test_every_search_string_is_planted_and_the_name_is_always_among_them(edf_plus):
    for seed in range(20):
        identity, planted = _planted(edf_plus, seed)
        texts = [planted.patient, planted.recording, *(a.text for a in planted.annotations)]
        assert identity.last in planted.search_strings
        for needle in planted.search_strings:
            assert any(needle in text for text in texts), needle
        assert all(len(field) <= 80 for field in texts[:2])


def test_identities_are_plausible_and_generated():
    for seed in range(50):
        rng = np.random.default_rng(seed)
        identity = draw_identity(rng, date(2020, 1, 1))
        assert 18 <= (date(2020, 1, 1) - identity.birthdate).days / 365.25 <= 91
        assert identity.first in (FIRST_NAMES_F if identity.sex == "F" else FIRST_NAMES_M)
        assert len(identity.mrn) == 7 and identity.mrn.isdigit()
    assert all(len(n) >= 5 for n in FIRST_NAMES_F + FIRST_NAMES_M + LAST_NAMES)
