"""Head registry, losses, reset_head."""

from __future__ import annotations

import pytest
import torch

from eegfm.core.tasks import HMS_CLASSES
from eegfm.model import ConfigError, EEGFMConfig, TaskHead, create_head, list_heads, register_head
from tests.model.conftest import make_batch, make_model


def test_registry_lists_the_task_heads():
    assert list_heads() == ["binary", "hms6", "multiclass", "regression", "sleep_stage"]
    with pytest.raises(ConfigError, match=r"head: expected one of 'binary', .*; got 'nope'"):
        create_head("nope", EEGFMConfig.from_preset("tiny"))
    with pytest.raises(ConfigError, match="already registered"):
        register_head("hms6")(TaskHead)


def test_hms_loss_is_the_kl_divergence_of_vote_distributions():
    head = create_head("hms6", EEGFMConfig.from_preset("tiny"))
    votes = torch.tensor([[3.0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 2], [0, 0, 0, 0, 0, 0]])
    target = votes[:2] / votes[:2].sum(-1, keepdim=True)
    perfect = torch.log(target.clamp(min=1e-9))
    loss = head.loss(torch.cat([perfect, torch.zeros(1, 6)]), votes)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)  # the vote-less row does not count
    uniform = head.loss(torch.zeros(3, 6), votes)
    expected = torch.nn.functional.kl_div(
        torch.full((2, 6), -torch.log(torch.tensor(6.0))), target, reduction="batchmean"
    )
    assert uniform.item() == pytest.approx(expected.item(), rel=1e-5)
    assert head.predict(torch.zeros(1, 6)).sum().item() == pytest.approx(1.0)


def test_binary_multiclass_and_regression_losses_ignore_missing_targets():
    config = EEGFMConfig.from_preset("tiny", head="multiclass", id2label={0: "a", 1: "b", 2: "c"})
    binary = create_head("binary", EEGFMConfig.from_preset("tiny", head="binary"))
    logits = torch.tensor([2.0, -1.0, 5.0])
    full = binary.loss(logits[:2], torch.tensor([1.0, 0.0]))
    assert binary.loss(logits, torch.tensor([1.0, 0.0, -1.0])).item() == pytest.approx(full.item())
    assert binary.loss(logits, torch.tensor([1.0, 0.0, float("nan")])).item() == pytest.approx(full.item())

    multiclass = create_head("multiclass", config)
    logits = torch.randn(4, 3)
    kept = torch.nn.functional.cross_entropy(logits[:2], torch.tensor([2, 0]))
    assert multiclass.loss(logits, torch.tensor([2, 0, -1, -1])).item() == pytest.approx(kept.item())

    regression = create_head(
        "regression", EEGFMConfig.from_preset("tiny", head="regression", id2label={0: "age", 1: "x"})
    )
    prediction = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    target = torch.tensor([[1.0, float("nan")], [5.0, 4.0]])
    assert regression.loss(prediction, target).item() == pytest.approx(4.0 / 3.0)


def test_forward_head_takes_features_or_an_embedding():
    model = make_model("tiny")
    with torch.no_grad():
        features = model.forward_features(**make_batch(2, 5))
        logits = model.forward_head(features)
        from_pooled = model.forward_head(features.pooled)
        pre = model.forward_head(features, pre_logits=True)
    torch.testing.assert_close(logits, from_pooled)
    assert pre.shape == (2, model.config.hidden_size)
    assert model.get_classifier() is model.head


def test_reset_head_changes_the_task_and_the_labels(tmp_path):
    model = make_model("tiny")
    encoder_weight = model.encoder.blocks[0].temporal.qkv.weight.clone()
    model.reset_head("multiclass", ["rest", "task"])
    assert model.config.head == "multiclass"
    assert model.config.id2label == {0: "rest", 1: "task"} and model.config.label2id == {"rest": 0, "task": 1}
    inputs = make_batch(2, 5)
    with torch.no_grad():
        assert model(**inputs).logits.shape == (2, 2)
    assert torch.equal(model.encoder.blocks[0].temporal.qkv.weight, encoder_weight)
    model.reset_head("hms6")
    assert model.config.id2label[0] == HMS_CLASSES[0]
    with pytest.raises(ConfigError, match="id2label: head 'hms6' expects 6 labels"):
        model.reset_head("hms6", ["a", "b"])
    assert model.config.head == "hms6" and len(model.config.id2label) == 6  # unchanged on error
    model.save_pretrained(tmp_path)
    from eegfm.model import EEGFMModel

    assert EEGFMModel.from_pretrained(tmp_path).config.id2label == model.config.id2label


def test_losses_name_a_target_of_the_wrong_size():
    for head, logits, target, message in [
        ("binary", torch.zeros(4), torch.zeros(4, 2), r"binary target: expected one 0/1 label per sample, 4 values"),
        ("multiclass", torch.zeros(4, 3), torch.zeros(3), r"multiclass target: expected one class index per sample"),
        ("regression", torch.zeros(4, 2), torch.zeros(4), r"regression target: expected 2 value\(s\) per sample"),
    ]:
        model = make_model("tiny", head)  # multiclass: 3 classes, regression: 2 targets (conftest)
        with pytest.raises(ValueError, match=message):
            model.head.loss(logits, target)


def test_a_head_reading_band_powers_adds_them_and_refuses_an_embedding_alone():
    model = make_model("tiny", "binary", seed=2, head_band_powers=True, modalities=[])
    batch = make_batch(2, 5)
    with torch.no_grad():
        features = model.forward_features(batch["eeg"])
        before = model.head(features)
        torch.nn.init.normal_(model.head.fc_bands.weight, std=0.05)
        after = model.head(features)
        moved = model.head.fc_bands(features.band_features).squeeze(-1)
    assert torch.allclose(after - before, moved, atol=1e-5) and moved.abs().max() > 1e-3
    with pytest.raises(ValueError, match=r"features: a head with band powers or covariances reads the encoder's"):
        model.head(features.pooled)


def test_inputs_a_probe_left_out_stay_out_of_the_logits_and_the_gradients():
    model = make_model("tiny", "binary", seed=3, head_band_powers=True, head_covariances=True, modalities=[])
    groups = model.head.probe_feature_groups()
    assert list(groups) == ["embedding", "band_powers", "covariances"]
    assert groups["covariances"].stop == model.config.hidden_size + model.head.fc_bands.in_features
    batch = make_batch(2, 5)
    features = model.forward_features(batch["eeg"])
    torch.nn.init.normal_(model.head.fc_bands.weight, std=0.01)
    model.head.read_only(["embedding", "band_powers"])
    model.head(features).sum().backward()
    offset = model.config.hidden_size
    covariance_columns = slice(groups["covariances"].start - offset, groups["covariances"].stop - offset)
    assert not model.head.fc_bands.weight.grad[:, covariance_columns].any()
    assert model.head.fc_bands.weight.grad[:, : covariance_columns.start].abs().sum() > 0
    with torch.no_grad():
        reread = model.head(features)
        model.head.fc_bands.weight[:, covariance_columns] += 1.0  # weights on a gated input move nothing
        torch.testing.assert_close(model.head(features), reread)
    assert "head.band_gate" in model.state_dict()  # a reloaded model leaves them out too
    with pytest.raises(ValueError, match=r"inputs: expected 'embedding' and any of"):
        model.head.read_only(["band_powers"])
