"""Pathology the product exists to find, added inside a real recording's own background as the
ACNS terminology describes it (tests/pipelines/quality/discharges.py), goes through the pipeline
kept and scored: never dropped for its amplitude, never called an artifact; a pop beside it is."""

from __future__ import annotations

import mne
import numpy as np
import pytest

from eegfm.contract.channels import CANONICAL_CHANNELS
from eegfm.pipelines.datasets import discover
from eegfm.pipelines.job.process import PreprocessConfig, RejectedWindow, Window, process_recording
from eegfm.pipelines.quality import QUALITY_NAMES
from tests.pipelines.quality import discharges

KEY = b"a-test-key-of-32-bytes-for-hmac!"
# (start s, end s, pattern) added to eegmat Subject05_1 (resting, 182 s); windows are 10 s long.
EVENTS = (
    (40.0, 60.0, lambda t: discharges.seizure(t, "T3", peak_uv=500.0)),
    (80.0, 100.0, lambda t: discharges.periodic_discharges(t, 1.0, "F8", peak_uv=350.0)),
    (120.0, 140.0, lambda t: discharges.rhythmic_delta(t, 1.5, None, peak_uv=300.0)),
    (150.0, 160.0, lambda t: discharges.electrode_pop(t, "O2", 1800.0)),
)


@pytest.fixture(scope="module")
def windows(shared_data, tmp_path_factory):
    raw = mne.io.read_raw_edf(shared_data / "eegmat" / "Subject05_1.edf", preload=True, verbose="error")
    picks = [raw.ch_names.index(f"EEG {name}") for name in CANONICAL_CHANNELS]
    data = raw.get_data()
    t = raw.times
    for start, end, pattern in EVENTS:
        inside = (t >= start) & (t < end)
        data[np.ix_(picks, np.flatnonzero(inside))] += pattern(t[inside]) * 1e-6
    path = tmp_path_factory.mktemp("pathology") / "rec_raw.fif"
    mne.io.RawArray(data, raw.info, verbose="error").save(path, verbose="error")
    item = discover([str(path)])[0][0]
    config = PreprocessConfig()
    events = list(process_recording(item, KEY, config, config.config_hash()))
    assert not [e for e in events if isinstance(e, RejectedWindow)], "no window of this recording is dropped"
    return {round(e.record.window_start_s): e.record for e in events if isinstance(e, Window)}


@pytest.mark.parametrize("start", [40, 50, 80, 90, 120, 130], ids=lambda s: f"{s}s")
def test_ictal_and_periodic_windows_are_kept_scored_and_not_called_artifacts(windows, start):
    record = windows[start]
    quality = dict(zip(QUALITY_NAMES, record.quality))
    assert quality["rhythmic_ptp_uv"] >= 200.0  # the rhythmic high-amplitude sign
    assert quality["ptp_uv"] >= 250.0
    assert record.artifact_score < 0.5
    assert record.channel_mask.all()  # nothing interpolated away


def test_a_pop_beside_them_is_flagged_and_its_electrode_interpolated(windows):
    record = windows[150]
    assert record.channel_mask[CANONICAL_CHANNELS.index("O2")] == 0
    assert record.channel_mask.sum() == len(CANONICAL_CHANNELS) - 1
    assert np.abs(record.eeg).max() < 1000.0


def test_the_rest_of_the_recording_reads_as_clean(windows):
    clean = [r for s, r in windows.items() if not any(a <= s < b for a, b, _ in EVENTS)]
    assert len(clean) >= 10
    assert np.mean([r.artifact_score >= 0.5 for r in clean]) <= 0.1
