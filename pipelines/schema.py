"""The eegfm data contract: one ``tf.train.Example`` per EEG window (design §2).

This module is the single owner of the contract. ``WindowRecord`` holds one window exactly as it
will be stored (samples already rounded to float16, scalars to float32), so
``decode_example(encode_example(r)) == r`` holds bit for bit. The Example encoding and decoding are
hand-written protobuf wire format: Beam workers and the torch data loader read and write records
without TensorFlow. ``tf_feature_description()`` is the one place that imports TensorFlow, for
``tf.data`` users.

Features (all are always written, so every file parses with one fixed description):

===================  =========  ===============================================================
feature              type       meaning
===================  =========  ===============================================================
eeg                  bytes      float16 little-endian, C order, shape [19, n_times], microvolts
shape                int64[2]   [19, n_times]
channel_mask         int64[19]  1 measured, 0 interpolated
sfreq                float      256.0
site_id, subject_id  bytes      pseudonyms (keyed hash), never raw identifiers; ``site_id``
session_id,                     also names the output folder, so it is path-safe; ``session_id``
recording_id                    is empty when the source has no sessions
window_start_s       float      offset of the window in the recording (float32: exact for
                                whole samples at 256 Hz up to 18.2 h, then ~8 ms steps)
window_start_index   int64      the same offset as a sample index at 256 Hz: exact at any
                                length (-1 in records from writers that predate it)
quality              float[k]   quality metrics; names and order are recorded in the manifest
artifact_score       float      0 clean ... 1 artifact
label                int64      class index in ``task``'s label space, or -1
votes                float[6]   HMS expert votes (Seizure, LPD, GPD, LRDA, GRDA, Other) or empty
task                 bytes      label space, e.g. ``hms6``; empty only for unlabeled windows
age                  float      years; NaN when unknown
sex                  bytes      ``F``, ``M`` or empty when unknown
source_sha256        bytes      hex SHA-256 of the source file
pipeline_version     bytes      ``PIPELINE_VERSION`` of the writer
config_hash          bytes      hash of the preprocessing config
extra                float[m]   optional extra per-window features (e.g. band powers); names and
                                order are recorded in the manifest like ``quality``; usually empty
ecg                  bytes      optional auxiliary ECG, float16 little-endian [n_times], same
                                window and sfreq as ``eeg``; empty when absent
corpus_split         bytes      the source corpus's own split of the recording, ``train``,
                                ``dev`` or ``eval`` (TUAB, TUSZ, TUEV); empty when it has none
===================  =========  ===============================================================

Decoding ignores features it does not know, so files from a newer writer that only adds features
stay readable.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import numpy as np

from eegfm.core.tasks import HMS_CLASSES
from eegfm.pipelines.channels import CANONICAL_CHANNELS, N_CANONICAL

CHANNELS: tuple[str, ...] = CANONICAL_CHANNELS
N_CHANS: int = N_CANONICAL
SFREQ: float = 256.0
PIPELINE_VERSION: str = "0.1.0"

HMS_TASK: str = "hms6"
HMS_VOTE_COLUMNS: tuple[str, ...] = (
    "seizure_vote", "lpd_vote", "gpd_vote", "lrda_vote", "grda_vote", "other_vote",
)
SEXES: tuple[str, ...] = ("", "F", "M")
CORPUS_SPLITS: tuple[str, ...] = ("", "train", "dev", "eval")

EEG_DTYPE = np.dtype("<f2")
FLOAT16_MAX: float = float(np.finfo(np.float16).max)  # 65504 µV; larger samples cannot be stored
FLOAT32_MAX: float = float(np.finfo(np.float32).max)
# Site ids name output folders (OUTPUT/<site>/...), on local disks and in object stores alike.
SITE_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_HEX64 = re.compile(rb"[0-9a-f]{64}")


class SchemaError(ValueError):
    """A window or a serialized Example breaks the data contract; the message names the field."""


# --------------------------------------------------------------------------------------------
# The feature table: one declaration drives encoding, decoding and the TensorFlow description.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """How one feature is stored: list kind, number of values (None: any) and default if absent.

    A feature with ``size=None`` is a variable-length list (``tf.io.VarLenFeature``; absent reads
    as empty). A fixed-size feature without a default is required.
    """

    kind: str  # "bytes" | "float" | "int64"
    size: int | None = 1
    default: Any = None


FEATURES: dict[str, FeatureSpec] = {
    "eeg": FeatureSpec("bytes"),
    "shape": FeatureSpec("int64", 2),
    "channel_mask": FeatureSpec("int64", N_CHANS),
    "sfreq": FeatureSpec("float"),
    "site_id": FeatureSpec("bytes"),
    "subject_id": FeatureSpec("bytes"),
    "session_id": FeatureSpec("bytes"),
    "recording_id": FeatureSpec("bytes"),
    "window_start_s": FeatureSpec("float"),
    "window_start_index": FeatureSpec("int64", 1, -1),
    "quality": FeatureSpec("float", None),
    "artifact_score": FeatureSpec("float"),
    "label": FeatureSpec("int64"),
    "votes": FeatureSpec("float", None),
    "task": FeatureSpec("bytes"),
    "age": FeatureSpec("float", 1, math.nan),
    "sex": FeatureSpec("bytes", 1, b""),
    "source_sha256": FeatureSpec("bytes"),
    "pipeline_version": FeatureSpec("bytes"),
    "config_hash": FeatureSpec("bytes"),
    "extra": FeatureSpec("float", None),
    "ecg": FeatureSpec("bytes", 1, b""),
    "corpus_split": FeatureSpec("bytes", 1, b""),
}


def tf_feature_description() -> dict[str, Any]:
    """The ``tf.io.parse_single_example`` description of every feature in ``FEATURES``.

    ``eeg`` and ``ecg`` come back as raw bytes: decode with
    ``tf.io.decode_raw(x, tf.float16, little_endian=True)`` and reshape with ``shape``.
    TensorFlow is imported here only, so nothing else in this module needs it.
    """
    import tensorflow as tf

    dtypes = {"bytes": tf.string, "float": tf.float32, "int64": tf.int64}
    description: dict[str, Any] = {}
    for name, spec in FEATURES.items():
        dtype = dtypes[spec.kind]
        if spec.size is None:
            description[name] = tf.io.VarLenFeature(dtype)
        else:
            shape = [] if spec.size == 1 else [spec.size]
            description[name] = tf.io.FixedLenFeature(shape, dtype, default_value=spec.default)
    return description


# --------------------------------------------------------------------------------------------
# WindowRecord
# --------------------------------------------------------------------------------------------


def _empty_f32() -> np.ndarray:
    return np.zeros(0, dtype=np.float32)


@dataclasses.dataclass(eq=False)
class WindowRecord:
    """One EEG window with its metadata, normalized to exactly what the Example stores.

    ``__post_init__`` validates every field and normalizes types: ``eeg``/``ecg`` become C-ordered
    little-endian float16, ``channel_mask`` int64, ``quality``/``votes``/``extra`` float32 arrays,
    float scalars are rounded to float32 and text fields become bytes (str is UTF-8 encoded).
    Errors raise ``SchemaError`` naming the field, what was expected and what was received.
    """

    eeg: np.ndarray
    channel_mask: np.ndarray
    site_id: bytes
    subject_id: bytes
    session_id: bytes
    recording_id: bytes
    window_start_s: float
    quality: np.ndarray
    artifact_score: float
    source_sha256: bytes
    config_hash: bytes
    label: int = -1
    votes: np.ndarray = dataclasses.field(default_factory=_empty_f32)
    task: bytes = b""
    age: float = math.nan
    sex: bytes = b""
    extra: np.ndarray = dataclasses.field(default_factory=_empty_f32)
    ecg: np.ndarray | None = None
    window_start_index: int = -1
    corpus_split: bytes = b""
    sfreq: float = SFREQ
    pipeline_version: bytes = PIPELINE_VERSION.encode()

    def __post_init__(self) -> None:
        self.eeg = _signal("eeg", self.eeg, ndim=2)
        if self.eeg.shape[0] != N_CHANS:
            _fail("eeg", f"{N_CHANS} channels in canonical order (shape [19, n_times])",
                  f"shape {list(self.eeg.shape)}")
        self.channel_mask = _channel_mask(self.channel_mask)
        if self.ecg is not None:
            self.ecg = _signal("ecg", self.ecg, ndim=1)
            if self.ecg.shape[0] != self.n_times:
                _fail("ecg", f"{self.n_times} samples (the window's n_times)",
                      f"{self.ecg.shape[0]}")
        self.sfreq = _float32("sfreq", self.sfreq)
        if self.sfreq != SFREQ:
            _fail("sfreq", f"{SFREQ} (every stored window is resampled to it)", f"{self.sfreq}")
        self._normalize_ids()
        self.window_start_s = _float32("window_start_s", self.window_start_s, low=0.0)
        self.window_start_index = _int("window_start_index", self.window_start_index, low=-1)
        self.quality = _float_list("quality", self.quality)
        self.artifact_score = _float32("artifact_score", self.artifact_score, low=0.0, high=1.0)
        self._normalize_labels()
        self.age = _float32("age", self.age, low=0.0, high=150.0, allow_nan=True)
        self.sex = _text("sex", self.sex)
        if self.sex.decode("utf-8", "replace") not in SEXES:
            _fail("sex", f"one of {SEXES!r} (empty when unknown)", repr(self.sex))
        self.extra = _float_list("extra", self.extra)
        self.corpus_split = _text("corpus_split", self.corpus_split)
        if self.corpus_split.decode("utf-8", "replace") not in CORPUS_SPLITS:
            _fail("corpus_split", f"one of {CORPUS_SPLITS!r} (empty when the corpus has no split)",
                  repr(self.corpus_split))
        self._normalize_provenance()

    def _normalize_ids(self) -> None:
        for name in ("site_id", "subject_id", "session_id", "recording_id"):
            value = _text(name, getattr(self, name))
            if not value and name != "session_id":
                _fail(name, "a non-empty pseudonym", "b''")
            setattr(self, name, value)
        if not SITE_ID_PATTERN.fullmatch(self.site_id.decode("utf-8", "replace")):
            _fail("site_id", f"a path-safe name matching {SITE_ID_PATTERN.pattern!r} "
                  "(it names the output folder)", repr(self.site_id))

    def _normalize_labels(self) -> None:
        self.label = _int("label", self.label, low=-1)
        self.votes = _float_list("votes", self.votes)
        if self.votes.size not in (0, len(HMS_CLASSES)):
            _fail("votes", f"0 or {len(HMS_CLASSES)} values ({', '.join(HMS_CLASSES)})",
                  f"{self.votes.size} values")
        if (self.votes < 0).any():
            _fail("votes", "non-negative vote counts", f"{self.votes.tolist()}")
        self.task = _text("task", self.task)
        if not self.task and (self.label != -1 or self.votes.size):
            _fail("task", "a label space name (e.g. b'hms6') for a labeled window", "b''")
        if self.task == HMS_TASK.encode() and self.label >= len(HMS_CLASSES):
            _fail("label", f"-1 or a class index below {len(HMS_CLASSES)} for task {HMS_TASK!r}",
                  f"{self.label}")

    def _normalize_provenance(self) -> None:
        self.source_sha256 = _text("source_sha256", self.source_sha256)
        if not _HEX64.fullmatch(self.source_sha256):
            _fail("source_sha256", "64 lowercase hex digits", repr(self.source_sha256))
        for name in ("pipeline_version", "config_hash"):
            value = _text(name, getattr(self, name))
            if not value:
                _fail(name, "a non-empty string", "b''")
            setattr(self, name, value)

    @property
    def n_times(self) -> int:
        return int(self.eeg.shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        return (N_CHANS, self.n_times)

    def __eq__(self, other: object) -> bool:
        """Field-wise equality; arrays compare by value and NaN equals NaN (``age`` unknown)."""
        if not isinstance(other, WindowRecord):
            return NotImplemented
        return all(
            _same(getattr(self, f.name), getattr(other, f.name))
            for f in dataclasses.fields(self)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, like every dataclass with eq


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return False
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        return bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


# Field normalizers. Each names the field, what it expects and what it got.


def _fail(name: str, expected: str, got: str) -> NoReturn:
    raise SchemaError(f"WindowRecord.{name}: expected {expected}; got {got}")


def _signal(name: str, value: Any, *, ndim: int) -> np.ndarray:
    """A real-valued array as C-ordered little-endian float16, rejecting what float16 can't hold."""
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        _fail(name, "a real-valued numeric array", f"dtype {array.dtype}")
    if array.ndim != ndim or array.shape[-1] == 0:
        _fail(name, f"a non-empty {ndim}-d array", f"shape {list(array.shape)}")
    if array.dtype == EEG_DTYPE:  # decoded windows: already stored precision, no cast
        stored = np.ascontiguousarray(array)
    elif array.dtype == np.float32:  # what the pipeline makes
        stored = float32_to_float16(array)
    else:
        with np.errstate(over="ignore", invalid="ignore"):  # reported below, by position
            stored = np.ascontiguousarray(array, dtype=EEG_DTYPE)
    # float16 inf and NaN have all five exponent bits set; testing the bits is 5x faster than
    # np.isfinite, which has no native half-precision loop.
    bad = (stored.view(np.uint16) & 0x7C00) == 0x7C00
    if bad.any():
        index = np.unravel_index(int(np.argmax(bad)), bad.shape)
        where = (f"channel {CHANNELS[index[0]]!r}, sample {index[1]}" if ndim == 2
                 else f"sample {index[0]}")
        _fail(name, f"finite samples within the float16 range ±{FLOAT16_MAX:g} µV",
              f"{int(bad.sum())} non-finite or out-of-range sample(s), first at {where} "
              f"(value {array[index]!r})")
    return stored


