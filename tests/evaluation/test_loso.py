"""Leave-one-site-out on real EEG: eegmat recordings in three site folders through the pipeline,
one fine-tuning fold per site."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from eegfm.evaluation import loso
from eegfm.training.data import scan_windows
from tests.conftest import REPO_ROOT, free_port
from tests.evaluation.conftest import QUICK
from tests.training.conftest import preprocess_corpus


def _loso(encoder: Path, data: Path, output: Path, *extra: str) -> int:
    return loso.main(["--pretrained", str(encoder), "--data", str(data), "--output", str(output), *QUICK, *extra])


def test_each_site_is_the_test_split_of_one_fold_and_the_report_gathers_them(three_sites, encoder, tmp_path, capsys):
    windows = scan_windows(three_sites)
    subjects: dict[str, set[str]] = {}
    for w in windows:
        subjects.setdefault(w["site_id"], set()).add(w["subject_id"])
    assert len(subjects) == 3 and all(len(s) == 2 for s in subjects.values())
    per_site = Counter(w["site_id"] for w in windows)
    out = tmp_path / "loso"
    assert _loso(encoder, three_sites, out) == 0
    report = json.loads((out / "loso.json").read_text())
    assert report["task"] == "eegmat" and set(report["sites"]) == set(subjects)
    for site, fold in report["sites"].items():
        split = json.loads((loso.fold_folder(out, site) / "run.json").read_text())["split"]
        # the held-out site's subjects are the test split, and only they; the others train and validate
        assert set(split["test"]) == subjects[site]
        assert set(split["train"]) | set(split["val"]) == set().union(*subjects.values()) - subjects[site]
        assert fold["test"]["n_windows"] == per_site[site] and fold["groups"] == {"train": 3, "val": 1, "test": 2}
    summary = report["summary"]
    assert summary["n_sites"] == 3 and summary["vs_baseline"]["metric"] == "kl"
    ratios = [f["test"]["kl"] / f["test"]["baseline_kl"] for f in report["sites"].values()]
    assert summary["vs_baseline"]["mean_ratio"] == pytest.approx(sum(ratios) / 3)
    assert summary["vs_baseline"]["worst_ratio"] == pytest.approx(max(ratios))
    assert (
        summary["balanced_accuracy"]["min"]
        <= summary["balanced_accuracy"]["mean"]
        <= summary["balanced_accuracy"]["max"]
    )
    # calibration across hospitals: each site's ECE, as its own eval.json reports it
    eces = [f["test"]["ece"] for f in report["sites"].values()]
    assert summary["ece"]["mean"] == pytest.approx(sum(eces) / 3) and summary["ece"]["max"] == pytest.approx(max(eces))
    assert (out / "loso.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # run again: the finished folds are kept, not retrained
    first = {site: (loso.fold_folder(out, site) / "eval.json").stat().st_mtime_ns for site in subjects}
    assert _loso(encoder, three_sites, out) == 0
    assert {site: (loso.fold_folder(out, site) / "eval.json").stat().st_mtime_ns for site in subjects} == first
    assert json.loads((out / "loso.json").read_text()) == report
    # ... unless the settings changed: those folds are not this evaluation's
    capsys.readouterr()
    assert _loso(encoder, three_sites, out, "--set", "optim.max_steps=3") == 2
    assert "holds a fold run with other settings (optim.max_steps)" in capsys.readouterr().err


def test_chosen_sites_only_and_clear_errors(three_sites, encoder, tmp_path, capsys):
    sites = sorted({w["site_id"] for w in scan_windows(three_sites)})
    out = tmp_path / "one"
    assert _loso(encoder, three_sites, out, "--sites", sites[1]) == 0
    assert list(json.loads((out / "loso.json").read_text())["sites"]) == [sites[1]]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [sites[1]]
    capsys.readouterr()
    assert _loso(encoder, three_sites, tmp_path / "x", "--sites", "site-0000000000000000") == 2
    assert (
        f"loso: --sites: site-0000000000000000 has no labeled window of 'eegmat_rest_task' in {three_sites}; "
        f"expected some of {', '.join(sites)}"
    ) in capsys.readouterr().err
    assert _loso(encoder, three_sites, tmp_path / "x", "--set", "test_fraction=0.2") == 2
    assert "leave-one-site-out makes each site the test split in turn" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_one_site_is_not_enough(shared_data, encoder, tmp_path, capsys):
    (tmp_path / "corpus").mkdir()
    for k in (1, 2):
        (tmp_path / "corpus" / f"Subject00_{k}.edf").symlink_to(shared_data / "eegmat" / f"Subject00_{k}.edf")
    preprocess_corpus(tmp_path / "corpus", tmp_path / "tfrecords")
    assert _loso(encoder, tmp_path / "tfrecords", tmp_path / "loso") == 2
    assert "1 site(s) with labeled windows of 'eegmat_rest_task'" in capsys.readouterr().err


def test_under_torchrun_every_fold_runs_on_both_ranks(three_sites, encoder, tmp_path):
    """Each fold joins a process group of its own in the same processes: the second used to read
    the first one's addresses from torchrun's store and fail to connect."""
    out = tmp_path / "ddp"
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "torchrun"),
            "--nproc_per_node=2",
            "--rdzv_backend=c10d",
            f"--rdzv_endpoint=127.0.0.1:{free_port()}",
            "-m",
            "eegfm.evaluation.loso",
            "--pretrained",
            str(encoder),
            "--data",
            str(three_sites),
            "--output",
            str(out),
            *QUICK,
            "--set",
            "backend=gloo",
        ],
        cwd=REPO_ROOT,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "loso.json").read_text())
    assert len(report["sites"]) == 3
    for site in report["sites"]:
        assert json.loads((loso.fold_folder(out, site) / "run.json").read_text())["world_size"] == 2
