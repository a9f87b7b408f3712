"""The spatial readout (``spatial_filters``) and multi-head channel pooling (``channel_pool_heads``):
montage-free, order-free, placed at the top for LLRD, and exported to ONNX with the same outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eegfm.contract.channels import CANONICAL_CHANNELS
from eegfm.model import EEGFMModel, positions_for
from eegfm.model.config import ConfigError, EEGFMConfig
from eegfm.model.optim import layer_id, num_layers
from tests.model.conftest import make_batch, make_model

SPATIAL = {"spatial_filters": 8, "channel_pool_heads": 3, "modalities": []}


def test_the_readout_is_added_to_the_embedding_and_reads_where_channels_sit():
    plain, spatial = make_model("tiny", "binary"), make_model("tiny", "binary", **SPATIAL)
    assert plain.encoder.spatial_readout is None and spatial.encoder.spatial_readout is not None
    inputs = make_batch(2, 5)
    positions = positions_for(list(CANONICAL_CHANNELS))
    with torch.no_grad():
        out = spatial(inputs["eeg"], positions=positions)
        readout = spatial.encoder.spatial_readout(out.channel_tokens, positions)
        torch.testing.assert_close(out.pooled, out.patch_tokens.mean(dim=1) + readout)
        # The same signals at mirrored electrodes (left <-> right): channel pooling alone sees a
        # set of tokens, the readout also sees where each one is.
        mirrored = positions * torch.tensor([1.0, -1.0, 1.0])
        moved = spatial.encoder.spatial_readout(out.channel_tokens, mirrored)
    assert not torch.allclose(readout, moved, atol=1e-4)


def test_any_montage_and_channel_order_give_the_same_embedding():
    model = make_model("tiny", "hms6", **SPATIAL)
    names = ["Fc5.", "C3", "Cp1", "Fz", "Pz", "O2", "T8", "Af4"]
    positions = positions_for(names)
    inputs = make_batch(2, 5, n_chans=len(names))
    order = torch.randperm(len(names))
    with torch.no_grad():
        out = model(inputs["eeg"], positions=positions)
        permuted = model(inputs["eeg"][:, order], positions=positions[:, order])
        two = model(inputs["eeg"][:, :2], positions=positions[:, :2])
    torch.testing.assert_close(permuted.pooled, out.pooled, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(permuted.logits, out.logits, atol=1e-5, rtol=1e-4)
    assert torch.isfinite(two.logits).all()


def test_one_pooling_head_is_a_softmax_weighted_mean_of_the_channels():
    model = make_model("tiny", "hms6")
    pool = model.encoder.channel_pool
    tokens = torch.randn(2, 19, 5, 64)
    weights = pool.score(tokens).softmax(dim=1)
    with torch.no_grad():
        torch.testing.assert_close(pool(tokens), pool.proj((weights * tokens).sum(dim=1)))
        assert make_model("tiny", "hms6", channel_pool_heads=3).encoder.channel_pool(tokens).shape == (2, 5, 64)


def test_the_readout_trains_at_the_top_lr_and_its_count_is_checked():
    config = EEGFMConfig.from_preset("tiny", **SPATIAL)
    model = EEGFMModel(config)
    top = num_layers(config) - 1
    names = [n for n, _ in model.named_parameters() if n.startswith("encoder.spatial_readout.")]
    assert names and all(layer_id(n, config) == top for n in names)
    model.freeze_encoder()
    model.unfreeze_encoder(last_n_layers=0)
    assert all(p.requires_grad for p in model.encoder.spatial_readout.parameters())
    for field, value in (("spatial_filters", -1), ("channel_pool_heads", 0)):
        with pytest.raises(ConfigError, match=field):
            EEGFMConfig.from_preset("tiny", **{field: value})


def test_the_spectral_readout_is_new_at_fine_tuning_starts_as_pretrained_and_learns(tmp_path):
    pretrained = make_model("tiny", "binary", seed=3, **SPATIAL)
    pretrained.save_pretrained(tmp_path / "model")
    model, info = EEGFMModel.from_pretrained(tmp_path / "model", output_loading_info=True, spectral_readout=True)
    assert info["missing_keys"] and all(k.startswith(EEGFMModel.new_at_finetuning) for k in info["missing_keys"])
    assert not model.encoder.spatial_readout.spectral.weight.any()
    inputs = make_batch(4, 5)
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, pretrained(**inputs).logits, rtol=0, atol=0)
    model.train()
    model(**inputs, labels=torch.tensor([0.0, 1.0, 0.0, 1.0])).loss.backward()
    assert model.encoder.spatial_readout.spectral.weight.grad.abs().sum() > 0  # band powers reach the loss
    model.freeze_encoder()  # a linear probe: the head, and the projection new at fine-tuning
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained == {
        n for n, _ in model.named_parameters() if n.startswith(("head.", "encoder.spatial_readout.spectral."))
    }
    with pytest.raises(ConfigError, match="spectral_readout"):
        EEGFMConfig.from_preset("tiny", spectral_readout=True)  # no spatial readout to feed


def test_band_features_are_log_powers_then_log_shares_and_zero_on_absent_channels():
    from eegfm.model.band_powers import SUMMARY_BANDS, channel_band_features, log_band_powers

    eeg = make_batch(2, 5)["eeg"]
    mask = torch.ones(2, 19)
    mask[1, 4] = 0.0
    features = channel_band_features(eeg, 256.0, mask)
    n = len(SUMMARY_BANDS)
    assert features.shape == (2, 19, 2 * n)
    torch.testing.assert_close(features[0, :, :n], log_band_powers(eeg, 256.0)[0])
    torch.testing.assert_close(features[0, :, n:].exp().sum(-1), torch.ones(19))  # shares of the bands' sum
    assert not features[1, 4].any() and features[1, 3].all()


@pytest.mark.parametrize("spectral", [False, True], ids=["readout", "spectral-readout"])
def test_save_load_and_onnx_keep_the_outputs(tmp_path, spectral):
    from eegfm.model.export import OnnxEEGFM, export_onnx

    model = make_model("tiny", "binary", seed=3, **SPATIAL, spectral_readout=spectral)
    if spectral:  # a fine-tuned projection: the band powers move the outputs
        torch.nn.init.normal_(model.encoder.spatial_readout.spectral.weight, std=0.5)
    model.save_pretrained(tmp_path / "model")
    loaded = EEGFMModel.from_pretrained(tmp_path / "model").eval()
    inputs = make_batch(3, 5)
    with torch.no_grad():
        reference = model(**inputs)
        # float rounding only: the loaded model sums the band-power term in another order
        torch.testing.assert_close(loaded(**inputs).logits, reference.logits, rtol=0, atol=1e-6 if spectral else 0)
    export_onnx(model, tmp_path / "model.onnx")
    runner = OnnxEEGFM(tmp_path / "model.onnx", threads=1)
    for n_chans, seconds in ((19, 5), (8, 7)):
        case = make_batch(2, seconds, n_chans=n_chans, seed=n_chans)
        positions = positions_for(list(CANONICAL_CHANNELS)[:n_chans])
        logits, embedding = runner.session.run(
            ["logits", "embedding"], runner.feed(eeg=case["eeg"], positions=positions)
        )
        with torch.no_grad():
            expected = model(case["eeg"], positions=positions)
        assert np.abs(logits - expected.logits.numpy()).max() <= 1e-4
        assert np.abs(embedding - expected.pooled.numpy()).max() <= 1e-4
