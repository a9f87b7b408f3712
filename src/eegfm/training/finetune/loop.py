"""Fine-tuning's training loop: set up (the folds that choose the epoch where ``epochs_chosen_by:
training_people``; a new head fitted as a probe where ``head_init: probe``, then validated as step
0), then per stage, per step: batch, forward, backward, step, log; evaluate the validation split
every epoch (or ``eval_every`` steps); checkpoint; stop early."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eegfm.contract import layout
from eegfm.core.logs import get_logger
from eegfm.core.run_lock import release_run_lock
from eegfm.core.tasks import FINETUNE_TASKS
from eegfm.metrics.classification import evaluate
from eegfm.model import adapters as adapters_lib
from eegfm.model.modeling import EEGFMModel
from eegfm.training import checkpoint as ckpt
from eegfm.training import command, engine, run_state, steps
from eegfm.training.config import ConfigError, FinetuneConfig
from eegfm.training.cpu_use import use_cpus
from eegfm.training.data import AUTO, EEGLoader, check_data, data_dirs
from eegfm.training.distributed import Dist, StopVote, unwrap
from eegfm.training.finetune import epoch_folds, initial_model, objective, probe_head, setup, trainable
from eegfm.training.finetune.plan import Plan, Stage, check_plan_files, plan_data, stages_of
from eegfm.training.finetune.report import Evaluation, best_weights, collect, finish
from eegfm.training.finetune.setup import Run
from eegfm.training.run_log import RunLog
from eegfm.training.splits import SPLITS, Split

log = get_logger("eegfm.training.finetune")


def train_step(run: Run, batches) -> engine.Step:
    """One optimizer step of the KL (or cross-entropy) loss to the windows' votes."""

    def forward(batch: dict[str, Any], _micro: int) -> engine.MicroBatch:
        inputs = objective.inputs_for(run.model, batch, run.dist.device, run.data)
        target = objective.targets_of(batch, run.cfg, run.dist.device)
        with steps.autocast(run.dist, run.amp_dtype):
            logits = run.model(**inputs).logits
        loss = run.loss_fn(logits.float(), target)
        minima = {"min_votes": float(batch["n_votes"].min())}
        return engine.MicroBatch(loss, samples=inputs["eeg"].shape[0], minima=minima)

    return engine.train_step(run, batches, forward)


def _resume_or_plan(
    cfg: FinetuneConfig,
    dist: Dist,
    data: list[str],
    pretrained: str,
    output: Path,
    resume: str,
    record_task: str,
    background: tuple[str, ...] = (),
    fold: Split | None = None,
) -> tuple[Plan, dict[str, Any] | None]:
    """The checkpoint's plan and state where the run resumes (the split it started with, whatever
    --data holds now), else a new plan (rank 0 scans, every rank fails alike). ``data``: every
    folder read, ``background`` among them; ``fold``: the split in place of the settings' one."""
    if (found := run_state.resume_checkpoint(resume, output, dist)) is not None:
        start, state = found
        saved = state.get("config", {})
        adapter = ("adapter_kind", "adapter_rank") if "adapter" in (cfg.mode, saved.get("mode")) else ()
        keys = (*run_state.MODEL_KEYS, "task", "mode", "architecture", *adapter)
        run_state.check_model_unchanged(saved, cfg.to_dict(), start, keys)
        plan = Plan.from_dict(state["plan"])
        check_plan_files(plan, data, start)
        return plan, state
    planned: dict[str, Any] = {}
    if dist.is_main:
        try:
            main = [d for d in data_dirs(data) if d not in background]
            patch_size = initial_model.patch_size_of(pretrained, cfg)
            planned = {"plan": plan_data(main, cfg, record_task, patch_size, background, fold).to_dict()}
        except (ConfigError, FileNotFoundError) as err:
            planned = {"error": str(err)}
    planned = dist.broadcast_object(planned)  # every rank fails alike, none waits forever
    if "error" in planned:
        raise ConfigError(planned["error"])
    return Plan.from_dict(planned["plan"]), None


@dataclasses.dataclass
class FineTuning:
    """What the stages of one invocation share."""

    cfg: FinetuneConfig
    dist: Dist
    output: Path
    plan: Plan
    val_loader: EEGLoader
    run_log: RunLog
    stop_vote: StopVote
    stop_after: int | None
    steps_here: int = 0
    best_eval: Evaluation | None = None  # the best weights' validation logits
    epoch_choice: dict[str, Any] | None = None  # the epoch to keep where validation does not choose it


