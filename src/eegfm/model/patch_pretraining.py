"""The peer transformers' own self-supervised pretraining: masked patch modeling, as their papers
describe it, on eegfm's 1 s patches (``model.patch_transformer``).

A random ``mask_ratio`` of each window's (channel x patch) tokens is replaced by the encoder's
learned mask token (``tokens(..., hidden=...)``); from the encoded tokens a linear layer (zero at
the start) predicts each hidden patch's target, and the loss is the squared error over hidden patches of measured
channels, divided by the target's power there (``MaskedReconstructionHead.loss``: 1.0 is
predicting zero).

- **CBraMod** (Wang et al., ICLR 2025): the target is the patch's samples, in model units (µV /
  ``input_scale_uv``), as the paper reconstructs the raw patch.
- **LaBraM** (Jiang et al., ICLR 2024): the paper first trains a vector-quantized neural tokenizer
  whose codes must reconstruct each patch's Fourier amplitude and phase, then predicts the codes of
  masked patches. Here the masked patch's log Fourier amplitude (standardized across its
  frequencies) is predicted directly: the tokenizer's spectral target without its codebook, one
  stage instead of two. The phase of a hidden 1 s patch is not predictable from its neighbours,
  so it is left out; the paper's symmetric masking (a second pass with the complement) is too.

Each pretraining model holds the same ``encoder`` as its task model, so the task model's
``from_pretrained`` on the saved folder loads the encoder and starts a new head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from eegfm.model.canonical import canonical_inputs
from eegfm.model.cbramod import CBraModConfig, CBraModEncoder
from eegfm.model.embedding import spectrum_magnitude
from eegfm.model.labram import LaBraMConfig, LaBraMEncoder
from eegfm.model.patch_transformer import PatchTransformerConfig, init_patch_transformer, to_patches
from eegfm.model.pretraining import MaskedReconstructionHead


@dataclass
class PatchPretrainingOutput(ModelOutput):
    """``loss`` (= ``reconstruction_loss``) and the (B, 19, N) mask of hidden patches."""

    loss: torch.Tensor | None = None
    reconstruction_loss: torch.Tensor | None = None
    patch_mask: torch.Tensor | None = None


def patch_mask(
    batch: int, n_chans: int, n_patches: int, ratio: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(batch, n_chans, n_patches) bool: ``round(ratio * n_chans * n_patches)`` tokens of each
    window hidden, drawn uniformly on the CPU (the same masks on any device)."""
    n_tokens = n_chans * n_patches
    n_hidden = max(1, min(n_tokens - 1, round(ratio * n_tokens))) if n_tokens > 1 else 0
    order = torch.rand(batch, n_tokens, generator=generator).argsort(dim=1)
    return (order < n_hidden).reshape(batch, n_chans, n_patches)


class PatchTransformerForPretraining(PreTrainedModel):
    """A peer encoder (``encoder_class``) and a linear predictor of each hidden patch's
    :meth:`target`, which a subclass defines."""

    config: PatchTransformerConfig
    encoder_class: ClassVar[type[nn.Module]]
    main_input_name = "eeg"
    loss_names: ClassVar[tuple[str, ...]] = ("reconstruction_loss",)

    def __init__(self, config: PatchTransformerConfig) -> None:
        super().__init__(config)
        self.encoder = self.encoder_class(config)
        target_size = self.target(torch.zeros(1, config.patch_size)).shape[-1]
        self.predictor = nn.Linear(config.hidden_size, target_size)
        self.post_init()

    @staticmethod
    def target(patches: torch.Tensor) -> torch.Tensor:
        """(..., patch_size) patches in model units -> (..., target_size) what a hidden patch predicts."""
        raise NotImplementedError

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if module is getattr(self, "predictor", None):  # predicting zero: the loss starts at 1.0
            init.zeros_(module.weight)
            init.zeros_(module.bias)
        else:
            init_patch_transformer(module, self.config.initializer_range, self.encoder_class)

    def forward(
        self,
        eeg: torch.Tensor,
        positions: torch.Tensor | None = None,
        channel_mask: torch.Tensor | None = None,
        *_: Any,
        generator: torch.Generator | None = None,
        return_dict: bool | None = None,
        **__: Any,
    ) -> PatchPretrainingOutput | tuple[torch.Tensor, ...]:
        """The masked patch loss of one batch (other inputs of the loader's batches are not read);
        ``generator`` makes the mask reproducible."""
        eeg, measured = canonical_inputs(eeg, positions, channel_mask, self.config.patch_size)
        eeg = eeg.to(device=self.device, dtype=self.dtype) / self.config.input_scale_uv
        measured = measured.to(eeg)
        patches = to_patches(eeg, self.config.patch_size)
        hidden = patch_mask(*patches.shape[:3], self.config.mask_ratio, generator).to(eeg.device)
        tokens = self.encoder.tokens(eeg, measured, hidden)
        prediction = self.predictor(self.encoder.norm(tokens))
        scored = hidden & (measured > 0.5).unsqueeze(-1)
        loss = MaskedReconstructionHead.loss(
            prediction, self.target(patches), scored.unsqueeze(-1).expand_as(prediction)
        )
        output = PatchPretrainingOutput(loss=loss, reconstruction_loss=loss, patch_mask=hidden)
        return output if (self.config.return_dict if return_dict is None else return_dict) else output.to_tuple()


class CBraModForPretraining(PatchTransformerForPretraining):
    """CBraMod's masked patch reconstruction: a hidden patch's samples."""

    config_class = CBraModConfig
    base_model_prefix = "cbramod"
    encoder_class = CBraModEncoder

    @staticmethod
    def target(patches: torch.Tensor) -> torch.Tensor:
        return patches


class LaBraMForPretraining(PatchTransformerForPretraining):
    """LaBraM's masked spectral modeling without the tokenizer: a hidden patch's standardized log
    Fourier amplitude."""

    config_class = LaBraMConfig
    base_model_prefix = "labram"
    encoder_class = LaBraMEncoder

    @staticmethod
    def target(patches: torch.Tensor) -> torch.Tensor:
        amplitude = torch.log(spectrum_magnitude(patches) + 1e-6)
        mean, std = amplitude.mean(dim=-1, keepdim=True), amplitude.std(dim=-1, keepdim=True)
        return ((amplitude - mean) / (std + 1e-6)).to(patches.dtype)
