"""The pretraining run of ``eegfm-pretrain`` (``training.pretrain``): :func:`train` builds the run,
resumes it, takes ``optim.max_steps`` optimizer steps with validation, checkpoints and saves the
encoder (``model/``, and ``model-best/`` where validation ranked an earlier checkpoint first).

All randomness is a function of (seed, rank, step), so a run resumed from a checkpoint continues
bit for bit (on CPU with ``deterministic: true``); SIGTERM checkpoints at the step boundary.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from eegfm.contract.schema import CHANNELS, SFREQ
from eegfm.core.logs import get_logger
from eegfm.core.run_lock import release_run_lock
from eegfm.model.architectures import quiet_transformers
from eegfm.model.modeling import pretraining_losses
from eegfm.training import checkpoint as ckpt
from eegfm.training import command, engine, run_state, steps
from eegfm.training.config import ConfigError, OptimConfig, PretrainConfig
from eegfm.training.cpu_use import use_cpus
from eegfm.training.data import check_data, data_dirs, data_label, describe, model_inputs
from eegfm.training.distributed import Dist, StopVote, unwrap
from eegfm.training.pretrain_setup import Run, build_run
from eegfm.training.pretrain_validation import (
    Validation,
    check_corpus_split_windows,
    measure_reconstruction,
    plan_groups,
    validation_due,
)
from eegfm.training.run_log import RunLog
from eegfm.training.splits import HeldOut
from eegfm.training.tracking import ReconstructionMeter, Tracker

log = get_logger("eegfm.training.pretrain")  # one logger name for all of pretraining, as in pretrain_setup


def train_step(run: Run, batches, meter: ReconstructionMeter | None = None) -> engine.Step:
    """One optimizer step of the pretraining losses (``meter`` sums the micro-batches'
    reconstruction errors)."""

    def forward(batch: dict[str, Any], micro: int) -> engine.MicroBatch:
        inputs = model_inputs(batch, run.dist.device, non_blocking=True)
        generator = torch.Generator().manual_seed(steps.step_seed(run.cfg.seed, run.dist.rank, run.step, micro + 1))
        with steps.autocast(run.dist, run.amp_dtype):
            out = run.model(**inputs, generator=generator)
        if meter is not None:
            measure_reconstruction(run, meter, batch, inputs, out)
        # Tokens as the encoder's blocks see them, one per channel and patch (as benchmarks/train.py counts)
        batch_size, n_chans, n_times = inputs["eeg"].shape
        tokens = batch_size * n_chans * (n_times // unwrap(run.model).config.patch_size)
        means = {key: getattr(out, key) for key in pretraining_losses(unwrap(run.model))}
        return engine.MicroBatch(out.loss, samples=batch_size, tokens=tokens, means=means)

    return engine.train_step(run, batches, forward)


def check_held_out_unchanged(saved: dict[str, Any], cfg: PretrainConfig, checkpoint: Path) -> None:
    """Warn when a resumed run holds out other groups than its checkpoint's run: its validation
    windows may have been trained on."""
    keys = {"val_fraction": 0.0, "split_group": "subject", "seed": cfg.seed}
    before = {key: saved.get(key, default) for key, default in keys.items()}
    now = {key: getattr(cfg, key) for key in keys}
    if before["val_fraction"] == now["val_fraction"] == 0 or before == now:
        return
    changed = ", ".join(f"{key} {before[key]!r} -> {now[key]!r}" for key in keys if before[key] != now[key])
    log.warning(
        "resume: %s was written by a run with other held-out groups (%s); windows validated on now may "
        "have been trained on before, so val/ losses are not held-out measures for this run",
        checkpoint,
        changed,
    )


SCHEDULE_KEYS = ("lr", "warmup_steps", "max_steps", "min_lr_ratio")


def check_schedule_unchanged(saved: dict[str, Any], cfg: PretrainConfig, checkpoint: Path, step: int) -> None:
    """Warn when a resumed run's learning-rate schedule is not its checkpoint's (e.g. a larger
    ``--max_steps``): the rate jumps at the resumed step."""
    try:
        before = OptimConfig.from_dict(saved["optim"])
    except (KeyError, TypeError, ConfigError):  # a checkpoint without its config: nothing to compare
        return
    changed = [key for key in SCHEDULE_KEYS if getattr(before, key) != getattr(cfg.optim, key)]
    if not changed:
        return
    old, new = before.lr * before.lr_factor(step), cfg.optim.lr * cfg.optim.lr_factor(step)
    log.warning(
        "resume: %s was trained on another learning-rate schedule (%s): at step %d the rate moves from %.3g to %.3g%s",
        checkpoint,
        ", ".join(f"optim.{key} {getattr(before, key)!r} -> {getattr(cfg.optim, key)!r}" for key in changed),
        step,
        old,
        new,
        ", a warm restart" if new > 1.5 * old else "",
    )


def check_window_lengths(data: str | Sequence[str], patch_size: int, say: bool = True) -> None:
    """Say how many windows the loaders leave out as shorter than one patch (from the manifest);
    ConfigError where none is left."""
    try:
        lengths = describe(data).counts.get("per_length_samples") or {}
    except FileNotFoundError:  # shards without their manifest (copied apart): nothing to count from
        return
    short = sum(n for length, n in lengths.items() if int(length) < patch_size)
    if short and short == sum(lengths.values()):
        raise ConfigError(
            f"--data {data_label(data)}: every window is shorter than the model's patch of "
            f"{patch_size} samples ({patch_size / SFREQ:g} s); lengths in samples: {lengths}"
        )
    if short and say:
        log.warning(
            "%d of the %d windows in %s are shorter than the model's patch of %d samples (%g s) and are left out",
            short,
            sum(lengths.values()),
            data_label(data),
            patch_size,
            patch_size / SFREQ,
        )


def train(
    cfg: PretrainConfig,
    dist: Dist,
    data: str | Sequence[str],
    output: Path,
    resume: str = "auto",
    max_steps: int | None = None,
    stop_after: int | None = None,
    threads: int | str | None = None,
) -> int:
    """Pretrain; returns the exit status (0 done, 143 stopped and checkpointed: preempted, or
    after ``stop_after`` steps of this invocation). ``threads``: torch's intra-op threads ("auto":
    from the machine, see ``cpu_use``; None: left as they are), logged with the loader's workers."""
    try:
        if max_steps is not None:
            cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, max_steps=max_steps))
        data = check_data(data, dist.is_main, cfg.allow_partial)
        check_corpus_split_windows(cfg, data, dist.is_main)
        held_out, train = plan_groups(cfg, dist, data)
        run = build_run(cfg, dist, data, train)
        if threads is not None:  # after the loader: a GPU rank's threads are the cores its workers leave
            log.info(use_cpus(threads, run.loader, dist.device))
        check_window_lengths(data, unwrap(run.model).config.patch_size, dist.is_main)
        validation = Validation(run, data, held_out) if held_out is not None and dist.is_main else None
        if held_out is not None:
            every = f"every {cfg.eval_every} steps and " if cfg.eval_every else ""
            log.info(
                "validation: %s; up to %d of their windows evaluated %sat every checkpoint",
                held_out.describe(),
                cfg.val_windows,
                every,
            )
        run_state.claim_output(output, dist)
        _resume(run, resume, output)
        if dist.is_main:
            run_state.write_run_json(
                output,
                dist,
                config=cfg.to_dict(),
                parameters=sum(p.numel() for p in unwrap(run.model).parameters()),
                validation=None if held_out is None else dataclasses.asdict(held_out),
                data=data_dirs(data),
            )
        return _run(run, held_out, validation, output, stop_after)
    finally:
        release_run_lock(output)  # taken by run_state.claim_output (a no-op where none was)


