"""``python -m eegfm.training.ensemble``: fine-tuning's split, weights fitted on validation windows
only, members and ensemble side by side, a run folder that loads like any model; refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from eegfm.model import create_model
from eegfm.model.architectures import load_model_folder
from eegfm.model.ensemble import EnsembleModel
from eegfm.model.spectrogram_cnn import SpectrogramCNN, SpectrogramCNNConfig
from eegfm.training import ensemble as ensemble_cli
from eegfm.training import ensemble_fit
from eegfm.training.config import load_config
from tests.training.constructed import write_hms_windows

SPLIT = ["--set", "val_fraction=0.25", "--set", "test_fraction=0.25"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Constructed hms6 windows of 8 subjects, and two tiny eegfm members (different seeds)."""
    root = tmp_path_factory.mktemp("ensemble")
    data = write_hms_windows(root / "data")
    for seed in (0, 1):
        torch.manual_seed(seed)
        create_model("tiny", head="hms6", modalities=[]).save_pretrained(root / f"run{seed}" / "model")
    return root, data


def test_fits_on_validation_and_reports_members_and_ensemble(setup, tmp_path):
    root, data = setup
    members = [str(root / "run0"), str(root / "run1" / "model")]  # a run folder and a model folder
    output = tmp_path / "out"
    assert ensemble_cli.main(["--members", *members, "--data", str(data), "--output", str(output), *SPLIT]) == 0
    evaluation = json.loads((output / "eval.json").read_text())
    assert evaluation["windows"] == {"train": 24, "val": 12, "test": 12}
    stacking = evaluation["stacking"]
    assert stacking["split"] == "val" and stacking["windows"] == 12  # the validation windows, no others
    for split in ("val", "test"):
        assert set(evaluation["members"][split]) == {"members/0-eegfm", "members/1-eegfm", "ensemble"}
        assert evaluation[split] == evaluation["members"][split]["ensemble"]
        assert {"kl", "balanced_accuracy"} <= set(evaluation[split])
    # untrained members: the stacked prediction is at least as good as either on the windows it was fitted to
    val = evaluation["members"]["val"]
    assert val["ensemble"]["kl"] <= min(val["members/0-eegfm"]["kl"], val["members/1-eegfm"]["kl"]) + 1e-6
    selective = evaluation["selective"]  # the members' disagreement as the uncertainty, on the test windows
    assert selective["split"] == "test" and selective["n_windows"] == 12 and (output / "selective.png").is_file()
    assert set(selective["risks"]["error"]["scores"]) >= {"confidence", "mutual_information"}
    run = json.loads((output / "run.json").read_text())
    assert len(run["split"]["val"]) == 2 and len(run["split"]["test"]) == 2
    loaded = load_model_folder(output / "model")
    assert isinstance(loaded, EnsembleModel) and loaded.config.fit["windows_by_split"]["val"] == 12
    assert loaded.weights.tolist() == pytest.approx(list(stacking["weights"].values()))


def test_test_windows_do_not_move_the_weights(setup):
    """``fit_on_validation`` reads ``val`` alone: other test predictions change the report only."""
    root, data = setup
    cfg = load_config("cpu-tiny", "finetune", ["val_fraction=0.25", "test_fraction=0.25"])
    generator = torch.Generator().manual_seed(0)
    val = (torch.log_softmax(torch.randn(12, 2, 6, generator=generator), -1), torch.rand(12, 6, generator=generator))
    fitted = []
    for scale in (1.0, 5.0):
        test = (torch.log_softmax(scale * torch.randn(12, 2, 6, generator=generator), -1), torch.rand(12, 6))
        ensemble = EnsembleModel.from_members([root / "run0" / "model", root / "run1" / "model"])
        plan = ensemble_fit.plan_data([str(data)], cfg, "hms6", 256)
        report = ensemble_fit.fit_on_validation(ensemble, {"val": val, "test": test}, cfg, plan)
        fitted.append((ensemble.weights.clone(), ensemble.bias.clone(), report["test"]["ensemble"]["kl"]))
    assert torch.equal(fitted[0][0], fitted[1][0]) and torch.equal(fitted[0][1], fitted[1][1])
    assert fitted[0][2] != fitted[1][2]


def test_a_member_trained_on_held_out_subjects_is_refused(setup, tmp_path, capsys):
    root, data = setup
    member = tmp_path / "leaky"
    create_model("tiny", head="hms6", modalities=[]).save_pretrained(member / "model")
    # its fine-tuning used every subject for training (another split)
    (member / "run.json").write_text(json.dumps({"split": {"train": [f"subject-{s}" for s in range(8)]}}))
    argv = ["--members", str(member), "--data", str(data), "--output", str(tmp_path / "out"), *SPLIT]
    assert ensemble_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "its fine-tuning trained on 4 subject(s) that this split holds out" in err


def test_a_cnn_member_needs_spectrograms_in_the_data(setup, tmp_path, capsys):
    root, data = setup
    SpectrogramCNN(SpectrogramCNNConfig.from_preset("tiny")).save_pretrained(tmp_path / "cnn")
    argv = ["--members", str(root / "run0"), str(tmp_path / "cnn"), "--data", str(data)]
    assert ensemble_cli.main([*argv, "--output", str(tmp_path / "out"), *SPLIT]) == 2
    assert f"--data {data}: its windows carry no 'spectrogram' feature" in capsys.readouterr().err


def test_every_option_has_help():
    parser = ensemble_cli.build_parser()
    for action in parser._actions:
        assert action.help, action.dest
    assert "validation" in parser.format_help()


@pytest.mark.slow
def test_predictor_serves_a_fitted_ensemble_like_a_model(finetuned, three_sites, raw_sites, tmp_path):
    """About 75 s (the fixtures preprocess eegmat and fine-tune; the ONNX export): an ensemble of
    a fine-tuned eegmat run, stacked on its own split, scored by eegfm-predict's Predictor on a real
    recording, in PyTorch and ONNX Runtime alike."""
    from eegfm.inference.predictor import PredictConfig, Predictor

    split = ["--set", "val_fraction=0.34"]  # the split of the fine-tuning (tests.conftest: finetuned)
    argv = ["--members", str(finetuned), str(finetuned), "--data", str(three_sites), "--output", str(tmp_path)]
    assert ensemble_cli.main([*argv, "--set", "task=eegmat", *split]) == 0
    recording = raw_sites / "hospital1" / "Subject02_2.edf"
    served = Predictor(tmp_path)
    assert served.labels == ("rest", "task") and served.temperature == 1.0
    assert served.evaluation is not None  # eval.json's held-out numbers travel with it
    [prediction] = served.predict([str(recording)])
    got = np.array([w.outputs for w in prediction.windows])
    assert prediction.status == "processed" and len(got) == 6 and np.allclose(got.sum(1), 1.0)
    [onnx] = Predictor(tmp_path, PredictConfig(backend="onnx")).predict([str(recording)])
    np.testing.assert_allclose(np.array([w.outputs for w in onnx.windows]), got, atol=1e-4)
