"""A batch's small fields, decoded a field at a time for all its windows from the serialized
``tf.train.Feature`` bytes of each window (its Features map parsed with bytes values).

Reaching a value through protobuf's Python objects costs about half a microsecond per field and
window (a map lookup, two message wrappers, an index); with 11 fields that was a fifth of a
loader worker's time. Here each field costs one map lookup per window and a few numpy calls per
batch. Only the encoding that TensorFlow and ``pipelines.schema`` write is read (one Feature
kind, numbers packed, lengths of one byte); for anything else a decoder answers None and the
loader reads that field through protobuf (``training.data._Window``), which applies the
defaults and names the record and the problem in its errors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eegfm.pipelines.schema import encode_list

_FLOAT_TAG, _INT_TAG = encode_list("float", [])[0], encode_list("int64", [])[0]  # Feature's oneof fields
_LIST_TAG = 0x0A  # a list's values (field 1), packed
_FLOAT1 = np.frombuffer(encode_list("float", [0.0])[:4], "<u4")[0]  # tags and lengths of one float
_NO_FLOATS = encode_list("float", [])  # float_list with no values
_VARINT_BYTES = 10  # an int64 takes at most 10 (negatives all 10)
_SHIFTS = np.arange(0, 7 * _VARINT_BYTES, 7, dtype=np.uint64)


def _joined(values: Sequence[bytes | None]) -> np.ndarray | None:
    if None in values:
        return None
    return np.frombuffer(b"".join(values), np.uint8)


def texts(values: Sequence[bytes | None]) -> list[bytes] | None:
    """Each window's one value of a bytes feature (a string of under 126 bytes)."""
    seen: dict[bytes, bytes] = {}
    out = []
    for value in values:
        text = seen.get(value)  # pseudonyms and tasks repeat within a batch
        if text is None:
            if value is None or len(value) < 4:
                return None
            size = len(value)
            # Feature.bytes_list (field 1), BytesList.value (field 1), each with its 1-byte length
            if not (value[0] == value[2] == _LIST_TAG and value[1] == size - 2 < 0x80 and value[3] == size - 4):
                return None
            text = seen[value] = value[4:]
        out.append(text)
    return out


def float_scalars(values: Sequence[bytes | None]) -> np.ndarray | None:
    """Each window's one value of a float feature, float32."""
    joined = _joined(values)
    if joined is None or joined.size != 8 * len(values):
        return None
    words = joined.view("<u4").reshape(len(values), 2)
    if not (words[:, 0] == _FLOAT1).all():
        return None
    return words[:, 1].view("<f4").copy()


# Serialized int64 Features already decoded, by their bytes: labels repeat in every batch, and a
# window's start in its recording recurs across recordings, so most values are found here (a
# dict lookup, where decoding a batch's column costs some twenty numpy calls).
_INTS_SEEN: dict[bytes, int] = {}
_INTS_SEEN_MAX = 1 << 16


def int_scalars(values: Sequence[bytes | None]) -> np.ndarray | None:
    """Each window's one value of an int64 feature (a varint of 1 to 10 bytes), int64."""
    global _INTS_SEEN
    if None in values:
        return None
    if len(_INTS_SEEN) > _INTS_SEEN_MAX:
        _INTS_SEEN = {}  # a new dict, not clear(): a thread looking values up keeps its own
    seen = _INTS_SEEN
    new = [value for value in dict.fromkeys(values) if value not in seen]
    if new:
        decoded = _varints(new)
        if decoded is None:
            return None
        seen.update(zip(new, decoded.tolist()))
    return np.fromiter(map(seen.__getitem__, values), np.int64, len(values))


def _varints(values: Sequence[bytes]) -> np.ndarray | None:
    """``int_scalars`` of values not seen before, decoded together."""
    joined = _joined(values)
    if joined is None:
        return None
    sizes = np.fromiter(map(len, values), np.int64, len(values))
    digits = sizes - 4  # the varint's bytes, after the Feature's and the list's tag and length
    if not ((digits >= 1) & (digits <= _VARINT_BYTES)).all():
        return None
    starts = np.cumsum(sizes) - sizes
    head = joined[starts[:, None] + np.arange(4)]
    if not ((head[:, 0] == _INT_TAG) & (head[:, 1] == digits + 2) & (head[:, 2] == _LIST_TAG)
            & (head[:, 3] == digits)).all():
        return None
    column = np.arange(_VARINT_BYTES)
    inside = column < digits[:, None]
    raw = np.where(inside, joined[np.minimum(starts[:, None] + 4 + column, joined.size - 1)], 0)
    last = column == digits[:, None] - 1
    # Every byte but the last continues; a 10th byte holds bit 63 alone: the canonical encoding
    # (protobuf truncates longer or wider ones: those go to protobuf, which decides)
    if not (((raw >= 0x80) == (inside & ~last)).all() and (raw[:, _VARINT_BYTES - 1] <= 1).all()):
        return None
    return ((raw & 0x7F).astype(np.uint64) << _SHIFTS).sum(axis=1, dtype=np.uint64).view(np.int64)


def small_int_lists(values: Sequence[bytes | None], length: int) -> np.ndarray | None:
    """Each window's ``length`` values of an int64 feature, all in 0..127 (one varint byte each),
    as float32 rows: the channel mask."""
    joined = _joined(values)
    width = length + 4
    if joined is None or length + 2 >= 0x80 or joined.size != width * len(values):
        return None
    rows = joined.reshape(len(values), width)
    if not ((rows[:, :4] == (_INT_TAG, length + 2, _LIST_TAG, length)).all() and (rows[:, 4:] < 0x80).all()):
        return None
    return rows[:, 4:].astype(np.float32)


def float_lists(values: Sequence[bytes | None], length: int) -> np.ndarray | None:
    """Each window's ``length`` values of a float feature, or none (a row of zeros), float32
    rows: the votes."""
    if None in values or 4 * length + 2 >= 0x80:
        return None
    out = np.zeros((len(values), length), np.float32)
    full = [row for row, value in enumerate(values) if value != _NO_FLOATS]
    if not full:
        return out
    width = 4 * length + 4
    joined = np.frombuffer(b"".join([values[row] for row in full]), np.uint8)
    if joined.size != width * len(full):
        return None
    rows = joined.reshape(len(full), width)
    if not (rows[:, :4] == (_FLOAT_TAG, 4 * length + 2, _LIST_TAG, 4 * length)).all():
        return None
    out[full] = rows[:, 4:].copy().view("<f4")
    return out