def _run(
    run: Run, held_out: HeldOut | None, validation: Validation | None, output: Path, stop_after: int | None
) -> int:
    """Train in ``output``, now this process holds it; save the final encoder."""
    cfg, dist, total = run.cfg, run.dist, run.cfg.optim.max_steps
    run_log = RunLog(cfg, dist, output, f"pretraining ({cfg.model}, up to {total} steps)", log)
    with ckpt.PreemptionHandler() as preemption, run_log:
        status = _steps(run, run_log, validation, held_out, preemption, output, stop_after)
        run_log.close_bar()
        run_state.check_replicas(run, output)
        if status == 0 and dist.is_main:
            final = output / "model"
            with quiet_transformers():
                unwrap(run.model).save_pretrained(final)
            run_log.tracker.summary({"final_step": run.step})
            log.info("pretrained encoder saved to %s", final)
            if held_out is not None:
                export_best(run, output, run_log.tracker)
        run_log.title = f"pretraining ({cfg.model}, {run.step} of {total} steps)"
    dist.barrier()
    return status


def _resume(run: Run, resume: str, output: Path) -> None:
    """Continue from the checkpoint ``--resume`` names (auto: the newest), if any."""
    if (found := run_state.resume_checkpoint(resume, output, run.dist)) is None:
        return
    start, state = found
    saved = state.get("config", {})
    run_state.check_model_unchanged(saved, run.cfg.to_dict(), start)
    run.load_state_dict(state)
    log.info("resumed from %s at step %d", start, run.step)
    check_held_out_unchanged(saved, run.cfg, start)
    check_schedule_unchanged(saved, run.cfg, start, run.step)


