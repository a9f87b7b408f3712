"""Configuration of pretraining and fine-tuning runs: validated dataclasses plus YAML presets.

The classes follow ``pipelines.config.Config`` (validate in ``__post_init__``, load from a dict or
YAML, errors that name the field, the allowed values and what was received)::

    PretrainConfig  model preset + overrides, loader, optim, precision, cadence, W&B, backend
    FinetuneConfig  the same run settings plus task, mode (linear/adapter/full), loss, splits ...
    OptimConfig     AdamW + linear warmup + cosine decay to lr * min_lr_ratio (``lr_factor``)
    LoaderConfig    batch size / token budget, workers, shuffle buffer, seed, augment (as-is)
    WandbConfig     project, mode (offline | online | disabled), run name

Presets live in ``training/configs/<name>.yaml`` (``cpu-tiny``, ``base``, ``large-gpu``). One file
holds both kinds of run, each in its own section, so a preset is one name for the whole
pretrain-then-fine-tune recipe::

    pretrain: {model: tiny, optim: {lr: 1.0e-3, max_steps: 200}, ...}
    finetune: {model: tiny, task: hms6, ...}

A file without ``pretrain:``/``finetune:`` keys is read as one section of the kind asked for, so
a user's own file can hold just one. :func:`load_config` applies command-line overrides
(``optim.lr=3e-4``, values parsed as YAML) and rejects unknown keys, listing the valid ones.

What is not checked here: whether ``fp16`` or ``nccl`` are usable depends on the machine the run
lands on, so :func:`resolve_precision` and ``training.distributed.init_distributed`` check them
at start-up.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from eegfm.core.config import Config, ConfigError, check_option, check_range
from eegfm.core.tasks import FINETUNE_TASKS, TASK_CLASSES
from eegfm.pipelines.schema import CORPUS_SPLITS

if TYPE_CHECKING:
    import torch

    from eegfm.model.config import EEGFMConfig

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
KINDS = ("pretrain", "finetune")
PRECISIONS = ("fp32", "bf16", "fp16")
BACKENDS = ("auto", "gloo", "nccl", "horovod")
WANDB_MODES = ("offline", "online", "disabled")
FINETUNE_MODES = ("linear", "adapter", "full")
LOSSES = ("kl", "ce", "focal")
SPLIT_GROUPS = ("subject", "site")
UNFREEZE_UNITS = ("epoch", "step")
# Fine-tuning task -> registered head (model.heads). The data sets' tasks take the classes the
# pipeline writes for them (eegfm.core.tasks).
TASK_HEADS = {"hms6": "hms6", "eegmat": "binary", "tuab": "binary", "tuep": "binary", "tusz": "binary",
              "chbmit": "binary", "siena": "binary", "tuev": "multiclass", "tuar": "multiclass",
              "eegmmi": "multiclass", "binary": "binary", "multiclass": "multiclass", "regression": "regression"}
_TASK_LABELS = {task: TASK_CLASSES[record_task] for task, record_task in FINETUNE_TASKS.items() if task != "hms6"}
# EEGFMConfig fields that the run config sets itself: overriding them would be ambiguous.
_MODEL_FIELDS_SET_BY_RUN = {
    "preset": "model", "head": "task", "gradient_checkpointing": "activation_checkpointing",
    "adapter_kind": "adapter_kind", "adapter_rank": "adapter_rank",
    "transformers_version": None, "architectures": None,
}


# --------------------------------------------------------------------------------------------
# Small checks (pipelines.config has check_option and check_range)
# --------------------------------------------------------------------------------------------


def _int(name: str, value: Any, low: int, high: int | None = None) -> int:
    """An integer in [low, high]; an integral float (YAML ``1e5``) is accepted and converted."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name}: expected an integer; got {value!r}")
    if value < low or (high is not None and value > high):
        raise ConfigError(f"{name}: expected an integer in [{low}, {'inf' if high is None else high}]; got {value!r}")
    return value


