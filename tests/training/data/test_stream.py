"""training.data.stream: sharding and one shard's shuffled, planned batch stream."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import Counter

import numpy as np
import pytest
import torch

from eegfm.contract.tfrecord import read_records, write_records
from eegfm.model.batch import Rows
from eegfm.training import data
from eegfm.training.data import EEGLoader, LoaderConfig, RecordFilter, list_files
from eegfm.training.data.stream import Open, ShardStream
from tests.training.data.conftest import _epoch, _keys, _num_threads, _record_keys_to, _same_batch


@pytest.mark.parametrize("n_files", [0, 1, 2, 3, 5, 8, 13])
@pytest.mark.parametrize("n_shards", [1, 2, 3, 4, 8])
def test_shard_files_covers_every_record_once(n_files, n_shards):
    sizes = [7 + 3 * j for j in range(n_files)]
    seen = Counter()
    for shard in range(n_shards):
        plan = data.shard_files(n_files, n_shards, shard)
        assert plan or n_files == 0  # every shard reads something
        seen.update((j, r) for j, stride, offset in plan for r in range(sizes[j]) if r % stride == offset)
    assert seen == Counter((j, r) for j in range(n_files) for r in range(sizes[j]))
    reads = Counter(j for shard in range(n_shards) for j, _, _ in data.shard_files(n_files, n_shards, shard))
    if n_files >= n_shards:  # the normal case: every file is read whole, by one shard
        assert set(reads.values()) <= {1}
    elif n_files:  # few files: each is read by at most ceil(n_shards / n_files) shards
        assert max(reads.values()) == math.ceil(n_shards / n_files)


def test_every_file_sharding_gives_each_shard_its_share_of_every_file():
    for n_shards in (1, 2, 3):
        seen = Counter(
            (j, r)
            for shard in range(n_shards)
            for j, stride, offset in data.shard_files(3, n_shards, shard, every_file=True)
            for r in range(10)
            if r % stride == offset
        )
        assert seen == Counter((j, r) for j in range(3) for r in range(10))
    assert data.shard_loads([700, 10, 10], 2) == [710, 10]
    assert data.shard_loads([700, 10, 10], 2, every_file=True) == [360, 360]
    assert data.shard_loads([9], 3) == [3, 3, 3]


def test_shuffle_is_seeded_by_seed_and_epoch(pipeline_output):
    config = LoaderConfig(batch_size=4, num_workers=0, shuffle_buffer=8, seed=3)
    loader = EEGLoader(pipeline_output, config, rank=0, world_size=1, infinite=False)
    first = [k for b in loader for k in _keys(b)]
    second = [k for b in loader for k in _keys(b)]
    assert loader.epoch == 2 and Counter(first) == Counter(second) and first != second
    again = [k for b in _epoch(pipeline_output, config) for k in _keys(b)]
    other_seed = [k for b in _epoch(pipeline_output, dataclasses.replace(config, seed=4)) for k in _keys(b)]
    assert again == first and other_seed != first
    in_order = [k for b in _epoch(pipeline_output, dataclasses.replace(config, shuffle=False)) for k in _keys(b)]
    assert in_order == [
        k for b in _epoch(pipeline_output, dataclasses.replace(config, shuffle=False)) for k in _keys(b)
    ]


@pytest.mark.parametrize("dtype, threads", [("float16", 1), ("float32", 1), ("float32", 2)])
def test_every_row_holds_its_own_windows_samples(pipeline_output, records, monkeypatch, dtype, threads):
    # A shuffle buffer of 8 windows and batches of 4: windows are copied into open batches as
    # they arrive (after the first 8; not at all for float32 with 2 threads, which converts whole
    # batches), moved when an epoch's last batches are merged, and copied late after a resume.
    placed = []
    place = Open.place
    monkeypatch.setattr(Open, "place", lambda self, *a: placed.append(1) or place(self, *a))
    config = LoaderConfig(batch_size=4, num_workers=0, shuffle_buffer=8, seed=5, eeg_dtype=dtype)
    with _num_threads(threads):
        loader = EEGLoader(pipeline_output, config, rank=0, world_size=1)
        batches = list(itertools.islice(loader, 25))  # 2.5 epochs
        resumed = EEGLoader(pipeline_output, config, rank=0, world_size=1)
        head = list(itertools.islice(resumed, 13))
        state = resumed.state_dict()
        resumed = EEGLoader(pipeline_output, config, rank=0, world_size=1)
        resumed.load_state_dict(state)
        tail = list(itertools.islice(resumed, 12))
    assert all(_same_batch(a, b) for a, b in zip(batches, head + tail, strict=True))
    assert (len(placed) > 20) == (dtype == "float16" or threads == 1)
    by_key = _record_keys_to(records)
    kind = data.EEG_DTYPES[dtype]
    for batch in batches:
        assert batch["eeg"].dtype == kind and 1 <= len(batch["label"]) <= 4
        for row, key in enumerate(_keys(batch)):
            record = by_key[key]
            assert torch.equal(batch["eeg"][row], torch.from_numpy(np.asarray(record.eeg)).to(kind))
            if record.ecg is not None:
                assert torch.equal(batch["ecg"][row], torch.from_numpy(np.asarray(record.ecg)).to(kind))
            elif "ecg" in batch:
                assert batch["ecg"][row].isnan().all()


def _stream(out, config, n_shards, shard, epochs, monkeypatch, skip=0, every_file=False, plan=True):
    """A shard's batches for ``epochs`` epochs (the last one from batch ``skip``), whether each
    epoch was planned, and per epoch the samples copied into batch rows: (all, those copied
    while their window was the latest to arrive). ``plan=False``: as if no epoch could be planned."""
    monkeypatch.setattr("eegfm.training.data.stream._PLAN_MAX_WINDOWS", 1 << 16 if plan else 0)
    stream = ShardStream(list_files(out), config, shard, n_shards, every_file)
    latest, put, windows = [None], Rows.put, stream.windows

    def arriving(epoch):
        for window in windows(epoch):
            latest[0] = window
            yield window

    def counted(self, row, signal):
        if signal is not None and not isinstance(signal, torch.Tensor):
            rows.append(signal is latest[0].eeg or signal is latest[0].ecg)  # its samples in place
        put(self, row, signal)

    monkeypatch.setattr(stream, "windows", arriving)
    monkeypatch.setattr(Rows, "put", counted)
    batches, planned, copies, read = [], [], [], set()
    for epoch in range(epochs):
        planned.append(stream._plan(epoch) is not None)
        assert planned[-1] == (plan and read.issuperset(stream._shares(epoch)))  # every file share read before
        read.update(stream._shares(epoch))
        rows = []
        for index, last, batch in stream.batches(epoch, skip if epoch == epochs - 1 else 0):
            batches.append(
                (
                    epoch,
                    index,
                    last,
                    batch and {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in batch.items()},
                )
            )
        copies.append((len(rows), sum(rows)))
    monkeypatch.undo()
    return batches, planned, copies


@pytest.mark.parametrize(
    "config, n_shards, every_file",
    [
        (LoaderConfig(batch_size=4, shuffle_buffer=8, seed=3), 1, False),
        (LoaderConfig(batch_size=4, shuffle_buffer=64, seed=1, eeg_dtype="float16"), 1, False),  # epoch < buffer
        (LoaderConfig(batch_size=3, shuffle_buffer=8, drop_last=True), 3, False),  # a file on two shards
        (LoaderConfig(batch_size=4, shuffle_buffer=8, drop_last=True, seed=2), 1, False),  # 2 of 6 long windows dropped
        (LoaderConfig(batch_size=2, shuffle_buffer=5), 2, True),
        (LoaderConfig(batch_size=None, token_budget=4 * 12800, max_batch_size=6, shuffle_buffer=12), 1, False),
        (LoaderConfig(batch_size=4, shuffle=False), 2, False),
        (LoaderConfig(batch_size=4, filters=RecordFilter(tasks=("hms6",)), shuffle_buffer=4), 1, False),
    ],
)
def test_planned_epochs_are_the_same_batches_with_each_window_copied_on_arrival(
    pipeline_output, monkeypatch, config, n_shards, every_file
):
    # Once a shard has read its files through, it knows an epoch's windows in advance and copies
    # each one into its batch row as it arrives (while its record is in the CPU cache), once:
    # the batches must not change.
    with _num_threads(1):
        for shard in range(n_shards):
            planned, known, copies = _stream(
                pipeline_output, config, n_shards, shard, 4, monkeypatch, skip=1, every_file=every_file
            )
            reference, unknown, late = _stream(
                pipeline_output, config, n_shards, shard, 4, monkeypatch, skip=1, every_file=every_file, plan=False
            )
            assert [b[:3] for b in planned] == [b[:3] for b in reference] and len(planned) >= 4
            assert all(a[3] is b[3] is None or _same_batch(a[3], b[3]) for a, b in zip(planned, reference))
            assert known[0] is False and known[3] is True and not any(unknown)
            assert [b[3] is None for b in planned if b[0] == 3][:2] == [True, False]  # epoch 3 resumed at batch 1
            for epoch in range(4):
                delivered = [b[3] for b in planned if b[0] == epoch and b[3] is not None]
                samples = sum(
                    len(b["label"]) + (int((~b["ecg"].isnan().all(1)).sum()) if "ecg" in b else 0) for b in delivered
                )  # every window's eeg, and its ecg where it has one
                everything, on_arrival = copies[epoch]
                assert everything >= samples and (everything == on_arrival == samples or not known[epoch])
                if epoch < 3 and config.shuffle:  # unplanned, an epoch's first shuffle_buffer windows wait
                    assert late[epoch][0] >= everything and late[epoch][1] < late[epoch][0]
            if config.shuffle_buffer == 64:  # unplanned, every window of an epoch this small waits (but the last)
                assert all(on_arrival <= 2 for _, on_arrival in late)


def test_a_file_that_changes_between_epochs_is_named(pipeline_output, tmp_path):
    site = tmp_path / "site-a"
    site.mkdir()
    path = site / "part-00000-of-00001.tfrecord"
    records = list(read_records(list_files(pipeline_output)[0]))
    write_records(str(path), records)
    stream = ShardStream([str(path)], LoaderConfig(batch_size=2, eeg_dtype="float16"), 0, 1)
    assert sum(len(b["label"]) for _, _, b in stream.batches(0)) == len(records)
    write_records(str(path), records[:-1])
    with pytest.raises(
        RuntimeError,
        match=rf"shard 0: epoch 1: expected the {len(records)} windows .* got "
        f"{len(records) - 1}: a file changed during training",
    ):
        list(stream.batches(1))
    write_records(str(path), records + records[:1])  # epoch 1 read the shorter file through: its length is known
    with pytest.raises(
        RuntimeError,
        match=rf"{path}: record {len(records) - 1}: expected the windows an earlier "
        rf"pass read from it \({len(records) - 1} this epoch\); window "
        f"{len(records)} differs",
    ):
        list(stream.batches(2))
