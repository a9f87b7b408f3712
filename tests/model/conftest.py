"""Shared set-up for the model tests: seeded models, input batches, real EEG windows, ONNX exports.

ONNX export is the slow step (tens of seconds per preset), so each preset is exported at most
once per session (``onnx_export``) and reused by every test that needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers.utils import logging as hf_logging

from model import EEGFMModel, create_model, positions_for
from model.config import HMS_CLASSES
from pipelines.channels import CANONICAL_CHANNELS, canonical_name

PRESETS = ("tiny", "base", "large")
HEADS = ("hms6", "binary", "multiclass", "regression", "sleep_stage")
SFREQ = 256

hf_logging.disable_progress_bar()
hf_logging.set_verbosity_error()


@pytest.fixture(autouse=True)
def _deterministic() -> Iterator[None]:
    """Seeded, deterministic kernels for every model test; global flags restored afterwards."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield
    torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


def head_overrides(head: str) -> dict:
    """Config overrides that give each head a valid label set."""
    if head == "multiclass":
        return {"head": head, "id2label": {0: "rest", 1: "task", 2: "other"}}
    if head == "regression":
        return {"head": head, "id2label": {0: "age", 1: "score"}}
    return {"head": head}


def expected_logits_shape(head: str, batch: int) -> tuple[int, ...]:
    return {"hms6": (batch, len(HMS_CLASSES)), "binary": (batch,), "multiclass": (batch, 3),
            "regression": (batch, 2), "sleep_stage": (batch, 5)}[head]


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
        inputs["spectrogram"] = torch.rand(batch, 400, n_frames, generator=generator) * 50
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


@pytest.fixture(scope="session")
def onnx_export(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[EEGFMModel, Path]]:
    """``onnx_export(preset)`` -> (model, path of its ONNX export); each preset exported once."""
    from model.export import export_onnx

    cache: dict[str, tuple[EEGFMModel, Path]] = {}

    def get(preset: str) -> tuple[EEGFMModel, Path]:
        if preset not in cache:
            model = make_model(preset, seed=3)
            path = export_onnx(model, tmp_path_factory.mktemp("onnx") / f"{preset}.onnx")
            cache[preset] = (model, path)
        return cache[preset]

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


__all__ = ["HEADS", "PRESETS", "expected_logits_shape", "make_batch", "make_model", "make_targets",
           "head_overrides", "positions_for"]
