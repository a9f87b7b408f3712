"""contract.windows through the loader: a window record parsed as the pipeline wrote it, or named where it is not."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from eegfm.contract import schema
from eegfm.contract.schema import N_CHANS, SchemaError, decode_example, encode_example
from eegfm.contract.tfrecord import read_records, write_records
from eegfm.contract.windows import Example, Window
from eegfm.model.batch import collate
from eegfm.training.data import LoaderConfig, list_files
from tests.training.data.conftest import _entry, _epoch, _example, _with_entry


def test_fast_decoder_equals_decode_example(pipeline_output):
    compared = 0
    for path in list_files(pipeline_output):
        for index, raw in enumerate(read_records(path)):
            expected, fields = decode_example(raw), Window(raw, path, index).decode()
            for name, value in fields.items():
                want = getattr(expected, name)
                if isinstance(want, np.ndarray):
                    assert value.dtype == want.dtype and np.array_equal(value, want), name
                elif isinstance(want, float) and math.isnan(want):
                    assert math.isnan(value), name
                else:
                    assert value == want, name
            compared += 1
    assert compared == 30


def test_example_classes_match_the_pipelines_wire_format(pipeline_output):
    # The descriptor written in training.data re-serializes every record to the same bytes:
    # TensorFlow's field numbers, types and packing, as contract.schema writes them.
    raws = [raw for path in list_files(pipeline_output) for raw in read_records(path)]
    assert len(raws) == 30
    assert all(Example.FromString(raw).SerializeToString(deterministic=True) == raw for raw in raws)
    assert all(Window(raw, "mem", i).eeg is not None for i, raw in enumerate(raws))  # samples in place
    assert all(Window(raw, "mem", i, split=False).eeg is None for i, raw in enumerate(raws))


def test_other_layouts_parse_like_protobuf(records):
    record = records[0]
    raw = encode_example(record)
    other = (record.eeg[:, ::-1].copy()).tobytes()
    duplicate = Window(_with_entry(raw, _entry("eeg", "bytes", [other])), "mem", 0)
    assert duplicate.eeg is None  # parsed whole: protobuf's "last entry wins"
    assert np.array_equal(duplicate.decode()["eeg"], record.eeg[:, ::-1])
    assert Window(_with_entry(raw, _entry("label", "int64", [4])), "mem", 0).decode()["label"] == 4
    unsorted = _example(
        b"".join(reversed([_entry(name, *feature) for name, feature in sorted(schema.decode_features(raw).items())]))
    )
    window = Window(unsorted, "mem", 0)
    assert window.eeg is not None and np.array_equal(window.decode()["eeg"], record.eeg)
    with_ecg = next(r for r in records if r.ecg is not None)
    window = Window(encode_example(with_ecg), "mem", 0)
    assert window.ecg is not None and np.array_equal(window.decode()["ecg"], with_ecg.ecg)  # in place
    later = (with_ecg.ecg[::-1].copy()).tobytes()
    window = Window(_with_entry(encode_example(with_ecg), _entry("ecg", "bytes", [later])), "mem", 0)
    assert window.ecg is None and np.array_equal(window.decode()["ecg"], with_ecg.ecg[::-1])  # the last wins
    floats = _with_entry(raw, _entry("eeg", "float", [1.0, 2.0]))
    with pytest.raises(SchemaError, match="^f: record 3: feature 'eeg': expected bytes values$"):
        Window(floats, "f", 3).decode()
    without_label = _example(
        b"".join(
            _entry(name, *feature) for name, feature in sorted(schema.decode_features(raw).items()) if name != "label"
        ),
    )
    with pytest.raises(SchemaError, match="^f: record 3: feature 'label': missing from the Example"):
        Window(without_label, "f", 3).decode()


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal dtype, shape and bytes (so NaN equals NaN, and -0.0 differs from 0.0)."""
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and torch.equal(a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8))
    )


