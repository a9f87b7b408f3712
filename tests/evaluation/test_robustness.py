"""Robustness on real EEG: the perturbations do what they claim on eegmat windows, and a
fine-tuning run's held-out split is scored clean and under each of them, reproducibly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from eegfm.contract.schema import SFREQ
from eegfm.evaluation import robustness
from eegfm.evaluation.perturbations import add_mains, add_noise, drop_electrodes, scale_gain
from eegfm.training import finetune
from eegfm.training.data import EEGLoader, LoaderConfig, scan_windows
from tests.evaluation.conftest import QUICK


@pytest.fixture(scope="module")
def batch(three_sites) -> dict:
    loader = EEGLoader(
        str(three_sites), LoaderConfig(batch_size=8, num_workers=0, shuffle=False), rank=0, world_size=1, infinite=False
    )
    return next(iter(loader))


def test_the_perturbations_reach_their_severity_on_real_windows(batch):
    eeg, mask = batch["eeg"].float(), batch["channel_mask"].float()
    power = eeg.pow(2).mean(-1)
    noisy, same = add_noise(eeg, mask, 10.0, torch.Generator().manual_seed(0))
    snr = 10 * torch.log10(power / (noisy - eeg).pow(2).mean(-1))
    assert same is mask and torch.allclose(snr, torch.full_like(snr, 10.0), atol=0.5)
    assert torch.equal(scale_gain(eeg, mask, 2.0, torch.Generator())[0], 2 * eeg)

    lost, lost_mask = drop_electrodes(eeg, mask, 3, torch.Generator().manual_seed(0))
    gone = (mask > 0.5) & (lost_mask < 0.5)
    assert gone.sum(1).tolist() == [3] * len(eeg)  # three measured channels per window, no other
    assert torch.all(lost[gone] == 0) and torch.equal(lost[~gone], eeg[~gone])
    again, _ = drop_electrodes(eeg, mask, 3, torch.Generator().manual_seed(0))
    assert torch.equal(again, lost)
    everything, none_left = drop_electrodes(eeg, mask, 25, torch.Generator().manual_seed(0))
    assert torch.all(none_left == 0) and torch.all(everything == 0)

    hum = add_mains(eeg, mask, 1.0, torch.Generator().manual_seed(0), freq=60.0)[0] - eeg
    spectrum = np.abs(np.fft.rfft(hum[0, 0].numpy()))
    assert np.fft.rfftfreq(hum.shape[-1], 1 / SFREQ)[spectrum.argmax()] == pytest.approx(60.0, abs=0.2)
    assert torch.allclose(hum.pow(2).mean(-1).sqrt(), power.sqrt(), rtol=0.02)


@pytest.fixture(scope="module")
def finetuned(three_sites, encoder, tmp_path_factory) -> Path:
    """A quick fine-tuning run with a test split: 4 subjects train, 1 validates, 1 tests."""
    run = tmp_path_factory.mktemp("robust") / "run"
    assert (
        finetune.main(
            [
                "--pretrained",
                str(encoder),
                "--data",
                str(three_sites),
                "--output",
                str(run),
                *QUICK,
                "--set",
                "val_fraction=0.2",
                "--set",
                "test_fraction=0.2",
            ]
        )
        == 0
    )
    return run


def test_a_runs_test_split_is_scored_clean_and_perturbed_reproducibly(finetuned, three_sites, tmp_path):
    split = json.loads((finetuned / "run.json").read_text())["split"]
    eval_report = json.loads((finetuned / "eval.json").read_text())
    windows = [w for w in scan_windows(three_sites) if w["subject_id"] in split["test"]]
    report = robustness.run(["--run", str(finetuned), "--data", str(three_sites), "--output", str(tmp_path / "a")])
    assert report["split"] == "test" and report["metric"] == "kl" and report["clean"]["n_windows"] == len(windows)
    # the clean numbers are fine-tuning's own on its test split
    assert report["clean"]["kl"] == pytest.approx(eval_report["test"]["kl"], rel=1e-4)
    assert set(report["perturbations"]) == {"noise", "gain", "electrodes", "mains"}
    for part in report["perturbations"].values():
        assert len(part["conditions"]) == 4
        for row in part["conditions"]:
            assert row["n_windows"] == len(windows)
            assert row["vs_clean"] == pytest.approx(row["kl"] / report["clean"]["kl"])
    # a 0 dB SNR changes what the model sees: its numbers move
    assert report["perturbations"]["noise"]["conditions"][-1]["kl"] != pytest.approx(report["clean"]["kl"], rel=1e-6)
    # calibration under shift too: every condition's ECE, drawn in a second row of panels
    assert report["clean"]["ece"] == pytest.approx(eval_report["test"]["ece"], rel=1e-4, abs=1e-9)
    assert all(0 <= row["ece"] <= 1 for part in report["perturbations"].values() for row in part["conditions"])
    from PIL import Image

    with Image.open(tmp_path / "a" / "robustness.png") as image:
        assert image.format == "PNG" and image.size == (round(110 * 3.3 * 4), round(110 * 6.4))
    assert json.loads((tmp_path / "a" / "robustness.json").read_text()) == json.loads(json.dumps(report))

    same = robustness.run(["--run", str(finetuned), "--data", str(three_sites), "--output", str(tmp_path / "b")])
    assert same == report  # seeded draws: the same numbers
    other = robustness.run(
        [
            "--run",
            str(finetuned),
            "--data",
            str(three_sites),
            "--output",
            str(tmp_path / "c"),
            "--seed",
            "1",
            "--split",
            "val",
            "--uncalibrated",
        ]
    )
    assert other["split"] == "val" and other["clean"]["n_windows"] == sum(
        w["subject_id"] in split["val"] for w in scan_windows(three_sites)
    )
    # the logits as trained: eval.json's validation numbers before temperature scaling
    saved = json.loads((finetuned / "model" / "config.json").read_text())["temperature"]
    assert report["temperature"] == saved != 1.0 and other["temperature"] == 1.0
    assert other["clean"]["kl"] == pytest.approx(eval_report["val"]["kl"], rel=1e-4)


def test_what_is_not_a_fine_tuning_run_is_refused_by_name(encoder, finetuned, three_sites, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        robustness.run(["--run", str(encoder.parent), "--data", str(three_sites)])
    assert stopped.value.code == 2
    assert (
        f"--run {encoder.parent}: expected a training.finetune run folder (run.json and model/ with "
        "config.json); run.json is missing"
    ) in capsys.readouterr().err
    run = tmp_path / "no-test"
    assert finetune.main(["--pretrained", str(encoder), "--data", str(three_sites), "--output", str(run), *QUICK]) == 0
    with pytest.raises(SystemExit):
        robustness.run(["--run", str(run), "--data", str(three_sites), "--split", "test"])
    assert "--split test: the run has no test split (its split: " in capsys.readouterr().err
