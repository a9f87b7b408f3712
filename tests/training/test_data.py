"""training.data and training.augment against real pipeline output (``pipeline_output``)."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from eegfm.model.inputs import encode_age, encode_sex
from eegfm.core.config import ConfigError
from eegfm.pipelines import schema
from eegfm.pipelines.schema import N_CHANS, SchemaError, decode_example, encode_example
from eegfm.pipelines.tfrecord import CorruptTFRecordError, read_records, write_records
from eegfm.training import augment as aug
from eegfm.training import data
from eegfm.training.augment import AugmentConfig
from eegfm.training.data import EEGLoader, LoaderConfig, RecordFilter, list_files, model_inputs
from eegfm.training.data.batch import Rows, collate
from eegfm.training.data.catalog import _site_of, estimated_windows, first_record_bytes
from eegfm.training.data.loader import _whole_epoch_shuffle
from eegfm.training.data.records import Example, Window
from eegfm.training.data.stream import Open, ShardStream


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


@pytest.fixture(scope="module")
def records(pipeline_output):
    return _records(pipeline_output)


# ------------------------------------------------------------------------------------------------
# Files, manifest, decoding
# ------------------------------------------------------------------------------------------------


def test_list_files_describe_and_clear_errors(pipeline_output, tmp_path):
    files = list_files(pipeline_output)
    info = data.describe(pipeline_output)
    assert len(files) == 4 and len(info.sites) == 2 and len(info.channels) == 19 and info.sfreq == 256.0
    assert {Path(f).parent.name for f in files} == set(info.sites)
    assert list_files(pipeline_output, sites=[info.sites[0]]) == [f for f in files if info.sites[0] in f]
    assert list_files(pipeline_output, exclude_sites=[info.sites[0]]) == [f for f in files if info.sites[0] not in f]
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path}.*expected <site>/part-\*-of-\*\.tfrecord"):
        list_files(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere.*not a directory"):
        EEGLoader(tmp_path / "nowhere", rank=0, world_size=1)
    with pytest.raises(FileNotFoundError, match="no manifest"):
        data.describe(tmp_path)


def test_several_output_folders_are_described_together_and_must_agree(pipeline_output, tuev_output, tmp_path):
    """Runs over other corpora (or later batches of recordings) read as one data set: counts added,
    sites and classes joined; folders whose channels or classes differ, or one given twice, refused."""
    import shutil

    one, other = data.describe(pipeline_output), data.describe(tuev_output[1])
    both = data.describe([pipeline_output, tuev_output[1]])
    assert both.sites == tuple(sorted({*one.sites, *other.sites})) and both.channels == one.channels
    assert both.counts["windows"] == one.counts["windows"] + other.counts["windows"] == 30 + 36
    assert both.counts["per_site"] == {**one.counts["per_site"], **other.counts["per_site"]}
    assert both.counts["per_corpus_split"] == {"train": 24, "eval": 12}
    assert both.classes == {**one.classes, **other.classes} and set(both.classes) >= {"hms6", "tuev_event"}
    assert both.config_hash == ",".join(sorted({one.config_hash, other.config_hash}))
    assert data.data_label([pipeline_output, tuev_output[1]]) == f"{pipeline_output}, {tuev_output[1]}"
    with pytest.raises(ValueError, match=f"--data: {pipeline_output} is given twice"):
        data.describe([pipeline_output, str(pipeline_output)])

    # A copy of a folder holds the same recordings: named as shared, digest by digest.
    copy = tmp_path / "copy"
    shutil.copytree(pipeline_output, copy)
    assert data.shared_recordings([str(pipeline_output), str(tuev_output[1])]) == {}
    shared = data.shared_recordings([str(pipeline_output), str(copy)])
    processed = [r for r in json.loads((copy / "manifest.json").read_text())["inputs"] if r["status"] == "processed"]
    assert len(shared) == len(processed) == 4 and set(shared.values()) == {f"{pipeline_output} and {copy}"}
    assert data.describe([pipeline_output, copy]).counts["per_subject"] == {
        s: 2 * n for s, n in one.counts["per_subject"].items()}

    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["channels"] = manifest["channels"][::-1]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=f"--data {pipeline_output} and {copy}: their manifests' channels differ"):
        data.describe([pipeline_output, copy])
    manifest = json.loads((pipeline_output / "manifest.json").read_text())
    manifest["classes"]["hms6"] = manifest["classes"]["hms6"][::-1]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"task 'hms6' has classes \['Seizure'.*\] in one and \['Other'"):
        data.describe([pipeline_output, copy])


def test_fast_decoder_equals_decode_example(pipeline_output):
    compared = 0
    for path in list_files(pipeline_output):
        for index, raw in enumerate(read_records(path)):
            expected, fields = decode_example(raw), Window(raw, path, index).decode()
            for name, value in fields.items():
                want = getattr(expected, name)
                if isinstance(want, np.ndarray):
                    assert value.dtype == want.dtype and np.array_equal(value, want), name
                elif isinstance(want, float) and math.isnan(want):
                    assert math.isnan(value), name
                else:
                    assert value == want, name
            compared += 1
    assert compared == 30


def test_example_classes_match_the_pipelines_wire_format(pipeline_output):
    # The descriptor written in training.data re-serializes every record to the same bytes:
    # TensorFlow's field numbers, types and packing, as pipelines.schema writes them.
    raws = [raw for path in list_files(pipeline_output) for raw in read_records(path)]
    assert len(raws) == 30
    assert all(Example.FromString(raw).SerializeToString(deterministic=True) == raw for raw in raws)


def _entry(name: str, kind: str, values) -> bytes:
    """One serialized map entry of Example.features, as pipelines.schema writes it."""
    return schema.len_field(1, schema.len_field(1, name.encode()) + schema.len_field(2, schema.encode_list(kind, values)))


def _with_entry(raw: bytes, entry: bytes) -> bytes:
    """``raw`` (one Features field) with ``entry`` appended to its map."""
    features = Example.FromString(raw).features.SerializeToString(deterministic=True)
    return schema.len_field(1, features + entry)


def test_other_layouts_parse_like_protobuf(records):
    record = records[0]
    raw = encode_example(record)
    other = (record.eeg[:, ::-1].copy()).tobytes()
    duplicate = Window(_with_entry(raw, _entry("eeg", "bytes", [other])), "mem", 0)
    assert np.array_equal(duplicate.decode()["eeg"], record.eeg[:, ::-1])  # protobuf's "last entry wins"
    assert Window(_with_entry(raw, _entry("label", "int64", [4])), "mem", 0).decode()["label"] == 4
    unsorted = schema.len_field(1, b"".join(reversed([
        _entry(name, *feature) for name, feature in sorted(schema.decode_features(raw).items())])))
    window = Window(unsorted, "mem", 0)
    assert np.array_equal(window.decode()["eeg"], record.eeg)
    with_ecg = next(r for r in records if r.ecg is not None)
    window = Window(encode_example(with_ecg), "mem", 0)
    assert np.array_equal(window.decode()["ecg"], with_ecg.ecg)
    later = (with_ecg.ecg[::-1].copy()).tobytes()
    window = Window(_with_entry(encode_example(with_ecg), _entry("ecg", "bytes", [later])), "mem", 0)
    assert np.array_equal(window.decode()["ecg"], with_ecg.ecg[::-1])  # the last wins
    floats = _with_entry(raw, _entry("eeg", "float", [1.0, 2.0]))
    with pytest.raises(SchemaError, match="^f: record 3: feature 'eeg': expected bytes values$"):
        Window(floats, "f", 3).decode()
    without_label = schema.len_field(1, b"".join(
        _entry(name, *feature) for name, feature in sorted(schema.decode_features(raw).items()) if name != "label"))
    with pytest.raises(SchemaError, match="^f: record 3: feature 'label': missing from the Example"):
        Window(without_label, "f", 3).decode()


@pytest.mark.parametrize("cut", ["small field", "samples", "garbage"])
def test_malformed_examples_say_where(records, cut):
    raw = bytearray(encode_example(records[0]))
    if cut == "small field":  # the label entry claims more bytes than its message holds
        at = raw.index(b"\n\x05label") + 7
        raw[at + 1] += 100
    elif cut == "samples":
        raw = raw[:len(raw) // 2]
    else:
        raw = bytearray(b"\xff" * 64)
    with pytest.raises(SchemaError, match=r"^f: record 3: (Example|not a valid).*(byte|field|wire type)"):
        Window(bytes(raw), "f", 3).decode()


def test_corrupt_file_is_named(pipeline_output, tmp_path):
    bad = tmp_path / "site-x" / "part-00000-of-00001.tfrecord"
    bad.parent.mkdir()
    blob = bytearray(Path(list_files(pipeline_output)[0]).read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    bad.write_bytes(bytes(blob))
    with pytest.raises(CorruptTFRecordError, match=str(bad)):
        _epoch(tmp_path, LoaderConfig(num_workers=0))
    # From a worker process the same error, not DataLoader's RuntimeError around its traceback.
    with pytest.raises(CorruptTFRecordError, match=f"^{bad}: corrupt TFRecord at byte offset") as raised:
        _epoch(tmp_path, LoaderConfig(num_workers=1))
    assert raised.value.path == str(bad) and "Traceback" not in str(raised.value)


def test_malformed_example_names_file_and_record(pipeline_output, tmp_path):
    bad = tmp_path / "site-x" / "part-00000-of-00001.tfrecord"
    bad.parent.mkdir()
    good = next(read_records(list_files(pipeline_output)[0]))
    write_records(str(bad), [good, good[:-1000]])  # intact framing around a cut Example
    for workers in (0, 1):
        with pytest.raises(SchemaError, match=f"^{bad}: record 1: .*needs .* bytes"):
            _epoch(tmp_path, LoaderConfig(num_workers=workers))


def test_object_store_paths_go_through_beam_filesystems(pipeline_output, tmp_path, monkeypatch):
    # gs:// and other schemes use apache_beam's FileSystems; it serves local paths the same way.
    local = list_files(pipeline_output)
    expected = sum(len(b["label"]) for b in _epoch(pipeline_output, LoaderConfig(num_workers=0)))
    from eegfm.core import stores as object_stores

    monkeypatch.setattr("eegfm.training.data.catalog.is_remote", lambda path: True)
    monkeypatch.setattr(object_stores, "is_remote", lambda path: True)  # opening, too
    assert list_files(pipeline_output) == local and data.describe(pipeline_output).sites
    assert sum(len(b["label"]) for b in _epoch(pipeline_output, LoaderConfig(num_workers=0))) == expected == 30
    bad = tmp_path / "site-x" / "part-00000-of-00001.tfrecord"
    bad.parent.mkdir()
    bad.write_bytes(Path(local[0]).read_bytes()[:-100])
    with pytest.raises(CorruptTFRecordError, match=f"^{bad}: corrupt TFRecord"):
        _epoch(tmp_path, LoaderConfig(num_workers=0))


# ------------------------------------------------------------------------------------------------
# Sharding, shuffling, epochs, resume
# ------------------------------------------------------------------------------------------------


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
        seen = Counter((j, r) for shard in range(n_shards)
                       for j, stride, offset in data.shard_files(3, n_shards, shard, every_file=True)
                       for r in range(10) if r % stride == offset)
        assert seen == Counter((j, r) for j in range(3) for r in range(10))
    assert data.shard_loads([700, 10, 10], 2) == [710, 10]
    assert data.shard_loads([700, 10, 10], 2, every_file=True) == [360, 360]
    assert data.shard_loads([9], 3) == [3, 3, 3]


def test_window_counts_tell_apart_two_folders_shards_of_the_same_name(pipeline_output, tmp_path):
    # Two runs with the same key over the same site (two batches of its recordings) write the same
    # <site>/<file> names: each file keeps its own count, by full path.
    import shutil

    first, second = tmp_path / "october", tmp_path / "november"
    shutil.copytree(pipeline_output, first)
    shutil.copytree(pipeline_output, second)
    files = {out: list_files(out) for out in (first, second)}
    assert [data.shard_name(p) for p in files[first]] == [data.shard_name(p) for p in files[second]]
    assert data.file_key(files[first] + files[second]) is os.fspath and data.file_key(files[first]) is data.shard_name
    counts = {**{path: 0 for path in files[first]},
              **{path: sum(1 for _ in read_records(path)) for path in files[second]}}
    loader = EEGLoader([first, second], LoaderConfig(batch_size=4, num_workers=0, shuffle=False), rank=0, world_size=1,
                       infinite=False, windows_per_file=counts)
    assert loader.files == files[second] and sum(len(b["label"]) for b in loader) == 30


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
    dealt = [sum(len(b["label"]) for b in _epoch(pipeline_output, config, rank=rank, world_size=n_files))
             for rank in range(n_files)]
    assert 0 in dealt and sum(dealt) == len(wanted)
    counts = dict(Counter(w["path"] for w in wanted))
    loaders = [EEGLoader(pipeline_output, config, rank=rank, world_size=n_files, infinite=False,
                         windows_per_file=counts) for rank in range(n_files)]
    assert all(loader.files == sorted(counts) and not loader.every_file for loader in loaders)
    keys = [[k for batch in loader for k in _keys(batch)] for loader in loaders]
    assert min(map(len, keys)) > 0 and max(map(len, keys)) - min(map(len, keys)) <= 2
    assert Counter(k for part in keys for k in part) == Counter(
        _key(r.recording_id.decode(), r.window_start_index, r.label) for r in _records(pipeline_output)
        if r.subject_id.decode() in subjects)
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
        loaders = [EEGLoader(tmp_path, config, rank=rank, world_size=2, infinite=False,
                             windows_per_file={big: 20, small: 2}) for rank in range(2)]
    assert all(loader.every_file for loader in loaders)
    assert ("loader: dealing the 2 files that hold the 22 windows wanted to 2 shards would give them 2 to 20 "
            "windows each; every shard reads all 2 files and keeps its share of each") in caplog.messages
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
    raws = sorted((raw for path in list_files(pipeline_output) for raw in read_records(path)
                   if decode_example(raw).eeg.shape[1] == 2560), key=lambda raw: decode_example(raw).recording_id)
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
    assert (f"loader: shuffle buffer 4 -> {len(raws)} windows, a shard's whole epoch (2 MiB of at most "
            "full_shuffle_mb=1024): each epoch is a uniform shuffle") in caplog.messages
    half = len(raws) // 2
    share = recordings.count(first) / len(raws)
    for order in whole:
        assert sorted(order) == sorted(recordings)
        assert abs(order[:half].count(first) / half - share) <= 0.25, order
    assert len({tuple(order) for order in whole}) == 3
    streamed = epochs(dataclasses.replace(config, full_shuffle_mb=0))  # the buffer of 4 alone
    assert all(order[:8] == [first] * 8 for order in streamed)


@pytest.mark.parametrize("counts, n_shards, every_file, expected", [
    ([30], 1, False, 30),                # one shard reads everything
    ([30, 10, 20], 2, False, 50),        # a shard gets 2 of 3 whole files: at most the 2 largest
    ([30, 10], 4, False, 15),            # each file read by 2 of the 4 shards, each keeping half
    ([30, 10, 20], 5, False, 30),        # 1 or 2 readers a file: at most a whole file
    ([30, 10], 2, True, 20),             # every shard keeps its share of every file
    ([3, 2], 1, False, 8),               # the configured buffer holds it already
])
def test_the_whole_epoch_buffer_is_a_shards_largest_epoch(pipeline_output, counts, n_shards, every_file, expected):
    sample = list_files(pipeline_output)[0]
    config = LoaderConfig(batch_size=4, shuffle_buffer=8)
    assert _whole_epoch_shuffle(config, counts, n_shards, every_file, sample, 0).shuffle_buffer == expected
    assert _whole_epoch_shuffle(dataclasses.replace(config, full_shuffle_mb=0.01), counts, n_shards,
                                     every_file, sample, 0).shuffle_buffer == 8  # does not fit: as configured
    assert _whole_epoch_shuffle(dataclasses.replace(config, shuffle=False), counts, n_shards,
                                     every_file, sample, 0).shuffle_buffer == 8


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
        "files (eegfm-preprocess --max_shard_mb or --num_shards) to read every record once"]


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
    assert in_order == [k for b in _epoch(pipeline_output, dataclasses.replace(config, shuffle=False)) for k in _keys(b)]


def test_infinite_stream_counts_epochs(pipeline_output, records):
    loader = EEGLoader(pipeline_output, LoaderConfig(batch_size=8, num_workers=0), rank=0, world_size=1)
    seen = Counter()
    for batch in loader:
        seen.update(_keys(batch))
        if loader.epoch == 2:
            break
    assert seen == Counter({k: 2 for k in _record_keys(records)})  # two whole epochs, no more


def _same_batch(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) and not a[k].is_floating_point()
        else torch.equal(a[k].nan_to_num(-1e9), b[k].nan_to_num(-1e9)) if isinstance(a[k], torch.Tensor)
        else a[k] == b[k]
        for k in a)


@pytest.mark.parametrize("drop_last", [False, True])
def test_resume_repeats_the_uninterrupted_batches_bitwise(pipeline_output, drop_last):
    workers = 2
    config = LoaderConfig(batch_size=4, num_workers=workers, prefetch_factor=2, shuffle_buffer=6, seed=7,
                          drop_last=drop_last,
                          augment=AugmentConfig(channel_dropout=0.2, time_shift=64, noise_std=1.0,
                                                amplitude_scale=(0.9, 1.1), mixup_alpha=0.4, cutmix_alpha=1.0))
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
        EEGLoader(pipeline_output, dataclasses.replace(config, num_workers=workers + 1),
                  rank=0, world_size=1).load_state_dict(state)
    # "auto" resolves to one worker on a machine without a GPU, then continues with the checkpoint's two
    auto = EEGLoader(pipeline_output, dataclasses.replace(config, num_workers="auto"), rank=0, world_size=1)
    if not torch.cuda.is_available():
        assert auto.config.num_workers == 1
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


def _machine(cpus=16, total=None, ranks=1, memory=None, cuda=True):
    return data.Machine(cpus, cpus if total is None else total, ranks, memory, cuda)


@pytest.mark.parametrize("machine, expected, why", [
    (_machine(cuda=False), 1, "CPU training"),
    (_machine(16), 15, "16 CPUs / 1 local rank"),
    (_machine(96, ranks=8), 11, "96 CPUs / 8 local rank"),
    (_machine(4, total=64, ranks=8), 3, "4 CPUs bound to this rank"),  # mpirun's binding
    (_machine(128), data.AUTO_MAX_WORKERS, f"capped at {data.AUTO_MAX_WORKERS}"),
    (_machine(1), 1, "1 CPUs / 1 local rank"),
    # 32 open batches of 64 + 5 x 64 in flight, x 100 kB = 237 MB a worker; half of 4 GiB over 2 ranks: 4
    (_machine(32, ranks=2, memory=4 << 30), 4, "memory: each worker holds about 226 MiB"),
    (_machine(16, memory=100 << 20), 1, "memory"),
])
def test_auto_workers_fit_the_cpus_and_memory_of_the_rank(machine, expected, why):
    config = LoaderConfig(batch_size=64, num_workers="auto", shuffle_buffer=2000, prefetch_factor=4)
    workers, reason = data.auto_num_workers(config, 100_000, machine)
    assert workers == expected and why in reason


@pytest.mark.parametrize("windows, ranks, expected, why", [
    (216, 1, 1, "corpus: about 216 windows"),  # the benchmark's corpus: 14 windows a worker, batches of 64
    (2_560, 1, 10, "corpus: about 2560 windows over 1 rank(s)"),
    (2_560, 2, 5, "over 2 rank(s)"),
    (360_000, 8, 15, "16 CPUs / 1 local rank"),  # 1,000 EEG-hours: no cap
    (None, 1, 15, "16 CPUs / 1 local rank"),  # size unknown (a named remote file): no cap
])
def test_auto_workers_leave_each_worker_whole_batches_of_a_small_corpus(windows, ranks, expected, why):
    config = LoaderConfig(batch_size=64, num_workers="auto", shuffle_buffer=2000)
    workers, reason = data.auto_num_workers(config, 100_000, _machine(16), windows, ranks)
    assert workers == expected and why in reason
    if windows is not None:  # each worker's epoch holds at least AUTO_MIN_BATCHES full batches
        assert windows // (ranks * workers) >= data.AUTO_MIN_BATCHES * 64 or workers == 1


def test_the_corpus_estimate_is_close_to_the_windows_in_the_files(pipeline_output):
    shards = data.list_shards(pipeline_output)
    assert [path for path, _ in shards] == data.list_files(pipeline_output)
    counts = Counter(window["site_id"] for window in data.scan_windows(pipeline_output))
    for site, actual in counts.items():  # one window length per site here: 50 s labeled, 10 s not
        # (6 fifty-second windows are estimated as 5; 216 ten-second ones elsewhere as 223)
        mine = [(path, size) for path, size in shards if _site_of(path) == site]
        estimate = estimated_windows(mine, first_record_bytes(mine[0][0]))
        assert 0.75 * actual <= estimate <= 1.1 * actual, (site, actual, estimate)
    assert estimated_windows([(shards[0][0], None)], 1000) is None


@pytest.mark.parametrize("files, expected", [
    ({"cpu.max": "800000 100000\n"}, 8),  # cgroup v2: a Kubernetes limit of 8 CPUs
    ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 CPUs: rounded up
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "400000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 4),  # cgroup v1
    ({"cpu,cpuacct/cpu.cfs_quota_us": "200000", "cpu,cpuacct/cpu.cfs_period_us": "100000"}, 2),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({}, None),
])
def test_a_container_cpu_quota_limits_the_machine(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert data.cgroup_cpu_limit(str(tmp_path)) == expected


def test_auto_workers_read_this_machine_and_the_launcher(pipeline_output, monkeypatch):
    here = data.Machine.here()
    assert 1 <= here.cpus <= here.total_cpus <= (data.cgroup_cpu_limit() or here.total_cpus)
    assert here.cuda == torch.cuda.is_available()
    assert here.memory is None or here.memory > 0
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "3")
    assert data.Machine.here().local_ranks == 3
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "2")
    assert data.Machine.here().local_ranks == 2
    record = len(next(read_records(list_files(pipeline_output)[0])))
    assert first_record_bytes(list_files(pipeline_output)[0]) == record > 19 * 2560 * 2


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


# ------------------------------------------------------------------------------------------------
# Filters, bucketing, batch format
# ------------------------------------------------------------------------------------------------


def test_filters(pipeline_output, records):
    def kept(**filters):
        config = LoaderConfig(batch_size=5, num_workers=0, filters=RecordFilter(**filters))
        return Counter(k for b in _epoch(pipeline_output, config) for k in _keys(b))

    def expect(predicate):
        return _record_keys(r for r in records if predicate(r))

    site = records[0].site_id.decode()
    assert kept(tasks=("hms6",)) == expect(lambda r: r.task == b"hms6") and 0 < len(kept(tasks=("hms6",))) < 30
    assert kept(tasks=("",)) == expect(lambda r: r.label == -1)
    assert kept(min_votes=3) == expect(lambda r: r.votes.sum() >= 3) and len(kept(min_votes=3)) > 0
    assert kept(max_artifact_score=0.3) == expect(lambda r: r.artifact_score <= 0.3)
    assert len(kept(max_artifact_score=0.3)) < 30  # the fixture has an artifactual window
    assert kept(sites=(site,)) == expect(lambda r: r.site_id.decode() == site)
    assert kept(exclude_sites=(site,)) == expect(lambda r: r.site_id.decode() != site)


def test_token_budget_buckets_by_length_within_budget(pipeline_output):
    budget = 2 * 12800
    config = LoaderConfig(batch_size=None, token_budget=budget, max_batch_size=6, num_workers=0)
    batches = _epoch(pipeline_output, config)
    sizes = Counter((b["eeg"].shape[-1], b["eeg"].shape[0]) for b in batches)
    assert all(n * t <= budget for t, n in sizes)
    assert {n for (t, n) in sizes if t == 12800} <= {1, 2} and (2560, 6) in sizes  # capped: 10 -> 6
    assert sum(t * n for (t, n), count in sizes.items() for _ in range(count)) == 6 * 12800 + 24 * 2560
    assert [b["eeg"].shape for b in batches] == [b["eeg"].shape for b in _epoch(pipeline_output, config)]
    patches = LoaderConfig(batch_size=None, token_budget=20, patch_size=256, max_batch_size=64, num_workers=0)
    assert patches.batch_size_for(2560) == 2 and patches.batch_size_for(12800) == 1
    fixed = _epoch(pipeline_output, LoaderConfig(batch_size=4, num_workers=0, filters=RecordFilter(tasks=("",))))
    assert [len(b["label"]) for b in fixed] == [4] * 6  # uniform lengths: a fixed batch size


def test_batch_format_feeds_the_model(pipeline_output):
    batches = _epoch(pipeline_output, LoaderConfig(batch_size=6, num_workers=0, shuffle=False))
    batch = next(b for b in batches if b["has_votes"].any())
    n, t = batch["eeg"].shape[0], batch["eeg"].shape[-1]
    assert batch["eeg"].dtype == torch.float32 and batch["eeg"].shape == (n, 19, t)
    assert batch["channel_mask"].dtype == torch.float32 and set(batch["channel_mask"].unique().tolist()) <= {0.0, 1.0}
    assert batch["ecg"].shape == (n, t) and batch["votes"].shape == batch["targets"].shape == (n, 6)
    voted = batch["has_votes"]
    assert voted.dtype == torch.bool and torch.allclose(batch["targets"][voted].sum(1), torch.ones(int(voted.sum())))
    assert torch.equal(batch["n_votes"], batch["votes"].sum(1)) and batch["label"].dtype == torch.int64
    assert all(torch.isnan(s) or s in (0.0, 1.0) for s in batch["sex"])
    assert all(isinstance(batch[k][0], str) for k in ("site_id", "subject_id", "recording_id", "task"))
    inputs = model_inputs(batch)
    assert set(inputs) == {"eeg", "channel_mask", "ecg", "age", "sex"}
    from eegfm.model import create_model

    model = create_model("tiny", head="hms6").eval()
    short = next(b for b in batches if b["eeg"].shape[-1] == 2560)  # 10 s windows: a quick forward
    small = model_inputs({k: v[:2] for k, v in short.items()})
    with torch.no_grad():
        assert model(**small).logits.shape == (2, 6)
    config = LoaderConfig(batch_size=6, num_workers=1, shuffle=False, eeg_dtype="float16")
    half = next(b for b in _epoch(pipeline_output, config) if b["has_votes"].any())  # via a worker
    assert half["eeg"].dtype == half["ecg"].dtype == torch.float16
    assert half["eeg"].untyped_storage().data_ptr() == half["ecg"].untyped_storage().data_ptr()  # one segment
    assert _same_batch({**half, "eeg": half["eeg"].float(), "ecg": half["ecg"].float()}, batch)


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
            rows.append(signal in (latest[0].samples("eeg"), latest[0].samples("ecg")))
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
            batches.append((epoch, index, last, batch and {k: v.clone() if isinstance(v, torch.Tensor) else v
                                                             for k, v in batch.items()}))
        copies.append((len(rows), sum(rows)))
    monkeypatch.undo()
    return batches, planned, copies


@pytest.mark.parametrize("config, n_shards, every_file", [
    (LoaderConfig(batch_size=4, shuffle_buffer=8, seed=3), 1, False),
    (LoaderConfig(batch_size=4, shuffle_buffer=64, seed=1, eeg_dtype="float16"), 1, False),  # epoch < buffer
    (LoaderConfig(batch_size=3, shuffle_buffer=8, drop_last=True), 3, False),  # a file on two shards
    (LoaderConfig(batch_size=4, shuffle_buffer=8, drop_last=True, seed=2), 1, False),  # 2 of 6 long windows dropped
    (LoaderConfig(batch_size=2, shuffle_buffer=5), 2, True),
    (LoaderConfig(batch_size=None, token_budget=4 * 12800, max_batch_size=6, shuffle_buffer=12), 1, False),
    (LoaderConfig(batch_size=4, shuffle=False), 2, False),
    (LoaderConfig(batch_size=4, filters=RecordFilter(tasks=("hms6",)), shuffle_buffer=4), 1, False),
])
def test_planned_epochs_are_the_same_batches_with_each_window_copied_on_arrival(pipeline_output, monkeypatch,
                                                                                 config, n_shards, every_file):
    # Once a shard has read its files through, it knows an epoch's windows in advance and copies
    # each one into its batch row as it arrives (while its record is in the CPU cache), once:
    # the batches must not change.
    with _num_threads(1):
        for shard in range(n_shards):
            planned, known, copies = _stream(pipeline_output, config, n_shards, shard, 4, monkeypatch, skip=1,
                                             every_file=every_file)
            reference, unknown, late = _stream(pipeline_output, config, n_shards, shard, 4, monkeypatch, skip=1,
                                               every_file=every_file, plan=False)
            assert [b[:3] for b in planned] == [b[:3] for b in reference] and len(planned) >= 4
            assert all(a[3] is b[3] is None or _same_batch(a[3], b[3]) for a, b in zip(planned, reference))
            assert known[0] is False and known[3] is True and not any(unknown)
            assert [b[3] is None for b in planned if b[0] == 3][:2] == [True, False]  # epoch 3 resumed at batch 1
            for epoch in range(4):
                delivered = [b[3] for b in planned if b[0] == epoch and b[3] is not None]
                samples = sum(len(b["label"]) + (int((~b["ecg"].isnan().all(1)).sum()) if "ecg" in b else 0)
                              for b in delivered)  # every window's eeg, and its ecg where it has one
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
    with pytest.raises(RuntimeError, match=rf"shard 0: epoch 1: expected the {len(records)} windows .* got "
                                           f"{len(records) - 1}: a file changed during training"):
        list(stream.batches(1))
    write_records(str(path), records + records[:1])  # epoch 1 read the shorter file through: its length is known
    with pytest.raises(RuntimeError, match=rf"{path}: record {len(records) - 1}: expected the windows an earlier "
                                           rf"pass read from it \({len(records) - 1} this epoch\); window "
                                           f"{len(records)} differs"):
        list(stream.batches(2))


def _record_keys_to(records) -> dict:
    return {_key(r.recording_id.decode(), r.window_start_index, r.label): r for r in records}


def test_ecg_is_nan_where_a_window_has_none(pipeline_output, records):
    with_ecg = records[0]
    without = dataclasses.replace(with_ecg, ecg=None)
    windows = [Window(encode_example(r), "mem", i) for i, r in enumerate([with_ecg, without])]
    batch = collate(windows)
    assert torch.isnan(batch["ecg"][1]).all() and not torch.isnan(batch["ecg"][0]).any()
    assert "ecg" not in collate(windows[1:])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_a_batch_holds_each_windows_decoded_fields(records, dtype):
    voted = next(r for r in records if r.votes.size and r.ecg is not None)
    same = [r for r in records if r.eeg.shape == voted.eeg.shape][:4]
    variants = [dataclasses.replace(same[0], age=42.0, sex=b"F")] + same[1:] + [
        dataclasses.replace(voted, ecg=None), dataclasses.replace(voted, votes=np.zeros(0, np.float32))]
    raws = [encode_example(r) for r in variants]
    raws.append(schema.len_field(1, b"".join(  # age and sex absent: their defaults
        _entry(name, *feature) for name, feature in sorted(schema.decode_features(raws[0]).items())
        if name not in ("age", "sex"))))
    windows = [Window(raw, "mem", i) for i, raw in enumerate(raws)]
    for threads in (1, 2):  # one conversion per window, or one for the batch
        with _num_threads(threads):
            batch = collate(windows, dtype)
        assert batch["eeg"].dtype == batch["ecg"].dtype == dtype and batch["eeg"].shape[0] == len(windows)
        for row, window in enumerate(windows):
            fields = window.decode()
            assert torch.equal(batch["eeg"][row], torch.from_numpy(fields["eeg"]).to(dtype))
            if fields["ecg"] is None:
                assert batch["ecg"][row].isnan().all()
            else:
                assert torch.equal(batch["ecg"][row], torch.from_numpy(fields["ecg"]).to(dtype))
            assert batch["channel_mask"][row].tolist() == fields["channel_mask"].tolist()
            assert batch["votes"][row].tolist() == (fields["votes"].tolist() or [0.0] * 6)
            assert batch["has_votes"][row] == bool(fields["votes"].size)
            assert batch["label"][row] == fields["label"] and batch["window_start"][row] == fields["window_start_index"]
            assert batch["site_id"][row] == fields["site_id"].decode() and batch["task"][row] == fields["task"].decode()
            torch.testing.assert_close(batch["age"][row:row + 1], encode_age([fields["age"]]), equal_nan=True)
            torch.testing.assert_close(batch["sex"][row:row + 1], encode_sex([fields["sex"]]), equal_nan=True)
    assert batch["age"][0] == 42 and batch["sex"][0] == 0 and batch["age"][-1].isnan() and batch["sex"][-1].isnan()


def test_samples_that_disagree_with_the_shape_name_the_record(records):
    record = records[0]
    n_times = record.eeg.shape[1]
    fields = schema.decode_features(encode_example(record))
    fields["shape"] = ("int64", [N_CHANS, n_times // 2])  # whole time points, but half as many
    raw = schema.len_field(1, b"".join(_entry(name, *feature) for name, feature in sorted(fields.items())))
    window = Window(raw, "f", 3)  # the samples alone say n_times: the shape is read with the fields
    with pytest.raises(SchemaError, match=f"^f: record 3: feature 'eeg': expected {N_CHANS * n_times} bytes "
                                          f"of float16 for shape \\[{N_CHANS}, {n_times // 2}\\]; got {2 * N_CHANS * n_times}$"):
        collate([window])


def test_votes_of_another_length_name_the_record(records):
    raw = _with_entry(encode_example(records[0]), _entry("votes", "float", [1.0, 2.0]))
    with pytest.raises(SchemaError, match="^f: record 3: feature 'votes': expected 0 or 6 values .*got 2$"):
        collate([Window(raw, "f", 3)])


@contextlib.contextmanager
def _num_threads(n):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_single_file_paths_and_empty_shards(pipeline_output, tmp_path):
    empty = tmp_path / "site-empty" / "part-00000-of-00001.tfrecord"
    empty.parent.mkdir()
    write_records(str(empty), [])
    with pytest.raises(FileNotFoundError, match="no non-empty TFRecord shards"):
        EEGLoader(tmp_path, rank=0, world_size=1)
    one = list_files(pipeline_output)[0]
    assert len(list_files([one])) == 1
    assert sum(len(b["label"]) for b in _epoch([one], LoaderConfig(num_workers=0))) == len(list(read_records(one)))


# ------------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": None}, "batch_size, LoaderConfig.token_budget: expected exactly one"),
    ({"num_workers": -1}, "LoaderConfig.num_workers: expected an integer >= 0 or 'auto'; got -1"),
    ({"num_workers": "all"}, "LoaderConfig.num_workers: expected an integer >= 0 or 'auto'; got 'all'"),
    ({"eeg_dtype": "bfloat16"}, "LoaderConfig.eeg_dtype: expected one of 'float32', 'float16'"),
    ({"shuffle": "yes"}, "LoaderConfig.shuffle: expected True or False"),
    ({"full_shuffle_mb": -1}, "LoaderConfig.full_shuffle_mb: expected a number of MiB >= 0; got -1"),
    ({"filters": RecordFilter(), "augment": {"noise_std": 1}}, "LoaderConfig.augment: expected a AugmentConfig"),
])
def test_loader_config_errors_name_the_field(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        LoaderConfig(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"crop_seconds": -1.0}, r"AugmentConfig.crop_seconds: expected a value in \[0.0, "),
    ({"crop_seconds": 0.001}, r"AugmentConfig.crop_seconds: expected 0 \(off\) or at least one sample \(1/256 s\)"),
    ({"channel_dropout": 1.0}, r"AugmentConfig.channel_dropout: expected a value in \[0.0, 1.0\)"),
    ({"amplitude_scale": (2.0, 1.0)}, "AugmentConfig.amplitude_scale: expected \\(low, high\\)"),
    ({"time_shift": 1.5}, "AugmentConfig.time_shift: expected an integer >= 0"),
])
def test_augment_config_errors_name_the_field(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        AugmentConfig(**kwargs)


def test_presets_and_filter_validation():
    assert data.finetune_config(min_votes=10).filters.min_votes == 10
    assert data.pretrain_config().batch_size_for(12800) == 32 and not data.eval_config().shuffle
    with pytest.raises(ConfigError, match="RecordFilter.sites: expected a list of strings"):
        RecordFilter(sites="site-a")
    with pytest.raises(ConfigError, match=r"RecordFilter.max_artifact_score: expected a value in \[0.0, 1.0\]"):
        RecordFilter(max_artifact_score=2)


# ------------------------------------------------------------------------------------------------
# Augmentations (pure functions)
# ------------------------------------------------------------------------------------------------


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def signals(records):
    eeg = torch.stack([torch.from_numpy(r.eeg.astype(np.float32)[:, :512]) for r in records[:8]])
    return eeg, torch.from_numpy(np.stack([r.channel_mask for r in records[:8]])).float()


def test_channel_dropout_zeroes_signal_and_mask(signals):
    eeg, mask = signals
    out, out_mask = aug.channel_dropout(eeg, mask, 0.5, _gen())
    dropped = (mask == 1) & (out_mask == 0)
    assert dropped.any() and (out[dropped] == 0).all()
    assert torch.equal(out[out_mask == 1], eeg[out_mask == 1]) and (out_mask <= mask).all()
    _, all_gone = aug.channel_dropout(eeg, mask, 0.999999, _gen())
    assert (all_gone.sum(1) == 1).all()  # one measured channel always survives


def test_time_shift_rolls_each_window_with_its_ecg(signals):
    eeg, _ = signals
    ecg = eeg[:, 0].clone()
    out, out_ecg = aug.time_shift(eeg, 50, _gen(), ecg=ecg)
    for i in range(len(eeg)):
        shifts = [s for s in range(-50, 51) if torch.equal(torch.roll(eeg[i], s, -1), out[i])]
        assert shifts and torch.equal(torch.roll(ecg[i], shifts[0], -1), out_ecg[i])


def test_random_crop_takes_crops_of_longer_windows_and_leaves_the_others_whole(signals):
    eeg, _ = signals  # 512 samples
    ecg = eeg[:, 3].clone()
    cropped, cropped_ecg = aug.random_crop(eeg, 412, _gen(), ecg=ecg)
    assert cropped.shape[-1] == cropped_ecg.shape[-1] == 412
    starts = [next(s for s in range(101) if torch.equal(eeg[i, :, s:s + 412], cropped[i])) for i in range(len(eeg))]
    assert len(set(starts)) > 1
    assert all(torch.equal(ecg[i, s:s + 412], cropped_ecg[i]) for i, s in enumerate(starts))
    for n_keep in (512, 2560):
        whole, whole_ecg = aug.random_crop(eeg, n_keep, _gen(), ecg=ecg)
        assert whole is eeg and whole_ecg is ecg
    # Through the config: seconds at the data contract's 256 Hz.
    config = AugmentConfig(crop_seconds=1.5)
    assert config.crop_samples == 384 and config.enabled
    batch = {"eeg": eeg, "channel_mask": torch.ones(len(eeg), 19)}
    assert aug.augment_batch(batch, config, _gen())["eeg"].shape[-1] == 384
    assert aug.augment_batch(batch, AugmentConfig(crop_seconds=10), _gen())["eeg"] is eeg


def test_the_cpu_tiny_fine_tuning_crops_fit_every_window_length():
    # Its 10 s crops are for HMS's 50 s windows; eegmat's 10 s windows (--task eegmat) stay whole.
    from eegfm.training.config import load_config

    config = AugmentConfig(**load_config("cpu-tiny", "finetune").loader.augment)
    for seconds, kept in ((50, 10), (10, 10), (4, 4)):
        eeg = torch.randn(2, N_CHANS, seconds * 256)
        batch = {"eeg": eeg, "channel_mask": torch.ones(2, N_CHANS)}
        assert aug.augment_batch(batch, config, _gen())["eeg"].shape[-1] == kept * 256


def test_amplitude_scale_and_noise(signals):
    eeg, _ = signals
    scaled = aug.amplitude_scale(eeg, 0.5, 2.0, _gen())
    gains = (scaled.flatten(1) / eeg.flatten(1)).nanmedian(1).values
    assert ((gains >= 0.5) & (gains <= 2.0)).all() and gains.std() > 0
    noisy = aug.gaussian_noise(eeg, 3.0, _gen())
    assert abs(float((noisy - eeg).std()) - 3.0) < 0.1
    assert torch.equal(aug.gaussian_noise(eeg, 3.0, _gen(1)), aug.gaussian_noise(eeg, 3.0, _gen(1)))


def _voted_batch(signals):
    eeg, mask = signals
    votes = torch.rand(len(eeg), 6, generator=_gen(5)) * 5
    has = torch.tensor([True] * 6 + [False] * 2)
    votes[~has] = 0
    targets = torch.where(has[:, None], votes / votes.sum(1, keepdim=True).clamp_min(1e-9), 0.0)
    return eeg, mask, targets, has


@pytest.mark.parametrize("mix", [aug.mixup, aug.cutmix])
def test_mixing_keeps_distributions_and_spares_unvoted(signals, mix):
    eeg, mask, targets, has = _voted_batch(signals)
    ecg = eeg[:, 1].clone()
    ecg[0] = float("nan")
    out = mix(eeg, targets, has, 0.4, _gen(), channel_mask=mask, ecg=ecg)
    assert torch.allclose(out.targets[has].sum(1), torch.ones(int(has.sum())))
    assert torch.equal(out.eeg[~has], eeg[~has]) and torch.equal(out.targets[~has], targets[~has])
    mixed = out.partner != torch.arange(len(eeg))
    assert mixed.any() and has[out.partner[has]].all()
    for i in torch.nonzero(mixed).flatten().tolist():
        p, w = int(out.partner[i]), float(out.weight[i])
        assert torch.allclose(out.targets[i], w * targets[i] + (1 - w) * targets[p], atol=1e-6)
        assert torch.equal(out.channel_mask[i], torch.minimum(mask[i], mask[p]))
        if mix is aug.cutmix:  # every sample comes from the window itself or its partner
            own = (out.eeg[i] == eeg[i]).all(0)
            assert ((own | (out.eeg[i] == eeg[p]).all(0)).all() and abs(own.float().mean() - w) < 0.02)
        assert torch.isnan(out.ecg[i]).all() == bool(torch.isnan(ecg[i]).all() or torch.isnan(ecg[p]).all())


def test_augment_batch_is_reproducible_from_its_generator(pipeline_output):
    batch = _epoch(pipeline_output, LoaderConfig(batch_size=6, num_workers=0, filters=RecordFilter(tasks=("hms6",))))[0]
    config = aug.finetune_augment()
    a, b = aug.augment_batch(batch, config, _gen(9)), aug.augment_batch(batch, config, _gen(9))
    assert _same_batch(a, b) and not torch.equal(a["eeg"], batch["eeg"])
    assert torch.allclose(a["targets"].sum(1), torch.ones(len(a["targets"])))
