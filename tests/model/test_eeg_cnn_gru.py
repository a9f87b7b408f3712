"""The 1-D CNN-GRU member on raw EEG: any window length, the channel mask as input, save/load,
config errors, and its refusal of ONNX export (alone and inside an ensemble)."""

from __future__ import annotations

import pytest
import torch

from eegfm.model.architectures import architecture_of, load_model_folder
from eegfm.model.config import ConfigError
from eegfm.model.eeg_cnn_gru import EEGCNNGRU, EEGCNNGRUConfig
from eegfm.model.ensemble import EnsembleModel
from eegfm.model.export import export_onnx


def tiny(**overrides) -> EEGCNNGRU:
    torch.manual_seed(0)
    return EEGCNNGRU(EEGCNNGRUConfig.from_preset("tiny", **overrides)).eval()


@pytest.mark.parametrize("n_times", [1, 63, 2560])
def test_logits_for_any_window_length(n_times):
    out = tiny()(20 * torch.randn(2, 19, n_times), spectrogram=torch.rand(2, 400, 5))  # the spectrogram is ignored
    assert out.logits.shape == (2, 6) and out.pooled.shape == (2, 64) and torch.isfinite(out.logits).all()


def test_the_channel_mask_is_an_input():
    model, eeg = tiny(), 20 * torch.randn(2, 19, 512)
    mask = torch.ones(2, 19)
    mask[:, 4] = 0
    assert not torch.allclose(model(eeg, channel_mask=mask).logits, model(eeg).logits)
    torch.testing.assert_close(model(eeg, channel_mask=torch.ones(19)).logits, model(eeg).logits)


def test_save_and_load_round_trip(tmp_path):
    model = tiny(head="binary")
    model.save_pretrained(tmp_path)
    eeg = 20 * torch.randn(3, 19, 700)
    assert architecture_of(tmp_path).name == "eeg_cnn_gru"
    torch.testing.assert_close(load_model_folder(tmp_path)(eeg).logits, model(eeg).logits)


def test_inputs_and_config_errors_name_what_is_wrong():
    with pytest.raises(ValueError, match=r"eeg: expected \(batch, 19, n_times >= 1\)"):
        tiny()(torch.randn(2, 18, 256))
    with pytest.raises(ConfigError, match="EEGCNNGRUConfig.kernel_size: expected an odd integer"):
        EEGCNNGRUConfig(kernel_size=4)
    with pytest.raises(ConfigError, match="EEGCNNGRUConfig.conv_widths: expected conv_widths and conv_strides"):
        EEGCNNGRUConfig(conv_widths=[8, 8], conv_strides=[4])


def test_onnx_export_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="EEGCNNGRU: no ONNX export.*--backend torch"):
        export_onnx(tiny(), tmp_path / "gru.onnx")
    tiny().save_pretrained(tmp_path / "gru")
    ensemble = EnsembleModel.from_members([tmp_path / "gru"])
    assert ensemble.config.fixed_channels == 19
    with pytest.raises(ValueError, match="EEGCNNGRU: no ONNX export"):
        export_onnx(ensemble, tmp_path / "ensemble.onnx")
    assert not (tmp_path / "gru.onnx").exists()
