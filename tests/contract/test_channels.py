import mne
import numpy as np
import pyedflib
import pytest

from eegfm.contract import channels as ch


def test_canonical_order_is_the_hms_order():
    assert ch.CANONICAL_CHANNELS == (
        "Fp1",
        "F3",
        "C3",
        "P3",
        "F7",
        "T3",
        "T5",
        "O1",
        "Fz",
        "Cz",
        "Pz",
        "Fp2",
        "F4",
        "C4",
        "P4",
        "F8",
        "T4",
        "T6",
        "O2",
    )
    assert len(set(ch.CANONICAL_CHANNELS)) == ch.N_CANONICAL == 19


@pytest.mark.parametrize("new, old", [("T7", "T3"), ("T8", "T4"), ("P7", "T5"), ("P8", "T6")])
def test_ten_ten_temporal_names_pin_to_ten_twenty(new, old):
    # MNE maps T5 -> T9; that would silently move a temporal-occipital electrode to the mastoid.
    assert ch.canonical_name(new) == old
    assert ch.canonical_name(old) == old
    assert ch.CANONICAL_TO_TEN_TEN[old] == new
    assert np.allclose(ch.electrode_position(new), ch.electrode_position(old))


def test_t9_and_t10_are_not_canonical():
    assert ch.canonical_name("T9") is None and ch.canonical_name("T10") is None
    assert not np.allclose(ch.electrode_position("T9"), ch.electrode_position("T5"))


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("EEG FP1-REF", "Fp1"),  # TUH, common reference
        ("EEG FP1-LE", "Fp1"),  # TUH, linked ears
        ("EEG Fp1-Ref", "Fp1"),  # Nihon Kohden
        ("Fp1.", "Fp1"),  # PhysioNet
        ("Cz..", "Cz"),
        ("EEG T7-REF", "T3"),
        ("t8", "T4"),
        ("P7.", "T5"),
        ("EEG Fz", "Fz"),
        ("FP2", "Fp2"),
        ("EEG O2-AVG", "O2"),
        # Linked ears or mastoids and averages, as systems spell them.
        ("Fp1-A1+A2", "Fp1"),
        ("EEG F3-(A1+A2)/2", "F3"),
        ("C3-A1/A2", "C3"),
        ("P3-M1M2", "P3"),
        ("O1-M1+M2", "O1"),
        ("Cz-CAR", "Cz"),
        ("Pz_REF", "Pz"),
        ("T4-Linked Ears", "T4"),
        ("Fp1 (A1)", "Fp1"),
        ("EEG F4 (REF)", "F4"),
        ("C4-CMS", "C4"),
        ("P4-LM", "P4"),
        ("O2-RM", "O2"),
        ("EEG F7-A12", "F7"),
        ("F8-Mastoids", "F8"),
        ("FP2-AVE", "Fp2"),
        ("Cz [REF]", "Cz"),
        ("T8-Common", "T4"),
        ("Fc5.", None),  # a 10-10 electrode, known but not one of the 19
        ("EEG 001", None),
        ("1", None),
        ("EKG", None),
    ],
)
def test_canonical_name_handles_clinical_spellings(raw, expected):
    assert ch.canonical_name(raw) == expected


@pytest.mark.parametrize(
    "raw, kind",
    [
        ("EKG", "ecg"),
        ("ECG ECG", "ecg"),
        ("EEG EKG1-REF", "ecg"),
        ("EOG LOC", "eog"),
        ("EMG chin", "emg"),
        ("PHOTIC-REF", "stim"),
        ("Fp1", None),
        ("EEG Fp1-Ref", None),
    ],
)
def test_auxiliary_channels_are_recognised(raw, kind):
    assert ch.auxiliary_kind(raw) == kind


