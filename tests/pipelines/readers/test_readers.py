"""One shared reader test over every real recording format in ../shared/data."""

import os

import numpy as np
import pandas as pd
import pytest

from eegfm.pipelines.readers import (
    HmsParquetReader,
    ReaderError,
    Segment,
    annotated_segments,
    annotation_samples,
    eeglab_data_file,
    open_recording,
)

# (relative path, sfreq, n_chans, n_times) from ../shared/data/README.md and the files' headers.
REAL_FILES = [
    ("eegmat/Subject00_1.edf", 500.0, 21, 91000),
    ("eegmat/Subject31_2.edf", 500.0, 21, 31000),
    ("eegmmi/S001R03.edf", 160.0, 64, 20000),
    ("hms/train_eegs/1000913311.parquet", 200.0, 20, 10000),
    ("formats/edf/chtypes_edf.edf", 200.0, 42, 1000),
    ("formats/nihonkohden/MB0400FU.EDF", 200.0, 25, 5800),
    ("formats/brainvision/test_NO.vhdr", 5000.0, 65, 2238),
    ("formats/fif/data_resting_EO_200Hz_raw.fif", 200.0, 2, 72000),
    ("formats/fif/sample_invalid_birthday_raw.fif", pytest.approx(300.307, abs=1e-3), 1, 31),
    ("formats/cnt/test_CNT_events_mne_JWoess_clipped.cnt", 1000.0, 2, 90000),
    ("formats/eximia/test_eximia.nxe", 1450.0, 64, 15678),
    ("formats/eeglab/test_raw_chanloc.set", 128.0, 61, 385),
]


@pytest.mark.parametrize("rel, sfreq, n_chans, n_times", REAL_FILES, ids=[r[0] for r in REAL_FILES])
def test_reader_contract_on_real_files(shared_data, rel, sfreq, n_chans, n_times):
    with open_recording(shared_data / rel) as reader:
        info = reader.info
        assert (info.sfreq, len(info.ch_names), info.n_times) == (sfreq, n_chans, n_times)
        stop = min(n_times, 2000)
        chunk = reader.read(0, stop)
        assert chunk.dtype == np.float32 and chunk.shape == (n_chans, stop)
        # Reading in two pieces gives the same samples as one read: chunked processing is exact.
        half = stop // 2
        np.testing.assert_array_equal(np.concatenate([reader.read(0, half), reader.read(half, stop)], axis=1), chunk)
        with pytest.raises(ReaderError, match="sample range"):
            reader.read(0, n_times + 1)


def _eegmat(path, stop=None, channels=None):
    """A real eegmat recording to rewrite into another format: its samples (µV) up to ``stop``,
    its channel names without the 'EEG ' prefix ('Fp1') and its rate; ``channels``: the first so many."""
    with open_recording(path) as edf:
        rows = slice(channels)
        return edf.read(0, stop)[rows], [name.split(" ", 1)[-1] for name in edf.info.ch_names][rows], edf.info.sfreq


