"""Supervised fine-tuning of a pretrained eegfm encoder on a labeled task (HMS six-class votes ...).

One process per device, launched like pretraining::

    python -m eegfm.training.finetune --pretrained RUN/model --data D --task hms6 --output O --config cpu-tiny
    torchrun --nproc_per_node=2 -m eegfm.training.finetune --pretrained ... --output O     # DDP
    horovodrun -np 2 -H localhost:2 python -m eegfm.training.finetune --backend horovod ...

What a run does, in order:

1. **Plan** (rank 0, broadcast): one metadata-only pass over ``--data`` finds the labeled windows
   of the task (hms6: windows with expert votes; other tasks: ``label >= 0``) and splits their
   subjects (or sites, ``split_group: site``) into train / validation (/ test, ``test_fraction``)
   with :func:`split_groups`, a pure function of the set of ids and the seed: no subject is in
   two splits. The loaders receive the splits as ``RecordFilter(subjects=...)``. The training
   split's class counts give ``class_weights: balanced`` and its mean target distribution the
   class-prior baseline (and the fresh head's initial bias, so training starts at the baseline).
2. **Model**: ``EEGFMModel.from_pretrained(--pretrained)``. A pretraining output
   (``EEGFMForPretraining``: ``encoder.*`` weights) loads its encoder and gets a fresh task head
   from the registry (:func:`init_head`); a fine-tuned model of the same task keeps its head.
   Optional inputs follow the model's ``modalities`` (``model_overrides: {modalities: []}``
   trains on EEG alone; with a handful of subjects, age and sex identify the subject). Modes:
   ``linear`` (frozen encoder, head only), ``adapter`` (LoRA / bottleneck adapters + head),
   ``full`` (everything, with layer-wise learning-rate decay ``optim.layer_decay`` and gradual
   unfreezing ``unfreeze_schedule``: head only, then deeper and deeper layer groups, top-down).
3. **Train**: step-based (``train_step`` as in pretraining: accumulation, clipping, AMP, DDP/Horovod),
   an *epoch* being ``ceil(training windows / (batch_size * world_size))`` steps of the infinite
   loader. After every epoch (or every ``eval_every`` steps) the validation split is evaluated
   (hms6: KL(target || prediction), the Kaggle metric; other tasks: the head's loss), a checkpoint
   is written and marked ``best`` when the metric improved, and ``early_stopping_patience``
   evaluations without improvement end the stage. Training augmentations come from
   ``loader.augment`` (e.g. ``{crop_seconds: 10}``: random 10 s crops of
   the 50 s HMS windows, 5x cheaper steps; evaluation always sees whole windows). With
   ``two_stage_min_votes: N`` a second stage (its own schedule and patience) continues from the
   best weights on the training windows with at least N votes.
4. **Calibrate and evaluate**: the best weights are reloaded; with ``temperature_scaling`` one
   scalar T is fitted on the validation logits (:func:`fit_temperature`) and stored in the model's
   ``config.temperature``, which ``EEGFMModel.predict`` applies. Validation (and test) metrics,
   before and after calibration, next to the class-prior baseline, go to ``eval.json``.

Losses (``training.losses``): ``kl`` (hms6 default), ``ce`` with label smoothing, ``focal``; class
weights ``none`` / ``balanced`` / a list. Binary heads (``eegmat``) use the same functions on
two-class logits ``[0, z]`` (so ``ce`` is exactly binary cross-entropy).

Outputs in ``--output``: ``model/`` (Hugging Face: config.json with the label names and the
temperature, model.safetensors), ``eval.json``, ``confusion.png`` (the held-out windows' confusion
matrix, classification tasks), ``metrics.jsonl`` (training and validation lines) and
``curves.png`` (drawn from it: losses against the class-prior baseline, held-out scores, learning rate),
``sites.png`` (the held-out metric site by site against the baseline's, where the held-out windows
come from several sites),
``run.json`` (config, split, parameter counts), ``checkpoints/`` (resumable with ``--resume auto``;
``best`` names the best one), ``wandb/`` (offline by default).

Preemption: SIGTERM makes every rank finish the step, rank 0 checkpoint, and the job exit 143;
``--resume auto`` (the default) continues in the same stage, epoch and data position.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from eegfm.model import adapters as adapters_lib
from eegfm.model.modeling import EEGFMModel
from eegfm.model.optim import param_groups_lrd
from eegfm.core.config import user_file_path, user_path
from eegfm.core.logs import get_logger, setup_logging
from eegfm.core.run_lock import release_run_lock
from eegfm.core.tasks import FINETUNE_TASKS
from eegfm.pipelines.schema import SFREQ
from eegfm.training import checkpoint as ckpt
from eegfm.training import losses
from eegfm.training.config import ConfigError, FinetuneConfig, load_config, resolve_precision
from eegfm.training.calibration import calibration_metrics, ece_of_bins, plot_reliability, reliability_bins
from eegfm.training.confusion import confusion_matrix, plot_confusion
from eegfm.training.curves import write_curves
from eegfm.training.per_site import plot_per_site
from eegfm.training.preprocess_spec import save_preprocess_spec
from eegfm.training.data import (EEGLoader, RecordFilter, check_data, data_dirs, data_label, file_key, inputs_for_modalities,
                           list_files, scan_windows)
from eegfm.training.distributed import Dist, StopVote, unwrap
from eegfm.training.loop import (MODEL_KEYS, PREEMPTED_EXIT_CODE, TimedBatches, TrainState, add_run_arguments, autocast,
                           backward, check_model_unchanged, claim_output, configure_kernels, core_state, launch,
                           load_core_state, loader_config, optimizer_step, quiet_transformers, run_overrides,
                           step_seed)
from eegfm.training.pretrain import check_replicas
from eegfm.training.splits import SPLITS, Split, corpus_splits, site_splits, split_groups
from eegfm.training.tracking import Tracker, memory_stats

log = get_logger(__name__)

# Fine-tuning task -> the ``task`` value its windows carry in the data contract.
RECORD_TASKS = FINETUNE_TASKS


# ------------------------------------------------------------------------------------------ plan
@dataclasses.dataclass
class Plan:
    """What the metadata pass decides; built on rank 0 and broadcast (plain data only)."""

    record_task: str
    split_group: str
    split: Split
    windows: dict[str, int]         # labeled windows per split
    class_counts: list[int]          # training split, per class (empty for regression)
    prior: list[float]               # training split mean target distribution
    stage2_windows: int | None       # training windows with >= two_stage_min_votes votes
    # Per split, the labeled windows each file holds (empty in a checkpoint from before it).
    files: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return cls(**{**data, "split": Split(**{k: tuple(v) for k, v in data["split"].items()})})


def _labels(cfg: FinetuneConfig) -> list[str]:
    return [str(v) for _, v in sorted((cfg.model_config().id2label or {}).items())]


def is_labeled(window: dict[str, Any], cfg: FinetuneConfig) -> bool:
    """Whether a scanned window carries a target for ``cfg.task``: votes (hms6), else a label >= 0."""
    if cfg.task == "hms6":
        return float(window["votes"].sum()) > 0
    return window["label"] >= 0


def check_plan_files(plan: Plan, data: str | Sequence[str], checkpoint: str) -> None:
    """A resumed run reads the files its split was planned on, wherever they lie now (by site
    folder and file name, ``training.data.file_key``); ConfigError naming the missing ones otherwise."""
    files = list_files(data)
    key = file_key(files)
    planned = {key(path) for counts in plan.files.values() for path, n in counts.items() if n > 0}
    missing = sorted(planned - set(map(key, files)))
    if missing:
        raise ConfigError(
            f"resume: {checkpoint} continues a run whose split was planned on {len(planned)} TFRecord "
            f"file{'s' * (len(planned) != 1)}, "
            f"{len(missing)} of them not in --data {data_label(data)} "
            f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}); "
            f"give that run's --data (its run.json names it), or start a new run (another --output, or --resume none)")


def plan_data(data: str | Sequence[str], cfg: FinetuneConfig, record_task: str, patch_size: int = 1) -> Plan:
    """Scan ``data`` for the task's labeled windows, split their groups, count the training split.
    ``patch_size``: the model's, in samples; a shorter window is an error (the model reads patches)."""
    windows = scan_windows(data, RecordFilter())
    labeled = [w for w in windows if w["task"] == record_task and is_labeled(w, cfg)]
    short = [w["n_times"] for w in labeled if w["n_times"] < patch_size]
    if short:
        raise ConfigError(
            f"--data {data_label(data)}: {len(short)} labeled window{'s' * (len(short) != 1)} of {record_task!r} "
            f"{'are' if len(short) != 1 else 'is'} shorter than the model's patch of {patch_size} samples "
            f"({patch_size / SFREQ:g} s at {SFREQ:g} Hz), the least it reads: {min(short)} samples "
            f"({min(short) / SFREQ:.2f} s) the shortest; label windows of at least {patch_size / SFREQ:g} s "
            f"(labels.csv duration_s, preprocess --window_seconds)")
    if not labeled:
        found = Counter(w["task"] or "<unlabeled>" for w in windows)
        need = "expert votes" if cfg.task == "hms6" else "a label >= 0"
        same = found.get(record_task, 0)
        why = "" if not same else f"; none of its {same} {record_task!r} window{'s' * (same != 1)} has {need}" + (
            " (an HMS test.csv layout: windows to classify, not to train on)" if cfg.task == "hms6" else "")
        raise ConfigError(
            f"--data {data_label(data)}: no labeled windows for task {cfg.task!r} (windows with task "
            f"{record_task!r} and "
            f"{need}); the data holds {dict(sorted(found.items())) or 'no windows'}{why}")
    if cfg.task not in ("hms6", "regression"):
        classes = _labels(cfg)
        outside = Counter(int(w["label"]) for w in labeled if not 0 <= w["label"] < len(classes))
        if outside:
            found = ", ".join(f"{label} ({n} window{'s' * (n != 1)})" for label, n in sorted(outside.items()))
            raise ConfigError(
                f"--data {data_label(data)}: task {cfg.task!r} takes labels 0..{len(classes) - 1} "
                f"({', '.join(classes)}); "
                f"windows of {record_task!r} have label {found}. For more classes use --task multiclass with "
                f"--set 'model_overrides.id2label={{0: a, 1: b, 2: c}}'")
    key = "subject_id" if cfg.split_group == "subject" else "site_id"
    try:
        if cfg.corpus_split:
            split = corpus_splits(((w["subject_id"], w["corpus_split"]) for w in labeled), cfg.val_fraction,
                                  cfg.seed)
        elif cfg.test_sites:
            split = site_splits(((w[key], w["site_id"]) for w in labeled), cfg.test_sites, cfg.val_fraction, cfg.seed,
                                cfg.split_group)
        else:
            split = split_groups((w[key] for w in labeled), cfg.val_fraction, cfg.seed, cfg.test_fraction,
                                 cfg.split_group)
    except ValueError as err:
        raise ConfigError(f"--data {data_label(data)}, task {cfg.task!r}: {err}") from None
    side = {g: name for name in SPLITS for g in split.of(name)}
    train = [w for w in labeled if side[w[key]] == "train"]
    n_classes = len(_labels(cfg)) if cfg.task != "regression" else 0
    counts, prior = [0] * n_classes, [0.0] * n_classes
    for w in train:
        if cfg.task == "hms6":
            votes = w["votes"].astype(np.float64)
            counts[int(w["label"]) if 0 <= w["label"] < n_classes else int(votes.argmax())] += 1
            prior = [p + v for p, v in zip(prior, votes / votes.sum())]
        elif n_classes and 0 <= w["label"] < n_classes:
            counts[w["label"]] += 1
            prior[w["label"]] += 1.0
    total = sum(prior)
    prior = [p / total for p in prior] if total > 0 else prior
    if cfg.task == "regression":  # the baseline predicts the training split's mean
        prior = [float(np.mean([w["label"] for w in train]))]
    stage2 = None
    if cfg.two_stage_min_votes is not None:
        stage2 = sum(float(w["votes"].sum()) >= cfg.two_stage_min_votes for w in train)
        if stage2 == 0:
            raise ConfigError(f"two_stage_min_votes: no training window in {data_label(data)} has >= "
                              f"{cfg.two_stage_min_votes} votes; lower it or set it to null")
    files: dict[str, Counter] = {name: Counter() for name in SPLITS}
    for w in labeled:
        files[side[w[key]]][w["path"]] += 1
    return Plan(record_task, cfg.split_group, split,
                {name: sum(side[w[key]] == name for w in labeled) for name in SPLITS}, counts, prior, stage2,
                {name: dict(sorted(found.items())) for name, found in files.items()})


