"""The peer transformers (CBraMod-style, LaBraM-style): the papers' sizes, whole 1 s patches of any
count, the channel mask as input, save/load, ONNX parity, and errors that name the field."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eegfm.model.architectures import architecture_of, get_architecture, load_model_folder
from eegfm.model.cbramod import CBraModConfig
from eegfm.model.config import ConfigError
from eegfm.model.export import OnnxEEGFM, export_onnx
from eegfm.model.labram import LaBraMConfig

PEERS = ["cbramod", "labram"]


def build(name: str, preset: str = "tiny", **overrides):
    architecture = get_architecture(name)
    torch.manual_seed(0)
    return architecture.model_class(architecture.config_class.from_preset(preset, **overrides)).eval()


@pytest.mark.parametrize(("name", "published"), [("cbramod", 4.9e6), ("labram", 5.8e6)])
def test_base_is_the_papers_size(name, published):
    """CBraMod 4.9 M parameters (Wang et al. 2025), LaBraM-base 5.8 M (Jiang et al. 2024)."""
    count = sum(p.numel() for p in build(name, "base", head="binary").parameters())
    assert abs(count - published) / published < 0.03


@pytest.mark.parametrize("name", PEERS)
def test_whole_patches_of_any_count_are_read_and_a_remainder_is_not(name):
    model, eeg = build(name), 20 * torch.randn(2, 19, 2560)
    out = model(eeg)
    assert out.logits.shape == (2, 6) and out.pooled.shape == (2, 64) and torch.isfinite(out.logits).all()
    torch.testing.assert_close(model(torch.cat([eeg, torch.randn(2, 19, 100)], dim=-1)).logits, out.logits)
    assert model(eeg[..., :256]).logits.shape == (2, 6)
    with pytest.raises(ValueError, match=r"eeg: expected \(batch, 19, n_times >= 256\)"):
        model(eeg[..., :255])
    with pytest.raises(ValueError, match=r"eeg: expected \(batch, 19, n_times >= 256\)"):
        model(torch.randn(2, 18, 512))


@pytest.mark.parametrize("name", PEERS)
def test_the_channel_mask_is_an_input(name):
    model, eeg = build(name), 20 * torch.randn(2, 19, 1280)
    with torch.no_grad():  # as after training: the interpolated-channel vector starts near zero
        model.encoder.interpolated.normal_()
    mask = torch.ones(2, 19)
    mask[:, 4] = 0
    assert not torch.allclose(model(eeg, channel_mask=mask).logits, model(eeg).logits)
    torch.testing.assert_close(model(eeg, channel_mask=torch.ones(19)).logits, model(eeg).logits)


@pytest.mark.parametrize("name", PEERS)
def test_every_channel_reaches_the_embedding(name):
    """A change in one channel at one second moves the window's embedding (the attention mixes it in)."""
    model, eeg = build(name), 20 * torch.randn(1, 19, 1280)
    changed = eeg.clone()
    changed[0, 18, 512:768] += 50.0
    assert not torch.allclose(model(changed).pooled, model(eeg).pooled)


@pytest.mark.parametrize("name", PEERS)
def test_a_flat_channel_leaves_every_gradient_finite(name):
    """An all-zero channel (a disconnected lead) trains, and explanations' input gradients stay finite."""
    model, eeg = build(name).train(), 20 * torch.randn(2, 19, 1280)
    eeg[:, 7] = 0.0
    eeg.requires_grad_(True)
    model(eeg).logits.sum().backward()
    assert torch.isfinite(eeg.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", PEERS)
def test_save_load_and_onnx_match_torch(name, tmp_path):
    model = build(name, head="binary", id2label={0: "rest", 1: "task"})
    model.save_pretrained(tmp_path / name)
    assert architecture_of(tmp_path / name).name == name
    eeg = 20 * torch.randn(3, 19, 1280)
    with torch.no_grad():
        expected = model(eeg).logits
        torch.testing.assert_close(load_model_folder(tmp_path / name)(eeg).logits, expected)
        runner = OnnxEEGFM(export_onnx(model, tmp_path / f"{name}.onnx"))
        longer = 20 * torch.randn(2, 19, 2560)
        for batch in (eeg, longer):
            got = runner.session.run(["logits"], runner.feed(batch))[0]
            np.testing.assert_allclose(got, model(batch).logits.numpy(), rtol=1e-3, atol=1e-4)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"CBraModConfig.num_attention_heads: expected an even number"):
        CBraModConfig(num_attention_heads=3)
    with pytest.raises(ConfigError, match=r"CBraModConfig.hidden_size: expected an even width"):
        CBraModConfig(hidden_size=63, num_attention_heads=2)
    with pytest.raises(ConfigError, match=r"CBraModConfig.num_attention_heads: expected a divisor of half the width"):
        CBraModConfig(hidden_size=100, num_attention_heads=8)
    with pytest.raises(ConfigError, match=r"LaBraMConfig.num_attention_heads: expected a divisor of hidden_size"):
        LaBraMConfig(hidden_size=64, num_attention_heads=10)
    with pytest.raises(ConfigError, match=r"LaBraMConfig.conv_channels: expected a multiple of 4"):
        LaBraMConfig(conv_channels=6)
    with pytest.raises(ConfigError, match=r"labram preset: expected one of 'tiny', 'base'; got 'huge'"):
        LaBraMConfig.from_preset("huge")


def test_labram_names_its_longest_window():
    model = build("labram", max_patches=4)
    with pytest.raises(ValueError, match=r"eeg: at most max_patches=4 patches a window; got 5"):
        model(torch.randn(1, 19, 1280))
