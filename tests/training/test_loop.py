"""training.steps, run_state and command: what pretraining and fine-tuning share, on a small real model."""

from __future__ import annotations

import argparse
import dataclasses
import math
import time

import pytest
import torch

from eegfm.training.command import add_run_arguments, run_overrides
from eegfm.training.config import ConfigError, load_config
from eegfm.training.distributed import Dist
from eegfm.training.run_state import TrainState, check_model_unchanged, load_core_state
from eegfm.training.steps import (
    STARVED_FRACTION,
    TimedBatches,
    configure_kernels,
    loader_config,
    optimizer_step,
    step_seed,
)


def test_step_seeds_are_distinct_per_rank_step_and_micro_step_and_stable():
    seeds = {step_seed(0, rank, step, micro) for rank in range(2) for step in range(50) for micro in range(3)}
    assert len(seeds) == 300
    assert step_seed(0, 1, 2, 3) == step_seed(0, 1, 2, 3)
    assert all(0 <= s < 2**63 for s in seeds)


def _model_and_optimizer(lr: float = 0.1):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    return model, optimizer, scheduler


def test_optimizer_step_clips_steps_zeroes_and_advances_the_schedule():
    model, optimizer, scheduler = _model_and_optimizer()
    (model(torch.full((8, 4), 100.0)).sum()).backward()
    raw_norm = math.sqrt(sum(float(p.grad.square().sum()) for p in model.parameters()))
    before = [p.detach().clone() for p in model.parameters()]
    norm = optimizer_step(model, optimizer, scheduler, None, Dist("none"), grad_clip=1.0)
    assert norm.dim() == 0 and float(norm) == pytest.approx(raw_norm, rel=1e-5)  # the pre-clip norm, unread
    assert all(p.grad is None for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert scheduler.get_last_lr() == [pytest.approx(0.05)]


def test_core_state_refuses_a_different_world_size():
    model, optimizer, scheduler = _model_and_optimizer()

    class Loader:
        def state_dict(self):
            return {"batches": 3}

        def load_state_dict(self, state):
            self.state = state

    run = TrainState(
        cfg=None,
        dist=Dist("none"),
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=None,
        loader=Loader(),
        amp_dtype=torch.float32,
    )
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": None,
        "loader": [{"batches": 7}],
        "samples": 56,
        "best_metric": 0.5,
        "world_size": 1,
    }
    load_core_state(run, state)
    assert run.loader.state == {"batches": 7} and run.samples == 56 and run.best_metric == 0.5
    with pytest.raises(ConfigError, match="written by 2 ranks, this run has 1"):
        load_core_state(run, {**state, "world_size": 2})


def test_core_state_turns_a_loader_position_that_does_not_fit_into_a_config_error():
    model, optimizer, scheduler = _model_and_optimizer()

    class Loader:
        def load_state_dict(self, state):
            raise ValueError("load_state_dict: the state was taken reading other TFRecord files")

    run = TrainState(
        cfg=None,
        dist=Dist("none"),
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=None,
        loader=Loader(),
        amp_dtype=torch.float32,
    )
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": None,
        "loader": [{}],
        "samples": 0,
        "best_metric": None,
        "world_size": 1,
    }
    with pytest.raises(
        ConfigError,
        match=r"^resume: the checkpoint's data position does not fit this run "
        r"\(load_state_dict: the state was taken reading other TFRecord files\)",
    ):
        load_core_state(run, state)


def test_a_checkpoint_of_another_model_or_task_is_refused_before_any_weight_is_loaded():
    saved = load_config("cpu-tiny", "finetune").to_dict()
    keys = ("model", "model_overrides", "task", "mode")
    check_model_unchanged(saved, dict(saved), "ckpt", keys)  # a preemption restart
    check_model_unchanged({"seed": 0}, saved, "ckpt", keys)  # a checkpoint without its config: nothing to compare
    longer = load_config("cpu-tiny", "finetune", ["optim.max_steps=99", "epochs=3"]).to_dict()
    check_model_unchanged(saved, longer, "ckpt", keys)  # the schedule is not the model
    other = load_config("cpu-tiny", "finetune", ["task=eegmat", "model_overrides={dropout: 0.3}"]).to_dict()
    with pytest.raises(ConfigError) as err:
        check_model_unchanged(saved, other, "run/checkpoints/step-00000002", keys)
    assert str(err.value) == (
        f"resume: run/checkpoints/step-00000002 was written by a run with other model settings (model_overrides "
        f"{saved['model_overrides']!r} -> {{'dropout': 0.3}}; task 'hms6' -> 'eegmat'); a checkpoint continues the "
        f"run that wrote it: resume with its settings, or start a new run (another --output, or --resume none)"
    )


