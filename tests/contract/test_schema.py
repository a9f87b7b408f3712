"""The data contract: exact round trips, agreement with TensorFlow's parser, clear errors."""

from __future__ import annotations

import dataclasses
import hashlib
import math

import numpy as np
import pytest

from eegfm.contract.channels import CANONICAL_CHANNELS
from eegfm.contract.schema import (
    CHANNELS,
    FEATURES,
    HMS_CLASSES,
    PIPELINE_VERSION,
    SFREQ,
    SchemaError,
    WindowRecord,
    decode_example,
    decode_features,
    encode_example,
    encode_features,
    tf_feature_description,
)
from eegfm.core.tasks import HMS_VOTE_COLUMNS

tf = pytest.importorskip("tensorflow")


def make_record(seed: int = 0, n_times: int = 512, **overrides) -> WindowRecord:
    """A valid window with every optional feature set; ``overrides`` replace fields."""
    rng = np.random.default_rng(seed)
    mask = np.ones(len(CHANNELS), dtype=np.int64)
    mask[rng.integers(len(CHANNELS))] = 0
    fields = dict(
        eeg=rng.normal(0.0, 40.0, (len(CHANNELS), n_times)),
        channel_mask=mask,
        site_id=f"site{seed % 3}",
        subject_id=hashlib.sha256(b"subject%d" % seed).hexdigest()[:16],
        session_id="ses-1",
        recording_id=hashlib.sha256(b"recording%d" % seed).hexdigest()[:16],
        window_start_s=0.1 + 10.0 * seed,
        quality=rng.uniform(0, 1, 4),
        artifact_score=0.3,
        source_sha256=hashlib.sha256(b"source%d" % seed).hexdigest(),
        config_hash="0123456789abcdef",
        label=int(rng.integers(len(HMS_CLASSES))),
        votes=rng.integers(0, 5, len(HMS_CLASSES)).astype(float),
        task="hms6",
        age=37.5,
        sex="F",
        extra=[1.5, -2.25],
        ecg=rng.normal(0.0, 300.0, n_times),
        corpus_split="eval",
        spectrogram=_spectrogram(rng, n_frames=max(1, n_times // 512)),
    )
    fields.update(overrides)
    return WindowRecord(**fields)


def _spectrogram(rng, n_frames: int) -> np.ndarray:
    """log1p power (400, n_frames) with one chain (LP) not recorded: NaN."""
    values = rng.uniform(0.0, 8.0, (400, n_frames))
    values[200:300] = np.nan
    return values


def minimal_record(**overrides) -> WindowRecord:
    """A valid unlabeled window with no optional metadata."""
    fields = dict(
        eeg=np.zeros((len(CHANNELS), 8)),
        channel_mask=np.ones(len(CHANNELS), dtype=int),
        site_id="s",
        subject_id="p",
        session_id="",
        recording_id="r",
        window_start_s=0,
        quality=[],
        artifact_score=0,
        source_sha256="0" * 64,
        config_hash="c",
    )
    fields.update(overrides)
    return WindowRecord(**fields)


def test_contract_constants():
    assert CHANNELS == CANONICAL_CHANNELS and len(CHANNELS) == 19
    assert SFREQ == 256.0
    assert HMS_CLASSES == ("Seizure", "LPD", "GPD", "LRDA", "GRDA", "Other")
    assert [c.split("_")[0] for c in HMS_VOTE_COLUMNS] == [c.lower() for c in HMS_CLASSES]
    assert set(tf_feature_description()) == set(FEATURES)


@pytest.mark.parametrize(
    "record", [make_record(0), make_record(5, n_times=2560), minimal_record()], ids=["full", "10s", "minimal"]
)
def test_round_trip_is_exact(record):
    decoded = decode_example(encode_example(record))
    assert decoded == record
    assert decoded.eeg.dtype == np.float16 and decoded.eeg.shape == record.shape
    assert not decoded.eeg.flags.writeable  # a view of the serialized bytes, not a copy


def test_minimal_record_defaults_survive_round_trip():
    decoded = decode_example(encode_example(minimal_record()))
    assert decoded.label == -1 and decoded.votes.size == 0 and decoded.task == b""
    assert math.isnan(decoded.age) and decoded.sex == b"" and decoded.ecg is None and decoded.corpus_split == b""
    assert decoded.pipeline_version == PIPELINE_VERSION.encode()
    # records written before corpus_split existed read as having none
    assert decode_example(_without("corpus_split")).corpus_split == b""
    # and before the spectrogram existed, as having none
    older = decode_example(_without("spectrogram", "spectrogram_frames"))
    assert older.spectrogram is None and older.spectrogram_frames == 0 and older == minimal_record()


def test_spectrogram_round_trips_with_its_nan_chain():
    record = make_record(6, n_times=2560)
    decoded = decode_example(encode_example(record))
    assert decoded.spectrogram.shape == (400, 5) and decoded.spectrogram_frames == 5
    assert decoded.spectrogram.dtype == np.dtype("<f2")
    assert np.isnan(decoded.spectrogram[200:300]).all() and not np.isnan(decoded.spectrogram[:200]).any()
    np.testing.assert_array_equal(decoded.spectrogram, record.spectrogram)
    assert decode_features(encode_example(record))["spectrogram_frames"][1].tolist() == [5]


def test_record_holds_the_stored_precision():
    record = make_record(window_start_s=0.1)
    assert record.eeg.dtype == np.dtype("<f2") and record.eeg.flags.c_contiguous
    assert record.window_start_s == float(np.float32(0.1))
    assert record.site_id == b"site0" and record.channel_mask.dtype == np.int64


def test_encoding_is_deterministic_and_matches_protobuf():
    record = make_record(1)
    data = encode_example(record)
    assert encode_example(make_record(1)) == data
    # Protobuf's deterministic serialization (sorted map keys) produces the very same bytes.
    assert tf.train.Example.FromString(data).SerializeToString(deterministic=True) == data


def test_feature_order_does_not_change_bytes():
    features = {"b": ("float", [1.0, 2.0]), "a": ("int64", [-1, 300]), "c": ("bytes", [b""])}
    reordered = dict(reversed(list(features.items())))
    assert encode_features(features) == encode_features(reordered)


def _tf_example(record: WindowRecord) -> tf.train.Example:
    """The same window built with TensorFlow's own protobuf classes (features in random order)."""
    values = {name: getattr(record, name) for name in FEATURES if name not in ("eeg", "shape", "ecg", "spectrogram")}
    values.update(eeg=record.eeg.tobytes(), shape=record.shape, ecg=b"" if record.ecg is None else record.ecg.tobytes())
    values["spectrogram"] = b"" if record.spectrogram is None else record.spectrogram.tobytes()
    feature = {}
    for name in np.random.default_rng(0).permutation(list(FEATURES)):
        spec, value = FEATURES[name], values[name]
        value = [value] if spec.size == 1 else list(value)
        if spec.kind == "bytes":
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=value))
        elif spec.kind == "float":
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=value))
        else:
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=value))
    return tf.train.Example(features=tf.train.Features(feature=feature))


