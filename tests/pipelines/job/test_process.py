"""The per-recording core on real recordings: fidelity, chunking, labels, bad data."""

import dataclasses

import mne
import numpy as np
import pandas as pd
import pyedflib
import pytest

from eegfm.contract.channels import CANONICAL_CHANNELS
from eegfm.pipelines.datasets import LabeledWindow, SourceItem, discover
from eegfm.pipelines.job.process import (
    Outcome,
    PreprocessConfig,
    RejectedWindow,
    Window,
    process_recording,
)
from eegfm.pipelines.signal.harmonize import interpolation_matrix
from tests.pipelines.conftest import write_edf_plus_d

KEY = b"a-test-key-of-32-bytes-for-hmac!"


def _run(item, config=None):
    config = config or PreprocessConfig()
    events = list(process_recording(item, KEY, config, config.config_hash()))
    outcome = events[-1]
    assert isinstance(outcome, Outcome) and not any(isinstance(e, Outcome) for e in events[:-1])
    windows = [e.record for e in events if isinstance(e, Window)]
    rejected = [e for e in events if isinstance(e, RejectedWindow)]
    return windows, rejected, outcome


@pytest.fixture(scope="module")
def eegmat_item(shared_data):
    # The folder, not the file: subject-info.csv beside the recordings supplies age and sex.
    items, _, _ = discover([str(shared_data / "eegmat")], dataset="eegmat")
    return next(i for i in items if i.path.endswith("Subject00_1.edf"))


def test_pipeline_window_matches_an_independent_mne_computation(eegmat_item, shared_data):
    windows, _, outcome = _run(eegmat_item)
    assert outcome.status == "processed" and outcome.windows == len(windows) == 18
    record = next(w for w in windows if float(w.window_start_s) == 90.0)

    raw = mne.io.read_raw_edf(shared_data / "eegmat" / "Subject00_1.edf", preload=True, verbose="error")
    raw.pick([f"EEG {c}" for c in CANONICAL_CHANNELS])
    raw.notch_filter([50.0], verbose="error")  # a no-op here: eegmat was notched at recording time
    raw.filter(0.5, 70.0, verbose="error")
    # npad=0: MNE's default FFT padding shifts the signal by ~2 ms mid-recording (see
    # tests/pipelines/signal/test_filters.py), which is MNE's artefact, not a property of resampling.
    raw.resample(256.0, npad=0, verbose="error")
    reference = raw.get_data()[:, 90 * 256 : 100 * 256] * 1e6
    ours = record.eeg.astype(np.float64)
    corr = [np.corrcoef(ours[i], reference[i])[0, 1] for i in range(19)]
    assert min(corr) >= 0.99, dict(zip(CANONICAL_CHANNELS, np.round(corr, 4)))
    assert np.allclose(ours.std(axis=1), reference.std(axis=1), rtol=0.05)


def test_chunk_length_does_not_change_the_output(eegmat_item):
    # Bounded-memory streaming must give the same windows as processing in one go.
    big, _, _ = _run(eegmat_item, PreprocessConfig(chunk_seconds=600.0))
    small, _, _ = _run(eegmat_item, PreprocessConfig(chunk_seconds=7.0))
    assert len(big) == len(small)
    for a, b in zip(big, small):
        assert float(a.window_start_s) == float(b.window_start_s)
        # Equal up to one float16 step (the streaming filter agrees with the one-shot one to
        # float32 rounding, which can flip the last bit of the stored float16).
        np.testing.assert_allclose(a.eeg.astype(np.float32), b.eeg.astype(np.float32), rtol=2**-10, atol=0.05)


def test_records_carry_labels_pseudonyms_and_clinical_whitelist(eegmat_item):
    windows, _, _ = _run(dataclasses.replace(eegmat_item, recording_label=0))
    rec = windows[0]
    assert rec.task == b"eegmat_rest_task" and int(rec.label) == 0
    assert rec.subject_id.startswith(b"sub-") and b"Subject" not in rec.subject_id
    assert (float(rec.age), rec.sex) == (21.0, b"F")
    assert rec.channel_mask.tolist() == [1] * 19
    assert rec.eeg.shape == (19, 2560) and rec.eeg.dtype == np.float16
    assert [float(w.window_start_s) for w in windows[:3]] == [0.0, 10.0, 20.0]
    assert [w.window_start_index for w in windows[:3]] == [0, 2560, 5120]
    assert rec.ecg is not None and rec.ecg.shape == (2560,)


def test_hms_labeled_windows_keep_votes_and_refuse_windows_past_the_end(shared_data):
    path = str(shared_data / "hms" / "train_eegs" / "1000913311.parquet")
    votes = (0.0, 3.0, 1.0, 0.0, 0.0, 0.0)
    item = SourceItem(
        path=path,
        dataset="hms",
        site="hms",
        subject_key="42",
        task="hms6",
        windows=(LabeledWindow(0.0, 50.0, 1, votes, "hms6"), LabeledWindow(20.0, 50.0, 1, votes, "hms6")),
    )
    windows, rejected, outcome = _run(item)
    assert len(windows) == 1 and windows[0].eeg.shape == (19, 50 * 256)
    assert windows[0].votes.tolist() == list(votes) and int(windows[0].label) == 1
    (late,) = rejected
    assert "window [20.00 s, 70.00 s) lies outside the recording (0 s, 50.00 s)" in late.reasons[0]
    assert outcome.status == "processed" and outcome.rejected_windows == 1


def test_windows_of_a_paused_recording_stay_inside_its_segments_on_its_clock(shared_data, tmp_path):
    # An EDF+D paused for 100 s after a minute: no window may glue the two minutes together, and
    # windows after the pause start where they were recorded (labels are given on that clock).
    source = shared_data / "eegmat" / "Subject00_1.edf"
    write_edf_plus_d(source, tmp_path / "paused.edf", [*range(60), *(k + 100.0 for k in range(60, 120))])
    write_edf_plus_d(source, tmp_path / "before.edf", range(60))
    write_edf_plus_d(source, tmp_path / "after.edf", range(60), first=60)
    config = PreprocessConfig(line_freq=50)
    events = (
        LabeledWindow(55.0, 10.0, 1, task="t"),
        LabeledWindow(165.0, 10.0, 0, task="t"),
        LabeledWindow(90.0, 10.0, 1, task="t"),
    )
    paused, _, outcome = _run(SourceItem(path=str(tmp_path / "paused.edf"), dataset="edf", site="s"), config)
    before, _, _ = _run(SourceItem(path=str(tmp_path / "before.edf"), dataset="edf", site="s"), config)
    after, _, _ = _run(SourceItem(path=str(tmp_path / "after.edf"), dataset="edf", site="s"), config)
    assert [float(w.window_start_s) for w in paused] == [0, 10, 20, 30, 40, 50, 160, 170, 180, 190, 200, 210]
    assert paused[6].window_start_index == 160 * 256
    assert (outcome.segments, outcome.eeg_seconds) == (2, 120.0)
    # Each minute's windows are those of the minute recorded alone: the filters restart at the gap.
    for ours, alone in zip(paused, before + after):
        np.testing.assert_array_equal(ours.eeg, alone.eeg)

    labeled, rejected, outcome = _run(
        SourceItem(path=str(tmp_path / "paused.edf"), dataset="edf", site="s", windows=events), config
    )
    assert [(float(w.window_start_s), int(w.label)) for w in labeled] == [(165.0, 0)]
    np.testing.assert_array_equal(labeled[0].eeg[:, :256], paused[6].eeg[:, 5 * 256 : 6 * 256])
    assert [r.reasons for r in rejected] == [
        ["window [55.00 s, 65.00 s) spans a gap in the recording (nothing recorded from 60.00 s to 160.00 s)"],
        ["window [90.00 s, 100.00 s) lies in a gap in the recording (nothing recorded from 60.00 s to 160.00 s)"],
    ]
    assert outcome.rejection_rules == {"recording_gap": 2}


