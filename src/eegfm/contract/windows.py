"""One window record as read: its samples split out in place (:func:`split_samples`, switched by
``LoaderConfig.split_samples``), the rest parsed by protobuf's C parser with the message classes
the pipeline writes with (``contract.example_wire``), so that neither TensorFlow nor protoc is needed.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from eegfm.contract.example_wire import LIST_FIELDS, Example, Features
from eegfm.contract.schema import FEATURES, N_CHANS, N_SPECTROGRAM_ROWS, SchemaError, decode_features
from eegfm.core.tasks import HMS_CLASSES

N_CLASSES = len(HMS_CLASSES)
_FEATURE_LIST = {name: LIST_FIELDS[spec.kind] for name, spec in FEATURES.items()}
VALUES = {name: operator.attrgetter(f"{field}.value") for name, field in _FEATURE_LIST.items()}
TEXT_FIELDS = ("site_id", "subject_id", "recording_id", "task", "sex")
SCALAR_FIELDS = ("label", "window_start_index", "age", "artifact_score")


_LEN_TAG = 0x0A  # field 1, wire type 2: Example.features, a map entry, an entry's key, BytesList.value
_VALUE_TAG = 0x12  # field 2, wire type 2: a map entry's value
_EEG_KEY = bytes([_LEN_TAG, 3]) + b"eeg"
_ECG_KEY = bytes([_LEN_TAG, 3]) + b"ecg"
_SAMPLE_TAGS = bytes([_VALUE_TAG, _LEN_TAG, _LEN_TAG])  # Feature.bytes_list, BytesList.value


def _length(raw: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it (IndexError past the end). Stops after 10
    bytes: an overlong or bogus length only sends the record to protobuf's full parse."""
    byte = raw[pos]
    if byte < 0x80:
        return byte, pos + 1
    second = raw[pos + 1]  # a window's samples take 3 bytes of length: unrolled, not looped
    if second < 0x80:
        return (byte & 0x7F) | second << 7, pos + 2
    third = raw[pos + 2]
    if third < 0x80:
        return (byte & 0x7F) | (second & 0x7F) << 7 | third << 14, pos + 3
    result, shift, pos = (byte & 0x7F) | (second & 0x7F) << 7 | (third & 0x7F) << 14, 21, pos + 3
    while True:
        byte = raw[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80 or shift > 63:
            return result, pos
        shift += 7


def _nested_bytes(raw: bytes, pos: int, stop: int, tags: bytes) -> int | None:
    """Where the payload starts if ``raw[pos:stop]`` is exactly ``tags[0] len (tags[1] len (...))``,
    each length running to ``stop``; None otherwise."""
    for tag in tags:
        if raw[pos] != tag:
            return None
        size, pos = _length(raw, pos + 1)
        if pos + size != stop:
            return None
    return pos


def split_samples(raw: bytes) -> tuple[bytes, memoryview, memoryview | None] | None:
    """``(the Features payload without its eeg entry, the eeg samples' bytes in place, the ecg
    samples' bytes in place or None)``; ecg only where its entry comes before eeg's (sorted keys).

    The samples, nearly all of a record, are then neither copied into protobuf's arena nor out of
    it. Any layout but the serializers' (or a malformed one) returns None: protobuf parses it all.
    """
    try:
        if raw[0] != _LEN_TAG:
            return None
        size, start = _length(raw, 1)
        pos, end = start, start + size
        if end != len(raw):
            return None
        ecg = None  # (entry start, entry stop, samples start)
        while pos < end:  # the entries before eeg's; with sorted keys (the pipeline's) it is the 6th
            if raw[pos] != _LEN_TAG:
                return None
            size, body = raw[pos + 1], pos + 2  # small entries skip the varint call
            if size >= 0x80:
                size, body = _length(raw, pos + 1)
            stop = body + size
            if raw[body + 1] != 3:  # not a 3-letter key: neither eeg nor ecg
                pos = stop
                continue
            if raw.startswith(_EEG_KEY, body):
                samples = _nested_bytes(raw, body + len(_EEG_KEY), stop, _SAMPLE_TAGS)
                if samples is None:
                    return None
                view = memoryview(raw)
                if ecg is None:
                    return raw[start:pos] + raw[stop:end], view[samples:stop], None
                return (
                    raw[start : ecg[0]] + raw[ecg[1] : pos] + raw[stop:end],
                    view[samples:stop],
                    view[ecg[2] : ecg[1]],
                )
            if ecg is None and raw.startswith(_ECG_KEY, body):
                samples = _nested_bytes(raw, body + len(_ECG_KEY), stop, _SAMPLE_TAGS)
                if samples is not None:  # any other shape (an empty list ...) stays for protobuf
                    ecg = pos, stop, samples
            pos = stop
    except IndexError:  # truncated: protobuf's parse reports it
        return None
    return None


def _parse_failure(raw: bytes, error: Exception) -> str:
    """Why an Example does not parse: contract.schema's decoder names the field and byte."""
    try:
        decode_features(raw)
    except SchemaError as detail:
        return str(detail)
    return f"not a valid tf.train.Example ({error})"


class Window:
    """One record: its features, its length, its samples' bytes in place where ``split_samples``
    found them, and once copied into a batch row, ``placed = (tensors, row, has ECG)``."""

    __slots__ = ("path", "index", "features", "eeg", "ecg", "n_times", "placed")

    def __init__(self, raw: bytes, path: str, index: int, split: bool = True):
        self.path, self.index, self.placed = path, index, None
        parts = split_samples(raw) if split else None
        try:
            if parts is not None:
                payload, self.eeg, self.ecg = parts
                self.features = Features.FromString(payload).feature
            if parts is None or "eeg" in self.features:  # another layout, or a later eeg entry (which wins)
                self.eeg = self.ecg = None
                self.features = Example.FromString(raw).features.feature
        except DecodeError as err:
            raise self.error(_parse_failure(raw, err)) from None
        if self.ecg is not None and "ecg" in self.features:
            self.ecg = None  # a later ecg entry wins, as in protobuf
        shape = self.features.get("shape")
        shape = shape.int64_list.value if shape is not None else ()
        if len(shape) != 2 or shape[0] != N_CHANS or shape[1] <= 0:
            shape = list(self.values("shape"))  # the kind checked for the message
            raise self.error(f"feature 'shape': expected [{N_CHANS}, n_times > 0]; got {shape}")
        self.n_times = shape[1]

    def error(self, message: str) -> SchemaError:
        return SchemaError(f"{self.path}: record {self.index}: {message}")

    def values(self, name: str) -> Sequence[Any]:
        """The values of feature ``name`` (empty when absent); a list of another kind is an error."""
        feature = self.features.get(name)
        if feature is None:
            return ()
        values = VALUES[name](feature)
        if not values and feature.WhichOneof("kind") not in (None, _FEATURE_LIST[name]):
            raise self.error(f"feature {name!r}: expected {FEATURES[name].kind} values")
        return values

    def bytes(self, name: str) -> bytes:
        values = self.values(name)
        return values[0] if values else FEATURES[name].default or b""

    def text(self, name: str) -> str:
        return self.bytes(name).decode("utf-8")

    def floats(self, name: str) -> np.ndarray:
        return np.array(self.values(name), dtype=np.float32)

    def scalar(self, name: str) -> Any:
        """The first value (an int or a float, as protobuf returns them), else the default."""
        values = self.values(name)
        if values:
            return values[0]
        if FEATURES[name].default is None:
            raise self.error(f"feature {name!r}: missing from the Example (it is required)")
        return FEATURES[name].default

    def decode(self) -> dict[str, Any]:
        """The fields the batches carry, named like ``WindowRecord``'s; ``eeg``/``ecg`` are read-only
        float16 arrays."""
        fields = {name: self.bytes(name) for name in TEXT_FIELDS}
        eeg, ecg = self.samples("eeg"), self.samples("ecg")
        fields["eeg"] = np.frombuffer(eeg, dtype="<f2").reshape(N_CHANS, self.n_times)
        fields["ecg"] = None if ecg is None else np.frombuffer(ecg, dtype="<f2")
        fields["channel_mask"] = np.array(self.channel_mask(), np.int64)
        fields["votes"] = self.floats("votes")
        for name in SCALAR_FIELDS:
            fields[name] = self.scalar(name)
        return fields

    def samples(self, name: str) -> bytes | memoryview | None:
        """The float16 bytes of ``eeg`` or ``ecg`` (None: no ECG), their length checked."""
        raw = self.eeg if name == "eeg" else self.ecg
        if raw is None:
            raw = self.bytes(name)
        if name == "ecg" and not raw:
            return None
        size = 2 * self.n_times * (N_CHANS if name == "eeg" else 1)
        if len(raw) != size:
            shape = [N_CHANS, self.n_times] if name == "eeg" else [self.n_times]
            raise self.error(f"feature {name!r}: expected {size} bytes of float16 for shape {shape}; got {len(raw)}")
        return raw

    def spectrogram(self) -> np.ndarray | None:
        """The stored spectrogram, a read-only float16 (400, frames) view (None: the window has none)."""
        raw, n_frames = self.bytes("spectrogram"), self.scalar("spectrogram_frames")
        if not raw and not n_frames:
            return None
        if n_frames <= 0 or len(raw) != 2 * N_SPECTROGRAM_ROWS * n_frames:
            raise self.error(
                f"feature 'spectrogram': expected {2 * N_SPECTROGRAM_ROWS * max(n_frames, 0)} bytes of float16 for "
                f"shape [{N_SPECTROGRAM_ROWS}, {n_frames}] (spectrogram_frames > 0); got {len(raw)}"
            )
        return np.frombuffer(raw, dtype="<f2").reshape(N_SPECTROGRAM_ROWS, n_frames)

    def channel_mask(self) -> Sequence[int]:
        mask = self.values("channel_mask")
        if len(mask) != N_CHANS:
            raise self.error(f"feature 'channel_mask': expected {N_CHANS} values")
        return mask

    def votes(self) -> Sequence[float]:
        """The expert votes: none, or one per HMS class."""
        votes = self.values("votes")
        if len(votes) not in (0, N_CLASSES):
            raise self.error(f"feature 'votes': expected 0 or {N_CLASSES} values (one per class); got {len(votes)}")
        return votes
