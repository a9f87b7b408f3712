import mne
import numpy as np
import pytest

from eegfm.contract.channels import CANONICAL_CHANNELS, canonical_name, cap_positions, electrode_position
from eegfm.pipelines.signal.harmonize import (
    HarmonizeError,
    harmonize,
    interpolation_matrix,
    map_channels,
    microvolt_scale,
    plan_harmonization,
)


def _read(path, l_freq=0.5, h_freq=40.0):
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    raw.filter(l_freq, h_freq, verbose="error")
    return raw.ch_names, raw.get_data() * 1e6, raw.info["sfreq"]


def test_map_channels_sorts_eeg_aux_and_unknown(shared_data):
    names, _, _ = _read(shared_data / "eegmat" / "Subject00_1.edf")
    cmap = map_channels(names)
    assert set(cmap.canonical) == set(CANONICAL_CHANNELS) and not cmap.missing
    assert [names[i] for i in cmap.auxiliary["ecg"]] == ["ECG ECG"]
    assert cmap.unknown == ()  # 'EEG A2-A1' is a reference derivation, not scalp EEG


def test_duplicate_electrodes_are_an_error():
    with pytest.raises(HarmonizeError, match=r"duplicate channel: 'EEG T7-REF' and 'T3' are both electrode T7"):
        map_channels(["T3", "Fp1", "EEG T7-REF"])


CHB_MIT = [
    "FP1-F7",
    "F7-T7",
    "T7-P7",
    "P7-O1",
    "FP1-F3",
    "F3-C3",
    "C3-P3",
    "P3-O1",
    "FP2-F4",
    "F4-C4",
    "C4-P4",
    "P4-O2",
    "FP2-F8",
    "F8-T8",
    "T8-P8-0",
    "P8-O2",
    "FZ-CZ",
    "CZ-PZ",
    "P7-T7",
    "T7-FT9",
    "FT9-FT10",
    "FT10-T8",
    "T8-P8-1",
    "ECG",
]


def test_derivations_of_a_bipolar_montage_are_no_electrodes():
    cmap = map_channels(CHB_MIT)  # CHB-MIT's channel names as MNE reads them
    assert cmap.canonical == {} and cmap.extra_eeg == {}
    assert "FZ-CZ" in cmap.bipolar and "FP1-F7" in cmap.bipolar and len(cmap.bipolar) == 23
    assert {"T8-P8-0", "T8-P8-1"} <= set(cmap.bipolar)  # T8-P8 recorded twice, numbered as MNE numbers it
    assert cmap.unknown == () and cmap.auxiliary == {"ecg": [23]}
    # (the pipeline reconstructs the electrodes first: pipelines.signal.bipolar)
    with pytest.raises(
        HarmonizeError,
        match=r"only 0 of the 19 .*; 23 are bipolar derivations \(FP1-F7, F7-T7, "
        r"T7-P7, P7-O1 \.\.\.\), differences between two electrodes that give neither electrode's "
        r"signal: export the recording with a referential montage$",
    ):
        plan_harmonization(CHB_MIT)


def test_channels_against_one_electrode_are_referential():
    against_cz = [f"EEG {c}-Cz" for c in CANONICAL_CHANNELS if c != "Cz"]
    cmap = map_channels(against_cz)
    assert cmap.missing == ("Cz",) and cmap.bipolar == ()  # the reference itself: interpolated
    against_fcz = [
        f"{c}-FCz"
        for c in (
            "Fp1",
            "F3",
            "C3",
            "P3",
            "F7",
            "T7",
            "P7",
            "O1",
            "Fz",
            "Cz",
            "Pz",
            "Fp2",
            "F4",
            "C4",
            "P4",
            "F8",
            "T8",
            "P8",
            "O2",
        )
    ]
    assert set(map_channels(against_fcz).canonical) == set(CANONICAL_CHANNELS)
    # Ear and mastoid references differ between the sides and are still one referential montage.
    ears = [f"{c}-{'A1' if c[-1] in '1357' else 'A2'}" for c in CANONICAL_CHANNELS]
    assert set(map_channels(ears).canonical) == set(CANONICAL_CHANNELS)


