"""Optimizer parameter groups: layer-wise lr decay and weight-decay exemptions."""

from __future__ import annotations

import pytest
import torch

from eegfm.model import ConfigError, create_pretraining_model, param_groups_lrd
from eegfm.model.optim import layer_id, num_layers
from tests.model.conftest import make_model


def test_groups_cover_every_trainable_parameter_once_with_depth_decayed_lrs():
    model = make_model("tiny")  # 2 blocks, 1 patch layer: depths 0..5
    groups = param_groups_lrd(model, base_lr=1e-3, weight_decay=0.05, layer_decay=0.5)
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters()) and len(set(grouped)) == len(grouped)
    top = num_layers(model.config) - 1
    assert top == 5
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named["head.fc.weight"])] == 1e-3
    assert lr_of[id(named["encoder.final_norm.weight"])] == 1e-3
    assert lr_of[id(named["encoder.patch_layers.0.attention.qkv.weight"])] == pytest.approx(5e-4)
    assert lr_of[id(named["encoder.fusion.gate.spectrogram.weight"])] == pytest.approx(2.5e-4)
    assert lr_of[id(named["encoder.blocks.1.mlp.fc1.weight"])] == pytest.approx(1.25e-4)
    assert lr_of[id(named["encoder.blocks.0.mlp.fc1.weight"])] == pytest.approx(6.25e-5)
    assert lr_of[id(named["encoder.tokenizer.patches.raw.weight"])] == pytest.approx(3.125e-5)
    # no decay on biases, norms and embedding-like tensors; decay on weight matrices
    for name in (
        "head.fc.bias",
        "encoder.final_norm.weight",
        "encoder.tokenizer.interpolated",
        "encoder.fusion.attention.ecg.null",
        "encoder.fusion.tokenizers.clinical.sex",
        "encoder.fusion.tokenizers.clinical.kind",
        "encoder.blocks.0.spatial.interpolated_logit",
    ):
        assert decay_of[id(named[name])] == 0.0, name
    for name in ("head.fc.weight", "encoder.blocks.0.temporal.qkv.weight", "encoder.tokenizer.electrodes.mlp.0.weight"):
        assert decay_of[id(named[name])] == 0.05, name
    # an optimizer and a LambdaLR schedule keep the per-group ratios
    optimizer = torch.optim.AdamW(groups)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.1)
    scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.1 * g["lr_scale"] * 1e-3 for g in groups])


def test_pretraining_heads_are_on_top_and_frozen_parameters_are_left_out():
    pretraining = create_pretraining_model("tiny", auxiliary_head="sleep_stage")
    config = pretraining.config
    for name, _ in pretraining.named_parameters():
        if not name.startswith("encoder."):
            assert layer_id(name, config) == num_layers(config) - 1, name
    model = make_model("tiny")
    model.add_adapters("lora", rank=4)
    groups = param_groups_lrd(model, 1e-3, 0.05, 0.75)
    assert sum(len(g["params"]) for g in groups) == sum(1 for p in model.parameters() if p.requires_grad)
    lora = dict(model.named_parameters())["encoder.blocks.0.temporal.qkv.lora_a"]
    assert any(lora is p and g["layer_id"] == 1 and g["weight_decay"] == 0.05 for g in groups for p in g["params"])
    flat = param_groups_lrd(model, 1e-3, 0.05)
    assert {g["lr"] for g in flat} == {1e-3}


def test_bad_arguments_name_the_argument():
    model = make_model("tiny")
    with pytest.raises(ConfigError, match=r"param_groups_lrd layer_decay: expected a number in \[0.0, 1.0\]; got 1.5"):
        param_groups_lrd(model, 1e-3, 0.05, 1.5)
    with pytest.raises(ConfigError, match="layer_decay: expected a number in \\(0, 1\\]; got 0.0"):
        param_groups_lrd(model, 1e-3, 0.05, 0.0)
    with pytest.raises(ConfigError, match="expected an eegfm model"):
        param_groups_lrd(torch.nn.Linear(2, 2), 1e-3, 0.05)
    with pytest.raises(ValueError, match="no depth known for parameter 'encoder.extra.weight'"):
        layer_id("encoder.extra.weight", model.config)
