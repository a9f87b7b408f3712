"""The spectrogram CNN: any number of frames, absent spectrograms, save/load, the architecture
registry, config errors and its ONNX export, on a real Kaggle HMS spectrogram where values matter."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModel

from eegfm.model.architectures import architecture_of, load_model_config, load_model_folder
from eegfm.model.config import ConfigError
from eegfm.model.export import OnnxEEGFM, export_onnx
from eegfm.model.spectrogram_cnn import SpectrogramCNN, SpectrogramCNNConfig, mask_bands, spectrogram_image
from tests.conftest import SHARED_DATA

REAL_SPECTROGRAM = SHARED_DATA / "hms" / "train_spectrograms" / "1000189855.parquet"


@pytest.fixture(scope="module")
def real_spectrogram() -> torch.Tensor:
    """Two 10-minute windows (300 frames) of a real Kaggle spectrogram, (2, 400, 300), log1p power."""
    frame = pd.read_parquet(REAL_SPECTROGRAM)
    values = np.log1p(frame.drop(columns="time").to_numpy(np.float32))  # (frames, 400) in the contract's order
    return torch.from_numpy(np.stack([values[:300].T, values[300:600].T]).copy())


def tiny(**overrides) -> SpectrogramCNN:
    torch.manual_seed(0)
    return SpectrogramCNN(SpectrogramCNNConfig.from_preset("tiny", **overrides)).eval()


@pytest.mark.parametrize("frames", [1, 2, 7, 150, 300])
def test_logits_for_any_number_of_frames(frames):
    model = tiny()
    spectrogram = torch.rand(3, 400, frames) * 5
    spectrogram[1] = float("nan")  # no spectrogram for this window
    spectrogram[2, :100, : max(1, frames // 2)] = float("nan")  # the LL chain missing in part
    out = model(spectrogram=spectrogram)
    assert out.logits.shape == (3, 6) and torch.isfinite(out.logits).all()
    assert out.pooled.shape == (3, model.config.hidden_size)


def test_eeg_inputs_are_accepted_and_ignored(real_spectrogram):
    model = tiny()
    alone = model(spectrogram=real_spectrogram).logits
    with_eeg = model(eeg=torch.randn(2, 19, 512), channel_mask=torch.ones(2, 19), spectrogram=real_spectrogram).logits
    torch.testing.assert_close(alone, with_eeg)


def test_image_is_standardised_per_sample_and_masks_absent_values(real_spectrogram):
    spectrogram = real_spectrogram.clone()
    spectrogram[0, 300:, :] = float("nan")  # RP chain absent in the first window
    image = spectrogram_image(torch.cat([spectrogram, torch.full((1, 400, 300), float("nan"))]), 400)
    assert image.shape == (3, 5, 100, 300)
    present = image[0, :4][image[0, :4] != 0]
    assert abs(float(present.mean())) < 1e-4 and abs(float(present.std()) - 1) < 1e-3
    assert (image[0, 3] == 0).all() and (image[0, 4, :, :] == 1).all()  # mask: any chain present
    assert (image[2] == 0).all()  # an absent spectrogram is all zero, mask included


def test_output_is_invariant_to_the_level_and_scale_of_log_power(real_spectrogram):
    """Per-sample standardisation: Kaggle's and computed spectrograms differ in level, not in pattern."""
    model = tiny()
    torch.testing.assert_close(
        model(spectrogram=real_spectrogram).logits,
        model(spectrogram=2.0 * real_spectrogram + 3.0).logits,
        atol=1e-4,
        rtol=1e-4,
    )
    shuffled = real_spectrogram[:, torch.randperm(400)]
    assert not torch.allclose(model(spectrogram=shuffled).logits, model(spectrogram=real_spectrogram).logits)


def test_save_and_load_round_trip(tmp_path, real_spectrogram):
    model = tiny(head="binary")
    model.train()
    model(spectrogram=real_spectrogram)  # moves the BatchNorm running statistics off their start
    model.eval()
    model.config.temperature = 1.7
    model.save_pretrained(tmp_path)
    for loaded in (
        SpectrogramCNN.from_pretrained(tmp_path),
        load_model_folder(tmp_path),
        AutoModel.from_pretrained(tmp_path),
    ):
        assert isinstance(loaded, SpectrogramCNN) and loaded.config.temperature == 1.7
        torch.testing.assert_close(
            loaded.eval()(spectrogram=real_spectrogram).logits, model(spectrogram=real_spectrogram).logits
        )
    assert architecture_of(tmp_path).name == "spectrogram_cnn"
    assert load_model_config(tmp_path).id2label == {0: "negative", 1: "positive"}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"spectrogram_bins": 402}, "spectrogram_bins"),
        ({"stage_widths": [16], "stage_depths": [1, 1], "stage_strides": [2, 2]}, "stage_widths"),
        ({"stage_strides": [3, 2]}, "stage_strides"),
        ({"head": "regression"}, "head"),
        ({"drop_path": 1.0}, "drop_path"),
        ({"pooling": "max"}, "pooling"),
        ({"spec_augment": 1.5}, "spec_augment"),
    ],
)
def test_config_errors_name_the_field(overrides, field):
    with pytest.raises(ConfigError, match=f"SpectrogramCNNConfig.{field}: expected"):
        SpectrogramCNNConfig.from_preset("tiny", **overrides)
    with pytest.raises(ConfigError, match="preset: expected one of 'tiny', 'base'"):
        SpectrogramCNNConfig.from_preset("huge")


