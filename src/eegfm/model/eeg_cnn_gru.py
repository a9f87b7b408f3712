"""A small 1-D CNN-GRU on the raw 19-channel EEG: a third, cheap ensemble member beside the eegfm
encoder and the spectrogram CNN.

Input: ``eeg`` (B, 19, T) µV at 256 Hz in the data contract's canonical channel order (any T >= 1;
``positions`` must be omitted or the canonical ones: the network has one input per channel) and
``channel_mask`` (B, 19), 1 measured, 0 interpolated. The EEG is divided by ``input_scale_uv`` and
the mask is appended as 19 more input channels, so the network knows which signals are
interpolated. Strided 1-D convolutions (BatchNorm, SiLU; padding keeps every T >= 1 valid) reduce
the rate by the product of ``conv_strides`` (4 x 4 x 4: 4 frames per second), a bidirectional GRU
reads the frames, and the mean and maximum over time of its outputs are the pooled features a
registered head reads. Call interface and outputs are the eegfm classifier's; other inputs
(spectrogram, ECG, age, sex) are accepted and ignored. PyTorch only: ``torch.export`` unrolls the
GRU's loop over frames for the traced length, so no ONNX graph with a dynamic time dimension can be
made (:meth:`EEGCNNGRU.exportable` says so); serve it, or an ensemble with it, with the torch backend.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import initialization as init

from eegfm.model.canonical import N_CANONICAL, CanonicalEEGConfig, CanonicalEEGModel


class EEGCNNGRUConfig(CanonicalEEGConfig):
    """Configuration of :class:`EEGCNNGRU` (``model_type`` ``eegfm_eeg_cnn_gru``).

    ``conv_widths`` / ``conv_strides``: one strided convolution (kernel ``kernel_size``) per entry;
    ``gru_hidden``: units per direction; the pooled features are ``4 * gru_hidden`` wide (mean and
    max of both directions). ``head``, ``head_dropout``, ``id2label``, ``temperature``: as in
    ``EEGFMConfig``. ``modalities`` is empty and ``patch_size`` 1, for code that asks every model.
    """

    model_type = "eegfm_eeg_cnn_gru"
    presets = {
        "tiny": dict(conv_widths=[16, 24, 32], gru_hidden=16),
        "base": {},
    }

    conv_widths: list[int] | None = None
    conv_strides: list[int] | None = None
    kernel_size: int = 7
    gru_hidden: int = 64
    dropout: float = 0.1

    def __post_init__(self, **kwargs: Any) -> None:
        self.conv_widths = [32, 64, 96] if self.conv_widths is None else list(self.conv_widths)
        self.conv_strides = [4] * len(self.conv_widths) if self.conv_strides is None else list(self.conv_strides)
        super().__post_init__(**kwargs)

    @property
    def hidden_size(self) -> int:
        return 4 * self.gru_hidden

    def validate_fields(self) -> None:
        super().validate_fields()
        if not self.conv_widths or len(self.conv_widths) != len(self.conv_strides):
            self.fail("conv_widths", "conv_widths and conv_strides of one non-zero length", self.conv_widths)
        for width, stride in zip(self.conv_widths, self.conv_strides):
            self.check_int("conv_widths", width, 4, 4096)
            self.check_int("conv_strides", stride, 1, 16)
        self.check_int("kernel_size", self.kernel_size, 1, 255)
        if self.kernel_size % 2 == 0:
            self.fail("kernel_size", "an odd integer (centred padding)", self.kernel_size)
        self.check_int("gru_hidden", self.gru_hidden, 2, 4096)
        self.check_number("dropout", self.dropout, 0.0, 1.0)


class CNNGRUEncoder(nn.Module):
    """(B, 19, T) scaled EEG and (B, 19) mask -> (B, 4 * gru_hidden): strided convs, BiGRU, mean and max."""

    def __init__(self, config: EEGCNNGRUConfig) -> None:
        super().__init__()
        layers, width = [], 2 * N_CANONICAL
        for out, stride in zip(config.conv_widths, config.conv_strides):
            pad = config.kernel_size // 2
            layers += [
                nn.Conv1d(width, out, config.kernel_size, stride, pad, bias=False),
                nn.BatchNorm1d(out),
                nn.SiLU(),
            ]
            width = out
        self.convs = nn.Sequential(*layers)
        self.dropout = nn.Dropout(config.dropout)
        self.gru = nn.GRU(width, config.gru_hidden, batch_first=True, bidirectional=True)

    def forward(self, eeg: torch.Tensor, channel_mask: torch.Tensor) -> torch.Tensor:
        mask = channel_mask.unsqueeze(-1).to(eeg.dtype)
        x = torch.cat([eeg, mask.expand_as(eeg)], dim=1)
        frames, _ = self.gru(self.dropout(self.convs(x)).transpose(1, 2))  # (B, frames, 2 * hidden)
        return torch.cat([frames.mean(dim=1), frames.amax(dim=1)], dim=-1)


class EEGCNNGRU(CanonicalEEGModel):
    """The CNN-GRU with one task head; Hugging Face ``save_pretrained`` / ``from_pretrained``."""

    config_class = EEGCNNGRUConfig
    config: EEGCNNGRUConfig
    base_model_prefix = "eeg_cnn_gru"
    encoder_class = CNNGRUEncoder

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Conv1d):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, std=self.config.initializer_range)
            init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm1d, nn.LayerNorm)):
            init.ones_(module.weight)
            init.zeros_(module.bias)

    def exportable(self) -> None:
        """Refuse the ONNX export by name (``model.export.export_onnx`` asks every model)."""
        raise ValueError(
            "EEGCNNGRU: no ONNX export: torch.export unrolls the GRU over the traced number of frames "
            "(no dynamic time dimension); serve this model, or an ensemble holding it, with --backend torch"
        )
