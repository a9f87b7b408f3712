"""The data-quality report on the job's run over all of ../shared/data: per-site numbers that add
up to the manifest's, the artifact scores of the stored windows, the picture and the command."""

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from eegfm.contract import schema
from eegfm.contract.channels import CANONICAL_CHANNELS
from eegfm.contract.tfrecord import read_records
from eegfm.pipelines.quality.site_report import artifact_scores, draw_report, site_summary

REPO = Path(__file__).resolve().parents[3]
PNG = b"\x89PNG\r\n\x1a\n"


def test_per_site_numbers_add_up_to_the_manifest_and_every_input_has_its_site(shared_run):
    _, manifest = shared_run
    sites = site_summary(manifest)
    counts = manifest["counts"]
    # Quarantined inputs (the BrainVision numbered channels, the 1-channel FIF ...) count against
    # their site too: the site is known before a file is opened.
    assert "(no site)" not in sites and set(sites) == set(manifest["sites"]) | {
        row["site"] for row in manifest["inputs"] if row["status"] == "quarantined"
    }
    assert sum(s["processed"] for s in sites.values()) == counts["processed"]
    assert sum(sum(s["quarantined"].values()) for s in sites.values()) == counts["quarantined"] >= 5
    assert sum(s["windows"] for s in sites.values()) == counts["windows"]
    assert sum(s["rejected"] for s in sites.values()) == counts["rejected_windows"]
    assert sum(s["repaired"] for s in sites.values()) == counts["repaired_windows"]
    assert sum(s["eeg_hours"] for s in sites.values()) <= counts["input_eeg_hours"] + 1e-6
    stages = Counter(row["stage"] for row in manifest["inputs"] if row["status"] == "quarantined")
    assert sum((s["quarantined"] for s in sites.values()), Counter()) == stages
    interpolated = Counter(
        ch for row in manifest["inputs"] if row["status"] == "processed" for ch in row["interpolated"]
    )
    assert sum((s["interpolated"] for s in sites.values()), Counter()) == interpolated
    # each site's windows by label, as the manifest now counts them
    assert {name: sum(s.get("labels", Counter()).values()) for name, s in sites.items()} == {
        name: counts["per_site"].get(name, 0) for name in sites
    }
    assert sum((s.get("labels", Counter()) for s in sites.values()), Counter()) == Counter(counts["per_label"])
    assert {label for s in sites.values() for label in s.get("labels", {})} >= {
        "eegmat_rest_task:0",
        "eegmat_rest_task:1",
        "unlabeled:-1",
    }


def test_artifact_scores_are_the_stored_windows_first_ones_per_site(shared_run):
    out, manifest = shared_run
    scores = artifact_scores(str(out), manifest, max_windows=5)
    assert set(scores) == set(manifest["sites"])
    for site, values in scores.items():
        shard = sorted((out / site).glob("part-*.tfrecord"))[0]
        stored = [float(schema.decode_example(r).artifact_score) for _, r in zip(range(5), read_records(str(shard)))]
        assert values.tolist() == stored and np.all((values >= 0) & (values <= 1))
    everything = artifact_scores(str(out), manifest, max_windows=10**6)
    assert sum(len(v) for v in everything.values()) == manifest["counts"]["windows"]


def test_the_picture_has_a_row_per_site_in_every_panel(shared_run):
    _, manifest = shared_run
    sites = site_summary(manifest)
    figure = draw_report(sites, {}, "title", manifest["classes"])
    recordings, windows, channels, quality, labels = figure.axes[:5]
    legend = [t.get_text() for t in labels.get_legend().get_texts()]
    assert legend[:2] == ["eegmat_rest_task: rest", "eegmat_rest_task: task"] and legend[-1] == "unlabeled"
    eegmat = next(k for k, s in enumerate(sites.values()) if s.get("labels", {}).get("eegmat_rest_task:0"))
    bars = [p for p in labels.patches if round(p.get_y() + p.get_height() / 2) == eegmat and p.get_width() > 0]
    rest_share = list(sites.values())[eegmat]["labels"]["eegmat_rest_task:0"] / list(sites.values())[eegmat]["windows"]
    assert bars[0].get_width() == pytest.approx(rest_share) and sum(p.get_width() for p in bars) == pytest.approx(1)
    assert [t.get_text() for t in recordings.get_yticklabels()] == list(sites)
    for axes in (windows, channels, quality, labels):
        assert axes.get_ylim() == recordings.get_ylim() == (len(sites) - 0.5, -0.5)
    shares = channels.get_images()[0].get_array()
    assert shares.shape == (len(sites), len(CANONICAL_CHANNELS))
    for row, site in zip(shares, sites.values()):
        expected = [site["interpolated"].get(ch, 0) / max(site["processed"], 1) for ch in CANONICAL_CHANNELS]
        assert np.allclose(row, expected)


def test_the_command_writes_the_png_and_names_what_it_lacks(shared_run, tmp_path):
    out, _ = shared_run
    target = tmp_path / "quality.png"
    done = subprocess.run(
        [sys.executable, "-m", "eegfm.pipelines.quality.site_report", str(out), "--report", str(target)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(target) and target.read_bytes()[:8] == PNG
    done = subprocess.run(
        [sys.executable, "-m", "eegfm.pipelines.quality.site_report", str(tmp_path / "nothing")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        f"report: {tmp_path / 'nothing' / 'manifest.json'}: no manifest; expected the "
        "--output folder of a finished pipelines.job.preprocess run"
    )
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "manifest.json").write_text(json.dumps({"inputs": []}))
    done = subprocess.run(
        [sys.executable, "-m", "eegfm.pipelines.quality.site_report", str(tmp_path / "empty")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "lists no processed or quarantined recording" in done.stderr