def train(
    cfg: FinetuneConfig,
    dist: Dist,
    data: str | Sequence[str],
    pretrained: str | None,
    output: Path,
    resume: str = "auto",
    record_task: str | None = None,
    stop_after: int | None = None,
    background: Sequence[str] = (),
    fold: Split | None = None,
) -> int:
    """Fine-tune; returns the exit status (0 done, 143 stopped and checkpointed: preempted, or
    after ``stop_after`` steps of this invocation). ``background``: folders of background windows
    (``preprocess --background``), read with ``data``; ``fold``: the split to train and validate
    on in place of the one the settings draw (``epoch_folds``)."""
    try:
        record_task = _check_run(cfg, dist, record_task)
        steps.configure_kernels(cfg, dist.device)
        pretrained_folder = initial_model.check_pretrained(pretrained, cfg)  # fail before the data pass
        background = tuple(map(str, background))
        given = [data] if isinstance(data, (str, Path)) else list(data)
        data = check_data([*given, *background], dist.is_main, cfg.allow_partial)  # a folder twice: ConfigError
        run_state.claim_output(output, dist)
        plan, state = _resume_or_plan(cfg, dist, data, pretrained, output, resume, record_task, background, fold)
        epoch_choice = None  # validation chooses
        if cfg.epochs_chosen_by == "none" and _epoch_to_choose(cfg):
            epoch_choice = {"by": "none", "epoch": cfg.epochs}
        elif _epoch_to_choose(cfg):
            folds = _FoldRuns(cfg, dist, given, background, pretrained, output, resume, record_task, stop_after)
            status, epoch_choice = folds.choose(plan)
            if status:
                return status
        model, fresh = initial_model.load_model(pretrained, cfg)
        if fresh:  # a new task head, initialised from the class prior
            initial_model.init_head(model, plan.prior, cfg.task, cfg.seed)
        trainable.configure_mode(model, cfg)  # which parameters train
        model.to(dist.device)
        probe = _probe_head(cfg, dist, data, plan, model, fresh and state is None)
        n_params, n_trainable = adapters_lib.count_parameters(model), adapters_lib.count_trainable(model)
        stages = stages_of(cfg, plan)
        if dist.is_main:
            run_state.write_run_json(
                output,
                dist,
                config=cfg.to_dict(),
                pretrained=None if pretrained_folder is None else str(pretrained_folder),
                architecture=cfg.architecture,
                data=data_dirs(data),
                background=list(background),
                split={k: list(plan.split.of(k)) for k in SPLITS},
                **{k: getattr(plan, k) for k in ("record_task", "split_group", "windows", "class_counts", "prior")},
                background_windows=plan.background,
                stages=[dataclasses.asdict(s) for s in stages],
                parameters=n_params,
                trainable_parameters=n_trainable,
                probe_head=probe,
            )
        log.info(
            "task %s, mode %s: %d of %d parameters trainable (%.2f%%); windows %s",
            cfg.task,
            cfg.mode,
            n_trainable,
            n_params,
            100.0 * n_trainable / n_params,
            plan.windows,
        )
        if any(plan.background.values()):
            log.info("of them from --background (task %s's background class): %s", cfg.task, plan.background)
        run_log = RunLog(cfg, dist, output, f"fine-tuning: {cfg.task} ({cfg.mode})", log)
        val_loader = setup.split_loader(cfg, dist, data, plan, "val", model.config.patch_size)
        job = FineTuning(
            cfg, dist, output, plan, val_loader, run_log, StopVote(dist), stop_after, epoch_choice=epoch_choice
        )
        return _run(job, data, model, stages, state)
    finally:
        release_run_lock(output)  # taken by run_state.claim_output (a no-op where none was)


def _run(job: FineTuning, data: str | Sequence[str], model: EEGFMModel, stages: list[Stage], state: dict | None) -> int:
    """Train the stages in ``output``, now this process holds it; evaluate and save the model."""
    cfg, dist, output, plan, run_log = job.cfg, job.dist, job.output, job.plan, job.run_log
    start_stage = None if state is None else int(state["stage"])
    status, best, offset = 0, math.inf, 0
    with ckpt.PreemptionHandler() as preemption, run_log:
        for stage in stages:
            if start_stage is not None and stage.index < start_stage:
                continue
            if stage.index > 0 and (start_stage is None or stage.index > start_stage):
                weights = best_weights(output, dist)  # stage 2 starts from stage 1's best
                if weights is not None:
                    unwrap(model).load_state_dict(weights)
            run = setup.build_run(cfg, dist, data, plan, stage, unwrap(model), best_metric=best, offset=offset)
            cpus_line = use_cpus(AUTO, run.loader, dist.device)  # after the loader: the cores its workers leave
            if dist.is_main:
                log.info(cpus_line)
            if state is not None and int(state["stage"]) == stage.index:
                run.load_state_dict(state)
                log.info("resumed %s at step %d (epoch %d)", stage.name, run.step, run.epoch)
                state = None
            stopped = _train_stage(job, run, preemption)
            best, offset = run.best_metric, run.global_step
            if stopped:
                status = command.PREEMPTED_EXIT_CODE
                break
        job.stop_vote.close()
        if status == 0:
            run_state.check_replicas(run, output)
            finish(run, data, output, run_log.tracker, job.val_loader, job.best_eval, job.epoch_choice)
    dist.barrier()
    return status