def _steps(
    run: Run,
    run_log: RunLog,
    validation: Validation | None,
    held_out: HeldOut | None,
    preemption: ckpt.PreemptionHandler,
    output: Path,
    stop_after: int | None,
) -> int:
    """Train to ``optim.max_steps``; returns the exit status (143: stopped early, checkpointed)."""
    cfg, dist, total = run.cfg, run.dist, run.cfg.optim.max_steps
    batches = run_log.timed(run.loader)
    run_log.bar(total, run.step, "pretrain")
    meter, steps_here, stop_vote = ReconstructionMeter(CHANNELS), 0, StopVote(dist)
    interval, saved = engine.Interval(), engine.Interval()  # since the last log line; since the last save
    last_val = None  # the latest validation loss, shown on the progress bar
    if run.step == 0 and (val := _validate(run, validation, run_log)):
        run_log.record(val, run.step)  # the initial weights: what pretraining is measured against
        last_val = val["val/loss"]
    while run.step < total:
        result = train_step(run, batches, meter)
        steps_here += 1
        run_log.count(samples=result.samples, tokens=result.tokens)
        interval.add(result)
        saved.add(result)
        run_log.progress.update(1)
        val = _validate(run, validation, run_log) if validation_due(cfg, run.step) else {}
        last_val = val.get("val/loss", last_val)
        logged = run.step % cfg.log_every == 0 or run.step == total
        if logged:
            _log_interval(run, run_log, interval, meter, val, last_val)
            interval = engine.Interval()
        if val and not logged:  # a validation step between log steps: a line of its own
            run_log.record(val, run.step)
        stop = stop_vote.vote(preemption.requested, stop_after is not None and steps_here >= stop_after)
        if run.step % cfg.save_every == 0 or run.step == total or stop:
            mean_loss, saved = saved.mean_loss(dist), engine.Interval()
            # Rank 0 ranks checkpoints for "best"; with validation, a save between evaluations (preemption) never is.
            metric = mean_loss if held_out is None else val.get("val/loss")
            is_best = dist.is_main and metric is not None and metric < run.best_metric
            if is_best:
                run.best_metric = metric
            engine.save(run, output, is_best)
            if run.step < total and not stop:
                run_log.curves()
        if stop and run.step < total:
            log.warning("stopping at step %d (%s); resume with --resume auto", run.step, stop_vote.reason)
            break
    stop_vote.close()
    return 0 if run.step >= total else command.PREEMPTED_EXIT_CODE


def _validate(run: Run, validation: Validation | None, run_log: RunLog) -> dict[str, float]:
    """Rank 0's validation metrics now ({} elsewhere), logged; its time is left out of the rates."""
    if validation is None:
        return {}
    val = engine.validate(run_log, lambda: validation(run))
    if val:
        parts = ", ".join(
            f"{name.removesuffix('_loss')} {val[f'val/{name}']:.4f}" for name in pretraining_losses(unwrap(run.model))
        )
        log.info(
            "step %d: validation loss %.4f (%s) on %d held-out windows",
            run.step,
            val["val/loss"],
            parts,
            val["val/windows"],
        )
    return val


def _log_interval(
    run: Run,
    run_log: RunLog,
    interval: engine.Interval,
    meter: ReconstructionMeter,
    val: dict[str, float],
    last_val: float | None,
) -> None:
    """The log step's line: the interval's losses and rates, its reconstruction metrics, any validation."""
    # Every micro-batch of the interval on every rank, not one batch of rank 0's.
    recon = run.dist.gather_objects(meter.pop())
    extra = {"epoch": float(run.loader.epoch)}
    if run.dist.is_main:
        extra.update(ReconstructionMeter.report(recon, CHANNELS), **val)
    interval.log(run, run_log, extra, **({"val": f"{last_val:.4f}"} if last_val is not None else {}))


def export_best(run: Run, output: Path, tracker: Tracker) -> Path | None:
    """The best checkpoint's encoder as ``model-best/`` where it is not the final step's; returns
    that folder, else None (and a stale ``model-best/`` goes)."""
    best = ckpt.best_checkpoint(output / "checkpoints")
    target = output / "model-best"
    if best is None or math.isinf(run.best_metric):
        return None
    tracker.summary({"best_val_loss": run.best_metric})
    if best.name == ckpt.step_dir_name(run.step):
        shutil.rmtree(target, ignore_errors=True)
        log.info("lowest validation loss %.4f at the final step: model/ is the best encoder", run.best_metric)
        return None
    model = type(unwrap(run.model))(unwrap(run.model).config)
    model.load_state_dict(ckpt.load_checkpoint(best, map_location="cpu")["model"])
    with quiet_transformers():
        model.save_pretrained(target)
    log.info(
        "lowest validation loss %.4f at %s: its encoder saved to %s (model/ holds the final step's)",
        run.best_metric,
        best.name,
        target,
    )
    return target