def test_positions_are_unit_vectors_with_correct_anatomy():
    pos = ch.canonical_positions()
    assert pos.shape == (19, 3)
    assert np.allclose(np.linalg.norm(pos, axis=1), 1.0)
    idx = {n: i for i, n in enumerate(ch.CANONICAL_CHANNELS)}
    assert np.allclose(pos[idx["Cz"]], [0, 0, 1])
    # Left hemisphere has x < 0, right x > 0, midline x == 0; frontal y > 0, occipital y < 0.
    assert all(pos[idx[n], 0] < 0 for n in ch.LEFT_CHANNELS)
    assert all(pos[idx[n], 0] > 0 for n in ch.RIGHT_CHANNELS)
    assert all(abs(pos[idx[n], 0]) < 1e-9 for n in ch.MIDLINE_CHANNELS)
    assert pos[idx["Fp1"], 1] > pos[idx["F3"], 1] > pos[idx["C3"], 1] > pos[idx["P3"], 1]
    # Mirror symmetry: every left electrode mirrors its right partner.
    for left, right in [("Fp1", "Fp2"), ("F7", "F8"), ("T5", "T6"), ("C3", "C4")]:
        mirrored = pos[idx[left]] * [-1, 1, 1]
        assert np.allclose(mirrored, pos[idx[right]])


def test_positions_agree_with_a_real_head_template():
    # MNE ships a digitised 10-20 template; after centring and normalising, our idealised
    # positions should point the same way (within ~25 degrees) for every canonical channel.
    montage = mne.channels.make_standard_montage("colin27_1020")
    real = montage.get_positions()["ch_pos"]
    names = [ch.CANONICAL_TO_TEN_TEN.get(n, n) for n in ch.CANONICAL_CHANNELS]
    xyz = np.stack([real[n] for n in names])
    xyz = xyz - xyz.mean(axis=0)
    ours = ch.canonical_positions()
    ours = ours - ours.mean(axis=0)
    cos = np.sum(xyz * ours, axis=1) / np.linalg.norm(xyz, axis=1) / np.linalg.norm(ours, axis=1)
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 25


def test_every_channel_of_the_real_recordings_maps_as_expected(shared_data):
    eegmat = pyedflib.EdfReader(str(shared_data / "eegmat" / "Subject00_1.edf"))
    labels = eegmat.getSignalLabels()
    eegmat.close()
    mapped = {ch.canonical_name(lbl) for lbl in labels} - {None}
    assert mapped == set(ch.CANONICAL_CHANNELS)
    assert ch.auxiliary_kind("ECG ECG") == "ecg"

    mmi = pyedflib.EdfReader(str(shared_data / "eegmmi" / "S001R03.edf"))
    mmi_labels = [lbl for lbl in mmi.getSignalLabels() if lbl != "EDF Annotations"]
    mmi.close()
    assert len(mmi_labels) == 64
    # Every one of the 64 PhysioNet 10-10 electrodes has a position; 19 of them are canonical.
    assert all(ch.standard_name(lbl) is not None for lbl in mmi_labels), [
        lbl for lbl in mmi_labels if ch.standard_name(lbl) is None
    ]
    assert {ch.canonical_name(lbl) for lbl in mmi_labels} - {None} == set(ch.CANONICAL_CHANNELS)

    # This Nihon Kohden export is EDF+D (discontinuous), which pyedflib refuses; MNE reads it.
    nk = mne.io.read_raw_edf(shared_data / "formats" / "nihonkohden" / "MB0400FU.EDF", preload=False, verbose="error")
    nk_mapped = {ch.canonical_name(lbl) for lbl in nk.ch_names} - {None}
    assert nk_mapped == set(ch.CANONICAL_CHANNELS)


def test_numbered_channels_map_to_nothing(shared_data):
    raw = mne.io.read_raw_brainvision(
        shared_data / "formats" / "brainvision" / "test_NO.vhdr", preload=False, verbose="error"
    )
    assert all(ch.canonical_name(name) is None for name in raw.ch_names)


