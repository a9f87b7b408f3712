"""training.data.loader: EEGLoader's epochs, shards, positions and resume."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from eegfm.contract.schema import decode_example
from eegfm.contract.tfrecord import read_records, write_records
from eegfm.contract.windows import Window
from eegfm.training import data
from eegfm.training.augment import AugmentConfig
from eegfm.training.data import EEGLoader, LoaderConfig, RecordFilter, list_files
from eegfm.training.data.loader import _whole_epoch_shuffle
from eegfm.training.data.stream import ShardStream
from tests.training.data.conftest import _epoch, _key, _keys, _record_keys, _records, _same_batch


def test_windows_per_file_reads_only_the_files_that_hold_wanted_windows(pipeline_output):
    # A labeled set in one site's files (as a fine-tuning split can be): dealt whole files, the
    # shards that get other sites' files have none of it.
    found = data.scan_windows(pipeline_output)
    site = found[0]["site_id"]
    subjects = sorted({w["subject_id"] for w in found if w["site_id"] == site})
    wanted = [w for w in found if w["subject_id"] in subjects]
    n_files = len(list_files(pipeline_output))
    assert len({w["path"] for w in wanted}) < n_files
    config = LoaderConfig(batch_size=4, num_workers=0, shuffle=False, filters=RecordFilter(subjects=subjects))
    dealt = [
        sum(len(b["label"]) for b in _epoch(pipeline_output, config, rank=rank, world_size=n_files))
        for rank in range(n_files)
    ]
    assert 0 in dealt and sum(dealt) == len(wanted)
    counts = dict(Counter(w["path"] for w in wanted))
    loaders = [
        EEGLoader(pipeline_output, config, rank=rank, world_size=n_files, infinite=False, windows_per_file=counts)
        for rank in range(n_files)
    ]
    assert all(loader.files == sorted(counts) and not loader.every_file for loader in loaders)
    keys = [[k for batch in loader for k in _keys(batch)] for loader in loaders]
    assert min(map(len, keys)) > 0 and max(map(len, keys)) - min(map(len, keys)) <= 2
    assert Counter(k for part in keys for k in part) == Counter(
        _key(r.recording_id.decode(), r.window_start_index, r.label)
        for r in _records(pipeline_output)
        if r.subject_id.decode() in subjects
    )
    with pytest.raises(ValueError, match="windows_per_file: expected window counts for files of"):
        EEGLoader(pipeline_output, config, rank=0, world_size=2, windows_per_file={"elsewhere.tfrecord": 3})


def test_windows_per_file_evens_the_shares_of_uneven_files(pipeline_output, tmp_path, caplog):
    raws = [raw for path in list_files(pipeline_output) for raw in read_records(path)][:22]
    assert len(raws) == 22
    (tmp_path / "site-a").mkdir()
    big, small = (str(tmp_path / "site-a" / f"part-0000{i}-of-00002.tfrecord") for i in range(2))
    write_records(big, raws[:20])
    write_records(small, raws[20:])
    config = LoaderConfig(batch_size=4, num_workers=0, shuffle=False)
    with caplog.at_level("INFO", logger="eegfm.training.data"):
        loaders = [
            EEGLoader(tmp_path, config, rank=rank, world_size=2, infinite=False, windows_per_file={big: 20, small: 2})
            for rank in range(2)
        ]
    assert all(loader.every_file for loader in loaders)
    assert (
        "loader: dealing the 2 files that hold the 22 windows wanted to 2 shards would give them 2 to 20 "
        "windows each; every shard reads all 2 files and keeps its share of each"
    ) in caplog.messages
    keys = [[k for batch in loader for k in _keys(batch)] for loader in loaders]
    assert [len(part) for part in keys] == [11, 11]
    assert Counter(keys[0] + keys[1]) == _record_keys(decode_example(raw) for raw in raws)
    assert not EEGLoader(tmp_path, config, rank=0, world_size=2, windows_per_file={big: 20, small: 12}).every_file
    # Counts taken where the data lay before (a run resumed after moving it) name the same files.
    moved = {"/elsewhere/site-a/" + Path(big).name: 20, "/elsewhere/site-a/" + Path(small).name: 2}
    assert EEGLoader(tmp_path, config, rank=0, world_size=2, windows_per_file=moved).every_file


def test_a_known_epoch_that_fits_is_shuffled_whole_whatever_the_file_order(pipeline_output, tmp_path, caplog):
    # Label-sorted storage (eegmat's output holds every rest window before every task window) fed
    # fine-tuning batches of one class for half of each epoch through a small shuffle buffer.
    raws = sorted(
        (
            raw
            for path in list_files(pipeline_output)
            for raw in read_records(path)
            if decode_example(raw).eeg.shape[1] == 2560
        ),
        key=lambda raw: decode_example(raw).recording_id,
    )
    recordings = [decode_example(raw).recording_id.decode() for raw in raws]
    first = recordings[0]
    assert len(raws) >= 24 and recordings.count(first) >= len(raws) // 3
    (tmp_path / "site-a").mkdir()
    path = str(tmp_path / "site-a" / "part-00000-of-00001.tfrecord")
    write_records(path, raws)
    config = LoaderConfig(batch_size=4, num_workers=0, shuffle_buffer=4)

    def epochs(config: LoaderConfig) -> list[list[str]]:
        loader = EEGLoader(tmp_path, config, rank=0, world_size=1, infinite=False, windows_per_file={path: len(raws)})
        return [[k[0] for batch in loader for k in _keys(batch)] for _ in range(3)]

    with caplog.at_level("INFO", logger="eegfm.training.data"):
        whole = epochs(config)
    assert (
        f"loader: shuffle buffer 4 -> {len(raws)} windows, a shard's whole epoch (2 MiB of at most "
        "full_shuffle_mb=1024): each epoch is a uniform shuffle"
    ) in caplog.messages
    half = len(raws) // 2
    share = recordings.count(first) / len(raws)
    for order in whole:
        assert sorted(order) == sorted(recordings)
        assert abs(order[:half].count(first) / half - share) <= 0.25, order
    assert len({tuple(order) for order in whole}) == 3
    streamed = epochs(dataclasses.replace(config, full_shuffle_mb=0))  # the buffer of 4 alone
    assert all(order[:8] == [first] * 8 for order in streamed)


@pytest.mark.parametrize(
    "counts, n_shards, every_file, expected",
    [
        ([30], 1, False, 30),  # one shard reads everything
        ([30, 10, 20], 2, False, 50),  # a shard gets 2 of 3 whole files: at most the 2 largest
        ([30, 10], 4, False, 15),  # each file read by 2 of the 4 shards, each keeping half
        ([30, 10, 20], 5, False, 30),  # 1 or 2 readers a file: at most a whole file
        ([30, 10], 2, True, 20),  # every shard keeps its share of every file
        ([3, 2], 1, False, 8),  # the configured buffer holds it already
    ],
)
def test_the_whole_epoch_buffer_is_a_shards_largest_epoch(pipeline_output, counts, n_shards, every_file, expected):
    sample = list_files(pipeline_output)[0]
    config = LoaderConfig(batch_size=4, shuffle_buffer=8)
    assert _whole_epoch_shuffle(config, counts, n_shards, every_file, sample, 0).shuffle_buffer == expected
    assert (
        _whole_epoch_shuffle(
            dataclasses.replace(config, full_shuffle_mb=0.01), counts, n_shards, every_file, sample, 0
        ).shuffle_buffer
        == 8
    )  # does not fit: as configured
    assert (
        _whole_epoch_shuffle(
            dataclasses.replace(config, shuffle=False), counts, n_shards, every_file, sample, 0
        ).shuffle_buffer
        == 8
    )


def test_fewer_files_than_shards_is_a_warning_that_says_what_to_do(pipeline_output, caplog):
    # Shards that share a file each read and decompress all of it: slow, though still correct.
    with caplog.at_level("WARNING", logger="eegfm.training.data"):
        EEGLoader(pipeline_output, LoaderConfig(num_workers=2), rank=0, world_size=2)  # 4 shards, 4 files
        EEGLoader(pipeline_output, LoaderConfig(num_workers=2), rank=1, world_size=4)  # rank 0 tells
        EEGLoader(pipeline_output, LoaderConfig(num_workers=2), rank=0, world_size=4, infinite=False)  # evaluation
        assert not caplog.records
        EEGLoader(pipeline_output, LoaderConfig(num_workers=2), rank=0, world_size=4)
    assert [r.getMessage() for r in caplog.records] == [
        "loader: 4 file(s) for 8 shards (4 rank(s) x 2 worker(s)): each file is read by up to 2 shards, and "
        "each of them reads and decompresses all of it to keep its share of the records; write at least 8 "
        "files (eegfm-preprocess --max_shard_mb or --num_shards) to read every record once"
    ]


@pytest.mark.parametrize("sites, world_size, workers", [(None, 2, 2), (1, 4, 0)])
def test_each_record_once_per_epoch_across_ranks_and_workers(pipeline_output, records, sites, world_size, workers):
    # 4 files over 2 ranks x 2 workers: whole files; one site's 2 files over 4 ranks: striped.
    info = data.describe(pipeline_output)
    keep = () if sites is None else info.sites[:sites]
    expected = _record_keys(r for r in records if not keep or r.site_id.decode() in keep)
    config = LoaderConfig(batch_size=3, num_workers=workers, filters=RecordFilter(sites=keep))
    seen = Counter()
    for rank in range(world_size):
        for batch in _epoch(pipeline_output, config, rank=rank, world_size=world_size):
            seen.update(_keys(batch))
    assert seen == expected and max(seen.values()) == 1


@pytest.mark.parametrize("workers", [0, 2])
def test_drop_last_delivers_only_full_batches_and_a_new_selection_every_epoch(pipeline_output, records, workers):
    config = LoaderConfig(batch_size=5, num_workers=workers, drop_last=True)
    loader = EEGLoader(pipeline_output, config, rank=0, world_size=1, infinite=False)
    first, second = list(loader), list(loader)
    assert first and all(len(b["recording_id"]) == 5 for b in first + second)
    everything = _record_keys(records)
    seen = [Counter(k for b in epoch for k in _keys(b)) for epoch in (first, second)]
    # each epoch: no window twice, none invented, and per shard and window length fewer than 5 dropped
    n_lengths = len({r.eeg.shape[1] for r in records})
    for keys in seen:
        assert max(keys.values()) == 1 and set(keys) <= set(everything)
        assert 0 <= sum(everything.values()) - sum(keys.values()) < 5 * n_lengths * max(1, workers)
    assert seen[0] != seen[1] or sum(seen[0].values()) == sum(everything.values())  # reshuffled, other leftovers
    kept = _epoch(pipeline_output, dataclasses.replace(config, drop_last=False))
    assert Counter(k for b in kept for k in _keys(b)) == everything


def test_infinite_stream_counts_epochs(pipeline_output, records):
    loader = EEGLoader(pipeline_output, LoaderConfig(batch_size=8, num_workers=0), rank=0, world_size=1)
    seen = Counter()
    for batch in loader:
        seen.update(_keys(batch))
        if loader.epoch == 2:
            break
    assert seen == Counter({k: 2 for k in _record_keys(records)})  # two whole epochs, no more


@pytest.mark.parametrize("drop_last", [False, True])
def test_resume_repeats_the_uninterrupted_batches_bitwise(pipeline_output, drop_last):
    workers = 2
    config = LoaderConfig(
        batch_size=4,
        num_workers=workers,
        prefetch_factor=2,
        shuffle_buffer=6,
        seed=7,
        drop_last=drop_last,
        augment=AugmentConfig(
            channel_dropout=0.2,
            time_shift=64,
            noise_std=1.0,
            amplitude_scale=(0.9, 1.1),
            mixup_alpha=0.4,
            cutmix_alpha=1.0,
        ),
    )
    total, cut = 14, 5  # crosses epoch boundaries (about 5 batches per worker and epoch)

    def take(loader, n):
        out = []
        for batch in loader:
            out.append(batch)
            if len(out) == n:
                return out

    reference = take(EEGLoader(pipeline_output, config, rank=0, world_size=1), total)
    interrupted = EEGLoader(pipeline_output, config, rank=0, world_size=1)
    head = take(interrupted, cut)
    state = json.loads(json.dumps(interrupted.state_dict()))
    assert state["batches"] == cut
    resumed = EEGLoader(pipeline_output, config, rank=0, world_size=1)
    resumed.load_state_dict(state)
    tail = take(resumed, total - cut)
    assert all(_same_batch(a, b) for a, b in zip(reference, head + tail))
    assert resumed.state_dict()["batches"] == total and resumed.epoch >= 1
    with pytest.raises(ValueError, match="num_workers 'auto' takes the checkpoint's"):
        EEGLoader(
            pipeline_output, dataclasses.replace(config, num_workers=workers + 1), rank=0, world_size=1
        ).load_state_dict(state)
    # "auto" resolves to one worker on a machine without a GPU from three cores on (none on fewer),
    # then continues with the checkpoint's two
    auto = EEGLoader(pipeline_output, dataclasses.replace(config, num_workers="auto"), rank=0, world_size=1)
    if not torch.cuda.is_available():
        assert auto.config.num_workers == (1 if data.Machine.here().cpu_share.per_rank > 2 else 0)
    auto.load_state_dict(state)
    assert auto.config.num_workers == workers
    assert all(_same_batch(a, b) for a, b in zip(reference[cut:], take(auto, total - cut)))


def test_resuming_with_other_batching_is_allowed_with_a_warning(pipeline_output, caplog):
    config = LoaderConfig(batch_size=4, num_workers=0, shuffle_buffer=6, seed=7)
    loader = EEGLoader(pipeline_output, config, rank=0, world_size=1)
    next(iter(loader))
    state = json.loads(json.dumps(loader.state_dict()))
    with caplog.at_level("WARNING", logger="eegfm.training.data"):
        EEGLoader(pipeline_output, config, rank=0, world_size=1).load_state_dict(state)
        assert not caplog.records
        smaller = dataclasses.replace(config, batch_size=2, filters=data.RecordFilter(max_artifact_score=0.9))
        EEGLoader(pipeline_output, smaller, rank=0, world_size=1).load_state_dict(state)
    (record,) = caplog.records
    assert "batch_size 4 -> 2" in record.message and "max_artifact_score': 1.0" in record.message


def test_evaluation_pass_resumes_after_a_worker_finished(pipeline_output):
    # With seed 6 one worker gets both small files (2 batches), the other 6 batches: after 5
    # batches the first is done and DataLoader's round-robin skips it; so must the resumed pass.
    config = LoaderConfig(batch_size=4, num_workers=2, shuffle_buffer=6, seed=6)
    reference = [_keys(b) for b in _epoch(pipeline_output, config)]
    interrupted = EEGLoader(pipeline_output, config, rank=0, world_size=1, infinite=False)
    head = []
    for batch in interrupted:
        head.append(_keys(batch))
        if len(head) == 5:
            break
    resumed = EEGLoader(pipeline_output, config, rank=0, world_size=1, infinite=False)
    resumed.load_state_dict(interrupted.state_dict())
    assert head + [_keys(b) for b in resumed] == reference and resumed.epoch == 1
    assert len(reference) == 8 and sorted(e for e, _ in interrupted.state_dict()["workers"]) == [0, 1]


def test_fast_forward_decodes_only_what_it_yields(pipeline_output, monkeypatch):
    config = LoaderConfig(batch_size=4, num_workers=0, shuffle_buffer=6)
    loader = EEGLoader(pipeline_output, config, rank=0, world_size=1)
    iterator = iter(loader)
    for _ in range(6):
        next(iterator)
    state = loader.state_dict()
    decoded = []
    original = Window.samples
    monkeypatch.setattr(Window, "samples", lambda self, name: decoded.append(name) or original(self, name))
    resumed = EEGLoader(pipeline_output, config, rank=0, world_size=1)
    resumed.load_state_dict(state)
    batch = next(iter(resumed))
    # Copied: the delivered batch's windows and some of the other batch open beside it; none of
    # the 6 skipped batches' 24 windows.
    open_batches = ShardStream([], config, 0, 1).open_batches(batch["eeg"].shape[-1])
    assert open_batches == 2 and len(batch["label"]) <= decoded.count("eeg") < 2 * len(batch["label"])
