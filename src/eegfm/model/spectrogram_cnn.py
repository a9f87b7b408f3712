"""A compact EfficientNet-style 2-D CNN on the HMS spectrogram: an ensemble member beside the eegfm encoder.

Input: ``spectrogram`` (B, 400, F) float32, log1p(µV²/Hz); rows are the LL, RL, LP, RP chains x 100
frequency bins (0.59..19.92 Hz), columns frames at a 2 s step (F = 300 for a Kaggle HMS 10-minute
spectrogram, ``window_seconds / 2`` for computed ones; any F >= 1). It is read as an image of 4
channels (chains) x 100 frequencies x F frames, plus a fifth channel: the mask of finite values.
NaN (absent values, an all-NaN sample = no spectrogram) becomes 0, and each sample is standardised
over its finite values (per-sample mean 0, std 1), so Kaggle's spectrograms and computed ones,
whose absolute levels differ, reach the network on one scale; the relative levels across chains,
frequencies and time, which carry the class, are kept. A sample without spectrogram is all zero
with a zero mask: the network learns to predict about the class prior for it.

Network (random initialisation, nothing downloaded; ``timm`` does not install against this torch,
see docs/training.md): stem conv 3x3 stride 2 -> stages of MBConv blocks (1x1 expand, depthwise 3x3,
squeeze-excitation, 1x1 project, residual with optional stochastic depth) -> 1x1 conv to
``hidden_size`` -> pooling (any F) -> a registered task head (``model.heads``: the
same hms6 head and loss as the eegfm model). The call interface is the eegfm classifier's:
``model(eeg=None, positions=None, channel_mask=None, spectrogram=..., ...).logits`` (B, C); the EEG
inputs are accepted and ignored, so a predictor can call every member alike.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init

from eegfm.model.classifier import HeadClassifier
from eegfm.model.config import KAGGLE_SPECTROGRAM_BINS
from eegfm.model.encoder import EncoderOutput
from eegfm.model.heads import TaskHead, create_head
from eegfm.model.task_config import TaskModelConfig

N_CHAINS = 4  # LL, RL, LP, RP
MODEL_TYPE = "eegfm_spectrogram_cnn"
POOLINGS = ("frequency", "global")


class SpectrogramCNNConfig(TaskModelConfig):
    """Configuration of :class:`SpectrogramCNN` (saved as ``config.json``, ``model_type``
    ``eegfm_spectrogram_cnn``).

    ``spectrogram_bins``: rows of the input (400: 4 chains x 100 frequencies). ``stem_width``: channels
    of the stem. ``stage_widths`` / ``stage_depths`` / ``stage_strides``: one entry per stage of MBConv
    blocks (the first block of a stage has the stride). ``expand_ratio``: MBConv expansion;
    ``se_ratio``: squeeze-excitation width over the block input's. ``hidden_size``: the pooled feature
    width the head reads. ``drop_path``: stochastic depth at the last block (linear from 0).
    ``pooling``: ``frequency`` (default) averages the feature map over time and weighs its frequency
    rows with weights learned per feature, so the head knows *which* band a feature fired in (delta
    from alpha); ``global`` averages over time and frequency alike (EfficientNet's, position-blind).
    ``spec_augment``: while training, each sample loses one band of frequencies and one span of
    frames, each up to this fraction of its axis, set to the sample's mean (SpecAugment; 0: off).
    ``head`` / ``head_dropout`` / ``id2label``: the task head, as in ``EEGFMConfig``;
    ``temperature`` divides the logits in ``predict``. ``modalities`` is ``["spectrogram"]`` and
    ``patch_size`` 1 (the model reads no EEG), for the code that asks every model for them.
    """

    model_type = MODEL_TYPE

    spectrogram_bins: int = KAGGLE_SPECTROGRAM_BINS
    stem_width: int = 24
    stage_widths: list[int] | None = None
    stage_depths: list[int] | None = None
    stage_strides: list[int] | None = None
    expand_ratio: int = 4
    se_ratio: float = 0.25
    hidden_size: int = 256
    drop_path: float = 0.1
    pooling: str = "frequency"
    spec_augment: float = 0.0

    def __post_init__(self, **kwargs: Any) -> None:
        self.stage_widths = [32, 48, 96, 160] if self.stage_widths is None else list(self.stage_widths)
        self.stage_depths = [1, 2, 2, 2] if self.stage_depths is None else list(self.stage_depths)
        self.stage_strides = [2, 2, 2, 1] if self.stage_strides is None else list(self.stage_strides)
        self.modalities = ["spectrogram"]
        super().__post_init__(**kwargs)

    def validate_fields(self) -> None:
        if self.spectrogram_bins % N_CHAINS:
            self.fail("spectrogram_bins", f"a multiple of {N_CHAINS} (chains x frequencies)", self.spectrogram_bins)
        self.check_int("spectrogram_bins", self.spectrogram_bins, N_CHAINS, 100_000)
        self.check_int("stem_width", self.stem_width, 4, 4096)
        stages = (self.stage_widths, self.stage_depths, self.stage_strides)
        if len({len(s) for s in stages}) != 1 or not self.stage_widths:
            self.fail("stage_widths", "stage_widths, stage_depths and stage_strides of one non-zero length", stages)
        for width, depth, stride in zip(*stages):
            self.check_int("stage_widths", width, 4, 4096)
            self.check_int("stage_depths", depth, 1, 64)
            if stride not in (1, 2):
                self.fail("stage_strides", "1 or 2 per stage", self.stage_strides)
        self.check_int("expand_ratio", self.expand_ratio, 1, 16)
        self.check_number("se_ratio", self.se_ratio, 0.0, 1.0)
        self.check_int("hidden_size", self.hidden_size, 8, 16384)
        self.check_number("drop_path", self.drop_path, 0.0, 1.0)
        if self.pooling not in POOLINGS:
            self.fail("pooling", f"one of {', '.join(POOLINGS)}", self.pooling)
        self.check_number("spec_augment", self.spec_augment, 0.0, 1.0)


# "tiny" for tests and CPU demos (6.1 k parameters); "base" for training (0.62 M parameters).
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        stem_width=8,
        stage_widths=[16, 24],
        stage_depths=[1, 1],
        stage_strides=[2, 2],
        expand_ratio=2,
        hidden_size=64,
        drop_path=0.0,
    ),
    "base": {},
}


SpectrogramCNNConfig.presets = PRESETS


class SqueezeExcitation(nn.Module):
    """Channel gates from the globally pooled activations (EfficientNet's SE)."""

    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.expand = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.expand(F.silu(self.reduce(x.mean(dim=(2, 3), keepdim=True))))
        return x * torch.sigmoid(gate)


def conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise 3x3 (with the stride), SE, 1x1 project; the input
    is added back where the shape allows, behind stochastic depth while training."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand: int, se_ratio: float, drop: float):
        super().__init__()
        mid = in_channels * expand
        self.expand = conv_bn(in_channels, mid, 1) if expand > 1 else nn.Identity()
        self.depthwise = conv_bn(mid, mid, 3, stride, groups=mid)
        self.se = SqueezeExcitation(mid, max(1, int(in_channels * se_ratio))) if se_ratio > 0 else nn.Identity()
        self.project = conv_bn(mid, out_channels, 1)
        self.residual = stride == 1 and in_channels == out_channels
        self.drop = drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.silu(self.expand(x)) if not isinstance(self.expand, nn.Identity) else x
        y = self.project(self.se(F.silu(self.depthwise(y))))
        if not self.residual:
            return y
        if self.training and self.drop > 0:  # stochastic depth: drop the whole branch per sample
            keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) >= self.drop
            y = y * keep / (1.0 - self.drop)
        return x + y


def spectrogram_image(spectrogram: torch.Tensor, bins: int) -> torch.Tensor:
    """(B, bins, F) -> (B, 5, bins / 4, F): the 4 chains standardised per sample over their finite
    values (NaN -> 0), and the mask of finite values; an all-NaN sample is all zero."""
    if spectrogram.dim() != 3 or spectrogram.shape[1] != bins or spectrogram.shape[2] < 1:
        raise ValueError(
            f"spectrogram: expected shape (batch, {bins}, n_frames >= 1) (4 chains x {bins // N_CHAINS} "
            f"frequencies, log1p power); got {tuple(spectrogram.shape)}"
        )
    batch, _, frames = spectrogram.shape
    x = spectrogram.float().reshape(batch, N_CHAINS, bins // N_CHAINS, frames)
    present = torch.isfinite(x)
    weight = present.float()
    values = torch.where(present, x, torch.zeros_like(x))
    count = weight.sum(dim=(1, 2, 3), keepdim=True).clamp(min=1.0)
    mean = values.sum(dim=(1, 2, 3), keepdim=True) / count
    var = ((values - mean) * weight).square().sum(dim=(1, 2, 3), keepdim=True) / count
    standard = (values - mean) * torch.rsqrt(var + 1e-6) * weight
    return torch.cat([standard, weight.amax(dim=1, keepdim=True)], dim=1)


def mask_bands(image: torch.Tensor, max_fraction: float) -> torch.Tensor:
    """SpecAugment on (B, channels, frequencies, frames): per sample one random band of frequencies
    and one span of frames, each of width up to ``max_fraction`` of its axis, set to 0 (the mean of
    a standardised sample) in every channel."""
    keep = torch.ones_like(image[:, :1])
    for axis in (2, 3):
        size = image.shape[axis]
        width = (torch.rand(image.shape[0], device=image.device) * max_fraction * size).long()
        start = (torch.rand(image.shape[0], device=image.device) * (size - width + 1)).long()
        index = torch.arange(size, device=image.device)
        inside = (index >= start[:, None]) & (index < (start + width)[:, None])  # (B, size)
        shape = [image.shape[0], 1, 1, 1]
        shape[axis] = size
        keep = keep * (~inside).to(image.dtype).reshape(shape)
    return image * keep


class SpectrogramEncoder(nn.Module):
    """Stem, MBConv stages, 1x1 conv to ``hidden_size``, pooling (``config.pooling``): (B, hidden_size)."""

    def __init__(self, config: SpectrogramCNNConfig) -> None:
        super().__init__()
        self.bins = config.spectrogram_bins
        self.spec_augment = config.spec_augment
        self.stem = conv_bn(N_CHAINS + 1, config.stem_width, 3, stride=2)
        n_blocks = sum(config.stage_depths)
        blocks, width, index = [], config.stem_width, 0
        for out, depth, stride in zip(config.stage_widths, config.stage_depths, config.stage_strides):
            for i in range(depth):
                drop = config.drop_path * index / max(1, n_blocks - 1)
                blocks.append(MBConv(width, out, stride if i == 0 else 1, config.expand_ratio, config.se_ratio, drop))
                width, index = out, index + 1
        self.blocks = nn.ModuleList(blocks)
        self.top = conv_bn(width, config.hidden_size, 1)
        rows = config.spectrogram_bins // N_CHAINS
        for stride in (2, *config.stage_strides):  # the stem's and each stage's: 'same' padding, ceil
            rows = (rows + stride - 1) // stride
        # Frequency pooling starts as the plain average and learns per feature which rows matter.
        self.frequency_weight = (
            nn.Parameter(torch.full((config.hidden_size, rows), 1.0 / rows)) if config.pooling == "frequency" else None
        )

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        x = spectrogram_image(spectrogram, self.bins)
        if self.training and self.spec_augment > 0:
            x = mask_bands(x, self.spec_augment)
        x = F.silu(self.stem(x))
        for block in self.blocks:
            x = block(x)
        x = F.silu(self.top(x)).mean(dim=3)  # over frames: any number of them
        if self.frequency_weight is None:
            return x.mean(dim=2)
        return (x * self.frequency_weight).sum(dim=2)


class SpectrogramCNN(HeadClassifier, PreTrainedModel):
    """The spectrogram CNN with one task head; Hugging Face ``save_pretrained`` / ``from_pretrained``."""

    config_class = SpectrogramCNNConfig
    config: SpectrogramCNNConfig
    base_model_prefix = "spectrogram_cnn"
    main_input_name = "spectrogram"
    required_inputs = ("spectrogram",)  # what a batch must carry (fine-tuning checks it)

    def __init__(self, config: SpectrogramCNNConfig) -> None:
        super().__init__(config)
        self.encoder = SpectrogramEncoder(config)
        self.head: TaskHead = create_head(config.head, config)
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, std=self.config.initializer_range)
            init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.LayerNorm)):
            init.ones_(module.weight)
            init.zeros_(module.bias)

    def forward_features(self, eeg: Any = None, positions: Any = None, channel_mask: Any = None, spectrogram=None, *_):
        """``EncoderOutput`` with ``pooled`` (B, hidden_size); only ``spectrogram`` is read."""
        if spectrogram is None:
            raise ValueError(
                "spectrogram: this model reads only the spectrogram (batch, 400, n_frames); got None "
                "(windows preprocessed without the spectrogram feature)"
            )
        return EncoderOutput(pooled=self.encoder(spectrogram.to(self.device)))

    def unfreeze_encoder(self, last_n_layers: int | None = None) -> None:
        """Train everything (``last_n_layers``: the top that many MBConv blocks, the head and the top conv)."""
        first = None if last_n_layers is None else max(0, len(self.encoder.blocks) - last_n_layers)
        for name, parameter in self.named_parameters():
            parts = name.split(".")
            below = first is not None and (parts[1] == "stem" or (parts[1] == "blocks" and int(parts[2]) < first))
            parameter.requires_grad = not (parts[0] == "encoder" and below)