def _optional_int(name: str, value: Any, low: int) -> int | None:
    return None if value is None else _int(name, value, low)


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name}: expected true or false; got {value!r}")
    return value


def _float(name: str, value: Any, low: float | None = None, high: float | None = None, **kw: bool) -> float:
    check_range(name, value, low, high, **kw)
    if math.isnan(value):
        raise ConfigError(f"{name}: expected a number; got nan")
    return float(value)


def _mapping(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"{name}: expected a mapping with string keys; got {value!r}")
    return dict(value)


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class OptimConfig(Config):
    """AdamW with linear warmup then cosine decay to ``lr * min_lr_ratio`` at ``max_steps``.

    ``max_steps`` is required for pretraining; for fine-tuning it may stay None and the schedule
    then spans ``epochs`` (the loop passes the total to :meth:`lr_factor`). ``grad_clip`` 0 turns
    clipping off. ``layer_decay`` < 1 gives layer-wise learning-rate decay (LLRD) in fine-tuning:
    layer k of n from the top trains at ``lr * layer_decay**k``.
    """

    lr: float = 5.0e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1.0e-8
    warmup_steps: int = 0
    max_steps: int | None = None
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    grad_accum_steps: int = 1
    layer_decay: float = 1.0

    def validate(self) -> None:
        self.lr = _float("optim.lr", self.lr, 0, 10, low_inclusive=False)
        self.weight_decay = _float("optim.weight_decay", self.weight_decay, 0, 10)
        if not isinstance(self.betas, (tuple, list)) or len(self.betas) != 2:
            raise ConfigError(f"optim.betas: expected two numbers in [0, 1); got {self.betas!r}")
        self.betas = tuple(_float("optim.betas", b, 0, 1, high_inclusive=False) for b in self.betas)
        self.eps = _float("optim.eps", self.eps, 0, 1, low_inclusive=False)
        self.warmup_steps = _int("optim.warmup_steps", self.warmup_steps, 0)
        self.max_steps = _optional_int("optim.max_steps", self.max_steps, 1)
        if self.max_steps is not None and self.warmup_steps >= self.max_steps:
            raise ConfigError(f"optim.warmup_steps: expected fewer than max_steps={self.max_steps}; "
                              f"got {self.warmup_steps} (for a short run lower it too: "
                              f"--set optim.warmup_steps={self.max_steps // 10})")
        self.min_lr_ratio = _float("optim.min_lr_ratio", self.min_lr_ratio, 0, 1)
        self.grad_clip = _float("optim.grad_clip", self.grad_clip, 0)
        self.grad_accum_steps = _int("optim.grad_accum_steps", self.grad_accum_steps, 1, 4096)
        self.layer_decay = _float("optim.layer_decay", self.layer_decay, 0, 1, low_inclusive=False)

    def lr_factor(self, step: int, total_steps: int | None = None) -> float:
        """Multiplier of ``lr`` at optimizer step ``step`` (0-based), for ``LambdaLR``."""
        total = self.max_steps if total_steps is None else total_steps
        if total is None:
            raise ConfigError("optim.max_steps: the cosine schedule needs a length; set max_steps "
                              "or pass total_steps")
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, total - self.warmup_steps))
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclasses.dataclass
class LoaderConfig(Config):
    """Settings handed to ``training.data``; ``augment`` is passed through for it to validate.

    ``token_budget`` (optional) caps the patches per batch (a window of ``n_times`` samples has
    ``ceil(n_times / patch_size)``, whatever its channel count) for variable-length windows;
    ``batch_size`` is then the maximum number of windows. Each shuffle-buffer slot holds one raw
    Example (about 0.1 MB for 10 s, 0.5 MB for 50 s windows) per loader worker; fine-tuning,
    which counts its windows first, grows the buffer to a worker's whole epoch where that fits
    in ``full_shuffle_mb`` MiB (0: never), so each epoch is a uniform shuffle. ``eeg_dtype``
    ``float16`` (the stored precision, exact) hands the model float16 batches, which it casts
    on its device: half the bytes through workers, pinned memory and the host-to-GPU copy, for
    GPU runs; ``float32`` converts in the loader workers, for CPU runs. ``num_workers: auto``
    (the GPU presets) sizes the workers to the machine (``training.data.auto_num_workers``).
    ``drop_last`` drops each loader worker's incomplete batch at the end of its epoch (training
    loaders only; evaluation sees every window): with ``torch.compile`` every batch then has the
    same shape, so no partial batch recompiles the step with a dynamic batch dimension.
    """

    batch_size: int = 8
    token_budget: int | None = None
    num_workers: int | str = 0
    shuffle_buffer: int = 1000
    full_shuffle_mb: float = 1024.0
    seed: int = 0
    augment: dict[str, Any] = dataclasses.field(default_factory=dict)
    eeg_dtype: str = "float32"
    drop_last: bool = False

    def validate(self) -> None:
        check_option("loader.eeg_dtype", self.eeg_dtype, ("float32", "float16"))
        self.batch_size = _int("loader.batch_size", self.batch_size, 1, 1 << 20)
        self.token_budget = _optional_int("loader.token_budget", self.token_budget, 1)
        if self.num_workers != "auto":
            try:
                self.num_workers = _int("loader.num_workers", self.num_workers, 0, 1024)
            except ConfigError:
                raise ConfigError(f"loader.num_workers: expected an integer in [0, 1024] or 'auto'; "
                                  f"got {self.num_workers!r}") from None
        self.shuffle_buffer = _int("loader.shuffle_buffer", self.shuffle_buffer, 0)
        self.full_shuffle_mb = _float("loader.full_shuffle_mb", self.full_shuffle_mb, 0.0)
        self.seed = _int("loader.seed", self.seed, 0, 2**63 - 1)
        self.augment = _mapping("loader.augment", self.augment)
        self.drop_last = _bool("loader.drop_last", self.drop_last)


