"""Models whose explanations are known by construction, and a real EEG window to explain.

- ``ClassBlind``: every class logit is ``a_c * g(x) + b_c`` for one scalar ``g`` read from the real
  eegfm encoder's embedding: by the linearity of integrated gradients each class's attribution is
  ``a_c`` times the same map, so the maps' rank correlation is 1 (the failure a published HMS
  report found: one map whatever the class).
- ``ChannelReader``: class ``c`` reads the power of its own three channels only (weights drawn per
  channel), so its attribution lives on those channels and the classes' maps differ.
- ``InputTimesConstant``: logits ``s_c * mean(x)``: every attribution is ``s_c * x / N``, whatever the
  weights, so randomising them leaves the maps' ranking untouched.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from eegfm.contract.schema import CHANNELS, SFREQ
from eegfm.model.config import EEGFMConfig
from eegfm.model.modeling import EEGFMModel

HMS_LABELS = ["Seizure", "LPD", "GPD", "LRDA", "GRDA", "Other"]


class ClassBlind(nn.Module):
    def __init__(self, n_classes: int = 6, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.encoder_model = EEGFMModel(EEGFMConfig.from_preset("tiny", head="hms6", modalities=[]))
        self.g = nn.Linear(self.encoder_model.config.hidden_size, 1)
        self.scale = nn.Parameter(torch.tensor([1.0, -0.6, 2.0, 0.7, -1.3, 0.4][:n_classes]))
        self.bias = nn.Parameter(torch.linspace(-0.5, 0.5, n_classes))

    def forward(self, eeg: torch.Tensor, channel_mask: torch.Tensor | None = None, **_: torch.Tensor) -> torch.Tensor:
        pooled = self.encoder_model.forward_features(eeg, channel_mask=channel_mask).pooled
        return self.g(pooled) * self.scale + self.bias


class ChannelReader(nn.Module):
    """Class c: a weighted sum of the mean power of channels 3c .. 3c + 2 (scaled to ~1)."""

    def __init__(self, n_classes: int = 6, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        weights = torch.zeros(n_classes, len(CHANNELS))
        for c in range(n_classes):
            weights[c, 3 * c : 3 * c + 3] = 0.5 + torch.rand(3, generator=generator)
        self.weights = nn.Parameter(weights)

    def forward(self, eeg: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
        power = (eeg / 100.0).square().mean(dim=-1)  # (B, C)
        return power @ self.weights.T


class InputTimesConstant(nn.Module):
    def __init__(self, n_classes: int = 6) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.linspace(0.5, 2.0, n_classes))

    def forward(self, eeg: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
        return eeg.mean(dim=(1, 2)).unsqueeze(-1) * self.scale


def real_window(shared_data: Path, seconds: float = 10.0, start_s: float = 30.0) -> torch.Tensor:
    """(1, 19, seconds * 256) microvolts of eegmat Subject00_1 (resting EEG): its 19 10-20 channels
    in canonical order, high-passed at 0.5 Hz, resampled to 256 Hz."""
    import mne

    raw = mne.io.read_raw_edf(shared_data / "eegmat" / "Subject00_1.edf", preload=True, verbose="error")
    raw.pick([f"EEG {name}" for name in CHANNELS]).crop(start_s, start_s + seconds + 1)
    raw.filter(0.5, None, verbose="error").resample(SFREQ, verbose="error")
    data = raw.get_data(units="uV")[:, : int(seconds * SFREQ)]
    return torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32)).unsqueeze(0)