def float32_to_float16(x: np.ndarray) -> np.ndarray:
    """``x.astype(float16)`` as a C-ordered little-endian array, bit for bit (round to nearest
    even, subnormals, overflow to infinity, NaN payloads), about twice as fast: numpy converts
    one value at a time (120 us for a 10 s window), this takes a few vector passes over the bits.
    """
    bits = np.ascontiguousarray(x, dtype="<f4").view(np.uint32)
    magnitude = bits & np.uint32(0x7FFFFFFF)
    # Normal results: rebias the exponent (127 -> 15), add half an ulp of float16 less one plus
    # the lowest kept bit (ties to even), then drop the 13 extra mantissa bits.
    half = magnitude >> 13
    half &= 1
    half += magnitude
    half += np.uint32(0xC8000FFF)
    half >>= 13
    subnormal = magnitude < np.uint32(113 << 23)  # below float16's smallest normal, 2**-14
    if subnormal.any():
        # Adding 0.5 lines the value's bits up with float16's subnormal steps; the float unit
        # rounds to even on the way.
        with np.errstate(invalid="ignore"):  # signalling NaNs among the other values
            shifted = (magnitude.view(np.float32) + np.float32(0.5)).view(np.uint32)
        shifted -= np.uint32(0x3F000000)
        np.copyto(half, shifted, where=subnormal)
    special = magnitude >= np.uint32(143 << 23)  # rounds past 65504, infinite, or NaN
    if special.any():
        np.copyto(half, np.uint32(0x7C00), where=special)
        nan = magnitude > np.uint32(0x7F800000)
        if nan.any():
            half[nan] = x.reshape(half.shape)[nan].astype(np.float16).view(np.uint16)
    half |= (bits >> 16) & np.uint32(0x8000)
    return half.astype("<u2").view(EEG_DTYPE)