@dataclasses.dataclass
class WandbConfig(Config):
    project: str = "eegfm"
    mode: str = "offline"
    run_name: str | None = None

    def validate(self) -> None:
        if not isinstance(self.project, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]{1,128}", self.project):
            raise ConfigError(f"wandb.project: expected 1-128 letters, digits, '_', '.' or '-'; got {self.project!r}")
        check_option("wandb.mode", self.mode, WANDB_MODES)
        if self.run_name is not None and not isinstance(self.run_name, str):
            raise ConfigError(f"wandb.run_name: expected a string or null; got {self.run_name!r}")


# --------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class RunConfig(Config):
    """What every training run has: the model, data, optimizer, numerics, cadence and logging.

    ``eval_every``/``save_every`` count optimizer steps; ``eval_every`` None means the loop's
    default (pretraining: at each checkpoint, when it validates; fine-tuning: every epoch).
    ``deterministic`` asks torch for deterministic kernels (slower). ``tf32`` lets CUDA float32
    matrix products (the InfoNCE logits; every product of an fp32 run) use TF32 tensor cores:
    inputs keep 10 mantissa bits, a cosine of unit vectors moves by at most ~2e-4 (bfloat16:
    ~1e-3); no effect on the CPU.
    ``seed`` seeds model initialisation and masking; the data order has its own ``loader.seed``.
    """

    model: str = "tiny"
    model_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    seed: int = 0
    loader: LoaderConfig = dataclasses.field(default_factory=LoaderConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    precision: str = "fp32"
    activation_checkpointing: bool = False
    compile: bool = False
    deterministic: bool = False
    tf32: bool = False
    log_every: int = 10
    eval_every: int | None = None
    save_every: int = 1000
    keep_last: int = 3
    wandb: WandbConfig = dataclasses.field(default_factory=WandbConfig)
    backend: str = "auto"

    def validate(self) -> None:
        from eegfm.model.config import list_presets

        check_option("model", self.model, list_presets())
        self.model_overrides = _mapping("model_overrides", self.model_overrides)
        self.seed = _int("seed", self.seed, 0, 2**63 - 1)
        for name, section in (("loader", LoaderConfig), ("optim", OptimConfig), ("wandb", WandbConfig)):
            if not isinstance(getattr(self, name), section):
                raise ConfigError(f"{name}: expected a mapping of {section.__name__} fields; got {getattr(self, name)!r}")
        check_option("precision", self.precision, PRECISIONS)
        for name in ("activation_checkpointing", "compile", "deterministic", "tf32"):
            _bool(name, getattr(self, name))
        self.log_every = _int("log_every", self.log_every, 1)
        self.eval_every = _optional_int("eval_every", self.eval_every, 1)
        self.save_every = _int("save_every", self.save_every, 1)
        self.keep_last = _int("keep_last", self.keep_last, 1)
        check_option("backend", self.backend, BACKENDS)
        self.model_config()  # the model part must build: errors surface at load time

    def _model_fields(self) -> dict[str, Any]:
        """Validated ``model_overrides`` (unknown or run-owned EEGFMConfig fields are errors)."""
        from eegfm.model.config import EEGFMConfig

        valid = {f.name for f in dataclasses.fields(EEGFMConfig)} - set(_MODEL_FIELDS_SET_BY_RUN)
        for key in self.model_overrides:
            if key in _MODEL_FIELDS_SET_BY_RUN:
                owner = _MODEL_FIELDS_SET_BY_RUN[key]
                hint = f"set {owner!r} in the run config instead" if owner else "it is not a model setting"
                raise ConfigError(f"model_overrides.{key}: cannot be overridden here; {hint}")
            if key not in valid:
                raise ConfigError(f"model_overrides: unknown field {key!r}; allowed: {', '.join(sorted(valid))}")
        fields = dict(self.model_overrides)
        if isinstance(fields.get("id2label"), (list, tuple)):
            fields["id2label"] = dict(enumerate(fields["id2label"]))
        return fields

    def _build_model_config(self, **fields: Any) -> EEGFMConfig:
        from eegfm.model.config import ConfigError as ModelConfigError
        from eegfm.model.config import EEGFMConfig

        try:
            return EEGFMConfig.from_preset(self.model, **fields)
        except ModelConfigError as err:
            raise ConfigError(f"model_overrides: {err}") from err

    def model_config(self) -> EEGFMConfig:
        """The validated ``EEGFMConfig`` of this run (preset + overrides + run-owned fields)."""
        return self._build_model_config(gradient_checkpointing=self.activation_checkpointing,
                                        **self._model_fields())


@dataclasses.dataclass
class PretrainConfig(RunConfig):
    """A self-supervised pretraining run; ``optim.max_steps`` is its length.

    val_fraction / split_group: the fraction of subjects (or sites) held out of training; the
        pretraining losses on their windows are the validation loss, which picks the ``best``
        checkpoint. 0 trains on everything (``best`` then follows the training loss). Data
        with a single subject (site) trains on everything, with a warning.
    val_windows: the held-out windows rank 0 evaluates (the first ones in file order, whole batches,
        kept in memory after the first pass: about 0.1 MB each for 10 s), the same every time.
    Validation runs at step 0 (the initial weights), at every ``save_every`` checkpoint and
    every ``eval_every`` steps.
    exclude_corpus_splits: windows of these corpus splits (``corpus_split``: ``train``, ``dev``,
        ``eval``, as the TUH corpora split their recordings) are neither trained nor validated on.
        The default leaves out ``eval``: a benchmark's test recordings must not shape the
        encoder that is later fine-tuned and tested on them. ``[]`` pretrains on everything.
    """

    val_fraction: float = 0.0
    split_group: str = "subject"
    val_windows: int = 512
    exclude_corpus_splits: list[str] = dataclasses.field(default_factory=lambda: ["eval"])

    def validate(self) -> None:
        super().validate()
        if self.optim.max_steps is None:
            raise ConfigError("optim.max_steps: expected an integer >= 1 for pretraining; got None")
        self.val_fraction = _float("val_fraction", self.val_fraction, 0, 1, high_inclusive=False)
        check_option("split_group", self.split_group, SPLIT_GROUPS)
        self.val_windows = _int("val_windows", self.val_windows, 1)
        splits = self.exclude_corpus_splits
        if isinstance(splits, str) or not isinstance(splits, Sequence):
            raise ConfigError(f"exclude_corpus_splits: expected a list of corpus splits "
                              f"({', '.join(CORPUS_SPLITS[1:])}); got {splits!r}")
        for split in splits:
            check_option("exclude_corpus_splits", split, CORPUS_SPLITS[1:])
        self.exclude_corpus_splits = sorted(set(splits))


@dataclasses.dataclass
class FinetuneConfig(RunConfig):
    """A supervised fine-tuning run of a pretrained encoder.

    task: label space (``TASK_HEADS`` maps it to a registered head; eegmat = rest vs task; tuab =
        normal vs abnormal; tusz, chbmit, siena = background vs seizure; tuev = spsw, gped, pled, eyem, artf, bckg;
        tuar = TUH's artifact kinds (eyem, chew, shiv, elec, musc and the pairs marked together);
        eegmmi = left fist, right fist, both fists, both feet; tuep = no epilepsy vs epilepsy).
    mode: ``linear`` (frozen encoder, head only), ``adapter`` (``adapter_kind`` adapters of
        ``adapter_rank`` plus head) or ``full``.
    loss: None uses the head's own loss (hms6: KL to the vote distribution, binary: BCE,
        multiclass: cross-entropy, regression: MSE); ``kl`` (hms6 only), ``ce`` or ``focal``
        (``focal_gamma``) for classification. label_smoothing applies to ce/focal.
    class_weights: ``none``, ``balanced`` (inverse training frequency) or one weight per class.
    unfreeze_schedule: gradual unfreezing in ``full`` mode: the epochs (or steps, per
        ``unfreeze_unit``) at which the next deeper group of layers is unfrozen, top-down,
        starting from the head alone; empty trains everything from the start.
    two_stage_min_votes: hms6 only: a second stage trains on windows with at least this many
        expert votes (the cleaner labels); None trains one stage.
    early_stopping_patience: evaluations without improvement before stopping; None never stops.
    val_fraction / split_group: validation split by subject (no subject in both) or by site.
    test_fraction: a third split of subjects (sites) held out from training and validation,
        evaluated once with the final model; 0 reports on the validation split only.
    corpus_split: keep to the corpus's own split (the windows' ``corpus_split``: TUAB, TUSZ,
        TUEV by folder, eegmat by subject), as their published benchmarks do: its eval
        recordings are the test split, its dev recordings validation (without dev,
        ``val_fraction`` of its training subjects); the training split is the rest of its train
        recordings. Needs split_group subject and test_fraction 0.
    test_sites: site pseudonyms held out as the test split (leave-one-site-out:
        ``evaluation.loso`` names one at a time); the other sites' subjects (sites) split into
        training and validation by ``val_fraction``. Needs test_fraction 0 and corpus_split false.
    temperature_scaling: fit a softmax temperature on the validation split after training.
    epochs: passes over the training split; ``optim.max_steps``, if set, stops earlier.
    """

    task: str = "hms6"
    mode: str = "full"
    adapter_kind: str = "lora"
    adapter_rank: int = 8
    loss: str | None = None
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0
    class_weights: str | list[float] = "none"
    unfreeze_schedule: list[int] = dataclasses.field(default_factory=list)
    unfreeze_unit: str = "epoch"
    two_stage_min_votes: int | None = None
    early_stopping_patience: int | None = None
    val_fraction: float = 0.15
    split_group: str = "subject"
    test_fraction: float = 0.0
    corpus_split: bool = False
    test_sites: list[str] = dataclasses.field(default_factory=list)
    temperature_scaling: bool = False
    epochs: int = 10

    def validate(self) -> None:
        from eegfm.model.config import ADAPTER_KINDS
        from eegfm.model.heads import list_heads

        check_option("task", self.task, tuple(TASK_HEADS))
        if TASK_HEADS[self.task] not in list_heads():  # the registry is the source of truth
            raise ConfigError(f"task: head {TASK_HEADS[self.task]!r} is not registered "
                              f"(registered: {', '.join(list_heads())})")
        if self.task == "multiclass" and "id2label" not in self.model_overrides:
            # Else the model's default label space (the six HMS classes) would size the head.
            raise ConfigError("model_overrides.id2label: task 'multiclass' takes its classes from it; expected the "
                              "class names by label, e.g. --set 'model_overrides.id2label={0: rest, 1: task}'")
        check_option("mode", self.mode, FINETUNE_MODES)
        check_option("adapter_kind", self.adapter_kind, ADAPTER_KINDS)
        self.adapter_rank = _int("adapter_rank", self.adapter_rank, 1, 4096)
        regression = self.task == "regression"
        if self.loss is not None:
            check_option("loss", self.loss, LOSSES)
            if regression:
                raise ConfigError(f"loss: task 'regression' uses mean squared error; expected None; got {self.loss!r}")
            if self.loss == "kl" and self.task != "hms6":
                raise ConfigError(f"loss: 'kl' needs vote distributions (task 'hms6'); got task {self.task!r}")
        self.label_smoothing = _float("label_smoothing", self.label_smoothing, 0, 1, high_inclusive=False)
        if regression and self.label_smoothing:
            raise ConfigError(f"label_smoothing: task 'regression' has no classes; expected 0; got {self.label_smoothing!r}")
        self.focal_gamma = _float("focal_gamma", self.focal_gamma, 0, 100)
        check_option("unfreeze_unit", self.unfreeze_unit, UNFREEZE_UNITS)
        self._validate_unfreeze_schedule()
        self.two_stage_min_votes = _optional_int("two_stage_min_votes", self.two_stage_min_votes, 1)
        if self.two_stage_min_votes is not None and self.task != "hms6":
            raise ConfigError(f"two_stage_min_votes: only task 'hms6' has expert votes; expected None "
                              f"for task {self.task!r}; got {self.two_stage_min_votes!r}")
        self.early_stopping_patience = _optional_int("early_stopping_patience", self.early_stopping_patience, 1)
        self.val_fraction = _float("val_fraction", self.val_fraction, 0, 1, low_inclusive=False, high_inclusive=False)
        check_option("split_group", self.split_group, SPLIT_GROUPS)
        self.test_fraction = _float("test_fraction", self.test_fraction, 0, 1, high_inclusive=False)
        if self.val_fraction + self.test_fraction >= 1:
            raise ConfigError(f"test_fraction: expected val_fraction + test_fraction < 1 (something must be "
                              f"left to train on); got {self.val_fraction} + {self.test_fraction}")
        _bool("corpus_split", self.corpus_split)
        if self.corpus_split and (self.split_group != "subject" or self.test_fraction):
            raise ConfigError(f"corpus_split: the corpus's eval recordings are the test split, and its splits "
                              f"are of subjects; expected split_group 'subject' and test_fraction 0; got "
                              f"{self.split_group!r} and {self.test_fraction}")
        sites = self.test_sites
        if isinstance(sites, str) or not isinstance(sites, Sequence) or not all(
                isinstance(site, str) and site for site in sites):
            raise ConfigError(f"test_sites: expected a list of site pseudonyms (the manifest's sites, e.g. "
                              f"[site-0123456789abcdef]); got {sites!r}")
        self.test_sites = sorted(set(sites))
        if self.test_sites and (self.test_fraction or self.corpus_split):
            raise ConfigError(f"test_sites: the named sites are the test split; expected test_fraction 0 and "
                              f"corpus_split false; got {self.test_fraction} and {self.corpus_split}")
        _bool("temperature_scaling", self.temperature_scaling)
        if regression and self.temperature_scaling:
            raise ConfigError("temperature_scaling: task 'regression' has no probabilities to calibrate; expected "
                              "false (--set temperature_scaling=false)")
        self.epochs = _int("epochs", self.epochs, 1, 100_000)
        super().validate()  # builds the model config, whose labels class_weights must match
        self._validate_class_weights()

    def _validate_unfreeze_schedule(self) -> None:
        schedule = self.unfreeze_schedule
        if not isinstance(schedule, (list, tuple)):
            raise ConfigError(f"unfreeze_schedule: expected a list of increasing {self.unfreeze_unit} numbers; got {schedule!r}")
        self.unfreeze_schedule = [_int("unfreeze_schedule", v, 0) for v in schedule]
        if any(b <= a for a, b in zip(self.unfreeze_schedule, self.unfreeze_schedule[1:])):
            raise ConfigError(f"unfreeze_schedule: expected strictly increasing numbers; got {schedule!r}")
        if self.unfreeze_schedule and self.mode != "full":
            raise ConfigError(f"unfreeze_schedule: gradual unfreezing needs mode 'full'; got mode {self.mode!r}")

    def _validate_class_weights(self) -> None:
        weights = self.class_weights
        if isinstance(weights, str):
            check_option("class_weights", weights, ("none", "balanced"))
            if weights == "balanced" and self.task == "regression":
                raise ConfigError("class_weights: task 'regression' has no classes; expected 'none'")
            return
        if self.task == "regression" or not isinstance(weights, (list, tuple)):
            raise ConfigError(f"class_weights: expected 'none', 'balanced' or a list of positive "
                              f"numbers (one per class); got {weights!r}")
        n_classes = len(self.model_config().id2label or {})
        if len(weights) != n_classes:
            raise ConfigError(f"class_weights: expected {n_classes} weights (one per class of task "
                              f"{self.task!r}); got {len(weights)}")
        self.class_weights = [_float("class_weights", w, 0, low_inclusive=False) for w in weights]

    @property
    def head(self) -> str:
        return TASK_HEADS[self.task]

    def model_config(self) -> EEGFMConfig:
        fields = self._model_fields()
        if self.task in _TASK_LABELS and "id2label" not in fields:
            fields["id2label"] = dict(enumerate(_TASK_LABELS[self.task]))
        return self._build_model_config(
            head=self.head, gradient_checkpointing=self.activation_checkpointing,
            adapter_kind=self.adapter_kind if self.mode == "adapter" else None,
            adapter_rank=self.adapter_rank, **fields,
        )


CONFIG_CLASSES: dict[str, type[RunConfig]] = {"pretrain": PretrainConfig, "finetune": FinetuneConfig}


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-4`` as a float (YAML 1.1 demands ``1.0e-4``)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _parse_yaml(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: not valid YAML ({err})") from err


def list_config_presets() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def _resolve_path(name_or_path: str | os.PathLike[str]) -> Path:
    text = os.fspath(name_or_path)
    looks_like_path = isinstance(name_or_path, os.PathLike) or "/" in text or text.endswith((".yaml", ".yml"))
    path = Path(text) if looks_like_path else CONFIG_DIR / f"{text}.yaml"
    if not path.is_file():
        presets = ", ".join(repr(p) for p in list_config_presets())
        raise ConfigError(f"config: expected a preset ({presets}) or the path of a YAML file; got {text!r}"
                          + (" (no such file)" if looks_like_path else ""))
    return path


def _section(data: Any, kind: str, where: str) -> dict[str, Any]:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping at the top level; got {type(data).__name__}")
    if not any(k in KINDS for k in data):
        return dict(data)  # a single-section file
    unknown = sorted(str(k) for k in data if k not in KINDS)
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {', '.join(unknown)}; allowed: {', '.join(KINDS)}")
    if kind not in data:
        raise ConfigError(f"{where}: has no {kind!r} section (sections: {', '.join(map(str, data))})")
    section = data[kind] or {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"{where}: section {kind!r} must be a mapping; got {type(section).__name__}")
    return dict(section)


def parse_overrides(overrides: Mapping[str, Any] | Sequence[str] | None) -> dict[str, Any]:
    """``["optim.lr=3e-4", "loader.augment={}"]`` or a (dotted or nested) dict -> ``{dotted: value}``."""
    if overrides is None:
        return {}
    if isinstance(overrides, Mapping):
        flat: dict[str, Any] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, Mapping) and value:
                for key, sub in value.items():
                    walk(f"{prefix}.{key}" if prefix else str(key), sub)
            else:
                flat[prefix] = value

        for key, value in overrides.items():
            walk(str(key), value)
        return flat
    if isinstance(overrides, str):
        overrides = [overrides]
    parsed = {}
    for item in overrides:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override: expected 'key.sub=value'; got {item!r}")
        parsed[key.strip()] = _parse_yaml(value, f"override {item!r}")
    return parsed


def _apply_override(data: dict[str, Any], cls: type[Config], dotted: str, value: Any) -> None:
    """Set ``data[a][b]... = value`` after checking every key against the dataclass fields."""
    parts = dotted.split(".")
    target, section = data, cls
    for depth, part in enumerate(parts):
        path = ".".join(parts[:depth + 1])
        last = depth == len(parts) - 1
        if section is not None:
            fields = {f.name for f in dataclasses.fields(section) if f.init}
            if part not in fields:
                where = ".".join(parts[:depth]) or section.__name__
                raise ConfigError(f"override {dotted!r}: unknown key {part!r} in {where}; "
                                  f"allowed: {', '.join(sorted(fields))}")
            hint = typing.get_type_hints(section)[part]
            is_dict_field = typing.get_origin(hint) is dict
            next_section = hint if isinstance(hint, type) and issubclass(hint, Config) else None
            if not last and next_section is None and not is_dict_field:
                raise ConfigError(f"override {dotted!r}: {path} is a value, not a section")
            section = next_section
        if last:
            target[part] = value
        else:
            if not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]


