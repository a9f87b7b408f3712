"""A JSON recording parsed as a stream: the same samples as the body, field errors named, and a
parse whose memory is a small, documented multiple of the body (measured with tracemalloc)."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

from eegfm.serving.api.signals import SignalsError, parse_signals, save_fif

NAMES = [
    "Fp1",
    "Fp2",
    "F7",
    "F3",
    "Fz",
    "F4",
    "F8",
    "T3",
    "C3",
    "Cz",
    "C4",
    "T4",
    "T5",
    "P3",
    "Pz",
    "P4",
    "T6",
    "O1",
    "O2",
]


@pytest.fixture(scope="module")
def real_eeg(shared_data):
    """eegmat Subject00_1's 19 10-20 channels, first 60 s, in µV to 0.01 µV, and their labels."""
    import mne

    raw = mne.io.read_raw_edf(shared_data / "eegmat" / "Subject00_1.edf", preload=True, verbose="error")
    raw.pick([name for name in raw.ch_names if name.startswith("EEG ") and name != "EEG A2-A1"]).crop(0, 60)
    return np.round(raw.get_data() * 1e6, 2), float(raw.info["sfreq"]), list(raw.ch_names)


def _body(tmp_path, document: dict | bytes):
    path = tmp_path / "body.json"
    path.write_bytes(document if isinstance(document, bytes) else json.dumps(document).encode())
    return path


def _peak_bytes(work) -> int:
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_samples_rate_and_labels_are_the_bodys_exactly(real_eeg, tmp_path):
    signals, sfreq, names = real_eeg
    body = _body(tmp_path, {"channel_names": names, "sfreq": sfreq, "signals": signals.tolist()})
    parsed, rate, labels = parse_signals(body)
    np.testing.assert_array_equal(parsed, signals)
    assert rate == sfreq and labels == names


def test_parsing_and_saving_costs_a_bounded_multiple_of_the_body(real_eeg, tmp_path):
    """The docs' bound (docs/serving.md): at most 4x the body for any body (8 bytes a sample, and a
    sample is at least 2 bytes of JSON), under 2x for real EEG sent to 0.01 µV."""
    signals, sfreq, names = real_eeg
    real = _body(tmp_path, {"signals": signals.tolist(), "sfreq": sfreq, "channel_names": names})
    size = real.stat().st_size

    def parse_and_save(path):
        save_fif(*parse_signals(path), tmp_path / "out.fif")

    real_peak = _peak_bytes(lambda: parse_and_save(real))
    assert real_peak < 2 * size, (real_peak, size)  # 1.46x measured
    zeros = tmp_path / "zeros.json"
    zeros.write_text(json.dumps({"signals": [[0] * 100_000] * 19, "sfreq": 256, "channel_names": NAMES}))
    zeros_peak = _peak_bytes(lambda: parse_and_save(zeros))
    assert zeros_peak < 4 * zeros.stat().st_size, (zeros_peak, zeros.stat().st_size)  # 3.16x measured
    reference = _peak_bytes(lambda: json.loads(real.read_bytes()))  # what parsing it whole costs
    assert reference > 3 * real_peak, (reference, real_peak)  # 5.74x the body measured


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "body: expected a JSON object"),
        (b'{"signals": [[1, 2]], "signals": [[1, 2]]}', "signals: expected once"),
        (b'{"signals": [[1, NaN]], "sfreq": 1, "channel_names": ["Cz"]}', "signals[0][1]: expected a finite number"),
        (b'{"signals": [[1, 1e999]], "sfreq": 1, "channel_names": ["Cz"]}', "signals[0][1]: expected a finite number"),
        (b'{"signals": [[1, true]], "sfreq": 1, "channel_names": ["Cz"]}', "signals[0]: expected numbers"),
        (b'{"signals": [[1]], "sfreq": [256], "channel_names": ["Cz"]}', "sfreq: expected the sampling rate"),
        (b'{"signals": [[1]], "sfreq": 1, "channel_names": [["Cz"]]}', "channel_names: expected a non-empty array"),
        (b'{"signals": [[1]], "sfreq": 1, "channel_names": ["Cz"]} {}', "body: expected a JSON object"),
        (b'{"DOE_JOHN_MRN1234567": 1}', "body: expected only the fields"),
        (b'{"signals": [[1]], "sfreq": 1, "channel_names": ["Cz"], "x": "\xff"}', "body: expected"),
    ],
)
def test_a_bad_body_is_an_error_naming_the_field_and_never_echoing_it(tmp_path, body, message):
    with pytest.raises(SignalsError) as err:
        parse_signals(_body(tmp_path, body))
    assert str(err.value).startswith(message), err.value
    assert "DOE" not in str(err.value) and "MRN" not in str(err.value)
