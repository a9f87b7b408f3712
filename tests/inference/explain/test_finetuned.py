"""The checks on a model that learned class-dependent patterns: the tiny model fine-tuned on the
simulated HMS corpus of the fine-tuning tests (six patterns with their own places and rhythms,
planted at strength 0.7-1.0). Its signed maps differ between classes; its summed |attribution|
maps are nearly the same for every class, the failure a published HMS report found.

Slow: the corpus, two pretraining steps and the fine-tuning run take about 2.5 minutes on two
shared cores, the explanations of six 10 s windows about 45 s."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from eegfm.contract.schema import SFREQ, decode_example
from eegfm.contract.tfrecord import read_records
from eegfm.inference.explain.attribution import ExplainConfig, binned, explain_window
from eegfm.inference.explain.checks import class_specificity, randomised_copy
from eegfm.model.modeling import EEGFMModel
from eegfm.training.data import list_files
from tests.training.test_finetune import RECIPE, hms_data, pretrained  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def hms_model(hms_data, pretrained, tmp_path_factory) -> Path:  # noqa: F811 - the imported fixtures
    out = tmp_path_factory.mktemp("explain-finetune") / "run"
    done = subprocess.run(
        [sys.executable, "-m", "eegfm.training.finetune", "--pretrained", str(pretrained.parent)]
        + ["--data", str(hms_data), "--task", "hms6", "--output", str(out), *RECIPE],
        cwd=REPO,
        env=dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="offline", WANDB_SILENT="true"),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out / "model"


def _one_window_per_class(data: Path) -> list:
    """The first window whose experts agreed on each class, its central 10 s (the crops trained on)."""
    chosen = {}
    for path in list_files(data):
        for raw in read_records(path):
            record = decode_example(raw)
            votes = np.asarray(record.votes, dtype=float)
            if record.task == b"hms6" and votes.sum() > 0 and votes.max() / votes.sum() >= 0.6:
                chosen.setdefault(int(votes.argmax()), record)
    windows = []
    for record in chosen.values():
        middle, half = record.n_times // 2, int(5 * SFREQ)
        eeg = np.asarray(record.eeg, dtype=np.float32)[:, middle - half : middle + half]
        windows.append(torch.from_numpy(np.ascontiguousarray(eeg)).unsqueeze(0))
    return windows


@pytest.mark.slow
def test_a_model_fine_tuned_on_class_specific_patterns_gives_class_specific_maps(hms_model, hms_data):  # noqa: F811
    model = EEGFMModel.from_pretrained(hms_model).float().eval()
    labels = [model.config.id2label[i] for i in range(len(model.config.id2label))]
    windows = _one_window_per_class(hms_data)
    assert len(windows) >= 4
    config = ExplainConfig()
    randomised = randomised_copy(model, config.seed)
    signed, magnitude, randomisation = [], [], []
    for eeg in windows:
        explanation = explain_window(
            model, {"eeg": eeg, "channel_mask": torch.ones(1, 19)}, labels, config, randomised=randomised
        )
        assert explanation.completeness.max() < 0.05
        signed.append(explanation.specificity["value"])
        randomisation.append(explanation.randomisation["correlation"])
        sizes = binned(explanation.attributions, 1.0, absolute=True)
        magnitude.append(class_specificity(sizes, explanation.predicted, labels, threshold=0.9)["value"])
    print(
        f"\nfine-tuned, per window: specificity (signed maps) {np.round(signed, 3)}; the same on |attribution| "
        f"maps {np.round(magnitude, 3)}; randomisation {np.round(randomisation, 3)}"
    )
    # Measured (seed 0, six windows): signed 0.26-0.67, |attribution| 0.96-0.97, randomisation 0.03-0.70.
    assert max(signed) <= config.specificity_threshold  # the classes' evidence differs ...
    assert min(magnitude) > config.specificity_threshold  # ... where summed |attribution| cannot show it
    assert np.median(randomisation) <= config.randomisation_threshold
