"""Mains detection: synthetic lines, too little data, and what real recordings show."""

from __future__ import annotations

import numpy as np
import pytest

from eegfm.pipelines.signal.filters import FilterConfig, resolve_line_freq
from eegfm.pipelines.signal.line_noise import detect_line_frequency, line_noise_db
from tests.pipelines.signal.test_filters import SFREQ, _pink_noise, _read


@pytest.mark.parametrize("line", [50, 60])
def test_detects_synthetic_line(line):
    rng = np.random.default_rng(7)
    n_times = int(60 * SFREQ)
    t = np.arange(n_times) / SFREQ
    x = _pink_noise(rng, 19, n_times) + 2.0 * np.sin(2 * np.pi * line * t)
    assert detect_line_frequency(x, SFREQ) == line
    assert detect_line_frequency(_pink_noise(rng, 19, n_times), SFREQ) is None


def test_no_line_when_nyquist_below_50_or_data_too_short():
    rng = np.random.default_rng(3)
    assert detect_line_frequency(rng.standard_normal((4, 6000)), 100.0) is None
    with pytest.raises(ValueError, match=r"data: line-frequency detection needs at least 1 s"):
        detect_line_frequency(rng.standard_normal((4, 100)), SFREQ)


def test_line_frequency_of_real_recordings(shared_data):
    """What is really there (checked on every file, see the report):

    eegmmi (US) shows a 60 Hz line 5-6 dB above its neighbours and nothing at 50 Hz. eegmat
    (Ukraine, 50 Hz mains) was notched at 50 Hz at acquisition: 63 of the 64 files show a dip at
    50 Hz (median over channels down to -26 dB), the other sits at +1.9 dB, and none has anything
    at 60 Hz, so there is no line left to detect or remove.
    """
    for name in ("S001R03.edf", "S001R04.edf"):
        x, sfreq, _ = _read(shared_data / "eegmmi" / name, prefix="")
        assert np.median(line_noise_db(x, sfreq, 60)) > 4.0
        assert abs(np.median(line_noise_db(x, sfreq, 50))) < 2.0
        assert detect_line_frequency(x, sfreq) == 60
    for name in ("Subject00_1.edf", "Subject05_2.edf", "Subject17_1.edf", "Subject29_2.edf"):
        x, sfreq, _ = _read(shared_data / "eegmat" / name)
        assert np.median(line_noise_db(x, sfreq, 50)) < -5.0  # the acquisition notch
        assert abs(np.median(line_noise_db(x, sfreq, 60))) < 2.0
        assert detect_line_frequency(x, sfreq) is None
        assert resolve_line_freq(x, sfreq, FilterConfig()) is None
        assert resolve_line_freq(x, sfreq, FilterConfig(line_freq=50)) == 50


def test_float32_rows_give_the_float64_decisions_and_ratios(shared_data):
    """The pipeline's rows are float32 and are transformed in float32: on real recordings, with a
    line (eegmmi) or a notch (eegmat), the decision is the float64 one and the evidence (the median
    ratio) moves by under 0.01 dB."""
    recordings = [(shared_data / "eegmmi" / "S001R03.edf", "")]
    recordings += [(shared_data / "eegmat" / name, "EEG ") for name in ("Subject00_1.edf", "Subject17_1.edf")]
    for path, prefix in recordings:
        x, sfreq, _ = _read(path, prefix=prefix)
        x32 = x.astype(np.float32)
        assert detect_line_frequency(x32, sfreq) == detect_line_frequency(x, sfreq)
        for freq in (50, 60):
            exact, rounded = line_noise_db(x, sfreq, freq), line_noise_db(x32, sfreq, freq)
            assert abs(np.median(rounded) - np.median(exact)) < 0.01, (path.name, freq)
