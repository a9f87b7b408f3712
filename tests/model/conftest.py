"""Shared set-up for the model tests: seeded models, input batches, real EEG windows, ONNX exports.

ONNX export is the slow step (15-25 s for tiny/base on one core, about a minute for large: the
dynamo exporter traces the model twice with symbolic shapes), so each export is made at most once
per test run (``onnx_export``) and every check runs on that one graph. The default run exports two
graphs: ``tiny`` carrying all five heads at once (``AllHeadsExportable``: one encoder, one output
per head) and ``base`` with ``hms6``; the slow run adds one real ``export_onnx`` per preset x head.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from transformers.utils import logging as hf_logging

from eegfm.contract.channels import CANONICAL_CHANNELS, canonical_name
from eegfm.core.tasks import HMS_CLASSES
from eegfm.model import EEGFMModel, create_model, positions_for
from eegfm.model.export import ExportableEEGFM

PRESETS = ("tiny", "base", "large")
HEADS = ("hms6", "binary", "multiclass", "regression", "sleep_stage")
SFREQ = 256

hf_logging.disable_progress_bar()
hf_logging.set_verbosity_error()


@pytest.fixture(autouse=True)
def _deterministic() -> Iterator[None]:
    """Seeded, deterministic kernels for every model test, on one intra-op thread; global flags
    restored afterwards.

    One thread: the models here are small, and on a 2-core machine shared with other jobs two
    OpenMP threads wait on each other at every op (a tiny forward pass took 10x longer under
    load); one thread keeps the default run near a minute either way.
    """
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.get_num_threads(),
    )
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_num_threads(1)
    yield
    torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
    torch.set_num_threads(previous[2])


HEAD_LABELS = {"multiclass": {0: "rest", 1: "task", 2: "other"}, "regression": {0: "age", 1: "score"}}


def head_overrides(head: str) -> dict:
    """Config overrides that give each head a valid label set."""
    if head in HEAD_LABELS:
        return {"head": head, "id2label": HEAD_LABELS[head]}
    return {"head": head}


def expected_logits_shape(head: str, batch: int) -> tuple[int, ...]:
    return {
        "hms6": (batch, len(HMS_CLASSES)),
        "binary": (batch,),
        "multiclass": (batch, 3),
        "regression": (batch, 2),
        "sleep_stage": (batch, 5),
    }[head]


def make_model(preset: str, head: str = "hms6", seed: int = 0, **overrides) -> EEGFMModel:
    torch.manual_seed(seed)
    return create_model(preset, **head_overrides(head), **overrides).eval()


def make_batch(
    batch: int = 2,
    seconds: float = 5,
    n_chans: int = 19,
    *,
    modalities: tuple[str, ...] = (),
    n_frames: int = 40,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Random EEG-like inputs (tens of microvolts) with the requested optional modalities."""
    generator = torch.Generator().manual_seed(seed)
    n_times = int(seconds * SFREQ)
    inputs: dict[str, torch.Tensor] = {"eeg": 20.0 * torch.randn(batch, n_chans, n_times, generator=generator)}
    if "spectrogram" in modalities:
        # log1p µV²/Hz, as the records store it (0 .. 8: power up to about 3000 µV²/Hz)
        inputs["spectrogram"] = torch.rand(batch, 400, n_frames, generator=generator) * 8
    if "ecg" in modalities:
        inputs["ecg"] = 300.0 * torch.randn(batch, n_times, generator=generator)
    if "clinical" in modalities:
        inputs["age"] = torch.linspace(20, 80, batch)
        inputs["sex"] = (torch.arange(batch) % 2).float()
    return inputs


