"""Cross-modal fusion: EEG patch tokens attend to the optional modalities, through learned gates.

Each modality becomes (B, L, D) tokens with a validity mask and a per-sample presence:
``spectrogram`` (the Kaggle HMS layout, (B, 400, n_frames) of log1p power in µV²/Hz as the pipeline
stores it (``contract.spectrogram``), pooled over ``spectrogram_pool`` frames, plus a code of the
time from its centre), ``ecg`` ((B, n_times) µV
embedded per 1 s patch; keys and queries carry the same code of the patch's second, so EEG patch t
finds ECG patch t) and ``clinical`` (one token each for age and sex).

Every EEG patch token cross-attends to ``[null token, modality tokens]`` (the null token keeps a
sample without the modality from an all-masked softmax), times a gate ``sigmoid(linear(mean EEG
token))`` and the modality's presence: an absent modality (``None`` or NaN, ``model.inputs``)
contributes exactly zero, at train and at test time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from eegfm.model.config import MODALITIES, EEGFMConfig
from eegfm.model.embedding import PatchEmbedding
from eegfm.model.numerics import tie_unused
from eegfm.model.temporal import MLP

N_TIME_FREQUENCIES = 8


def sinusoidal_time(t: torch.Tensor, n_frequencies: int = N_TIME_FREQUENCIES) -> torch.Tensor:
    """sin/cos codes (..., 2 n) of times t with periods 2, 4, ..., 2^n time units."""
    freqs = math.pi * 2.0 ** -torch.arange(n_frequencies, device=t.device, dtype=t.dtype)
    angles = t.unsqueeze(-1) * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def _nan_to_zero(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x with NaN replaced by 0, and (B,) presence: 1 unless every value of the sample is NaN."""
    nan = torch.isnan(x)
    present = (~nan.flatten(1).all(dim=1)).to(x.dtype)
    return torch.where(nan, torch.zeros_like(x), x), present


