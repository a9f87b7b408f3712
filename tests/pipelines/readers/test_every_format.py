"""The Beam job (DirectRunner, in memory) over ../shared/data/formats: one run, about 5 s; every file
is processed, or quarantined or listed as another recording's part, with a reason a person accepts."""

import importlib.util
import os

import pytest

NEEDS = {"test_CA_208.cnt": "antio", "test_bdf_stim_channel Curry 8.cdt": "curryreader"}

# file name -> (status, words of its reason)
EXPECTED = {
    "MB0400FU.EDF": ("processed", ""),
    "test_CNT_events_mne_JWoess_clipped.cnt": ("quarantined", "only 0 of the 19 10-20 channels are present"),
    "test_CA_208.cnt": ("quarantined", "ANT Neuro eego .cnt file: MNE reads it with the package antio"),
    "test_CA_208.evt": ("ignored", "ANT Neuro part of the recording test_CA_208.cnt"),
    "test_bdf_stim_channel Curry 8.cdt": ("quarantined", "Curry file: MNE reads it with the package curryreader"),
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
    # A reader whose package is installed reads its file: what then happens is another test's matter.
    installed = {n for n, p in NEEDS.items() if importlib.util.find_spec(p) is not None}
    for name, (status, words) in EXPECTED.items():
        if name not in installed:
            assert (name, by_name[name]["status"]) == (name, status)
            assert words in by_name[name].get("reason", ""), (name, by_name[name].get("reason"))
    assert "file type: expected one of" not in str(formats_run["inputs"])