@pytest.mark.parametrize("record", [make_record(2), minimal_record(label=-1)], ids=["full", "min"])
def test_decoder_reads_examples_serialized_by_tensorflow(record):
    assert decode_example(_tf_example(record).SerializeToString()) == record


def test_tensorflow_parser_agrees_field_by_field():
    record = make_record(3)
    data = encode_example(record)
    parsed = tf.io.parse_single_example(data, tf_feature_description())
    ours = decode_features(data)
    for name, spec in FEATURES.items():
        tensor = parsed[name]
        got = tensor.values.numpy() if isinstance(tensor, tf.SparseTensor) else tensor.numpy()
        expected = ours[name][1]
        if spec.size == 1:
            expected = expected[0]
        np.testing.assert_array_equal(got, expected, err_msg=name)
    eeg = tf.reshape(tf.io.decode_raw(parsed["eeg"], tf.float16, little_endian=True), parsed["shape"])
    np.testing.assert_array_equal(eeg.numpy(), record.eeg)


def test_tensorflow_parser_fills_defaults_for_minimal_record():
    parsed = tf.io.parse_single_example(encode_example(minimal_record()), tf_feature_description())
    assert math.isnan(parsed["age"].numpy()) and parsed["sex"].numpy() == b""
    assert parsed["votes"].values.shape == (0,) and parsed["ecg"].numpy() == b""
    assert parsed["label"].numpy() == -1


def test_decoder_ignores_unknown_features():
    features = decode_features(encode_example(minimal_record()))
    features["from_a_newer_writer"] = ("float", [1.0])
    assert decode_example(encode_features(features)) == minimal_record()


