"""The EDF/EDF+ writer, checked by reading its files back with pyedflib and MNE."""

import dataclasses
from datetime import date, datetime

import mne
import numpy as np
import pyedflib
import pytest

from eegfm.simulate.edf import (
    ANNOTATION_LABEL,
    Annotation,
    EDFError,
    EDFHeader,
    EDFSignal,
    EDFWriter,
    digital_to_physical,
    edf_plus_patient,
    edf_plus_recording,
    encode_tal,
    format_number,
    header_bytes,
    physical_to_digital,
    write_edf,
)

SFREQ = 256
START = datetime(2019, 5, 2, 13, 4, 5)


def _signals(n_eeg=3, sfreq=SFREQ):
    eeg = [
        EDFSignal(
            label=f"EEG C{i}-REF",
            physical_min=-3276.8,
            physical_max=3276.7,
            samples_per_record=sfreq,
            prefiltering="HP:0.5Hz LP:70Hz",
            transducer="AgAgCl electrode",
        )
        for i in range(n_eeg)
    ]
    ecg = EDFSignal(label="ECG", physical_min=-5.0, physical_max=5.0, samples_per_record=sfreq, physical_dimension="mV")
    return tuple(eeg + [ecg])


def _header(edf_plus=True, **changes):
    header = EDFHeader(
        signals=_signals(),
        start=START,
        edf_plus=edf_plus,
        patient=edf_plus_patient("4482913", "F", date(1957, 3, 14), "Kowalski Anna")
        if edf_plus
        else "Kowalski, Anna DOB 1957-03-14",
        recording=edf_plus_recording(START.date(), "ADM123", "Novak Jan", "XLTEK")
        if edf_plus
        else "EEG 2019-05-02 tech Jan Novak",
    )
    return dataclasses.replace(header, **changes)


def _data(seconds=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 60.0, (4, SFREQ * seconds))
    x[3] = rng.normal(0.0, 0.8, SFREQ * seconds)  # ECG in mV
    return x


def _step(signal: EDFSignal) -> float:
    return (signal.physical_max - signal.physical_min) / (signal.digital_max - signal.digital_min)


@pytest.mark.parametrize("edf_plus", [True, False])
def test_round_trip_through_pyedflib_and_mne(tmp_path, edf_plus):
    path, data, header = tmp_path / "rec.edf", _data(), _header(edf_plus)
    write_edf(path, header, data)

    reader = pyedflib.EdfReader(str(path))
    try:
        assert reader.getSignalLabels() == [s.label for s in header.signals]
        assert list(reader.getSampleFrequencies()) == [SFREQ] * 4
        assert reader.getStartdatetime() == START
        assert reader.getFileDuration() == 10
        assert reader.getPhysicalDimension(3) == "mV"
        assert reader.getPrefilter(0) == "HP:0.5Hz LP:70Hz"
        for i, signal in enumerate(header.signals):
            np.testing.assert_allclose(reader.readSignal(i), data[i], atol=_step(signal) / 2 + 1e-9)
        if edf_plus:
            assert reader.getPatientName() == "Kowalski Anna"
            assert reader.getPatientCode() == "4482913"
            assert reader.getTechnician() == "Novak Jan"
    finally:
        reader.close()

    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    assert raw.ch_names == [s.label for s in header.signals]
    assert raw.info["sfreq"] == SFREQ
    got = raw.get_data()
    np.testing.assert_allclose(got[:3] * 1e6, data[:3], atol=_step(header.signals[0]) / 2 + 1e-6)
    np.testing.assert_allclose(got[3] * 1e3, data[3], atol=_step(header.signals[3]) / 2 + 1e-9)


def test_edf_plus_annotations_are_readable(tmp_path):
    path = tmp_path / "ann.edf"
    notes = [
        Annotation(1.5, "Pt Kowalski Anna awake"),
        Annotation(7.25, "Photic 9 Hz", 2.0),
        Annotation(7.5, "Impedance check"),
    ]
    write_edf(path, _header(), _data(), notes)

    reader = pyedflib.EdfReader(str(path))
    try:
        onsets, durations, texts = reader.readAnnotations()
    finally:
        reader.close()
    assert list(texts) == [n.text for n in notes]
    np.testing.assert_allclose(onsets, [1.5, 7.25, 7.5])
    assert durations[1] == pytest.approx(2.0)

    raw = mne.io.read_raw_edf(path, verbose="error")
    assert sorted(raw.annotations.description) == sorted(n.text for n in notes)
    assert ANNOTATION_LABEL not in raw.ch_names


def test_every_record_starts_with_a_time_keeping_tal(tmp_path):
    path = tmp_path / "tal.edf"
    header = write_edf(path, _header(), _data(seconds=4))
    raw = path.read_bytes()
    record = header.record_size
    ann_offset = 2 * sum(s.samples_per_record for s in header.signals)
    for k in range(header.n_records):
        start = header.header_size + k * record + ann_offset
        payload = raw[start : start + 2 * header.annotation_samples]
        assert payload.startswith(f"+{k}\x14\x14\x00".encode())


