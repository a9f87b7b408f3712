"""The eegfm data contract: one ``tf.train.Example`` per EEG window (``docs/design.md``).

``WindowRecord`` holds a window exactly as stored (samples rounded to float16, scalars to
float32), so ``decode_example(encode_example(r)) == r`` bit for bit. Every feature in ``FEATURES`` is
always written, so every file parses with one fixed description; decoding ignores unknown features, so
a newer writer's files stay readable.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from eegfm.contract import record_fields as field
from eegfm.contract.channels import CANONICAL_CHANNELS, N_CANONICAL
from eegfm.contract.example_wire import (  # noqa: F401 (re-exported)
    Features,
    SchemaError,
    decode_features,
    empty_list,
    encode_features,
    example_message,
)
from eegfm.contract.record_fields import EEG_DTYPE
from eegfm.core.tasks import HMS_CLASSES

CHANNELS: tuple[str, ...] = CANONICAL_CHANNELS
N_CHANS: int = N_CANONICAL
# The data contract's sampling rate (Hz): every stored window, model input and pipeline output.
# Its one home (tests/test_one_definition.py): everything else imports it.
SFREQ: float = 256.0
# The pipeline's window length where a run names none (HMS labeled windows are always 50 s); every
# default of --window_seconds and PreprocessConfig.window_seconds is this one.
WINDOW_SECONDS: float = 10.0
PIPELINE_VERSION: str = "0.1.0"

HMS_TASK: str = "hms6"
SEXES: tuple[str, ...] = ("", "F", "M")
CORPUS_SPLITS: tuple[str, ...] = ("", "train", "dev", "eval")

# Site ids name output folders (OUTPUT/<site>/...), on local disks and in object stores alike.
SITE_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_HEX64 = re.compile(rb"[0-9a-f]{64}")

# Rows of a window's spectrogram in Kaggle's HMS layout: 4 chains (LL, RL, LP, RP) x 100
# frequencies (contract.spectrogram computes them, in this order).
N_SPECTROGRAM_ROWS = 400


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """How one feature is stored: list kind, number of values (None: a variable-length list that
    reads as empty when absent) and the value an absent feature reads as (None: required)."""

    kind: str  # "bytes" | "float" | "int64"
    size: int | None = 1
    default: Any = None


FEATURES: dict[str, FeatureSpec] = {
    "eeg": FeatureSpec("bytes"),  # float16 little-endian, C order, shape [19, n_times], microvolts
    "shape": FeatureSpec("int64", 2),  # [19, n_times]
    "channel_mask": FeatureSpec("int64", N_CHANS),  # 1 measured, 0 interpolated
    "sfreq": FeatureSpec("float"),  # 256.0
    # Pseudonyms (keyed hash), never raw identifiers; site_id also names the output folder (path-safe).
    "site_id": FeatureSpec("bytes"),
    "subject_id": FeatureSpec("bytes"),
    "session_id": FeatureSpec("bytes"),  # empty when the source has no sessions
    "recording_id": FeatureSpec("bytes"),
    # Offset in the recording: float32 is exact for whole samples at 256 Hz up to 18.2 h, then ~8 ms steps.
    "window_start_s": FeatureSpec("float"),
    "window_start_index": FeatureSpec("int64", 1, -1),  # the same in samples at 256 Hz (-1: an older writer)
    "quality": FeatureSpec("float", None),  # quality metrics, named in the manifest
    "artifact_score": FeatureSpec("float"),  # 0 clean ... 1 artifact
    "label": FeatureSpec("int64"),  # class index in task's label space, or -1
    "votes": FeatureSpec("float", None),  # HMS expert votes (HMS_CLASSES order) or empty
    "task": FeatureSpec("bytes"),  # label space, e.g. hms6; empty only for unlabeled windows
    "age": FeatureSpec("float", 1, math.nan),  # years; NaN when unknown
    "sex": FeatureSpec("bytes", 1, b""),  # F, M or empty when unknown
    "source_sha256": FeatureSpec("bytes"),  # hex SHA-256 of the source file
    "pipeline_version": FeatureSpec("bytes"),  # PIPELINE_VERSION of the writer
    "config_hash": FeatureSpec("bytes"),  # hash of the preprocessing config
    "extra": FeatureSpec("float", None),  # optional per-window features (e.g. band powers), named in the manifest
    "ecg": FeatureSpec("bytes", 1, b""),  # optional ECG, float16 little-endian [n_times] like eeg's; empty if absent
    "corpus_split": FeatureSpec("bytes", 1, b""),  # the corpus's own split (train, dev, eval: TUAB, TUSZ, TUEV)
    # optional Kaggle-layout spectrogram (contract.spectrogram): float16 little-endian, C order,
    # shape [400, spectrogram_frames], log1p µV²/Hz, NaN for a chain not recorded; empty if absent
    "spectrogram": FeatureSpec("bytes", 1, b""),
    "spectrogram_frames": FeatureSpec("int64", 1, 0),  # its frames (2 s apart); 0 without one
}


def tf_feature_description() -> dict[str, Any]:
    """The ``tf.io.parse_single_example`` description of ``FEATURES``; ``eeg``, ``ecg`` and
    ``spectrogram`` come back as bytes for ``tf.io.decode_raw(x, tf.float16, little_endian=True)``,
    reshaped by ``shape`` (``[400, spectrogram_frames]`` for the spectrogram)."""
    import tensorflow as tf  # heavy and optional (the tf extra): only this function needs it

    dtypes = {"bytes": tf.string, "float": tf.float32, "int64": tf.int64}
    return {
        name: tf.io.VarLenFeature(dtypes[spec.kind])
        if spec.size is None
        else tf.io.FixedLenFeature([] if spec.size == 1 else [spec.size], dtypes[spec.kind], default_value=spec.default)
        for name, spec in FEATURES.items()
    }


def _empty_f32() -> np.ndarray:
    return np.zeros(0, dtype=np.float32)


@dataclasses.dataclass(eq=False)
class WindowRecord:
    """One EEG window with its metadata, validated and cast to exactly what the Example stores
    (``record_fields``): signals float16, lists float32, float scalars float32-rounded, text bytes;
    ``SchemaError`` names the field, what was expected and what came."""

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
    spectrogram: np.ndarray | None = None  # (400, n_frames) log1p µV²/Hz, NaN where not recorded
    sfreq: float = SFREQ
    pipeline_version: bytes = PIPELINE_VERSION.encode()

    def __post_init__(self) -> None:
        self.eeg = field.signal("eeg", self.eeg, ndim=2)
        if self.eeg.shape[0] != N_CHANS:
            field.fail(
                "eeg", f"{N_CHANS} channels in canonical order (shape [19, n_times])", f"shape {list(self.eeg.shape)}"
            )
        self.channel_mask = field.channel_mask(self.channel_mask)
        if self.ecg is not None:
            self.ecg = field.signal("ecg", self.ecg, ndim=1)
            if self.ecg.shape[0] != self.n_times:
                field.fail("ecg", f"{self.n_times} samples (the window's n_times)", f"{self.ecg.shape[0]}")
        if self.spectrogram is not None:
            self.spectrogram = field.spectrogram(self.spectrogram, N_SPECTROGRAM_ROWS)
        self.sfreq = field.float32("sfreq", self.sfreq)
        if self.sfreq != SFREQ:
            field.fail("sfreq", f"{SFREQ} (every stored window is resampled to it)", f"{self.sfreq}")
        for name in ("site_id", "subject_id", "session_id", "recording_id"):
            required = "" if name == "session_id" else "a non-empty pseudonym"
            setattr(self, name, field.text(name, getattr(self, name), required=required))
        if not SITE_ID_PATTERN.fullmatch(self.site_id.decode("utf-8", "replace")):
            field.fail(
                "site_id",
                f"a path-safe name matching {SITE_ID_PATTERN.pattern!r} (it names the output folder)",
                repr(self.site_id),
            )
        self.window_start_s = field.float32("window_start_s", self.window_start_s, low=0.0)
        self.window_start_index = field.int64("window_start_index", self.window_start_index, low=-1)
        self.quality = field.float_list("quality", self.quality)
        self.artifact_score = field.float32("artifact_score", self.artifact_score, low=0.0, high=1.0)
        self._normalize_labels()
        self.age = field.float32("age", self.age, low=0.0, high=150.0, allow_nan=True)
        self.sex = field.choice("sex", self.sex, SEXES, "empty when unknown")
        self.extra = field.float_list("extra", self.extra)
        self.corpus_split = field.choice(
            "corpus_split", self.corpus_split, CORPUS_SPLITS, "empty when the corpus has no split"
        )
        self.source_sha256 = field.text("source_sha256", self.source_sha256)
        if not _HEX64.fullmatch(self.source_sha256):
            field.fail("source_sha256", "64 lowercase hex digits", repr(self.source_sha256))
        self.pipeline_version = field.text("pipeline_version", self.pipeline_version, required="a non-empty string")
        self.config_hash = field.text("config_hash", self.config_hash, required="a non-empty string")

    def _normalize_labels(self) -> None:
        self.label = field.int64("label", self.label, low=-1)
        self.votes = field.float_list("votes", self.votes)
        if self.votes.size not in (0, len(HMS_CLASSES)):
            field.fail(
                "votes", f"0 or {len(HMS_CLASSES)} values ({', '.join(HMS_CLASSES)})", f"{self.votes.size} values"
            )
        if (self.votes < 0).any():
            field.fail("votes", "non-negative vote counts", f"{self.votes.tolist()}")
        self.task = field.text("task", self.task)
        if not self.task and (self.label != -1 or self.votes.size):
            field.fail("task", "a label space name (e.g. b'hms6') for a labeled window", "b''")
        if self.task == HMS_TASK.encode() and self.label >= len(HMS_CLASSES):
            field.fail("label", f"-1 or a class index below {len(HMS_CLASSES)} for task {HMS_TASK!r}", f"{self.label}")

    @property
    def n_times(self) -> int:
        return int(self.eeg.shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        return (N_CHANS, self.n_times)

    @property
    def spectrogram_frames(self) -> int:
        return 0 if self.spectrogram is None else int(self.spectrogram.shape[1])

    def __eq__(self, other: object) -> bool:
        """Field-wise equality; arrays compare by value and NaN equals NaN (``age`` unknown)."""
        if not isinstance(other, WindowRecord):
            return NotImplemented
        return all(field.same_value(getattr(self, f.name), getattr(other, f.name)) for f in dataclasses.fields(self))

    __hash__ = None  # type: ignore[assignment]  # mutable, like every dataclass with eq


def _record_features(record: WindowRecord) -> dict[str, tuple[str, Any]]:
    """``{name: (kind, values)}`` for every feature; scalars become one-element lists."""
    if not isinstance(record, WindowRecord):
        raise SchemaError(f"encode_example: expected a WindowRecord; got {type(record).__name__}")
    derived = {
        "eeg": record.eeg.tobytes(),
        "shape": record.shape,
        "ecg": b"" if record.ecg is None else record.ecg.tobytes(),
        "spectrogram": b"" if record.spectrogram is None else record.spectrogram.tobytes(),
        "spectrogram_frames": record.spectrogram_frames,
    }
    values = {name: derived[name] if name in derived else getattr(record, name) for name in FEATURES}
    return {name: (spec.kind, [values[name]] if spec.size == 1 else values[name]) for name, spec in FEATURES.items()}


def encode_example(record: WindowRecord) -> bytes:
    """Serialize a validated window as a deterministic ``tf.train.Example``."""
    return encode_features(_record_features(record))


def encode_example_patchable(record: WindowRecord, floats: Sequence[str]) -> tuple[bytes, dict[str, int]]:
    """``encode_example(record)`` and the byte offset in it of each float feature in ``floats``:
    overwriting those fixed-width values (e.g. an artifact score known only later) gives exactly
    the bytes ``encode_example`` would give for the updated record."""
    features = _record_features(record)
    example = example_message(features)
    data, feature_map = example.SerializeToString(deterministic=True), example.features.feature
    offsets = {}
    for name in floats:
        if name not in features:
            continue
        kind, values = features[name]
        if kind != "float" or len(values) == 0:
            raise SchemaError(f"feature {name!r}: expected a non-empty float list to patch; got {kind}")
        # Map entries are written one after another in sorted key order, and a packed float list
        # ends its entry: the values end where the entries of the later keys begin.
        later = Features(feature={key: feature_map[key] for key in features if key > name}).ByteSize()
        offsets[name] = len(data) - later - 4 * len(values)
    if missing := sorted(set(floats) - set(offsets)):
        raise SchemaError(f"floats: expected feature names of the record; got unknown {missing}")
    return data, offsets


_SCALAR = {"bytes": bytes, "float": float, "int64": int}


def _feature_values(features: Mapping[str, tuple[str, Any]], name: str) -> Any:
    """The values of ``name`` checked against ``FEATURES``: a Python scalar for size 1, else a list."""
    spec = FEATURES[name]
    if name not in features:
        if spec.size is None:
            return empty_list(spec.kind)
        if spec.default is None:
            raise SchemaError(f"feature {name!r}: missing from the Example (it is required)")
        return spec.default
    kind, values = features[name]
    if kind != spec.kind:
        raise SchemaError(f"feature {name!r}: expected {spec.kind} values; got {kind} values")
    if spec.size is not None and len(values) != spec.size:
        raise SchemaError(f"feature {name!r}: expected {spec.size} {spec.kind} value(s); got {len(values)}")
    return _SCALAR[spec.kind](values[0]) if spec.size == 1 else values


def _decode_signal(name: str, raw: bytes, shape: tuple[int, ...]) -> np.ndarray:
    expected = int(np.prod(shape)) * EEG_DTYPE.itemsize
    if len(raw) != expected:
        raise SchemaError(
            f"feature {name!r}: expected {expected} bytes of float16 for shape {list(shape)}; got {len(raw)}"
        )
    return np.frombuffer(raw, dtype=EEG_DTYPE).reshape(shape)


def decode_example(data: bytes | memoryview) -> WindowRecord:
    """A serialized ``tf.train.Example`` as a validated ``WindowRecord``; ``eeg``, ``ecg`` and
    ``spectrogram`` are read-only views of ``data`` (copy them before writing in place)."""
    features = decode_features(data)
    values = {name: _feature_values(features, name) for name in FEATURES}
    shape = tuple(int(v) for v in values.pop("shape"))
    if shape[0] != N_CHANS or shape[1] <= 0:
        raise SchemaError(f"feature 'shape': expected [{N_CHANS}, n_times > 0]; got {list(shape)}")
    values["eeg"] = _decode_signal("eeg", values["eeg"], shape)
    ecg = values.pop("ecg")
    values["ecg"] = _decode_signal("ecg", ecg, shape[1:]) if ecg else None
    values["spectrogram"] = _decode_spectrogram(values.pop("spectrogram"), values.pop("spectrogram_frames"))
    return WindowRecord(**values)


def _decode_spectrogram(raw: bytes, n_frames: int) -> np.ndarray | None:
    """The stored spectrogram (None when absent: no bytes and 0 frames, as older files read)."""
    if not raw and n_frames == 0:
        return None
    if n_frames <= 0:
        raise SchemaError(f"feature 'spectrogram_frames': expected n_frames > 0 with spectrogram bytes; got {n_frames}")
    return _decode_signal("spectrogram", raw, (N_SPECTROGRAM_ROWS, n_frames))