def make_targets(head: str, batch: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    if head == "hms6":
        return torch.randint(0, 5, (batch, 6), generator=generator).float() + torch.eye(6)[torch.arange(batch) % 6]
    if head == "binary":
        return (torch.arange(batch) % 2).float()
    if head == "multiclass":
        return torch.arange(batch) % 3
    if head == "regression":
        return torch.randn(batch, 2, generator=generator)
    return torch.arange(batch) % 5


class AllHeadsExportable(ExportableEEGFM):
    """(logits, embedding, sample_logits) of the first model, then ``logits_<head>`` of every other model's head
    applied to the same features: one export checks every head (the models share one encoder)."""

    def __init__(self, models: dict[str, EEGFMModel]) -> None:
        first, *others = models
        super().__init__(models[first])
        self.extra = nn.ModuleDict({name: models[name].head for name in others})

    def output_names(self) -> list[str]:
        return super().output_names() + [f"logits_{name}" for name in self.extra]

    def forward(
        self, eeg: torch.Tensor, positions: torch.Tensor, channel_mask: torch.Tensor, *optional: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        extra = dict(zip(self.input_names()[3:], optional))
        features = self.model.forward_features(eeg, positions, channel_mask, **extra)
        return (*self.outputs_of(features), *(head(features) for head in self.extra.values()))


def models_for_every_head(preset: str, seed: int = 3) -> dict[str, EEGFMModel]:
    """One model per head, hms6 first, all with the same encoder weights (fresh heads)."""
    main = make_model(preset, "hms6", seed=seed)
    models = {"hms6": main}
    for head in HEADS[1:]:
        other = copy.deepcopy(main)
        other.reset_head(head, HEAD_LABELS.get(head))
        models[head] = other.eval()
    return models


@pytest.fixture(scope="session")
def onnx_export(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], tuple[dict[str, EEGFMModel], Path]]:
    """``onnx_export(preset, head)`` -> ({head: model}, path of the ONNX export), made once.

    ``head="all"``: one graph with every head (``AllHeadsExportable``), output ``logits`` for
    hms6 and ``logits_<head>`` for the others; any other value: ``export_onnx`` of that model.
    Exports keep the channel count dynamic (``export_onnx``'s default).
    """
    from eegfm.model.export import export_onnx

    cache: dict[tuple[str, str], tuple[dict[str, EEGFMModel], Path]] = {}

    def get(preset: str, head: str) -> tuple[dict[str, EEGFMModel], Path]:
        if (preset, head) not in cache:
            path = tmp_path_factory.mktemp("onnx") / f"{preset}-{head}.onnx"
            if head == "all":
                models = models_for_every_head(preset)
                export_onnx(AllHeadsExportable(models), path)
            else:
                models = {head: make_model(preset, head, seed=3)}
                export_onnx(models[head], path)
            cache[(preset, head)] = (models, path)
        return cache[(preset, head)]

    return get


def _read_eegmat(path: Path, seconds: int) -> np.ndarray:
    """(n_windows, 19, seconds * 256) microvolts: canonical channels, 0.5 Hz high-pass, 256 Hz."""
    import mne
    import scipy.signal

    raw = mne.io.read_raw_edf(path, preload=True, verbose="ERROR")
    names = {canonical_name(c): c for c in raw.ch_names if canonical_name(c)}
    data = raw.get_data(picks=[names[c] for c in CANONICAL_CHANNELS]) * 1e6
    sfreq = raw.info["sfreq"]
    sos = scipy.signal.butter(4, 0.5, "highpass", fs=sfreq, output="sos")
    data = scipy.signal.sosfiltfilt(sos, data, axis=-1)
    up, down = SFREQ, int(sfreq)
    gcd = np.gcd(up, down)
    data = scipy.signal.resample_poly(data, up // gcd, down // gcd, axis=-1).astype(np.float32)
    n = data.shape[1] // (seconds * SFREQ)
    return data[:, : n * seconds * SFREQ].reshape(19, n, seconds * SFREQ).transpose(1, 0, 2)


@pytest.fixture(scope="session")
def eegmat_windows(shared_data: Path) -> torch.Tensor:
    """Real resting-state EEG (PhysioNet eegmat, subjects 00-03) cut into 5 s windows."""
    files = sorted((shared_data / "eegmat").glob("Subject0[0-3]_1.edf"))
    assert len(files) == 4, f"expected 4 eegmat rest recordings in {shared_data / 'eegmat'}"
    return torch.from_numpy(np.concatenate([_read_eegmat(f, seconds=5) for f in files]))


@pytest.fixture(scope="session")
def eegmat_rest_10s(shared_data: Path) -> torch.Tensor:
    """Subject 00's resting recording (PhysioNet eegmat) in 10 s windows, (18, 19, 2560) µV."""
    return torch.from_numpy(_read_eegmat(shared_data / "eegmat" / "Subject00_1.edf", seconds=10))


__all__ = [
    "HEADS",
    "HEAD_LABELS",
    "PRESETS",
    "AllHeadsExportable",
    "expected_logits_shape",
    "make_batch",
    "make_model",
    "make_targets",
    "head_overrides",
    "models_for_every_head",
    "positions_for",
]
