"""What the task models that read the 19 canonical channels alone, in the data contract's order
(``model.eeg_cnn_gru``, ``model.patch_transformer``), share: their input check (no other montage,
no positions), their config's input fields and the classifier shell around their encoder."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from transformers import PreTrainedModel

from eegfm.model.classifier import HeadClassifier
from eegfm.model.encoder import EncoderOutput
from eegfm.model.heads import TaskHead, create_head
from eegfm.model.task_config import TaskModelConfig

N_CANONICAL = 19


class CanonicalEEGConfig(TaskModelConfig):
    """``input_scale_uv`` divides the µV before the first layer; no other modality is read."""

    input_scale_uv: float = 100.0
    spectrogram_bins: int = 400  # not read: for the code that builds every model's example inputs
    fixed_channels: int = N_CANONICAL  # the ONNX export fixes the channel count to it

    def __post_init__(self, **kwargs: Any) -> None:
        self.modalities = []
        super().__post_init__(**kwargs)

    def validate_fields(self) -> None:
        if isinstance(self.input_scale_uv, bool) or not self.input_scale_uv > 0:
            self.fail("input_scale_uv", "a positive number", self.input_scale_uv)


def canonical_inputs(
    eeg: Any, positions: torch.Tensor | None, channel_mask: torch.Tensor | None, min_times: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """``eeg`` checked as (B, 19, T >= min_times) and the channel mask (B, 19) (all measured if None)."""
    if not isinstance(eeg, torch.Tensor) or eeg.dim() != 3 or eeg.shape[1] != N_CANONICAL or eeg.shape[2] < min_times:
        got = tuple(eeg.shape) if isinstance(eeg, torch.Tensor) else type(eeg).__name__
        raise ValueError(f"eeg: expected (batch, 19, n_times >= {min_times}) in the canonical channel order; got {got}")
    if positions is not None and positions.shape[-2] != N_CANONICAL:
        raise ValueError(f"positions: this model reads the 19 canonical channels only; got {tuple(positions.shape)}")
    mask = eeg.new_ones(eeg.shape[:2]) if channel_mask is None else channel_mask.reshape(-1, N_CANONICAL)
    return eeg, mask.to(eeg).expand(eeg.shape[0], N_CANONICAL)


class CanonicalEEGModel(HeadClassifier, PreTrainedModel):
    """An encoder (``encoder_class``: (B, 19, T) scaled EEG and (B, 19) mask -> (B, width)) with one
    task head; Hugging Face ``save_pretrained`` / ``from_pretrained``."""

    config: CanonicalEEGConfig
    encoder_class: ClassVar[type[nn.Module]]
    main_input_name = "eeg"

    def __init__(self, config: CanonicalEEGConfig) -> None:
        super().__init__(config)
        self.encoder = self.encoder_class(config)
        self.head: TaskHead = create_head(config.head, config)
        self.post_init()

    @property
    def min_times(self) -> int:
        """The shortest window, in samples, the encoder reads."""
        return 1

    def forward_features(
        self, eeg: torch.Tensor, positions: Any = None, channel_mask: torch.Tensor | None = None, *_: Any
    ) -> EncoderOutput:
        eeg, mask = canonical_inputs(eeg, positions, channel_mask, self.min_times)
        eeg = eeg.to(device=self.device, dtype=self.dtype) / self.config.input_scale_uv
        return EncoderOutput(pooled=self.encoder(eeg, mask.to(eeg)))

    def unfreeze_encoder(self, last_n_layers: int | None = None) -> None:
        """Train everything (fine-tuning from scratch; ``last_n_layers`` is not used)."""
        for parameter in self.parameters():
            parameter.requires_grad = True
