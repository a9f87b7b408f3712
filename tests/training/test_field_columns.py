import math

import numpy as np
import torch
import pytest

from eegfm.pipelines import schema
from eegfm.pipelines.tfrecord import read_records
from eegfm.training import data, field_columns as columns
from eegfm.training.data import list_files


def _feature(kind, values) -> bytes:
    return schema.encode_list(kind, values)


def _protobuf(feature: bytes, kind: str) -> list:
    """The values protobuf reads from one serialized Feature: the reference."""
    entry = schema.len_field(1, schema.len_field(1, b"x") + schema.len_field(2, feature))
    parsed = data._Features.FromString(entry).feature["x"]
    return list(getattr(parsed, data._LIST_FIELD[kind]).value)


def test_the_pipelines_records_decode_as_protobuf_reads_them(pipeline_output):
    maps, parsed = [], []
    for path in list_files(pipeline_output):
        for index, raw in enumerate(read_records(path)):
            window = data._Window(raw, path, index)
            maps.append(window.feature_bytes())
            parsed.append(window.features)
    assert len(maps) == 30 and None not in maps
    # every record here has votes or none: both kinds of row in one column
    assert {len(p["votes"].float_list.value) for p in parsed} == {0, 6}

    def column(name):
        return [m[name] for m in maps]

    def reference(name):
        return [list(data._VALUES[name](p[name])) for p in parsed]

    for name in ("site_id", "subject_id", "recording_id", "task", "sex"):
        assert columns.texts(column(name)) == [v[0] for v in reference(name)]
    for name in ("age", "artifact_score"):
        assert np.array_equal(columns.float_scalars(column(name)), np.float32([v[0] for v in reference(name)]),
                              equal_nan=True)
    for name in ("label", "window_start_index"):
        found = columns.int_scalars(column(name))
        assert found.dtype == np.int64 and found.tolist() == [v[0] for v in reference(name)]
    assert -1 in columns.int_scalars(column("label")).tolist()  # 10-byte varints
    assert columns.small_int_lists(column("channel_mask"), 19).tolist() == reference("channel_mask")
    votes = columns.float_lists(column("votes"), 6)
    assert votes.tolist() == [v or [0.0] * 6 for v in reference("votes")]


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**31, 2**62 + 5, 2**63 - 1, -1, -2, -(2**63), 987654321])
def test_int64_varints_of_every_length(value):
    feature = _feature("int64", [value])
    assert columns.int_scalars([feature, _feature("int64", [7])]).tolist() == [_protobuf(feature, "int64")[0], 7]


def test_int64_values_seen_before_decode_the_same_and_never_hide_a_bad_one(monkeypatch):
    monkeypatch.setattr(columns, "_INTS_SEEN", {})
    monkeypatch.setattr(columns, "_INTS_SEEN_MAX", 4)
    values = [-1, 0, 2560, 2560, 5120, -1, 2**40]
    features = [_feature("int64", [v]) for v in values]
    assert columns.int_scalars(features).tolist() == values  # 5 distinct values: the memo is past its bound
    assert columns.int_scalars(features[::-1]).tolist() == values[::-1]  # a new memo, filled again
    assert set(columns._INTS_SEEN) == set(features)
    assert columns.int_scalars(features + [_unpacked_int64([5])]) is None  # seen values do not vouch for others
    assert columns.int_scalars([features[0], None]) is None
    assert columns.int_scalars([_feature("int64", [7])] * 3).tolist() == [7] * 3


def test_strings_floats_and_lists_match_protobuf():
    texts = [b"", b"F", b"x" * 125, "ü".encode()]
    assert columns.texts([_feature("bytes", [t]) for t in texts]) == texts
    floats = [0.0, -1.5, math.inf, 3.4e38, 1e-45]
    assert columns.float_scalars([_feature("float", [f]) for f in floats]).tolist() == \
        [_protobuf(_feature("float", [f]), "float")[0] for f in floats]
    assert math.isnan(columns.float_scalars([_feature("float", [math.nan])])[0])
    mask = [1, 0, 127] + [1] * 16
    assert columns.small_int_lists([_feature("int64", mask)], 19).tolist() == [mask]
    votes = [_feature("float", []), _feature("float", [1, 2, 3, 4, 5, 6]), _feature("float", [])]
    assert columns.float_lists(votes, 6).tolist() == [[0] * 6, [1, 2, 3, 4, 5, 6], [0] * 6]
    assert columns.float_lists([_feature("float", [])] * 2, 6).tolist() == [[0] * 6] * 2