def test_windows_the_recordings_own_annotations_mark_bad_are_rejected(shared_data, tmp_path):
    # MNE users mark artifacts by hand (raw.plot) as 'BAD_...' annotations and save the FIF.
    raw = mne.io.read_raw_edf(shared_data / "eegmat" / "Subject00_1.edf", preload=True, verbose="error")
    raw.pick([n for n in raw.ch_names if n.startswith("EEG ") and n != "EEG A2-A1"]).crop(0, 60)
    raw.set_annotations(
        mne.Annotations([12.0, 41.0, 55.0], [3.0, 0.0, 1.0], ["BAD_muscle Jane Doe", "bad blink", "Eyes closed"])
    )
    raw.save(tmp_path / "marked_raw.fif", verbose="error")
    windows, rejected, outcome = _run(SourceItem(path=str(tmp_path / "marked_raw.fif"), dataset="edf", site="s"))
    assert [float(w.window_start_s) for w in windows] == [0.0, 20.0, 30.0, 50.0]
    assert [(r.window_start_s, r.reasons) for r in rejected] == [
        (10.0, ["annotated_bad: the recording's annotations mark [12.00 s, 15.00 s) bad"]),
        (40.0, ["annotated_bad: the recording's annotations mark 41.00 s bad"]),
    ]
    assert outcome.rejection_rules == {"annotated_bad": 2}


def test_channels_an_export_filled_with_zeros_are_interpolated_not_every_window_rejected(shared_data, tmp_path):
    # A montage template exports the electrodes that were never applied as zeros: every window
    # had a flat channel, so the whole recording was rejected.
    import datetime

    from eegfm.simulate.edf import EDFHeader, EDFSignal, EDFWriter

    with pyedflib.EdfReader(str(shared_data / "eegmat" / "Subject00_1.edf")) as edf:
        names = [edf.getLabel(i) for i in range(19)]
        data = np.stack([edf.readSignal(i)[:30000] for i in range(19)])
    data[names.index("EEG C3")] = 0.0
    data[names.index("EEG O2")] = -12.5  # a constant offset is no signal either
    signals = tuple(
        EDFSignal(label=name, physical_min=-3000, physical_max=3000, samples_per_record=500) for name in names
    )
    with EDFWriter(tmp_path / "zeros.edf", EDFHeader(signals=signals, start=datetime.datetime(2020, 1, 1))) as out:
        out.write(data)
    windows, _, outcome = _run(SourceItem(path=str(tmp_path / "zeros.edf"), dataset="edf", site="s"))
    assert (outcome.status, outcome.constant, outcome.interpolated) == ("processed", ("EEG C3", "EEG O2"), ("C3", "O2"))
    assert len(windows) == 6 and all(w.channel_mask.sum() == 17 for w in windows)
    c3 = CANONICAL_CHANNELS.index("C3")
    assert all(np.ptp(w.eeg[c3].astype(np.float32)) > 5 for w in windows)  # interpolated from its neighbours


def _write_edf(path, names, data):
    import datetime

    from eegfm.simulate.edf import EDFHeader, EDFSignal, EDFWriter

    signals = tuple(
        EDFSignal(label=name, physical_min=-3000, physical_max=3000, samples_per_record=500) for name in names
    )
    with EDFWriter(path, EDFHeader(signals=signals, start=datetime.datetime(2020, 1, 1))) as out:
        out.write(data)


def test_a_window_with_a_few_bad_channels_is_kept_with_them_interpolated(shared_data, tmp_path):
    with pyedflib.EdfReader(str(shared_data / "eegmat" / "Subject00_1.edf")) as edf:
        names = [edf.getLabel(i) for i in range(19)]
        clean = np.stack([edf.readSignal(i)[:60000] for i in range(19)])
    loose = clean.copy()
    loose[names.index("EEG C3"), 25 * 500 : 48 * 500] = 0.0  # an electrode off for 23 s
    loose[names.index("EEG T4"), 70 * 500 : 75 * 500] = 1500.0 * np.sin(np.arange(2500) / 500 * 2 * np.pi * 0.7)
    loose[[names.index(f"EEG {c}") for c in ("O1", "O2", "P3", "P4")], 95 * 500 : 105 * 500] = 0.0  # too many
    _write_edf(tmp_path / "clean.edf", names, clean)
    _write_edf(tmp_path / "loose.edf", names, loose)
    config = PreprocessConfig(line_freq=50)
    reference, _, _ = _run(SourceItem(path=str(tmp_path / "clean.edf"), dataset="edf", site="s"), config)
    windows, rejected, outcome = _run(SourceItem(path=str(tmp_path / "loose.edf"), dataset="edf", site="s"), config)
    assert (outcome.repaired_windows, outcome.repaired) == (4, {"C3": 3, "T4": 1})
    assert [(r.window_start_s, r.reasons[0].split(":")[0]) for r in rejected] == [(90.0, "flat"), (100.0, "flat")]
    by_start = {float(w.window_start_s): w for w in reference}
    c3, t4 = CANONICAL_CHANNELS.index("C3"), CANONICAL_CHANNELS.index("T4")
    untouched = [i for i, name in enumerate(CANONICAL_CHANNELS) if name not in ("C3", "T4", "O1", "O2", "P3", "P4")]
    for window in windows:
        truth = by_start[float(window.window_start_s)]
        np.testing.assert_array_equal(window.eeg[untouched], truth.eeg[untouched])  # channels are repaired alone
        lost = {20.0: c3, 30.0: c3, 40.0: c3, 70.0: t4}.get(float(window.window_start_s))
        if lost is None:
            assert window.channel_mask.sum() == 19
            continue
        assert window.channel_mask[lost] == 0 and window.channel_mask.sum() == 18
        # The electrode's signal comes back from its neighbours, not exactly.
        ours, real = window.eeg[lost].astype(np.float64), truth.eeg[lost].astype(np.float64)
        assert 0.6 < np.corrcoef(ours, real)[0, 1] < 0.999
    off, _, _ = _run(
        SourceItem(path=str(tmp_path / "loose.edf"), dataset="edf", site="s"),
        PreprocessConfig(line_freq=50, repair_channels=0),
    )
    # Unrepaired, the three windows of the flat C3 are lost; the T4 excursion's window is kept,
    # flagged high_amplitude: amplitude alone never drops a window.
    assert len(off) == len(windows) - 3
    t4_window = next(w for w in off if float(w.window_start_s) == 70.0)
    assert t4_window.channel_mask.all() and t4_window.artifact_score > 0
    # Against the average reference the loose electrode is found all the same (it used to be
    # spread over every channel first, so the flat C3 went unnoticed), and the average is
    # taken after the repair.
    average, _, outcome = _run(
        SourceItem(path=str(tmp_path / "loose.edf"), dataset="edf", site="s"),
        PreprocessConfig(line_freq=50, reference="average"),
    )
    assert outcome.repaired == {"C3": 3, "T4": 1} and len(average) == len(windows)
    assert all(np.abs(w.eeg.astype(np.float32).mean(axis=0)).max() < 0.05 for w in average)


