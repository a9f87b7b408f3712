"""Adapters (LoRA, bottleneck), freezing and partial unfreezing."""

from __future__ import annotations

import pytest
import torch

from eegfm.model import ConfigError, EEGFMModel, count_parameters, count_trainable
from tests.model.conftest import make_batch, make_model, make_targets


@pytest.mark.parametrize("preset", ["tiny", "base"])
@pytest.mark.parametrize("kind", ["lora", "bottleneck"])
def test_adapters_train_under_five_percent(preset, kind):
    model = make_model(preset)
    inputs = make_batch(2, 5)
    with torch.no_grad():
        before = model(**inputs).logits
    trainable = model.add_adapters(kind, rank=4 if preset == "tiny" else 8)
    assert trainable == count_trainable(model)
    assert trainable / count_parameters(model) < 0.05
    with torch.no_grad():  # zero-initialised up-projections: the adapted model starts identical
        # Identical up to float32 rounding (torch's float32 defaults): the adapted layers take a
        # different matmul order, and BLAS threading varies between runs (seen: 1.4e-6 off).
        torch.testing.assert_close(model(**inputs).logits, before)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any(n.startswith("head.") for n in names)
    assert all(n.startswith("head.") or ".lora_" in n or ".adapter." in n for n in names)


def test_an_adapter_step_changes_only_adapters_and_head(tmp_path):
    model = make_model("tiny")
    model.add_adapters("lora", rank=4)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    inputs = make_batch(4, 5)
    model.train()
    for _ in range(2):
        loss = model(**inputs, labels=make_targets("hms6", 4)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for name, value in frozen.items():
        assert torch.equal(dict(model.named_parameters())[name], value), name
    lora_b = model.encoder.blocks[0].temporal.qkv.lora_b
    assert lora_b.abs().sum() > 0
    # save/load rebuilds the adapters from config.json
    model.eval()
    model.save_pretrained(tmp_path)
    loaded = EEGFMModel.from_pretrained(tmp_path).eval()
    assert loaded.config.adapter_kind == "lora" and loaded.config.adapter_rank == 4
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits, rtol=0, atol=0)
    with pytest.raises(ConfigError, match="already has 'lora' adapters"):
        loaded.add_adapters("bottleneck")


def test_freeze_and_partial_unfreeze():
    model = make_model("tiny")
    model.freeze_encoder()
    assert count_trainable(model) == count_parameters(model.head)
    model.unfreeze_encoder(last_n_layers=1)  # the top patch layer
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("encoder.patch_layers.0.") for n in trainable)
    assert not any(n.startswith("encoder.blocks.") for n in trainable)
    model.unfreeze_encoder(last_n_layers=2)  # reaches into the spatio-temporal blocks
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("encoder.blocks.1.") for n in trainable)
    assert not any(n.startswith("encoder.blocks.0.") for n in trainable)
    assert any(n.startswith("encoder.fusion.") for n in trainable)
    model.unfreeze_encoder()
    assert count_trainable(model) == count_parameters(model)
    with pytest.raises(ConfigError, match=r"last_n_layers: expected an integer in \[0, 3\] or None; got 9"):
        model.unfreeze_encoder(last_n_layers=9)


def test_lora_merged_weight_is_the_effective_linear_map():
    from eegfm.model.adapters import LoRALinear

    torch.manual_seed(0)
    layer = LoRALinear(torch.nn.Linear(6, 4), rank=2)
    torch.nn.init.normal_(layer.lora_b)
    x = torch.randn(3, 6)
    torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, layer.merged_weight, layer.base.bias))