def test_a_derivation_is_two_electrodes_the_second_no_ear_or_reference_word():
    assert ch.derivation("EEG FP1-F7") == ("Fp1", "F7")
    assert ch.derivation("Fz - Cz") == ("Fz", "Cz")
    assert ch.derivation("T8-P8-1") == ("T8", "P8")  # a repeated name numbered as MNE numbers it
    assert ch.derivation("Fp1-0") is None
    for referential in ("EEG Fp1-REF", "Fp1-A1", "F4-M2", "EEG A2-A1", "Fp1", "Fp1-LE", "ECG1-ECG2"):
        assert ch.derivation(referential) is None, referential


def test_a_digitized_head_is_turned_onto_the_ten_twenty_sphere_by_its_nasion_and_ears():
    # The 10-10 positions, digitized as a head frame would hold them: tilted 15 degrees nose-up,
    # shifted 4 cm down, in metres; the fiducials 18 degrees below the Fpz-T7-Oz-T8 ring.
    tilt = np.radians(15.0)
    turn = np.array([[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]])

    def head(v):
        return tuple(float(x) for x in 0.095 * (turn @ v) - np.array([0.0, 0.0, 0.04]))

    names = ch.known_electrodes()
    digitized = ch.Digitized(
        {f"EEG {i:03d}": head(ch.electrode_position(n)) for i, n in enumerate(names)},
        head(ch._unit(108.0, 90.0)),
        head(ch._unit(108.0, 180.0)),
        head(ch._unit(108.0, 0.0)),
    )
    cap = ch.file_cap(digitized)
    positions = ch.cap_positions(cap)
    for i, name in enumerate(names):
        np.testing.assert_allclose(positions[f"EEG{i:03d}"], ch.electrode_position(name), atol=1e-9)
    assert ch.file_cap(digitized) == cap  # the same positions, the same cap
    mirrored = ch.Digitized(digitized.positions, digitized.nasion, digitized.rpa, digitized.lpa)
    assert ch.file_cap(mirrored) == ""  # no turn puts swapped ears where ears are
    flat = ch.Digitized(
        {k: (v[0], v[1], 0.0) for k, v in digitized.positions.items()}, digitized.nasion, digitized.lpa, digitized.rpa
    )
    assert ch.file_cap(flat) == ""  # a plane of points is no head


def test_a_biosemi_caps_electrodes_sit_on_the_sphere_of_the_ten_ten_positions():
    import mne

    for cap in ("biosemi128", "biosemi160", "biosemi256"):
        assert cap in ch.CAP_LAYOUTS
        raw = np.array(list(mne.channels.make_standard_montage(cap).get_positions()["ch_pos"].values()))
        radii = np.linalg.norm(raw, axis=1)
        assert radii.std() < 1e-6 * radii.mean()  # one sphere about the origin: its directions are positions
        assert np.allclose(ch.electrode_position(f"{cap}:A1"), ch.electrode_position("Cz"), atol=1e-6)
    # The 32 and 64 caps' ABC labels are their 10-10 electrodes in BioSemi's order
    assert ch.abc_ten_ten_names("biosemi64")["A5"] == "F3" and ch.abc_ten_ten_names("biosemi64")["B32"] == "O2"
    assert ch.abc_ten_ten_names("biosemi32")["A4"] == "F3" and ch.abc_ten_ten_names("biosemi128") == {}
    assert np.allclose(ch.electrode_position("biosemi64:B16"), ch.electrode_position("Cz"), atol=1e-6)
    with pytest.raises(KeyError, match="no electrode 'Z9' on cap 'biosemi128'"):
        ch.electrode_position("biosemi128:Z9")
    with pytest.raises(
        KeyError,
        match="cap: expected one of biosemi32, biosemi64, biosemi128, biosemi160, biosemi256, easycap-M10, "
        ".*; got 'egi'",
    ):
        ch.electrode_position("egi:E1")