def test_channels_a_fif_marks_bad_are_left_out_and_interpolated(shared_data, tmp_path):
    raw = mne.io.read_raw_edf(shared_data / "eegmat" / "Subject00_1.edf", preload=True, verbose="error")
    raw.pick([n for n in raw.ch_names if n.startswith("EEG ") and n != "EEG A2-A1"]).crop(0, 30)
    raw.info["bads"] = ["EEG C3"]  # marked in MNE (raw.plot) and saved
    raw.save(tmp_path / "bads_raw.fif", verbose="error")
    windows, _, outcome = _run(SourceItem(path=str(tmp_path / "bads_raw.fif"), dataset="edf", site="s"))
    assert outcome.marked_bad == ("EEG C3",) and outcome.interpolated == ("C3",)
    c3 = CANONICAL_CHANNELS.index("C3")
    assert all(w.channel_mask[c3] == 0 and w.channel_mask.sum() == 18 for w in windows)


def test_an_epoched_file_gives_windows_of_its_epochs_or_says_they_are_too_short(shared_data, tmp_path):
    from tests.pipelines.readers.test_readers import _write_eeglab

    with pyedflib.EdfReader(str(shared_data / "eegmat" / "Subject00_1.edf")) as edf:
        names = [edf.getLabel(i).split(" ", 1)[-1] for i in range(19)]
        data = np.stack([edf.readSignal(i)[:25000] for i in range(19)])
    _write_eeglab(tmp_path / "ep.set", data.reshape(19, 10, 2500).transpose(0, 2, 1), names, 500.0)
    item = SourceItem(path=str(tmp_path / "ep.set"), dataset="edf", site="s")
    windows, _, outcome = _run(item)
    assert (outcome.status, outcome.stage) == ("quarantined", "windows")
    assert outcome.reason == (
        "ep.set: none of its 10 stretches recorded without a break (epochs, or the parts "
        "between gaps) is as long as one window: the longest is 5.0 s, windows are 10 s "
        "(--window_seconds)"
    )
    windows, _, outcome = _run(item, PreprocessConfig(window_seconds=5.0, stride_seconds=5.0))
    assert [float(w.window_start_s) for w in windows] == [5.0 * k for k in range(10)]
    assert (outcome.status, outcome.segments) == ("processed", 10)


def test_a_labeled_window_with_a_problem_is_rejected_alone(shared_data):
    path = str(shared_data / "hms" / "train_eegs" / "1000913311.parquet")
    votes = (0.0, 3.0, 1.0, 0.0, 0.0, 0.0)
    item = SourceItem(
        path=path,
        dataset="hms",
        site="hms",
        task="hms6",
        windows=(
            LabeledWindow(0.0, 50.0, 1, votes, "hms6"),
            LabeledWindow(
                0.0, 50.0, task="hms6", problem="train.csv line 3: lpd_vote: expected a number >= 0; got 'nan'"
            ),
            LabeledWindow(float("nan"), 50.0, task="hms6", problem="train.csv line 4: eeg_label_offset_seconds: ..."),
        ),
    )
    windows, rejected, outcome = _run(item)
    assert len(windows) == 1 and windows[0].votes.tolist() == list(votes)
    assert [(r.stage, r.reasons) for r in rejected] == [
        ("labels", ["train.csv line 3: lpd_vote: expected a number >= 0; got 'nan'"]),
        ("labels", ["train.csv line 4: eeg_label_offset_seconds: ..."]),
    ]
    assert outcome.status == "processed" and outcome.rejection_rules == {"bad_label": 2}


def test_a_recording_that_fails_part_way_is_quarantined_with_no_windows(eegmat_item, fails_on_second_chunk):
    calls = fails_on_second_chunk
    windows, _, outcome = _run(eegmat_item, PreprocessConfig(chunk_seconds=30.0))
    assert windows and len(calls) == 2  # windows went out before the failure
    assert (outcome.status, outcome.stage, outcome.windows) == ("quarantined", "unexpected", 0)
    assert "a library broke on this chunk" in outcome.reason


def test_a_gzipped_edf_gives_the_windows_of_the_edf_and_a_truncated_one_is_quarantined(eegmat_item, tmp_path):
    import gzip
    import hashlib

    packed = gzip.compress(open(eegmat_item.path, "rb").read(), compresslevel=1)
    path = tmp_path / "Subject00_1.EDF.gz"
    path.write_bytes(packed)
    plain, _, _ = _run(eegmat_item)
    windows, _, outcome = _run(dataclasses.replace(eegmat_item, path=str(path)))
    assert outcome.status == "processed" and outcome.source_sha256 == hashlib.sha256(packed).hexdigest()
    assert len(windows) == len(plain) and all(np.array_equal(a.eeg, b.eeg) for a, b in zip(windows, plain))
    cut = tmp_path / "cut.edf.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    _, _, outcome = _run(dataclasses.replace(eegmat_item, path=str(cut)))
    assert (outcome.status, outcome.stage) == ("quarantined", "read")
    assert outcome.reason.startswith("cut.edf.gz: not a valid gzip file (Compressed file ended")


def test_missing_channels_are_interpolated_and_marked(tmp_path, shared_data):
    frame = pd.read_parquet(shared_data / "hms" / "train_eegs" / "1000913311.parquet")
    frame[["Fz", "Pz"]] = np.nan  # a parquet must keep its columns; NaN is how they go missing
    path = tmp_path / "missing.parquet"
    frame.to_parquet(path)
    windows, rejected, outcome = _run(SourceItem(path=str(path), dataset="hms", site="hms"))
    # An all-NaN column is an electrode that was never recorded: interpolated and masked.
    assert outcome.status == "processed" and not rejected and outcome.interpolated == ("Fz", "Pz")
    mask = windows[0].channel_mask.tolist()
    assert [CANONICAL_CHANNELS[i] for i, m in enumerate(mask) if m == 0] == ["Fz", "Pz"]
    assert np.isfinite(windows[0].eeg.astype(np.float32)).all()


def test_nan_stretch_rejects_only_the_windows_it_touches(tmp_path, shared_data):
    frame = pd.read_parquet(shared_data / "hms" / "train_eegs" / "1000913311.parquet")
    frame.loc[2200:2400, "C3"] = np.nan  # 11.0-12.0 s at 200 Hz: inside the second window
    path = tmp_path / "gap.parquet"
    frame.to_parquet(path)
    windows, rejected, outcome = _run(SourceItem(path=str(path), dataset="hms", site="hms"))
    assert [float(w.window_start_s) for w in windows] == [0.0, 20.0, 30.0, 40.0]
    assert [r.window_start_s for r in rejected] == [10.0]
    assert "non_finite: " in rejected[0].reasons[0]
    assert outcome.status == "processed"


@pytest.mark.parametrize(
    "rel, stage, text",
    [
        ("formats/brainvision/test_NO.vhdr", "harmonize", "only 0 of the 19 10-20 channels"),
        ("formats/fif/sample_invalid_birthday_raw.fif", "harmonize", "Channels found: 'EEG 001'"),
        ("formats/edf/chtypes_edf.edf", "windows", "shorter than one window (5.0 s of EEG)"),
    ],
)
def test_unusable_recordings_end_quarantined_with_the_file_and_reason(shared_data, rel, stage, text):
    item = SourceItem(path=str(shared_data / rel), dataset="edf", site="formats")
    windows, _, outcome = _run(item)
    assert not windows and outcome.status == "quarantined" and outcome.stage == stage
    assert text in outcome.reason and rel.rsplit("/", 1)[1] in outcome.reason


