"""What every eegfm classifier answers besides its encoder: a registry head (``model.heads``)
behind ``forward``, calibrated ``predict``, ``get_classifier`` and head-only training.

The eegfm encoder (``model.modeling.EEGFMModel``), the spectrogram CNN and the CNN-GRU share it, so
fine-tuning, the ensemble and serving treat them alike. A subclass (a Hugging Face
``PreTrainedModel``) sets ``self.head`` and defines ``forward_features(eeg, positions,
channel_mask, spectrogram, ecg, age, sex) -> EncoderOutput``, reading the inputs it uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers.utils import ModelOutput

from eegfm.model.encoder import EncoderOutput
from eegfm.model.heads import TaskHead


@dataclass
class EEGFMOutput(ModelOutput):
    """``loss`` (when ``labels`` are given), head ``logits`` and the encoder's features."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    pooled: torch.Tensor | None = None
    patch_tokens: torch.Tensor | None = None
    channel_tokens: torch.Tensor | None = None
    modality_gates: torch.Tensor | None = None
    band_features: torch.Tensor | None = None


class HeadClassifier:
    """Mixin: ``forward`` = ``forward_head(forward_features(...))`` (+ the head's loss)."""

    head: TaskHead

    def forward_head(self, features: EncoderOutput | torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(features, pre_logits=pre_logits)

    def forward(
        self,
        eeg: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        channel_mask: torch.Tensor | None = None,
        spectrogram: torch.Tensor | None = None,
        ecg: torch.Tensor | None = None,
        age: torch.Tensor | None = None,
        sex: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> EEGFMOutput | tuple[torch.Tensor, ...]:
        """Head logits and features; ``loss`` too when ``labels`` are given (see ``model.heads``)."""
        features = self.forward_features(eeg, positions, channel_mask, spectrogram, ecg, age, sex)
        logits = self.forward_head(features)
        loss = None if labels is None else self.head.loss(logits, labels.to(logits.device))
        output = EEGFMOutput(loss=loss, logits=logits, **features)
        return_dict = self.config.return_dict if return_dict is None else return_dict
        return output if return_dict else output.to_tuple()

    def predict(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Head probabilities (or values, for regression) in eval mode without gradients; the
        logits of classification heads are divided by ``config.temperature`` (calibration)."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                logits = self(*args, **kwargs).logits
                if self.config.head != "regression":
                    logits = logits / self.config.temperature
                return self.head.predict(logits)
        finally:
            self.train(was_training)

    def get_classifier(self) -> TaskHead:
        return self.head

    def freeze_encoder(self) -> None:
        """Train the head alone (fine-tuning's ``linear`` mode)."""
        for name, parameter in self.named_parameters():
            parameter.requires_grad = name.startswith("head.")
