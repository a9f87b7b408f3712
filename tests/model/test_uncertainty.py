"""Fixed MC-dropout masks on the head: reproducible, saved through config.json, the same samples
in PyTorch and ONNX Runtime, and the encoder run once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eegfm.model.config import ConfigError, EEGFMConfig
from eegfm.model.export import OnnxEEGFM, export_onnx
from eegfm.model.modeling import EEGFMModel
from eegfm.model.uncertainty import dropout_masks
from tests.model.conftest import make_batch, make_model


def test_masks_are_seeded_prefix_stable_and_drop_the_configured_fraction():
    masks = dropout_masks(50, 512, 0.25, seed=7)
    assert torch.equal(masks, dropout_masks(50, 512, 0.25, seed=7))
    assert torch.equal(masks[:10], dropout_masks(10, 512, 0.25, seed=7))  # the first masks never change
    assert not torch.equal(masks, dropout_masks(50, 512, 0.25, seed=8))
    assert masks.unique().tolist() == pytest.approx([0.0, 1 / 0.75])
    assert (masks == 0).float().mean().item() == pytest.approx(0.25, abs=0.01)
    assert torch.equal(dropout_masks(3, 8, 0.0, seed=0), torch.ones(3, 8))
    assert dropout_masks(0, 8, 0.1, seed=0).shape == (0, 8)
    with pytest.raises(ValueError, match=r"rate: expected a dropout fraction in \[0, 1\); got 1.0"):
        dropout_masks(2, 8, 1.0, seed=0)


def test_config_names_bad_mc_values():
    with pytest.raises(ConfigError, match=r"EEGFMConfig.mc_passes: expected an integer in \[0, 1000\]; got -1"):
        EEGFMConfig.from_preset("tiny", mc_passes=-1)
    with pytest.raises(ConfigError, match=r"EEGFMConfig.mc_dropout: expected a number in \[0.0, 1.0\)"):
        EEGFMConfig.from_preset("tiny", mc_dropout=1.0)


def test_samples_are_the_head_under_each_mask_and_survive_saving(tmp_path):
    model = make_model("tiny", "hms6", seed=1, mc_passes=8, mc_dropout=0.3)
    inputs = make_batch(3, 4)
    with torch.no_grad():
        logits, samples = model.logits_with_samples(**inputs)
        features = model.forward_features(**inputs)
    assert samples.shape == (3, 8, 6)
    torch.testing.assert_close(logits, model(**inputs).logits)
    # by hand: LayerNorm, the k-th mask, the linear layer
    normed = model.head.norm(features.pooled)
    masks = dropout_masks(8, model.config.hidden_size, 0.3, seed=0)
    for k in range(8):
        torch.testing.assert_close(samples[:, k], model.head.fc(normed * masks[k]))
    assert samples.std(dim=1).mean() > 0  # the masks differ, so do the samples
    model.save_pretrained(tmp_path / "model")
    reloaded = EEGFMModel.from_pretrained(tmp_path / "model").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded.sample_logits(**inputs), samples)
    reloaded.set_mc_passes(3)
    with torch.no_grad():
        torch.testing.assert_close(reloaded.sample_logits(**inputs), samples[:, :3])
    assert reloaded.config.mc_passes == 3


def test_binary_samples_keep_a_class_axis_and_zero_passes_give_none():
    model = make_model("tiny", "binary", seed=2, mc_passes=4)
    with torch.no_grad():
        assert model.sample_logits(**make_batch(2, 2)).shape == (2, 4, 1)
    model.set_mc_passes(0)
    with torch.no_grad():
        assert model.sample_logits(**make_batch(2, 2)).shape == (2, 0, 1)


@pytest.mark.slow  # 19 s; the default run compares every ONNX output field in tests/inference/test_predictor.py
def test_onnx_runtime_gives_the_torch_samples(tmp_path):
    model = make_model("tiny", "hms6", seed=5, mc_passes=6, modalities=[])
    path = export_onnx(model, tmp_path / "model.onnx")
    runner = OnnxEEGFM(path)
    assert runner.mc_passes == 6
    inputs = make_batch(3, 3, seed=4)
    logits, samples = runner.logits_with_samples(**inputs)
    with torch.no_grad():
        expected_logits, expected = model.logits_with_samples(**inputs)
    np.testing.assert_allclose(samples, expected.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(logits, expected_logits.numpy(), atol=1e-4, rtol=0)
