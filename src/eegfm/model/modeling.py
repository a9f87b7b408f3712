"""Hugging Face models: ``EEGFMModel`` (encoder + task head) and ``EEGFMForPretraining``.

Both hold the encoder as ``encoder``, so ``EEGFMModel.from_pretrained(pretrain_dir, head="hms6")``
reuses a pretraining checkpoint's encoder with a fresh head. Their inputs' checks and the task
model's encoder, head and features are ``model.network``'s, which also loads a saved ``EEGFMModel``
as a plain torch module (inference without transformers' modeling_utils). Inputs (``model.inputs``
builds them):

==============  ==================  =========================================================
eeg             (B, C, T)           microvolts at 256 Hz, any C >= 2 electrodes, T >= 1 patch;
                                    divided by ``config.input_scale_uv`` (100) inside
positions       (B or 1, C, 3)      electrode positions (``positions_for(ch_names)``); may be
                                    omitted when C == 19 (the canonical contract order)
channel_mask    (B, C) or (C,)      1 measured, 0 interpolated/missing; default all 1
spectrogram     (B, 400, frames)    optional, Kaggle HMS layout of log1p µV²/Hz (already log
                                    power, ``contract.spectrogram``); all-NaN row = absent
ecg             (B, T)              optional, microvolts; all-NaN row = absent
age, sex        (B,)                optional; years, 0 F / 1 M; NaN = unknown
==============  ==================  =========================================================

A trailing remainder of ``T`` shorter than a patch is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from eegfm.model import adapters as adapters_lib
from eegfm.model.config import EEGFMConfig
from eegfm.model.encoder import EEGFMEncoder
from eegfm.model.heads import HEAD_REGISTRY, TaskHead, create_head
from eegfm.model.network import CANONICAL_POSITIONS, EEGFMInputs, EEGFMTask
from eegfm.model.pretraining import (
    BandPowerSummaryHead,
    ChannelContrastiveHead,
    MaskedReconstructionHead,
    choose_held_out,
    span_mask,
)
from eegfm.model.uncertainty import config_masks


@dataclass
class PretrainingOutput(ModelOutput):
    loss: torch.Tensor | None = None
    reconstruction_loss: torch.Tensor | None = None
    contrastive_loss: torch.Tensor | None = None
    auxiliary_loss: torch.Tensor | None = None
    reconstruction: torch.Tensor | None = None
    sample_mask: torch.Tensor | None = None
    held_out: torch.Tensor | None = None
    summary_loss: torch.Tensor | None = None


class EEGFMPreTrainedModel(EEGFMInputs, PreTrainedModel):
    config_class = EEGFMConfig
    config: EEGFMConfig
    base_model_prefix = "eegfm"
    main_input_name = "eeg"
    input_modalities = "eeg"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def __init__(self, config: EEGFMConfig, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.add_default_positions()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            # ``zero_init`` output layers (adapter up-projections, reconstruction) start at zero;
            # the flag sits on the Linear: Hugging Face skips parameter-less parent modules.
            if getattr(module, "zero_init", False):
                init.zeros_(module.weight)
            else:
                init.normal_(module.weight, std=std)  # torch's trunc_normal_ resamples: 100x slower
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        if isinstance(module, EEGFMPreTrainedModel):  # from_pretrained builds buffers empty
            init.copy_(module.default_positions, CANONICAL_POSITIONS)
        if isinstance(module, TaskHead):  # its fixed MC-dropout masks, from the config (model.uncertainty)
            init.copy_(module.mc_masks, config_masks(self.config).to(module.mc_masks.device))
        # Modules owning raw parameters; children were initialised first, so these rules win.
        for name, parameter in module.named_parameters(recurse=False):
            if name in ("interpolated", "null", "sex", "kind"):
                init.normal_(parameter, std=std)
            elif name in ("interpolated_logit", "lora_b"):
                init.zeros_(parameter)
            elif name == "lora_a":
                init.normal_(parameter, std=1.0 / module.rank)


class EEGFMModel(EEGFMTask, EEGFMPreTrainedModel):
    """The eegfm encoder with one task head (``config.head``), in timm's encoder/head split; its
    network is ``model.network``'s (``EEGFMNetwork`` there is the same without Hugging Face)."""

    # Weights a pretraining checkpoint never has: the head, the spectral readout's projection
    # (``config.spectral_readout``), the covariance branch (``config.covariance_channels``) and
    # the head covariances' reference (a probe head fits it); fine-tuning builds them new, every
    # other weight must load.
    new_at_finetuning = (
        "head.",
        "encoder.spatial_readout.spectral.",
        "encoder.covariance_branch.",
        "encoder.head_covariance_whitening",
    )

    def __init__(self, config: EEGFMConfig) -> None:
        super().__init__(config)
        self.build_task(config)
        self.post_init()

    def reset_head(self, head: str | None = None, id2label: dict[int, str] | list[str] | None = None) -> TaskHead:
        """Replace the task head (a fresh, initialised one); config.head / id2label follow."""
        name = self.config.head if head is None else head
        if name not in HEAD_REGISTRY:
            raise ValueError(f"head: expected one of {', '.join(sorted(HEAD_REGISTRY))}; got {name!r}")
        if isinstance(id2label, (list, tuple)):
            id2label = dict(enumerate(id2label))
        if id2label is None:
            labels = HEAD_REGISTRY[name].default_labels
            id2label = dict(enumerate(labels)) if labels is not None else dict(self.config.id2label or {})
        old = (self.config.head, self.config.id2label, self.config.label2id)
        self.config.head, self.config.id2label = name, {int(k): v for k, v in id2label.items()}
        self.config.label2id = {v: k for k, v in self.config.id2label.items()}
        try:
            new_head = create_head(name, self.config)
        except ValueError:
            self.config.head, self.config.id2label, self.config.label2id = old
            raise
        std = self.config.initializer_range
        for module in new_head.modules():
            if isinstance(module, nn.Linear) and not getattr(module, "zero_init", False):
                nn.init.normal_(module.weight, std=std)
                nn.init.zeros_(module.bias)
        device = next(self.encoder.parameters()).device
        self.head = new_head.to(device=device, dtype=self.dtype)
        return self.head

    def freeze_encoder(self) -> None:
        adapters_lib.freeze_encoder(self)

    def unfreeze_encoder(self, last_n_layers: int | None = None) -> None:
        adapters_lib.unfreeze_encoder(self, last_n_layers)

    def add_adapters(self, kind: str = "lora", rank: int = 8) -> int:
        return adapters_lib.add_adapters(self, kind, rank)