def test_a_bipolar_montage_is_quarantined_naming_its_derivations(shared_data, tmp_path):
    """A CHB-MIT-style export (the double banana plus the midline chain, computed here from a real
    referential recording): 'FZ-CZ' is a derivation like the others, not Fz against a Cz reference."""
    raw = mne.io.read_raw_edf(shared_data / "eegmat" / "Subject00_2.edf", preload=True, verbose="error")
    volts = {name.split()[1].upper(): raw.get_data(picks=[name])[0] for name in raw.ch_names if name.startswith("EEG ")}
    chains = [
        ("FP1", "F7"),
        ("F7", "T3"),
        ("T3", "T5"),
        ("T5", "O1"),
        ("FP1", "F3"),
        ("F3", "C3"),
        ("C3", "P3"),
        ("P3", "O1"),
        ("FP2", "F4"),
        ("F4", "C4"),
        ("C4", "P4"),
        ("P4", "O2"),
        ("FP2", "F8"),
        ("F8", "T4"),
        ("T4", "T6"),
        ("T6", "O2"),
        ("FZ", "CZ"),
        ("CZ", "PZ"),
    ]
    signals = np.stack([(volts[a] - volts[b]) * 1e6 for a, b in chains])
    headers = [
        {
            "label": f"{a}-{b}",
            "dimension": "uV",
            "sample_frequency": 500,
            "physical_max": 3000,
            "physical_min": -3000,
            "digital_max": 32767,
            "digital_min": -32768,
            "transducer": "",
            "prefilter": "",
        }
        for a, b in chains
    ]
    path = tmp_path / "chb01_01.edf"
    pyedflib.highlevel.write_edf(str(path), signals, headers)
    _, _, outcome = _run(SourceItem(path=str(path), dataset="edf", site="chb"))
    assert outcome.status == "quarantined" and outcome.stage == "harmonize"
    # without the bridge between the hemispheres, three chains: the largest has 8 10-20 sites
    assert outcome.reason.startswith(
        "chb01_01.edf: a bipolar montage (18 derivations such as FP2-F4, F4-C4, C4-P4): its derivations form 3 "
        "chains with no electrode in common (C4, F4, F8, Fp2, O2, P4, P8, T8; C3, F3, F7, Fp1, O1, P3, P7, T7; Cz, "
        "Fz, Pz), each against a reference of its own, so only the largest gives electrode potentials: 8 of the 19 "
        "10-20 sites (Fp2, F4, C4, P4, F8, T4, T6, O2); need at least 10 (--min_channels)."
    )
    assert outcome.bipolar["left_out"][:2] == ["FP1-F7", "F7-T3"] and len(outcome.bipolar["electrodes"]) == 8


def _ten_twenty(recording):
    """eegmat's 19 10-20 channels (µV) in the contract's order: a real recording to rewrite."""
    from eegfm.pipelines.readers import open_recording

    with open_recording(recording) as reader:
        return reader.read()[[reader.info.ch_names.index(f"EEG {c}") for c in CANONICAL_CHANNELS]]


def _spread(eeg, cap, labels):
    """``eeg``'s 19 channels spread by the spherical spline over a cap's electrodes ``labels``: what
    that cap would have recorded."""
    from eegfm.pipelines.signal.harmonize import interpolation_matrix

    return interpolation_matrix(CANONICAL_CHANNELS, tuple(f"{cap}:{n}" for n in labels)) @ eeg


def _windows_like(events, reference, n=6, min_r=0.9):
    """``events``' windows by start, checked against ``reference``'s (the recording they were made
    from): the same n starts, each channel correlating above ``min_r`` with its own."""
    windows = {w.record.window_start_index: w.record for w in events if isinstance(w, Window)}
    made_from = {w.record.window_start_index: w.record for w in reference if isinstance(w, Window)}
    assert sorted(windows) == sorted(made_from) and len(windows) == n
    for start, record in windows.items():
        r = [
            np.corrcoef(record.eeg[i].astype(np.float32), made_from[start].eeg[i].astype(np.float32))[0, 1]
            for i in range(19)
        ]
        assert min(r) > min_r, np.round(r, 3)
    return windows


def test_a_biosemi_abc_recording_is_written_with_the_electrodes_its_cap_puts_at_each_site(shared_data):
    # 6 s of a 256-electrode BioSemi cap, 128 of its electrodes kept; A1 (Cz) and a few others are
    # at another sampling rate and left out, so 8 sites have an electrode within 7 degrees.
    path = shared_data / "formats" / "edf" / "test_reduced.edf"
    config = PreprocessConfig(window_seconds=5.0, stride_seconds=5.0)
    *_, refused = process_recording(SourceItem(str(path), "edf", "lab"), b"k" * 32, config, "h")
    assert refused.stage == "harmonize" and "only 8 of the 19 10-20 channels are present" in refused.reason
    assert (
        "the labels are BioSemi cap positions (biosemi256): a 10-20 site is present where a recorded "
        "electrode lies within 7 degrees of it; signals at another sampling rate, left out: A1, A2,"
    ) in refused.reason
    config = dataclasses.replace(config, min_channels=8)
    *windows, outcome = process_recording(SourceItem(str(path), "edf", "lab"), b"k" * 32, config, "h")
    assert outcome.status == "processed" and len(windows) == outcome.windows + outcome.rejected_windows == 1
    assert outcome.cap == "biosemi256" and sorted(outcome.cap_sites) == sorted(
        ["F3", "C3", "T3", "O1", "Fp2", "F8", "T6", "O2"]
    )
    assert outcome.cap_sites["C3"] == "G16" and outcome.cap_sites["O2"] == "B9"  # not the labels 'C3', 'O2'
    assert set(outcome.interpolated) == set(CANONICAL_CHANNELS) - set(outcome.cap_sites)
    assert isinstance(windows[0], Window)
    mask = dict(zip(CANONICAL_CHANNELS, np.asarray(windows[0].record.channel_mask).tolist()))
    assert {site for site, m in mask.items() if m} == set(outcome.cap_sites)