def test_numbered_and_single_channel_recordings_are_refused_with_what_was_found(shared_data):
    bv = mne.io.read_raw_brainvision(shared_data / "formats" / "brainvision" / "test_NO.vhdr", verbose="error")
    with pytest.raises(HarmonizeError) as err:
        plan_harmonization(bv.ch_names)
    assert "only 0 of the 19 10-20 channels are present" in str(err.value)
    assert "'1', '2', '3'" in str(err.value) and "(+35 more)" in str(err.value)

    fif = mne.io.read_raw_fif(shared_data / "formats" / "fif" / "data_resting_EO_200Hz_raw.fif", verbose="error")
    with pytest.raises(HarmonizeError, match=r"only 2 of the 19 .* \(F4, Cz\); need at least 10"):
        plan_harmonization(fif.ch_names)


def test_complete_recordings_pass_through_unchanged(shared_data):
    names, data, _ = _read(shared_data / "eegmat" / "Subject00_1.edf")
    out = harmonize(data[:, :5000], names)
    assert out.data.shape == (19, 5000) and out.data.dtype == np.float32
    assert out.channel_mask.tolist() == [1] * 19 and out.interpolated == ()
    for row, name in enumerate(CANONICAL_CHANNELS):
        np.testing.assert_allclose(out.data[row], data[names.index(f"EEG {name}"), :5000], rtol=1e-6)
    np.testing.assert_allclose(out.auxiliary["ecg"], data[names.index("ECG ECG"), :5000], rtol=1e-6)


def test_missing_channels_are_interpolated_and_masked(shared_data):
    names, data, _ = _read(shared_data / "eegmat" / "Subject00_1.edf")
    keep = [i for i, n in enumerate(names) if n not in ("EEG Fz", "EEG Pz")]
    out = harmonize(data[keep, :5000], [names[i] for i in keep])
    assert out.interpolated == ("Fz", "Pz")
    assert out.channel_mask[CANONICAL_CHANNELS.index("Fz")] == 0
    assert out.channel_mask.sum() == 17
    true_fz = data[names.index("EEG Fz"), :5000]
    assert np.corrcoef(out.data[CANONICAL_CHANNELS.index("Fz")], true_fz)[0, 1] > 0.8


def test_out_receives_the_channels_in_place(shared_data):
    names, data, _ = _read(shared_data / "eegmat" / "Subject00_1.edf")
    keep = [i for i, n in enumerate(names) if n != "EEG Fz"]
    chunk, kept = data[keep, :5000], [names[i] for i in keep]
    buffer = np.full((20, 5000), np.nan, dtype=np.float32)  # 19 channels and a spare row
    out = harmonize(chunk, kept, out=buffer[:19])
    assert np.shares_memory(out.data, buffer)
    np.testing.assert_array_equal(buffer[:19], harmonize(chunk, kept).data)
    assert np.isnan(buffer[19]).all()
    with pytest.raises(ValueError, match=r"out: expected a float32 array of shape \(19, 5000\); got float64"):
        harmonize(chunk, kept, out=np.zeros((19, 5000)))


def test_spline_beats_neighbour_average_on_a_dense_cap(shared_data):
    # Hold out each canonical electrode of the 64-channel PhysioNet cap in turn and rebuild it
    # from the other 63 (10-10 electrodes serve as sources) vs the mean of its 4 nearest
    # neighbours. On a dense cap the spline should win on most channels and on average.
    names, data, sfreq = _read(shared_data / "eegmmi" / "S001R03.edf")
    data = data[:, int(5 * sfreq) : int(65 * sfreq)]
    positions = np.stack([electrode_position(n) for n in names])
    wins, gains = 0, []
    for target in CANONICAL_CHANNELS:
        t = next(i for i, n in enumerate(names) if canonical_name(n) == target)
        rest = [i for i in range(len(names)) if i != t]
        out = harmonize(data[rest], [names[i] for i in rest])
        spline = out.data[CANONICAL_CHANNELS.index(target)]
        dist = np.linalg.norm(positions - positions[t], axis=1)
        dist[t] = np.inf
        neighbours = data[np.argsort(dist)[:4]].mean(axis=0)
        r_spline = np.corrcoef(data[t], spline)[0, 1]
        r_neigh = np.corrcoef(data[t], neighbours)[0, 1]
        wins += r_spline > r_neigh
        gains.append(r_spline - r_neigh)
    assert wins >= 10, (wins, gains)
    assert np.mean(gains) > 0


def test_interpolation_matrix_is_a_weighted_average():
    matrix = interpolation_matrix(tuple(c for c in CANONICAL_CHANNELS if c != "C3"), ("C3",))
    assert matrix.shape == (1, 18)
    # A constant field (a pure reference offset) must interpolate to the same constant.
    assert matrix.sum() == pytest.approx(1.0, abs=1e-6)