def test_missing_spectrogram_is_a_clear_error():
    with pytest.raises(ValueError, match="reads only the spectrogram"):
        tiny()(eeg=torch.randn(1, 19, 256))
    with pytest.raises(ValueError, match=r"spectrogram: expected shape \(batch, 400, n_frames >= 1\)"):
        tiny()(spectrogram=torch.rand(1, 399, 10))


def test_freezing_trains_the_head_alone():
    model = tiny()
    model.freeze_encoder()
    assert {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad} == {"head"}
    model.unfreeze_encoder(1)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("encoder.blocks.1.") for n in trainable)
    assert not any(n.startswith(("encoder.blocks.0.", "encoder.stem.")) for n in trainable)
    model.unfreeze_encoder()
    assert all(p.requires_grad for p in model.parameters())


def test_onnx_export_matches_torch_for_other_frame_counts(tmp_path, real_spectrogram):
    model = tiny()
    runner = OnnxEEGFM(export_onnx(model, tmp_path / "cnn.onnx"))
    assert runner.id2label == model.config.id2label and runner.spectrogram_pool == 1
    for spectrogram in (real_spectrogram, real_spectrogram[:1, :, :5]):
        eeg = torch.zeros(len(spectrogram), 19, 256)
        logits, embedding = runner(eeg, spectrogram=spectrogram)
        expected = model(spectrogram=spectrogram)
        np.testing.assert_allclose(logits, expected.logits.detach().numpy(), atol=1e-4)
        np.testing.assert_allclose(embedding, expected.pooled.detach().numpy(), atol=1e-4)


def test_frequency_pooling_starts_as_the_average_and_tells_bands_apart(real_spectrogram):
    """At initialisation frequency pooling is global average pooling; a feature map that differs
    only in which frequency rows are active pools alike under ``global`` and apart under learned
    frequency weights."""
    frequency, average = tiny(pooling="frequency"), tiny(pooling="global")
    average.load_state_dict(frequency.state_dict(), strict=False)  # every weight but the pooling's
    assert torch.allclose(
        frequency(spectrogram=real_spectrogram).logits, average(spectrogram=real_spectrogram).logits, atol=1e-5
    )
    weight = frequency.encoder.frequency_weight
    features = torch.zeros(2, weight.shape[0], weight.shape[1], 3)
    features[0, :, 0], features[1, :, -1] = 1.0, 1.0  # the same activity in the lowest / highest rows
    with torch.no_grad():
        weight.copy_(torch.linspace(0, 1, weight.shape[1]).expand_as(weight))
    pooled = (features.mean(dim=3) * weight).sum(dim=2)
    assert torch.allclose(features.mean(dim=(2, 3))[0], features.mean(dim=(2, 3))[1])
    assert not torch.allclose(pooled[0], pooled[1])


def test_spec_augment_masks_one_band_and_one_span_only_while_training(real_spectrogram):
    torch.manual_seed(1)
    image = torch.ones(64, 5, 100, 300)
    masked = mask_bands(image, 0.3)
    zero = masked == 0
    rows, frames = zero[:, 0].all(dim=2), zero[:, 0].all(dim=1)  # fully masked frequency rows / frames
    assert (rows.sum(1) <= 30).all() and (frames.sum(1) <= 90).all() and rows.any() and frames.any()
    assert torch.equal(zero, zero[:, :1].expand_as(zero))  # every channel alike
    # each masked set is one contiguous band / span
    for mask in (rows, frames):
        for sample in mask:
            where = sample.nonzero().flatten()
            assert len(where) == 0 or where[-1] - where[0] + 1 == len(where)
    model = tiny(spec_augment=0.5)
    eval_a = model(spectrogram=real_spectrogram).logits
    assert torch.equal(eval_a, model(spectrogram=real_spectrogram).logits)  # off in eval mode