def _epoch_to_choose(cfg: FinetuneConfig) -> bool:
    """Whether the kept epoch is fixed before the run (``epochs_chosen_by`` other than
    ``validation``) and there is one to fix (a linear probe fitted by the solver is kept as it is)."""
    return cfg.epochs_chosen_by != "validation" and not (cfg.mode == "linear" and cfg.head_init == "probe")


@dataclasses.dataclass
class _FoldRuns:
    """The runs of ``epoch_folds``: ``train``'s arguments, each fold's in ``output/folds/foldK``."""

    cfg: FinetuneConfig
    dist: Dist
    data: Sequence[str]
    background: tuple[str, ...]
    pretrained: str | None
    output: Path
    resume: str
    record_task: str
    stop_after: int | None

    def choose(self, plan: Plan) -> tuple[int, dict[str, Any] | None]:
        """(0, the choice as ``eval.json`` says it), or (a fold's exit status, None) where one
        stopped first."""
        folder = self.output / epoch_folds.FOLDS
        splits = epoch_folds.fold_splits(plan.split.train, self.cfg.epoch_folds, self.cfg.seed)
        fold_cfg = self.cfg.with_settings(
            {"epochs_chosen_by": "validation", "early_stopping_patience": None, "wandb.mode": "disabled"}
        )
        curves = []
        for k, split in enumerate(splits):
            out = folder / f"fold{k}"
            if self.resume == "none" or not (out / layout.EVAL).exists():  # a finished fold is reused
                log.info("epoch folds: fold %d of %d, %d groups held out", k + 1, len(splits), len(split.val))
                status = train(
                    fold_cfg, self.dist, self.data, self.pretrained, out, self.resume, self.record_task,
                    self.stop_after, self.background, fold=split,
                )  # fmt: skip
                if status:
                    return status, None
            curves.append({epoch: found["metric"] for epoch, found in epoch_folds.held_out_curve(out).items()})
        choice = epoch_folds.choose_epoch(curves)
        if self.dist.is_main:
            epoch_folds.write_choice(folder, choice, splits)
        log.info(
            "epoch folds: epoch %d chosen (mean held-out loss %.4f; the folds' own best epochs %s)",
            choice["epoch"],
            choice["mean_loss"][choice["epochs"].index(choice["epoch"])],
            choice["fold_best_epochs"],
        )
        return 0, epoch_folds.summary(choice)


def _probe_head(
    cfg: FinetuneConfig, dist: Dist, data: Sequence[str], plan: Plan, model: EEGFMModel, new_head: bool
) -> dict[str, Any] | None:
    """With ``head_init: probe``, a new head fitted as a linear probe (``probe_head``); what it chose."""
    if cfg.head_init != "probe":
        return None
    if not new_head:
        log.info("head_init probe: the head is the saved model's (or the checkpoint's), kept as it is")
        return None
    patch_size = unwrap(model).config.patch_size
    loader = setup.split_loader(cfg, dist, data, plan, "train", patch_size)
    val_loader = None
    if cfg.probe_chosen_by == "validation":
        val_loader = setup.split_loader(cfg, dist, data, plan, "val", patch_size)
    return probe_head.fit_probe_head(unwrap(model), loader, cfg, dist, val_loader)


def _check_run(cfg: FinetuneConfig, dist: Dist, record_task: str | None) -> str:
    """The ``task`` value the windows carry (``--record_task``, else the task's own); ConfigError
    where there is none, or where the backend cannot run the config."""
    record_task = record_task or FINETUNE_TASKS.get(cfg.task)
    if record_task is None:
        raise ConfigError(
            f"--record_task: task {cfg.task!r} needs the `task` value its windows carry "
            f"(known: {', '.join(f'{k}={v}' for k, v in FINETUNE_TASKS.items())})"
        )
    if dist.backend == "horovod" and cfg.unfreeze_schedule:
        raise ConfigError(
            "unfreeze_schedule: Horovod registers gradient hooks once, so gradual unfreezing "
            "needs torchrun (DDP); set unfreeze_schedule: [] for Horovod"
        )
    return record_task


