"""training.data.catalog: shards, manifests and a metadata pass over real pipeline output."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from eegfm.contract.tfrecord import CorruptTFRecordError, read_records, write_records
from eegfm.training import data
from eegfm.training.data import EEGLoader, LoaderConfig, list_files
from eegfm.training.data.catalog import _site_of, estimated_windows, first_record_bytes
from tests.training.data.conftest import _epoch


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
        s: 2 * n for s, n in one.counts["per_subject"].items()
    }

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
    counts = {
        **{path: 0 for path in files[first]},
        **{path: sum(1 for _ in read_records(path)) for path in files[second]},
    }
    loader = EEGLoader(
        [first, second],
        LoaderConfig(batch_size=4, num_workers=0, shuffle=False),
        rank=0,
        world_size=1,
        infinite=False,
        windows_per_file=counts,
    )
    assert loader.files == files[second] and sum(len(b["label"]) for b in loader) == 30


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


def test_single_file_paths_and_empty_shards(pipeline_output, tmp_path):
    empty = tmp_path / "site-empty" / "part-00000-of-00001.tfrecord"
    empty.parent.mkdir()
    write_records(str(empty), [])
    with pytest.raises(FileNotFoundError, match="no non-empty TFRecord shards"):
        EEGLoader(tmp_path, rank=0, world_size=1)
    one = list_files(pipeline_output)[0]
    assert len(list_files([one])) == 1
    assert sum(len(b["label"]) for b in _epoch([one], LoaderConfig(num_workers=0))) == len(list(read_records(one)))
