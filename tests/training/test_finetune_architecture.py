"""Fine-tuning's ``architecture`` option: the spectrogram CNN, the CNN-GRU and the peer transformers
built from scratch and trained by the same step, loss and optimizer code as the eegfm model; config
errors; data without spectrograms."""

from __future__ import annotations

import functools

import pytest
import torch

from eegfm.model.spectrogram_cnn import SpectrogramCNN
from eegfm.training import finetune
from eegfm.training.config import ConfigError, load_config
from eegfm.training.distributed import Dist
from eegfm.training.finetune import initial_model, objective, trainable
from eegfm.training.finetune import loop as ft_loop
from eegfm.training.finetune import setup as ft_setup
from eegfm.training.finetune.plan import Stage
from tests.training.constructed import labeled_batch, write_hms_windows

CNN = ["architecture=spectrogram_cnn", "deterministic=false", "optim.warmup_steps=0"]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_config_names_the_architecture_and_its_constraints():
    expected = "'cbramod', 'eeg_cnn_gru', 'eegfm', 'labram', 'spectrogram_cnn'"
    with pytest.raises(ConfigError, match=f"architecture: expected one of {expected}"):
        load_config("cpu-tiny", "finetune", ["architecture=resnet"])
    with pytest.raises(ConfigError, match="mode: architecture 'spectrogram_cnn' takes no adapters"):
        load_config("cpu-tiny", "finetune", [*CNN, "mode=adapter"])
    linear = load_config("cpu-tiny", "finetune", [*CNN, "mode=linear"])  # a probe needs a pretrained encoder
    with pytest.raises(ConfigError, match="mode: 'linear' trains a head on a pretrained encoder"):
        initial_model.load_model(None, linear)
    with pytest.raises(ConfigError, match="task: architecture 'spectrogram_cnn' has classification heads only"):
        load_config("cpu-tiny", "finetune", [*CNN, "task=regression", "temperature_scaling=false"])
    assert load_config("cpu-tiny", "finetune").architecture == "eegfm"


def test_cnn_is_built_from_scratch_with_the_task_labels(tmp_path):
    cfg = load_config("cpu-tiny", "finetune", [*CNN, "task=eegmat"])
    assert initial_model.check_pretrained(None, cfg) is None
    model, fresh = initial_model.load_model(None, cfg)
    assert isinstance(model, SpectrogramCNN) and fresh and model.config.preset == "tiny"
    assert model.config.head == "binary" and model.config.id2label == {0: "rest", 1: "task"}
    model.save_pretrained(tmp_path / "cnn")  # a saved CNN continues, with its weights
    again, fresh = initial_model.load_model(tmp_path / "cnn", cfg)
    assert not fresh and torch.equal(again.head.fc.weight, model.head.fc.weight)
    eegfm = load_config("cpu-tiny", "finetune")
    with pytest.raises(ConfigError, match="--pretrained: architecture 'eegfm' fine-tunes a pretrained encoder"):
        initial_model.check_pretrained(None, eegfm)
    with pytest.raises(ConfigError, match="holds a 'spectrogram_cnn' model; the run's architecture is 'eegfm'"):
        initial_model.check_pretrained(tmp_path / "cnn", eegfm)
    hms = load_config("cpu-tiny", "finetune", CNN)  # other labels: the saved CNN's weights, a new head
    other, fresh = initial_model.load_model(tmp_path / "cnn", hms)
    assert fresh and other.config.head == "hms6" and other.head.fc.weight.shape[0] == 6
    assert torch.equal(other.state_dict()["encoder.stem.0.weight"], model.state_dict()["encoder.stem.0.weight"])


@pytest.mark.parametrize("architecture", ["spectrogram_cnn", "eeg_cnn_gru", "cbramod", "labram"])
def test_a_short_finetune_from_scratch_lowers_the_loss(architecture):
    """Fine-tuning's step (``finetune.loop.train_step`` over the engine's: inputs, KL loss to the votes, AdamW
    groups, clipping) on constructed batches that follow the spectrogram contract (EEG for the GRU)."""
    overrides = [*CNN, f"architecture={architecture}", "optim.lr=3e-3", "loader.batch_size=16"]
    cfg = load_config("cpu-tiny", "finetune", overrides)
    model, _ = initial_model.load_model(None, cfg)
    initial_model.init_head(model, [1 / 6] * 6, cfg.task, cfg.seed)
    trainable.configure_mode(model, cfg)
    optimizer = torch.optim.AdamW(trainable.optimizer_groups(model, cfg), lr=cfg.optim.lr)
    run = ft_setup.Run(
        cfg=cfg,
        dist=Dist(backend="none"),
        plan=None,
        stage=Stage("stage1", 0, 1.0, 16),
        model=model,
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0),
        scaler=None,
        loader=None,
        loss_fn=objective.make_loss(cfg, model.head, None),
        data="constructed batches",
        amp_dtype=None,
        steps_per_epoch=1,
        total_steps=60,
    )
    held_out = labeled_batch(64, 20, seed=999)
    evaluate = functools.partial(_loss, run, held_out)
    before = evaluate()
    batches = (labeled_batch(16, 20, seed=step) for step in range(60))
    losses = [float(ft_loop.train_step(run, batches).metrics["loss"]) for _ in range(60)]
    assert run.step == 60 and sum(losses[-5:]) < sum(losses[:5])
    after = evaluate()
    assert after < 0.7 * before


@torch.no_grad()
def _loss(run: ft_setup.Run, batch: dict, /) -> float:
    run.model.eval()
    inputs = objective.inputs_for(run.model, batch, torch.device("cpu"))
    return float(run.loss_fn(run.model(**inputs).logits, batch["targets"]))


def test_batches_without_a_spectrogram_name_the_data_and_the_feature():
    cfg = load_config("cpu-tiny", "finetune", CNN)
    model, _ = initial_model.load_model(None, cfg)
    batch = labeled_batch(2, 4, seed=0)
    assert objective.inputs_for(model, batch, torch.device("cpu"))["spectrogram"] is batch["spectrogram"]
    del batch["spectrogram"]
    with pytest.raises(ConfigError, match=r"--data /data/hms: its windows carry no 'spectrogram' feature"):
        objective.inputs_for(model, batch, torch.device("cpu"), ["/data/hms"])


def test_finetune_command_refuses_data_written_without_spectrograms(tmp_path, capsys):
    """The command end to end, up to the first batch: exit 2 and one line naming folder and feature."""
    data = write_hms_windows(tmp_path / "data")
    argv = ["--architecture", "spectrogram_cnn", "--data", str(data), "--output", str(tmp_path / "run")]
    argv += ["--config", "cpu-tiny", "--wandb", "disabled", "--allow_partial", "--set", "deterministic=false"]
    assert finetune.main(argv) == 2
    err = capsys.readouterr().err
    assert f"--data {data}: its windows carry no 'spectrogram' feature" in err
    assert (tmp_path / "run" / "run.json").is_file()  # planned and built: it failed at the data, not before