def split_filter(plan: Plan, name: str, min_votes: float = 0.0) -> RecordFilter:
    """The loader filter of one split: the task's windows of that split's subjects (sites)."""
    groups = plan.split.of(name)
    by_group = {"sites": groups} if plan.split_group == "site" else {"subjects": groups}
    return RecordFilter(tasks=(plan.record_task,), min_votes=min_votes, **by_group)


# ------------------------------------------------------------------------------------------ model
def resolve_pretrained(path: str | os.PathLike[str]) -> Path:
    """The Hugging Face folder in ``path``: itself, or ``path/model`` (a pretraining run folder)."""
    path = Path(path)
    for candidate in (path, path / "model"):
        if (candidate / "config.json").is_file():
            return candidate
    raise ConfigError(f"--pretrained {path}: no config.json there (or in {path / 'model'}); expected a "
                      "Hugging Face model folder, e.g. the model/ folder written by training.pretrain")


def _patch_size(pretrained: str | os.PathLike[str]) -> int:
    """The saved model's patch length in samples (its config.json), before the model is loaded."""
    saved = json.loads((resolve_pretrained(pretrained) / "config.json").read_text())
    return int(saved.get("patch_size") or 1)


def load_model(pretrained: str | os.PathLike[str], cfg: FinetuneConfig) -> tuple[EEGFMModel, bool]:
    """The task model from a pretraining or fine-tuning output; returns (model, head is new).

    The architecture comes from the saved config; the run config sets the head and labels of its
    task, activation checkpointing and any ``model_overrides`` (e.g. dropout). A pretraining
    output must provide every encoder weight: a missing one is an error, not a silent init.
    """
    folder = resolve_pretrained(pretrained)
    saved = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if saved.get("model_type") != "eegfm":
        raise ConfigError(f"--pretrained {folder}: config.json has model_type {saved.get('model_type')!r}; "
                          "expected 'eegfm'")
    if saved.get("preset") not in (None, "custom", cfg.model):
        log.warning("the run config names model %r but --pretrained holds a %r model; the architecture "
                    "comes from --pretrained", cfg.model, saved.get("preset"))
    overrides = {k: v for k, v in cfg._model_fields().items() if k != "id2label"}
    with quiet_transformers():  # our own one-line summary replaces the missing-keys table
        model, info = EEGFMModel.from_pretrained(
            folder, output_loading_info=True, gradient_checkpointing=cfg.activation_checkpointing,
            temperature=1.0, **overrides)
    missing = sorted(k for k in info["missing_keys"] if not k.startswith("head."))
    if missing or info["mismatched_keys"]:
        raise ConfigError(f"--pretrained {folder}: the weights do not fit the model: missing {missing[:5]}"
                          f"{' ...' if len(missing) > 5 else ''}, mismatched {sorted(info['mismatched_keys'])[:5]}")
    labels = _labels(cfg)
    was = saved.get("architectures") or []
    saved_labels = [str(v) for _, v in sorted((model.config.id2label or {}).items(), key=lambda kv: int(kv[0]))]
    fresh = ("EEGFMModel" not in was or model.config.head != cfg.head
             or any(k.startswith("head.") for k in info["missing_keys"])
             or (cfg.task != "regression" and saved_labels != labels))
    if fresh:
        torch.manual_seed(cfg.seed)
        model.reset_head(cfg.head, labels if cfg.task != "regression" else None)
    log.info("loaded %s from %s (%s); %s head %r", "encoder" if fresh else "model", folder,
             "/".join(was) or "?", "new" if fresh else "kept", cfg.head)
    return model, fresh


