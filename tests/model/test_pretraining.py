"""Pretraining objectives: span masks, loss locality, InfoNCE, and a short run on real EEG."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from eegfm.model import EEGFMModel, canonical_positions, create_pretraining_model
from eegfm.model.pretraining import (
    SUMMARY_BANDS,
    MaskedReconstructionHead,
    choose_held_out,
    info_nce,
    log_band_powers,
    span_mask,
)
from tests.model.conftest import make_batch


def _runs(row: torch.Tensor) -> list[int]:
    """Lengths of the runs of True in a 1-d bool tensor."""
    padded = torch.cat([torch.tensor([False]), row, torch.tensor([False])]).int()
    edges = padded.diff()
    return (torch.nonzero(edges == -1).flatten() - torch.nonzero(edges == 1).flatten()).tolist()


def test_span_mask_lengths_and_ratio():
    generator = torch.Generator().manual_seed(0)
    min_len, max_len = 4, 128  # 15.6 ms and 500 ms at 256 Hz
    mask = span_mask(16, 19, 2560, min_len=min_len, max_len=max_len, ratio=0.3, generator=generator)
    assert mask.shape == (16, 19, 2560) and mask.dtype == torch.bool
    assert 0.2 < mask.float().mean() < 0.35
    isolated = span_mask(64, 1, 100_000, min_len=min_len, max_len=max_len, ratio=0.01, generator=generator)
    runs = [r for row in isolated[:, 0] for r in _runs(row)]
    # sparse spans rarely merge: nearly every run is one span within the bounds
    within = sum(min_len <= r <= max_len for r in runs) / len(runs)
    assert within > 0.97 and min(runs) >= min_len
    same = span_mask(2, 3, 500, min_len=4, max_len=20, ratio=0.3, generator=torch.Generator().manual_seed(5))
    again = span_mask(2, 3, 500, min_len=4, max_len=20, ratio=0.3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(same, again)


def test_reconstruction_loss_ignores_unmasked_samples():
    generator = torch.Generator().manual_seed(1)
    prediction = torch.randn(2, 3, 512, generator=generator, requires_grad=True)
    target = torch.randn(2, 3, 512, generator=generator)
    mask = span_mask(2, 3, 512, min_len=4, max_len=64, ratio=0.3, generator=generator)
    loss = MaskedReconstructionHead.loss(prediction, target, mask)
    # any change of the target outside the mask leaves the loss unchanged
    changed = torch.where(mask, target, target + 100.0 * torch.randn_like(target))
    assert MaskedReconstructionHead.loss(prediction, changed, mask).item() == loss.item()
    (grad,) = torch.autograd.grad(loss, prediction)
    assert (grad[~mask] == 0).all() and (grad[mask] != 0).all()
    expected = ((prediction - target)[mask] ** 2).sum() / (target[mask] ** 2).sum()
    torch.testing.assert_close(loss, expected)
    # normalised: predicting zero scores exactly 1, whatever the amplitude
    assert MaskedReconstructionHead.loss(torch.zeros_like(target), 50 * target, mask).item() == pytest.approx(1.0)


def test_contrastive_loss_is_low_for_aligned_and_high_for_shuffled_pairs():
    generator = torch.Generator().manual_seed(2)
    keys = torch.randn(8 * 19, 32, generator=generator)
    positive = torch.arange(8) * 19 + torch.randint(0, 19, (8,), generator=generator)
    aligned = info_nce(keys[positive], keys, positive, temperature=0.1)
    shuffled = info_nce(keys[positive.roll(1)], keys, positive, temperature=0.1)
    assert aligned < 0.05
    assert shuffled > 5.0
    # invalid keys are not negatives: masking all but the positives makes the task trivial
    only_positives = torch.zeros(8 * 19, dtype=torch.bool)
    assert info_nce(keys[positive.roll(1)], keys, positive, 0.1, key_valid=only_positives) < 1e-4


@pytest.mark.parametrize("invalid_fraction", [None, 0.3, 0.9])
def test_contrastive_loss_equals_cross_entropy_over_the_masked_logits(invalid_fraction):
    generator = torch.Generator().manual_seed(3)
    queries = torch.randn(30, 16, generator=generator, requires_grad=True)
    keys = torch.randn(200, 16, generator=generator, requires_grad=True)
    positive = torch.randint(0, 200, (30,), generator=generator)
    valid = None if invalid_fraction is None else torch.rand(200, generator=generator) > invalid_fraction
    if valid is not None:
        assert not valid[positive].all()  # some positives are invalid keys: they must stay in their row
    logits = F.normalize(queries, dim=-1) @ F.normalize(keys, dim=-1).T / 0.1
    if valid is not None:
        rows = torch.arange(30)
        kept = logits[rows, positive]
        logits = logits.masked_fill(~valid, torch.finfo(logits.dtype).min).index_put((rows, positive), kept)
    expected = F.cross_entropy(logits, positive)
    loss = info_nce(queries, keys, positive, 0.1, key_valid=valid)
    torch.testing.assert_close(loss, expected)
    for got, want in zip(torch.autograd.grad(loss, [queries, keys]), torch.autograd.grad(expected, [queries, keys])):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_held_out_channels_are_measured():
    mask = torch.ones(64, 19)
    mask[:, :18] = 0
    assert (choose_held_out(mask, torch.Generator().manual_seed(0)) == 18).all()


def test_pretraining_step_and_checkpoint_reuse(tmp_path):
    torch.manual_seed(0)
    model = create_pretraining_model("tiny", auxiliary_head="sleep_stage")
    inputs = make_batch(3, 5, modalities=("clinical",))
    mask = torch.ones(3, 19)
    mask[0, 4] = 0
    out = model(
        **inputs,
        channel_mask=mask,
        auxiliary_labels=torch.tensor([0, 2, -1]),
        generator=torch.Generator().manual_seed(0),
    )
    for name in ("reconstruction_loss", "contrastive_loss", "auxiliary_loss"):
        assert torch.isfinite(getattr(out, name)), name
    config = model.config
    expected = (
        config.reconstruction_weight * out.reconstruction_loss
        + config.contrastive_weight * out.contrastive_loss
        + config.auxiliary_weight * out.auxiliary_loss
    )
    torch.testing.assert_close(out.loss, expected)
    assert out.sample_mask[torch.arange(3), out.held_out].all()  # the held-out channel is hidden entirely
    assert out.held_out[0] != 4  # never an interpolated channel
    out.loss.backward()
    assert model.encoder.tokenizer.patches.masked.weight.grad.abs().sum() > 0
    # the pretrained encoder loads into a task model; its head is new
    model.save_pretrained(tmp_path)
    task = EEGFMModel.from_pretrained(tmp_path)
    for (name, a), (_, b) in zip(task.encoder.named_parameters(), model.encoder.named_parameters()):
        assert torch.equal(a, b), name
    # the default electrode positions are a buffer, rebuilt on load rather than saved as a weight
    assert "default_positions" not in model.state_dict()
    assert torch.equal(task.default_positions, canonical_positions())


def test_short_pretraining_run_on_real_eeg_lowers_both_losses(eegmat_windows):
    """300 steps of the tiny preset on real resting EEG (eegmat, 5 s windows, batch 8).

    The reconstruction head starts at zero, so the normalised loss starts at exactly 1.0, the
    score of predicting zero; falling below it means hidden samples are actually predicted
    (from neighbouring electrodes and samples), not merely that random outputs were shrunk.
    """
    torch.manual_seed(0)
    held_out, train = eegmat_windows[:8], eegmat_windows[8:]
    model = create_pretraining_model("tiny")
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)

    def evaluate() -> tuple[float, float]:
        model.eval()
        with torch.no_grad():
            out = model(held_out, generator=torch.Generator().manual_seed(123))
        model.train()
        return out.reconstruction_loss.item(), out.contrastive_loss.item()

    reconstruction_before, contrastive_before = evaluate()
    generator = torch.Generator().manual_seed(0)
    for _ in range(300):
        batch = train[torch.randint(0, len(train), (8,), generator=generator)]
        loss = model(batch, generator=generator).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    reconstruction_after, contrastive_after = evaluate()
    assert reconstruction_before == pytest.approx(1.0)
    assert reconstruction_after < 0.8, f"reconstruction {reconstruction_before:.3f} -> {reconstruction_after:.3f}"
    chance = torch.log(torch.tensor(8.0 * 19 * 5)).item()  # keys: 8 samples x 19 channels x 5 s
    assert contrastive_after < 0.95 * chance, f"contrastive {contrastive_before:.3f} -> {contrastive_after:.3f}"


def test_log_band_powers_put_a_10_hz_rhythm_in_alpha_and_depend_on_one_window_only():
    t = torch.arange(1280) / 256.0
    sine = (torch.sin(2 * torch.pi * 10 * t) + 0.01 * torch.randn(19, 1280)).expand(2, 19, 1280).clone()
    sine[1] *= 3.0  # three times the amplitude: log power up by log 9
    powers = log_band_powers(sine, 256.0)
    assert powers.shape == (2, 19, len(SUMMARY_BANDS))
    assert int(powers[0, 0].argmax()) == 2  # (8, 13) Hz
    torch.testing.assert_close(
        powers[1, :, 2] - powers[0, :, 2], torch.full((19,), torch.log(torch.tensor(9.0)).item())
    )
    torch.testing.assert_close(log_band_powers(sine[1:], 256.0)[0], powers[1])


def test_summary_objective_trains_every_layer_fine_tuning_reads(eegmat_windows):
    """With ``summary_weight`` the pooled path (channel pooling, patch layers, final norm) gets a
    gradient; predicting the batch mean scores 1.0, and 150 steps on real EEG go well below it on
    windows left out of training."""
    torch.manual_seed(0)
    model = create_pretraining_model("tiny", summary_weight=1.0)
    out = model(eegmat_windows[:8], generator=torch.Generator().manual_seed(0))
    grads = torch.autograd.grad(out.loss, list(model.parameters()), allow_unused=True)
    assert all(g is not None for g in grads)
    constant = torch.zeros(8, 19, len(SUMMARY_BANDS))
    signal = eegmat_windows[:8] / model.config.input_scale_uv
    assert model.summary.loss(constant, signal, torch.ones(8, 19)).item() == pytest.approx(1.0)
    left_out = torch.arange(len(eegmat_windows)) % 9 == 0  # windows of every subject
    held_out, train = eegmat_windows[left_out][:16], eegmat_windows[~left_out]
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(150):
        loss = model(train[torch.randint(0, len(train), (8,), generator=generator)], generator=generator).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        after = model(held_out, generator=torch.Generator().manual_seed(1)).summary_loss.item()
    assert after < 0.75, f"summary loss on left-out windows 1.0 -> {after:.3f}"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("deterministic", [False, True])
def test_masks_built_on_the_gpu_are_the_cpus_bit_for_bit(deterministic):
    model = create_pretraining_model("tiny")
    eeg = torch.randn(48, 19, 2560, generator=torch.Generator().manual_seed(0))
    channel_mask = (torch.rand(48, 19, generator=torch.Generator().manual_seed(1)) > 0.2).float()
    on_cpu = model.make_views(eeg, channel_mask, torch.Generator().manual_seed(7))
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic)
    try:
        on_gpu = model.to("cuda").make_views(eeg.cuda(), channel_mask.cuda(), torch.Generator().manual_seed(7))
    finally:
        torch.use_deterministic_algorithms(previous)
    assert all(torch.equal(a, b.cpu()) for a, b in zip(on_cpu, on_gpu))
    assert on_gpu[1].is_cuda and 0.2 < on_gpu[1].float().mean() < 0.4


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("gnn_impl", ["pyg", "gather", "dense"])
def test_a_gpu_pretraining_step_never_makes_the_host_wait(gnn_impl):
    """Forward (default positions, CPU-drawn masks), backward, clipping and fused AdamW without one
    synchronising CUDA call: the host keeps queueing work ahead of the GPU."""
    model = create_pretraining_model("tiny", gnn_impl=gnn_impl).cuda()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    eeg = torch.randn(8, 19, 2560, device="cuda")

    def step() -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(eeg, generator=torch.Generator().manual_seed(0)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    step()  # first step: allocator and pinned-memory pools fill
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss = step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss).item()