@pytest.mark.parametrize("eeg_dtype", ["float32", "float16"])
@pytest.mark.parametrize("num_workers", [0, 2])
def test_split_samples_gives_the_batches_of_protobufs_whole_parse(pipeline_output, eeg_dtype, num_workers):
    # LoaderConfig.split_samples=False: protobuf parses whole records. A shuffle buffer smaller than
    # the epoch copies some windows' samples on arrival and others when their batch is emitted.
    config = LoaderConfig(batch_size=4, num_workers=num_workers, shuffle_buffer=6, seed=3, eeg_dtype=eeg_dtype)
    split, whole = (_epoch(pipeline_output, dataclasses.replace(config, split_samples=on)) for on in (True, False))
    assert len(split) == len(whole) > 1
    assert sum(len(b["label"]) for b in split) == 30
    for a, b in zip(split, whole, strict=True):
        assert a.keys() == b.keys()
        for key, value in a.items():
            if isinstance(value, torch.Tensor):
                assert _same_bits(value, b[key]), key
            else:
                assert value == b[key], key
    assert all(b["eeg"].dtype == getattr(torch, eeg_dtype) for b in split)
    assert any(b["has_votes"].any() and (b["label"] >= 0).any() for b in split)  # labeled windows with votes
    assert any("ecg" in b for b in split)


@pytest.mark.parametrize("cut", ["small field", "samples", "garbage"])
def test_malformed_examples_say_where(records, cut):
    raw = bytearray(encode_example(records[0]))
    if cut == "small field":  # the label entry claims more bytes than its message holds
        at = raw.index(b"\n\x05label") + 7
        raw[at + 1] += 100
    elif cut == "samples":
        raw = raw[: len(raw) // 2]
    else:
        raw = bytearray(b"\xff" * 64)
    with pytest.raises(SchemaError, match=r"^f: record 3: (Example|not a valid).*(byte|field|wire type)"):
        Window(bytes(raw), "f", 3).decode()


def test_malformed_example_names_file_and_record(pipeline_output, tmp_path):
    bad = tmp_path / "site-x" / "part-00000-of-00001.tfrecord"
    bad.parent.mkdir()
    good = next(read_records(list_files(pipeline_output)[0]))
    write_records(str(bad), [good, good[:-1000]])  # intact framing around a cut Example
    for workers in (0, 1):
        with pytest.raises(SchemaError, match=f"^{bad}: record 1: .*needs .* bytes"):
            _epoch(tmp_path, LoaderConfig(num_workers=workers))


def test_samples_that_disagree_with_the_shape_name_the_record(records):
    record = records[0]
    n_times = record.eeg.shape[1]
    fields = schema.decode_features(encode_example(record))
    fields["shape"] = ("int64", [N_CHANS, n_times // 2])  # whole time points, but half as many
    raw = _example(b"".join(_entry(name, *feature) for name, feature in sorted(fields.items())))
    window = Window(raw, "f", 3)  # the shape says n_times: the samples' length is checked as they are stacked
    with pytest.raises(
        SchemaError,
        match=f"^f: record 3: feature 'eeg': expected {N_CHANS * n_times} bytes "
        f"of float16 for shape \\[{N_CHANS}, {n_times // 2}\\]; got {2 * N_CHANS * n_times}$",
    ):
        collate([window])


def test_votes_of_another_length_name_the_record(records):
    raw = _with_entry(encode_example(records[0]), _entry("votes", "float", [1.0, 2.0]))
    with pytest.raises(SchemaError, match="^f: record 3: feature 'votes': expected 0 or 6 values .*got 2$"):
        collate([Window(raw, "f", 3)])


def test_a_windows_spectrogram_is_read_in_place_and_a_bad_one_is_named(records):
    """The pipeline's records carry computed spectrograms (one frame per 2 s of the window)."""
    record = records[0]
    assert record.spectrogram is not None and record.spectrogram_frames == record.n_times // 512
    window = Window(encode_example(record), "shard.tfrecord", 3)
    np.testing.assert_array_equal(window.spectrogram(), record.spectrogram)
    assert Window(encode_example(dataclasses.replace(record, spectrogram=None)), "s", 0).spectrogram() is None
    features = schema.decode_features(encode_example(record))
    features["spectrogram_frames"] = ("int64", [record.spectrogram_frames + 1])
    bad = Window(schema.encode_features(features), "shard.tfrecord", 3)
    with pytest.raises(SchemaError, match=r"shard.tfrecord: record 3: feature 'spectrogram': expected \d+ bytes"):
        bad.spectrogram()
