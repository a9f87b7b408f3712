"""The Beam job (DirectRunner, in memory) over ../shared/data/formats: one run, about 5 s; every file
is processed, or quarantined or listed as another recording's part, with a reason a person accepts."""

import os

import numpy as np
import pytest

# file name -> (status, words of its reason)
EXPECTED = {
    "MB0400FU.EDF": ("processed", ""),
    "test_CNT_events_mne_JWoess_clipped.cnt": ("quarantined", "only 0 of the 19 10-20 channels are present"),
    "test_CA_208.cnt": ("quarantined", "recording shorter than one window (4.0 s of EEG)"),
    "test_CA_208.evt": ("ignored", "ANT Neuro part of the recording test_CA_208.cnt"),
    "test_bdf_stim_channel Curry 8.cdt": ("quarantined", "only 3 of the 19 10-20 channels are present (C3, C4, Cz)"),
    "test_bdf_stim_channel Curry 8.cdt.cef": ("ignored", "Curry part of the recording"),
    "test_bdf_stim_channel Curry 8.cdt.dpa": ("ignored", "Curry part of the recording"),
    "test_eximia.nxe": ("quarantined", "no usable windows: all 1 windows rejected (high_amplitude x1)"),
    "test_raw_chanloc.set": ("quarantined", "recording shorter than one window (3.0 s of EEG)"),
    "test_raw_chanloc.fdt": ("ignored", "data part of another recording (.fdt)"),
    "test_generator_2.bdf": ("quarantined", "only 0 of the 19 10-20 channels are present"),
    "test_NO.vhdr": ("quarantined", "only 0 of the 19 10-20 channels are present"),
    "test_NO.vmrk": ("ignored", "data part of another recording (.vmrk)"),
    "test_NO.eeg": ("ignored", "BrainVision data of test_NO.vhdr"),
    "chtypes_edf.edf": ("quarantined", "recording shorter than one window (5.0 s of EEG)"),
    "subsecond_starttime.edf": ("quarantined", "only 3 of the 19 10-20 channels are present"),
    "test_reduced.edf": ("quarantined", "only 8 of the 19 10-20 channels are present"),
    "test_utf8_annotations.edf": ("quarantined", "only 0 of the 19 10-20 channels are present"),
    "data_resting_EO_200Hz_raw.fif": ("quarantined", "only 2 of the 19 10-20 channels are present"),
    "sample_invalid_birthday_raw.fif": ("quarantined", "Channels found: 'EEG 001'"),
}


@pytest.fixture(scope="module")
def formats_run(shared_data, key_file, tmp_path_factory):
    from eegfm.pipelines.preprocess import run

    out = tmp_path_factory.mktemp("formats-run")
    args = ["--input", str(shared_data / "formats"), "--output", str(out), "--pseudonym_key_file", key_file]
    args += ["--runner", "DirectRunner", "--direct_running_mode", "in_memory", "--keep_paths"]
    return run(args)


def test_every_file_of_every_format_has_its_outcome(formats_run):
    by_name = {os.path.basename(e["source"]): e for e in formats_run["inputs"]}
    assert sorted(by_name) == sorted(EXPECTED)
    for name, (status, words) in EXPECTED.items():
        assert (name, by_name[name]["status"]) == (name, status)
        assert words in by_name[name].get("reason", ""), (name, by_name[name].get("reason"))
    assert "file type: expected one of" not in str(formats_run["inputs"])


def _persyst_copy(edf, folder, name="rec"):
    """``edf``'s EEG written as a Persyst recording (``name.lay`` naming ``name.dat``: interleaved 16-bit
    samples of 0.1 µV), as Persyst exports it; returns the .lay path and the µV it holds."""
    from eegfm.pipelines.readers import open_recording

    with open_recording(edf) as reader:
        picks = [i for i, n in enumerate(reader.info.ch_names) if n.startswith("EEG ") and "-" not in n]
        labels = [reader.info.ch_names[i].removeprefix("EEG ") for i in picks]
        sfreq, data = reader.info.sfreq, reader.read()[picks].astype(np.float64)
    counts = np.round(data / 0.1)
    assert np.abs(counts).max() < 2**15  # EEG fits 16 bits at 0.1 µV
    counts.T.astype("<i2").tofile(folder / f"{name}.dat")
    channel_map = "\n".join(f"{label}-Ref={k + 1}" for k, label in enumerate(labels))
    (folder / f"{name}.lay").write_text(
        f"[FileInfo]\nFile={name}.dat\nFileType=Interleaved\nSamplingRate={sfreq:g}\nHeaderLength=0\n"
        f"Calibration=0.1\nWaveformCount={len(labels)}\nDataType=0\n[ChannelMap]\n{channel_map}\n"
        "[Patient]\nFirst=\nLast=\nSex=f\nHand=r\nBirthDate=01/02/80\nTestDate=03/04/2020\nTestTime=10:00:00\n"
        "[Comments]\n12.5,0,0,0,eyes closed\n"
    )
    return folder / f"{name}.lay", labels, counts * 0.1


def test_a_persyst_recording_is_read_with_its_data_file_and_processed(shared_data, key_file, tmp_path):
    """A real recording (eegmat Subject00_2, 62 s, 19 EEG channels) in Persyst's layout: the .lay is the
    recording, its .dat a part, and the job writes its windows."""
    from eegfm.pipelines.preprocess import run
    from eegfm.pipelines.readers import open_recording

    folder = tmp_path / "persyst"
    folder.mkdir()
    lay, labels, microvolts = _persyst_copy(shared_data / "eegmat" / "Subject00_2.edf", folder)
    with open_recording(lay) as reader:
        assert reader.info.ch_names == tuple(label.upper() for label in labels) and reader.info.sfreq == 500.0
        np.testing.assert_allclose(reader.read(), microvolts, atol=1e-3)
        assert reader.events == ((12.5, 0.0, "eyes closed"),)
        assert (reader.info.clinical.age, reader.info.clinical.sex) == (40, "F")  # born 2 Jan 1980, recorded 2020
    out = tmp_path / "out"
    args = ["--input", str(folder), "--output", str(out), "--pseudonym_key_file", key_file, "--keep_paths"]
    manifest = run([*args, "--runner", "DirectRunner", "--direct_running_mode", "in_memory"])
    by_name = {os.path.basename(e["source"]): e for e in manifest["inputs"]}
    assert by_name["rec.lay"]["status"] == "processed" and manifest["counts"]["windows"] >= 6
    assert by_name["rec.dat"] == {
        **by_name["rec.dat"],
        "status": "ignored",
        "reason": "Persyst data of rec.lay (.dat), read through it",
    }
