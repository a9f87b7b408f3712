"""What the tests of training.data share: the fixture's records, their keys, whole epochs, record surgery."""

from __future__ import annotations

import contextlib
from collections import Counter
from pathlib import Path

import torch

from eegfm.contract import schema
from eegfm.contract.schema import decode_example
from eegfm.contract.tfrecord import read_records
from eegfm.contract.windows import Example
from eegfm.training.data import EEGLoader, LoaderConfig, list_files


def _records(out: Path) -> list:
    return [decode_example(raw) for path in list_files(out) for raw in read_records(path)]


def _key(recording_id: str, start: int, label: int) -> tuple[str, int, int]:
    return recording_id, start, label


def _keys(batch: dict) -> list[tuple[str, int, int]]:
    return [_key(*k) for k in zip(batch["recording_id"], batch["window_start"].tolist(), batch["label"].tolist())]


def _record_keys(records) -> Counter:
    return Counter(_key(r.recording_id.decode(), r.window_start_index, r.label) for r in records)


def _epoch(out, config: LoaderConfig, **kwargs) -> list[dict]:
    return list(EEGLoader(out, config, infinite=False, **{"rank": 0, "world_size": 1, **kwargs}))


def _entry(name: str, kind: str, values) -> bytes:
    """One serialized map entry of Example.features (its tag included), as contract.schema writes it."""
    return schema.example_message({name: (kind, values)}).features.SerializeToString()


def _example(entries: bytes) -> bytes:
    """An Example whose features hold the serialized map ``entries`` in the order given (protobuf
    would sort them): the features field's tag and length, then the entries."""
    size, length = len(entries), bytearray()
    while size > 0x7F:  # a varint, 7 bits a byte
        length.append(size & 0x7F | 0x80)
        size >>= 7
    return b"\x0a" + bytes(length) + bytes([size]) + entries


def _with_entry(raw: bytes, entry: bytes) -> bytes:
    """``raw`` (one Features field) with ``entry`` appended to its map."""
    return _example(Example.FromString(raw).features.SerializeToString(deterministic=True) + entry)


def _same_batch(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        torch.equal(a[k], b[k])
        if isinstance(a[k], torch.Tensor) and not a[k].is_floating_point()
        else torch.equal(a[k].nan_to_num(-1e9), b[k].nan_to_num(-1e9))
        if isinstance(a[k], torch.Tensor)
        else a[k] == b[k]
        for k in a
    )


@contextlib.contextmanager
def _num_threads(n):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _record_keys_to(records) -> dict:
    return {_key(r.recording_id.decode(), r.window_start_index, r.label): r for r in records}
