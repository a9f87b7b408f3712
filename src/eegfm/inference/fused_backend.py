"""The backend of a fused model (``model.fused``, a benchmark row exported by ``eegfm-benchmark
--export``): its networks run on the backend the predictor names (PyTorch, ONNX Runtime ...),
its readout and EEGNet parts in numpy and torch, and the parts are fused.

It answers as every backend does (``inference.backends``), with the fused class probabilities'
logarithms as logits: the model's temperature is 1 and a softmax gives the probabilities back.
No MC-dropout samples: the row's parts are not sampled.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from eegfm.metrics.losses import binary_logits
from eegfm.model.architectures import load_model_config
from eegfm.model.fused import FusedModel


def calibrated_probabilities(logits: torch.Tensor, temperature: float) -> np.ndarray:
    """[B, C] float64 probabilities of a classifier's logits divided by its ``temperature`` (a
    binary head's one logit read as ``[0, z]``)."""
    logits = logits.double().reshape(len(logits), -1)
    if logits.shape[-1] == 1:
        logits = binary_logits(logits[:, 0])
    return torch.softmax(logits / temperature, dim=-1).numpy()


class FusedBackend:
    def __init__(self, model_dir: Path, make_network_backend, *, calibrated: bool = True) -> None:
        self.model = FusedModel.load(model_dir)
        self.networks = []
        for folder in self.model.network_folders:
            config = load_model_config(folder)
            temperature = float(config.temperature or 1.0) if calibrated else 1.0
            self.networks.append((make_network_backend(folder, int(config.patch_size)), temperature))
        inner = sorted({backend.name for backend, _ in self.networks})
        self.name = "fused" + (f" ({'/'.join(inner)} networks)" if inner else "")

    def probabilities(self, inputs: Mapping[str, torch.Tensor]) -> np.ndarray:
        """[B, C] the fused class probabilities of a batch of model inputs."""
        network = None
        if self.networks:
            found = [calibrated_probabilities(b.logits(inputs), t) for b, t in self.networks]
            network = np.mean(found, axis=0)
        eeg, mask = inputs["eeg"].numpy(), inputs["channel_mask"].numpy()
        return self.model.probabilities(eeg, mask, network=network)

    def logits(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return torch.from_numpy(np.log(np.clip(self.probabilities(inputs), 1e-300, 1.0)))

    def logits_and_samples(self, inputs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, None]:
        return self.logits(inputs), None
