"""The preprocessing pipeline's snappy TFRecords as torch batches, for step-based DDP training.

Each shard (one DataLoader worker of one DDP rank) runs, every epoch::

    files (order shuffled by (seed, epoch)) -> this shard's records -> split each Example
    (the eeg/ecg samples stay float16 bytes in the record; the rest is parsed by protobuf's C
    parser when a filter or the batch needs it) -> filters
    -> seeded shuffle: each window joins one of the open batches of its length (batch size or
       token budget), its samples copied into its row at once -> full batches out
    -> small fields + augmentation, only for batches handed to the caller

so fast-forwarding on resume replays the same draws and copies no sample of a skipped batch.
The shuffle (``_ShardStream``) mixes like a shuffle buffer of ``shuffle_buffer`` windows: a batch
gathers windows from about the last ``shuffle_buffer`` records read, and the first
``shuffle_buffer`` of an epoch arrive in random order. Where the loader knows a shard's windows
(fine-tuning's ``windows_per_file``) and they fit in ``full_shuffle_mb``, the buffer holds them all.

Sharding: exactly once per epoch overall. There are ``S = world_size * W`` shards with
``W = max(1, num_workers)``; shard ``s = rank * W + worker``. All shards draw the same file
permutation for an epoch. With ``F`` files and ``m = min(F, S)``, file ``j`` of that order is
read by the shards ``s`` with ``s % m == j % m``, and its record ``r`` belongs to the
``(r % c)``-th of those ``c`` readers. With ``F >= S`` (the normal case) every file goes whole to
one shard and nothing is read twice; only data sets with fewer files than shards read a file on
several shards, each keeping every c-th record and passing over the others' (decompressed, not
copied or checked; the loader warns, and ``eegfm-preprocess --max_shard_mb`` writes more files).
Shards differ in size by up to a file, which is why training iterates forever
(``infinite=True``): ranks never run out at different steps, and each shard counts its own
epochs. ``infinite=False`` gives one epoch per ``iter()`` (evaluation).

Order and resume: DataLoader hands out worker batches strictly round-robin, skipping workers
that finished. Every batch carries its shard position (worker, epoch, index in epoch, last of
epoch) to the main process, where :class:`EEGLoader` records it as the batch is handed out.
``state_dict()`` holds those positions, the epoch and the number of batches consumed. On resume
each worker restarts its epoch and skips the batches it had delivered without decoding them, and
worker slots are rotated so that the worker after the last one to deliver goes first: the same
round-robin then repeats the uninterrupted sequence bit for bit. Augmentation draws come from a
generator seeded by (seed, epoch, shard, batch index), so they repeat too. Resuming needs the
same files, seed, world_size and num_workers (checked); each DDP rank saves its own state.

Throughput (``benchmarks/train_loader.py``): a record's samples are copied into their batch row
right after the read, while the record is still in the CPU cache (copied from a record that
waited in a shuffle buffer, they cost a trip to memory each; an epoch's first ``shuffle_buffer``
windows wait for their permutation unless the shard, having read its files before, planned the
epoch: ``_ShardStream._plan``); its other fields (about 600 bytes)
are parsed by protobuf's C parser when the batch is assembled, each Feature left serialized, and
decoded a field at a time for the whole batch (``training.field_columns``).
Without augmentation a worker fills its open batches straight in shared-memory segments it keeps
mapped (reused once the trainer has let go of the batch it last held), so the samples are copied
once after the read; augmented batches are copied in by the kernel. The small fields go pickled;
the segment's file descriptor crosses over a socket the worker inherited (``training.handoff``), not
DataLoader's per-descriptor connection. float32 batches write twice the stored bytes;
``eeg_dtype="float16"`` (the GPU presets) halves that and every later copy, and leaves the exact
conversion to the model on the GPU.

Batches are dicts (``model_inputs`` picks the model's keyword arguments):

=================  ================  ======================================================
key                type              meaning
=================  ================  ======================================================
eeg                float32 [B,19,T]  µV, canonical channel order (float16 with eeg_dtype)
channel_mask       float32 [B,19]    1 measured, 0 interpolated (or dropped by augmentation)
age, sex           float32 [B]       years; 0 female, 1 male (``model.inputs``); NaN unknown
ecg                float32 [B,T]     only if some window has ECG; all-NaN rows where absent
votes              float32 [B,6]     expert votes; zeros without votes
targets            float32 [B,6]     votes as a distribution (mixed by mixup/cutmix); zeros
                                     without votes
has_votes          bool [B]          the window has at least one vote
n_votes            float32 [B]       total votes (before mixing)
label              int64 [B]         class index or -1
artifact_score     float32 [B]       0 clean ... 1 artifact
window_start       int64 [B]         ``window_start_index`` (samples at 256 Hz)
site_id, task,     list[str]         pseudonyms; ``task`` is the label space (``""``:
subject_id,                          unlabeled)
recording_id
=================  ================  ======================================================
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import math
import operator
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import IO, Any

import numpy as np
import torch
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from eegfm.model.inputs import SEX_CODES, encode_sex
from eegfm.core.config import ConfigError, check_int, check_option, check_range
from eegfm.core.logs import get_logger
from eegfm.core.stores import filesystems, match_below
from eegfm.core.stores import is_remote as _is_remote
from eegfm.core.stores import join_path as _join
from eegfm.core.stores import open_binary as _open
from eegfm.pipelines.schema import (CORPUS_SPLITS, FEATURES, HMS_CLASSES, N_CHANS, SchemaError, encode_list, len_field,
                              decode_features)
from eegfm.pipelines.tfrecord import CorruptTFRecordError, read_records
from eegfm.training import field_columns
from eegfm.training.handoff import Handoff, Specs, copy_to_shared, handoff_supported, resolve_shared
from eegfm.training.augment import AugmentConfig, augment_batch, finetune_augment, pretrain_augment

SHARD_PATTERN = "part-*-of-*.tfrecord"
MODEL_KEYS = ("eeg", "channel_mask", "ecg", "age", "sex")
SHARED_KEYS = ("eeg", "ecg")  # from workers via shared memory; small fields pickle by value
_SHARED = "_shared"  # the wire batch's key for the reference to its shared tensors
_FAILED = "failed"  # in place of a batch's position: a worker's data error follows
EEG_DTYPES = {"float32": torch.float32, "float16": torch.float16}
N_CLASSES = len(HMS_CLASSES)
STATE_VERSION = 1
AUTO = "auto"  # num_workers: as many as this process's share of the machine's CPUs and memory allows
AUTO_MAX_WORKERS = 16
AUTO_MIN_BATCHES = 4  # per worker and epoch, for num_workers "auto" (see auto_num_workers)

log = get_logger(__name__)


# ------------------------------------------------------------------------------------------------
# Files and manifest (local paths, or anything apache_beam's FileSystems knows, e.g. gs://)
# ------------------------------------------------------------------------------------------------


def _source(path: str) -> contextlib.AbstractContextManager[str | IO[bytes]]:
    """What ``read_records`` reads ``path`` from: the local path itself (it opens it), else an
    open file object of the remote one."""
    return contextlib.nullcontext(path) if not _is_remote(path) else _open(path)


def _shards_below(folder: str) -> list[tuple[str, int]]:
    """``(path, size in bytes)`` of the ``<site>/part-*`` shards in an output folder, sorted by
    path; the folder's own name is no pattern ("out [x]")."""
    if _is_remote(folder):
        filesystems(_join(folder, "*", SHARD_PATTERN))  # the store's client, as configured; errors name the pattern
        found = [(m.path, m.size_in_bytes) for m in match_below(folder, f"*/{SHARD_PATTERN}")]
    else:
        import glob

        found = [(p, os.path.getsize(p)) for p in glob.glob(os.path.join(glob.escape(folder), "*", SHARD_PATTERN))]
    return sorted(found)


def _site_of(path: str) -> str:
    """The site folder of a shard (``OUTPUT/<site>/part-...``): by contract the ``site_id``."""
    return path.rstrip("/").split("/")[-2] if _is_remote(path) else os.path.basename(os.path.dirname(path))


def list_files(data_dir: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *,
               sites: Iterable[str] = (), exclude_sites: Iterable[str] = ()) -> list[str]:
    """Sorted non-empty TFRecord shards under pipeline output folder(s) or named ``.tfrecord`` files.

    A folder contributes ``<folder>/<site>/part-SSSSS-of-NNNNN.tfrecord``; ``sites`` /
    ``exclude_sites`` prune by the site folder, which the data contract makes the ``site_id``.
    Zero-byte shards (a site without windows) hold no records and are left out. Raises
    ``FileNotFoundError`` naming the folder and the expected layout when nothing is found.
    """
    return [path for path, _ in list_shards(data_dir, sites=sites, exclude_sites=exclude_sites)]


def list_shards(data_dir: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *,
                sites: Iterable[str] = (), exclude_sites: Iterable[str] = ()) -> list[tuple[str, int | None]]:
    """:func:`list_files` with each file's size in bytes (None for a named remote file: asking
    costs a request, and only the worker count's estimate of the corpus uses it)."""
    entries = [data_dir] if isinstance(data_dir, (str, os.PathLike)) else list(data_dir)
    if not entries:
        raise ValueError("data_dir: expected a pipeline output folder or .tfrecord files; got an empty list")
    keep, drop = set(sites), set(exclude_sites)
    files: dict[str, int | None] = {}
    for entry in map(os.fspath, entries):
        if entry.endswith(".tfrecord"):
            if not _is_remote(entry) and not os.path.isfile(entry):
                raise FileNotFoundError(f"data_dir: {entry} does not exist")
            files[entry] = None if _is_remote(entry) else os.path.getsize(entry)
            continue
        if not _is_remote(entry) and not os.path.isdir(entry):
            raise FileNotFoundError(f"data_dir: {entry} is not a directory (expected the output folder "
                                    "of pipelines.preprocess, or .tfrecord files)")
        found = _shards_below(entry)
        if not found:
            raise FileNotFoundError(
                f"data_dir: no TFRecord shards in {entry}; expected <site>/{SHARD_PATTERN} files "
                "written by pipelines.preprocess (with manifest.json beside the site folders)")
        files.update((path, size) for path, size in found if size > 0 and (not keep or _site_of(path) in keep)
                     and _site_of(path) not in drop)
    return sorted(files.items())


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What ``manifest.json`` says about a pipeline output (see ``pipelines.preprocess``)."""

    sites: tuple[str, ...]
    channels: tuple[str, ...]
    sfreq: float
    quality_names: tuple[str, ...]
    classes: dict[str, list[str]]
    counts: dict[str, Any]
    config_hash: str
    pipeline_version: str


def data_dirs(data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    """The output folder(s) ``data`` names, each once (a folder given twice is an error: its
    windows would be read twice)."""
    dirs = [os.fspath(data)] if isinstance(data, (str, os.PathLike)) else [os.fspath(d) for d in data]
    twice = sorted({d for d in dirs if dirs.count(d) > 1})
    if twice:
        raise ValueError(f"--data: {twice[0]} is given twice; expected each output folder once")
    return dirs


def data_label(data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> str:
    """``data`` as messages name it: the folder, or the folders joined by commas."""
    return ", ".join(data_dirs(data))


def describe(data_dir: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> DatasetInfo:
    """Read ``data_dir/manifest.json``: sites, channel order, quality metric names, counts. For
    several output folders, their manifests together: counts added, sites and classes joined; they
    must agree on the channels, sampling rate, quality metrics and each task's classes."""
    dirs = data_dirs(data_dir)
    infos = [(d, _describe_one(d)) for d in dirs]
    first_dir, merged = infos[0]
    for folder, info in infos[1:]:
        for field in ("channels", "sfreq", "quality_names"):
            if getattr(info, field) != getattr(merged, field):
                raise ValueError(f"--data {first_dir} and {folder}: their manifests' {field} differ "
                                 f"({getattr(merged, field)} vs {getattr(info, field)}); expected outputs of the "
                                 "same pipeline version, read together")
        for task in set(info.classes) & set(merged.classes):
            if list(info.classes[task]) != list(merged.classes[task]):
                raise ValueError(f"--data {first_dir} and {folder}: task {task!r} has classes "
                                 f"{merged.classes[task]} in one and {info.classes[task]} in the other")
        merged = DatasetInfo(
            sites=tuple(sorted({*merged.sites, *info.sites})), channels=merged.channels, sfreq=merged.sfreq,
            quality_names=merged.quality_names, classes={**merged.classes, **info.classes},
            counts=_added(merged.counts, info.counts),
            config_hash=",".join(sorted({*merged.config_hash.split(","), info.config_hash} - {""})),
            pipeline_version=",".join(sorted({*merged.pipeline_version.split(","), info.pipeline_version} - {""})))
    return merged


