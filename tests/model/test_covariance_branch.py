"""The covariance branch (``covariance_channels``): band covariances as a band-pass filter gives
them, the readout's bands and shrinkage, montage-free virtual channels, new at fine-tuning and
silent until trained, at the top for LLRD, and saved and loaded with the same outputs (its ONNX
export: tests/model/test_export.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from eegfm.model import EEGFMModel, positions_for
from eegfm.model.band_powers import COVARIANCE_BANDS, band_covariances
from eegfm.model.config import ConfigError, EEGFMConfig
from eegfm.model.optim import layer_id, num_layers
from tests.model.conftest import make_batch, make_model

BRANCH = {"covariance_channels": 6, "modalities": []}


def test_band_covariances_are_the_covariances_of_the_band_passed_window():
    """Parseval: the Hann-windowed window through an ideal band-pass filter (the band's rfft bins
    kept), its channels' products summed, over the window's energy."""
    eeg = make_batch(2, 5, n_chans=4)["eeg"]
    covariances = band_covariances(eeg, 256.0)
    assert covariances.shape == (2, len(COVARIANCE_BANDS), 4, 4)
    x = eeg.double().numpy()
    x = x - x.mean(-1, keepdims=True)
    window = np.hanning(x.shape[-1])
    spectrum = np.fft.rfft(x * window)
    freqs = np.fft.rfftfreq(x.shape[-1], 1 / 256.0)
    for b, (low, high) in enumerate(COVARIANCE_BANDS):
        passed = np.fft.irfft(spectrum * ((freqs >= low) & (freqs < high)), n=x.shape[-1])
        expected = passed @ passed.transpose(0, 2, 1) / np.square(window).sum()
        np.testing.assert_allclose(covariances[:, b].double().numpy(), expected, rtol=1e-4, atol=1e-4)


def test_a_band_s_variance_does_not_depend_on_the_window_s_length():
    for seconds in (5, 10):
        t = torch.arange(seconds * 256) / 256.0
        sine = 30.0 * torch.sin(2 * math.pi * 10.0 * t)  # alpha, 30 µV: variance 450 µV²
        covariances = band_covariances(torch.stack([sine, 0.5 * sine]).unsqueeze(0), 256.0)
        alpha = [b for b, (low, high) in enumerate(COVARIANCE_BANDS) if low <= 10.0 < high][0]
        torch.testing.assert_close(
            covariances[0, alpha], torch.tensor([[450.0, 225.0], [225.0, 112.5]]), rtol=0.01, atol=0
        )


def test_the_bands_and_shrinkage_are_the_benchmark_readout_s():
    from eegfm.model import spectral_features
    from eegfm.model.spd import SHRINKAGE

    assert (
        COVARIANCE_BANDS == spectral_features.BANDS == ((0.5, 4.0), (4.0, 8.0), (8.0, 13.0), (13.0, 30.0), (30.0, 45.0))
    )
    assert SHRINKAGE == spectral_features.SHRINKAGE == 0.01


def test_new_at_fine_tuning_silent_until_trained_and_it_learns(tmp_path):
    pretrained = make_model("tiny", "binary", seed=3, modalities=[])
    pretrained.save_pretrained(tmp_path / "model")
    model, info = EEGFMModel.from_pretrained(tmp_path / "model", output_loading_info=True, covariance_channels=6)
    assert info["missing_keys"] and all(k.startswith(EEGFMModel.new_at_finetuning) for k in info["missing_keys"])
    assert any(k.startswith("encoder.covariance_branch.") for k in info["missing_keys"])
    branch = model.encoder.covariance_branch
    assert not branch.proj.weight.any() and branch.filters[0].weight.any()
    inputs = make_batch(4, 5)
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, pretrained(**inputs).logits, rtol=0, atol=0)
    model.train()
    labels = torch.tensor([0.0, 1.0, 0.0, 1.0])
    model(**inputs, labels=labels).loss.backward()
    assert branch.proj.weight.grad.abs().sum() > 0  # the covariances reach the loss
    with torch.no_grad():
        branch.proj.weight.normal_(std=0.1)  # as after a step: the filters' gradient flows through it
    model.zero_grad()
    model(**inputs, labels=labels).loss.backward()
    assert branch.filters[0].weight.grad.abs().sum() > 0


def test_any_montage_and_order_and_absent_channels_are_ignored():
    model = make_model("tiny", "binary", seed=1, **BRANCH)
    branch = model.encoder.covariance_branch
    torch.nn.init.normal_(branch.proj.weight, std=0.1)
    names = ["Fc5", "C3", "Cp1", "Fz", "Pz", "O2", "T8", "Af4"]
    positions = positions_for(names)
    eeg = make_batch(2, 5, n_chans=len(names))["eeg"]
    mask = torch.ones(2, len(names))
    mask[1, 2] = 0.0
    order = torch.randperm(len(names))
    with torch.no_grad():
        out = branch(eeg, positions, mask)
        permuted = branch(eeg[:, order], positions[:, order], mask[:, order])
        changed = eeg.clone()
        changed[1, 2] = 1000.0 * torch.randn(eeg.shape[-1])  # an absent channel's values do not count
        ignored = branch(changed, positions, mask)
        two = branch(eeg[:, :2], positions[:, :2], mask[:, :2])  # fewer channels than virtual ones
    torch.testing.assert_close(permuted, out, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ignored[1], out[1], atol=1e-5, rtol=1e-4)
    assert torch.isfinite(two).all() and out.shape == (2, 64)


def test_the_branch_trains_at_the_top_lr_and_its_size_is_checked():
    config = EEGFMConfig.from_preset("tiny", **BRANCH)
    model = EEGFMModel(config)
    names = [n for n, _ in model.named_parameters() if n.startswith("encoder.covariance_branch.")]
    assert names and all(layer_id(n, config) == num_layers(config) - 1 for n in names)
    model.freeze_encoder()
    model.unfreeze_encoder(last_n_layers=0)
    assert all(p.requires_grad for p in model.encoder.covariance_branch.parameters())
    assert EEGFMModel(EEGFMConfig.from_preset("tiny")).encoder.covariance_branch is None  # off by default
    for value in (-1, 1, 65, 2.5, True):
        with pytest.raises(ConfigError, match=r"covariance_channels: expected 0 \(no covariance branch\)"):
            EEGFMConfig.from_preset("tiny", covariance_channels=value)


def test_save_and_load_keep_the_outputs(tmp_path):
    model = make_model("tiny", "binary", seed=3, **BRANCH)
    torch.nn.init.normal_(model.encoder.covariance_branch.proj.weight, std=0.05)  # fine-tuned: it moves the outputs
    model.save_pretrained(tmp_path / "model")
    loaded = EEGFMModel.from_pretrained(tmp_path / "model").eval()
    assert loaded.config.covariance_channels == 6
    inputs = make_batch(3, 5)
    with torch.no_grad():
        reference = model(**inputs)
        branch = model.encoder.covariance_branch(inputs["eeg"], model.default_positions, torch.ones(3, 19))
        torch.testing.assert_close(loaded(**inputs).logits, reference.logits, rtol=0, atol=1e-6)
    assert branch.abs().max() > 0.1