BAD_FIELDS = [
    (dict(eeg=np.zeros((18, 8))), "eeg", "19 channels"),
    (dict(eeg=np.zeros((19, 0))), "eeg", "non-empty"),
    (dict(eeg=np.full((19, 8), 1e5)), "eeg", "float16 range"),
    (dict(eeg=np.where(np.arange(19 * 8).reshape(19, 8) == 10, np.nan, 0.0)), "eeg", "channel 'F3', sample 2"),
    (dict(eeg=np.zeros((19, 8), dtype=complex)), "eeg", "real-valued"),
    (dict(channel_mask=np.ones(18)), "channel_mask", "19 flags"),
    (dict(channel_mask=np.full(19, 2)), "channel_mask", "0 (interpolated) or 1"),
    (dict(sfreq=200.0), "sfreq", "256.0"),
    (dict(site_id="a/b"), "site_id", "path-safe"),
    (dict(subject_id=""), "subject_id", "non-empty"),
    (dict(recording_id=3), "recording_id", "bytes or str"),
    (dict(window_start_s=-1.0), "window_start_s", "[0.0, inf]"),
    (dict(quality=[0.1, float("nan")]), "quality", "finite"),
    (dict(artifact_score=1.5), "artifact_score", "[0.0, 1.0]"),
    (dict(label=-2, task="hms6"), "label", ">= -1"),
    (dict(label=True, task="hms6"), "label", "an integer"),
    (dict(label=6, task="hms6"), "label", "below 6"),
    (dict(votes=[1.0, 2.0, 3.0], task="hms6"), "votes", "0 or 6 values"),
    (dict(votes=[1, -1, 0, 0, 0, 0], task="hms6"), "votes", "non-negative"),
    (dict(label=1), "task", "label space"),
    (dict(age=200.0), "age", "[0.0, 150.0] or NaN"),
    (dict(sex="male"), "sex", "'F'"),
    (dict(corpus_split="test"), "corpus_split", "'train', 'dev', 'eval'"),
    (dict(ecg=np.zeros(7)), "ecg", "8 samples"),
    (dict(spectrogram=np.zeros((399, 2))), "spectrogram", "shape [400, n_frames > 0]"),
    (dict(spectrogram=np.full((400, 2), np.inf)), "spectrogram", "finite values or NaN"),
    (dict(spectrogram=np.full((400, 2), 1e6)), "spectrogram", "first at row 0, frame 0"),
    (dict(source_sha256="abc"), "source_sha256", "64 lowercase hex"),
    (dict(config_hash=""), "config_hash", "non-empty"),
]


@pytest.mark.parametrize(
    "overrides, field, expected", BAD_FIELDS, ids=[f"{f}-{i}" for i, (_, f, _) in enumerate(BAD_FIELDS)]
)
def test_invalid_fields_name_field_expectation_and_value(overrides, field, expected):
    with pytest.raises(SchemaError, match=rf"^WindowRecord\.{field}: expected .*; got ") as err:
        minimal_record(**overrides)
    assert expected in str(err.value)


def _without(*names: str) -> bytes:
    features = decode_features(encode_example(minimal_record()))
    for name in names:
        del features[name]
    return encode_features(features)


def _replaced(name: str, feature) -> bytes:
    features = decode_features(encode_example(minimal_record()))
    features[name] = feature
    return encode_features(features)


@pytest.mark.parametrize(
    "data, message",
    [
        (_without("recording_id"), "feature 'recording_id': missing"),
        (_replaced("label", ("float", [1.0])), "'label': expected int64 values; got float values"),
        (_replaced("channel_mask", ("int64", [1] * 18)), "expected 19 int64 value(s); got 18"),
        (_replaced("eeg", ("bytes", [b"\x00" * 10])), "expected 304 bytes of float16"),
        (_replaced("shape", ("int64", [18, 8])), "feature 'shape': expected [19, n_times > 0]"),
        (_replaced("spectrogram_frames", ("int64", [3])), "feature 'spectrogram': expected 2400 bytes"),
        (_replaced("spectrogram", ("bytes", [b"\x00" * 800])), "'spectrogram_frames': expected n_frames > 0"),
        (encode_example(minimal_record())[:-3], "needs"),
        (b"\x0a\xff", "truncated varint"),
    ],
)
def test_decode_errors_name_the_feature(data, message):
    with pytest.raises(SchemaError) as err:
        decode_example(data)
    assert message in str(err.value)


def test_record_equality_compares_values():
    record = make_record(4)
    assert record == dataclasses.replace(record)
    assert record != dataclasses.replace(record, label=(record.label + 1) % 6)
    assert record != dataclasses.replace(record, ecg=None)
    assert record != dataclasses.replace(record, spectrogram=None)