def _channel_mask(value: Any) -> np.ndarray:
    mask = np.asarray(value)
    if mask.shape != (N_CHANS,):
        _fail("channel_mask", f"{N_CHANS} flags in canonical order", f"shape {list(mask.shape)}")
    if mask.dtype.kind not in "biu" or not ((mask == 0) | (mask == 1)).all():
        _fail("channel_mask", "integers 0 (interpolated) or 1 (measured)",
              f"{mask.tolist()} (dtype {mask.dtype})")
    return mask.astype(np.int64)


def _float_list(name: str, value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 1 or array.dtype.kind not in "fiu":
        _fail(name, "a 1-d list of real numbers", f"shape {list(array.shape)}, dtype {array.dtype}")
    if array.dtype == np.float32:
        stored = array
    elif array.size and not np.abs(array).max() <= FLOAT32_MAX:  # NaN fails the <= too
        _fail(name, "finite float32 values", f"{array.tolist()}")
    else:
        stored = array.astype(np.float32)
    if not np.isfinite(stored).all():
        _fail(name, "finite float32 values", f"{array.tolist()}")
    return stored


def _float32(name: str, value: Any, *, low: float | None = None, high: float | None = None,
             allow_nan: bool = False) -> float:
    """A real scalar rounded to float32, the precision a FloatList stores."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        _fail(name, "a real number", repr(value))
    if allow_nan and math.isnan(value):
        return math.nan  # one canonical NaN keeps encoding deterministic
    stored = float(np.float32(value)) if abs(value) <= FLOAT32_MAX else math.inf
    in_range = math.isfinite(stored) and (low is None or stored >= low) and (
        high is None or stored <= high)
    if not in_range:
        bounds = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        _fail(name, f"a finite float32 in {bounds}{' or NaN' if allow_nan else ''}", repr(value))
    return stored


def _int(name: str, value: Any, *, low: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        _fail(name, "an integer", repr(value))
    if not low <= int(value) < 2**63:
        _fail(name, f"an int64 >= {low}", repr(value))
    return int(value)


def _text(name: str, value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    _fail(name, "bytes or str", f"{type(value).__name__} {value!r}")


# --------------------------------------------------------------------------------------------
# Protobuf wire format for tf.train.Example (tensorflow/core/example/{example,feature}.proto):
#
#   Example   { Features features = 1; }
#   Features  { map<string, Feature> feature = 1; }
#             (each map entry is a message { string key = 1; Feature value = 2; })
#   Feature   { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
#                            Int64List int64_list = 3; } }
#   BytesList { repeated bytes value = 1; }
#   FloatList { repeated float value = 1 [packed = true]; }   (little-endian float32s)
#   Int64List { repeated int64 value = 1 [packed = true]; }   (varints, negatives as 10 bytes)
#
# Every field is written as a tag varint (field_number << 3 | wire_type) followed by its value;
# messages, strings and packed lists use wire type 2: a varint length, then the payload. Map entries
# are written in sorted key order, the order protobuf's deterministic serialization uses, so the
# same record always encodes to the same bytes.
# --------------------------------------------------------------------------------------------

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5
_KIND_FIELDS = {"bytes": 1, "float": 2, "int64": 3}
_FIELD_KINDS = {number: kind for kind, number in _KIND_FIELDS.items()}
_UINT64 = (1 << 64) - 1


_ONE_BYTE = tuple(bytes([i]) for i in range(0x80))  # tags, short lengths, small ints


def _varint(value: int) -> bytes:
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
    return _varint(field << 3 | _LEN) + _varint(length)


def _len_field(field: int, payload: bytes) -> bytes:
    return _header(field, len(payload)) + payload


# An Example nests the samples five messages deep. Each level is built as a list of pieces and
# the record is joined once at the end: wrapping bytes level by level copied the 97 KB of a 10 s
# window's samples seven times.
def _list_parts(kind: str, values: Sequence[Any] | np.ndarray) -> list[bytes]:
    """The pieces of one Feature message holding ``values`` as a list of ``kind``."""
    parts: list[bytes] = []
    if kind == "bytes":
        for value in values:
            value = bytes(value)
            parts += (_header(1, len(value)), value)
    else:
        packed = (np.asarray(values, dtype="<f4").tobytes() if kind == "float"
                  else b"".join(_varint(int(v)) for v in values))
        if packed:  # empty packed lists are omitted
            parts += (_header(1, len(packed)), packed)
    return [_header(_KIND_FIELDS[kind], sum(map(len, parts))), *parts]


def _encode_list(kind: str, values: Sequence[Any] | np.ndarray) -> bytes:
    """The bytes of one Feature message holding ``values`` as a list of ``kind``."""
    return b"".join(_list_parts(kind, values))


def _entries(features: Mapping[str, tuple[str, Sequence[Any] | np.ndarray]]) -> list[tuple[str, int, list[bytes]]]:
    """Each feature's map entry (key, then the Feature) in sorted key order: (name, size, pieces)."""
    entries = []
    for name, feature in sorted(features.items()):
        value = _list_parts(*feature)
        inner = [_len_field(1, name.encode("utf-8")), _header(2, sum(map(len, value))), *value]
        size = sum(map(len, inner))
        head = _header(1, size)
        entries.append((name, len(head) + size, [head, *inner]))
    return entries


def _join(entries: list[tuple[str, int, list[bytes]]]) -> bytes:
    """The Example message (one ``features`` field) holding ``entries``."""
    body = sum(size for _, size, _ in entries)
    return b"".join([_header(1, body), *(part for _, _, parts in entries for part in parts)])


def encode_features(features: Mapping[str, tuple[str, Sequence[Any] | np.ndarray]]) -> bytes:
    """Serialize ``{name: (kind, values)}`` as a ``tf.train.Example``, keys in sorted order."""
    return _join(_entries(features))


def encode_example_patchable(record: WindowRecord, floats: Sequence[str]) -> tuple[bytes, dict[str, int]]:
    """``encode_example(record)`` and, for each name in ``floats`` (float features), the byte offset
    of its packed float32 values in it.

    Floats have a fixed width on the wire, so overwriting them there (e.g. an artifact score known
    only later) gives exactly the bytes ``encode_example`` would give for the updated record.
    """
    if not isinstance(record, WindowRecord):
        raise SchemaError(f"encode_example: expected a WindowRecord; got {type(record).__name__}")
    features = _record_features(record)
    entries = _entries(features)
    body = sum(size for _, size, _ in entries)
    offsets, position = {}, 1 + len(_varint(body))  # after Example.features' tag and length
    for name, size, _ in entries:
        position += size
        if name in floats:
            kind, values = features[name]
            if kind != "float" or len(values) == 0:
                raise SchemaError(f"feature {name!r}: expected a non-empty float list to patch; got {kind}")
            # A packed float list ends its map entry.
            offsets[name] = position - 4 * len(values)
    missing = sorted(set(floats) - set(offsets))
    if missing:
        raise SchemaError(f"floats: expected feature names of the record; got unknown {missing}")
    return _join(entries), offsets


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
    """``(field_number, wire_type, value)`` for each field of one message, in order.

    Varints come back as ints; fixed-width and length-delimited values as memoryviews (no copy).
    One-byte tags and lengths, nearly all of them in an Example, skip the varint call: decoding
    sits on the data loader's hot path.
    """
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
            raise SchemaError(
                f"{where}: field {field} needs {size} bytes at byte {pos}; only {end - pos} remain"
            )
        fields.append((field, wire, buf[pos:pos + size]))
        pos += size
    return fields


def _decode_list(buf: memoryview, name: str) -> tuple[str, list[Any] | np.ndarray]:
    """Decode one Feature message; like protobuf, the last kind set in the oneof wins."""
    where = f"feature {name!r}"
    kind, values = "bytes", []  # an empty Feature reads as an empty list
    for field, _, body in _fields(buf, where):
        if field not in _FIELD_KINDS or not isinstance(body, memoryview):
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
    """Parse a serialized ``tf.train.Example`` into ``{name: (kind, values)}`` without TensorFlow.

    ``kind`` is ``"bytes"`` (a list of bytes), ``"float"`` (float32 array) or ``"int64"`` (int64
    array).
    """
    features: dict[str, tuple[str, list[Any] | np.ndarray]] = {}
    for field, _, body in _fields(memoryview(data), "Example"):
        if field != 1 or not isinstance(body, memoryview):
            continue
        for map_field, _, map_body in _fields(body, "Example.features"):
            if map_field != 1 or not isinstance(map_body, memoryview):
                continue
            key, value = b"", memoryview(b"")
            for entry_field, _, entry_body in _fields(map_body, "Example.features entry"):
                if entry_field == 1 and isinstance(entry_body, memoryview):
                    key = bytes(entry_body)
                elif entry_field == 2 and isinstance(entry_body, memoryview):
                    value = entry_body
            name = key.decode("utf-8", "replace")
            features[name] = _decode_list(value, name)
    return features


# --------------------------------------------------------------------------------------------
# WindowRecord <-> Example
# --------------------------------------------------------------------------------------------


def _record_features(record: WindowRecord) -> dict[str, tuple[str, Any]]:
    """``{name: (kind, values)}`` for every feature; scalars become one-element lists."""
    derived = {
        "eeg": record.eeg.tobytes(),
        "shape": record.shape,
        "ecg": b"" if record.ecg is None else record.ecg.tobytes(),
    }
    features = {}
    for name, spec in FEATURES.items():
        value = derived[name] if name in derived else getattr(record, name)
        features[name] = (spec.kind, [value] if spec.size == 1 else value)
    return features


def encode_example(record: WindowRecord) -> bytes:
    """Serialize a validated window as a deterministic ``tf.train.Example``."""
    if not isinstance(record, WindowRecord):
        raise SchemaError(f"encode_example: expected a WindowRecord; got {type(record).__name__}")
    return encode_features(_record_features(record))


def _feature_values(features: Mapping[str, tuple[str, Any]], name: str) -> Any:
    """The values of ``name`` checked against ``FEATURES``: a scalar for size 1, else a list."""
    spec = FEATURES[name]
    if name not in features:
        if spec.size is None:
            return _LIST_DECODERS[spec.kind]([], name)
        if spec.default is None:
            raise SchemaError(f"feature {name!r}: missing from the Example (it is required)")
        return spec.default
    kind, values = features[name]
    if kind != spec.kind:
        raise SchemaError(f"feature {name!r}: expected {spec.kind} values; got {kind} values")
    if spec.size is not None and len(values) != spec.size:
        raise SchemaError(
            f"feature {name!r}: expected {spec.size} {spec.kind} value(s); got {len(values)}"
        )
    return values[0] if spec.size == 1 else values


def _decode_signal(name: str, raw: bytes, shape: tuple[int, ...]) -> np.ndarray:
    expected = int(np.prod(shape)) * EEG_DTYPE.itemsize
    if len(raw) != expected:
        raise SchemaError(
            f"feature {name!r}: expected {expected} bytes of float16 for shape {list(shape)}; "
            f"got {len(raw)}"
        )
    return np.frombuffer(raw, dtype=EEG_DTYPE).reshape(shape)


def decode_example(data: bytes | memoryview) -> WindowRecord:
    """Parse a serialized ``tf.train.Example`` back into a validated ``WindowRecord``.

    ``eeg`` and ``ecg`` are read-only views of the decoded bytes (no copy); copy them before
    writing in place.
    """
    features = decode_features(data)
    values = {name: _feature_values(features, name) for name in FEATURES}
    shape = tuple(int(v) for v in values.pop("shape"))
    if shape[0] != N_CHANS or shape[1] <= 0:
        raise SchemaError(f"feature 'shape': expected [{N_CHANS}, n_times > 0]; got {list(shape)}")
    values["eeg"] = _decode_signal("eeg", values["eeg"], shape)
    ecg = values.pop("ecg")
    values["ecg"] = _decode_signal("ecg", ecg, shape[1:]) if ecg else None
    values["sfreq"], values["window_start_s"], values["artifact_score"], values["age"] = (
        float(values[k]) for k in ("sfreq", "window_start_s", "artifact_score", "age")
    )
    values["label"] = int(values["label"])
    values["window_start_index"] = int(values["window_start_index"])
    return WindowRecord(**values)