def test_a_biosemi_64_bdf_labelled_a1_to_b32_gives_the_windows_of_its_ten_twenty_electrodes(shared_data, tmp_path):
    # BioSemi's ActiView names a 64-electrode cap's channels A1..B32 in a BDF: eegmat's 19 channels
    # recorded at the cap's 10-20 electrodes (A5 is F3, B16 Cz), the 45 others spread from them.
    from eegfm.contract.channels import abc_ten_ten_names
    from eegfm.pipelines.signal.harmonize import interpolation_matrix
    from tests.pipelines.readers.test_edf import _write_bdf

    edf = shared_data / "eegmat" / "Subject00_2.edf"
    eeg = _ten_twenty(edf)
    eeg = eeg[:, : eeg.shape[1] // 500 * 500]
    ten_ten = abc_ten_ten_names("biosemi64")
    site = {name: {"T7": "T3", "T8": "T4", "P7": "T5", "P8": "T6"}.get(name, name) for name in ten_ten.values()}
    others = tuple(name for name in ten_ten.values() if site[name] not in CANONICAL_CHANNELS)
    around = dict(zip(others, interpolation_matrix(CANONICAL_CHANNELS, others) @ eeg))
    spread = np.stack(
        [around[name] if name in around else eeg[CANONICAL_CHANNELS.index(site[name])] for name in ten_ten.values()]
    )
    bdf = tmp_path / "cap64.bdf"
    _write_bdf(bdf, np.vstack([spread, np.zeros((1, spread.shape[1]))]), 500, [*ten_ten, "Status"])

    config = PreprocessConfig()
    *events, outcome = process_recording(SourceItem(str(bdf), "edf", "lab"), b"k" * 32, config, "h")
    *reference, _ = process_recording(SourceItem(str(edf), "edf", "lab"), b"k" * 32, config, "h")
    assert outcome.status == "processed" and outcome.cap == "biosemi64" and outcome.interpolated == ()
    assert outcome.cap_sites["F3"] == "A5" and outcome.cap_sites["Cz"] == "B16" and outcome.cap_sites["T3"] == "A15"
    windows = {w.record.window_start_index: w.record for w in events if isinstance(w, Window)}
    made_from = {w.record.window_start_index: w.record for w in reference if isinstance(w, Window)}
    assert sorted(windows) == sorted(made_from) and len(windows) == 6
    for start, record in windows.items():
        ours, theirs = record.eeg.astype(np.float32), made_from[start].eeg.astype(np.float32)
        assert np.asarray(record.channel_mask).all()
        np.testing.assert_allclose(ours, theirs, atol=0.05 + 2e-3 * np.abs(theirs).max())


def test_an_egi_mff_recording_is_placed_by_its_nets_coordinates_or_its_named_net(shared_data, tmp_path):
    # eegmat's 19 channels spread over EGI's 129-sensor HydroCel net, saved as Net Station saves a
    # recording: a folder x.mff, sensors E1..E128 against the vertex reference (all zeros).
    from eegfm.contract.channels import cap_positions
    from tests.pipelines.readers.test_readers import _mff

    edf = shared_data / "eegmat" / "Subject00_2.edf"
    eeg = _ten_twenty(edf)
    labels = list(cap_positions("GSN-HydroCel-129"))[:128]
    spread = _spread(eeg, "GSN-HydroCel-129", labels)
    folder = _mff(tmp_path / "night.mff", np.vstack([spread, np.zeros((1, spread.shape[1]))]))
    item = SourceItem(str(folder), "edf", "lab")

    *_, named = process_recording(item, b"k" * 32, PreprocessConfig(), "h")
    assert named.stage == "harmonize" and "Channels found: 'E1', 'E2'" in named.reason  # numbers say nothing
    *by_net, net = process_recording(item, b"k" * 32, PreprocessConfig(montage="GSN-HydroCel-129"), "h")
    *events, outcome = process_recording(item, b"k" * 32, PreprocessConfig(montage="file"), "h")
    *reference, _ = process_recording(SourceItem(str(edf), "edf", "lab"), b"k" * 32, PreprocessConfig(), "h")
    assert net.status == outcome.status == "processed" and net.cap == "GSN-HydroCel-129" and outcome.cap == "file"
    assert outcome.cap_sites["O1"] == net.cap_sites["O1"] == "E70" and outcome.cap_sites["C3"] == "E36"
    # the reference sensor sits at Cz, flat: left out, Cz interpolated
    assert "VREF" in outcome.constant and "Cz" in outcome.interpolated
    assert outcome.source_sha256 == net.source_sha256 and len(outcome.source_sha256) == 64
    for got in (by_net, events):
        _windows_like(got, reference)


def test_numbered_channels_of_a_named_cap_give_the_windows_of_the_recording_they_were_made_from(shared_data, tmp_path):
    # eegmat's 19 channels spread over EasyCap's numbered M10 cap (1 ... 61), written as BrainVision.
    from eegfm.contract.channels import cap_positions
    from tests.pipelines.readers.test_readers import _brainvision

    edf = shared_data / "eegmat" / "Subject00_2.edf"
    eeg = _ten_twenty(edf)
    labels = list(cap_positions("easycap-M10"))
    spread = _spread(eeg, "easycap-M10", labels)
    header = _brainvision(tmp_path, labels, spread.astype(np.float32))
    *_, refused = process_recording(SourceItem(str(header), "edf", "lab"), b"k" * 32, PreprocessConfig(), "h")
    assert refused.stage == "harmonize" and "only 0 of the 19 10-20 channels are present" in refused.reason

    config = PreprocessConfig(montage="easycap-M10")
    *events, outcome = process_recording(SourceItem(str(header), "edf", "lab"), b"k" * 32, config, "h")
    *reference, _ = process_recording(SourceItem(str(edf), "edf", "lab"), b"k" * 32, config, "h")
    assert outcome.status == "processed" and outcome.cap == "easycap-M10" and outcome.cap_sites["Cz"] == "1"
    for record in _windows_like(events, reference).values():
        assert np.asarray(record.channel_mask).sum() == len(outcome.cap_sites)


def test_a_fif_with_digitized_positions_is_placed_by_them_where_its_names_say_nothing(shared_data, tmp_path):
    # eegmat's 19 channels spread over MGH's 70-electrode cap and saved as a Neuromag FIF does:
    # channels 'EEG 001' ..., positions digitized in the head frame set by the nasion and ears.
    from eegfm.contract.channels import cap_positions

    edf = shared_data / "eegmat" / "Subject00_2.edf"
    eeg = _ten_twenty(edf)
    labels = list(cap_positions("mgh70"))
    spread = _spread(eeg, "mgh70", labels)
    names = [label.replace("EEG", "EEG ") for label in labels]
    raw = mne.io.RawArray(spread * 1e-6, mne.create_info(names, 500.0, "eeg"), verbose="error")
    montage = mne.channels.make_standard_montage("mgh70")
    montage.rename_channels(dict(zip(labels, names)))
    raw.set_montage(montage, verbose="error")
    raw.save(tmp_path / "meg_raw.fif", verbose="error")
    item = SourceItem(str(tmp_path / "meg_raw.fif"), "edf", "lab")

    *_, named = process_recording(item, b"k" * 32, PreprocessConfig(montage="mgh70"), "h")
    *events, outcome = process_recording(item, b"k" * 32, PreprocessConfig(montage="file"), "h")
    *reference, _ = process_recording(SourceItem(str(edf), "edf", "lab"), b"k" * 32, PreprocessConfig(), "h")
    assert outcome.status == "processed" and outcome.cap == "file" and len(outcome.cap_sites) >= 14
    # turned by its nasion and ears onto the 10-20 sphere, the head agrees with the cap's own layout
    same = {site for site in outcome.cap_sites if named.cap_sites.get(site) == outcome.cap_sites[site]}
    assert len(same) >= 14 and {"Cz", "Fz", "Pz", "Fp1", "Fp2", "O1", "O2"} <= same
    assert outcome.cap_sites["Cz"] == "EEG 034" and outcome.cap_sites["Fp1"] == "EEG 001"
    _windows_like(events, reference)

    # Without the nasion and ears there is no head frame to trust: quarantined, saying so.
    raw.info.set_montage(None)
    raw.save(tmp_path / "bare_raw.fif", verbose="error")
    *_, bare = process_recording(
        SourceItem(str(tmp_path / "bare_raw.fif"), "edf", "lab"), b"k" * 32, PreprocessConfig(montage="file"), "h"
    )
    assert (
        bare.stage == "harmonize" and "--montage file: no electrode positions to place the channels by" in bare.reason
    )
    # A 10-20 recording keeps its names under --montage file.
    *_, ten_twenty = process_recording(
        SourceItem(str(edf), "edf", "lab"), b"k" * 32, PreprocessConfig(montage="file"), "h"
    )
    assert ten_twenty.status == "processed" and ten_twenty.cap == "" and ten_twenty.interpolated == ()


def test_an_eeglab_file_is_placed_by_its_chanlocs_where_it_keeps_the_nasion_and_ears(shared_data, tmp_path):
    # eegmat's 19 channels spread over MGH's 70-electrode cap as EEGLAB keeps a digitized head:
    # chanlocs in its frame (x toward the nose, y toward the left ear; mm), the nasion and ears
    # in chaninfo.nodatchans.
    from eegfm.contract.channels import cap_positions
    from tests.pipelines.datasets.test_bids import _mgh70_head
    from tests.pipelines.readers.test_readers import _write_eeglab

    edf = shared_data / "eegmat" / "Subject00_2.edf"
    eeg = _ten_twenty(edf)
    positions, fiducials = _mgh70_head()
    labels = [name.replace(" ", "") for name in positions]
    assert labels == list(cap_positions("mgh70"))
    spread = _spread(eeg, "mgh70", labels)

    def eeglab(p):
        return np.array([p[1], -p[0], p[2]]) * 1000.0

    at = {name: eeglab(p) for name, p in positions.items()}
    nodatchans = {
        "Nasion": eeglab(fiducials["NAS"]),
        "Left periauricular point": eeglab(fiducials["LPA"]),
        "Right periauricular point": eeglab(fiducials["RPA"]),
    }
    _write_eeglab(tmp_path / "head.set", spread, list(positions), 500.0, positions=at, fiducials=nodatchans)
    _write_eeglab(tmp_path / "bare.set", spread, list(positions), 500.0, positions=at)
    config = PreprocessConfig(montage="file")
    *events, outcome = process_recording(SourceItem(str(tmp_path / "head.set"), "edf", "lab"), b"k" * 32, config, "h")
    *reference, _ = process_recording(SourceItem(str(edf), "edf", "lab"), b"k" * 32, PreprocessConfig(), "h")
    assert outcome.status == "processed" and outcome.cap == "file" and len(outcome.cap_sites) >= 14
    assert outcome.cap_sites["Cz"] == "EEG 034" and outcome.cap_sites["Fp1"] == "EEG 001"
    assert outcome.cap_sites["O2"] != outcome.cap_sites["O1"] and outcome.cap_sites["C3"] != outcome.cap_sites.get("C4")
    _windows_like(events, reference)
    # Without them, EEGLAB's positions may be in any frame (a template sphere, MNI space): not used
    *_, bare = process_recording(SourceItem(str(tmp_path / "bare.set"), "edf", "lab"), b"k" * 32, config, "h")
    assert (
        bare.stage == "harmonize" and "--montage file: no electrode positions to place the channels by" in bare.reason
    )


def test_a_brainvision_header_with_coordinates_is_placed_by_them_under_montage_file(shared_data, tmp_path):
    # Recorder writes a cap's electrode angles on the 10-20 sphere into [Coordinates]: numbered
    # channels then say where they are, as --montage easycap-M10 would.
    from eegfm.contract.channels import cap_positions
    from tests.pipelines.readers.test_readers import _brainvision

    eeg = _ten_twenty(shared_data / "eegmat" / "Subject00_2.edf")
    positions = cap_positions("easycap-M10")
    spread = _spread(eeg, "easycap-M10", positions)
    header = _brainvision(tmp_path, list(positions), spread.astype(np.float32))
    angles = [(np.degrees(np.arccos(z)), np.degrees(np.arctan2(y, x))) for x, y, z in positions.values()]
    with open(header, "a", encoding="utf-8") as fh:
        fh.write("[Coordinates]\n" + "".join(f"Ch{i + 1}=1,{t:.4f},{p:.4f}\n" for i, (t, p) in enumerate(angles)))
    item = SourceItem(str(header), "edf", "lab")
    *_, by_file = process_recording(item, b"k" * 32, PreprocessConfig(montage="file"), "h")
    *_, by_cap = process_recording(item, b"k" * 32, PreprocessConfig(montage="easycap-M10"), "h")
    assert by_file.status == by_cap.status == "processed" and by_file.cap == "file"
    assert by_file.cap_sites == by_cap.cap_sites and by_file.cap_sites["Cz"] == "1"


def test_tusz_events_label_the_sliding_windows_they_cover(shared_data, tmp_path):
    # The TUH Seizure Corpus's layout over a 62 s eegmat recording: a seizure marked from 25 to 47 s.
    from eegfm.pipelines.datasets import discover

    folder = tmp_path / "tusz" / "edf" / "train" / "aaaaaaac" / "s001_2002" / "01_tcp_ar"
    folder.mkdir(parents=True)
    for name, source in (("aaaaaaac_s001_t000", "Subject00_2.edf"), ("aaaaaaac_s001_t001", "Subject01_2.edf")):
        (folder / f"{name}.edf").symlink_to(shared_data / "eegmat" / source)
    (folder / "aaaaaaac_s001_t000.csv_bi").write_text(
        "# version = csv_v1.0.0\n# duration = 62.00 secs\n#\nchannel,start_time,stop_time,label,confidence\n"
        "TERM,0.0000,25.0000,bckg,1.0000\nTERM,25.0000,47.0000,seiz,1.0000\nTERM,47.0000,62.0000,bckg,1.0000\n"
    )
    (folder / "aaaaaaac_s001_t001.csv_bi").write_text(
        "channel,start_time,stop_time,label,confidence\nTERM,0.0000,62.0000,bckgr,1.0000\n"
    )
    items, _, _ = discover([str(tmp_path / "tusz")])
    good, bad = sorted(items, key=lambda i: i.path)
    *events, outcome = process_recording(good, b"k" * 32, PreprocessConfig(), "h")
    windows = sorted((w.record for w in events if isinstance(w, Window)), key=lambda r: r.window_start_s)
    assert outcome.status == "processed" and [round(r.window_start_s) for r in windows] == [0, 10, 20, 30, 40, 50]
    # [20, 30): 5 s of seizure, half: seizure; [40, 50): 7 s: seizure; [50, 60): background
    assert [r.label for r in windows] == [0, 0, 1, 1, 1, 0] and {r.task for r in windows} == {b"tusz_seizure"}
    *_, refused = process_recording(bad, b"k" * 32, PreprocessConfig(), "h")
    assert (refused.status, refused.stage) == ("quarantined", "labels")
    assert refused.reason.startswith(
        "aaaaaaac_s001_t001.edf: aaaaaaac_s001_t001.csv_bi: line 2, label: expected bckg or a seizure type"
    )


def test_tuev_events_each_get_a_five_second_window_moved_inside_at_the_recordings_edges(shared_data, tmp_path):
    # The TUH EEG Events Corpus's layout over a 62 s eegmat recording.
    from eegfm.pipelines.datasets import discover

    folder = tmp_path / "tuev" / "edf" / "train" / "aaaaaaar"
    folder.mkdir(parents=True)
    (folder / "aaaaaaar_00000001.edf").symlink_to(shared_data / "eegmat" / "Subject00_2.edf")
    (folder / "aaaaaaar_00000001.rec").write_text(
        "3,0.5,1.5,4\n4,0.5,1.5,4\n10,30.0,31.0,3\n11,30.0,31.0,3\n12,30.0,31.0,6\n0,60.5,61.5,5\n"
    )
    items, ignored, _ = discover([str(tmp_path / "tuev")])
    *events, outcome = process_recording(items[0], b"k" * 32, PreprocessConfig(), "h")
    windows = sorted((w.record for w in events if isinstance(w, Window)), key=lambda r: r.window_start_s)
    rejected = [w for w in events if isinstance(w, RejectedWindow)]
    assert outcome.status == "processed" and len(windows) == 2
    # eye movement at 0.5 s: [0, 5) (moved 1.5 s inside); pled at 30 s: [28, 33)
    assert [round(float(r.window_start_s), 2) for r in windows] == [0.0, 28.0]
    assert [r.label for r in windows] == [3, 2] and {r.task for r in windows} == {b"tuev_event"}
    assert {r.eeg.shape for r in windows} == {(19, 5 * 256)}
    # artifact at 60.5 s: [57, 62), moved to end where the recording does; its last 2 s are flat
    assert [(w.window_start_s, w.reasons[0].split(":")[0]) for w in rejected] == [(57.0, "flat")]
    # An event farther outside than the context is not moved: that window is quarantined, with the reason
    (folder / "aaaaaaar_00000001.rec").write_text("0,30.0,31.0,6\n0,70.0,71.0,5\n")
    items, _, _ = discover([str(tmp_path / "tuev")])
    *events, outcome = process_recording(items[0], b"k" * 32, PreprocessConfig(), "h")
    assert [r.record.label for r in events if isinstance(r, Window)] == [5]
    assert [r.reasons for r in events if isinstance(r, RejectedWindow)] == [
        ["window [68.00 s, 73.00 s) lies outside the recording (0 s, 62.00 s)"]
    ]


def test_tuar_artifacts_label_short_sliding_windows_and_unannotated_ones_stay_unlabeled(shared_data, tmp_path):
    # The TUH Artifact Corpus's layout over a 62 s eegmat recording, cut in 2 s windows as its
    # seconds-long artifacts call for: chewing on two channels over 10-14.5 s, eye movement
    # 30-31.2 s, a muscle-and-eye pair written in the corpus's other order 40-44 s.
    from eegfm.core.tasks import TUAR_LABELS
    from eegfm.pipelines.datasets import discover

    folder = tmp_path / "tuar" / "edf" / "01_tcp_ar"
    folder.mkdir(parents=True)
    (folder / "aaaaaaju_s005_t000.edf").symlink_to(shared_data / "eegmat" / "Subject00_2.edf")
    (folder / "aaaaaaju_s005_t000.csv").write_text(
        "# version = csv_v1.0.0\n# duration = 62.00 secs\n#\nchannel,start_time,stop_time,label,confidence\n"
        "FP1-F7,10.0000,14.0000,chew,1.0000\nT3-T5,12.0000,14.5000,chew,1.0000\n"
        "FP2-F8,30.0000,31.2000,eyem,1.0000\nC3-CZ,40.0000,44.0000,musc_eyem,1.0000\n"
    )
    items, _, datasets = discover([str(tmp_path / "tuar")])
    assert set(datasets.values()) == {"tuar"}
    config = PreprocessConfig(window_seconds=2.0, stride_seconds=1.0)
    *events, outcome = process_recording(items[0], b"k" * 32, config, "h")
    windows = {round(float(w.record.window_start_s)): w.record for w in events if isinstance(w, Window)}
    assert outcome.status == "processed"
    labeled = {start: TUAR_LABELS[r.label] for start, r in sorted(windows.items()) if r.label >= 0}
    # a window takes the kind covering at least half of it: [9, 11) has 1 s of chewing, [13, 15)
    # 1.5 s, [30, 32) 1.2 s of eye movement; [14, 16) (0.5 s) and [31, 33) (0.2 s) stay unlabeled
    assert labeled == {
        9: "chew",
        10: "chew",
        11: "chew",
        12: "chew",
        13: "chew",
        29: "eyem",
        30: "eyem",
        39: "eyem_musc",
        40: "eyem_musc",
        41: "eyem_musc",
        42: "eyem_musc",
        43: "eyem_musc",
    }
    assert {r.task for r in windows.values() if r.label >= 0} == {b"tuar_artifact"}
    assert {r.task for r in windows.values() if r.label < 0} == {b""} and len(windows) > len(labeled)


def _chb_mit_edf(recording, path) -> np.ndarray:
    """CHB-MIT's double banana (with its second T8-P8 and its FT9-FT10 bridge) derived from a real
    eegmat recording, FT9 and FT10 spread to by the spherical spline, written to ``path``; returns
    the recording's 19 10-20 channels it was made from."""
    from eegfm.contract.channels import derivation
    from tests.pipelines.signal.test_bipolar import CHB_MIT

    eeg = _ten_twenty(recording)
    potentials = dict(zip(CANONICAL_CHANNELS, eeg))
    potentials.update(zip(("FT9", "FT10"), interpolation_matrix(CANONICAL_CHANNELS, ("FT9", "FT10")) @ eeg))
    potentials = {
        **potentials,
        "T7": potentials["T3"],
        "T8": potentials["T4"],
        "P7": potentials["T5"],
        "P8": potentials["T6"],
    }
    labels = [name.rsplit("-", 1)[0] if name.startswith("T8-P8") else name for name in CHB_MIT]
    derived = np.stack([potentials[a] - potentials[b] for a, b in map(derivation, CHB_MIT)])
    _write_edf(path, labels + ["ECG"], np.vstack([derived, np.zeros((1, eeg.shape[1]))]))
    return eeg


def test_a_bipolar_recording_gives_the_windows_of_the_referential_one_it_was_derived_from(shared_data, tmp_path):
    # Its 16 10-20 electrodes on the bridged chain are reconstructed against their mean; Fz, Cz and
    # Pz, a chain of their own, are interpolated. With an average reference both recordings give
    # the same windows.
    eeg = _chb_mit_edf(shared_data / "eegmat" / "Subject00_2.edf", tmp_path / "chb.edf")
    _write_edf(tmp_path / "ref.edf", list(CANONICAL_CHANNELS), eeg)
    config = PreprocessConfig(reference="average")
    *events, outcome = process_recording(SourceItem(str(tmp_path / "chb.edf"), "edf", "lab"), b"k" * 32, config, "h")
    *reference, _ = process_recording(SourceItem(str(tmp_path / "ref.edf"), "edf", "lab"), b"k" * 32, config, "h")
    assert outcome.status == "processed" and outcome.interpolated == ("Fz", "Cz", "Pz")
    assert outcome.bipolar["left_out"] == ["FZ-CZ", "CZ-PZ"] and len(outcome.bipolar["derivations"]) == 21
    assert "T8-P8-1" in outcome.bipolar["derivations"] and len(outcome.bipolar["electrodes"]) == 18
    assert outcome.bipolar["flat"] == []
    # the reconstructed channels agree; the interpolated midline less so (average-referenced, it is
    # what its neighbours do not share)
    windows = _windows_like(events, reference, min_r=0.5)
    measured = [i for i, c in enumerate(CANONICAL_CHANNELS) if c not in ("Fz", "Cz", "Pz")]
    for start, record in windows.items():
        other = next(w.record for w in reference if isinstance(w, Window) and w.record.window_start_index == start)
        r = [np.corrcoef(record.eeg[i].astype(np.float32), other.eeg[i].astype(np.float32))[0, 1] for i in measured]
        assert min(r) > 0.99, np.round(r, 4)
        assert list(record.channel_mask) == [0 if c in ("Fz", "Cz", "Pz") else 1 for c in CANONICAL_CHANNELS]


def test_chb_mit_seizures_from_the_case_summary_label_the_windows_of_its_bipolar_recordings(shared_data, tmp_path):
    # CHB-MIT's layout over a 62 s eegmat recording in its montage: a seizure from 25 to 47 s.
    from eegfm.pipelines.datasets import discover

    case = tmp_path / "chbmit" / "chb01"
    case.mkdir(parents=True)
    _chb_mit_edf(shared_data / "eegmat" / "Subject00_2.edf", case / "chb01_03.edf")
    (case / "chb01-summary.txt").write_text(
        "Data Sampling Rate: 500 Hz\n\nFile Name: chb01_03.edf\nFile Start Time: 13:43:04\n"
        "File End Time: 13:44:06\nNumber of Seizures in File: 1\nSeizure Start Time: 25 seconds\n"
        "Seizure End Time: 47 seconds\n"
    )
    (tmp_path / "chbmit" / "SUBJECT-INFO").write_text("Case\tGender\tAge (years)\nchb01\tF\t11\n")
    items, _, used = discover([str(tmp_path / "chbmit")])
    assert used == {"chbmit": "chbmit"}
    *events, outcome = process_recording(items[0], b"k" * 32, PreprocessConfig(), "h")
    windows = sorted((w.record for w in events if isinstance(w, Window)), key=lambda r: r.window_start_s)
    assert outcome.status == "processed" and len(outcome.bipolar["derivations"]) == 21
    assert [round(r.window_start_s) for r in windows] == [0, 10, 20, 30, 40, 50]
    assert [r.label for r in windows] == [0, 0, 1, 1, 1, 0] and {r.task for r in windows} == {b"chbmit_seizure"}
    assert {(r.age, r.sex) for r in windows} == {(11.0, b"F")}


def test_eegmmi_trials_are_windows_at_their_annotations_labelled_by_the_run(shared_data, tmp_path):
    # Real annotations of a real imagery run: a 4 s window from each T1 (left fist) and T2 (right).
    from eegfm.pipelines.readers import open_recording

    with open_recording(shared_data / "eegmmi" / "S001R04.edf") as edf:
        trials = [(onset, text) for onset, _, text in edf.events if text != "T0"]
    (tmp_path / "S001").mkdir()
    (tmp_path / "S001" / "S001R04.edf").symlink_to(shared_data / "eegmmi" / "S001R04.edf")
    items, _, _ = discover([str(tmp_path)])
    *events, outcome = process_recording(items[0], b"k" * 32, PreprocessConfig(), "h")
    windows = sorted((w.record for w in events if isinstance(w, Window)), key=lambda r: r.window_start_s)
    assert outcome.status == "processed" and {r.eeg.shape for r in windows} == {(19, 4 * 256)}
    assert [(round(float(r.window_start_s), 2), r.label) for r in windows] == [
        (round(onset, 2), int(text == "T2")) for onset, text in trials
    ]
    assert {r.task for r in windows} == {b"eegmmi_imagery"}
    # A run whose file holds no trials is quarantined at the labels stage, its annotations unechoed
    (tmp_path / "S001" / "S001R06.edf").symlink_to(shared_data / "eegmat" / "Subject00_2.edf")
    items, _, _ = discover([str(tmp_path)])
    *_, refused = process_recording(next(i for i in items if "R06" in i.path), b"k" * 32, PreprocessConfig(), "h")
    assert (refused.status, refused.stage) == ("quarantined", "labels")
    assert refused.reason == (
        "S001R06.edf: no annotation T1 or T2 (it has 1 other): expected the data set's event "
        "codes, which label its windows"
    )


def test_a_flat_derivation_is_left_out_of_the_reconstruction(shared_data, tmp_path):
    # An unplugged pair records nothing: used, it would tie its two electrodes together.
    from eegfm.pipelines.readers import open_recording

    _chb_mit_edf(shared_data / "eegmat" / "Subject00_2.edf", tmp_path / "chb.edf")
    with open_recording(tmp_path / "chb.edf") as edf:
        names, data = list(edf.info.ch_names), edf.read()
    data[names.index("P4-O2")] = 0.0
    _write_edf(tmp_path / "flat.edf", [n.rsplit("-", 1)[0] if n.startswith("T8-P8") else n for n in names], data)
    *events, outcome = process_recording(
        SourceItem(str(tmp_path / "flat.edf"), "edf", "lab"), b"k" * 32, PreprocessConfig(reference="average"), "h"
    )
    *reference, _ = process_recording(
        SourceItem(str(tmp_path / "chb.edf"), "edf", "lab"), b"k" * 32, PreprocessConfig(reference="average"), "h"
    )
    assert outcome.status == "processed" and outcome.bipolar["flat"] == ["P4-O2"]
    assert "P4-O2" not in outcome.bipolar["derivations"] and len(outcome.bipolar["electrodes"]) == 18
    # O2 still reached through P8-O2: the same windows as with the derivation recorded
    _windows_like(events, reference, min_r=0.99)


def test_siena_seizure_clock_times_label_the_windows_and_a_typo_quarantines_its_file(shared_data, tmp_path):
    from eegfm.pipelines.datasets import discover

    patient = tmp_path / "siena" / "PN01"
    patient.mkdir(parents=True)
    for name in ("PN01-1.edf", "PN01-2.edf"):
        (patient / name).symlink_to(shared_data / "eegmat" / "Subject00_2.edf")
    (patient / "Seizures-list-PN01.txt").write_text(
        "Seizure n 1\nFile name: PN01-1.edf\nRegistration start time: 23.59.50\nSeizure start time: 00.00.15\n"
        "Seizure end time: 00.00.37\n\nSeizure n 2\nFile name: PN01-2.edf\nRegistration start time: 10.00.00\n"
        "Seizure start time: 10.00.25\nSeizure end time: 11.00.47\n"
    )
    items, _, _ = discover([str(tmp_path / "siena")])
    good, typo = sorted(items, key=lambda i: i.path)
    *events, outcome = process_recording(good, b"k" * 32, PreprocessConfig(), "h")
    windows = sorted((w.record for w in events if isinstance(w, Window)), key=lambda r: r.window_start_s)
    assert outcome.status == "processed" and [r.label for r in windows] == [0, 0, 1, 1, 1, 0]
    assert {r.task for r in windows} == {b"siena_seizure"}
    *_, refused = process_recording(typo, b"k" * 32, PreprocessConfig(), "h")
    assert (refused.status, refused.stage) == ("quarantined", "labels") and "lasts 60 min" in refused.reason


def test_eegmat_windows_carry_a_spectrogram_computed_from_the_window(eegmat_item):
    windows, _, _ = _run(eegmat_item, PreprocessConfig(window_seconds=6.0))
    assert windows and {w.spectrogram_frames for w in windows} == {3}  # window_seconds / 2
    spectrogram = windows[0].spectrogram.astype(np.float32)
    assert spectrogram.shape == (400, 3) and not np.isnan(spectrogram).any()
    # EEG power falls with frequency: 0.6-4.3 Hz above 16-20 Hz in every chain
    chains = spectrogram.reshape(4, 100, 3)
    assert (np.median(chains[:, :20], axis=(1, 2)) > np.median(chains[:, -20:], axis=(1, 2))).all()


def test_an_hms_labeled_window_carries_the_kaggle_spectrogram_beside_it(shared_data):
    # 1000189855 belongs to another recording (no train.csv here): only the wiring is tested.
    item = SourceItem(
        path=str(shared_data / "hms" / "train_eegs" / "1000913311.parquet"),
        dataset="hms",
        site="hms",
        task="hms6",
        windows=(LabeledWindow(0.0, 50.0, 1, (0.0, 3.0, 1.0, 0.0, 0.0, 0.0), "hms6", spectrogram_offset_s=40.0),),
        spectrogram_path=str(shared_data / "hms" / "train_spectrograms" / "1000189855.parquet"),
    )
    (window,), _, _ = _run(item)
    kaggle = pd.read_parquet(item.spectrogram_path)
    rows = kaggle[(kaggle.time >= 40) & (kaggle.time < 640)].drop(columns="time").to_numpy()
    assert window.spectrogram_frames == 300
    np.testing.assert_array_equal(window.spectrogram, np.log1p(rows.T).astype(np.float16))


def test_an_outcome_records_what_a_step_learned_and_refuses_a_name_it_has_not():
    from eegfm.pipelines.job.process_io import Outcome

    outcome = Outcome(source="a.edf", status="quarantined")
    outcome.record(sfreq_in=500.0, marked_bad=("T3",))
    assert (outcome.sfreq_in, outcome.marked_bad) == (500.0, ("T3",))
    with pytest.raises(AttributeError, match="Outcome has no field sfreq"):
        outcome.record(sfreq=500.0)
    assert not hasattr(outcome, "sfreq")