class SpectrogramTokenizer(nn.Module):
    """(B, 400, n_frames) log1p µV²/Hz (already log power: no transform here; NaN rows absent) ->
    (B, n_frames // pool, D) tokens and (B,) presence."""

    def __init__(self, config: EEGFMConfig) -> None:
        super().__init__()
        self.pool = config.spectrogram_pool
        self.norm = nn.LayerNorm(config.spectrogram_bins, eps=config.layer_norm_eps)
        self.proj = nn.Linear(config.spectrogram_bins, config.hidden_size)
        self.time = nn.Linear(2 * N_TIME_FREQUENCIES, config.hidden_size)

    def forward(self, spectrogram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values, present = _nan_to_zero(spectrogram)
        batch, bins, n_frames = values.shape
        n_tokens = n_frames // self.pool  # trailing frames that do not fill a token are dropped
        pooled = values[..., : n_tokens * self.pool].reshape(batch, bins, n_tokens, self.pool).mean(-1)
        # Centre-relative time in units of tokens/8, so a 10 min spectrogram spans about +-9 units.
        t = (torch.arange(n_tokens, device=values.device, dtype=values.dtype) + 0.5 - n_tokens / 2) / 8.0
        tokens = self.proj(self.norm(pooled.transpose(1, 2))) + self.time(sinusoidal_time(t))
        return tokens, present


class ECGTokenizer(nn.Module):
    def __init__(self, config: EEGFMConfig) -> None:
        super().__init__()
        self.patch_size = config.patch_size
        self.scale = 1.0 / config.input_scale_uv
        self.patches = PatchEmbedding(config, sample_mask_input=False)
        self.time = nn.Linear(2 * N_TIME_FREQUENCIES, config.hidden_size)

    def forward(self, ecg: torch.Tensor, n_patches: int) -> tuple[torch.Tensor, torch.Tensor]:
        values, present = _nan_to_zero(ecg)
        values = values[:, : n_patches * self.patch_size].reshape(ecg.shape[0], n_patches, self.patch_size)
        t = torch.arange(n_patches, device=ecg.device, dtype=ecg.dtype)
        return self.patches(values * self.scale) + self.time(sinusoidal_time(t)), present


class ClinicalTokenizer(nn.Module):
    """age and sex -> two tokens (B, 2, D) with their validity (B, 2)."""

    def __init__(self, config: EEGFMConfig) -> None:
        super().__init__()
        width = config.hidden_size
        self.age = nn.Sequential(nn.Linear(1 + 2 * N_TIME_FREQUENCIES, width), nn.GELU(), nn.Linear(width, width))
        self.sex = nn.Parameter(torch.zeros(2, width))  # rows: female, male
        self.kind = nn.Parameter(torch.zeros(2, width))  # which token is age, which is sex

    def forward(self, age: torch.Tensor, sex: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        age_valid, sex_valid = ~torch.isnan(age), ~torch.isnan(sex)
        decades = torch.where(age_valid, age, torch.zeros_like(age)) / 10.0
        age_token = self.age(torch.cat([decades.unsqueeze(-1) / 10.0, sinusoidal_time(decades)], dim=-1))
        male = torch.where(sex_valid, sex, torch.zeros_like(sex)).clamp(0.0, 1.0).unsqueeze(-1)
        sex_token = (1.0 - male) * self.sex[0] + male * self.sex[1]
        tokens = torch.stack([age_token, sex_token], dim=1) + self.kind
        return tokens, torch.stack([age_valid, sex_valid], dim=1)


class ModalityAttention(nn.Module):
    """Cross-attention from EEG patch tokens (B, P, D) to one modality's tokens (B, L, D)."""

    def __init__(self, config: EEGFMConfig) -> None:
        super().__init__()
        width = config.hidden_size
        self.n_heads, self.head_dim = config.num_attention_heads, config.head_dim
        self.norm_kv = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)
        self.null = nn.Parameter(torch.zeros(1, 1, width))
        self.attention_dropout = config.attention_dropout

    def forward(self, queries: torch.Tensor, tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        batch, n_queries, width = queries.shape
        # "* 1.0" (exact) gives the parameter a gradient of its own: for a batch of one it would
        # otherwise be a strided view into the concatenation's, which DDP warns about.
        null = self.null.expand(batch, -1, -1).to(tokens.dtype) * 1.0
        tokens = torch.cat([null, self.norm_kv(tokens)], dim=1)
        valid = torch.cat([torch.ones_like(valid[:, :1]), valid], dim=1)
        q = self.q(queries).view(batch, n_queries, self.n_heads, self.head_dim).transpose(1, 2)
        n_keys = tokens.shape[1]
        k, v = self.kv(tokens).view(batch, n_keys, 2, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=valid[:, None, None, :], dropout_p=self.attention_dropout if self.training else 0.0
        )
        return self.out(out.transpose(1, 2).reshape(batch, n_queries, width))


class CrossModalFusion(nn.Module):
    """Adds gated cross-attention to every configured modality, then an MLP, to patch tokens."""

    def __init__(self, config: EEGFMConfig) -> None:
        super().__init__()
        width = config.hidden_size
        self.modalities = tuple(config.modalities)
        tokenizers = {"spectrogram": SpectrogramTokenizer, "ecg": ECGTokenizer, "clinical": ClinicalTokenizer}
        self.tokenizers = nn.ModuleDict({m: tokenizers[m](config) for m in self.modalities})
        self.attention = nn.ModuleDict({m: ModalityAttention(config) for m in self.modalities})
        self.norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.query_time = nn.Linear(2 * N_TIME_FREQUENCIES, width)  # for the time-aligned ECG
        # One gate per modality, keyed by name, so an encoder pretrained with every modality loads
        # into a model fine-tuned with any subset of them.
        self.gate = nn.ModuleDict({m: nn.Linear(width, 1) for m in self.modalities})
        self.mlp_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.mlp = MLP(config)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # Checkpoints written before the per-modality gates hold one (n_modalities, D) gate whose
        # rows follow the configured order (the full set: MODALITIES' order).
        for part in ("weight", "bias"):
            old = state_dict.pop(prefix + f"gate.{part}", None)
            if old is None:
                continue
            order = self.modalities if len(old) == len(self.modalities) else MODALITIES
            for row, modality in zip(old, order, strict=False):
                if modality in self.modalities:
                    state_dict[prefix + f"gate.{modality}.{part}"] = row.unsqueeze(0) if part == "weight" else row[None]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(
        self,
        patch_tokens: torch.Tensor,
        spectrogram: torch.Tensor | None = None,
        ecg: torch.Tensor | None = None,
        age: torch.Tensor | None = None,
        sex: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, P, D) -> fused (B, P, D) and the applied gates (B, n_modalities), 0 where absent."""
        batch, n_patches, _ = patch_tokens.shape
        queries = self.norm(patch_tokens)
        pooled = queries.mean(dim=1)
        gates = torch.cat([torch.sigmoid(self.gate[m](pooled)) for m in self.modalities], dim=1)
        applied = []
        fused = patch_tokens
        for index, modality in enumerate(self.modalities):
            if modality == "spectrogram" and spectrogram is not None:
                tokens, present = self.tokenizers[modality](spectrogram)
                valid = present.bool().unsqueeze(1).expand(-1, tokens.shape[1])
                q = queries
            elif modality == "ecg" and ecg is not None:
                tokens, present = self.tokenizers[modality](ecg, n_patches)
                valid = present.bool().unsqueeze(1).expand(-1, tokens.shape[1])
                t = torch.arange(n_patches, device=queries.device, dtype=queries.dtype)
                q = queries + self.query_time(sinusoidal_time(t))
            elif modality == "clinical" and (age is not None or sex is not None):
                nan = patch_tokens.new_full((batch,), float("nan"))
                tokens, valid = self.tokenizers[modality](
                    nan if age is None else age.to(patch_tokens.dtype),
                    nan if sex is None else sex.to(patch_tokens.dtype),
                )
                present = valid.any(dim=1).to(patch_tokens.dtype)
                q = queries
            else:
                applied.append(patch_tokens.new_zeros(batch))
                # Absent from the whole batch: tie the branch in with a zero weight (tie_unused).
                query_time = self.query_time if modality == "ecg" else None
                fused = tie_unused(fused, self.tokenizers[modality], self.attention[modality], query_time)
                if self.training and torch.is_grad_enabled():
                    fused = fused + 0.0 * gates[:, index].sum()
                continue
            gate = gates[:, index] * present
            applied.append(gate)
            fused = fused + gate[:, None, None] * self.attention[modality](q, tokens.to(q.dtype), valid)
        fused = fused + self.mlp(self.mlp_norm(fused))
        return fused, torch.stack(applied, dim=1)
