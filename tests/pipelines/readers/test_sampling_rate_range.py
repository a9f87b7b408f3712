"""A header whose sampling rate no EEG has is refused when the file is opened, naming the fields that gave it."""

from datetime import datetime

import mne
import numpy as np
import pytest

from eegfm.pipelines.readers import ReaderError, open_recording
from eegfm.simulate.edf import EDFHeader, EDFSignal, write_edf


def write_rate_edf(path, record_duration: float, samples_per_record: int, n_records: int = 4) -> None:
    """Two EEG signals of ``samples_per_record`` samples in records of ``record_duration`` s."""
    signals = tuple(EDFSignal(name, -500.0, 500.0, samples_per_record) for name in ("Fp1", "Fp2"))
    header = EDFHeader(signals, start=datetime(2020, 1, 1), record_duration=record_duration)
    data = np.zeros((2, samples_per_record * n_records))
    write_edf(path, header, data)


@pytest.mark.parametrize(
    "duration, samples, rate",
    [(0.000001, 500, "5e+08"), (100000, 10, "0.0001")],  # 500 MHz, one sample every 3 h
)
def test_an_edf_rate_outside_1_hz_to_100_khz_names_the_header_fields(tmp_path, duration, samples, rate):
    path = tmp_path / "odd.edf"
    write_rate_edf(path, duration, samples)
    with pytest.raises(ReaderError) as caught:
        open_recording(path)
    assert str(caught.value) == (
        f"odd.edf: header fields duration of a data record ({duration:g} s) and samples per record "
        f"({samples}) give a sampling rate of {rate} Hz; expected 1 to 100000 Hz"
    )


def test_edf_rates_at_the_ends_of_the_range_read(tmp_path):
    for duration, samples in ((4.0, 4), (0.001, 100)):  # 1 Hz, 100 kHz
        path = tmp_path / f"edge-{samples}.edf"
        write_rate_edf(path, duration, samples)
        with open_recording(path) as reader:
            assert reader.info.sfreq == samples / duration


def test_a_fif_at_an_implausible_rate_is_refused_by_the_shared_check(tmp_path):
    # The MNE-read formats go through base.check_info: the same range, said once for all of them.
    info = mne.create_info(["Fp1", "Fp2"], sfreq=250_000.0, ch_types="eeg")
    path = tmp_path / "fast_raw.fif"
    mne.io.RawArray(np.zeros((2, 2500)), info, verbose="error").save(path, verbose="error")
    with pytest.raises(ReaderError) as caught:
        open_recording(path)
    assert str(caught.value) == "fast_raw.fif: sampling rate: expected 1 to 100000 Hz; got 250000 Hz"
