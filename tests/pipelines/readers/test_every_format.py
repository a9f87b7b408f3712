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
    # about 10^8 uV as MNE reads this test file: beyond what a float16 record can hold
    "test_eximia.nxe": ("quarantined", "no usable windows: all 1 windows rejected (amplitude x1)"),
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
    from eegfm.pipelines.job.preprocess import run

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


def _eeg_channels(edf) -> tuple[list[str], int, np.ndarray]:
    """The EEG channels of a real EDF (``EEG Fp1`` ..., no derivations): their labels without the
    ``EEG `` prefix, the sampling rate (whole hertz, as every format here stores it) and the µV, for
    writing the recording in another format."""
    from eegfm.pipelines.readers import open_recording

    with open_recording(edf) as reader:
        picks = [i for i, n in enumerate(reader.info.ch_names) if n.startswith("EEG ") and "-" not in n]
        labels = [reader.info.ch_names[i].removeprefix("EEG ") for i in picks]
        assert reader.info.sfreq == int(reader.info.sfreq)
        return labels, int(reader.info.sfreq), reader.read()[picks].astype(np.float64)


def _job(folder, key_file, tmp_path) -> tuple[dict, dict]:
    """One pipeline run over ``folder``: its manifest, and the manifest's inputs by file name."""
    from eegfm.pipelines.job.preprocess import run

    args = ["--input", str(folder), "--output", str(tmp_path / "out"), "--pseudonym_key_file", key_file]
    manifest = run([*args, "--keep_paths", "--runner", "DirectRunner", "--direct_running_mode", "in_memory"])
    return manifest, {os.path.basename(e["source"]): e for e in manifest["inputs"]}


def _persyst_copy(edf, folder, name="rec"):
    """``edf``'s EEG written as a Persyst recording (``name.lay`` naming ``name.dat``: interleaved 16-bit
    samples of 0.1 µV), as Persyst exports it; returns the .lay path and the µV it holds."""
    labels, sfreq, data = _eeg_channels(edf)
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
    from eegfm.pipelines.readers import open_recording

    folder = tmp_path / "persyst"
    folder.mkdir()
    lay, labels, microvolts = _persyst_copy(shared_data / "eegmat" / "Subject00_2.edf", folder)
    with open_recording(lay) as reader:
        assert reader.info.ch_names == tuple(label.upper() for label in labels) and reader.info.sfreq == 500.0
        np.testing.assert_allclose(reader.read(), microvolts, atol=1e-3)
        assert reader.events == ((12.5, 0.0, "eyes closed"),)
        assert (reader.info.clinical.age, reader.info.clinical.sex) == (40, "F")  # born 2 Jan 1980, recorded 2020
    manifest, by_name = _job(folder, key_file, tmp_path)
    assert by_name["rec.lay"]["status"] == "processed" and manifest["counts"]["windows"] >= 6
    assert by_name["rec.dat"] == {
        **by_name["rec.dat"],
        "status": "ignored",
        "reason": "Persyst data of rec.lay (.dat), read through it",
    }


NEDF_VOLTS_PER_COUNT = 2.4 / (6.0 * (2**23 - 1))  # NeuroElectrics' 24-bit ADC at gain 6