@pytest.mark.parametrize("chunk", [1, 100, 256, 1000, 2559])
def test_multi_chunk_writes_equal_single_chunk_write(tmp_path, chunk):
    data, header = _data(), _header()
    notes = [Annotation(3.0, "note")]
    write_edf(tmp_path / "one.edf", header, data, notes)
    with EDFWriter(tmp_path / "many.edf", header, notes) as writer:
        for start in range(0, data.shape[1], chunk):
            writer.write(data[:, start : start + chunk])
    assert (tmp_path / "one.edf").read_bytes() == (tmp_path / "many.edf").read_bytes()


def test_header_fields_follow_the_spec_byte_layout(tmp_path):
    header = write_edf(tmp_path / "h.edf", _header(), _data(seconds=2))
    raw = header_bytes(header)
    assert len(raw) == header.header_size == 256 * 6
    assert raw[:8] == b"0       "
    assert raw[168:176] == b"02.05.19" and raw[176:184] == b"13.04.05"
    assert raw[184:192] == b"1536    "
    assert raw[192:197] == b"EDF+C"
    assert raw[236:244] == b"2       "  # the count patched in on close
    assert raw[252:256] == b"5   "
    on_disk = (tmp_path / "h.edf").read_bytes()
    assert on_disk[: header.header_size] == raw


def test_values_outside_the_physical_range_clip_like_an_adc(tmp_path):
    signal = EDFSignal("EEG Fp1", -100.0, 100.0, 4)
    digital = physical_to_digital(np.array([-1e6, -100.0, 0.0, 100.0, 1e6]), signal)
    assert digital.tolist() == [-32768, -32768, 0, 32767, 32767]
    back = digital_to_physical(digital, signal)
    assert back[0] == pytest.approx(-100.0) and back[-1] == pytest.approx(100.0)


def test_number_fields_round_to_eight_characters_and_scaling_uses_the_written_value():
    assert format_number(3276.7) == "3276.7"
    assert format_number(-0.000123456) == "-0.00012"
    assert format_number(1 / 3) == "0.333333"
    assert format_number(123456789.0, width=9) == "123456789"
    with pytest.raises(EDFError, match="does not fit"):
        format_number(-123456789.0)
    signal = EDFSignal("x", -1 / 3, 1 / 3, 1)
    # A reader sees +-0.333333; quantization must agree with that reader exactly.
    digital = physical_to_digital(np.array([0.333333]), signal)
    assert digital[0] == 32767


def test_tal_encoding():
    assert encode_tal(0) == b"+0\x14\x14\x00"
    assert encode_tal(12.5, ["Photic"], 2.0) == b"+12.5\x152\x14Photic\x14\x00"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"patient": "x" * 81}, "patient: at most 80 characters"),
        ({"recording": "caf\u00e9"}, "only printable ASCII"),
    ],
)
def test_bad_header_values_are_named(tmp_path, change, message):
    with pytest.raises(EDFError, match=message):
        header_bytes(_header(edf_plus=False, **change))


def test_incomplete_last_record_is_an_error_unless_padded(tmp_path):
    data = _data(seconds=2)[:, :-10]
    with pytest.raises(EDFError, match="do not fill a data record"):
        write_edf(tmp_path / "short.edf", _header(), data)
    with EDFWriter(tmp_path / "padded.edf", _header(), pad_last_record=True) as writer:
        writer.write(data)
    assert writer.header.n_records == 2
    reader = pyedflib.EdfReader(str(tmp_path / "padded.edf"))
    try:
        assert reader.getFileDuration() == 2
    finally:
        reader.close()


def test_annotations_after_the_data_are_reported(tmp_path):
    with pytest.raises(EDFError, match="fall after the last data record"):
        write_edf(tmp_path / "late.edf", _header(), _data(seconds=2), [Annotation(5.0, "late")])


def test_signals_at_different_rates(tmp_path):
    signals = (EDFSignal("EEG Cz", -500, 500, 200), EDFSignal("Resp", -10, 10, 25, "mV"))
    header = EDFHeader(signals=signals, start=START)
    t_fast, t_slow = np.arange(400) / 200, np.arange(50) / 25
    write_edf(tmp_path / "rates.edf", header, [100 * np.sin(t_fast), np.cos(t_slow)])
    reader = pyedflib.EdfReader(str(tmp_path / "rates.edf"))
    try:
        assert list(reader.getSampleFrequencies()) == [200, 25]
        np.testing.assert_allclose(reader.readSignal(1), np.cos(t_slow), atol=1e-3)
    finally:
        reader.close()
    with pytest.raises(EDFError, match="proportional"):
        write_edf(tmp_path / "bad.edf", header, [np.zeros(400), np.zeros(40)])


def test_nan_samples_are_rejected_with_the_signal_name(tmp_path):
    data = _data(seconds=1)
    data[2, 5] = np.nan
    with pytest.raises(EDFError, match="EEG C2-REF"):
        write_edf(tmp_path / "nan.edf", _header(), data)
