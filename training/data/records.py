"""One window record as read: parsed by protobuf's C parser (upb, the ``protobuf`` package's
default backend), from message classes built here so that neither TensorFlow nor protoc is needed."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError

from eegfm.pipelines.schema import FEATURES, HMS_CLASSES, N_CHANS, SchemaError, decode_features

N_CLASSES = len(HMS_CLASSES)
_LIST_FIELD = {"bytes": "bytes_list", "float": "float_list", "int64": "int64_list"}
_FEATURE_LIST = {name: _LIST_FIELD[spec.kind] for name, spec in FEATURES.items()}
VALUES = {name: operator.attrgetter(f"{field}.value") for name, field in _FEATURE_LIST.items()}
TEXT_FIELDS = ("site_id", "subject_id", "recording_id", "task", "sex")
SCALAR_FIELDS = ("label", "window_start_index", "age", "artifact_score")


def _example_class() -> type:
    """``tf.train.Example`` as a message class of a private descriptor pool.

    Mirrors tensorflow/core/example/{example,feature}.proto (see pipelines/schema.py): only the
    field numbers and types matter on the wire, and these are TensorFlow's.
    """
    def field(name: str, number: int, kind: str = "TYPE_MESSAGE", message: str = "", repeated: bool = False,
              **more: Any) -> dict[str, Any]:
        label = "LABEL_REPEATED" if repeated else "LABEL_OPTIONAL"
        return {"name": name, "number": number, "type": kind, "label": label,
                **({"typeName": f".tensorflow.{message}"} if message else {}), **more}

    lists = (("BytesList", "TYPE_BYTES"), ("FloatList", "TYPE_FLOAT"), ("Int64List", "TYPE_INT64"))
    entry = {"name": "FeatureEntry", "options": {"mapEntry": True},  # map<string, Feature> on the wire
             "field": [field("key", 1, "TYPE_STRING"), field("value", 2, message="Feature")]}
    messages = [*({"name": name, "field": [field("value", 1, kind, repeated=True)]} for name, kind in lists),
                {"name": "Feature", "oneofDecl": [{"name": "kind"}],
                 "field": [field(f"{name[:-4].lower()}_list", number, message=name, oneofIndex=0)
                           for number, (name, _) in enumerate(lists, start=1)]},
                {"name": "Features", "nestedType": [entry],
                 "field": [field("feature", 1, message="Features.FeatureEntry", repeated=True)]},
                {"name": "Example", "field": [field("features", 1, message="Features")]}]
    proto = json_format.ParseDict({"name": "eegfm/training/tf_example.proto", "package": "tensorflow",
                                   "syntax": "proto3", "messageType": messages}, descriptor_pb2.FileDescriptorProto())
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))


Example = _example_class()


def _parse_failure(raw: bytes, error: Exception) -> str:
    """Why an Example does not parse. protobuf only says that it failed; the pure-Python decoder
    of pipelines.schema says which field and byte (slow, but only on this error path)."""
    try:
        decode_features(raw)
    except SchemaError as detail:
        return str(detail)
    return f"not a valid tf.train.Example ({error})"


class Window:
    """One record: its features (protobuf's map of Feature), its length, and once its samples are
    copied into a batch row (``stream``), where they are: ``placed = (tensors, row, has ECG)``."""

    __slots__ = ("path", "index", "features", "n_times", "placed")

    def __init__(self, raw: bytes, path: str, index: int):
        self.path, self.index, self.placed = path, index, None
        try:
            self.features = Example.FromString(raw).features.feature
        except DecodeError as err:
            raise self.error(_parse_failure(raw, err)) from None
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
        float16 arrays. (``batch.collate`` reads the same fields for a whole batch at once.)"""
        fields = {name: self.bytes(name) for name in TEXT_FIELDS}
        eeg, ecg = self.samples("eeg"), self.samples("ecg")
        fields["eeg"] = np.frombuffer(eeg, dtype="<f2").reshape(N_CHANS, self.n_times)
        fields["ecg"] = None if ecg is None else np.frombuffer(ecg, dtype="<f2")
        fields["channel_mask"] = np.array(self.channel_mask(), np.int64)
        fields["votes"] = self.floats("votes")
        for name in SCALAR_FIELDS:
            fields[name] = self.scalar(name)
        return fields

    def samples(self, name: str) -> bytes | None:
        """The float16 bytes of ``eeg`` or ``ecg`` (None: no ECG), their length checked."""
        raw = self.bytes(name)
        if name == "ecg" and not raw:
            return None
        size = 2 * self.n_times * (N_CHANS if name == "eeg" else 1)
        if len(raw) != size:
            shape = [N_CHANS, self.n_times] if name == "eeg" else [self.n_times]
            raise self.error(f"feature {name!r}: expected {size} bytes of float16 for shape {shape}; got {len(raw)}")
        return raw

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