def init_head(model: EEGFMModel, prior: Sequence[float], task: str, seed: int) -> None:
    """Initialise a new head: weights N(0, 1/hidden_size), bias at the training class prior.

    The head reads a LayerNorm-ed embedding (unit variance per feature), so weights of standard
    deviation ``1/sqrt(hidden_size)`` give logits of unit scale whose gradients reach the encoder
    from the first step; the model's generic init (``initializer_range`` 0.02) makes them ~6x
    smaller for the tiny preset, and on the simulated HMS corpus training then sat at the
    baseline for several epochs (measured: tiny model, 10 s crops, 3 held-out subjects, three
    splits: held-out KL after 10 epochs 0.46-0.52 x the class-prior baseline with this init,
    0.71-0.83 x with 0.02). The bias makes the untrained head predict the training prior
    (sigmoid for binary heads), i.e. the baseline.
    """
    fc = model.head.fc
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        fc.weight.copy_(torch.randn(fc.weight.shape, generator=generator) / math.sqrt(fc.in_features))
        fc.bias.zero_()
        if task == "regression":  # the bias at the training mean: the untrained head predicts the baseline
            if len(prior) == fc.bias.numel():
                fc.bias.copy_(torch.tensor(prior, dtype=fc.bias.dtype))
            return
        if not prior or sum(prior) <= 0:
            return
        log_prior = losses.class_prior_log_probs(torch.tensor(prior, dtype=torch.float64))
        if fc.bias.numel() == 1:  # binary: logit(p_positive)
            fc.bias.fill_(float(log_prior[1] - log_prior[0]))
        else:
            fc.bias.copy_(log_prior.to(fc.bias))


def configure_mode(model: EEGFMModel, cfg: FinetuneConfig) -> None:
    """Which parameters train: linear = head; adapter = adapters + head; full = all."""
    if cfg.mode == "linear":
        model.freeze_encoder()
    elif cfg.mode == "adapter":
        kind = model.config.adapter_kind
        if kind is None:
            model.add_adapters(cfg.adapter_kind, cfg.adapter_rank)
        elif kind != cfg.adapter_kind or model.config.adapter_rank != cfg.adapter_rank:
            raise ConfigError(f"adapter_kind: --pretrained already has {kind!r} adapters of rank "
                              f"{model.config.adapter_rank}; got {cfg.adapter_kind!r} rank {cfg.adapter_rank}")
        else:
            for name, parameter in model.named_parameters():
                parameter.requires_grad = adapters_lib.is_adapter_parameter(name) or name.startswith("head.")
    else:
        model.unfreeze_encoder(None)


def encoder_layers(model: EEGFMModel) -> int:
    return len(model.encoder.blocks) + len(model.encoder.patch_layers)


def unfreeze_level(cfg: FinetuneConfig, step: int, steps_per_epoch: int) -> int:
    """How many milestones of ``unfreeze_schedule`` have passed at ``step`` (0-based)."""
    now = step // steps_per_epoch if cfg.unfreeze_unit == "epoch" else step
    return sum(now >= milestone for milestone in cfg.unfreeze_schedule)


def apply_unfreeze(model: EEGFMModel, cfg: FinetuneConfig, level: int) -> None:
    """Gradual unfreezing (full mode): level 0 trains the head alone; level i of k the top
    ``round(i / k)`` share of the encoder's layers (``unfreeze_encoder`` order); level k all."""
    schedule = cfg.unfreeze_schedule
    if cfg.mode != "full" or not schedule or level >= len(schedule):
        if cfg.mode == "full":
            model.unfreeze_encoder(None)
        return
    if level == 0:
        model.freeze_encoder()
    else:
        n_layers = encoder_layers(model)
        model.unfreeze_encoder(max(1, round(n_layers * level / len(schedule))))


def optimizer_groups(model: EEGFMModel, cfg: FinetuneConfig) -> list[dict[str, Any]]:
    """AdamW groups with layer-wise lr decay (``model.optim.param_groups_lrd``: the head at
    ``optim.lr``, each layer below at ``optim.layer_decay`` times the one above), built over every
    parameter, frozen or not: AdamW skips parameters without gradients, so gradual unfreezing
    needs no new optimizer and frozen parameters stay bit-for-bit unchanged."""
    frozen = [p for p in model.parameters() if not p.requires_grad]
    for parameter in frozen:
        parameter.requires_grad_(True)
    try:
        return param_groups_lrd(model, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.layer_decay)
    finally:
        for parameter in frozen:
            parameter.requires_grad_(False)