def _train_stage(job: FineTuning, run: Run, preemption: ckpt.PreemptionHandler) -> bool:
    """Train ``run``'s stage to its end (all epochs, or early stopping); True where the job
    stops first (preemption, ``--stop_after``), checkpointed."""
    cfg, stage = job.cfg, run.stage
    trainable.set_trainable(run)
    batches = job.run_log.timed(run.loader)
    job.run_log.bar(run.total_steps, run.step, f"finetune {stage.name}")
    interval, stop = engine.Interval(), False
    if cfg.head_init == "probe" and run.step == 0 and stage.index == 0:  # the fitted probe is a candidate
        engine.save(run, job.output, _validate(job, run))
        # A linear probe fitted by the convex solver is the probe: gradient steps on the
        # unregularized loss would only move it off its cross-validated optimum.
        run.done = run.done or cfg.mode == "linear"
    while not run.done and run.step < run.total_steps:
        trainable.set_trainable(run)
        result = train_step(run, batches)
        run.after_step()
        job.steps_here += 1
        interval.add(result)
        job.run_log.count(samples=result.samples)
        job.run_log.progress.update(1)
        if run.step % cfg.log_every == 0 or run.step == run.total_steps:
            extra = {"epoch": run.step / run.steps_per_epoch, "stage": run.stage.index + 1}
            interval.log(run, job.run_log, extra, name=_train_key)
            interval = engine.Interval()
        evaluate_now = run.step % (cfg.eval_every or run.steps_per_epoch) == 0 or run.step == run.total_steps
        is_best = evaluate_now and _validate(job, run)
        stop = job.stop_vote.vote(preemption.requested, job.stop_after is not None and job.steps_here >= job.stop_after)
        if evaluate_now or run.step % cfg.save_every == 0 or stop:
            engine.save(run, job.output, is_best)
        if stop and not run.done:
            break
    job.run_log.close_bar()
    stopped = stop and not run.done
    if stopped:
        log.warning(
            "stopping in %s at step %d (%s); resume with --resume auto", stage.name, run.step, job.stop_vote.reason
        )
    return stopped


def _train_key(key: str) -> str:
    """Fine-tuning's metrics names: the training metrics under ``train/``."""
    return key if key in ("epoch", "stage", "lr") else f"train/{key}"


def _validate(job: FineTuning, run: Run) -> bool:
    """Evaluate the validation split, log it, count evaluations without improvement; True where
    the weights are the best so far (where the training people chose the epoch: where they are
    that epoch's)."""
    cfg = job.cfg
    logits, target, sites = engine.validate(
        job.run_log, lambda: collect(run.validated, job.val_loader, cfg, job.dist, run.amp_dtype)
    )
    head, class_weights = unwrap(run.model).head, objective.resolve_class_weights(cfg, job.plan)
    val = evaluate(
        logits, target, cfg, head, job.plan.prior, calibrated=cfg.temperature_scaling, class_weights=class_weights
    )
    chosen = job.epoch_choice  # where the epoch was fixed before the run, validation only reports
    stop_step = run.total_steps if chosen is None else min(chosen["epoch"] * run.steps_per_epoch, run.total_steps)
    is_best = val["metric"] < run.best_metric if chosen is None else run.step == stop_step
    if is_best:
        job.best_eval = (logits, target, sites)
        run.best_metric = val["metric"]
    run.bad_evals = 0 if is_best else run.bad_evals + 1
    patience = cfg.early_stopping_patience if chosen is None else None
    if run.step >= stop_step or (patience is not None and run.bad_evals >= patience):
        run.done = True
    line = {f"val/{k}": v for k, v in val.items()}
    line.update(epoch=run.step / run.steps_per_epoch, stage=run.stage.index + 1, best=is_best)
    job.run_log.record(line, run.global_step)
    log.info(
        "%s step %d (epoch %.2f): val %s%s %.4f (class-prior baseline %.4f)%s",
        run.stage.name,
        run.step,
        run.step / run.steps_per_epoch,
        "kl" if cfg.task == "hms6" else "loss",
        f" at T = {val['calibrated_temperature']:.2f}" if "calibrated_temperature" in val else "",
        val["metric"],
        val.get("baseline_kl", math.nan),
        ", best so far" if is_best else "",
    )
    if run.done and run.step < run.total_steps and chosen is not None:
        log.info("%s: stopping at epoch %d, the training people's choice", run.stage.name, chosen["epoch"])
    elif run.done and run.step < run.total_steps:
        log.info("%s: early stopping after %d evaluations without improvement", run.stage.name, run.bad_evals)
    return is_best