def test_average_reference_and_units():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(19, 256)) + 50.0
    out = harmonize(data, list(CANONICAL_CHANNELS), reference="average")
    np.testing.assert_allclose(out.data.mean(axis=0), 0, atol=1e-4)
    with pytest.raises(ValueError, match=r"reference: expected one of 'keep', 'average'; got 'cz'"):
        harmonize(data, list(CANONICAL_CHANNELS), reference="cz")
    assert microvolt_scale("mV") == 1e3 and microvolt_scale("µV") == 1.0 and microvolt_scale("V") == 1e6
    with pytest.raises(
        HarmonizeError, match=r"channel 'TEMP': physical unit: expected one of uV, mV, V, nV; got 'degC'"
    ):
        microvolt_scale("degC", channel="TEMP")


def test_biosemi_abc_labels_are_placed_by_their_cap_not_taken_for_ten_twenty(shared_data):
    raw = mne.io.read_raw_edf(shared_data / "formats" / "edf" / "test_reduced.edf", verbose="error")
    # 'C3', 'F7' ... exist in this cap's A1..H16 labels, but they are BioSemi positions; letters up
    # to H are the 256-electrode cap (this file keeps 16 of each letter's 32).
    assert {"C3", "F7", "F8"} <= set(raw.ch_names)
    cmap = map_channels(raw.ch_names)
    assert cmap.cap == "biosemi256" and cmap.auxiliary["stim"] == [raw.ch_names.index("Status")]
    sites = {site: raw.ch_names[i] for site, i in cmap.canonical.items()}
    assert sites["Cz"] == "A1" and sites["C3"] != "C3" and sites.get("F7") != "F7"
    assert len(sites) == 10 and len(cmap.extra_eeg) == 128 - 10  # the other sites: no electrode within 7 degrees
    assert set(cmap.unknown) == {"I1", "I2", "I3", "I4", "I5", "I6", "I7", "I8", "Ergo-Left", "Ergo-Right"}
    _, matrix = plan_harmonization(raw.ch_names)
    assert matrix.shape == (9, 128)
    # A cap of other letters (A1..C32: BioSemi has no 96-electrode cap) has no layout here.
    abc96 = [f"{letter}{k}" for letter in "ABC" for k in range(1, 33)]
    assert map_channels(abc96).canonical == {} and map_channels(abc96).cap == ""
    with pytest.raises(HarmonizeError, match=r"only 0 of the 19.*letters A to C\), of a cap with no layout here"):
        plan_harmonization(abc96)


@pytest.mark.parametrize(
    "letters, cap, expected",
    [
        ("A", "biosemi32", {"Fp1": "A1", "F3": "A4", "C3": "A8", "Pz": "A13", "Fz": "A31", "Cz": "A32"}),
        ("AB", "biosemi64", {"Fp1": "A1", "F3": "A5", "T3": "A15", "Pz": "A31", "Fz": "B6", "Cz": "B16", "O2": "B32"}),
    ],
)
def test_biosemi_32_and_64_abc_labels_are_the_ten_ten_electrodes_of_their_cap(letters, cap, expected):
    # These caps carry 10-10 electrodes; ActiView labels them A1..A32 (and B1..B32) in its own
    # order. All 19 sites are recorded, though the cap draws F3 8 degrees from the idealized F3.
    labels = [f"{letter}{k}" for letter in letters for k in range(1, 33)]
    for recorded in (labels + ["EXG1", "Status"], labels[:-3]):  # a few left out still name the cap
        cmap = map_channels(recorded)
        assert cmap.cap == cap and {site: recorded[i] for site, i in cmap.canonical.items() if site in expected} == {
            k: v for k, v in expected.items() if v in recorded
        }
    cmap = map_channels(labels + ["EXG1", "Status"])
    assert not cmap.missing and cmap.unknown == ("EXG1",) and cmap.auxiliary == {"stim": [len(labels) + 1]}
    assert map_channels(labels, cap).canonical == cmap.canonical  # named by --montage, the same
    # Iz is neither used nor interpolated from, as in a recording that names it
    assert len(cmap.extra_eeg) == len(labels) - 19 - (cap == "biosemi64")
    # Too few labels name no cap: A1..A12, B1..B12
    assert map_channels([f"{letter}{k}" for letter in "AB" for k in range(1, 13)]).cap == ""


