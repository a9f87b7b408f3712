"""Mixed precision and edge cases: bfloat16/float16 autocast, float32 losses, fully-masked rows."""

from __future__ import annotations

import pytest
import torch

from eegfm.model import create_pretraining_model
from eegfm.model.heads import create_head
from eegfm.model.pretraining import MaskedReconstructionHead, info_nce
from tests.model.conftest import HEADS, make_batch, make_model, make_targets

ALL = ("spectrogram", "ecg", "clinical")


def test_encoder_runs_under_bfloat16_autocast():
    """The training loop runs forward passes under ``torch.autocast(device, bfloat16)``."""
    model = make_model("tiny")
    inputs = make_batch(2, 5, modalities=ALL)
    with torch.no_grad():
        reference = model(**inputs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(**inputs)
    assert low.logits.dtype == torch.bfloat16
    scale = reference.logits.abs().max()
    assert (low.logits.float() - reference.logits).abs().max() < 0.05 * scale
    torch.testing.assert_close(low.modality_gates.float(), reference.modality_gates, atol=0.02, rtol=0.02)

    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(**inputs, labels=make_targets("hms6", 2))
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())

    torch.manual_seed(0)
    pretraining = create_pretraining_model("tiny", auxiliary_head="sleep_stage")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = pretraining(
            **make_batch(2, 5, modalities=("clinical",)),
            auxiliary_labels=torch.tensor([1, 2]),
            generator=torch.Generator().manual_seed(0),
        )
    for name in ("loss", "reconstruction_loss", "contrastive_loss", "auxiliary_loss"):
        value = getattr(out, name)
        assert value.dtype == torch.float32 and torch.isfinite(value), name
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in pretraining.parameters())


def test_float16_autocast_does_not_overflow_on_large_signals():
    """Squared DFT magnitudes of a 1 mV patch exceed float16's 65504: the spectrum runs in float32."""
    model = make_model("tiny")
    inputs = make_batch(2, 5, modalities=ALL)
    inputs["eeg"] = inputs["eeg"] * 50  # ~1000 µV: artifacts, disconnected electrodes
    with torch.no_grad():
        reference = model(**inputs).logits
        with torch.autocast("cpu", dtype=torch.float16):
            low = model(**inputs).logits
    assert torch.isfinite(low).all()
    torch.testing.assert_close(low.float(), reference, atol=0.01 * reference.abs().max().item(), rtol=0)


@pytest.mark.parametrize("head", HEADS)
def test_head_losses_are_float32_and_zero_without_targets(head):
    model = make_model("tiny", head)
    head_module = model.head
    logits = torch.randn(*((4,) if head == "binary" else (4, head_module.n_outputs))).bfloat16().requires_grad_()
    loss = head_module.loss(logits, make_targets(head, 4))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    missing = {
        "hms6": torch.zeros(4, 6),
        "binary": torch.full((4,), -1.0),
        "regression": torch.full((4, 2), float("nan")),
    }
    nothing = head_module.loss(logits, missing.get(head, torch.full((4,), -1)))
    assert nothing.item() == 0.0
    nothing.backward()  # a batch without labels still has a (zero) gradient path, not NaN
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and (logits.grad == 0).all()


def test_multiclass_loss_ignores_negative_targets_without_indexing():
    from eegfm.model import EEGFMConfig

    config = EEGFMConfig.from_preset("tiny", head="multiclass", id2label={0: "a", 1: "b", 2: "c"})
    head = create_head("multiclass", config)
    logits = torch.randn(5, 3)
    target = torch.tensor([2, -1, 0, -1, 1])
    keep = target >= 0
    expected = torch.nn.functional.cross_entropy(logits[keep], target[keep])
    torch.testing.assert_close(head.loss(logits, target), expected)


def test_pretraining_losses_are_float32_under_low_precision_inputs():
    generator = torch.Generator().manual_seed(0)
    keys = torch.randn(40, 16, generator=generator)
    positive = torch.arange(0, 40, 5)
    exact = info_nce(keys[positive], keys, positive, 0.1)
    low = info_nce(keys[positive].bfloat16(), keys.bfloat16(), positive, 0.1)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, exact, atol=0.05, rtol=0.05)
    # nothing valid but the positives: every query row keeps its own positive, no NaN
    none = info_nce(keys[positive], keys, positive, 0.1, key_valid=torch.zeros(40, dtype=torch.bool))
    assert none.item() == pytest.approx(0.0, abs=1e-6)
    target = torch.randn(2, 3, 256, generator=generator)
    mask = torch.zeros(2, 3, 256, dtype=torch.bool)
    # no masked sample at all: 0, not 0/0
    assert MaskedReconstructionHead.loss(target.bfloat16(), target, mask).item() == 0.0
    mask[0, 0, :10] = True
    assert MaskedReconstructionHead.loss(target.bfloat16(), target, mask).dtype == torch.float32


def test_bfloat16_model_takes_adapters():
    model = make_model("tiny").to(torch.bfloat16)
    model.add_adapters("lora", rank=4)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        out = model(**make_batch(1, 5))
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.logits).all()