def _unpacked_int64(values) -> bytes:
    """An Int64List with one tag per value: valid protobuf, but not what TensorFlow writes."""
    body = b"".join(b"\x08" + schema.varint(v) for v in values)
    return schema.len_field(3, body)


@pytest.mark.parametrize("decoder, values", [
    (columns.texts, [_feature("bytes", [b"a"]), None]),  # absent: the default is protobuf's path's
    (columns.texts, [_feature("bytes", [b"x" * 126])]),  # a 2-byte length
    (columns.texts, [_feature("bytes", [b"a", b"b"])]),  # two values
    (columns.texts, [_feature("bytes", [])]),  # none
    (columns.texts, [_feature("float", [1.0])]),  # another kind
    (columns.texts, [b""]),  # a Feature of no kind
    (columns.float_scalars, [_feature("float", [1.0, 2.0])]),
    (columns.float_scalars, [_feature("int64", [1])]),
    (columns.float_scalars, [_feature("float", [])]),
    (columns.float_scalars, [_feature("float", [1.0]) + _feature("float", [2.0])]),  # protobuf: the last wins
    (columns.int_scalars, [_feature("int64", [1, 2])]),
    (columns.int_scalars, [_feature("int64", [])]),
    (columns.int_scalars, [_unpacked_int64([5])]),
    (columns.int_scalars, [_feature("float", [1.0])]),
    (columns.int_scalars, [schema.len_field(3, schema.len_field(1, b"\xff" * 10 + b"\x01"))]),  # 11 bytes
    (columns.int_scalars, [schema.len_field(3, schema.len_field(1, b"\xff" * 9 + b"\x7f"))]),  # past 64 bits
    (columns.small_int_lists, [_feature("int64", [1] * 18)]),
    (columns.small_int_lists, [_feature("int64", [1] * 18 + [128])]),
    (columns.small_int_lists, [_unpacked_int64([1] * 19)]),
    (columns.float_lists, [_feature("float", [1.0] * 5)]),
    (columns.float_lists, [b""]),
    (columns.float_lists, [_feature("int64", [1] * 6)]),
])
def test_other_encodings_are_left_to_protobuf(decoder, values):
    args = {columns.small_int_lists: (19,), columns.float_lists: (6,)}.get(decoder, ())
    assert decoder(values, *args) is None


def test_a_longer_varint_of_a_small_value_reads_as_protobuf_reads_it():
    padded = schema.len_field(3, schema.len_field(1, b"\x85\x80\x00"))  # 5 in three bytes
    assert columns.int_scalars([padded]).tolist() == [5] == _protobuf(padded, "int64")


def test_a_batch_reads_each_field_by_the_fast_path_or_else_through_protobuf(pipeline_output):
    path = list_files(pipeline_output)[0]
    raws = list(read_records(path))[:4]
    windows = [data._Window(raw, path, i) for i, raw in enumerate(raws)]
    assert data._Columns(windows).maps is not None  # the pipeline's records take the fast path
    expected = data._collate(windows)
    # One record's label re-encoded unpacked: valid protobuf, so the batch must not change
    features = dict(schema.decode_features(raws[1]))
    label = int(features.pop("label")[1][0])
    entries = [schema.len_field(1, schema.len_field(1, name.encode()) + schema.len_field(2, schema.encode_list(*f)))
               for name, f in sorted(features.items())]
    entries.append(schema.len_field(1, schema.len_field(1, b"label") + schema.len_field(2, _unpacked_int64([label]))))
    windows = [data._Window(raw, path, i) for i, raw in enumerate(raws)]
    windows[1] = data._Window(schema.len_field(1, b"".join(entries)), path, 1)
    assert columns.int_scalars([w.feature_bytes()["label"] for w in windows]) is None
    batch = data._collate(windows)
    for name, value in expected.items():
        assert (torch.equal(value, batch[name]) if isinstance(value, torch.Tensor) else value == batch[name]), name
