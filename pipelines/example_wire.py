"""The protobuf wire format of ``tf.train.Example``, written and read without TensorFlow or protobuf.

The messages (tensorflow/core/example/{example,feature}.proto)::

  Example   { Features features = 1; }
  Features  { map<string, Feature> feature = 1; }
            (each map entry is a message { string key = 1; Feature value = 2; })
  Feature   { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
                           Int64List int64_list = 3; } }
  BytesList { repeated bytes value = 1; }
  FloatList { repeated float value = 1 [packed = true]; }   (little-endian float32s)
  Int64List { repeated int64 value = 1 [packed = true]; }   (varints, negatives as 10 bytes)

A field is a tag varint (field_number << 3 | wire_type), then its value; messages, strings and
packed lists (wire type 2) a varint length, then the payload. Map entries are written in sorted key
order, as protobuf's deterministic serialization does, so a record always encodes to the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


class SchemaError(ValueError):
    """A window or a serialized Example breaks the data contract; the message names the field."""


_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5
_KIND_FIELDS = {"bytes": 1, "float": 2, "int64": 3}
_FIELD_KINDS = {number: kind for kind, number in _KIND_FIELDS.items()}
_UINT64 = (1 << 64) - 1
_ONE_BYTE = tuple(bytes([i]) for i in range(0x80))  # tags, short lengths, small ints


def varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _ONE_BYTE[value]
    value &= _UINT64  # int64 negatives are their 64-bit two's complement
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _header(field: int, length: int) -> bytes:
    """Tag and length of a length-delimited field; its ``length`` bytes follow."""
    return varint(field << 3 | _LEN) + varint(length)


def len_field(field: int, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, ``payload``."""
    return _header(field, len(payload)) + payload


# Each message level is a list of pieces, joined once at the end: wrapping bytes level by level
# copied a window's samples, five messages deep, seven times.
def _list_parts(kind: str, values: Sequence[Any] | np.ndarray) -> list[bytes]:
    """The pieces of one Feature message holding ``values`` as a list of ``kind``."""
    parts: list[bytes] = []
    if kind == "bytes":
        for value in values:
            value = bytes(value)
            parts += (_header(1, len(value)), value)
    else:
        packed = (
            np.asarray(values, dtype="<f4").tobytes() if kind == "float" else b"".join(varint(int(v)) for v in values)
        )
        if packed:  # empty packed lists are omitted
            parts += (_header(1, len(packed)), packed)
    return [_header(_KIND_FIELDS[kind], sum(map(len, parts))), *parts]


def encode_list(kind: str, values: Sequence[Any] | np.ndarray) -> bytes:
    """The bytes of one Feature message holding ``values`` as a list of ``kind``."""
    return b"".join(_list_parts(kind, values))


def feature_entries(
    features: Mapping[str, tuple[str, Sequence[Any] | np.ndarray]],
) -> list[tuple[str, int, list[bytes]]]:
    """Each feature's map entry (key, then the Feature) in sorted key order: (name, size, pieces)."""
    entries = []
    for name, feature in sorted(features.items()):
        value = _list_parts(*feature)
        inner = [len_field(1, name.encode("utf-8")), _header(2, sum(map(len, value))), *value]
        size = sum(map(len, inner))
        head = _header(1, size)
        entries.append((name, len(head) + size, [head, *inner]))
    return entries


def join_entries(entries: list[tuple[str, int, list[bytes]]]) -> bytes:
    """The Example message (one ``features`` field) holding ``entries``."""
    body = sum(size for _, size, _ in entries)
    return b"".join([_header(1, body), *(part for _, _, parts in entries for part in parts)])


def encode_features(features: Mapping[str, tuple[str, Sequence[Any] | np.ndarray]]) -> bytes:
    """Serialize ``{name: (kind, values)}`` as a ``tf.train.Example``, keys in sorted order."""
    return join_entries(feature_entries(features))


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
    """A serialized ``tf.train.Example`` as ``{name: (kind, values)}``: a list of bytes, or a
    float32 or int64 array."""
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
