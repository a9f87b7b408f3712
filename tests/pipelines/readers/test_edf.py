import glob
from datetime import date, datetime

import mne
import numpy as np
import pytest

from eegfm.pipelines.readers import MneReader, ReaderError, Segment, open_recording
from eegfm.pipelines.readers.edf import EdfReader
from eegfm.simulate.edf import EDFHeader, EDFSignal, edf_plus_patient, edf_plus_recording, write_edf
from tests.pipelines.conftest import write_edf_plus_d


def _edf_files(shared_data):
    return sorted(f for f in glob.glob(str(shared_data / "**" / "*"), recursive=True) if f.lower().endswith(".edf"))


def test_samples_equal_mne_on_every_real_edf(shared_data):
    checked = 0
    for path in _edf_files(shared_data):
        reader = open_recording(path)
        assert isinstance(reader, EdfReader)  # EDF+D too (the Nihon Kohden export): gaps are ours to find
        mne_reader = MneReader(path)
        rows = [mne_reader.info.ch_names.index(n) for n in reader.info.ch_names]
        stop = min(reader.info.n_times, 20000)
        ours, theirs = reader.read(123, stop), mne_reader.read(123, stop)[rows]
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)
        assert reader.info.sfreq == mne_reader.info.sfreq
        checked += 1
    assert checked >= 69


def _write_bdf(path, data_uv: np.ndarray, sfreq: int, labels: list[str]) -> None:
    """A minimal BDF (24-bit) file, written by hand so the test does not trust our EDF writer."""
    ns, n_rec = len(labels), data_uv.shape[1] // sfreq
    pmin, pmax, dmin, dmax = -262144.0, 262143.0, -8388608, 8388607
    digital = np.round((data_uv - pmin) / (pmax - pmin) * (dmax - dmin) + dmin).astype(np.int32)

    def f(v, w):
        return str(v).ljust(w).encode("ascii")

    head = b"\xffBIOSEMI" + f("X X X X", 80) + f("Startdate X X X X", 80) + f("01.02.24", 8)
    head += f("10.00.00", 8) + f(256 * (ns + 1), 8) + f("24BIT", 44) + f(n_rec, 8) + f(1, 8) + f(ns, 4)
    for width, values in [
        (16, labels),
        (80, [""] * ns),
        (8, ["uV"] * ns),
        (8, [pmin] * ns),
        (8, [pmax] * ns),
        (8, [dmin] * ns),
        (8, [dmax] * ns),
        (80, [""] * ns),
        (8, [sfreq] * ns),
        (32, [""] * ns),
    ]:
        head += b"".join(f(v if not isinstance(v, float) else f"{v:g}", width) for v in values)
    body = bytearray()
    for r in range(n_rec):
        for ch in range(ns):
            block = digital[ch, r * sfreq : (r + 1) * sfreq].astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3]
            body += block.tobytes()
    path.write_bytes(head + bytes(body))


