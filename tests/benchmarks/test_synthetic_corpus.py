"""benchmarks/synthetic_corpus.py: a corpus in the pipeline's layout, written without Beam."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from benchmarks.synthetic_corpus import pink_noise, write_corpus
from eegfm.contract.schema import N_CHANS, decode_example
from eegfm.contract.tfrecord import read_records
from eegfm.training.data import EEGLoader, LoaderConfig, check_shards, describe, list_files

REPO = Path(__file__).resolve().parents[2]


def test_the_corpus_has_the_pipeline_layout_and_every_window_once(tmp_path):
    manifest = write_corpus(tmp_path, 50, windows_per_file=8, sites=3, seed=1)
    files = list_files(str(tmp_path))
    # 17/17/16 windows over 3 sites, in files of at most 8: 3 + 3 + 2
    assert len(files) == len(manifest["shards"]) == 8
    assert check_shards(tmp_path) == [] and sum(manifest["shard_records"].values()) == 50  # as training checks it
    per_site = Counter(p.split("/")[-2] for p in files)
    assert sorted(per_site.values()) == [2, 3, 3]
    assert all(p.endswith(f"-of-{per_site[p.split('/')[-2]]:05d}.tfrecord") for p in files)
    info = describe(tmp_path)
    assert info.counts["windows"] == 50 and len(info.sites) == 3 and info.sfreq == 256.0
    records = [decode_example(raw) for path in files for raw in read_records(path)]
    assert len(records) == 50
    assert Counter(r.site_id.decode() for r in records) == Counter(info.counts["per_site"])
    assert sum(info.counts["per_subject"].values()) == 50
    eeg = np.stack([np.asarray(r.eeg, np.float32) for r in records])
    assert eeg.shape == (50, N_CHANS, 2560)
    assert 15 < eeg.std() < 25  # about 20 µV RMS
    # Distinct windows, and the loader reads each one exactly once an epoch with 2 workers.
    assert len({r.eeg.tobytes() for r in records}) == 50
    loader = EEGLoader(
        str(tmp_path),
        LoaderConfig(batch_size=4, num_workers=2, eeg_dtype="float16"),
        rank=0,
        world_size=1,
        infinite=False,
    )
    seen = Counter(row.numpy().tobytes() for batch in loader for row in batch["eeg"])
    assert sum(seen.values()) == 50 and len(seen) == 50


def test_the_same_seed_writes_the_same_bytes_and_a_used_folder_is_refused(tmp_path):
    write_corpus(tmp_path / "a", 6, windows_per_file=4, sites=2, seed=3)
    write_corpus(tmp_path / "b", 6, windows_per_file=4, sites=2, seed=3)
    first = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").glob("*/*.tfrecord"))
    assert first == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").glob("*/*.tfrecord"))
    assert all((tmp_path / "a" / p).read_bytes() == (tmp_path / "b" / p).read_bytes() for p in first)
    with pytest.raises(FileExistsError, match="already holds TFRecord shards"):
        write_corpus(tmp_path / "a", 6)
    with pytest.raises(ValueError, match="windows_per_file"):
        write_corpus(tmp_path / "c", 6, windows_per_file=0)


def test_pink_noise_power_falls_with_frequency():
    noise = pink_noise(np.random.default_rng(0), (19, 2560))
    power = (np.abs(np.fft.rfft(noise, axis=-1)) ** 2).mean(0)
    assert noise.std(axis=-1) == pytest.approx(20.0, rel=1e-3)
    # 1/f: ten times the frequency, a tenth of the power (band means, 1-5 vs 10-50 bins)
    assert 5 < power[1:5].mean() / power[10:50].mean() < 40


def test_the_command_line_writes_the_corpus_and_names_bad_options(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "benchmarks/synthetic_corpus.py",
            "--output",
            str(tmp_path / "c"),
            "--windows",
            "7",
            "--windows-per-file",
            "3",
            "--sites",
            "1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["windows"] == 7 and summary["files"] == 3 and summary["bytes"] > 7 * 19 * 2560 * 2
    bad = subprocess.run(
        [sys.executable, "benchmarks/synthetic_corpus.py", "--output", str(tmp_path / "d"), "--windows", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "--windows: expected an integer >= 1; got 0" in bad.stderr


def test_the_loader_and_loop_benchmarks_run_on_a_synthetic_corpus(capsys):
    from benchmarks import train_loader, train_loop

    train_loader.main(
        [
            "--synthetic",
            "24",
            "--workers",
            "0",
            "--dtypes",
            "float16",
            "--rounds",
            "1",
            "--seconds",
            "0.2",
            "--batch-size",
            "4",
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert result["data"].startswith("synthetic: 24 windows") and result["files"] == 3
    measured = result["loader"]["workers=0,float16"]
    assert measured["windows_per_s"] > 0 and measured["windows_per_s_per_worker"] == measured["windows_per_s"]
    assert (
        train_loop.main(
            [
                "--synthetic",
                "24",
                "--config",
                "cpu-tiny",
                "--max-steps",
                "4",
                "--skip-steps",
                "2",
                "--log-every",
                "2",
                "--set",
                "loader.batch_size=4",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["synthetic_windows"] == 24 and result["copies"] == 1 and result["windows"] == 24
    assert result["steady"]["intervals"] == 1 and 0 < result["steady"]["data_wait_fraction"] < 1