def _write_eeglab(
    path,
    data_uv: np.ndarray,
    names: list[str],
    sfreq: float,
    events=(),
    data_file: str = "",
    positions=None,
    fiducials=None,
    chaninfo=True,
) -> None:
    """An EEGLAB .set (MATLAB 5 file holding the EEG struct, data inside) as EEGLAB writes one;
    ``events`` are (type, latency in 1-based samples, duration in samples). A 3-D ``data_uv``
    (channels, points, trials) is an epoched file with one 'stim' event at each epoch's start.
    With ``data_file`` the data go to that .fdt beside it (float32, a sample's channels together),
    which the .set names, as EEGLAB's two-file format does. ``positions``: each channel's X, Y, Z
    (EEGLAB's frame: x toward the nose, y toward the left ear; mm) in chanlocs; ``fiducials``:
    {'Nasion' | 'Left periauricular point' | 'Right periauricular point': xyz} in
    chaninfo.nodatchans, as EEGLAB keeps them. ``chaninfo=False``: EEG.chaninfo an empty array,
    as scripts that never set it save it."""
    from scipy.io import savemat

    chanlocs = np.zeros((1, len(names)), dtype=[(k, "O") for k in ("labels", "type", "X", "Y", "Z")])
    for i, name in enumerate(names):
        xyz = [float(v) for v in positions[name]] if positions else [np.array([])] * 3
        chanlocs[0, i] = (name, "", *xyz)
    chaninfo, keep = {"nosedir": "+X"}, chaninfo
    if fiducials:
        nodatchans = np.zeros(
            (1, len(fiducials)), dtype=[(k, "O") for k in ("labels", "type", "description", "X", "Y", "Z")]
        )
        for i, (what, xyz) in enumerate(fiducials.items()):
            nodatchans[0, i] = (what.split()[0], "FID", what, *(float(v) for v in xyz))
        chaninfo["nodatchans"] = nodatchans
    n, trials = data_uv.shape[1], (data_uv.shape[2] if data_uv.ndim == 3 else 1)
    empty = np.zeros((0, 0))
    fields = ["type", "latency", "duration"] + ["epoch"] * (trials > 1)
    if trials > 1:
        events = [("stim", float(k * n + 1), 0.0, float(k + 1)) for k in range(trials)]
    event = np.zeros((1, len(events)), dtype=[(k, "O") for k in fields])
    for i, row in enumerate(events):
        event[0, i] = row
    epoch = np.zeros((1, trials), dtype=[(k, "O") for k in ("event", "eventtype", "eventlatency")])
    for k in range(trials):
        epoch[0, k] = (float(k + 1), "stim", 0.0)
    savemat(
        path,
        {
            "EEG": {
                "setname": "eegmat",
                "nbchan": float(len(names)),
                "trials": float(trials),
                "pnts": float(n),
                "srate": sfreq,
                "xmin": 0.0,
                "xmax": (n - 1) / sfreq,
                "times": np.arange(n) / sfreq * 1000.0,
                "data": data_file or data_uv.astype(np.float32),
                "chanlocs": chanlocs,
                "event": event if len(events) else empty,
                "epoch": epoch if trials > 1 else empty,
                "icawinv": empty,
                "icasphere": empty,
                "icaweights": empty,
                "ref": "common",
                "chaninfo": chaninfo if keep else empty,
            }
        },
        appendmat=False,
        oned_as="row",
    )
    if data_file:
        data_uv.reshape(len(names), -1, order="F").astype(np.float32).ravel(order="F").tofile(
            os.path.join(os.path.dirname(path), data_file)
        )


def test_eeglab_recording_reads_as_the_edf_it_was_made_from(shared_data, tmp_path):
    # No EEGLAB file ships in ../shared/data: one is written from a real eegmat recording.
    data, names, sfreq = _eegmat(shared_data / "eegmat" / "Subject00_2.edf")
    _write_eeglab(tmp_path / "s.set", data, names, sfreq)
    with open_recording(tmp_path / "s.set") as reader:
        assert (list(reader.info.ch_names), reader.info.sfreq, reader.info.n_times) == (names, sfreq, data.shape[1])
        np.testing.assert_allclose(reader.read(), data, rtol=0, atol=1e-3)  # float32 in, microvolts out


def test_an_eeglab_file_whose_chaninfo_is_an_empty_array_reads_like_any_other(shared_data, tmp_path):
    # A script's pop_saveset of an EEG struct it built itself leaves EEG.chaninfo = []: MNE 1.x
    # alone fails on it ("'numpy.ndarray' object has no attribute 'get'").
    data, names, sfreq = _eegmat(shared_data / "eegmat" / "Subject00_2.edf", stop=5000)
    _write_eeglab(tmp_path / "bare.set", data, names, sfreq, chaninfo=False)
    _write_eeglab(
        tmp_path / "ep.set", data.reshape(len(names), 2, 2500).transpose(0, 2, 1), names, sfreq, chaninfo=False
    )
    with open_recording(tmp_path / "bare.set") as reader:
        np.testing.assert_allclose(reader.read(), data, rtol=0, atol=1e-3)
    with open_recording(tmp_path / "ep.set") as reader:
        assert reader.segments == (Segment(0, 2500, 0.0), Segment(2500, 5000, 5.0))
        np.testing.assert_allclose(reader.read(), data, rtol=0, atol=1e-3)


def test_an_eeglab_recording_with_cuts_has_a_segment_between_each(shared_data, tmp_path):
    # EEGLAB marks where it removed data (clean_rawdata, pop_select) with 'boundary' events.
    data, names, sfreq = _eegmat(shared_data / "eegmat" / "Subject00_2.edf")
    _write_eeglab(
        tmp_path / "cut.set",
        data,
        names,
        sfreq,
        events=[("boundary", 10000.5, 500.0), ("stim", 12000.0, 0.0), ("boundary", 20000.5, 0.0)],
    )
    with open_recording(tmp_path / "cut.set") as reader:
        assert reader.segments == (Segment(0, 10000, 0.0), Segment(10000, 20000, 20.0), Segment(20000, 31000, 40.0))


