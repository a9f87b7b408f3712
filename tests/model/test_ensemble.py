"""The stacked ensemble: the weight fit (recovers known weights, drops an uninformative member),
save/load, member inputs, the serving backend and ONNX parity of logits and sample_logits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from eegfm.inference.backends import make_backend
from eegfm.inference.predictor import PredictConfig
from eegfm.model import create_model
from eegfm.model.architectures import is_ensemble, load_model_config, load_model_folder
from eegfm.model.config import ConfigError
from eegfm.model.ensemble import EnsembleModel, fit_stacking
from eegfm.model.export import OnnxEEGFM, export_onnx
from eegfm.model.spectrogram_cnn import SpectrogramCNN, SpectrogramCNNConfig


def member_log_probs(n: int, n_members: int = 2, n_classes: int = 6, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.log_softmax(2.0 * torch.randn(n, n_members, n_classes, generator=generator), dim=-1).double()


def test_fit_recovers_known_weights_and_bias():
    log_probs = member_log_probs(3000)
    weights, bias = torch.tensor([1.5, 0.4], dtype=torch.float64), torch.tensor([0.3, -0.2, 0.0, 0.1, 0.0, -0.2])
    target = torch.softmax(torch.einsum("nmc,m->nc", log_probs, weights) + bias.double(), dim=-1)
    fitted_w, fitted_b, info = fit_stacking(log_probs, 5 * target, l2=0.0)  # vote counts: any scale
    np.testing.assert_allclose(fitted_w, weights.numpy(), atol=2e-3)
    centred = np.array(fitted_b) - np.mean(fitted_b)  # softmax ignores a shift of the bias
    np.testing.assert_allclose(centred, (bias - bias.mean()).numpy(), atol=2e-3)
    assert info["objective"] == "kl" and info["kl_fitted"] < 1e-5 < info["kl_equal_weights"] and info["converged"]


def test_without_bias_only_the_weights_move_and_a_strong_l2_shrinks_the_bias():
    log_probs = member_log_probs(3000)
    weights, bias = torch.tensor([1.5, 0.4], dtype=torch.float64), torch.tensor([0.8, -0.6, 0.0, 0.1, 0.0, -0.3])
    target = torch.softmax(torch.einsum("nmc,m->nc", log_probs, weights) + bias.double(), dim=-1)
    fitted_w, fitted_b, info = fit_stacking(log_probs, target, fit_bias=False)
    assert fitted_b == [0.0] * 6 and info["bias"] == "none" and info["kl_fitted"] > 1e-3
    _, free_b, _ = fit_stacking(log_probs, target, l2=0.0)
    _, shrunk_b, info = fit_stacking(log_probs, target, l2=1.0)
    assert np.ptp(shrunk_b) < 0.5 * np.ptp(free_b) and info["bias"] == "fitted, l2 1"


def test_fit_gives_an_uninformative_member_no_weight():
    generator = torch.Generator().manual_seed(1)
    truth = 2.0 * torch.randn(2000, 6, generator=generator)
    informative = F.log_softmax(0.5 * truth + 0.3 * torch.randn(2000, 6, generator=generator), dim=-1)
    noise = F.log_softmax(2.0 * torch.randn(2000, 6, generator=generator), dim=-1)
    weights, _, info = fit_stacking(torch.stack([noise, informative], dim=1), torch.softmax(truth, dim=-1))
    assert weights[1] > 1.5 and weights[0] < 0.02 * weights[1]
    assert info["kl_fitted"] < 0.5 * info["kl_equal_weights"]


def test_fit_on_hard_labels_uses_cross_entropy_and_skips_unlabeled():
    log_probs = member_log_probs(500, n_classes=3)
    labels = torch.distributions.Categorical(logits=2.0 * log_probs[:, 0]).sample()
    labels[:50] = -1
    weights, _, info = fit_stacking(log_probs, labels)
    assert info["objective"] == "cross_entropy" and info["windows"] == 450
    assert weights[0] > 1.0 and weights[1] < 0.3


def test_fit_without_targets_is_an_error():
    with pytest.raises(ValueError, match="no validation window has a target"):
        fit_stacking(member_log_probs(4), torch.zeros(4, 6))


@pytest.fixture(scope="module")
def member_folders(tmp_path_factory):
    """An eegfm member without optional modalities and a spectrogram CNN member, saved."""
    root = tmp_path_factory.mktemp("members")
    torch.manual_seed(0)
    create_model("tiny", head="hms6", modalities=[]).save_pretrained(root / "eegfm")
    SpectrogramCNN(SpectrogramCNNConfig.from_preset("tiny")).save_pretrained(root / "cnn")
    return [root / "eegfm", root / "cnn"]


def inputs(batch: int = 3, frames: int = 12) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    return {
        "eeg": 20 * torch.randn(batch, 19, 512, generator=generator),
        "channel_mask": torch.ones(batch, 19),
        "spectrogram": 3 * torch.rand(batch, 400, frames, generator=generator),
        "age": torch.full((batch,), 50.0),  # no member takes it: dropped for each
    }


def test_forward_stacks_the_members_log_probabilities(member_folders):
    ensemble = EnsembleModel.from_members(member_folders, weights=[0.7, 1.3], bias=[0.2, 0, 0, 0, -0.1, 0]).eval()
    x = inputs()
    samples = ensemble.sample_logits(**x)
    assert samples.shape == (3, 2, 6)
    # each member saw only its own inputs: the eegfm member (no modalities) would refuse a spectrogram
    eegfm, cnn = ensemble.members
    torch.testing.assert_close(
        samples[:, 0], F.log_softmax(eegfm(eeg=x["eeg"], channel_mask=x["channel_mask"]).logits, -1)
    )
    torch.testing.assert_close(samples[:, 1], F.log_softmax(cnn(spectrogram=x["spectrogram"]).logits, -1))
    expected = F.log_softmax(0.7 * samples[:, 0] + 1.3 * samples[:, 1] + torch.tensor([0.2, 0, 0, 0, -0.1, 0]), -1)
    out = ensemble(**x)
    torch.testing.assert_close(out.logits, expected)
    assert out.pooled.shape == (3, eegfm.config.hidden_size + cnn.config.hidden_size)
    torch.testing.assert_close(ensemble.predict(**x).sum(-1), torch.ones(3))
    assert ensemble.required_inputs == ("spectrogram",)
    assert ensemble.config.modalities == ["spectrogram"] and ensemble.config.patch_size == 256


def test_save_and_load_round_trip(member_folders, tmp_path):
    ensemble = EnsembleModel.from_members(member_folders, weights=[0.7, 1.3], bias=[0.2, 0, 0, 0, -0.1, 0]).eval()
    ensemble.config.fit = {"objective": "kl", "windows": 12}
    ensemble.save_pretrained(tmp_path / "ens")
    saved = json.loads((tmp_path / "ens" / "ensemble.json").read_text())
    assert saved["members"] == ["members/0-eegfm", "members/1-spectrogram_cnn"]
    assert saved["weights"] == pytest.approx([0.7, 1.3]) and saved["fit"]["windows"] == 12
    assert saved["labels"] == ["Seizure", "LPD", "GPD", "LRDA", "GRDA", "Other"]
    assert is_ensemble(tmp_path / "ens") and load_model_config(tmp_path / "ens").temperature == 1.0
    for loaded in (EnsembleModel.from_pretrained(tmp_path / "ens"), load_model_folder(tmp_path / "ens")):
        torch.testing.assert_close(loaded(**inputs()).logits, ensemble(**inputs()).logits)
        torch.testing.assert_close(loaded.sample_logits(**inputs()), ensemble.sample_logits(**inputs()))
    backend = make_backend(PredictConfig(), tmp_path / "ens", n_times=512, patch_size=256)  # as serving loads it
    torch.testing.assert_close(backend.logits(inputs()), ensemble(**inputs()).logits)


def test_members_must_share_labels(member_folders, tmp_path):
    create_model("tiny", head="binary", modalities=[]).save_pretrained(tmp_path / "binary")
    with pytest.raises(ConfigError, match="ensemble member members/1-eegfm: expected a classifier of labels"):
        EnsembleModel.from_members([member_folders[0], tmp_path / "binary"])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "ensemble.json").write_text('{"members": []}')
    with pytest.raises(ConfigError, match="ensemble.json: expected members, weights, bias and labels"):
        EnsembleModel.from_pretrained(tmp_path / "bad")


def test_onnx_graph_matches_torch_with_sample_logits(member_folders, tmp_path):
    """Two CNN members (the eegfm member's export takes ~45 s: the slow test below)."""
    ensemble = EnsembleModel.from_members([member_folders[1], member_folders[1]], weights=[0.5, 1.2]).eval()
    _check_onnx_parity(ensemble, tmp_path)


@pytest.mark.slow
def test_onnx_graph_of_eegfm_and_cnn_members_matches_torch(member_folders, tmp_path):
    """About 50 s: the dynamo exporter traces the eegfm member with symbolic shapes."""
    ensemble = EnsembleModel.from_members(member_folders, weights=[0.7, 1.3], bias=[0.2, 0, 0, 0, -0.1, 0]).eval()
    _check_onnx_parity(ensemble, tmp_path)


def _check_onnx_parity(ensemble: EnsembleModel, tmp_path) -> None:
    runner = OnnxEEGFM(export_onnx(ensemble, tmp_path / "ensemble.onnx"))
    assert [o.name for o in runner.session.get_outputs()] == ["logits", "embedding", "sample_logits"]
    assert runner.id2label == ensemble.config.id2label and runner.temperature == 1.0
    for batch, frames in ((1, 3), (4, 300)):
        x = {k: v for k, v in inputs(batch, frames).items() if k != "age"}
        logits, embedding, samples = runner.session.run(None, runner.feed(**x))
        with torch.no_grad():
            expected = ensemble(**x)
            expected_samples = ensemble.sample_logits(**x)
        np.testing.assert_allclose(logits, expected.logits.numpy(), atol=1e-4)
        np.testing.assert_allclose(embedding, expected.pooled.numpy(), atol=1e-4)
        np.testing.assert_allclose(samples, expected_samples.numpy(), atol=1e-4)
    with torch.no_grad():  # the ONNX runner's own call, as serving's onnx backend makes it
        torch.testing.assert_close(
            torch.from_numpy(runner(**inputs(2, 8))[0]), ensemble(**inputs(2, 8)).logits, atol=1e-4, rtol=1e-4
        )