def inputs_for(model: torch.nn.Module, batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    """The batch's model inputs, without the optional ones the model was configured without
    (``model_overrides: {modalities: [...]}``; e.g. no age/sex for a handful of subjects, where
    they identify the subject and the head memorises subjects instead of EEG patterns)."""
    return inputs_for_modalities(batch, unwrap(model).config.modalities, device)


# ------------------------------------------------------------------------------------------ losses
def targets_of(batch: dict[str, Any], cfg: FinetuneConfig, device: torch.device) -> torch.Tensor:
    """hms6: the (mixed) vote distributions; regression: label values (NaN = none); else labels."""
    if cfg.task == "hms6":
        return batch["targets"].to(device)
    label = batch["label"].to(device)
    if cfg.task == "regression":
        return torch.where(label >= 0, label.float(), torch.full_like(label, float("nan"), dtype=torch.float32))
    return label


def class_logits(logits: torch.Tensor, cfg: FinetuneConfig) -> torch.Tensor:
    """Logits over the classes: a binary head's single logit becomes ``[0, z]``."""
    return losses.binary_logits(logits) if cfg.head == "binary" else logits


def make_loss(cfg: FinetuneConfig, head: torch.nn.Module, class_weights: torch.Tensor | None
              ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training loss ``f(logits, target)`` the config asks for."""
    if cfg.task == "regression":
        return head.loss
    name = cfg.loss or ("kl" if cfg.task == "hms6" else "ce")
    if name == "kl":
        return lambda logits, target: losses.kl_divergence(logits, target, class_weights)
    if name == "ce":
        return lambda logits, target: losses.soft_cross_entropy(
            class_logits(logits, cfg), target, cfg.label_smoothing, class_weights)
    return lambda logits, target: losses.focal_loss(
        class_logits(logits, cfg), target, cfg.focal_gamma, cfg.label_smoothing, class_weights)


def resolve_class_weights(cfg: FinetuneConfig, plan: Plan) -> torch.Tensor | None:
    if cfg.class_weights == "none" or cfg.task == "regression":
        return None
    if cfg.class_weights == "balanced":
        return losses.balanced_class_weights(plan.class_counts)
    return torch.tensor(cfg.class_weights, dtype=torch.float32)


# ------------------------------------------------------------------------------------------ metrics
TEMPERATURE_RANGE = (0.01, 100.0)  # fit_temperature's search range


def fit_temperature(logits: torch.Tensor, target: torch.Tensor) -> tuple[float, float, float]:
    """The temperature T minimising the mean KL(target || softmax(logits / T)) (= the negative
    log-likelihood up to the targets' entropy): a log-spaced grid from 0.01 to 100, refined by
    golden-section search around the best grid point. Returns (T, KL at T=1, KL at T); T=1 is on
    the grid and kept unless beaten, so calibration never raises the validation KL."""
    logits, target = logits.double(), target.double()

    def objective(log_t: float) -> float:
        return float(losses.kl_divergence(logits / math.exp(log_t), target))

    grid = sorted(set(np.linspace(*map(math.log, TEMPERATURE_RANGE), 81).tolist()) | {0.0})
    values = [objective(g) for g in grid]
    best = int(np.argmin(values))
    low, high = grid[max(0, best - 1)], grid[min(len(grid) - 1, best + 1)]
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = objective(a), objective(b)
    for _ in range(40):
        if fa < fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = objective(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = objective(b)
    log_t, value = min([(grid[best], values[best]), (a, fa), (b, fb)], key=lambda item: item[1])
    return math.exp(log_t), objective(0.0), value


def classification_metrics(logits: torch.Tensor, target: torch.Tensor, prior: Sequence[float],
                           temperature: float = 1.0) -> dict[str, float]:
    """KL(target || prediction), accuracy of the top class, the ranking metrics and calibration
    (ECE, Brier: ``training.calibration``), next to the class-prior baseline (the training
    split's mean target for every window), over the windows with a target. ``logits`` are class
    logits (binary: ``[0, z]``)."""
    distribution, keep = losses.as_distribution(target, logits.shape[-1])
    logits, distribution = logits[keep].double() / temperature, distribution[keep].double()
    baseline = losses.class_prior_log_probs(torch.tensor(prior)).double().expand_as(distribution)
    kl = float(losses.kl_divergence(logits, distribution))
    baseline_kl = float(losses.kl_divergence(baseline, distribution))
    top = distribution.argmax(-1)
    probs, baseline_probs, targets = logits.softmax(-1).numpy(), baseline.exp().numpy(), distribution.numpy()
    baseline_calibration = calibration_metrics(baseline_probs, targets)
    return {"kl": kl, "baseline_kl": baseline_kl, "kl_vs_baseline": kl / baseline_kl if baseline_kl > 0 else math.nan,
            "accuracy": float((logits.argmax(-1) == top).double().mean()),
            "baseline_accuracy": float((baseline.argmax(-1) == top).double().mean()),
            **ranking_metrics(probs, top.numpy()),
            **calibration_metrics(probs, targets),
            "baseline_ece": baseline_calibration["ece"], "baseline_brier": baseline_calibration["brier"],
            "n_windows": int(keep.sum())}


def ranking_metrics(probs: np.ndarray, top: np.ndarray) -> dict[str, float]:
    """What papers on imbalanced EEG tasks report (eegmat is 3:1 rest:task), from the class
    probabilities ``probs`` [N, C] and each window's target class ``top``: balanced accuracy
    (the mean recall of the classes present), AUROC (binary; macro one-vs-rest over the classes
    present with C > 2) and, for two classes, AUPRC of class 1; with more, Cohen's kappa and the
    class-weighted F1 (what the TUEV benchmarks report). NaN where a class is missing."""
    from sklearn.metrics import average_precision_score, cohen_kappa_score, f1_score, roc_auc_score

    present = sorted(set(top.tolist()))
    predicted = probs.argmax(-1)
    balanced = float(np.mean([(predicted[top == c] == c).mean() for c in present])) if present else math.nan
    if probs.shape[1] == 2:
        separable = len(present) == 2
        return {"balanced_accuracy": balanced,
                "auroc": float(roc_auc_score(top == 1, probs[:, 1])) if separable else math.nan,
                "auprc": float(average_precision_score(top == 1, probs[:, 1])) if separable else math.nan}
    aucs = [roc_auc_score(top == c, probs[:, c]) for c in present if 0 < (top == c).sum() < len(top)]
    agree = len(set(top.tolist()) | set(predicted.tolist())) > 1  # else kappa divides 0 by 0
    return {"balanced_accuracy": balanced, "auroc": float(np.mean(aucs)) if aucs else math.nan,
            "cohen_kappa": float(cohen_kappa_score(top, predicted)) if agree else math.nan,
            "f1_weighted": (float(f1_score(top, predicted, average="weighted", zero_division=0)) if present
                            else math.nan)}


@torch.no_grad()
def collect(model: torch.nn.Module, loader: EEGLoader, cfg: FinetuneConfig, dist: Dist,
            amp_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Every rank's logits, targets and site ids of one pass over ``loader``, gathered (on every
    rank), window by window in the same order."""
    net = unwrap(model)
    was_training = net.training
    net.eval()
    logits, targets, sites = [], [], []
    try:
        for batch in loader:
            inputs = inputs_for(model, batch, dist.device)
            with torch.autocast(dist.device.type, dtype=amp_dtype, enabled=amp_dtype != torch.float32):
                out = net(**inputs)
            logits.append(out.logits.float().cpu())
            targets.append(targets_of(batch, cfg, torch.device("cpu")))
            sites.extend(batch["site_id"])
    finally:
        net.train(was_training)
    mine = (torch.cat(logits) if logits else torch.zeros(0),
            torch.cat(targets) if targets else torch.zeros(0), sites)
    parts = [p for p in dist.gather_objects(mine) if p[0].numel()] or [mine]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), [s for p in parts for s in p[2]]


def evaluate_per_site(logits: torch.Tensor, target: torch.Tensor, sites: Sequence[str], cfg: FinetuneConfig,
                      head: torch.nn.Module, prior: Sequence[float], temperature: float = 1.0
                      ) -> dict[str, dict[str, float]]:
    """:func:`evaluate` on each site's windows (against the same training prior): where a model
    fitted on several sites works and where it does not. Empty for a single site."""
    names, found = np.asarray(sites), sorted(set(sites))
    if len(found) < 2:
        return {}
    per_site = {}
    for site in found:
        keep = torch.from_numpy(names == site)
        per_site[site] = evaluate(logits[keep], target[keep], cfg, head, prior, temperature)
    return per_site


def evaluate(logits: torch.Tensor, target: torch.Tensor, cfg: FinetuneConfig, head: torch.nn.Module,
             prior: Sequence[float], temperature: float = 1.0) -> dict[str, float]:
    """Validation metrics; ``metric`` is what early stopping minimises (hms6: KL; else the loss)."""
    if cfg.task == "regression":
        loss = float(head.loss(logits, target)) if len(logits) else math.nan
        metrics = {"loss": loss, "metric": loss, "n_windows": int((~torch.isnan(target)).sum())}
        if len(prior) == 1 and len(logits):  # mean squared error of always predicting the training mean
            baseline = float(head.loss(torch.full_like(logits, prior[0]), target))
            metrics.update(baseline_loss=baseline, loss_vs_baseline=loss / baseline if baseline > 0 else math.nan,
                           r2=1 - loss / baseline if baseline > 0 else math.nan)
        return metrics
    metrics = classification_metrics(class_logits(logits, cfg), target, prior, temperature)
    metrics["loss"] = metrics["kl"] if cfg.task == "hms6" else float(
        losses.soft_cross_entropy(class_logits(logits, cfg).double() / temperature, target))
    metrics["metric"] = metrics["kl"] if cfg.task == "hms6" else metrics["loss"]
    return metrics


def confusion_of(logits: torch.Tensor, target: torch.Tensor, cfg: FinetuneConfig, split: str) -> dict[str, Any]:
    """The held-out windows' confusion matrix (rows: the target's top class), for eval.json."""
    logits = class_logits(logits, cfg)
    distribution, keep = losses.as_distribution(target, logits.shape[-1])
    matrix = confusion_matrix(distribution[keep].argmax(-1).numpy(), logits[keep].argmax(-1).numpy(),
                              logits.shape[-1])
    return {"split": split, "classes": _labels(cfg), "matrix": matrix.tolist()}


def reliability_of(logits: torch.Tensor, target: torch.Tensor, cfg: FinetuneConfig, split: str,
                   temperature: float) -> dict[str, Any]:
    """The held-out windows' reliability bins (``training.calibration``) before and, where a
    temperature was fitted, after calibration, for eval.json and calibration.png."""
    logits = class_logits(logits, cfg)
    distribution, keep = losses.as_distribution(target, logits.shape[-1])
    logits, distribution = logits[keep].double(), distribution[keep].double().numpy()
    uncalibrated = reliability_bins(logits.softmax(-1).numpy(), distribution)
    report: dict[str, Any] = {"split": split, "uncalibrated": uncalibrated}
    if temperature != 1.0:
        report["calibrated"] = reliability_bins((logits / temperature).softmax(-1).numpy(), distribution)
        report["temperature"] = temperature
    return report


def plot_reliability_of(report: dict[str, Any], cfg: FinetuneConfig, path: Path) -> None:
    """calibration.png: the held-out reliability diagram before and after temperature scaling."""
    reliability = report["reliability"]
    curves = [(f"uncalibrated (T = 1): ECE {ece_of_bins(reliability['uncalibrated']):.3f}",
               reliability["uncalibrated"])]
    if "calibrated" in reliability:
        curves.append((f"calibrated (T = {reliability['temperature']:.2f}): "
                       f"ECE {ece_of_bins(reliability['calibrated']):.3f}", reliability["calibrated"]))
    # Validation windows also fitted T: their calibrated curve is optimistic.
    split = "test windows" if reliability["split"] == "test" else "validation windows (which fitted T)"
    plot_reliability(curves, f"{cfg.task}: {split}", path)


# ------------------------------------------------------------------------------------------ run
@dataclasses.dataclass
class Stage:
    name: str           # "stage1" | "stage2"
    index: int
    min_votes: float    # training windows need at least this many votes (hms6)
    windows: int        # training windows in this stage


def stages_of(cfg: FinetuneConfig, plan: Plan) -> list[Stage]:
    first = Stage("stage1", 0, 1.0 if cfg.task == "hms6" else 0.0, plan.windows["train"])
    if cfg.two_stage_min_votes is None:
        return [first]
    return [first, Stage("stage2", 1, float(cfg.two_stage_min_votes), int(plan.stage2_windows))]


@dataclasses.dataclass(kw_only=True)
class Run(TrainState):
    """One stage's training state (``step`` counts this stage's steps); what a checkpoint holds to
    continue it."""

    cfg: FinetuneConfig
    plan: Plan
    stage: Stage
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    steps_per_epoch: int
    total_steps: int
    offset: int = 0  # steps of the stages before this one (checkpoint and log numbering)
    bad_evals: int = 0
    unfreeze: int = -1  # the applied unfreeze level (-1: none yet)
    done: bool = False  # the stage finished (all epochs, or early stopping)

    @property
    def epoch(self) -> int:
        return self.step // self.steps_per_epoch

    @property
    def global_step(self) -> int:
        """Steps over all stages: stage 2 numbers its steps after stage 1's last one."""
        return self.offset + self.step

    def state_dict(self) -> dict[str, Any]:
        """Full training state. Collective: every rank must call it (loader positions are gathered)."""
        return {**core_state(self), "stage": self.stage.index, "offset": self.offset,
                "bad_evals": self.bad_evals, "done": self.done, "plan": self.plan.to_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_core_state(self, state)
        self.offset = int(state["offset"])
        self.step = int(state["step"]) - self.offset
        self.bad_evals, self.done = int(state["bad_evals"]), bool(state["done"])


def build_run(cfg: FinetuneConfig, dist: Dist, data: str | Sequence[str], plan: Plan, stage: Stage, model: EEGFMModel,
              best_metric: float = math.inf, offset: int = 0) -> Run:
    amp_dtype = resolve_precision(cfg.precision, dist.device)
    optimizer = torch.optim.AdamW(optimizer_groups(model, cfg),
                                  lr=cfg.optim.lr, betas=cfg.optim.betas, eps=cfg.optim.eps)
    batch = cfg.loader.batch_size * cfg.optim.grad_accum_steps * dist.world_size
    steps_per_epoch = max(1, math.ceil(stage.windows / batch))
    total = cfg.epochs * steps_per_epoch
    if cfg.optim.max_steps is not None:
        total = min(total, cfg.optim.max_steps)
    optim = cfg.optim
    if optim.warmup_steps >= total:
        log.warning("optim.warmup_steps=%d is not below the %d steps of %s; warming up for %d steps",
                    optim.warmup_steps, total, stage.name, total // 10)
        optim = dataclasses.replace(optim, warmup_steps=total // 10, max_steps=None)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(optim.lr_factor, total_steps=total))
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    filters = split_filter(plan, "train", stage.min_votes)
    loader = EEGLoader(data, loader_config(cfg.loader, model.config.patch_size, filters=filters), rank=dist.rank,
                       world_size=dist.world_size, infinite=True, windows_per_file=plan.files.get("train"))
    loss_fn = make_loss(cfg, model.head, resolve_class_weights(cfg, plan))
    optimizer = dist.wrap_optimizer(optimizer, model, cfg.optim.grad_accum_steps)
    return Run(cfg=cfg, dist=dist, plan=plan, stage=stage, model=model, optimizer=optimizer, scheduler=scheduler,
               scaler=scaler, loader=loader, loss_fn=loss_fn, amp_dtype=amp_dtype, steps_per_epoch=steps_per_epoch,
               total_steps=total, offset=offset, best_metric=best_metric)


def set_trainable(run: Run) -> None:
    """Apply the unfreeze level of the current step; (re)wrap for DDP when it changes (DDP fixes
    the set of parameters it synchronises when it is built)."""
    level = len(run.cfg.unfreeze_schedule)  # stage 2 continues with everything the mode trains
    if run.stage.index == 0:
        level = unfreeze_level(run.cfg, run.step, run.steps_per_epoch)
    if level == run.unfreeze:
        return
    model = unwrap(run.model)
    apply_unfreeze(model, run.cfg, level)
    wrapped = run.dist.wrap_model(model)
    run.model = torch.compile(wrapped) if run.cfg.compile else wrapped
    if run.cfg.unfreeze_schedule and run.cfg.mode == "full":
        log.info("%s step %d: unfreeze level %d of %d, %d trainable parameters", run.stage.name, run.step, level,
                 len(run.cfg.unfreeze_schedule), adapters_lib.count_trainable(model))
    run.unfreeze = level


def train_step(run: Run, batches) -> dict[str, Any]:
    """One optimizer step over ``grad_accum_steps`` micro-batches; returns the step's metrics."""
    cfg, dist, model = run.cfg, run.dist, run.model
    accum = cfg.optim.grad_accum_steps
    model.train()
    if cfg.mode == "linear":
        unwrap(model).encoder.eval()  # a frozen encoder is a fixed feature extractor (no dropout)
    total, n_samples, min_votes = 0.0, 0, math.inf
    for micro in range(accum):
        batch = next(batches)
        # Dropout draws from a stream fixed by (seed, rank, stage, step, micro-step), seeded after
        # the loader (whose first batch draws a DataLoader seed from the global RNG): resume-exact.
        torch.manual_seed(step_seed(cfg.seed, dist.rank, run.stage.index, run.step, micro))
        inputs = inputs_for(model, batch, dist.device)
        target = targets_of(batch, cfg, dist.device)
        with dist.no_sync(model, skip=micro < accum - 1):
            with autocast(dist, run.amp_dtype):
                logits = model(**inputs).logits
            loss = run.loss_fn(logits.float(), target) / accum
            backward(loss, run.scaler)
        total += loss.detach().double()  # read when the loop logs, not here: float() would wait for the GPU
        n_samples += inputs["eeg"].shape[0]
        min_votes = min(min_votes, float(batch["n_votes"].min()))
    grad_norm = optimizer_step(model, run.optimizer, run.scheduler, run.scaler, dist, cfg.optim.grad_clip)
    run.step += 1
    run.samples += n_samples * dist.world_size
    return {"loss": total, "grad_norm": grad_norm, "lr": max(run.scheduler.get_last_lr()),
            "min_votes": min_votes, "samples": n_samples}


def save(run: Run, output: Path, is_best: bool) -> None:
    """Collective checkpoint; ``is_best`` moves the ``best`` pointer (kept out of rotation)."""
    state = run.state_dict()
    if run.dist.is_main:
        path = ckpt.save_checkpoint(output / "checkpoints", run.global_step, state, keep_last=run.cfg.keep_last,
                                    is_best=is_best)
        if is_best:
            log.info("best checkpoint so far: %s", path)
    run.dist.barrier()


def best_weights(output: Path, dist: Dist) -> dict[str, torch.Tensor] | None:
    """The model weights of the ``best`` checkpoint (rank 0 reads, every rank receives)."""
    state = None
    if dist.is_main:
        path = ckpt.best_checkpoint(output / "checkpoints")
        state = None if path is None else ckpt.load_checkpoint(path, map_location="cpu")["model"]
    return dist.broadcast_object(state)


# ------------------------------------------------------------------------------------------ loop
def train(cfg: FinetuneConfig, dist: Dist, data: str | Sequence[str], pretrained: str, output: Path,
          resume: str = "auto", record_task: str | None = None, stop_after: int | None = None) -> int:
    """Fine-tune; returns the process exit status (0 done, 143 preempted and checkpointed)."""
    try:
        return _train(cfg, dist, data, pretrained, output, resume, record_task, stop_after)
    finally:
        release_run_lock(output)  # taken once the arguments are checked (a no-op where none was)


def _train(cfg: FinetuneConfig, dist: Dist, data: str | Sequence[str], pretrained: str, output: Path,
           resume: str = "auto", record_task: str | None = None, stop_after: int | None = None) -> int:
    """The run, in ``output`` once this process holds it (``loop.claim_output``)."""
    record_task = record_task or RECORD_TASKS.get(cfg.task)
    if record_task is None:
        raise ConfigError(f"--record_task: task {cfg.task!r} needs the `task` value its windows carry "
                          f"(known: {', '.join(f'{k}={v}' for k, v in RECORD_TASKS.items())})")
    if dist.backend == "horovod" and cfg.unfreeze_schedule:
        raise ConfigError("unfreeze_schedule: Horovod registers gradient hooks once, so gradual unfreezing "
                          "needs torchrun (DDP); set unfreeze_schedule: [] for Horovod")
    configure_kernels(cfg, dist.device)
    resolve_pretrained(pretrained)  # fail before the data pass
    data = check_data(data, dist.is_main)
    claim_output(output, dist)
    start = ckpt.resolve_resume(resume, output / "checkpoints") if dist.is_main else None
    start = dist.broadcast_object(None if start is None else str(start))
    state = ckpt.load_checkpoint(start, map_location="cpu") if start is not None else None
    if state is not None:
        saved = state.get("config", {})
        check_model_unchanged(saved, cfg.to_dict(), start, MODEL_KEYS + (
            ("task", "mode", "adapter_kind", "adapter_rank") if "adapter" in (cfg.mode, saved.get("mode"))
            else ("task", "mode")))
        plan = Plan.from_dict(state["plan"])  # the split the run started with, whatever --data holds now
        check_plan_files(plan, data, start)
    else:
        found: dict[str, Any] = {}
        if dist.is_main:
            try:
                found = {"plan": plan_data(data, cfg, record_task, _patch_size(pretrained)).to_dict()}
            except (ConfigError, FileNotFoundError) as err:
                found = {"error": str(err)}
        found = dist.broadcast_object(found)  # every rank fails alike, none waits forever
        if "error" in found:
            raise ConfigError(found["error"])
        plan = Plan.from_dict(found["plan"])

    model, fresh = load_model(pretrained, cfg)
    if fresh:
        init_head(model, plan.prior, cfg.task, cfg.seed)
    configure_mode(model, cfg)
    model.to(dist.device)
    n_params, n_trainable = adapters_lib.count_parameters(model), adapters_lib.count_trainable(model)
    stages = stages_of(cfg, plan)
    if dist.is_main:
        output.mkdir(parents=True, exist_ok=True)
        (output / "run.json").write_text(json.dumps({
            "config": cfg.to_dict(), "pretrained": str(resolve_pretrained(pretrained)), "data": data_dirs(data),
            "record_task": plan.record_task, "split_group": plan.split_group,
            "split": {k: list(plan.split.of(k)) for k in SPLITS}, "windows": plan.windows,
            "class_counts": plan.class_counts, "prior": plan.prior,
            "stages": [dataclasses.asdict(s) for s in stages], "world_size": dist.world_size,
            "backend": dist.backend, "device": str(dist.device), "torch": torch.__version__,
            "parameters": n_params, "trainable_parameters": n_trainable,
        }, indent=2, sort_keys=True, default=str))
    log.info("task %s, mode %s: %d of %d parameters trainable (%.2f%%); windows %s", cfg.task, cfg.mode,
             n_trainable, n_params, 100.0 * n_trainable / n_params, plan.windows)
    tracker = Tracker(cfg.wandb.project, output, cfg.to_dict(), mode=cfg.wandb.mode, rank=dist.rank,
                      run_name=cfg.wandb.run_name)
    metrics_file = open(output / "metrics.jsonl", "a", encoding="utf-8") if dist.is_main else None
    val_filter = split_filter(plan, "val")
    val_loader = EEGLoader(data, loader_config(cfg.loader, model.config.patch_size, filters=val_filter, train=False),
                           rank=dist.rank, world_size=dist.world_size, infinite=False,
                           windows_per_file=plan.files.get("val"))
    amp_dtype = resolve_precision(cfg.precision, dist.device)

    def record(line: dict[str, Any], step: int) -> None:
        if dist.is_main:
            tracker.log({k: v for k, v in line.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
                        step=step)
            metrics_file.write(json.dumps({"step": step, **line}, sort_keys=True) + "\n")
            metrics_file.flush()

    start_stage = None if state is None else int(state["stage"])
    status, steps_here, best, offset = 0, 0, math.inf, 0
    best_eval = None  # validation logits of the best weights (this process's evaluations only)
    stop_vote = StopVote(dist)
    with ckpt.PreemptionHandler() as preemption, tracker, logging_redirect_tqdm():  # log lines above the bar
        for stage in stages:
            if start_stage is not None and stage.index < start_stage:
                continue
            if stage.index > 0 and (start_stage is None or stage.index > start_stage):
                weights = best_weights(output, dist)  # stage 2 starts from stage 1's best
                if weights is not None:
                    unwrap(model).load_state_dict(weights)
            run = build_run(cfg, dist, data, plan, stage, unwrap(model), best_metric=best, offset=offset)
            if state is not None and int(state["stage"]) == stage.index:
                run.load_state_dict(state)
                log.info("resumed %s at step %d (epoch %d)", stage.name, run.step, run.epoch)
                state = None
            set_trainable(run)
            batches = TimedBatches(iter(run.loader))
            progress = tqdm(total=run.total_steps, initial=run.step, desc=f"finetune {stage.name}", unit="step",
                            disable=not dist.is_main, dynamic_ncols=True, file=sys.stderr)
            window, tic, stop = {"loss": 0.0, "n": 0, "min_votes": math.inf, "samples": 0}, time.perf_counter(), False
            while not run.done and run.step < run.total_steps:
                set_trainable(run)
                result = train_step(run, batches)
                steps_here += 1
                window["loss"] += result["loss"]
                window["n"] += 1
                window["samples"] += result["samples"]
                window["min_votes"] = min(window["min_votes"], result["min_votes"])
                progress.update(1)
                if run.step % cfg.log_every == 0 or run.step == run.total_steps:
                    metrics = dist.mean({"loss": window["loss"] / window["n"], "grad_norm": result["grad_norm"]})
                    metrics["min_votes"] = -dist.max({"m": -window["min_votes"]})["m"]
                    elapsed = time.perf_counter() - tic
                    metrics["samples_per_s"] = window["samples"] * dist.world_size / elapsed
                    metrics.update(lr=result["lr"], epoch=run.step / run.steps_per_epoch, stage=stage.index + 1,
                                   **dist.max({**memory_stats(dist.device),
                                               "data_wait_fraction": batches.waited() / elapsed}))
                    record({f"train/{k}" if k not in ("epoch", "stage", "lr") else k: v for k, v in metrics.items()},
                           run.global_step)
                    progress.set_postfix(loss=f"{metrics['loss']:.4f}", lr=f"{metrics['lr']:.2e}",
                                         data=f"{metrics['data_wait_fraction']:.0%}")
                    if dist.is_main and (starved := batches.starved(metrics["data_wait_fraction"],
                                                                    run.loader.config.num_workers)):
                        log.warning(starved)
                    window, tic = {"loss": 0.0, "n": 0, "min_votes": math.inf, "samples": 0}, time.perf_counter()
                every = cfg.eval_every or run.steps_per_epoch
                evaluate_now = run.step % every == 0 or run.step == run.total_steps
                is_best = False
                if evaluate_now:
                    logits, target, sites = collect(run.model, val_loader, cfg, dist, amp_dtype)
                    val = evaluate(logits, target, cfg, unwrap(run.model).head, plan.prior)
                    is_best = val["metric"] < run.best_metric
                    best_eval = (logits, target, sites) if is_best else best_eval
                    run.best_metric = min(run.best_metric, val["metric"])
                    run.bad_evals = 0 if is_best else run.bad_evals + 1
                    patience = cfg.early_stopping_patience
                    if run.step >= run.total_steps or (patience is not None and run.bad_evals >= patience):
                        run.done = True
                    record({**{f"val/{k}": v for k, v in val.items()}, "epoch": run.step / run.steps_per_epoch,
                            "stage": stage.index + 1, "best": is_best}, run.global_step)
                    log.info("%s step %d (epoch %.2f): val %s %.4f (class-prior baseline %.4f)%s", stage.name,
                             run.step, run.step / run.steps_per_epoch, "kl" if cfg.task == "hms6" else "loss",
                             val["metric"], val.get("baseline_kl", math.nan), ", best so far" if is_best else "")
                    if run.done and run.step < run.total_steps:
                        log.info("%s: early stopping after %d evaluations without improvement", stage.name,
                                 run.bad_evals)
                stop = stop_vote.vote(preemption.requested, stop_after is not None and steps_here >= stop_after)
                if evaluate_now or run.step % cfg.save_every == 0 or stop:
                    save(run, output, is_best)
                if stop and not run.done:
                    break
            progress.close()
            best, offset = run.best_metric, run.global_step
            if stop and not run.done:
                log.warning("stopping in %s at step %d (%s); resume with --resume auto", stage.name, run.step,
                            stop_vote.reason)
                status = PREEMPTED_EXIT_CODE
                break
        stop_vote.close()
        if status == 0:
            check_replicas(run, output)
            finish(run, cfg, dist, data, plan, output, tracker, amp_dtype, val_loader, best_eval)
    if metrics_file is not None:
        metrics_file.close()
        write_curves(output, f"fine-tuning: {cfg.task} ({cfg.mode})")
    dist.barrier()
    return status


def finish(run: Run, cfg: FinetuneConfig, dist: Dist, data: str | Sequence[str], plan: Plan, output: Path,
           tracker: Tracker, amp_dtype: torch.dtype, val_loader: EEGLoader,
           best_eval: tuple[torch.Tensor, torch.Tensor, list[str]] | None = None) -> None:
    """Reload the best weights, calibrate on validation, evaluate, save the model and eval.json.

    ``best_eval``: the validation logits, targets and sites this process computed with the best
    weights (None after a resume: they are computed again)."""
    model = unwrap(run.model)
    weights = best_weights(output, dist)
    if weights is not None:
        model.load_state_dict(weights)
    logits, target, sites = best_eval if best_eval is not None and weights is not None else \
        collect(model, val_loader, cfg, dist, amp_dtype)
    report: dict[str, Any] = {
        "task": cfg.task, "record_task": plan.record_task, "metric": "kl" if cfg.task == "hms6" else "loss",
        "best_val_metric": run.best_metric, "windows": plan.windows, "split_group": plan.split_group,
        "groups": {k: len(plan.split.of(k)) for k in SPLITS}, "prior": plan.prior}
    temperature = 1.0
    if cfg.temperature_scaling:
        distribution, keep = losses.as_distribution(target, class_logits(logits, cfg).shape[-1])
        temperature, before, after = fit_temperature(class_logits(logits, cfg)[keep], distribution[keep])
        report["calibration"] = {"temperature": temperature, "val_kl_before": before, "val_kl_after": after}
        # KL to a one-hot target is the cross-entropy: the loss that eegmat-style tasks report.
        log.info("temperature scaling: T = %.3f, validation %s %.4f -> %.4f", temperature,
                 "KL" if cfg.task == "hms6" else "cross-entropy", before, after)
        if temperature >= TEMPERATURE_RANGE[1] * 0.999:
            log.warning("temperature scaling: T reached its upper bound %g, so the calibrated model predicts "
                        "about the same distribution for every window: on these %d validation windows its "
                        "logits carry no information a uniform guess lacks", TEMPERATURE_RANGE[1], int(keep.sum()))
    report["val"] = evaluate(logits, target, cfg, model.head, plan.prior)
    if cfg.temperature_scaling:
        report["val_calibrated"] = evaluate(logits, target, cfg, model.head, plan.prior, temperature)
    # Per site, as "val" (before calibration, which these windows were used for) and "test" (after).
    if per_site := evaluate_per_site(logits, target, sites, cfg, model.head, plan.prior):
        report["val_per_site"] = per_site
    if plan.split.test:
        test_config = loader_config(cfg.loader, model.config.patch_size, filters=split_filter(plan, "test"),
                                    train=False)
        test_loader = EEGLoader(data, test_config, rank=dist.rank, world_size=dist.world_size, infinite=False,
                                windows_per_file=plan.files.get("test"))
        test_logits, test_target, test_sites = collect(model, test_loader, cfg, dist, amp_dtype)
        report["test"] = evaluate(test_logits, test_target, cfg, model.head, plan.prior, temperature)
        if per_site := evaluate_per_site(test_logits, test_target, test_sites, cfg, model.head, plan.prior,
                                         temperature):
            report["test_per_site"] = per_site
    model.config.temperature = float(temperature)
    if cfg.task != "regression":
        held = "test" if plan.split.test else "val"
        held_logits, held_target = (test_logits, test_target) if plan.split.test else (logits, target)
        report["confusion"] = confusion_of(held_logits, held_target, cfg, held)
        report["reliability"] = reliability_of(held_logits, held_target, cfg, held, temperature)
    if dist.is_main:
        with quiet_transformers():
            model.save_pretrained(output / "model")
        save_preprocess_spec(data_dirs(data), output / "model")
        (output / "eval.json").write_text(json.dumps(report, indent=2, sort_keys=True))
        if "confusion" in report:
            confusion = report["confusion"]
            plot_confusion(np.array(confusion["matrix"]), confusion["classes"],
                           f"{cfg.task}: {confusion['split']} windows (true class by row)",
                           output / "confusion.png")
        if "reliability" in report:
            plot_reliability_of(report, cfg, output / "calibration.png")
        held_sites = "test_per_site" if "test" in report else "val_per_site"
        if held_sites in report:  # two sites or more
            held_name = "test" if "test" in report else "validation"
            plot_per_site(report[held_sites], f"{cfg.task}: {held_name} windows by site", output / "sites.png")
        summary = {f"{split}/{k}": v for split in ("val", "val_calibrated", "test")
                   for k, v in report.get(split, {}).items()}
        summary.update({f"{split}/{site}/{k}": v for split in ("val_per_site", "test_per_site")
                        for site, metrics in report.get(split, {}).items() for k, v in metrics.items()})
        tracker.summary({**summary, "temperature": temperature})
        held_out = report.get("test", report["val"])

        def scores(m: dict[str, float]) -> tuple[float, float]:  # the held-out metric and its baseline's
            return m.get("kl", m.get("loss")), m.get("baseline_kl", m.get("baseline_loss", math.nan))

        ranks = "".join(f", {name} {held_out[key]:.3f}" for key, name in (
            ("balanced_accuracy", "balanced accuracy"), ("auroc", "AUROC"), ("cohen_kappa", "Cohen's kappa"),
            ("f1_weighted", "weighted F1"), ("r2", "R^2")) if key in held_out)
        value, baseline = scores(held_out)
        # Without a test split the numbers are the validation subjects', who also chose the
        # checkpoint (and the temperature): held out from training, yet an optimistic estimate.
        split = ("the corpus's eval split" if cfg.corpus_split else "the test site" + "s" * (len(cfg.test_sites) > 1)
                 if cfg.test_sites else "held-out test") if "test" in report else "validation"
        log.info("fine-tuned model saved to %s; %s %s %.4f vs %s baseline %.4f%s", output / "model", split,
                 report["metric"], value, "training-mean" if cfg.task == "regression" else "class-prior", baseline,
                 ranks)
        if "test" not in report:
            # corpus_split takes its test subjects from the corpus (test_fraction must stay 0)
            remedy = ("the data holds none of the corpus's eval split (TUH: edf/eval/; eegmat: subjects 32-35): "
                      "preprocess its eval recordings with the others for a test" if cfg.corpus_split else
                      f"--set test_fraction=0.2 holds out {cfg.split_group}s that only the final model sees")
            log.info("these are the validation %ss' numbers; they also chose the checkpoint%s, so they flatter the "
                     "model: %s", cfg.split_group, " and the temperature" if cfg.temperature_scaling else "", remedy)
        if sites := report.get("test_per_site" if "test" in report else "val_per_site", {}):
            log.info("%s %s per site: %s", split, report["metric"], "; ".join(
                "{} {:.3f} (baseline {:.3f}), ".format(site, *scores(m)) + f"{m['n_windows']} windows"
                for site, m in sites.items()))


# ------------------------------------------------------------------------------------------ CLI
def build_parser() -> argparse.ArgumentParser:
    from eegfm.training.config import TASK_HEADS

    parser = argparse.ArgumentParser(
        prog="python -m eegfm.training.finetune",
        description="Fine-tune a pretrained eegfm encoder on a labeled task (HMS six-class expert votes, "
        "eegmat rest/task, ...): linear probe, adapters or full fine-tuning with layer-wise lr decay and "
        "gradual unfreezing; subject-grouped validation split, early stopping, temperature scaling; "
        "writes a Hugging Face model folder and eval.json. Run it under torchrun for DDP.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_run_arguments(parser, kind="finetune")
    parser.add_argument("--pretrained", required=True, type=user_path,
                        help="Hugging Face model folder with config.json: the model/ folder of training.pretrain "
                        "(or its run folder; model-best/ for the checkpoint with the lowest validation loss, "
                        "where pretraining wrote one), or an earlier fine-tuned model")
    parser.add_argument("--output", required=True, type=user_file_path,
                        help="run folder: model/ (Hugging Face), eval.json, confusion.png (classification), "
                        "sites.png (held-out metrics by site), metrics.jsonl, curves.png (learning curves), run.json, "
                        "checkpoints/, wandb/")
    parser.add_argument("--task", default=None, choices=sorted(TASK_HEADS),
                        help="label space and head (hms6: KL to expert-vote distributions; eegmat: rest vs "
                        "mental arithmetic, binary head; tuab: TUH Abnormal's normal vs abnormal recordings, "
                        "tuep: TUH Epilepsy's patients without and with epilepsy, tusz, chbmit, siena: TUH "
                        "Seizure's, CHB-MIT's, Siena's background vs seizure windows, binary heads; tuev: TUH EEG "
                        "Events' six event classes (spsw, gped, pled, eyem, artf, bckg), tuar: TUH Artifact's "
                        "artifact kinds (eyem, chew, shiv, elec, musc and pairs), eegmmi: PhysioNet motor "
                        "imagery trials (left fist, right fist, both fists, both feet), multiclass heads; "
                        "binary/multiclass/regression: generic heads on the windows' `label`, with --record_task); "
                        "default: the config's task")
    parser.add_argument("--mode", default=None, choices=["linear", "adapter", "full"],
                        help="linear probe (frozen encoder), adapters (adapter_kind/adapter_rank) or full "
                        "fine-tuning; default: the config's mode")
    parser.add_argument("--record_task", default=None,
                        help="the `task` value of the windows to train on (default: hms6 -> hms6, eegmat -> "
                        "eegmat_rest_task, tuab -> tuab_abnormal, tusz -> tusz_seizure, tuev -> tuev_event, "
                        "tuar -> tuar_artifact, "
                        "chbmit -> chbmit_seizure, eegmmi -> eegmmi_imagery (its executed movements: "
                        "eegmmi_movement), tuep -> tuep_epilepsy, siena -> siena_seizure; required for "
                        "binary/multiclass/regression)")
    return parser


def config_from_args(args: argparse.Namespace) -> FinetuneConfig:
    """The run's config: ``--config`` with ``--set``, then ``--task`` and ``--mode`` on top."""
    overrides = run_overrides(args)
    overrides += [f"task={args.task}"] if args.task else []
    overrides += [f"mode={args.mode}"] if args.mode else []
    if args.task == "regression" and not any(o.partition("=")[0].strip() == "temperature_scaling" for o in overrides):
        # The presets calibrate classifiers; a regression head has no probabilities to calibrate.
        overrides.append("temperature_scaling=false")
    return load_config(args.config, "finetune", overrides)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        resolve_pretrained(args.pretrained)
    except ConfigError as err:
        print(f"finetune: {err}", file=sys.stderr)
        return 2

    def run(dist: Dist) -> int:
        setup_logging("INFO" if dist.is_main else "WARNING")  # split, epochs, calibration: rank 0 reports
        return train(cfg, dist, args.data, args.pretrained, args.output, args.resume,
                     record_task=args.record_task, stop_after=args.stop_after)

    return launch("finetune", args.backend or cfg.backend, args.device, run)


if __name__ == "__main__":
    sys.exit(main())