def _nedf_copy(edf, folder, name="rec"):
    """``edf``'s EEG written as a NeuroElectrics .nedf (version 1.4: an XML header padded with NULs to
    10,240 bytes, then blocks of one 3-axis accelerometer reading and 5 samples, each the channels'
    big-endian 24-bit counts and a 32-bit trigger); returns the path, the labels and the µV it holds."""
    labels, sfreq, data = _eeg_channels(edf)
    n_samples = data.shape[1] - data.shape[1] % 5
    counts = np.round(data[:, :n_samples] * 1e-6 / NEDF_VOLTS_PER_COUNT).astype(np.int64)
    montage = "".join(f"<C{k}>{label}</C{k}>" for k, label in enumerate(labels, 1))
    header = (
        "<Header><NEDFversion>1.4</NEDFversion><NumberOfChannelsOfAccelerometer>3</NumberOfChannelsOfAccelerometer>"
        f"<EEGSettings><TotalNumberOfChannels>{len(labels)}</TotalNumberOfChannels>"
        f"<EEGSamplingRate>{sfreq:g}</EEGSamplingRate><NumberOfRecordsOfEEG>{n_samples}</NumberOfRecordsOfEEG>"
        f"<EEGMontage>{montage}</EEGMontage></EEGSettings>"
        "<StepDetails><StartDate_firstEEGTimestamp>1585735200000</StartDate_firstEEGTimestamp></StepDetails></Header>"
    ).encode()
    sample = np.dtype([("eeg", "u1", (len(labels), 3)), ("trig", ">i4")])
    blocks = np.zeros(n_samples // 5, dtype=[("acc", ">u2", (3,)), ("data", sample, (5,))])
    twos_complement = (counts.T % (1 << 24)).reshape(n_samples // 5, 5, len(labels))
    for byte, shift in enumerate((16, 8, 0)):
        blocks["data"]["eeg"][..., byte] = (twos_complement >> shift) & 0xFF
    path = folder / f"{name}.nedf"
    path.write_bytes(header.ljust(10240, b"\0") + blocks.tobytes())
    return path, labels, counts * NEDF_VOLTS_PER_COUNT * 1e6


def test_a_neuroelectrics_recording_is_read_and_processed(shared_data, key_file, tmp_path):
    """A real recording (eegmat Subject00_2, 19 EEG channels) as a .nedf: its header's montage names the
    channels (MNE adds its trigger channel, STI 014), the counts come back as µV, and the job writes its
    windows."""
    from eegfm.pipelines.readers import open_recording

    folder = tmp_path / "nedf"
    folder.mkdir()
    path, labels, microvolts = _nedf_copy(shared_data / "eegmat" / "Subject00_2.edf", folder)
    with open_recording(path) as reader:
        assert reader.info.ch_names == (*labels, "STI 014") and reader.info.sfreq == 500.0
        np.testing.assert_allclose(reader.read()[: len(labels)], microvolts, atol=1e-3)
    manifest, by_name = _job(folder, key_file, tmp_path)
    assert list(by_name) == ["rec.nedf"] and by_name["rec.nedf"]["status"] == "processed"
    assert manifest["counts"]["windows"] >= 6


def _gdf_copy(edf, folder, name="rec"):
    """``edf``'s EEG written as GDF 1.25 (a 256-byte fixed header, 256 bytes per channel, one-second
    records of 16-bit samples at 0.1 µV, then an event table with one event); returns the path, the
    labels and the µV it holds."""
    labels, sfreq, data = _eeg_channels(edf)
    n_records, n = data.shape[1] // sfreq, len(labels)
    counts = np.round(data[:, : n_records * sfreq] / 0.1).astype("<i2")

    def text(value: str, width: int) -> bytes:
        return value.encode().ljust(width)

    fixed = b"".join(
        [
            text("GDF 1.25", 8),
            text("X X", 80),  # patient: neither identifier nor name
            text("", 80),
            text("2020040110000000", 16),
            np.int64(256 * (n + 1)).tobytes(),
            bytes(44),  # equipment, hospital, technician, reserved
            np.int64(n_records).tobytes(),
            np.array([1, 1], "<u4").tobytes(),  # a record lasts 1/1 s
            np.uint32(n).tobytes(),
        ]
    )
    per_channel = [
        b"".join(text(label, 16) for label in labels),
        bytes(80 * n),  # transducer
        text("uV", 8) * n,
        np.full(n, -3276.8).tobytes() + np.full(n, 3276.7).tobytes(),
        np.full(n, -32768, "<i8").tobytes() + np.full(n, 32767, "<i8").tobytes(),
        text("HP:0.5Hz LP:70Hz", 80) * n,
        np.full(n, sfreq, "<i4").tobytes(),
        np.full(n, 3, "<i4").tobytes(),  # GDF type 3: int16
        bytes(32 * n),
    ]
    records = counts.reshape(n, n_records, sfreq).transpose(1, 0, 2).tobytes()
    events = bytes([1]) + sfreq.to_bytes(3, "little") + np.uint32(1).tobytes()
    events += np.uint32(2 * sfreq + 1).tobytes() + np.uint16(0x0300).tobytes()  # a trial start at 2 s
    path = folder / f"{name}.gdf"
    path.write_bytes(fixed + b"".join(per_channel) + records + events)
    return path, labels, counts * 0.1


def test_a_gdf_recording_is_read_and_processed(shared_data, key_file, tmp_path):
    """A real recording (eegmat Subject00_2, 19 EEG channels) as GDF 1.25: its labels and samples come
    back, and the job writes its windows."""
    from eegfm.pipelines.readers import open_recording

    folder = tmp_path / "gdf"
    folder.mkdir()
    path, labels, microvolts = _gdf_copy(shared_data / "eegmat" / "Subject00_2.edf", folder)
    with open_recording(path) as reader:
        assert reader.info.ch_names[: len(labels)] == tuple(labels) and reader.info.sfreq == 500.0
        np.testing.assert_allclose(reader.read()[: len(labels)], microvolts, atol=1e-3)
    manifest, by_name = _job(folder, key_file, tmp_path)
    assert list(by_name) == ["rec.gdf"] and by_name["rec.gdf"]["status"] == "processed"
    assert manifest["counts"]["windows"] >= 6


NIHON_DEVICE = b"EEG-1200A V01.00"
NIHON_MICROVOLTS_PER_COUNT = 6399.902 / 65535  # MNE's range for EEG electrodes: -3200 to 3199.902 µV


def _nihon_copy(edf, folder, name="REC"):
    """``edf``'s EEG written as a Nihon Kohden recording: the .EEG (device name, one control block,
    one data block of offset-binary 16-bit samples interleaved with a marker word), the .21E naming
    its electrodes, the .PNT with the start time and the .LOG with one event at 12 s. Returns the
    .EEG path, the labels and the µV it holds."""
    labels, sfreq, data = _eeg_channels(edf)
    n_samples = data.shape[1] - data.shape[1] % (sfreq // 10)  # whole tenths of a second
    offset = -3200 + 32768 * NIHON_MICROVOLTS_PER_COUNT
    counts = np.round((data[:, :n_samples] - offset) / NIHON_MICROVOLTS_PER_COUNT).astype(np.int64)
    control, block = 0x400, 0x1900
    header = bytearray(block + 0x27 + 10 * len(labels))
    header[0:16] = header[0x81 : 0x81 + 16] = NIHON_DEVICE
    header[0x91], header[0x17FE] = 1, 1  # one control block; the waveform block's sign
    header[0x92:0x96] = np.uint32(control).tobytes()
    header[control + 17] = 1  # one data block
    header[control + 18 : control + 22] = np.uint32(block).tobytes()
    header[block + 0x1A : block + 0x1C] = np.uint16(sfreq).tobytes()
    header[block + 0x1C : block + 0x20] = np.uint32(n_samples * 10 // sfreq).tobytes()  # tenths of a second
    header[block + 0x26] = len(labels)
    for k in range(len(labels)):
        header[block + 0x27 + 10 * k] = k  # electrode k of the .21E
    samples = np.zeros((n_samples, len(labels) + 1), dtype=np.uint16)  # the last word: markers
    samples[:, :-1] = ((counts.T + 0x8000) % 0x10000).astype(np.uint16)
    path = folder / f"{name}.EEG"
    path.write_bytes(bytes(header) + samples.astype("<u2").tobytes())
    electrodes = "".join(f"{k:04d}={label}\n" for k, label in enumerate(labels))
    (folder / f"{name}.21E").write_text(f"[ELECTRODE]\n{electrodes}[REFERENCE]\n")
    pnt = bytearray(0x40 + 14)
    pnt[0:16], pnt[0x40:] = NIHON_DEVICE, b"20200401100000"
    (folder / f"{name}.PNT").write_bytes(bytes(pnt))
    log = bytearray(0x200)
    log[0:16], log[0x91] = NIHON_DEVICE, 1
    log[0x92:0x96] = np.uint32(0x100).tobytes()
    log[0x101 : 0x101 + 16], log[0x112] = NIHON_DEVICE, 1  # the log block: its version, one entry
    log[0x114 : 0x114 + 45] = b"eyes closed".ljust(20, b"\0") + b"000012" + bytes(19)
    (folder / f"{name}.LOG").write_bytes(bytes(log))
    microvolts = counts * NIHON_MICROVOLTS_PER_COUNT + offset
    return path, labels, microvolts


def test_a_nihon_kohden_recording_is_read_with_its_companions_and_processed(shared_data, key_file, tmp_path):
    """A real recording (eegmat Subject00_2, 19 EEG channels) in Nihon Kohden's own layout: the .EEG is
    the recording, its .21E names the electrodes, its .LOG gives the event, and each companion is
    listed as a part of it."""
    from eegfm.pipelines.readers import open_recording

    folder = tmp_path / "nihon"
    folder.mkdir()
    path, labels, microvolts = _nihon_copy(shared_data / "eegmat" / "Subject00_2.edf", folder)
    with open_recording(path) as reader:
        assert reader.info.ch_names[: len(labels)] == tuple(labels) and reader.info.sfreq == 500.0
        np.testing.assert_allclose(reader.read()[: len(labels)], microvolts, atol=1e-3)
        assert [(onset, text) for onset, _, text in reader.events] == [(12.0, "eyes closed")]
    for extra in ("REC.11D", "REC.CMT", "REC.CN2"):  # settings and comments some systems write beside it
        (folder / extra).write_bytes(b"\x00" * 64)
    manifest, by_name = _job(folder, key_file, tmp_path)
    assert by_name["REC.EEG"]["status"] == "processed" and manifest["counts"]["windows"] >= 6
    for part in ("REC.21E", "REC.PNT", "REC.LOG", "REC.11D", "REC.CMT", "REC.CN2"):
        assert by_name[part]["status"] == "ignored" and "REC.EEG" in by_name[part]["reason"], by_name[part]
