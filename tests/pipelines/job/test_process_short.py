"""A recording shorter than a second (a 0.2 s JSON upload, a clipped export) ends quarantined as
shorter than one window, not as an unexpected failure of mains detection."""

from __future__ import annotations

import mne
import numpy as np

from eegfm.contract.channels import CANONICAL_CHANNELS
from eegfm.pipelines.datasets import discover
from eegfm.pipelines.job.process import Outcome, PreprocessConfig, process_recording


def test_a_fifth_of_a_second_is_shorter_than_one_window(shared_data, tmp_path):
    raw = mne.io.read_raw_edf(shared_data / "eegmat" / "Subject00_1.edf", preload=True, verbose="error")
    raw.pick([f"EEG {c}" for c in CANONICAL_CHANNELS]).crop(30.0, 30.2)
    path = tmp_path / "short_raw.fif"
    raw.save(path, verbose="error")
    config = PreprocessConfig()
    events = list(process_recording(discover([str(path)])[0][0], b"k" * 32, config, config.config_hash()))
    outcome = events[-1]
    assert isinstance(outcome, Outcome) and len(events) == 1
    assert (outcome.status, outcome.stage) == ("quarantined", "windows")
    assert outcome.reason.endswith("recording shorter than one window (0.2 s of EEG)")
    assert np.isclose(outcome.eeg_seconds, 0.2, atol=0.01)