def test_common_options_become_config_overrides_with_flags_last():
    parser = argparse.ArgumentParser()
    add_run_arguments(parser, kind="pretrain")
    args = parser.parse_args(
        ["--data", "d", "--set", "wandb.mode=online", "--set", "optim.lr=1e-3", "--wandb", "disabled"]
    )
    assert run_overrides(args) == ["wandb.mode=online", "optim.lr=1e-3", "wandb.mode=disabled"]
    assert run_overrides(parser.parse_args(["--data", "d", "--allow_partial"])) == ["allow_partial=true"]
    assert args.resume == "auto" and args.config == "cpu-tiny" and args.device == "auto"


def test_loader_config_maps_the_run_section_and_evaluation_keeps_order_without_augmentation():
    from eegfm.training.config import LoaderSection as Section
    from eegfm.training.data import RecordFilter

    section = Section(
        batch_size=16, num_workers=1, shuffle_buffer=64, seed=3, augment={"noise_std": 2.0}, eeg_dtype="float16"
    )
    train = loader_config(section, patch_size=256)
    assert (train.batch_size, train.token_budget, train.shuffle, train.seed) == (16, None, True, 3)
    assert train.eeg_dtype == "float16" and loader_config(Section(), 256).eeg_dtype == "float32"
    assert train.augment.noise_std == 2.0
    held_out = RecordFilter(subjects=("s1",))
    evaluation = loader_config(section, 256, filters=held_out, train=False)
    assert not evaluation.shuffle and evaluation.augment.noise_std == 0.0
    # The run's filter, and windows shorter than one patch left out: the model cannot read them.
    assert evaluation.filters == dataclasses.replace(held_out, min_samples=256)
    dropping = Section(batch_size=16, drop_last=True)
    assert loader_config(dropping, 256).drop_last and not loader_config(dropping, 256, train=False).drop_last
    assert not train.drop_last
    budget = loader_config(Section(batch_size=32, token_budget=500), 256)
    assert (budget.batch_size, budget.token_budget, budget.max_batch_size) == (None, 500, 32)
    assert budget.batch_size_for(2560) == 32 and budget.batch_size_for(256 * 100) == 5


def test_configure_kernels_sets_tf32_and_deterministic_algorithms_from_the_config():
    before = (torch.backends.cuda.matmul.allow_tf32, torch.are_deterministic_algorithms_enabled())
    try:
        torch.use_deterministic_algorithms(True)  # as an earlier run in this process may have left it
        configure_kernels(load_config("base"), torch.device("cpu"))
        assert (torch.backends.cuda.matmul.allow_tf32, torch.are_deterministic_algorithms_enabled()) == (True, False)
        configure_kernels(load_config("cpu-tiny", "pretrain", ["deterministic=true"]), torch.device("cpu"))
        assert (torch.backends.cuda.matmul.allow_tf32, torch.are_deterministic_algorithms_enabled()) == (False, True)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before[0]
        torch.use_deterministic_algorithms(before[1])


def _slow(items: list[int], delay: float):
    for item in items:
        time.sleep(delay)  # a loader whose next batch is not ready yet
        yield item


def test_timed_batches_count_the_time_spent_waiting_for_each_batch_and_reset_per_interval():
    batches = TimedBatches(_slow([1, 2, 3], 0.05))
    assert next(batches) == 1 and next(batches) == 2
    time.sleep(0.3)  # the step's own time: not waiting for data
    assert 0.1 <= batches.waited() < 0.3
    assert next(batches) == 3
    assert 0.05 <= batches.waited() < 0.3  # the previous interval's wait is not counted again
    with pytest.raises(StopIteration):
        next(batches)
    assert batches.waited() < 0.01


def test_timed_batches_warn_once_when_the_loop_waits_past_the_threshold_but_not_for_the_start_up():
    batches = TimedBatches(iter([]))
    assert batches.starved(0.9, 4) is None  # the first interval includes the workers' start
    assert batches.starved(STARVED_FRACTION, 4) is None  # at the threshold: no warning
    message = batches.starved(0.35, 4)
    assert "35%" in message and "loader.num_workers (now 4 per rank)" in message and "float16" in message
    assert batches.starved(0.9, 4) is None  # once per run
    fresh = TimedBatches(iter([]))
    fresh.starved(0.0, 0)
    assert "now 0" in fresh.starved(0.5, 0)
