"""Temporal attention: relative (rotary) positions, causal masking, checkpointing."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from eegfm.model import EEGFMConfig
from eegfm.model.temporal import MATH_ATTENTION_MAX_LENGTH, SelfAttention, apply_rotary, attention, rotary_tables
from tests.model.conftest import make_batch, make_model


def test_rotary_scores_depend_only_on_the_offset():
    dim = 16
    q, k = torch.randn(dim), torch.randn(dim)
    cos, sin = rotary_tables(200, dim, device=q.device, dtype=q.dtype)

    def score(i: int, j: int) -> torch.Tensor:
        return apply_rotary(q, cos[i], sin[i]) @ apply_rotary(k, cos[j], sin[j])

    torch.testing.assert_close(score(3, 1), score(150, 148))
    torch.testing.assert_close(score(0, 7), score(100, 107))
    assert not torch.allclose(score(3, 1), score(3, 2))


def test_attention_matches_a_reference_implementation():
    config = EEGFMConfig.from_preset("tiny")
    attention = SelfAttention(config).eval()
    x = torch.randn(5, 9, 64)
    rotary = rotary_tables(9, config.head_dim, device=x.device, dtype=x.dtype)
    for causal in (False, True):
        q, k, v = attention.qkv(x).view(5, 9, 3, 4, 16).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        scores = q @ k.transpose(-1, -2) / math.sqrt(16)
        if causal:
            scores = scores.masked_fill(torch.ones(9, 9, dtype=torch.bool).triu(1), float("-inf"))
        expected = attention.out((scores.softmax(-1) @ v).transpose(1, 2).reshape(5, 9, 64))
        torch.testing.assert_close(attention(x, rotary, causal), expected, atol=1e-5, rtol=1e-5)


def test_causal_model_ignores_the_future():
    causal = make_model("tiny", causal=True)
    bidirectional = make_model("tiny")
    inputs = make_batch(1, 6)
    future = inputs["eeg"].clone()
    future[..., 5 * 256 :] += 50.0  # change the last second only
    with torch.no_grad():
        a, b = causal(inputs["eeg"]), causal(future)
        c, d = bidirectional(inputs["eeg"]), bidirectional(future)
    torch.testing.assert_close(a.channel_tokens[:, :, :5], b.channel_tokens[:, :, :5], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a.channel_tokens[:, :, 5], b.channel_tokens[:, :, 5], atol=1e-4)
    # patch tokens pass through fusion, whose gate reads the whole window; without modalities
    # the gated terms are zero, so causality holds through the patch layers too
    torch.testing.assert_close(a.patch_tokens[:, :5], b.patch_tokens[:, :5], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(c.channel_tokens[:, :, :5], d.channel_tokens[:, :, :5], atol=1e-4)


def test_gradient_checkpointing_gives_the_same_gradients():
    plain = make_model("tiny", dropout=0.1)
    checkpointed = copy.deepcopy(plain)
    checkpointed.activation_checkpointing_enable()
    assert checkpointed.encoder.gradient_checkpointing
    from_config = make_model("tiny", gradient_checkpointing=True)
    assert from_config.encoder.gradient_checkpointing
    inputs = make_batch(2, 5, modalities=("ecg",))
    for model in (plain, checkpointed):
        model.train()
        torch.manual_seed(5)  # same dropout masks; checkpointing replays the RNG state
        model(**inputs).logits.square().sum().backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("length", [10, MATH_ATTENTION_MAX_LENGTH + 1, 50])
@pytest.mark.parametrize("causal", [False, True])
def test_cuda_attention_takes_the_math_backend_for_short_sequences_only(length, causal):
    q, k, v = (torch.randn(512, 6, length, 32, generator=torch.Generator().manual_seed(i)) for i in range(3))
    reference = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=causal)
    q, k, v = (t.cuda().bfloat16() for t in (q, k, v))
    out = attention(q, k, v, dropout_p=0.0, causal=causal)
    with sdpa_kernel(SDPBackend.MATH):
        math_backend = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    assert torch.equal(out, math_backend) == (length <= MATH_ATTENTION_MAX_LENGTH)
    # either path is bfloat16 attention: within bfloat16 rounding of the float64 result
    torch.testing.assert_close(out.double().cpu(), reference, atol=2e-2, rtol=2e-2)
    compiled = torch.compile(lambda a, b, c: attention(a, b, c, dropout_p=0.0, causal=causal), fullgraph=True)
    torch.testing.assert_close(compiled(q, k, v), out, atol=2e-2, rtol=2e-2)