class EEGFMForPretraining(EEGFMPreTrainedModel):
    """Encoder + masked-segment reconstruction + contrastive channel prediction (+ band-power
    summary from the pooled embedding, + auxiliary)."""

    def __init__(self, config: EEGFMConfig) -> None:
        super().__init__(config)
        self.encoder = EEGFMEncoder(config)
        self.reconstruction = MaskedReconstructionHead(config)
        self.contrastive = ChannelContrastiveHead(config)
        self.auxiliary = None if config.auxiliary_head is None else create_head(config.auxiliary_head, config)
        self.summary = BandPowerSummaryHead(config) if config.summary_weight > 0 else None
        self.post_init()

    @property
    def loss_names(self) -> tuple[str, ...]:
        """The losses it reports: reconstruction and contrastive (+ ``summary_loss`` with ``summary_weight`` > 0)."""
        return ("reconstruction_loss", "contrastive_loss") + (("summary_loss",) if self.summary is not None else ())

    # Not compiled: masks are drawn on the CPU, the same in compiled and eager steps on any device
    # (and torch 2.11 failed to trace ``span_mask`` with a dynamic batch dimension).
    @torch.compiler.disable
    def make_views(
        self, eeg: torch.Tensor, channel_mask: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Masked input, its sample mask, the held-out channel per sample and the context mask."""
        batch, n_chans, n_times = eeg.shape
        ms = self.config.sfreq / 1000.0
        mask = span_mask(
            batch,
            n_chans,
            n_times,
            min_len=max(1, round(self.config.mask_min_ms * ms)),
            max_len=max(1, round(self.config.mask_max_ms * ms)),
            ratio=self.config.mask_ratio,
            generator=generator,
            device=eeg.device,
            draw_device="cpu",
        )
        held_out = choose_held_out(channel_mask, generator, draw_device="cpu")
        # Comparisons, not ``mask[rows, held_out] = True``, whose host copy waits for the GPU.
        is_held_out = torch.arange(n_chans, device=eeg.device) == held_out.unsqueeze(1)  # (B, C)
        mask = mask | is_held_out.unsqueeze(-1)
        context_mask = channel_mask.masked_fill(is_held_out, 0.0)
        return eeg.masked_fill(mask, 0.0), mask, held_out, context_mask

    def forward(
        self,
        eeg: torch.Tensor,
        positions: torch.Tensor | None = None,
        channel_mask: torch.Tensor | None = None,
        spectrogram: torch.Tensor | None = None,
        ecg: torch.Tensor | None = None,
        age: torch.Tensor | None = None,
        sex: torch.Tensor | None = None,
        auxiliary_labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        return_dict: bool | None = None,
    ) -> PretrainingOutput | tuple[torch.Tensor, ...]:
        """Losses of one pretraining step; ``generator`` makes the masking reproducible."""
        inputs = self.prepare_inputs(eeg, positions, channel_mask, spectrogram, ecg, age, sex)
        eeg, channel_mask = inputs["eeg"], inputs["channel_mask"]
        masked, mask, held_out, context_mask = self.make_views(eeg, channel_mask, generator)
        features = self.encoder(**{**inputs, "eeg": masked, "channel_mask": context_mask}, sample_mask=mask)
        tokenizer = self.encoder.tokenizer
        target = tokenizer.to_patches(eeg * tokenizer.scale).flatten(2)
        reconstruction = self.reconstruction(features.channel_tokens)
        loss_mask = mask & (channel_mask > 0.5).unsqueeze(-1)
        reconstruction_loss = self.reconstruction.loss(reconstruction, target, loss_mask)
        content = tokenizer.patches(tokenizer.to_patches(eeg * tokenizer.scale))
        queries, keys = self.contrastive(features.channel_tokens, content, held_out, inputs["positions"])
        contrastive_loss = self.contrastive.loss(queries, keys, held_out, channel_mask)
        loss = (
            self.config.reconstruction_weight * reconstruction_loss + self.config.contrastive_weight * contrastive_loss
        )
        auxiliary_loss = None
        if self.auxiliary is not None and auxiliary_labels is not None:
            auxiliary_loss = self.auxiliary.loss(self.auxiliary(features), auxiliary_labels.to(eeg.device))
            loss = loss + self.config.auxiliary_weight * auxiliary_loss
        summary_loss = None
        if self.summary is not None:
            prediction = self.summary(features.pooled)
            summary_loss = self.summary.loss(prediction, eeg * tokenizer.scale, channel_mask)
            loss = loss + self.config.summary_weight * summary_loss
        if self.training and torch.is_grad_enabled():
            # Without the summary head the losses read the channel tokens only: tie the encoder's
            # top (and an unused auxiliary head) in with a zero weight, for DDP (model.numerics.tie_unused).
            unused = features.pooled.float().sum() if summary_loss is None else 0.0
            if self.auxiliary is not None and auxiliary_loss is None:
                unused = unused + self.auxiliary(features).float().sum()
            loss = loss + 0.0 * unused
        output = PretrainingOutput(
            loss=loss,
            reconstruction_loss=reconstruction_loss,
            contrastive_loss=contrastive_loss,
            auxiliary_loss=auxiliary_loss,
            reconstruction=reconstruction,
            sample_mask=mask,
            held_out=held_out,
            summary_loss=summary_loss,
        )
        return self._output(output, return_dict)


def pretraining_losses(model: torch.nn.Module) -> tuple[str, ...]:
    """The losses a pretraining model (eegfm's or a peer's, ``model.patch_pretraining``) reports:
    its ``loss_names``."""
    return model.loss_names


def create_model(
    preset: str = "base", head: str | None = None, pretrained: str | None = None, **overrides: Any
) -> EEGFMModel:
    """timm-style factory: a task model from a preset, or from a saved directory (``pretrained``)
    with a fresh head where ``head`` differs from the saved one."""
    if pretrained is not None:
        model = EEGFMModel.from_pretrained(pretrained, **overrides)
        if head is not None and head != model.config.head:
            model.reset_head(head)
        return model
    if head is not None:
        overrides["head"] = head
    return EEGFMModel(EEGFMConfig.from_preset(preset, **overrides))


def create_pretraining_model(preset: str = "base", **overrides: Any) -> EEGFMForPretraining:
    return EEGFMForPretraining(EEGFMConfig.from_preset(preset, **overrides))


def register_auto_classes() -> None:
    """Make ``AutoConfig`` / ``AutoModel`` resolve ``model_type == "eegfm"`` (idempotent)."""
    AutoConfig.register(EEGFMConfig.model_type, EEGFMConfig, exist_ok=True)
    AutoModel.register(EEGFMConfig, EEGFMModel, exist_ok=True)


register_auto_classes()
