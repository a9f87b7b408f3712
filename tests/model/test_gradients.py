"""Every trainable parameter gets a gradient in every step: plain DDP (no find_unused_parameters)
and Horovod need it. Unused branches (absent modalities, the sample-mask embedding outside
pretraining, the encoder's top and the auxiliary head in pretraining) are tied in with zero
weights (``model.numerics.tie_unused``); these tests pin that, and that values do not change."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from torch import nn

from eegfm.model import create_pretraining_model
from eegfm.model.numerics import tie_unused
from tests.model.conftest import HEADS, make_batch, make_model, make_targets

BATCHES = {
    "eeg only": (),
    "eeg + age/sex (typical pretraining)": ("clinical",),
    "every modality": ("spectrogram", "ecg", "clinical"),
}


def _missing_gradients(model: nn.Module) -> list[str]:
    return [
        name
        for name, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())
    ]


def _pretraining_batch(modalities: tuple[str, ...]) -> dict[str, torch.Tensor]:
    inputs = make_batch(3, 5, modalities=modalities)
    inputs["channel_mask"] = torch.ones(3, 19)
    inputs["channel_mask"][0, [4, 11]] = 0
    return inputs


@pytest.mark.parametrize("auxiliary", [None, "sleep_stage"])
def test_pretraining_gives_every_parameter_a_gradient(auxiliary):
    torch.manual_seed(0)
    model = create_pretraining_model("tiny", auxiliary_head=auxiliary)
    model.train()
    label_sets = [None] if auxiliary is None else [None, torch.tensor([0, 3, -1])]
    for batch, modalities in BATCHES.items():
        for labels in label_sets:  # a step without auxiliary labels too
            model.zero_grad(set_to_none=True)
            out = model(
                **_pretraining_batch(modalities), auxiliary_labels=labels, generator=torch.Generator().manual_seed(0)
            )
            out.loss.backward()
            assert _missing_gradients(model) == [], f"{batch}, auxiliary labels {labels}"


def test_a_batch_of_one_gives_every_parameter_a_gradient_laid_out_like_it():
    # DDP copies gradients into buckets laid out like the parameters and warns ("Grad strides do
    # not match bucket view strides") for one that is not: the fusion's null tokens got a strided
    # view into a concatenation's gradient when a (last, partial) batch held one window.
    torch.manual_seed(0)
    model = create_pretraining_model("tiny")
    model.train()
    for batch, modalities in BATCHES.items():
        model.zero_grad(set_to_none=True)
        inputs = make_batch(1, 5, modalities=modalities)
        model(**inputs, generator=torch.Generator().manual_seed(0)).loss.backward()
        strided = [name for name, p in model.named_parameters() if p.grad is not None and p.grad.stride() != p.stride()]
        assert strided == [], batch


@pytest.mark.parametrize("head", HEADS)
def test_task_heads_give_every_parameter_a_gradient(head):
    model = make_model("tiny", head)
    model.train()
    for batch, modalities in BATCHES.items():
        model.zero_grad(set_to_none=True)
        model(**make_batch(2, 5, modalities=modalities), labels=make_targets(head, 2)).loss.backward()
        assert _missing_gradients(model) == [], batch


@pytest.mark.parametrize("kind", ["lora", "bottleneck"])
def test_adapted_and_partly_frozen_models_give_every_trainable_parameter_a_gradient(kind):
    model = make_model("tiny")
    model.add_adapters(kind, rank=4)
    model.train()
    model(**make_batch(2, 5), labels=make_targets("hms6", 2)).loss.backward()
    assert _missing_gradients(model) == []
    frozen = make_model("tiny", gradient_checkpointing=True)
    frozen.unfreeze_encoder(last_n_layers=2)
    frozen.train()
    frozen(**make_batch(2, 5), labels=make_targets("hms6", 2)).loss.backward()
    assert _missing_gradients(frozen) == []
    assert all(p.grad is None for p in frozen.parameters() if not p.requires_grad)


def test_tie_ins_change_no_value_and_vanish_outside_training():
    model = make_model("tiny")
    inputs = make_batch(2, 5, modalities=("clinical",))
    model.train()
    torch.manual_seed(1)
    with_grad = model(**inputs, labels=make_targets("hms6", 2))
    torch.manual_seed(1)
    with torch.no_grad():  # no tie-in without autograd
        without_grad = model(**inputs, labels=make_targets("hms6", 2))
    torch.testing.assert_close(with_grad.logits, without_grad.logits, rtol=0, atol=0)
    torch.testing.assert_close(with_grad.loss, without_grad.loss, rtol=0, atol=0)

    pretraining = create_pretraining_model("tiny")
    pretraining.train()
    out = pretraining(**inputs, generator=torch.Generator().manual_seed(0))
    expected = (
        pretraining.config.reconstruction_weight * out.reconstruction_loss
        + pretraining.config.contrastive_weight * out.contrastive_loss
    )
    torch.testing.assert_close(out.loss, expected, rtol=0, atol=0)

    layer = nn.Linear(3, 3)
    x = torch.randn(4, 3)
    assert tie_unused(x, layer) is not x
    layer.eval()
    assert tie_unused(x, layer) is x  # eval mode: nothing added (exported graphs stay clean)
    layer.train()
    with torch.no_grad():
        assert tie_unused(x, layer) is x
    layer.requires_grad_(False)
    assert tie_unused(x, layer) is x


@pytest.fixture
def single_process_group():
    """A one-rank gloo process group: DDP's reducer checks unused parameters even at world size 1
    (the step after a parameter missed its gradient fails: "Expected to have finished reduction")."""
    # Nothing in the suite initialises a process group in-process (launches are subprocesses).
    assert not dist.is_initialized(), "a process group leaked into the test process"
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_plain_ddp_without_find_unused_parameters(single_process_group):
    torch.manual_seed(0)
    pretraining = nn.parallel.DistributedDataParallel(create_pretraining_model("tiny", auxiliary_head="sleep_stage"))
    task = nn.parallel.DistributedDataParallel(make_model("tiny"))
    # DDP raises in step k + 1 if a parameter missed its gradient in step k: three steps check two
    for step, modalities in enumerate([("clinical",), (), ("spectrogram", "ecg", "clinical")]):
        inputs = _pretraining_batch(modalities)
        labels = torch.tensor([1, -1, 2]) if step % 2 else None
        pretraining(**inputs, auxiliary_labels=labels, generator=torch.Generator().manual_seed(step)).loss.backward()
        task.train()
        task(**inputs, labels=make_targets("hms6", 3)).loss.backward()