def load_config(
    name_or_path: str | os.PathLike[str],
    kind: str = "pretrain",
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
) -> PretrainConfig | FinetuneConfig:
    """Load a preset (``training/configs/<name>.yaml``) or a YAML file, apply overrides, validate.

    ``overrides`` are ``"key.sub=value"`` strings (values parsed as YAML, e.g. from
    ``--set optim.lr=3e-4``) or a dict, nested or with dotted keys.
    """
    check_option("kind", kind, KINDS)
    path = _resolve_path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file ({err.strerror})") from err
    data = _section(_parse_yaml(text, str(path)), kind, str(path))
    cls = CONFIG_CLASSES[kind]
    for dotted, value in parse_overrides(overrides).items():
        _apply_override(data, cls, dotted, value)
    try:
        return cls.from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path} [{kind}]: {err}") from err


# --------------------------------------------------------------------------------------------
# Checks that depend on the machine
# --------------------------------------------------------------------------------------------


def resolve_precision(precision: str, device: str | torch.device) -> torch.dtype:
    """The autocast dtype for ``precision`` on ``device``; fp16 needs CUDA (and a GradScaler)."""
    import torch

    check_option("precision", precision, PRECISIONS)
    device_type = torch.device(device).type
    if precision == "fp16" and device_type != "cuda":
        raise ConfigError(f"precision: 'fp16' needs a CUDA device; got device {device_type!r} "
                          "(use 'bf16' or 'fp32')")
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
