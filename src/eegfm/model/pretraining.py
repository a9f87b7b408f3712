"""Self-supervised pretraining objectives. Each head owns its loss.

- Masked segment reconstruction: random spans of ``mask_min_ms``..``mask_max_ms`` are zeroed (and
  flagged to the tokenizer) until about ``mask_ratio`` of the samples are covered; the loss is the
  squared error over hidden samples of measured channels, normalised by the targets' power there
  (1.0 = predicting zero), in model units (µV / ``input_scale_uv``).
- Contrastive channel prediction: one measured channel per sample is hidden and marked
  interpolated; from the context at its electrode the model must pick, patch by patch, that
  channel's true content among every other (channel, patch) of the batch (InfoNCE).
- Optionally any registered task head (``config.auxiliary_head``) on the pooled embedding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from eegfm.model.band_powers import SUMMARY_BANDS, log_band_powers
from eegfm.model.config import EEGFMConfig
from eegfm.model.embedding import ElectrodeEmbedding
from eegfm.model.numerics import float32_region


def span_mask(
    batch: int,
    n_chans: int,
    n_times: int,
    *,
    min_len: int,
    max_len: int,
    ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    draw_device: torch.device | str | None = None,
) -> torch.Tensor:
    """(batch, n_chans, n_times) bool mask of random spans, from +1/-1 marks and a cumulative sum.

    Each row gets ``ceil(ratio * n_times / mean span)`` spans of uniform lengths in
    ``[min_len, max_len]`` at uniform starts (overlaps cover a little less than ``ratio``). Spans
    are drawn on ``draw_device`` (``generator``'s; default ``device``) and the mask is built on
    ``device``: a CPU generator makes runs reproducible on any device, and the mask, the same bit
    for bit, costs microseconds on a GPU instead of ~90 ms of CPU per batch.
    """
    max_len = max(min(max_len, n_times), 1)
    min_len = max(min(min_len, max_len), 1)
    device = torch.device(device)
    if ratio <= 0:
        return torch.zeros(batch, n_chans, n_times, dtype=torch.bool, device=device)
    draw_device = device if draw_device is None else torch.device(draw_device)
    mean_len = 0.5 * (min_len + max_len)
    n_spans = max(1, math.ceil(ratio * n_times / mean_len))
    shape = (batch, n_chans, n_spans)
    lengths = torch.randint(min_len, max_len + 1, shape, generator=generator, device=draw_device)
    starts = (torch.rand(shape, generator=generator, device=draw_device) * (n_times - lengths + 1)).long()
    bounds = to_device(torch.stack([starts, starts + lengths]).int(), device)
    marks = torch.zeros(batch, n_chans, n_times + 1, dtype=torch.int32, device=device)
    ones = torch.ones(shape, dtype=torch.int32, device=device)
    marks.scatter_add_(2, bounds[0].long(), ones)
    marks.scatter_add_(2, bounds[1].long(), -ones)
    return marks.cumsum(dim=2, dtype=torch.int32)[..., :n_times] > 0


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device``; CPU to GPU through pinned memory, so the host never waits for the GPU."""
    if tensor.device == device:
        return tensor
    if tensor.device.type == "cpu" and device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def choose_held_out(
    channel_mask: torch.Tensor, generator: torch.Generator | None = None, draw_device: torch.device | str | None = None
) -> torch.Tensor:
    """(B,) index of one measured channel per sample (any if none is), scores drawn on ``draw_device``."""
    draw_device = channel_mask.device if draw_device is None else torch.device(draw_device)
    scores = torch.rand(channel_mask.shape, generator=generator, device=draw_device)
    return (to_device(scores, channel_mask.device) + 2.0 * (channel_mask > 0.5)).argmax(dim=1)


def info_nce(
    queries: torch.Tensor,
    keys: torch.Tensor,
    positive: torch.Tensor,
    temperature: float,
    key_valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE of (B, E) queries against (N, E) keys; ``positive`` (B,) indexes each query's key.

    Cosine similarity / temperature, in float32 (a bfloat16 cosine is off by up to 0.04 in a logit).
    Invalid keys never act as negatives; a query's own positive is always kept. The (B*P, B*C*P)
    logits reach 8 GB at 1,024 windows, so they are touched as few times as possible: temperature
    folded into the queries, invalid keys masked by an in-place column bias, positives from the
    small inputs, one ``logsumexp``. Equal to masked cross-entropy up to float32 rounding.
    """
    with float32_region(queries.device):
        queries = F.normalize(queries.float(), dim=-1) / temperature
        keys = F.normalize(keys.float(), dim=-1)
        positive_logit = (queries * keys[positive]).sum(dim=-1)
        # In place: the product's backward needs its inputs, not its output.
        logits = queries @ keys.T
        if key_valid is None:
            return (torch.logsumexp(logits, dim=1) - positive_logit).mean()
        lowest = torch.finfo(logits.dtype).min  # not -inf: a row of -inf has a NaN gradient
        bias = torch.zeros_like(key_valid, dtype=logits.dtype).masked_fill(~key_valid, lowest)
        log_normaliser = torch.logsumexp(logits.add_(bias), dim=1)
        # A positive that is itself an invalid key was masked out above: it joins its row here.
        masked_positive = positive_logit.masked_fill(key_valid[positive], lowest)
        log_normaliser = torch.logaddexp(log_normaliser, masked_positive)
        return (log_normaliser - positive_logit).mean()


class MaskedReconstructionHead(nn.Module):
    """Channel tokens (B, C, P, D) -> reconstructed samples (B, C, P * patch_size)."""

    def __init__(self, config: EEGFMConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.proj = nn.Linear(config.hidden_size, config.patch_size)
        self.proj.zero_init = True  # predict zero at first: the loss starts at 1.0

    def forward(self, channel_tokens: torch.Tensor) -> torch.Tensor:
        out = self.proj(self.norm(channel_tokens))  # (B, C, P, patch_size)
        return out.flatten(2)

    @staticmethod
    def loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Squared error over the samples where ``mask`` is set, divided by the target's power there:
        predicting zero scores 1.0, which keeps the loss O(1) next to InfoNCE (a raw MSE of ~0.01
        drowned in the contrastive gradients and stopped learning)."""
        n_times = prediction.shape[-1]
        prediction = prediction.float()  # squared errors summed in float32, also under autocast
        target, mask = target[..., :n_times].float(), mask[..., :n_times] > 0
        zero = torch.zeros_like(prediction)
        error = torch.where(mask, prediction - target, zero).square().sum()
        power = torch.where(mask, target, zero).square().sum()
        return error / power.clamp(min=1e-8)


class ChannelContrastiveHead(nn.Module):
    """Predicts the held-out channel's content per patch (queries) and embeds contents (keys).

    The prediction cross-attends from the held-out electrode (its token plus its position's
    embedding) to the other channels' tokens of the patch: its own input is zero, so reading the
    neighbours is what makes the task learnable from the start.
    """

    def __init__(self, config: EEGFMConfig) -> None:
        super().__init__()
        width, dim = config.hidden_size, config.contrastive_dim
        self.temperature = config.contrastive_temperature
        self.n_heads, self.head_dim = config.num_attention_heads, config.head_dim
        self.position = ElectrodeEmbedding(config)
        self.norm_q = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.norm_kv = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)

        def projector() -> nn.Sequential:
            return nn.Sequential(
                nn.LayerNorm(width, eps=config.layer_norm_eps),
                nn.Linear(width, width),
                nn.GELU(),
                nn.Linear(width, dim),
            )

        self.query = projector()
        self.key = projector()

    def predict(self, channel_tokens: torch.Tensor, positions: torch.Tensor, held_out: torch.Tensor) -> torch.Tensor:
        """(B, P, D) prediction of the held-out channel's tokens from the other channels."""
        batch, n_chans, n_patches, width = channel_tokens.shape
        rows = torch.arange(batch, device=channel_tokens.device)
        where = positions.expand(batch, -1, -1)[rows, held_out]  # (B, 3)
        query = self.norm_q(channel_tokens[rows, held_out] + self.position(where).unsqueeze(1))  # (B, P, D)
        context = self.norm_kv(channel_tokens.transpose(1, 2))  # (B, P, C, D)
        q = self.q(query).view(batch * n_patches, 1, self.n_heads, self.head_dim).transpose(1, 2)
        k, v = self.kv(context).view(batch * n_patches, n_chans, 2, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        others = torch.arange(n_chans, device=channel_tokens.device) != held_out.unsqueeze(1)  # no host copy
        allowed = others.repeat_interleave(n_patches, dim=0)[:, None, None, :]
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        # No residual from the query: its varying part is tiny at first (the held-out input is
        # zero), and adding it would hide the neighbours' content under a near-constant vector.
        return self.out(attended.reshape(batch, n_patches, width))

    def forward(
        self, channel_tokens: torch.Tensor, content: torch.Tensor, held_out: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Queries (B * P, E) for the held-out electrodes; keys (B * C * P, E) of every channel from
        ``content`` (B, C, P, D), each patch's embedding of the unmasked signal."""
        batch, n_chans, n_patches, width = content.shape
        prediction = self.predict(channel_tokens, positions, held_out)
        queries = self.query(prediction).reshape(batch * n_patches, -1)
        return queries, self.key(content).reshape(batch * n_chans * n_patches, -1)

    def loss(
        self, queries: torch.Tensor, keys: torch.Tensor, held_out: torch.Tensor, channel_mask: torch.Tensor
    ) -> torch.Tensor:
        """InfoNCE; negatives: every other (channel, patch) of this and the other samples."""
        batch, n_chans = channel_mask.shape
        n_patches = queries.shape[0] // batch
        sample = torch.arange(batch, device=keys.device).repeat_interleave(n_patches)
        patch = torch.arange(n_patches, device=keys.device).repeat(batch)
        positive = (sample * n_chans + held_out[sample]) * n_patches + patch
        key_valid = (channel_mask > 0.5).unsqueeze(-1).expand(-1, -1, n_patches).reshape(-1)
        return info_nce(queries, keys, positive, self.temperature, key_valid=key_valid)


class BandPowerSummaryHead(nn.Module):
    """Pooled embedding (B, D) -> every channel's log band powers (B, C, n_bands) of the unmasked window.

    The other objectives read channel tokens only; this one trains the whole path to the pooled
    embedding (channel pooling, fusion, patch layers, final norm) that fine-tuning's heads read,
    and asks it, from the masked input, for the spectral summary that decides many EEG tasks.
    """

    def __init__(self, config: EEGFMConfig, n_chans: int = 19) -> None:
        super().__init__()
        width = config.hidden_size
        self.sfreq, self.n_chans = config.sfreq, n_chans
        self.mlp = nn.Sequential(
            nn.LayerNorm(width, eps=config.layer_norm_eps),
            nn.Linear(width, width),
            nn.GELU(),
            nn.Linear(width, n_chans * len(SUMMARY_BANDS)),
        )

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.mlp(pooled).view(-1, self.n_chans, len(SUMMARY_BANDS))

    def loss(self, prediction: torch.Tensor, signal: torch.Tensor, channel_mask: torch.Tensor) -> torch.Tensor:
        """Squared error of the deviations from the batch mean (per channel and band, over
        measured channels), over the targets' variance: 1.0 = predicting the batch mean. Centring
        drops the absolute level, which depends on the amplifier and carries little, and lets
        the loss start near 1 instead of at the level's square."""
        target = log_band_powers(signal, self.sfreq)
        measured = (channel_mask > 0.5).unsqueeze(-1).expand_as(target).float()
        count = measured.sum(0).clamp_min(1.0)

        def centred(x: torch.Tensor) -> torch.Tensor:
            return (x - (x * measured).sum(0) / count) * measured

        target, prediction = centred(target), centred(prediction.float())
        return (prediction - target).square().sum() / target.square().sum().clamp_min(1e-6)