def test_epoched_files_read_as_their_epochs_each_a_segment(shared_data, tmp_path):
    import mne

    source = shared_data / "eegmat" / "Subject00_1.edf"
    data, names, sfreq = _eegmat(source)
    # EEGLAB: 10 epochs of 5 s; the file keeps no clock, so they follow each other.
    epochs = data[:, :25000].reshape(len(names), 10, 2500).transpose(0, 2, 1)
    _write_eeglab(tmp_path / "ep.set", epochs, names, sfreq)
    with open_recording(tmp_path / "ep.set") as reader:
        assert reader.segments == tuple(Segment(k * 2500, (k + 1) * 2500, k * 5.0) for k in range(10))
        np.testing.assert_allclose(reader.read(1234, 7777), data[:, 1234:7777], atol=1e-3)
    # FIF: 12 s epochs cut by MNE with two dropped; each starts at its event in the recording.
    raw = mne.io.read_raw_edf(source, verbose="error")
    cut = mne.make_fixed_length_epochs(raw, duration=12.0, verbose="error")
    cut.drop([2, 3], verbose="error")
    cut.save(tmp_path / "s-epo.fif", verbose="error")
    with open_recording(tmp_path / "s-epo.fif") as reader:
        assert reader.segments[:4] == (
            Segment(0, 6000, 0.0),
            Segment(6000, 12000, 12.0),
            Segment(12000, 18000, 48.0),
            Segment(18000, 24000, 60.0),
        )
        np.testing.assert_allclose(reader.read(6000, 18000), data[:, np.r_[6000:12000, 24000:30000]], atol=1e-3)


def _brainvision(folder, names, data, sfreq=500.0, markers=""):
    """A BrainVision recording of ``data`` (µV) with channels named ``names``, as Recorder writes
    it; ``markers``: the [Marker Infos] lines of its .vmrk, which it then has."""
    data.T.astype("<f4").tofile(folder / "x.eeg")
    channels = "\n".join(f"Ch{i + 1}={name},,1,µV" for i, name in enumerate(names))
    (folder / "x.vhdr").write_text(
        "Brain Vision Data Exchange Header File Version 1.0\n[Common Infos]\nCodepage=UTF-8\nDataFile=x.eeg\n"
        + ("MarkerFile=x.vmrk\n" if markers else "")
        + f"DataFormat=BINARY\nDataOrientation=MULTIPLEXED\nNumberOfChannels={len(names)}\n"
        f"SamplingInterval={1e6 / sfreq:g}\n[Binary Infos]\nBinaryFormat=IEEE_FLOAT_32\n[Channel Infos]\n{channels}\n",
        encoding="utf-8",
    )
    if markers:
        (folder / "x.vmrk").write_text(
            "Brain Vision Data Exchange Marker File, Version 1.0\n[Common Infos]\nCodepage=UTF-8\nDataFile=x.eeg\n"
            f"[Marker Infos]\n{markers}",
            encoding="utf-8",
        )
    return folder / "x.vhdr"