def check_data(data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], say: bool = True
               ) -> str | tuple[str, ...]:
    """``data`` as a run reads it: one output folder, or several, each given once. Several
    folders' manifests must agree (:func:`describe`; ConfigError otherwise); a recording that two
    of them hold is read once per folder, which a warning (with ``say``) names."""
    try:
        dirs = data_dirs(data)
        if len(dirs) > 1:
            describe(dirs)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    except FileNotFoundError:  # shards without their manifest: the loaders still read them
        pass
    if len(dirs) > 1 and say:
        shared = shared_recordings(dirs)
        if shared:
            log.warning("%d recording(s) are in more than one --data folder (%s): the same file processed by "
                        "each run, whose windows are read once per folder", len(shared),
                        "; ".join(f"{n} in {pair}" for pair, n in sorted(Counter(shared.values()).items())))
    return dirs[0] if len(dirs) == 1 else tuple(dirs)


def _added(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Two manifests' counts added: numbers summed, nested counts (per site, per label ...) key by key."""
    out = dict(a)
    for key, value in b.items():
        mine = out.get(key)
        if isinstance(value, Mapping) and isinstance(mine, Mapping):
            out[key] = _added(mine, value)
        elif isinstance(value, (int, float)) and isinstance(mine, (int, float)) and not isinstance(value, bool):
            out[key] = mine + value
        elif key not in out:
            out[key] = value
    return out


def _manifest(data_dir: str) -> dict[str, Any]:
    path = _join(os.fspath(data_dir), "manifest.json")
    try:
        with _open(path) as fileobj:
            return json.loads(fileobj.read())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no manifest; expected the output folder of pipelines.preprocess") from None


def shared_recordings(dirs: Sequence[str]) -> dict[str, str]:
    """The recordings (content digests of the manifests' processed inputs) that more than one of
    the output folders ``dirs`` holds, each with the folders that do ("A and B", in the order
    given); a folder
    without a manifest holds none that can be told."""
    holders: dict[str, set[str]] = {}
    for folder in dirs:
        try:
            inputs = _manifest(folder).get("inputs", ())
        except FileNotFoundError:
            continue
        for row in inputs:
            if row.get("status") == "processed" and row.get("source_sha256"):
                holders.setdefault(row["source_sha256"], set()).add(folder)
    return {digest: " and ".join(d for d in dirs if d in found) for digest, found in holders.items() if len(found) > 1}


def _describe_one(data_dir: str) -> DatasetInfo:
    manifest = _manifest(data_dir)
    return DatasetInfo(
        sites=tuple(manifest.get("sites", ())), channels=tuple(manifest["channels"]),
        sfreq=float(manifest["sfreq"]), quality_names=tuple(manifest.get("quality_names", ())),
        classes=dict(manifest.get("classes", {})), counts=dict(manifest.get("counts", {})),
        config_hash=str(manifest.get("config_hash", "")),
        pipeline_version=str(manifest.get("pipeline_version", "")),
    )


# ------------------------------------------------------------------------------------------------
# Example parsing. protobuf's C parser (upb, the ``protobuf`` package's default backend) reads a
# whole Example in a few microseconds, far faster than walking the wire format in Python. The
# message classes come from a descriptor written below, so neither TensorFlow nor protoc is
# needed. A window keeps its samples in place and its other fields as bytes, parsed when its batch
# is assembled; only the fields the loader uses are read, from their serialized Features.
# ------------------------------------------------------------------------------------------------

_LIST_FIELD = {"bytes": "bytes_list", "float": "float_list", "int64": "int64_list"}
_FEATURE_LIST = {name: _LIST_FIELD[spec.kind] for name, spec in FEATURES.items()}
_VALUES = {name: operator.attrgetter(f"{field}.value") for name, field in _FEATURE_LIST.items()}
_TEXT_FIELDS = ("site_id", "subject_id", "recording_id", "task", "sex")
_SCALAR_FIELDS = ("label", "window_start_index", "age", "artifact_score")


def _field(name: str, number: int, kind: int, *, repeated: bool = False, message: str = "",
           oneof: int | None = None) -> descriptor_pb2.FieldDescriptorProto:
    labels = descriptor_pb2.FieldDescriptorProto
    field = descriptor_pb2.FieldDescriptorProto(
        name=name, number=number, type=kind, label=labels.LABEL_REPEATED if repeated else labels.LABEL_OPTIONAL)
    if message:
        field.type_name = f".tensorflow.{message}"
    if oneof is not None:
        field.oneof_index = oneof
    return field


def _message_classes() -> tuple[type, type, type]:
    """``tf.train.Example``, ``tf.train.Features`` and the latter with its Feature values as bytes,
    as message classes of a private descriptor pool.

    Mirrors tensorflow/core/example/{example,feature}.proto (see pipelines/schema.py): only the
    field numbers and types matter on the wire, and these are TensorFlow's.
    """
    types = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="eegfm/training/tf_example.proto", package="tensorflow",
                                               syntax="proto3")
    for name, kind in (("BytesList", types.TYPE_BYTES), ("FloatList", types.TYPE_FLOAT),
                       ("Int64List", types.TYPE_INT64)):
        proto.message_type.add(name=name).field.append(_field("value", 1, kind, repeated=True))
    feature = proto.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, (name, message) in enumerate((("bytes_list", "BytesList"), ("float_list", "FloatList"),
                                               ("int64_list", "Int64List")), start=1):
        feature.field.append(_field(name, number, types.TYPE_MESSAGE, message=message, oneof=0))
    features = proto.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")  # map<string, Feature> on the wire
    entry.options.map_entry = True
    entry.field.extend([_field("key", 1, types.TYPE_STRING),
                        _field("value", 2, types.TYPE_MESSAGE, message="Feature")])
    features.field.append(_field("feature", 1, types.TYPE_MESSAGE, repeated=True,
                                 message="Features.FeatureEntry"))
    proto.message_type.add(name="Example").field.append(
        _field("features", 1, types.TYPE_MESSAGE, message="Features"))
    # The same bytes as Features, each Feature left serialized (training.field_columns reads them)
    raw = proto.message_type.add(name="RawFeatures")
    entry = raw.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.extend([_field("key", 1, types.TYPE_STRING), _field("value", 2, types.TYPE_BYTES)])
    raw.field.append(_field("feature", 1, types.TYPE_MESSAGE, repeated=True, message="RawFeatures.FeatureEntry"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return tuple(message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.{name}"))
                 for name in ("Example", "Features", "RawFeatures"))


_Example, _Features, _RawFeatures = _message_classes()
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


def _split_samples(raw: bytes) -> tuple[bytes, memoryview, memoryview | None] | None:
    """``(the Features payload without its eeg entry, the eeg samples' bytes in place, the ecg
    samples' bytes in place or None)``; ecg only where its entry comes before eeg's, as with
    sorted keys, else it stays in the payload.

    The samples are nearly all of a record: left in place they are neither copied into protobuf's
    arena by the parse nor out of it again as a ``bytes`` object (together more than reading the
    record costs). The layout is the one protobuf serializers and the pipeline write (one Features
    field, map entries key first, eeg a one-value BytesList); with any other layout, or a
    malformed one, this returns None and protobuf parses the whole record.
    """
    try:
        if raw[0] != _LEN_TAG:
            return None
        size, start = _length(raw, 1)
        pos, end = start, start + size
        if end != len(raw):
            return None
        ecg = None  # (entry start, entry stop, samples start)
        while pos < end:  # entries before eeg; with sorted keys (the pipeline's) it is the 6th
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
                return raw[start:ecg[0]] + raw[ecg[1]:pos] + raw[stop:end], view[samples:stop], view[ecg[2]:ecg[1]]
            if ecg is None and raw.startswith(_ECG_KEY, body):
                samples = _nested_bytes(raw, body + len(_ECG_KEY), stop, _SAMPLE_TAGS)
                if samples is not None:  # any other shape (an empty list ...) stays for protobuf
                    ecg = pos, stop, samples
            pos = stop
    except IndexError:  # truncated: protobuf's parse reports it
        return None
    return None


def _parse_failure(raw: bytes, error: Exception) -> str:
    """Why an Example does not parse. protobuf only says that it failed; the pure-Python decoder
    of pipelines.schema says which field and byte (slow, but only on this error path)."""
    try:
        decode_features(raw)
    except SchemaError as detail:
        return str(detail)
    return f"not a valid tf.train.Example ({error})"


class _Window:
    """One record as read: its samples in place, its other fields parsed by protobuf when first
    asked for. The loader asks when it assembles the window's batch (``feature_bytes``; filters
    and errors use ``features``): parsing then costs about what parsing on arrival does, and a
    window waiting in an open batch holds ~600 bytes rather than a protobuf arena."""

    __slots__ = ("path", "index", "payload", "parsed", "serialized", "eeg", "ecg", "n_times", "placed")

    def __init__(self, raw: bytes, path: str, index: int):
        self.path, self.index, self.placed, self.serialized = path, index, None, None
        split = _split_samples(raw)
        size = 0 if split is None else len(split[1])
        if split is None or not size or size % (2 * N_CHANS) or _EEG_KEY in split[0]:
            # Another layout, samples that do not fill whole time points (the shape says how
            # many were meant), or maybe a later eeg entry (which wins, as in protobuf): all
            # parsed by protobuf now.
            self.payload, self.eeg, self.ecg = None, None, None
            try:
                self.parsed = _Example.FromString(raw).features.feature
            except DecodeError as err:
                raise self.error(_parse_failure(raw, err)) from None
            self.n_times = self._shape()
            return
        self.payload, self.eeg, self.ecg = split
        self.parsed, self.n_times = None, size // (2 * N_CHANS)
        if self.ecg is not None and _ECG_KEY in self.payload and "ecg" in self.features:
            self.ecg = None  # a later ecg entry wins, as in protobuf

    @property
    def features(self) -> Any:
        """The record's features but the samples taken in place (protobuf's map of Feature)."""
        if self.parsed is None:
            try:
                self.parsed = _Features.FromString(self.payload).feature
            except DecodeError as err:  # the same bytes as an Example, for the failure's detail
                raise self.error(_parse_failure(len_field(1, self.payload), err)) from None
            shape = self._shape()
            if shape != self.n_times:
                size = 2 * N_CHANS * shape
                raise self.error(f"feature 'eeg': expected {size} bytes of float16 for shape "
                                 f"[{N_CHANS}, {shape}]; got {2 * N_CHANS * self.n_times}")
        return self.parsed

    def feature_bytes(self) -> Mapping[str, bytes] | None:
        """The record's features but the samples, each a serialized Feature (for
        ``training.field_columns``); None where the record was parsed whole or does not parse."""
        if self.serialized is None and self.payload is not None:
            try:
                self.serialized = _RawFeatures.FromString(self.payload).feature
            except DecodeError:  # self.features names the problem
                return None
        return self.serialized

    def _shape(self) -> int:
        """n_times from the parsed ``shape`` feature, which must be ``[N_CHANS, n_times > 0]``."""
        shape = self.parsed.get("shape")
        shape = shape.int64_list.value if shape is not None else ()
        if len(shape) != 2 or shape[0] != N_CHANS or shape[1] <= 0:
            shape = list(self.values("shape"))  # the kind checked for the message
            raise self.error(f"feature 'shape': expected [{N_CHANS}, n_times > 0]; got {shape}")
        return shape[1]

    def error(self, message: str) -> SchemaError:
        return SchemaError(f"{self.path}: record {self.index}: {message}")

    def values(self, name: str) -> Sequence[Any]:
        """The values of feature ``name`` (empty when absent); a list of another kind is an error."""
        feature = self.features.get(name)
        if feature is None:
            return ()
        values = _VALUES[name](feature)
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
        float16 arrays. (``_collate`` reads the same fields for a whole batch at once.)"""
        fields = {name: self.bytes(name) for name in _TEXT_FIELDS}
        eeg, ecg = self.samples("eeg"), self.samples("ecg")
        fields["eeg"] = np.frombuffer(eeg, dtype="<f2").reshape(N_CHANS, self.n_times)
        fields["ecg"] = None if ecg is None else np.frombuffer(ecg, dtype="<f2")
        fields["channel_mask"] = np.array(self.channel_mask(), np.int64)
        fields["votes"] = self.floats("votes")
        for name in _SCALAR_FIELDS:
            fields[name] = self.scalar(name)
        return fields

    def samples(self, name: str) -> bytes | memoryview | None:
        """The float16 bytes of ``eeg`` or ``ecg`` (None: no ECG), their length checked. Not for a
        placed window: its samples are in the batch (``placed``)."""
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


# ------------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------------


def _names(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{name}: expected a list of strings; got {value!r}")
    return tuple(value)


@dataclasses.dataclass(frozen=True)
class RecordFilter:
    """Which windows an epoch contains; defaults keep everything.

    sites / exclude_sites: ``site_id`` pseudonyms (the site folders) to keep / drop; leave-one-
        site-out evaluation uses one of each.
    subjects / exclude_subjects: ``subject_id`` pseudonyms to keep / drop (subject-grouped
        train/validation splits in fine-tuning).
    tasks: label spaces to keep, e.g. ``("hms6",)``; ``""`` is the task of unlabeled windows.
    min_votes: keep windows with at least this many expert votes in total (fine-tuning's second
        stage trains on the windows many experts agreed on).
    max_artifact_score: drop windows scored more artifactual than this.
    min_samples: drop windows shorter than this; a model's loaders drop those shorter than its
        patch, which it cannot read (a 0.3 s event window of a labels.csv, say).
    exclude_corpus_splits: drop windows of these corpus splits (``corpus_split``: ``train``,
        ``dev``, ``eval``); pretraining leaves a benchmark's ``eval`` recordings out this way.
    """

    sites: tuple[str, ...] = ()
    exclude_sites: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    min_votes: float = 0.0
    max_artifact_score: float = 1.0
    subjects: tuple[str, ...] = ()
    exclude_subjects: tuple[str, ...] = ()
    min_samples: int = 0
    exclude_corpus_splits: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("sites", "exclude_sites", "tasks", "subjects", "exclude_subjects", "exclude_corpus_splits"):
            object.__setattr__(self, name, _names(f"RecordFilter.{name}", getattr(self, name)))
        for split in self.exclude_corpus_splits:
            check_option("RecordFilter.exclude_corpus_splits", split, CORPUS_SPLITS[1:])
        check_range("RecordFilter.min_votes", self.min_votes, 0.0)
        check_range("RecordFilter.max_artifact_score", self.max_artifact_score, 0.0, 1.0)
        check_int("RecordFilter.min_samples", self.min_samples, 0)

    def accepts(self, window: _Window) -> bool:
        if window.n_times < self.min_samples:
            return False
        if self.sites or self.exclude_sites:
            site = window.text("site_id")
            if (self.sites and site not in self.sites) or site in self.exclude_sites:
                return False
        if self.tasks and window.text("task") not in self.tasks:
            return False
        if self.subjects or self.exclude_subjects:
            subject = window.text("subject_id")
            if (self.subjects and subject not in self.subjects) or subject in self.exclude_subjects:
                return False
        if self.min_votes > 0 and float(window.floats("votes").sum()) < self.min_votes:
            return False
        if self.exclude_corpus_splits and window.text("corpus_split") in self.exclude_corpus_splits:
            return False
        return self.max_artifact_score >= 1.0 or window.scalar("artifact_score") <= self.max_artifact_score


@dataclasses.dataclass(frozen=True)
class LoaderConfig:
    """How windows become batches. Give exactly one of ``batch_size`` and ``token_budget``.

    batch_size: windows per batch (windows of one length; see below).
    token_budget: dynamic batches of ``max(1, min(max_batch_size, token_budget // tokens))``
        windows, where a window of ``n_times`` samples has ``ceil(n_times / patch_size)`` tokens
        (``patch_size=1`` counts samples; the model's patch size counts patches). Windows are
        bucketed by exact length (a batch is one tensor), so uniform lengths give a fixed size.
    drop_last: drop each epoch's incomplete batch per length bucket.
    num_workers / prefetch_factor: DataLoader worker processes and the batches each keeps ready.
        ``"auto"``: see :func:`auto_num_workers` (resolved when the loader is built).
    pin_memory: page-locked batches for fast host-to-GPU copies; None means "if CUDA is there".
    shuffle: shuffle files per epoch and windows over ``ceil(shuffle_buffer / batch size)`` open
        batches per window length (see ``_ShardStream``); memory per worker: about
        ``shuffle_buffer`` windows' samples (~0.5 MB each for 50 s). Off gives the file order.
    full_shuffle_mb: where the loader knows how many windows each shard reads an epoch
        (``EEGLoader(windows_per_file=...)``, as fine-tuning passes) and a shard's windows fit in
        this many MiB, the shuffle buffer grows to hold them: every epoch is then a uniform
        shuffle, whatever order the files keep the windows in. 0 turns this off.
    seed: seeds file order, shuffle and augmentation together with the epoch.
    verify_crc: check TFRecord CRCs (detects corrupt files; costs about half the read time).
    eeg_dtype: ``"float32"``, or ``"float16"`` (the stored precision, exact) to halve the bytes
        that workers hand over, that get pinned and that cross to the GPU; the model casts
        ``eeg``/``ecg`` to its own dtype on the device (``prepare_inputs``).
    """

    batch_size: int | None = 32
    token_budget: int | None = None
    max_batch_size: int = 256
    patch_size: int = 1
    drop_last: bool = False
    num_workers: int | str = 2
    prefetch_factor: int = 4
    pin_memory: bool | None = None
    shuffle: bool = True
    shuffle_buffer: int = 256
    full_shuffle_mb: float = 1024.0
    seed: int = 0
    verify_crc: bool = True
    eeg_dtype: str = "float32"
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    filters: RecordFilter = dataclasses.field(default_factory=RecordFilter)

    def __post_init__(self) -> None:
        if (self.batch_size is None) == (self.token_budget is None):
            raise ConfigError("LoaderConfig.batch_size, LoaderConfig.token_budget: expected exactly one "
                              f"of them; got batch_size={self.batch_size!r}, token_budget={self.token_budget!r}")
        check_int("LoaderConfig.batch_size", self.batch_size, 1, optional=True)
        check_int("LoaderConfig.token_budget", self.token_budget, 1, optional=True)
        check_int("LoaderConfig.max_batch_size", self.max_batch_size, 1)
        check_int("LoaderConfig.patch_size", self.patch_size, 1)
        workers = self.num_workers
        if workers != AUTO and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0):
            raise ConfigError(f"LoaderConfig.num_workers: expected an integer >= 0 or {AUTO!r}; got {workers!r}")
        check_int("LoaderConfig.prefetch_factor", self.prefetch_factor, 1)
        check_int("LoaderConfig.shuffle_buffer", self.shuffle_buffer, 0)
        if isinstance(self.full_shuffle_mb, bool) or not isinstance(self.full_shuffle_mb, (int, float)) \
                or not 0 <= self.full_shuffle_mb < math.inf:
            raise ConfigError(f"LoaderConfig.full_shuffle_mb: expected a number of MiB >= 0; got {self.full_shuffle_mb!r}")
        check_int("LoaderConfig.seed", self.seed, 0)
        for name in ("drop_last", "shuffle", "verify_crc"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"LoaderConfig.{name}: expected True or False; got {getattr(self, name)!r}")
        check_option("LoaderConfig.eeg_dtype", self.eeg_dtype, EEG_DTYPES)
        if self.pin_memory not in (None, True, False):
            raise ConfigError(f"LoaderConfig.pin_memory: expected True, False or None; got {self.pin_memory!r}")
        for name, kind in (("augment", AugmentConfig), ("filters", RecordFilter)):
            if not isinstance(getattr(self, name), kind):
                raise ConfigError(f"LoaderConfig.{name}: expected a {kind.__name__}; got {getattr(self, name)!r}")

    def batch_size_for(self, n_times: int) -> int:
        """Windows per batch for windows of ``n_times`` samples."""
        if self.batch_size is not None:
            return self.batch_size
        tokens = -(-n_times // self.patch_size)
        return max(1, min(self.max_batch_size, self.token_budget // tokens))


def pretrain_config(**overrides: Any) -> LoaderConfig:
    """Self-supervised pretraining: every window, token-budget batches of 1 s patches, augmented."""
    return dataclasses.replace(LoaderConfig(batch_size=None, token_budget=32 * 50, patch_size=256,
                                            augment=pretrain_augment()), **overrides)


def finetune_config(min_votes: float = 0.0, **overrides: Any) -> LoaderConfig:
    """Fine-tuning on HMS expert votes; raise ``min_votes`` for the second stage."""
    filters = RecordFilter(tasks=("hms6",), min_votes=max(min_votes, 1.0))
    return dataclasses.replace(LoaderConfig(batch_size=32, augment=finetune_augment(), filters=filters),
                               **overrides)


def eval_config(**overrides: Any) -> LoaderConfig:
    """Evaluation: file order, no shuffle, no augmentation (use with ``infinite=False``)."""
    return dataclasses.replace(LoaderConfig(batch_size=64, shuffle=False), **overrides)


@dataclasses.dataclass(frozen=True)
class Machine:
    """What ``num_workers="auto"`` sizes the loader by (``Machine.here()`` reads it).

    cpus: the CPUs this process may run on (its affinity mask); total_cpus: the machine's, or
    the container's CPU quota where that is lower (a Kubernetes CPU limit leaves the affinity
    mask at every CPU of the node). local_ranks: training processes on this machine (torchrun's
    ``LOCAL_WORLD_SIZE``, Horovod's/Open MPI's local size). memory: bytes available (None:
    unknown). cuda: a GPU trains.
    """

    cpus: int
    total_cpus: int
    local_ranks: int = 1
    memory: int | None = None
    cuda: bool = False

    @classmethod
    def here(cls) -> Machine:
        total = min(os.cpu_count() or 1, cgroup_cpu_limit() or 1 << 30)
        cpus = min(total, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else total)
        local = 1
        for name in ("LOCAL_WORLD_SIZE", "HOROVOD_LOCAL_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE"):
            if os.environ.get(name, "").isdigit() and int(os.environ[name]) > 0:
                local = int(os.environ[name])
                break
        return cls(cpus, total, local, _available_memory(), torch.cuda.is_available())


def cgroup_cpu_limit(root: str = "/sys/fs/cgroup") -> int | None:
    """The CPUs a container's CFS quota allows (rounded up), from cgroup v2's ``cpu.max`` or v1's
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``; None without a quota."""
    def read(*parts: str) -> str | None:
        try:
            with open(os.path.join(root, *parts)) as fileobj:
                return fileobj.read().strip()
        except OSError:
            return None

    limit = read("cpu.max")  # v2: "<quota> <period>" or "max <period>"
    quota, period = limit.split()[:2] if limit and len(limit.split()) >= 2 else (None, None)
    if quota is None:
        for folder in ("cpu", "cpu,cpuacct"):
            quota, period = read(folder, "cpu.cfs_quota_us"), read(folder, "cpu.cfs_period_us")
            if quota is not None and period is not None:
                break
    try:
        quota_us, period_us = int(quota), int(period)
    except (TypeError, ValueError):  # "max", -1 or nothing: no quota
        return None
    return max(1, math.ceil(quota_us / period_us)) if quota_us > 0 and period_us > 0 else None


def _available_memory() -> int | None:
    """``MemAvailable`` from /proc/meminfo, in bytes (None where there is none)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def auto_num_workers(config: LoaderConfig, record_bytes: int, machine: Machine,
                     corpus_windows: int | None = None, world_size: int = 1) -> tuple[int, str]:
    """The workers ``num_workers="auto"`` runs with, and why.

    On a GPU every worker but one CPU of this rank's share of the machine: a GPU step consumes
    windows far faster than a worker (about 0.1 ms of CPU per window) makes them. The share is
    the affinity mask where the launcher bound the rank to CPUs (mpirun), else the machine's
    CPUs over the local ranks (torchrun). Capped at ``AUTO_MAX_WORKERS``, and so that the open
    batches of the shuffle and the batches in flight of all workers of all local ranks
    (``record_bytes`` a window) take at most half the available memory. Training on the CPU gets one worker: the
    trainer needs the cores, and one worker overlaps reading with compute at many times the
    rate a CPU step consumes.

    A small corpus (``corpus_windows``, over ``world_size`` ranks) caps the workers further, so
    that each worker's epoch holds at least ``AUTO_MIN_BATCHES`` batches: every shard ends its
    epoch with a partial batch, and with more workers than that, a corpus of a few hundred
    windows (216 over 15 workers of an H100 machine) gave batches of about 14 windows where 64
    were configured.
    """
    if not machine.cuda:
        return 1, "CPU training: one worker overlaps reading with compute"
    bound = machine.cpus < machine.total_cpus
    share = machine.cpus if bound else machine.total_cpus // max(1, machine.local_ranks)
    workers, why = share - 1, (f"{machine.cpus} CPUs bound to this rank, less one for it" if bound else
                               f"{machine.total_cpus} CPUs / {machine.local_ranks} local rank(s), less one each")
    if workers > AUTO_MAX_WORKERS:
        workers, why = AUTO_MAX_WORKERS, f"{why}, capped at {AUTO_MAX_WORKERS}"
    batch = config.batch_size or config.max_batch_size
    open_batches = -(-config.shuffle_buffer // batch) * batch if config.shuffle else batch
    held = (open_batches + (config.prefetch_factor + 1) * batch) * max(1, record_bytes)
    if machine.memory is not None:
        fits = machine.memory // 2 // max(1, machine.local_ranks) // held
        if fits < workers:
            workers, why = fits, (f"{why}; memory: each worker holds about {held / 2**20:.0f} MiB and half of "
                                  f"{machine.memory / 2**30:.1f} GiB available is shared by {machine.local_ranks} rank(s)")
    if corpus_windows is not None:
        enough = corpus_windows // (max(1, world_size) * batch * AUTO_MIN_BATCHES)
        if enough < workers:
            workers, why = enough, (f"{why}; corpus: about {corpus_windows} windows over {world_size} rank(s) give "
                                    f"each worker at least {AUTO_MIN_BATCHES} batches of {batch} an epoch")
    return max(1, workers), why


def _estimated_windows(shards: Sequence[tuple[str, int | None]], record_bytes: int) -> int | None:
    """Windows in the files, from their sizes over the first record's. EEG samples barely compress
    and the framing adds 16 bytes a record, so it is close enough to size the workers: 223 for 216
    ten-second windows in 18 files, 5 for 6 fifty-second ones. None where a size is unknown."""
    if record_bytes <= 0 or any(size is None for _, size in shards):
        return None
    return sum(size for _, size in shards) // record_bytes


def _first_record_bytes(path: str) -> int:
    """The size of the first record of ``path`` (the loader's unit of memory), 0 if it has none."""
    with _source(path) as source:
        return next((len(raw) for raw in read_records(source, "SNAPPY")), 0)


def scan_windows(data_dir: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                 filters: RecordFilter | None = None, *, verify_crc: bool = True) -> list[dict[str, Any]]:
    """Metadata of every window that passes ``filters``, in file order, without decoding samples:
    ``site_id``, ``subject_id``, ``task`` (str), ``label`` (int), ``votes`` (float32 array,
    empty without votes), ``n_times`` (samples), ``corpus_split`` (str) and the ``path`` of its
    file. One pass over the files (fine-tuning plans its splits with it)."""
    filters = RecordFilter() if filters is None else filters
    found = []
    for path in list_files(data_dir, sites=filters.sites, exclude_sites=filters.exclude_sites):
        with _source(path) as source:
            for index, raw in enumerate(read_records(source, "SNAPPY", verify_crc)):
                window = _Window(raw, path, index)
                if filters.accepts(window):
                    found.append({"site_id": window.text("site_id"), "subject_id": window.text("subject_id"),
                                  "task": window.text("task"), "label": window.scalar("label"),
                                  "votes": window.floats("votes"), "n_times": window.n_times, "path": path,
                                  "corpus_split": window.text("corpus_split")})
    return found


# ------------------------------------------------------------------------------------------------
# Sharding and the per-shard batch stream
# ------------------------------------------------------------------------------------------------


def shard_files(n_files: int, n_shards: int, shard: int, every_file: bool = False) -> list[tuple[int, int, int]]:
    """``(file position, stride, offset)`` for each file ``shard`` reads: it keeps the records
    ``r`` with ``r % stride == offset`` of the file at that position (see the module docstring).
    ``every_file``: each shard reads every file and keeps its ``1 / n_shards`` of each."""
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard: expected 0 <= shard < {n_shards}; got {shard}")
    if every_file:
        return [(j, n_shards, shard) for j in range(n_files)]
    m = min(n_files, n_shards)
    if m == 0:
        return []
    readers = [s for s in range(n_shards) if s % m == shard % m]
    stride, offset = len(readers), readers.index(shard)
    return [(j, stride, offset) for j in range(n_files) if j % m == shard % m]


def shard_loads(counts: Sequence[int], n_shards: int, every_file: bool = False) -> list[float]:
    """The windows each shard gets (about: shared files split evenly) when file ``j`` holds
    ``counts[j]`` of the windows wanted."""
    return [sum(counts[j] / stride for j, stride, _ in shard_files(len(counts), n_shards, shard, every_file))
            for shard in range(n_shards)]


def _seed_sequence(seed: int, epoch: int, purpose: int, *more: int) -> np.random.SeedSequence:
    """Independent streams per purpose (0 files, 1 shuffle, 2 augmentation)."""
    return np.random.SeedSequence([seed, epoch, purpose, *more])


def _flag_last(batches: Iterable[Any]) -> Iterator[tuple[Any, bool]]:
    """Pair each batch with "is the epoch's last", so a resume never replays a finished epoch."""
    iterator = iter(batches)
    previous = next(iterator, None)
    for batch in iterator:
        yield previous, False
        previous = batch
    if previous is not None:
        yield previous, True


def _specs(batch_size: int, n_times: int, dtype: torch.dtype, ecg: bool = True) -> Specs:
    specs = {"eeg": (dtype, (batch_size, N_CHANS, n_times))}
    if ecg:
        specs["ecg"] = (dtype, (batch_size, n_times))
    return specs


class _Storage:
    """Where a shard builds its batches' ``eeg``/``ecg``: segments of the worker's hand-off
    (sent in place), else plain tensors, which a worker reuses once a batch was copied out of
    them (a reused tensor's pages are mapped and cached; a new one faults every page in)."""

    def __init__(self, handoff: Handoff | None = None, reuse: bool = False):
        self.handoff, self.reuse = handoff, reuse
        self._shared: set[int] = set()  # ids of the eeg tensors that lie in hand-off segments
        self._free: dict[tuple, list[dict[str, torch.Tensor]]] = {}

    def acquire(self, specs: Specs) -> dict[str, torch.Tensor]:
        if self.handoff is not None:
            tensors = self.handoff.buffers(specs)
            if tensors is not None:
                self._shared.add(id(tensors["eeg"]))
                return tensors
        free = self._free.get(_key(specs))
        if free:
            return free.pop()
        return {name: torch.empty(shape, dtype=dtype) for name, (dtype, shape) in specs.items()}

    def release(self, tensors: dict[str, torch.Tensor]) -> None:
        """``tensors`` are no longer needed here: sent (a segment), copied out, or merged away."""
        if id(tensors["eeg"]) in self._shared:
            self._shared.discard(id(tensors["eeg"]))
            self.handoff.discard(tensors)  # a no-op where the segment was sent
        elif self.reuse:
            free = self._free.setdefault(_key({k: (t.dtype, tuple(t.shape)) for k, t in tensors.items()}), [])
            if len(free) < 4 and sum(map(len, self._free.values())) < 64:
                free.append(tensors)


def _key(specs: Specs) -> tuple:
    return tuple(sorted((name, str(dtype), shape) for name, (dtype, shape) in specs.items()))


_NAN16 = np.full(1, np.nan, dtype="<f2").tobytes()


class _Rows:
    """Row-by-row writes of float16 samples into a batch tensor (float16 or float32): raw bytes
    are copied as bytes, into the tensor itself or, for float32, into a one-row float16 stage
    that is then converted; no tensor is made per row."""

    __slots__ = ("tensor", "stage", "bytes", "size", "nan")

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor
        half = tensor if tensor.dtype == torch.float16 else torch.empty(tuple(tensor.shape[1:]), dtype=torch.float16)
        self.stage = None if half is tensor else half
        self.bytes = memoryview(half.numpy()).cast("B")
        self.size = 2 * math.prod(tensor.shape[1:])  # bytes per row
        self.nan = _NAN16 * (self.size // 2)

    def put(self, row: int, signal: bytes | memoryview | torch.Tensor | None) -> None:
        """Row ``row`` from raw float16 bytes, a tensor row, or None (all NaN)."""
        if isinstance(signal, torch.Tensor):
            self.tensor[row].copy_(signal)
            return
        signal = self.nan if signal is None else signal
        if self.stage is None:
            self.bytes[row * self.size:(row + 1) * self.size] = signal
        else:
            self.bytes[:] = signal
            self.tensor[row].copy_(self.stage)


def _stack(signals: Sequence[bytes | memoryview | None], out: torch.Tensor) -> torch.Tensor:
    """Stack float16 signals (raw bytes; None: an all-NaN row) into ``out`` (float32 or float16).

    float16 rows are plain byte copies. Single-threaded (DataLoader workers), each float32 row
    converts straight into the batch. With more intra-op threads, windows are gathered as
    float16 and converted in one call: torch's conversion is a parallel region, and entering one
    per window costs far more than the copy when the training process's threads compete for
    the cores.
    """
    gather = out.dtype != torch.float16 and torch.get_num_threads() > 1
    stage = torch.empty(out.shape, dtype=torch.float16) if gather else out
    rows = _Rows(stage)
    for i, signal in enumerate(signals):
        rows.put(i, signal)
    if stage is not out:
        out.copy_(stage)
    return out


def _collate(windows: Sequence[_Window], dtype: torch.dtype = torch.float32,
             buffers: Callable[[Specs], dict[str, torch.Tensor] | None] | None = None) -> dict[str, Any]:
    """Decode and stack equal-length windows into a batch (the module docstring's table).

    ``buffers`` gives the tensors to build ``eeg``/``ecg`` in, given their dtypes and shapes;
    None, or a None answer, means new tensors.
    """
    ecg = [w.samples("ecg") for w in windows]
    specs = _specs(len(windows), windows[0].n_times, dtype, any(signal is not None for signal in ecg))
    out = buffers(specs) if buffers is not None else None
    if out is None:
        out = {name: torch.empty(shape, dtype=kind) for name, (kind, shape) in specs.items()}
    _stack([w.samples("eeg") for w in windows], out["eeg"])
    if "ecg" in specs:
        _stack(ecg, out["ecg"])
    return _assemble(windows, out)


def _assemble(windows: Sequence[_Window], signals: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The batch of ``windows`` around their ``signals`` (``eeg`` and, if any has ECG, ``ecg``)."""
    columns = _Columns(windows)
    # numpy, not torch: on arrays this small each torch call costs several times the arithmetic
    votes = columns.votes()
    n_votes = votes.sum(1)
    has_votes = n_votes > 0
    targets = np.zeros_like(votes)
    np.divide(votes, n_votes[:, None], out=targets, where=has_votes[:, None])
    sexes = columns.texts("sex")
    sex = [_SEX.get(value) for value in sexes]
    batch: dict[str, Any] = {
        "eeg": signals["eeg"],
        "channel_mask": torch.from_numpy(columns.channel_mask()),
        "age": torch.from_numpy(columns.floats("age")),
        "sex": encode_sex(sexes) if None in sex else torch.from_numpy(np.array(sex, np.float32)),
        "votes": torch.from_numpy(votes),
        "targets": torch.from_numpy(targets),
        "has_votes": torch.from_numpy(has_votes),
        "n_votes": torch.from_numpy(n_votes),
        "label": torch.from_numpy(columns.ints("label")),
        "artifact_score": torch.from_numpy(columns.floats("artifact_score")),
        "window_start": torch.from_numpy(columns.ints("window_start_index")),
    }
    if "ecg" in signals:
        batch["ecg"] = signals["ecg"]
    for name in ("site_id", "subject_id", "recording_id", "task"):
        batch[name] = [value.decode("utf-8") for value in columns.texts(name)]
    return batch


class _Columns:
    """A batch's small fields, a field at a time: decoded for all windows at once from their
    serialized Features (``training.field_columns``) where each has the pipeline's encoding of
    that field, else through protobuf window by window (defaults, and errors that name the record)."""

    def __init__(self, windows: Sequence[_Window]):
        self.windows = windows
        maps = [window.feature_bytes() for window in windows]
        # n_times came from the samples' length; a shape that disagrees is an error, which the
        # protobuf path raises
        shape = encode_list("int64", [N_CHANS, windows[0].n_times])
        self.maps = None if None in maps or any(m.get("shape") != shape for m in maps) else maps

    def _decoded(self, name: str, decode: Callable[..., Any], *args: Any) -> Any:
        return None if self.maps is None else decode([m.get(name) for m in self.maps], *args)

    def texts(self, name: str) -> list[bytes]:
        found = self._decoded(name, field_columns.texts)
        return _firsts(self.windows, name) if found is None else found

    def floats(self, name: str) -> np.ndarray:
        found = self._decoded(name, field_columns.float_scalars)
        return np.array(_firsts(self.windows, name), np.float32) if found is None else found

    def ints(self, name: str) -> np.ndarray:
        found = self._decoded(name, field_columns.int_scalars)
        return np.array(_firsts(self.windows, name), np.int64) if found is None else found

    def votes(self) -> np.ndarray:
        found = self._decoded("votes", field_columns.float_lists, N_CLASSES)
        if found is None:
            none = (0.0,) * N_CLASSES
            found = np.array([v if v else none for v in _lists(self.windows, "votes", (0, N_CLASSES))], np.float32)
        return found

    def channel_mask(self) -> np.ndarray:
        found = self._decoded("channel_mask", field_columns.small_int_lists, N_CHANS)
        if found is None:
            found = np.fromiter(itertools.chain.from_iterable(_lists(self.windows, "channel_mask", (N_CHANS,))),
                                np.float32, len(self.windows) * N_CHANS).reshape(len(self.windows), N_CHANS)
        return found


_SEX = {**{text.encode(): code for text, code in SEX_CODES.items()}, b"": math.nan}  # as the pipeline writes sex


def _lists(windows: Sequence[_Window], name: str, lengths: tuple[int, ...]) -> list[Sequence[Any]]:
    """Each window's values of list feature ``name`` (``_Window.values``), where every count is one
    of ``lengths``; otherwise the window's own check (``_Window.channel_mask``, ``votes``) raises."""
    found = [window.values(name) for window in windows]
    for window, values in zip(windows, found):
        if len(values) not in lengths:
            getattr(window, name)()
    return found


def _firsts(windows: Sequence[_Window], name: str) -> list[Any]:
    """Each window's first value of scalar feature ``name``, as ``_Window.scalar``/``bytes`` give
    it; one getter call per window where every window has the value (the batch's usual case)."""
    getter = _VALUES[name]
    try:
        found = [getter(w.features.get(name))[0] for w in windows]
    except (AttributeError, IndexError):  # absent or empty somewhere: defaults, kinds checked
        found = None
    if found is None:
        read = _Window.bytes if FEATURES[name].kind == "bytes" else _Window.scalar
        found = [read(w, name) for w in windows]
    return found


class _Open:
    """A batch being filled: its windows in arrival order, and the tensors (once there are any)
    whose rows already hold the samples of the windows placed so far."""

    __slots__ = ("windows", "tensors", "rows", "ecg")

    def __init__(self, windows: list[_Window] | None = None):
        self.windows: list[_Window] = [] if windows is None else windows
        self.tensors: dict[str, torch.Tensor] | None = None
        self.rows: tuple[_Rows, _Rows] | None = None  # writers of the eeg and ecg rows
        self.ecg = False  # some window has ECG

    def allocate(self, size: int, n_times: int, dtype: torch.dtype, storage: _Storage) -> dict[str, torch.Tensor]:
        self.tensors = storage.acquire(_specs(size, n_times, dtype))
        self.rows = _Rows(self.tensors["eeg"]), _Rows(self.tensors["ecg"])
        return self.tensors

    def place(self, window: _Window, row: int, size: int, dtype: torch.dtype, storage: _Storage) -> None:
        """Copy ``window``'s samples into row ``row`` now, while its record is in the cache, and
        let the record go; the window remembers where its samples are."""
        if self.tensors is None:
            self.allocate(size, window.n_times, dtype, storage)
        ecg = window.samples("ecg")
        self.rows[0].put(row, window.samples("eeg"))
        self.rows[1].put(row, ecg)
        self.ecg |= ecg is not None
        window.eeg = window.ecg = None
        window.placed = self.tensors, row, ecg is not None


_PLAN_MAX_WINDOWS = 1 << 16  # a larger epoch waits for its first shuffle_buffer windows only (see _plan)


class _Arrival:
    """A stand-in for a window in ``_ShardStream._plan``: its number in the arrival order."""

    __slots__ = ("index", "n_times", "placed")

    def __init__(self, index: int, n_times: int):
        self.index, self.n_times, self.placed = index, n_times, None


class _ShardStream:
    """The deterministic batch stream of one shard: everything but the DataLoader plumbing.

    Shuffling scatters windows over open batches. Each window that passes the filters joins one
    of ``k = ceil(shuffle_buffer / batch size)`` open batches of its length, chosen by a seeded
    draw; a full batch is emitted and a new one opened in its place. A batch thus gathers
    windows from about the last ``k`` batch sizes of records, as a shuffle buffer of
    ``shuffle_buffer`` windows would mix them; the first ``shuffle_buffer`` windows of the epoch
    arrive in random order (``_mixed``), so an epoch no larger than that is a uniform shuffle.
    At the end of the epoch the fullest open batch is topped up from the emptiest until none is
    left (only the last may be short).

    Once ``shuffle_buffer`` windows have arrived, each window's samples are copied into its row
    as it arrives, while its record is still in the CPU cache, and the record is let go of. A
    shuffle buffer copies every sample from a record that went cold while it waited, which on
    data larger than the cache costs a trip to memory per window. The first ``shuffle_buffer``
    windows of an epoch are copied when their batch is emitted: an epoch that small ends with
    all its windows in open batches, which the end rearranges. (Measured with 2 workers, float16
    batches, interleaved runs: 1.09-1.115x the windows/s of a shuffle buffer on 4,320 windows of
    10 s; the same within noise on 216 windows, where a worker's epoch is smaller than the
    buffer; see the README.) An epoch whose windows the shard knows in advance (``_plan``) has
    every window copied on arrival, those first ones included.
    """

    def __init__(self, files: Sequence[str], config: LoaderConfig, shard: int, n_shards: int,
                 every_file: bool = False):
        self.files, self.config, self.shard, self.n_shards = list(files), config, shard, n_shards
        self.every_file = every_file
        self.dtype = EEG_DTYPES[config.eeg_dtype]
        # (path, stride, offset) -> the lengths of the windows kept from that share of the file,
        # in order, as (n_times, count) runs: learned on reading it through, for _plan
        self._lengths: dict[tuple[str, int, int], tuple[tuple[int, int], ...]] = {}
        self._epoch_shares: tuple[int, list[tuple[str, int, int]]] = (-1, [])

    def file_order(self, epoch: int) -> list[str]:
        if not self.config.shuffle:
            return self.files
        order = np.random.default_rng(_seed_sequence(self.config.seed, epoch, 0)).permutation(len(self.files))
        return [self.files[i] for i in order]

    def _shares(self, epoch: int) -> list[tuple[str, int, int]]:
        """``(path, stride, offset)`` of each file share the shard reads in ``epoch``, in order."""
        if self._epoch_shares[0] != epoch:  # asked twice an epoch (plan, read): a worker's epoch may be short
            files = self.file_order(epoch)
            self._epoch_shares = epoch, [(files[position], stride, offset) for position, stride, offset
                                         in shard_files(len(files), self.n_shards, self.shard, self.every_file)]
        return self._epoch_shares[1]

    def windows(self, epoch: int) -> Iterator[_Window]:
        keep = self.config.filters.accepts
        for path, stride, offset in self._shares(epoch):
            lengths: list[int] = []
            with _source(path) as source:
                try:
                    records = read_records(source, "SNAPPY", self.config.verify_crc, stride=stride, offset=offset)
                    for index, raw in zip(itertools.count(offset, stride), records):
                        window = _Window(raw, path, index)
                        if keep(window):
                            lengths.append(window.n_times)
                            yield window
                    self._lengths[path, stride, offset] = tuple(
                        (n_times, sum(1 for _ in run)) for n_times, run in itertools.groupby(lengths))
                except CorruptTFRecordError as err:
                    if err.path == path:
                        raise
                    # A remote file object may not know its name: put the path in the message.
                    raise CorruptTFRecordError(path, err.offset, err.reason, block_offset=err.block_offset) from None

    def open_batches(self, n_times: int) -> int:
        """How many batches of windows of ``n_times`` samples are filled at once."""
        config = self.config
        if not config.shuffle or config.shuffle_buffer <= 1:
            return 1
        return max(1, -(-config.shuffle_buffer // config.batch_size_for(n_times)))

    def batches(self, epoch: int, skip: int = 0, storage: _Storage | None = None
                ) -> Iterator[tuple[int, bool, dict[str, Any] | None]]:
        """``(index, last of the epoch, batch)`` for each batch of ``epoch``; the first ``skip``
        batches come as None, and no sample of theirs is copied (fast-forward on resume)."""
        storage = _Storage() if storage is None else storage
        for index, ((windows, filled), last) in enumerate(_flag_last(self._grouped(epoch, skip, storage))):
            if index < skip:
                yield index, last, None
                continue
            yield index, last, self.finish(windows, epoch, index, filled)
            storage.release(filled.tensors)  # sent or copied out by now

    def _grouped(self, epoch: int, skip: int, storage: _Storage, arrivals: Iterable[Any] | None = None
                 ) -> Iterator[tuple[list[_Window], _Open | None]]:
        """The epoch's batches as windows and, for batches from ``skip`` on, their filled tensors.
        ``arrivals``: stand-ins for the epoch's windows (``_Arrival``s), batched and never filled,
        which is how ``_plan`` learns where each window will go."""
        config, dtype = self.config, self.dtype
        # Copying each window as it arrives needs a row copy or a one-thread conversion; with
        # more threads a float32 batch converts in one call when it is complete (see _stack).
        eager = arrivals is None and (dtype == torch.float16 or torch.get_num_threads() == 1)
        if eager:
            plan = self._plan(epoch)
            if plan is not None:
                yield from self._placed(epoch, skip, storage, *plan)
                return
        rng = np.random.default_rng(_seed_sequence(config.seed, epoch, 1, self.shard))
        draws: list[float] = []
        groups: dict[int, list[_Open]] = {}
        emitted = 0
        # An epoch of fewer windows than the shuffle buffer ends with all of them in open batches,
        # which the end merges: nothing is placed before that many windows have arrived.
        defer = config.shuffle_buffer if config.shuffle else 0
        sizes: dict[int, int] = {}
        for arrived, window in enumerate(self._mixed(epoch, rng, arrivals)):
            group = groups.get(window.n_times)
            if group is None:
                group = groups[window.n_times] = [_Open() for _ in range(self.open_batches(window.n_times))]
                sizes[window.n_times] = config.batch_size_for(window.n_times)
            size = sizes[window.n_times]
            slot = 0
            if len(group) > 1:
                if not draws:  # one numpy call per 256 draws, not per window (~2 us each)
                    draws = rng.random(256).tolist()
                slot = int(draws.pop() * len(group))
            batch = group[slot]
            batch.windows.append(window)
            if eager and emitted >= skip and arrived >= defer:
                batch.place(window, len(batch.windows) - 1, size, dtype, storage)
            if len(batch.windows) == size:
                group[slot] = _Open()
                yield batch.windows, self._filled(batch, arrivals is None and emitted >= skip, storage)
                emitted += 1
        for n_times in sorted(groups):
            # The epoch's last batches: the fullest open batch is topped up from the emptiest,
            # so only the windows that move are copied again.
            size = config.batch_size_for(n_times)
            group = sorted((b for b in groups[n_times] if b.windows), key=lambda b: len(b.windows), reverse=True)
            drained = []
            while group:
                base = group.pop(0)
                while len(base.windows) < size and group:
                    donor = group[-1]
                    take = min(size - len(base.windows), len(donor.windows))
                    base.windows += donor.windows[len(donor.windows) - take:]
                    del donor.windows[len(donor.windows) - take:]
                    if not donor.windows:
                        drained.append(group.pop())
                if len(base.windows) < size and config.drop_last:
                    drained.append(base)
                    break
                yield base.windows, self._filled(base, arrivals is None and emitted >= skip, storage)
                emitted += 1
            for batch in drained + group:
                if batch.tensors is not None:
                    storage.release(batch.tensors)

    def _mixed(self, epoch: int, rng: np.random.Generator, arrivals: Iterable[Any] | None = None) -> Iterator[Any]:
        """The epoch's windows with the first ``shuffle_buffer`` of them in random order.

        Open batches alone mix only what has arrived: on data stored in label order (eegmat's
        output holds every rest window before every task window) the first batches would all be
        of one class, and an epoch ends on the other. Holding the first ``shuffle_buffer``
        windows back and releasing them permuted makes an epoch that fits in the buffer a
        uniform shuffle, and a larger one start from a uniform mix of its first part.
        """
        windows = iter(self.windows(epoch) if arrivals is None else arrivals)
        if self.config.shuffle and self.config.shuffle_buffer > 1:
            first = list(itertools.islice(windows, self.config.shuffle_buffer))
            yield from (first[i] for i in rng.permutation(len(first)).tolist())
            del first
        yield from windows

    def _plan(self, epoch: int) -> tuple[list[list[int]], list[int]] | None:
        """Where each of ``epoch``'s windows goes, where the shard has read every file share of
        the epoch before (and they hold at most ``_PLAN_MAX_WINDOWS`` windows): the batches in
        the order they are emitted, each as the arrival numbers of its windows in row order, and
        the windows' lengths in arrival order; else None.

        The plan is the stream's own algorithm run on stand-ins, so the batches are the ones
        reading without a plan gives. With it, every window is copied into its batch row as it
        arrives, while its record is in the CPU cache: the first ``shuffle_buffer`` windows of
        an epoch included (without a plan they wait for the permutation, and on an epoch no
        larger than the buffer every window waits), and no window is copied twice (the epoch's
        last batches are merged in the plan).
        """
        runs = [self._lengths.get(share) for share in self._shares(epoch)]
        if None in runs or sum(count for share in runs for _, count in share) > _PLAN_MAX_WINDOWS:
            return None
        lengths = [n_times for share in runs for n_times, count in share for _ in range(count)]
        arrivals = [_Arrival(index, n_times) for index, n_times in enumerate(lengths)]
        batches = [[arrival.index for arrival in windows]
                   for windows, _ in self._grouped(epoch, 0, _Storage(), arrivals)]
        return batches, lengths

    def _placed(self, epoch: int, skip: int, storage: _Storage, plan: list[list[int]], lengths: list[int]
                ) -> Iterator[tuple[list[_Window], _Open | None]]:
        """``_grouped``'s batches by ``plan`` (see ``_plan``): each window placed on arrival, each
        batch emitted once it and all before it are complete. Batches before ``skip`` are
        counted, not filled (their windows are dropped)."""
        batch_of, row_of = [-1] * len(lengths), [0] * len(lengths)  # -1: in no batch (drop_last)
        for number, members in enumerate(plan):
            for row, arrival in enumerate(members):
                batch_of[arrival], row_of[arrival] = number, row
        missing = [len(members) for members in plan]
        opened: list[_Open | None] = [None] * len(plan)
        emitted, arrived = 0, 0
        for arrived, window in enumerate(self.windows(epoch), 1):
            if arrived > len(lengths) or window.n_times != lengths[arrived - 1]:
                raise RuntimeError(f"{window.path}: record {window.index}: expected the windows an earlier pass "
                                   f"read from it ({len(lengths)} this epoch); window {arrived} differs (length "
                                   f"{window.n_times}): the file changed during training")
            number = batch_of[arrived - 1]
            if number < 0:
                continue
            if number >= skip:
                batch = opened[number]
                if batch is None:
                    batch = opened[number] = _Open([None] * len(plan[number]))
                row = row_of[arrived - 1]
                batch.windows[row] = window
                batch.place(window, row, self.config.batch_size_for(window.n_times), self.dtype, storage)
            missing[number] -= 1
            while emitted < len(plan) and not missing[emitted]:
                batch, opened[emitted] = opened[emitted], None
                yield ([], None) if batch is None else (batch.windows, batch)
                emitted += 1
        if arrived != len(lengths):
            raise RuntimeError(f"shard {self.shard}: epoch {epoch}: expected the {len(lengths)} windows of an earlier "
                               f"pass over its files; got {arrived}: a file changed during training")

    def _filled(self, batch: _Open, live: bool, storage: _Storage) -> _Open | None:
        """``batch`` with every window's samples in its tensors (None for a skipped batch).
        Windows placed elsewhere (an epoch's last batches), or not yet (fast-forward, or a
        float32 batch in a multi-threaded process), are copied in now."""
        if not live:
            return None
        windows = batch.windows
        tensors = batch.tensors
        if tensors is not None and all(w.placed is not None and w.placed[0] is tensors and w.placed[1] == row
                                       for row, w in enumerate(windows)):
            return batch
        ecgs = [w.samples("ecg") if w.placed is None else None for w in windows]
        batch.ecg = any(ecg is not None if w.placed is None else w.placed[2] for w, ecg in zip(windows, ecgs))
        if tensors is None:
            tensors = batch.allocate(len(windows), windows[0].n_times, self.dtype, storage)
        if all(w.placed is None for w in windows):
            _stack([w.samples("eeg") for w in windows], tensors["eeg"])
            _stack(ecgs, tensors["ecg"])
            return batch
        eeg_rows, ecg_rows = batch.rows
        for row, (window, ecg) in enumerate(zip(windows, ecgs)):
            if window.placed is None:
                eeg_rows.put(row, window.samples("eeg"))
                ecg_rows.put(row, ecg)
            elif window.placed[0] is not tensors or window.placed[1] != row:
                source, at, _ = window.placed
                eeg_rows.put(row, source["eeg"][at])
                ecg_rows.put(row, source["ecg"][at])
        return batch

    def finish(self, windows: list[_Window], epoch: int, index: int, batch: _Open) -> dict[str, Any]:
        """The batch dict of ``windows`` around the samples in ``batch``'s tensors, augmented
        when the config says so (by a generator seeded by epoch, shard and batch index)."""
        n = len(windows)  # an epoch's last batch may fill only the first rows
        signals = {name: tensor if tensor.shape[0] == n else tensor[:n] for name, tensor in batch.tensors.items()
                   if name == "eeg" or batch.ecg}
        out = _assemble(windows, signals)
        if self.config.augment.enabled:
            state = _seed_sequence(self.config.seed, epoch, 2, self.shard, index).generate_state(1, np.uint64)
            generator = torch.Generator().manual_seed(int(state[0]))
            out = augment_batch(out, self.config.augment, generator)
        return out


def _to_wire(batch: dict[str, Any], handoff: Handoff | None) -> dict[str, Any]:
    """A worker's batch for the trip to the main process: ``eeg``/``ecg`` in one shared-memory
    segment (``training.handoff``), small tensors as numpy arrays (a tensor would cross as a
    segment and a file descriptor of its own; a small array pickles in bytes)."""
    wire = {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in batch.items() if k not in SHARED_KEYS}
    shared = {k: batch[k] for k in SHARED_KEYS if k in batch}
    if handoff is not None:
        wire[_SHARED] = handoff.send(get_worker_info().id, shared)
    else:
        wire.update(copy_to_shared(shared))
    return wire


def _as_is(batch: Any) -> Any:
    """DataLoader's collate_fn: batches are made by the dataset (the default would turn the wire
    format's numpy arrays back into tensors in the worker)."""
    return batch


def _from_wire(batch: dict[str, Any]) -> dict[str, Any]:
    batch = resolve_shared(batch, _SHARED)
    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in batch.items()}


_HEAP_KEPT = False


def _keep_heap() -> None:
    """In a loader worker: keep freed memory in the heap (glibc only; elsewhere a no-op).

    A worker's records come and go in bulk (an epoch's last batches free many at once). glibc
    then gives the top of the heap back to the kernel, and the next epoch faults every page of
    it in again, which costs more than reading the records. Records of any size stay on the
    heap (below the largest mmap threshold), and the heap keeps up to 256 MiB it no longer uses.
    """
    global _HEAP_KEPT
    if _HEAP_KEPT:
        return
    _HEAP_KEPT = True
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD (glibc's maximum)
    except (OSError, AttributeError, TypeError) as err:  # no C library by that name, or no mallopt
        log.debug("loader worker: heap left to the C library's defaults (%s)", err)


def _open_segments(config: LoaderConfig) -> int:
    """Segments a worker may hold beyond the hand-off's pool: its open batches (see
    ``_ShardStream``) for two window lengths, and the batch held back to flag an epoch's last.
    More open batches than that (token budgets of long windows) are built in plain tensors."""
    if not config.shuffle or config.shuffle_buffer <= 1:
        return 3
    return min(64, 2 * -(-config.shuffle_buffer // (config.batch_size or config.max_batch_size)) + 1)


class _ShardDataset(IterableDataset):
    """What each DataLoader worker runs: its shard's batches from a start position, with positions.

    ``starts[w]`` is logical worker ``w``'s (epoch, batches already delivered in it); DataLoader
    slot ``k`` plays logical worker ``(k + first) % n_workers``. ``pass_epoch`` is None for the
    infinite stream, else the one epoch to run.
    """

    def __init__(self, files: Sequence[str], config: LoaderConfig, rank: int, world_size: int,
                 starts: Sequence[tuple[int, int]], first: int, pass_epoch: int | None,
                 handoff: Handoff | None = None, every_file: bool = False):
        self.files, self.config, self.rank, self.world_size = files, config, rank, world_size
        self.every_file = every_file
        self.starts, self.first, self.pass_epoch = list(starts), first, pass_epoch
        self.handoff = handoff

    def __iter__(self) -> Iterator[tuple[tuple[int, int, int, bool], dict[str, Any]]]:
        n_workers = len(self.starts)
        info = get_worker_info()
        worker = ((0 if info is None else info.id) + self.first) % n_workers
        shard = self.rank * n_workers + worker
        stream = _ShardStream(self.files, self.config, shard, self.world_size * n_workers, self.every_file)
        epoch, skip = self.starts[worker]
        if self.pass_epoch is not None:
            if epoch > self.pass_epoch:
                return
            epoch, skip = (epoch, skip) if epoch == self.pass_epoch else (self.pass_epoch, 0)
        epochs = itertools.count(epoch) if self.pass_epoch is None else [epoch]
        # In a worker, batches are built in the hand-off segments they are sent in.
        storage = _Storage(self.handoff, reuse=True) if info is not None else _Storage()
        if info is not None:
            _keep_heap()
        empty = 0
        for current in epochs:
            delivered = False
            try:
                for index, last, batch in stream.batches(current, skip if current == epoch else 0, storage):
                    delivered = True
                    if batch is not None:  # None: fast-forward, never decoded
                        yield (worker, current, index, last), batch if info is None else _to_wire(batch, self.handoff)
            except (CorruptTFRecordError, SchemaError) as err:
                if info is None:
                    raise
                # DataLoader would re-raise it in the main process as a RuntimeError holding the
                # worker's traceback; sent as a value, it is raised there as itself.
                yield _FAILED, err
                return
            empty = 0 if delivered else empty + 1
            if empty > max(2, len(self.files)):
                dropped = (f" and drop_last (an epoch's incomplete batch is dropped; batch size "
                           f"{self.config.batch_size or self.config.max_batch_size})") if self.config.drop_last else ""
                raise RuntimeError(
                    f"shard {shard} of {stream.n_shards} (rank {self.rank}, worker {worker}) got no windows "
                    f"in {empty} epochs in a row: too few windows after filters{dropped} for world_size "
                    f"{self.world_size} x {n_workers} workers ({len(self.files)} files)")


# ------------------------------------------------------------------------------------------------
# The loader
# ------------------------------------------------------------------------------------------------


def _distributed(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Explicit values, else torch.distributed's, else torchrun's RANK/WORLD_SIZE, else (0, 1)."""
    if rank is None or world_size is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            found = torch.distributed.get_rank(), torch.distributed.get_world_size()
        else:
            found = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        rank = found[0] if rank is None else rank
        world_size = found[1] if world_size is None else world_size
    check_int("world_size", world_size, 1)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank: expected an integer in [0, {world_size}); got {rank!r}")
    return rank, world_size


_BATCHING = ("batch_size", "token_budget", "max_batch_size", "patch_size", "drop_last", "shuffle", "shuffle_buffer")


def _batching(config: LoaderConfig) -> dict[str, Any]:
    """What decides which windows make up a shard's n-th batch, as a checkpoint keeps it (JSON types)."""
    return json.loads(json.dumps({**{name: getattr(config, name) for name in _BATCHING},
                                  "filters": dataclasses.asdict(config.filters)}))


def shard_name(path: str) -> str:
    """``<site>/<file>``: a shard's name wherever its data set lies."""
    return "/".join(path.replace("\\", "/").split("/")[-2:])


def file_key(files: Sequence[str]) -> Callable[[str], str]:
    """How the shards ``files`` are told apart in a run's records (fine-tuning's window counts
    per file): by :func:`shard_name`, so a resumed run may find its data at another path, unless
    two of them share one (two output folders of the same site, from runs with the same key):
    then by full path."""
    names = [shard_name(path) for path in files]
    return shard_name if len(set(names)) == len(names) else os.fspath


def _uneven(counts: list[int], n_shards: int, rank: int) -> bool:
    """Whether dealing files of ``counts`` windows to ``n_shards`` shards leaves one with none or
    with under half of another's windows (then every shard reads every file)."""
    loads = shard_loads(counts, n_shards)
    if min(loads) > 0 and min(loads) * 2 >= max(loads):
        return False
    if rank == 0:
        log.info("loader: dealing the %d files that hold the %d windows wanted to %d shards would give them "
                 "%d to %d windows each; every shard reads all %d files and keeps its share of each",
                 len(counts), sum(counts), n_shards, round(min(loads)), round(max(loads)), len(counts))
    return True


def _whole_epoch_shuffle(config: LoaderConfig, counts: Sequence[int], n_shards: int, every_file: bool,
                         sample_file: str, rank: int) -> LoaderConfig:
    """``config`` with a shuffle buffer that holds a shard's whole epoch, where it fits in
    ``config.full_shuffle_mb`` (``counts``: the wanted windows of each file)."""
    if not config.shuffle or config.full_shuffle_mb <= 0:
        return config
    if every_file:
        most = sum(-(-n // n_shards) for n in counts)
    elif len(counts) < n_shards:  # a file over at least n_shards // n_files shards, each keeping its share
        most = -(-max(counts) // (n_shards // len(counts)))
    else:  # whole files, dealt in a new order each epoch: at most the largest files a shard gets
        per_shard = -(-len(counts) // n_shards)
        most = sum(sorted(counts)[len(counts) - per_shard:])
    if most <= config.shuffle_buffer:
        return config
    mib = most * _first_record_bytes(sample_file) / 2**20
    if mib > config.full_shuffle_mb:
        return config
    if rank == 0:
        log.info("loader: shuffle buffer %d -> %d windows, a shard's whole epoch (%.0f MiB of at most "
                 "full_shuffle_mb=%g): each epoch is a uniform shuffle", config.shuffle_buffer, most, mib,
                 config.full_shuffle_mb)
    return dataclasses.replace(config, shuffle_buffer=most)


class EEGLoader:
    """Batches of pipeline windows for one DDP rank; iterate it, checkpoint it with ``state_dict``.

    ``infinite=True`` (training): one ``iter()`` runs forever, epoch after epoch.
    ``infinite=False`` (evaluation): each ``iter()`` runs the current epoch, then advances it; an
    ``iter()`` abandoned part-way leaves the position there, and the next one continues it.
    The position counts batches as they are handed out (not those prefetched), so
    ``state_dict()`` taken after a training step resumes with the next batch.
    ``rank`` / ``world_size`` default to torch.distributed's (or torchrun's environment).
    ``windows_per_file``: how many of the windows the filters keep each file holds, where the
    caller knows (fine-tuning's metadata pass): files without any are not read, and where dealing
    whole files to the shards would leave one with none or with under half of another's windows
    (a small labeled set in a few files), every shard reads every file and keeps its share of
    each (dearer reading, even shares).
    Horovod users pass ``hvd.rank()`` and ``hvd.size()``. ``num_workers="auto"`` is resolved here
    (``config.num_workers`` then holds the count) and, on ``load_state_dict``, yields to the
    checkpoint's count, so a run resumed on another machine type continues the same stream.
    """

    def __init__(self, data_dir: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                 config: LoaderConfig | None = None, *, rank: int | None = None,
                 world_size: int | None = None, infinite: bool = True,
                 windows_per_file: Mapping[str, int] | None = None):
        self.config = LoaderConfig() if config is None else config
        if not isinstance(self.config, LoaderConfig):
            raise TypeError(f"config: expected a LoaderConfig; got {type(self.config).__name__}")
        self.rank, self.world_size = _distributed(rank, world_size)
        filters = self.config.filters
        shards = list_shards(data_dir, sites=filters.sites, exclude_sites=filters.exclude_sites)
        self.files = [path for path, _ in shards]
        if not self.files:
            raise FileNotFoundError(f"data_dir: no non-empty TFRecord shards in {data_dir} for sites "
                                    f"{filters.sites or 'all'} (excluding {filters.exclude_sites or 'none'})")
        key = file_key(self.files)
        if windows_per_file is not None:
            windows_per_file = {key(path): n for path, n in windows_per_file.items()}
            wanted = [path for path in self.files if windows_per_file.get(key(path), 0) > 0]
            if not wanted:
                raise ValueError(f"windows_per_file: expected window counts for files of {data_dir} "
                                 f"({', '.join(self.files[:3])}, ...); got none above 0")
            shards = [(path, size) for path, size in shards if path in wanted]
            self.files = wanted
        self.infinite = infinite
        self.auto_workers = self.config.num_workers == AUTO
        if self.auto_workers:
            record_bytes = _first_record_bytes(self.files[0])
            workers, why = auto_num_workers(self.config, record_bytes, Machine.here(),
                                            _estimated_windows(shards, record_bytes), self.world_size)
            log.info("loader: num_workers auto -> %d (%s)", workers, why)
            self.config = dataclasses.replace(self.config, num_workers=workers)
        self.n_workers = max(1, self.config.num_workers)
        n_shards = self.world_size * self.n_workers
        self.every_file = windows_per_file is not None and _uneven(
            [windows_per_file[key(path)] for path in self.files], n_shards, self.rank)
        if windows_per_file is not None:
            self.config = _whole_epoch_shuffle(self.config, [windows_per_file[key(p)] for p in self.files],
                                               n_shards, self.every_file, self.files[0], self.rank)
        # Training loaders only: an evaluation pass over a held-out site's one or two files is
        # small, and the remedy (more shards) is for the training data.
        if len(self.files) < n_shards and self.rank == 0 and not self.every_file and infinite:
            log.warning(
                "loader: %d file(s) for %d shards (%d rank(s) x %d worker(s)): each file is read by up to %d "
                "shards, and each of them reads and decompresses all of it to keep its share of the records; "
                "write at least %d files (eegfm-preprocess --max_shard_mb or --num_shards) to read every "
                "record once", len(self.files), n_shards, self.world_size, self.n_workers,
                -(-n_shards // len(self.files)), n_shards)
        self.set_epoch(0)
        self.batches = 0  # handed out since the start of training

    @property
    def epoch(self) -> int:
        """The pass being run (finite), or the epoch every worker has at least reached (infinite)."""
        return self._epoch if not self.infinite else min(epoch for epoch, _ in self._positions)

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its beginning on the next ``iter()``."""
        check_int("epoch", epoch, 0)
        self._epoch = epoch
        self._positions = [(epoch, 0)] * self.n_workers
        self._next_worker = 0

    def _data_loader(self, handoff: Handoff | None) -> DataLoader:
        config = self.config
        dataset = _ShardDataset(self.files, config, self.rank, self.world_size, self._positions,
                                self._next_worker, None if self.infinite else self._epoch, handoff,
                                self.every_file)
        pin = torch.cuda.is_available() if config.pin_memory is None else config.pin_memory
        workers = config.num_workers
        return DataLoader(dataset, batch_size=None, collate_fn=_as_is, num_workers=workers, pin_memory=pin,
                          prefetch_factor=config.prefetch_factor if workers else None)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        handoff = None
        if self.config.num_workers and handoff_supported():
            handoff = Handoff(self.config.num_workers, extra_segments=_open_segments(self.config))
        batches = iter(self._data_loader(handoff))
        try:
            for position, batch in batches:
                if position == _FAILED:
                    raise batch
                worker, epoch, index, last = position
                self._positions[worker] = (epoch + 1, 0) if last else (epoch, index + 1)
                self._next_worker = (worker + 1) % self.n_workers
                self.batches += 1
                yield _from_wire(batch)
        finally:
            del batches  # shuts the workers down before their sockets close
            if handoff is not None:
                handoff.close()
        if not self.infinite:  # the pass is complete
            self.set_epoch(self._epoch + 1)

    def _fingerprint(self) -> str:
        names = "\n".join(map(shard_name, self.files))
        return hashlib.sha256(names.encode()).hexdigest()[:16]

    def state_dict(self) -> dict[str, Any]:
        """The data position after the batches handed out so far (per rank; save every rank's)."""
        return {
            "version": STATE_VERSION, "epoch": self.epoch, "batches": self.batches,
            "workers": [list(p) for p in self._positions], "next_worker": self._next_worker,
            "pass_epoch": self._epoch, "seed": self.config.seed, "rank": self.rank,
            "world_size": self.world_size, "num_workers": self.n_workers, "infinite": self.infinite,
            "files": self._fingerprint(), "batching": _batching(self.config),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where ``state`` was taken; the next ``iter()`` resumes there."""
        saved = state.get("num_workers")
        if self.auto_workers and isinstance(saved, int) and not isinstance(saved, bool) and saved >= 1 \
                and saved != self.n_workers:
            # The shards are cut per worker: a run continues with the workers it started with.
            log.info("loader: resuming with the checkpoint's %d workers (auto gives %d here)", saved, self.n_workers)
            self.config = dataclasses.replace(self.config, num_workers=saved)
            self.n_workers = saved
        expected = {"version": STATE_VERSION, "seed": self.config.seed, "rank": self.rank,
                    "world_size": self.world_size, "num_workers": self.n_workers,
                    "infinite": self.infinite, "files": self._fingerprint()}
        for key, value in expected.items():
            if state.get(key) != value:
                if key == "files":
                    raise ValueError(f"load_state_dict: the state was taken reading other TFRecord files (their "
                                     f"fingerprint {state.get(key)!r}; these files' {value!r})")
                hint = f" (num_workers {AUTO!r} takes the checkpoint's)" if key == "num_workers" else ""
                raise ValueError(f"load_state_dict: state[{key!r}] is {state.get(key)!r} but this loader has "
                                 f"{value!r}; resuming needs the same files, seed, rank, world_size and num_workers{hint}")
        positions = [tuple(int(v) for v in p) for p in state["workers"]]
        if len(positions) != self.n_workers or not 0 <= int(state["next_worker"]) < self.n_workers:
            raise ValueError(f"load_state_dict: state['workers'] must hold {self.n_workers} positions; "
                             f"got {state['workers']!r}")
        self._positions, self._next_worker = positions, int(state["next_worker"])
        self._epoch, self.batches = int(state["pass_epoch"]), int(state["batches"])
        saved, now = state.get("batching"), _batching(self.config)
        if saved is not None and saved != now:  # allowed (a smaller batch for a smaller GPU), but not exact
            changed = ", ".join(f"{k} {saved.get(k)!r} -> {v!r}" for k, v in now.items() if saved.get(k) != v)
            log.warning("loader: resuming with other batching than the checkpoint's (%s): positions count batches, "
                        "so the resumed epoch does not continue where the run stopped (some of its windows come "
                        "twice or not at all); the epochs after it are whole", changed)


def collate_records(records: Sequence[bytes], source: str = "") -> dict[str, Any]:
    """Serialized window records (``pipelines.schema.encode_example``) of one length as the loader's
    batch, decoded by the same code: what a served model sees equals what it saw in training."""
    return _collate([_Window(raw, source, index) for index, raw in enumerate(records)])


def inputs_for_modalities(batch: dict[str, Any], modalities: Sequence[str],
                          device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """:func:`model_inputs` without the optional ones a model was configured without (age and
    sex are ``clinical``)."""
    skip = set() if "clinical" in modalities else {"age", "sex"}
    skip |= set() if "ecg" in modalities else {"ecg"}
    return {k: v for k, v in model_inputs(batch, device, non_blocking=True).items() if k not in skip}


def model_inputs(batch: dict[str, Any], device: torch.device | str | None = None, *,
                 non_blocking: bool = False) -> dict[str, torch.Tensor]:
    """The keyword arguments of ``EEGFMModel.forward`` / ``EEGFMForPretraining.forward`` in a batch
    (``eeg``, ``channel_mask``, ``age``, ``sex`` and ``ecg`` when present), optionally moved to
    ``device``. Positions default to the 19 canonical channels, which is what the batches hold."""
    inputs = {key: batch[key] for key in MODEL_KEYS if key in batch}
    if device is not None:
        inputs = {key: value.to(device, non_blocking=non_blocking) for key, value in inputs.items()}
    return inputs