def test_a_long_recording_is_read_in_bounded_memory(shared_data, tmp_path):
    # A real recording's data records repeated 40 times (2 h, 150 MB): reading it chunk by chunk
    # must not leave the file in the process's memory (a memory map's touched pages stay in RSS:
    # a 24 h recording took the job's peak RSS from 554 to 1211 MB).
    import subprocess
    import sys
    from pathlib import Path

    original = shared_data / "eegmat" / "Subject00_1.edf"
    source = original.read_bytes()
    header_bytes, n_records = int(source[184:192]), int(source[236:244])
    long_edf = tmp_path / "long.edf"
    with open(long_edf, "wb") as fh:
        fh.write(source[:236] + f"{n_records * 40:<8}".encode() + source[244:header_bytes])
        for _ in range(40):
            fh.write(source[header_bytes:])
    script = (
        "import resource, sys\n"
        "from eegfm.pipelines.readers import open_recording\n"
        "with open_recording(sys.argv[1]) as r:\n"
        "    step, n = int(r.info.sfreq * 60), r.info.n_times\n"
        "    r.read(0, step)\n"
        "    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "    for s in range(0, n, step):\n"
        "        r.read(s, min(n, s + step))\n"
        "    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024, n)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(long_edf)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    grown_mb, n_times = map(int, done.stdout.split())
    assert long_edf.stat().st_size > 140 * 2**20 and n_times == 40 * 182 * 500
    assert grown_mb < 40, f"peak RSS grew by {grown_mb} MB while reading a 150 MB recording"
    with open_recording(long_edf) as copy, open_recording(original) as first:
        np.testing.assert_array_equal(copy.read(39 * 182 * 500, n_times), first.read())


def test_bdf_24_bit_samples_match_mne(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.normal(0, 50, size=(3, 512 * 4))
    data[0, :10] = -262144.0  # the most negative 24-bit value
    path = tmp_path / "cap.bdf"
    _write_bdf(path, data, 512, ["Fp1", "Cz", "Status"])
    reader = open_recording(path)
    assert isinstance(reader, EdfReader) and reader.info.sfreq == 512.0
    ours = reader.read()
    theirs = mne.io.read_raw_bdf(path, preload=True, verbose="error").get_data() * 1e6
    np.testing.assert_allclose(ours[:2], theirs[:2], rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(ours[:2], data[:2], atol=0.05)  # 24-bit resolution is ~0.03 uV


def test_edf_plus_fields_give_age_and_sex_only(tmp_path):
    header = EDFHeader(
        signals=(EDFSignal("EEG Fp1-REF", -500, 500, 256), EDFSignal("EEG Cz-REF", -500, 500, 256)),
        start=datetime(2024, 3, 13, 9, 0, 0),
        patient=edf_plus_patient("MRN-4482913", "F", date(1957, 3, 14), "Kowalski Anna"),
        recording=edf_plus_recording(date(2024, 3, 13), "EEG-2024-0342", "T.Nguyen", "Nihon_Kohden"),
        edf_plus=True,
    )
    path = tmp_path / "plus.edf"
    write_edf(path, header, np.zeros((2, 256 * 3)))
    reader = open_recording(path)
    assert reader.info.clinical.age == 66.0 and reader.info.clinical.sex == "F"
    assert reader.info.ch_names == ("EEG Fp1-REF", "EEG Cz-REF")  # annotations are not a channel
    assert "Kowalski" in reader.identity_key  # only for the pseudonymizer
    assert "Kowalski" not in repr(reader.info)


def test_the_eeg_electrodes_rate_wins_over_more_slow_channels(tmp_path):
    eeg = [EDFSignal(f"EEG {n}-REF", -500, 500, 256) for n in ("Fp1", "Fp2", "Cz")]
    slow = [EDFSignal(name, 0, 100, 1, physical_dimension="%") for name in ("SpO2", "Pleth", "Pos", "HR", "Temp")]
    header = EDFHeader(signals=(eeg[0], *slow[:3], *eeg[1:], *slow[3:]), start=datetime(2024, 3, 13, 9))
    rng = np.random.default_rng(0)
    data = [rng.normal(0, 20, 256 * 4) if s.samples_per_record == 256 else np.full(4, 50.0) for s in header.signals]
    path = tmp_path / "icu.edf"
    write_edf(path, header, data)
    reader = open_recording(path)
    assert reader.info.ch_names == ("EEG Fp1-REF", "EEG Fp2-REF", "EEG Cz-REF") and reader.info.sfreq == 256.0
    assert reader.skipped == ["SpO2", "Pleth", "Pos", "HR", "Temp"]
    np.testing.assert_allclose(reader.read(0, 1024)[0], data[0], atol=0.02)
    from eegfm.pipelines.datasets import SourceItem
    from eegfm.pipelines.job.process import PreprocessConfig, process_recording

    *_, outcome = process_recording(SourceItem(str(path), "edf", "icu"), b"k" * 32, PreprocessConfig(), "h")
    assert outcome.stage == "harmonize" and outcome.other_rate == ("SpO2", "Pleth", "Pos", "HR", "Temp")
    assert outcome.reason.endswith("signals at another sampling rate, left out: SpO2, Pleth, Pos, HR, Temp")


def test_a_blank_physical_dimension_is_read_in_the_unit_the_declared_range_implies(shared_data, tmp_path):
    # Some converters leave "physical dimension" empty (or spell it their way). The same EEG in V, mV and µV,
    # each with the range a writer would give it, reads back in µV every time.
    with open_recording(shared_data / "eegmat" / "Subject00_2.edf") as edf:
        eeg_uv = edf.read(0, 256 * 8)[:3]
    rng = np.random.default_rng(0)
    for unit, factor, limit, written in (("V", 1e-6, 0.0032, ""), ("mV", 1e-3, 3.2, "milliV"), ("uV", 1.0, 3200.0, "")):
        signals = [EDFSignal(f"EEG {n}", -limit, limit, 256, physical_dimension=written) for n in ("Fp1", "Fp2", "Cz")]
        signals.append(EDFSignal("SpO2", 0, 100, 256, physical_dimension=""))  # no voltage: values as they are
        path = tmp_path / f"{unit}.edf"
        spo2 = rng.uniform(90, 99, eeg_uv.shape[1])
        write_edf(path, EDFHeader(signals=tuple(signals), start=datetime(2024, 3, 13, 9)), [*(eeg_uv * factor), spo2])
        with open_recording(path) as reader:
            data = reader.read()
        np.testing.assert_allclose(data[:3], eeg_uv, atol=limit / factor / 2**15 * 2)  # within 2 steps
        np.testing.assert_allclose(data[3], spo2, atol=0.01)


def test_header_errors_name_the_field(tmp_path, shared_data):
    good = (shared_data / "eegmat" / "Subject05_2.edf").read_bytes()
    bad = good[:8] + b"Y" * 80 + good[88:184] + b"1000    " + good[192:]
    path = tmp_path / "hdr.edf"
    path.write_bytes(bad)
    with pytest.raises(
        ReaderError, match=r"hdr.edf: header field header bytes: expected 256 \* \(1 \+ 22 signals\) = 5888; got 1000"
    ):
        EdfReader(path)
    short = tmp_path / "short.edf"
    short.write_bytes(good[:100])
    with pytest.raises(ReaderError, match=r"short.edf: header: expected at least 256 bytes; the file has 100"):
        EdfReader(short)


def test_edf_plus_d_records_after_a_gap_start_a_segment_on_the_recording_clock(shared_data, tmp_path):
    source = shared_data / "eegmat" / "Subject00_1.edf"  # 1 s records of 500 samples
    # Paused for 100 s after a minute; the last step is 1.0004 s, within half a sample of 1 s.
    onsets = [*range(60), *(k + 100.0 for k in range(60, 119)), 219.0004]
    write_edf_plus_d(source, tmp_path / "d.edf", onsets)
    with open_recording(tmp_path / "d.edf") as reader, open_recording(source) as original:
        assert reader.segments == (Segment(0, 30000, 0.0), Segment(30000, 60000, 160.0))
        np.testing.assert_array_equal(reader.read(), original.read(0, 60000))  # record order, no gap filling
    # The Nihon Kohden export is EDF+D with its records back to back: one segment.
    with open_recording(shared_data / "formats" / "nihonkohden" / "MB0400FU.EDF") as reader:
        assert reader.segments == (Segment(0, reader.info.n_times, 0.0),)


def test_edf_plus_d_records_out_of_order_or_without_an_onset_are_refused(shared_data, tmp_path):
    source = shared_data / "eegmat" / "Subject00_1.edf"
    write_edf_plus_d(source, tmp_path / "overlap.edf", [0, 1, 2, 2.5, 4])
    with pytest.raises(
        ReaderError,
        match=r"overlap.edf: data record 4: starts at 2.5 s, before the previous "
        r"record ends \(3 s\); EDF\+D records must be in time order",
    ):
        open_recording(tmp_path / "overlap.edf")
    write_edf_plus_d(source, tmp_path / "text.edf", [0, 1, 2])
    raw = bytearray((tmp_path / "text.edf").read_bytes())
    first = raw.index(b"+1\x14\x14")  # record 2's time-keeping TAL, replaced by free text
    raw[first : first + 9] = b"Jane Doe\x14"
    (tmp_path / "text.edf").write_bytes(bytes(raw))
    with pytest.raises(
        ReaderError,
        match=r"text.edf: data record 2: expected its onset .* at the start of its "
        r"EDF Annotations signal; got none",
    ) as err:
        open_recording(tmp_path / "text.edf")
    assert "Jane" not in str(err.value)
    # EDF+D without an annotation signal has no record onsets at all.
    raw = bytearray((tmp_path / "overlap.edf").read_bytes())
    at = raw.index(b"EDF Annotations")
    raw[at : at + 15] = b"Event channel  "
    (tmp_path / "nosignal.edf").write_bytes(bytes(raw))
    with pytest.raises(
        ReaderError,
        match=r"nosignal.edf: signals: an EDF\+D file needs an 'EDF Annotations' "
        r"signal holding each data record's onset; found none",
    ):
        open_recording(tmp_path / "nosignal.edf")


def test_a_header_padded_with_nul_bytes_reads_as_the_space_padded_one(shared_data, tmp_path):
    # The spec pads header fields with spaces; some writers pad with NUL bytes instead.
    source = shared_data / "eegmat" / "Subject00_1.edf"
    raw = bytearray(source.read_bytes())
    ns = int(raw[252:256])
    fields = [(0, 8), (8, 80), (88, 80), (168, 8), (176, 8), (184, 8), (192, 44), (236, 8), (244, 8), (252, 4)]
    offset = 256
    for width in (16, 80, 8, 8, 8, 8, 8, 80, 8, 32):
        fields += [(offset + i * width, width) for i in range(ns)]
        offset += ns * width
    for at, width in fields:
        value = bytes(raw[at : at + width]).rstrip(b" ")
        raw[at : at + width] = value.ljust(width, b"\0")
    (tmp_path / "nul.edf").write_bytes(bytes(raw))
    with open_recording(tmp_path / "nul.edf") as padded, open_recording(source) as spaced:
        assert padded.info == spaced.info and padded.identity_key == spaced.identity_key
        np.testing.assert_array_equal(padded.read(), spaced.read())


def test_readers_left_open_at_interpreter_exit_close_quietly(shared_data):
    # A reader still open when Python exits is collected after the os module: its close must not
    # print "Exception ignored in EdfReader.__del__" once per recording.
    import subprocess
    import sys

    script = (
        "import sys\nimport eegfm.pipelines.datasets\nfrom eegfm.pipelines.readers import open_recording\n"
        "kept = [open_recording(p) for p in sys.argv[1:]]\n"
    )
    files = [str(shared_data / "eegmat" / f"Subject0{i}_1.edf") for i in range(4)]
    done = subprocess.run([sys.executable, "-c", script, *files], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "Exception ignored" not in done.stderr, done.stderr[-2000:]


def test_an_annotation_only_edf_plus_is_named_as_one(tmp_path):
    # Sleep-EDF's *-Hypnogram.edf: one 'EDF Annotations' signal, data records of 0 s (EDF+ allows
    # that only in such files). It used to be refused for its record duration.
    def field(value, width):
        return str(value).ljust(width).encode("ascii")

    tal = b"+0\x14\x14\x00+0\x1530\x14Sleep stage W\x14\x00"
    head = (
        field(0, 8)
        + field("X X X X", 80)
        + field("Startdate X X X X", 80)
        + field("01.02.24", 8)
        + field("10.00.00", 8)
        + field(512, 8)
        + field("EDF+C", 44)
        + field(1, 8)
        + field(0, 8)
        + field(1, 4)
        + field("EDF Annotations", 16)
        + field("", 80)
        + field("", 8)
        + field(-1, 8)
        + field(1, 8)
        + field(-32768, 8)
        + field(32767, 8)
        + field("", 80)
        + field(len(tal) // 2 + 1, 8)
        + field("", 32)
    )
    (tmp_path / "SC4001EC-Hypnogram.edf").write_bytes(head + tal.ljust(2 * (len(tal) // 2 + 1), b"\0"))
    with pytest.raises(
        ReaderError,
        match=r"SC4001EC-Hypnogram.edf: signals: expected at least one data signal; "
        r"the file holds only annotations \(an EDF\+ annotation file",
    ):
        open_recording(tmp_path / "SC4001EC-Hypnogram.edf")


def test_bad_annotations_of_an_edf_plus_mark_sample_spans(shared_data, tmp_path):
    # MNE exports its BAD_ annotations into EDF+; here pyedflib writes them, independent of us.
    import pyedflib

    from eegfm.pipelines.readers.edf import bad_spans

    with pyedflib.EdfReader(str(shared_data / "eegmat" / "Subject00_1.edf")) as edf:
        names = [edf.getLabel(i) for i in range(19)]
        data = np.stack([edf.readSignal(i)[:30000] for i in range(19)])
    writer = pyedflib.EdfWriter(str(tmp_path / "marked.edf"), 19, file_type=pyedflib.FILETYPE_EDFPLUS)
    writer.setSignalHeaders(
        [
            {
                "label": n,
                "dimension": "uV",
                "sample_frequency": 500,
                "physical_max": 3000,
                "physical_min": -3000,
                "digital_max": 32767,
                "digital_min": -32768,
                "transducer": "",
                "prefilter": "",
            }
            for n in names
        ]
    )
    writer.writeSamples(list(data))
    for onset, duration, text in ((12.0, 3.0, "BAD_muscle"), (41.0, -1, "bad blink"), (55.0, 1.0, "Eyes closed")):
        writer.writeAnnotation(onset, duration, text)
    writer.close()
    with open_recording(tmp_path / "marked.edf") as reader:
        assert reader.bad_spans == ((6000, 7500), (20500, 20501))
    # On a paused recording's clock a span over the gap covers each side's part.
    paused = (Segment(0, 1000, 0.0), Segment(1000, 2000, 20.0))
    assert bad_spans([(108.0, 14.0, "BAD_x")], 100.0, paused, 100.0) == ((800, 1000), (1000, 1200))