def _mff(folder, data, sfreq=500, device="HydroCel GSN 128 1.0", resumed=None):
    """An EGI MFF recording (a folder) of ``data`` (µV, one row per sensor of ``device``, the last
    the vertex reference) as Net Station writes one, with the net's sensor coordinates;
    ``resumed``: (seconds, data) of a second block recorded after a pause."""
    import datetime

    from mffpy import Writer
    from mffpy.bin_writer import BinWriter

    writer = Writer(str(folder))
    writer.addxml("fileInfo", recordTime=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
    signal = BinWriter(sampling_rate=int(sfreq), data_type="EEG")
    signal.add_block(np.asarray(data, dtype=np.float32), offset_us=0)
    if resumed is not None:
        signal.add_block(np.asarray(resumed[1], dtype=np.float32), offset_us=int(resumed[0] * 1e6))
    writer.addbin(signal)
    writer.add_coordinates_and_sensor_layout(device)
    writer.write()
    return folder


def test_an_egi_mff_folder_is_one_recording_with_its_nets_positions(shared_data, tmp_path):
    with open_recording(shared_data / "eegmat" / "Subject00_2.edf") as edf:
        data = edf.read(0, 5000)[:19]
    rows = np.vstack([np.tile(data, (7, 1))[:128], np.zeros((1, 5000))])  # E1..E128, then the reference
    folder = _mff(tmp_path / "net.mff", rows)
    with open_recording(folder) as reader:
        assert reader.info.ch_names == tuple(f"E{k}" for k in range(1, 129)) + ("VREF",)
        assert reader.info.sfreq == 500.0 and reader.info.n_times == 5000
        np.testing.assert_allclose(reader.read(1000, 3000), rows[:, 1000:3000], atol=1e-3)
        digitized = reader.digitized  # coordinates.xml, with the nasion and ears
        assert digitized is not None and digitized.nasion is not None and len(digitized.positions) == 129
    # Paused and resumed: two continuous stretches, the gap between them no data
    with open_recording(_mff(tmp_path / "paused.mff", rows, resumed=(20.0, rows))) as reader:
        first, second = reader.segments
        assert first == Segment(0, 5000, 0.0) and second.stop - second.start == 5000
        assert second.start > 5000 and second.onset_s == second.start / 500
        np.testing.assert_allclose(reader.read(second.start, second.stop), rows, atol=1e-3)
    (tmp_path / "broken.mff").mkdir()
    (tmp_path / "broken.mff" / "info.xml").write_text("<not an mff")
    with pytest.raises(ReaderError, match=r"^broken.mff: not a readable egi file"):
        open_recording(tmp_path / "broken.mff")


def test_a_brainvision_recording_resumed_after_a_pause_has_a_segment_from_each_start(shared_data, tmp_path):
    data, names, _ = _eegmat(shared_data / "eegmat" / "Subject00_1.edf", 30000, channels=19)
    # Recorder writes a 'New Segment' marker where recording starts and wherever it resumes.
    header = _brainvision(
        tmp_path,
        names,
        data,
        markers="Mk1=New Segment,,1,1,0,20200101100000000000\n"
        "Mk2=Stimulus,S  1,5000,1,0\nMk3=New Segment,,15001,1,0,20200101101000000000\n",
    )
    with open_recording(header) as reader:
        assert reader.segments == (Segment(0, 15000, 0.0), Segment(15000, 30000, 30.0))
        np.testing.assert_allclose(reader.read(), data, rtol=1e-6)


def test_a_fif_channel_in_volts_reads_in_microvolts_whatever_its_type(shared_data, tmp_path):
    import mne

    raw = mne.io.read_raw_edf(shared_data / "eegmat" / "Subject00_1.edf", preload=True, verbose="error").crop(0, 10)
    expected = raw.get_data(picks=["EEG Cz", "EEG Fz"]) * 1e6
    raw.set_channel_types({"EEG Cz": "bio", "ECG ECG": "ecg"}, verbose="error")  # still in volts
    raw.save(tmp_path / "typed_raw.fif", verbose="error")
    with open_recording(tmp_path / "typed_raw.fif") as reader:
        rows = [reader.info.ch_names.index(name) for name in ("EEG Cz", "EEG Fz")]
        np.testing.assert_allclose(reader.read()[rows], expected, rtol=1e-5, atol=1e-4)


def test_annotated_segments_leave_out_skips_and_split_at_cuts():
    import mne

    raw = mne.io.RawArray(np.zeros((2, 1000)), mne.create_info(["Fz", "Cz"], 100.0, "eeg"), verbose="error")

    def segments(raw):
        return annotated_segments(annotation_samples(raw), raw.n_times, raw.info["sfreq"])

    assert segments(raw) == ()  # continuous: the reader's default single segment
    raw.set_annotations(
        mne.Annotations(
            [0.0, 1.0, 2.0, 2.5, 6.0, 9.5],
            [0.0, 0.0, 1.0, 1.0, 0.0, 0.5],
            ["New Segment/", "stim", "BAD_ACQ_SKIP", "BAD_ACQ_SKIP", "boundary", "BAD_ACQ_SKIP"],
        )
    )
    # A skip's samples belong to no segment (overlapping skips merge); a cut splits; the first
    # 'New Segment' (where every BrainVision recording starts) and other annotations change nothing.
    assert segments(raw) == (Segment(0, 200, 0.0), Segment(350, 600, 3.5), Segment(600, 950, 6.0))


def test_an_eeglab_file_saved_as_matlab_v73_reads_as_the_edf_it_was_made_from(shared_data, tmp_path):
    # EEGLAB saves large data sets (and, by its option, any) as MATLAB v7.3: HDF5, not a MAT 5
    # file; MNE reads those only through pymatreader.
    import hdf5storage

    data, names, sfreq = _eegmat(shared_data / "eegmat" / "Subject00_2.edf")
    empty = np.zeros((0, 0))
    chanlocs = np.zeros((1, len(names)), dtype=[(k, "O") for k in ("labels", "type", "X", "Y", "Z")])
    for i, name in enumerate(names):
        chanlocs[0, i] = (name, "", empty, empty, empty)
    n = data.shape[1]
    eeg = {
        "setname": "eegmat",
        "nbchan": float(len(names)),
        "trials": 1.0,
        "pnts": float(n),
        "srate": sfreq,
        "xmin": 0.0,
        "xmax": (n - 1) / sfreq,
        "times": np.arange(n) / sfreq * 1000.0,
        "data": data,
        "chanlocs": chanlocs,
        "event": empty,
        "epoch": empty,
        "icawinv": empty,
        "icasphere": empty,
        "icaweights": empty,
        "ref": "common",
    }
    hdf5storage.savemat(
        str(tmp_path / "v73.mat"),
        {"EEG": eeg},
        format="7.3",
        oned_as="row",
        store_python_metadata=False,
        matlab_compatible=True,
    )
    (tmp_path / "v73.mat").rename(tmp_path / "v73.set")
    with open_recording(tmp_path / "v73.set") as reader:
        assert (list(reader.info.ch_names), reader.info.sfreq) == (names, sfreq)
        np.testing.assert_allclose(reader.read(), data, rtol=0, atol=1e-3)


def test_a_set_names_its_data_file_and_reads_through_it_when_both_were_renamed(shared_data, tmp_path):
    import hdf5storage
    from scipy.io import savemat

    data, names, sfreq = _eegmat(shared_data / "eegmat" / "Subject00_2.edf", 5000)
    _write_eeglab(tmp_path / "inside.set", data, names, sfreq)
    _write_eeglab(tmp_path / "two.set", data, names, sfreq, data_file="two.fdt")
    assert eeglab_data_file(tmp_path / "inside.set") is None
    assert eeglab_data_file(tmp_path / "two.set") == "two.fdt"
    # EEGLAB's newer files keep the fields at the top; v7.3 files are HDF5; Windows paths happen.
    savemat(tmp_path / "top.set", {"data": "C:\\eeg\\top.fdt", "srate": sfreq}, appendmat=False)
    assert eeglab_data_file(tmp_path / "top.set") == "top.fdt"
    hdf5storage.savemat(
        str(tmp_path / "v73.set"),
        {"EEG": {"data": "v73.fdt", "srate": sfreq}},
        format="7.3",
        store_python_metadata=False,
        matlab_compatible=True,
        appendmat=False,
    )
    assert eeglab_data_file(tmp_path / "v73.set") == "v73.fdt"
    (tmp_path / "edf.set").write_bytes((shared_data / "eegmat" / "Subject00_2.edf").read_bytes()[:4096])
    assert eeglab_data_file(tmp_path / "edf.set") is None
    # Both files renamed: the .set still names two.fdt; MNE reads the .fdt named like the .set.
    (tmp_path / "two.set").rename(tmp_path / "moved.set")
    (tmp_path / "two.fdt").rename(tmp_path / "moved.fdt")
    with open_recording(tmp_path / "moved.set") as reader:
        np.testing.assert_allclose(reader.read(), data, rtol=0, atol=1e-3)


@pytest.mark.parametrize("rel", ["eegmat/Subject00_1.edf", "eegmmi/S001R03.edf", "hms/train_eegs/1000913311.parquet"])
def test_eeg_comes_out_in_microvolts(shared_data, rel):
    with open_recording(shared_data / rel) as reader:
        data = reader.read(0, int(10 * reader.info.sfreq))
    eeg = data[:19]
    std = np.median(eeg.std(axis=1))
    assert 2.0 < std < 200.0, f"median channel std {std} is not a microvolt-scale EEG"


def test_clinical_info_is_whole_years_and_sex_only(shared_data):
    with open_recording(shared_data / "eegmat" / "Subject00_1.edf") as reader:
        assert reader.info.clinical.age == 21.0  # born 1990-01-01, recorded 2011-01-01
        assert reader.info.clinical.sex == "M"
        assert "Subject0" in reader.identity_key  # opaque key for the pseudonymizer only
    assert not hasattr(reader.info, "subject_info")


def test_bad_files_fail_with_the_file_and_the_problem(tmp_path, shared_data):
    empty = tmp_path / "empty.edf"
    empty.write_bytes(b"")
    with pytest.raises(ReaderError, match=r"empty.edf: file size: expected a recording; got an empty"):
        open_recording(empty)

    csv = tmp_path / "fake.parquet"
    csv.write_text("a,b\n1,2\n")
    with pytest.raises(ReaderError, match=r"fake.parquet: not a parquet file"):
        open_recording(csv)

    partial = tmp_path / "partial.parquet"
    real = pd.read_parquet(shared_data / "hms" / "train_eegs" / "1000913311.parquet")
    real.drop(columns=["Cz", "O2"]).head(400).to_parquet(partial)
    with pytest.raises(
        ReaderError, match=r"partial.parquet: columns: expected the 19 HMS EEG columns .* missing Cz, O2"
    ):
        HmsParquetReader(partial)

    nan = tmp_path / "nan.parquet"
    bad = real.head(400).copy()
    bad.loc[100:120, "C3"] = np.nan
    bad.to_parquet(nan)
    with pytest.raises(ReaderError, match=r"nan.parquet: samples: expected finite values; channels C3"):
        open_recording(nan).read()

    with pytest.raises(
        ReaderError,
        match=r"notes.txt: file type: expected one of .bdf, .bdf.gz, .cdt, .cnt, .dat, .edf, .edf.gz, .eeg, "
        r".fif, .fif.gz, .gdf, .lay, .mff, .nedf, .nxe, .parquet, .set, .vhdr; got '.txt'$",
    ):
        open_recording(tmp_path / "notes.txt")
    with pytest.raises(
        ReaderError,
        match=r"eeg.tar.gz: file type: .*; got '.tar.gz' \(an archive: unpack it and "
        r"give the folder as --input\)$",
    ):
        open_recording(tmp_path / "eeg.tar.gz")

    truncated = tmp_path / "truncated.edf"
    truncated.write_bytes((shared_data / "eegmat" / "Subject00_1.edf").read_bytes()[:700])
    with pytest.raises(ReaderError, match=r"truncated.edf: "):
        open_recording(truncated)


def test_a_label_used_twice_that_names_no_electrode_costs_nothing(shared_data, tmp_path):
    # Exports label unused slots alike (blank, or one word for all) and may carry two ECG leads.
    from tests.pipelines.bad_corpus import _write

    with open_recording(shared_data / "eegmat" / "Subject00_2.edf") as edf:
        eeg = edf.read(0, 256 * 20)[:19]
        names = list(edf.info.ch_names[:19])
    extra = np.random.default_rng(0).normal(0, 100, size=(4, eeg.shape[1]))
    _write(tmp_path / "x.edf", names + ["ECG", "ECG", "", ""], np.vstack([eeg, extra]))
    with open_recording(tmp_path / "x.edf") as reader:
        assert reader.info.ch_names == (*names, "ECG-0", "ECG-1", "-0", "-1")  # as MNE numbers them
        np.testing.assert_allclose(reader.read()[19:], extra, atol=0.1)
    # An electrode written twice is refused: which of the two is it?
    _write(tmp_path / "twice.edf", names + [names[0]], np.vstack([eeg, eeg[:1]]))
    with pytest.raises(ReaderError, match=r"duplicated \['EEG Fp1'\]"):
        open_recording(tmp_path / "twice.edf")


def test_an_electrode_named_twice_is_refused_and_other_names_twice_read_in_every_format(shared_data, tmp_path):
    eeg, names, _ = _eegmat(shared_data / "eegmat" / "Subject00_2.edf", 5000, channels=19)
    # EEGLAB through MNE, which numbers duplicates ('Fp1-0', 'Fp1-1'): neither would map, and Fp1
    # would pass for missing and be interpolated.
    _write_eeglab(tmp_path / "twice.set", eeg, names[:-1] + ["Fp1"], 500.0)
    with pytest.raises(ReaderError, match=r"duplicated \['Fp1'\] \(read as 'Fp1-0', 'Fp1-1'\)"):
        open_recording(tmp_path / "twice.set")
    _write_eeglab(tmp_path / "eog.set", eeg, names[:-2] + ["EOG", "EOG"], 500.0)
    with open_recording(tmp_path / "eog.set") as reader:
        assert reader.info.ch_names[-2:] == ("EOG-0", "EOG-1")
    # BrainVision: MNE's reader fails on any duplicate ("has no associated original unit").
    (tmp_path / "bv").mkdir()
    header = _brainvision(tmp_path / "bv", names[:-1] + ["Fp1"], eeg)
    with pytest.raises(ReaderError, match=r"duplicated \['Fp1'\]"):
        open_recording(header)
    header = _brainvision(tmp_path / "bv", names[:-3] + ["EOG", "EOG", ""], eeg)
    with open_recording(header) as reader:
        assert reader.info.ch_names[-3:] == ("EOG-0", "EOG-1", "")
        np.testing.assert_allclose(reader.read(), eeg, rtol=1e-6)


def test_eeglab_fiducials_are_turned_into_the_frame_and_unit_of_its_channels():
    from mne.io.constants import FIFF

    from eegfm.pipelines.readers.eeglab import eeglab_fiducials

    nasion, lpa, rpa = FIFF.FIFFV_POINT_NASION, FIFF.FIFFV_POINT_LPA, FIFF.FIFFV_POINT_RPA
    # as EEGLAB writes them (x toward the nose, y toward the left ear), in mm
    written = {nasion: (100.0, 0.0, 0.0), lpa: (0.0, 80.0, 0.0), rpa: (0.0, -80.0, 0.0)}
    turned = eeglab_fiducials(written)
    assert np.allclose(turned[nasion], (0.0, 0.1, 0.0)) and np.allclose(turned[lpa], (-0.08, 0.0, 0.0))
    in_cm = {k: tuple(c / 10 for c in v) for k, v in written.items()}
    assert np.allclose(eeglab_fiducials(in_cm)[rpa], (0.08, 0.0, 0.0))
    # already in MNE's frame (a reader that turns them itself): the nasion would land on an ear
    assert eeglab_fiducials({nasion: (0.0, 0.1, 0.0), lpa: (-0.08, 0.0, 0.0), rpa: (0.08, 0.0, 0.0)}) is None
    assert eeglab_fiducials({k: (1e6, 0.0, 0.0) for k in written}) is None  # no unit makes a head of it


def test_the_recordings_annotations_are_its_events_in_its_own_time(shared_data, tmp_path):
    import mne

    # EEGMMI's run 3 (EDF+): rest and trials marked T0, T1, T2 every 4.1-4.2 s
    path = shared_data / "eegmmi" / "S001R03.edf"
    with open_recording(path) as edf:
        events = edf.events
    assert len(events) == 30 and events[:3] == ((0.0, 4.2, "T0"), (4.2, 4.1, "T2"), (8.3, 4.2, "T0"))
    # The same through MNE (a FIF), where a cut leaves samples and time apart: after 20 s skipped at
    # 30 s, an annotation at 60 s in time is 40 s in samples.
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    raw.save(tmp_path / "run_raw.fif", verbose="error")
    with open_recording(tmp_path / "run_raw.fif") as fif:
        assert [(round(a, 3), round(b, 3), c) for a, b, c in fif.events] == [
            (round(a, 3), round(b, 3), c) for a, b, c in events
        ]
    from eegfm.pipelines.readers import Segment, annotated_events

    segments = (Segment(0, 4800, 0.0), Segment(4800, 9600, 50.0))
    assert annotated_events([(160, 16, "t1"), (6400, 32, "t2")], segments, 160.0) == (
        (1.0, 0.1, "t1"),
        (60.0, 0.2, "t2"),
    )


def test_recorded_at_is_the_files_start_date_and_clock_time(shared_data, tmp_path):
    """EDF's header date and time (the EDF+ Startdate's four-digit year), MNE's meas_date as stored."""
    import datetime as dt

    import mne

    with open_recording(shared_data / "eegmmi" / "S001R03.edf") as edf:
        assert edf.recorded_at == dt.datetime(2009, 8, 12, 16, 15)
    raw = mne.io.read_raw_edf(shared_data / "eegmmi" / "S001R03.edf", verbose="error")
    raw.save(tmp_path / "run_raw.fif", verbose="error")
    with open_recording(tmp_path / "run_raw.fif") as fif:
        assert fif.recorded_at == dt.datetime(2009, 8, 12, 16, 15)
