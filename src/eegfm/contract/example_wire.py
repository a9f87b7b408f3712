"""``tf.train.Example`` without TensorFlow: message classes for writing, and a reader of the wire
format that names the field and byte of a defect.

The messages are tensorflow/core/example/{example,feature}.proto's (``_EXAMPLE_PROTO``): Features a
map<string, Feature> (each entry a message {key = 1, value = 2}), Feature a oneof of BytesList, FloatList
(packed little-endian float32s) and Int64List (packed varints, negatives as 10 bytes).

``Example`` and ``Features`` are built from a private descriptor pool (neither TensorFlow nor protoc
is needed); protobuf's deterministic serialization writes map entries in sorted key order, so a
record always encodes to the same bytes. Decoding is by hand: protobuf's parser reports only that a
message is invalid, and a quarantine or loader error should say which field and byte.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format


class SchemaError(ValueError):
    """A window or a serialized Example breaks the data contract; the message names the field."""


LIST_FIELDS = {"bytes": "bytes_list", "float": "float_list", "int64": "int64_list"}


# ``tf.train.Example`` in a private descriptor pool: TensorFlow's field numbers and types, all that matters on the wire.
_EXAMPLE_PROTO = """
name: "eegfm/pipelines/tf_example.proto" package: "tensorflow" syntax: "proto3"
message_type { name: "BytesList" field { name: "value" number: 1 label: LABEL_REPEATED type: TYPE_BYTES } }
message_type { name: "FloatList" field { name: "value" number: 1 label: LABEL_REPEATED type: TYPE_FLOAT } }
message_type { name: "Int64List" field { name: "value" number: 1 label: LABEL_REPEATED type: TYPE_INT64 } }
message_type {
  name: "Feature" oneof_decl { name: "kind" }
  field { name: "bytes_list" number: 1 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".tensorflow.BytesList"
          oneof_index: 0 }
  field { name: "float_list" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".tensorflow.FloatList"
          oneof_index: 0 }
  field { name: "int64_list" number: 3 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".tensorflow.Int64List"
          oneof_index: 0 }
}
message_type {
  name: "Features"
  nested_type {
    name: "FeatureEntry" options { map_entry: true }
    field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
    field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".tensorflow.Feature" }
  }
  field { name: "feature" number: 1 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".tensorflow.Features.FeatureEntry" }
}
message_type {
  name: "Example"
  field { name: "features" number: 1 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".tensorflow.Features" }
}
"""
_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(text_format.Parse(_EXAMPLE_PROTO, descriptor_pb2.FileDescriptorProto()))


Example = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("tensorflow.Example"))
Features = message_factory.GetMessageClass(Example.DESCRIPTOR.fields_by_name["features"].message_type)


def example_message(features: Mapping[str, tuple[str, Sequence[Any] | np.ndarray]]) -> Any:
    """An ``Example`` holding ``{name: (kind, values)}``; an empty list still sets its kind."""
    example = Example()
    feature_map = example.features.feature
    for name, (kind, values) in features.items():
        values_list = getattr(feature_map[name], LIST_FIELDS[kind])
        values_list.SetInParent()
        values_list.value.extend(values)
    return example


def encode_features(features: Mapping[str, tuple[str, Sequence[Any] | np.ndarray]]) -> bytes:
    """Serialize ``{name: (kind, values)}`` as a ``tf.train.Example``, keys in sorted order."""
    return example_message(features).SerializeToString(deterministic=True)


_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5
_FIELD_KINDS = {1: "bytes", 2: "float", 3: "int64"}


def _read_varint(buf: memoryview, pos: int, where: str) -> tuple[int, int]:
    if pos < len(buf) and buf[pos] < 0x80:  # one byte: every tag, short length and small int
        return buf[pos], pos + 1
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise SchemaError(f"{where}: truncated varint at byte {pos}")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise SchemaError(f"{where}: varint longer than 10 bytes at byte {pos}")


def _fields(buf: memoryview, where: str) -> list[tuple[int, int, int | memoryview]]:
    """``(field_number, wire_type, value)`` for each field of one message, in order: varints as
    ints, other values as memoryviews (no copy). One-byte tags skip the varint call (hot path)."""
    fields: list[tuple[int, int, int | memoryview]] = []
    pos, end = 0, len(buf)
    while pos < end:
        tag = buf[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = _read_varint(buf, pos, where)
        field, wire = tag >> 3, tag & 7
        if wire == _VARINT:
            value, pos = _read_varint(buf, pos, where)
            fields.append((field, wire, value))
            continue
        if wire == _LEN:
            size, pos = _read_varint(buf, pos, where)
        elif wire in (_FIXED32, _FIXED64):
            size = 4 if wire == _FIXED32 else 8
        else:
            raise SchemaError(f"{where}: unsupported wire type {wire} for field {field}")
        if pos + size > end:
            raise SchemaError(f"{where}: field {field} needs {size} bytes at byte {pos}; only {end - pos} remain")
        fields.append((field, wire, buf[pos : pos + size]))
        pos += size
    return fields


def _bodies(buf: memoryview, where: str) -> list[tuple[int, memoryview]]:
    """``(field_number, body)`` of the fields of one message that are not varints."""
    return [(field, body) for field, _, body in _fields(buf, where) if isinstance(body, memoryview)]


def _decode_list(buf: memoryview, name: str) -> tuple[str, list[Any] | np.ndarray]:
    """Decode one Feature message; like protobuf, the last kind set in the oneof wins."""
    where = f"feature {name!r}"
    kind, values = "bytes", []  # an empty Feature reads as an empty list
    for field, body in _bodies(buf, where):
        if field not in _FIELD_KINDS:
            continue  # unknown fields are skipped, as protobuf parsers do
        kind = _FIELD_KINDS[field]
        items = [(wire, value) for number, wire, value in _fields(body, where) if number == 1]
        values = _LIST_DECODERS[kind](items, where)
    return kind, values


def _decode_bytes(items: list[tuple[int, Any]], where: str) -> list[bytes]:
    return [bytes(value) for wire, value in items if wire == _LEN]


def _decode_floats(items: list[tuple[int, Any]], where: str) -> np.ndarray:
    # Packed (wire type 2) and unpacked (wire type 5) encodings are both valid protobuf.
    chunks = [value for wire, value in items if wire in (_LEN, _FIXED32)]
    if any(len(chunk) % 4 for chunk in chunks):
        raise SchemaError(f"{where}: packed float list length is not a multiple of 4 bytes")
    parts = [np.frombuffer(chunk, dtype="<f4") for chunk in chunks]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


def _decode_ints(items: list[tuple[int, Any]], where: str) -> np.ndarray:
    values: list[int] = []
    for wire, value in items:
        if wire == _VARINT:
            values.append(value)
            continue
        if wire != _LEN:
            raise SchemaError(f"{where}: int64 value with wire type {wire}")
        small = np.frombuffer(value, dtype=np.uint8)
        if not (small & 0x80).any():  # all one-byte varints (masks, 0/1 flags): no Python loop
            values.extend(small.tolist())
            continue
        pos = 0
        while pos < len(value):
            number, pos = _read_varint(value, pos, where)
            values.append(number)
    signed = [v - (1 << 64) if v >= 1 << 63 else v for v in values]
    return np.array(signed, dtype=np.int64)


_LIST_DECODERS = {"bytes": _decode_bytes, "float": _decode_floats, "int64": _decode_ints}


def decode_features(data: bytes | memoryview) -> dict[str, tuple[str, list[Any] | np.ndarray]]:
    """A serialized ``tf.train.Example`` as ``{name: (kind, values)}``: a list of bytes, or a float32 or int64 array."""
    features: dict[str, tuple[str, list[Any] | np.ndarray]] = {}
    for field, body in _bodies(memoryview(data), "Example"):
        if field != 1:
            continue
        for map_field, entry in _bodies(body, "Example.features"):
            if map_field == 1:
                parts = dict(_bodies(entry, "Example.features entry"))  # the last key and value win
                name = bytes(parts.get(1, b"")).decode("utf-8", "replace")
                features[name] = _decode_list(parts.get(2, memoryview(b"")), name)
    return features


def empty_list(kind: str) -> list[Any] | np.ndarray:
    """What an absent list of ``kind`` decodes to."""
    return _LIST_DECODERS[kind]([], kind)