@pytest.mark.parametrize(
    "cap, spell, montage, expected",
    [
        # BioSemi's own 10-20 equivalents of the 128 cap's electrodes; its labels name the cap
        ("biosemi128", str, "auto", {"Cz": "A1", "Pz": "A19", "Fz": "C21", "T3": "D23", "T4": "B26"}),
        ("biosemi64", str, "auto", {"Cz": "B16", "F4": "B8", "T5": "A23"}),
        # EasyCap's numbered equidistant cap: 1 is Cz, 8 Fz, 14 Pz
        ("easycap-M10", str, "easycap-M10", {"Cz": "1", "Fz": "8", "Pz": "14"}),
        # EGI's 129-electrode net, whose vertex reference is named Cz
        ("GSN-HydroCel-129", str, "GSN-HydroCel-129", {"Cz": "Cz", "O1": "E70", "O2": "E83"}),
        # MGH's Neuromag cap, as a FIF names its channels: 'EEG 001' (Fp1), 'EEG 003' (Fp2)
        ("mgh70", lambda label: label.replace("EEG", "EEG "), "mgh70", {"Fp1": "EEG 001", "Fp2": "EEG 003"}),
    ],
)
def test_a_cap_recording_gives_the_ten_twenty_channels_it_was_made_from(shared_data, cap, spell, montage, expected):
    # eegmat's 19 channels spread over the cap's positions by the spherical spline, labelled as the
    # cap labels them: each site comes back as the electrode nearest it, or interpolated.
    names, data, _ = _read(shared_data / "eegmat" / "Subject00_1.edf")
    eeg = data[[names.index(f"EEG {c}") for c in CANONICAL_CHANNELS], :30000]
    labels = list(cap_positions(cap))
    spread = interpolation_matrix(CANONICAL_CHANNELS, tuple(f"{cap}:{label}" for label in labels)) @ eeg
    recorded = [spell(label) for label in labels]
    out = harmonize(spread, recorded, plan=plan_harmonization(recorded, montage=montage))
    cmap = map_channels(recorded, montage)
    assert cmap.cap == cap and {site: recorded[cmap.canonical[site]] for site in expected} == expected
    assert out.channel_mask.sum() == len(cmap.canonical) >= 10
    r = [np.corrcoef(out.data[i], eeg[i])[0, 1] for i in range(19)]
    assert min(r) > 0.9, dict(zip(CANONICAL_CHANNELS, np.round(r, 3)))
    # left and right are not swapped: C3 is C3's signal far more than C4's
    c3, c4 = CANONICAL_CHANNELS.index("C3"), CANONICAL_CHANNELS.index("C4")
    assert np.corrcoef(out.data[c3], eeg[c3])[0, 1] > np.corrcoef(out.data[c3], eeg[c4])[0, 1] + 0.1


def test_numbered_channels_need_their_cap_named_and_a_cap_only_places_its_own_labels():
    numbered = [str(k) for k in range(1, 62)]
    assert map_channels(numbered).canonical == {}  # numbers name no site: quarantined, not guessed
    egi = [f"E{k}" for k in range(1, 129)] + ["Cz"]  # E1 ... E32 could pass for a BioSemi cap's letter E
    assert map_channels(egi).cap == "" and set(map_channels(egi).canonical) == {"Cz"}
    assert map_channels(egi, "GSN-HydroCel-129").cap == "GSN-HydroCel-129"
    with pytest.raises(HarmonizeError, match="only 0 of the 19") as refused:
        plan_harmonization(numbered)
    assert "montage" not in str(refused.value)
    assert map_channels(numbered, "easycap-M10").cap == "easycap-M10"
    # A 10-20 recording in the same run keeps its names; a few of the cap's labels are not the cap.
    ten_twenty = [f"EEG {c}" for c in CANONICAL_CHANNELS]
    assert map_channels(ten_twenty, "easycap-M10").cap == "" and not map_channels(ten_twenty, "easycap-M10").missing
    with pytest.raises(
        HarmonizeError,
        match=r"--montage easycap-M10: 5 of the channel names are its electrodes' "
        r"labels, fewer than the 16 that place a recording by it",
    ):
        plan_harmonization(numbered[:5], montage="easycap-M10")
    with pytest.raises(
        ValueError,
        match=r"montage: expected one of 'auto', 'file', 'biosemi32', 'biosemi64', 'biosemi128'.*; got 'egi'",
    ):
        map_channels(numbered, "egi")
