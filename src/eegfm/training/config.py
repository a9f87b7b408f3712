"""Configuration of pretraining and fine-tuning runs: validated dataclasses (``PretrainConfig``,
``FinetuneConfig`` and the sections they share). :func:`load_config` reads a preset
(``training/configs/<name>.yaml``) or a YAML file and applies command-line overrides. ``fp16`` is
checked at start-up (:func:`resolve_precision`): it depends on the machine."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from eegfm.contract.schema import CORPUS_SPLITS
from eegfm.core.config import Config, ConfigError, check_bool, check_float, check_int, check_mapping, check_option
from eegfm.core.tasks import FINETUNE_TASKS, TASK_CLASSES
from eegfm.model.architectures import get_architecture, list_architectures, list_pretrainable
from eegfm.model.config import ADAPTER_KINDS, HEAD_COVARIANCE_METRICS, EEGFMConfig, list_presets
from eegfm.model.heads import list_heads
from eegfm.training.config_choices import (
    BACKENDS,
    COMPILE_MODES,
    EPOCH_CHOOSERS,
    FINETUNE_MODES,
    HEAD_INITS,
    LOSSES,
    PRECISIONS,
    PROBE_CHOOSERS,
    SPLIT_GROUPS,
    TASK_HEADS,
    UNFREEZE_UNITS,
)
from eegfm.training.config_files import KINDS, apply_override, parse_overrides, read_section, resolve_config_path
from eegfm.training.config_sections import INF, LoaderSection, OptimConfig, WandbConfig

_TASK_LABELS = {task: TASK_CLASSES[record_task] for task, record_task in FINETUNE_TASKS.items() if task != "hms6"}
# EEGFMConfig fields that the run config sets itself: overriding them would be ambiguous.
_MODEL_FIELDS_SET_BY_RUN = {
    "preset": "model",
    "head": "task",
    "gradient_checkpointing": "activation_checkpointing",
    "adapter_kind": "adapter_kind",
    "adapter_rank": "adapter_rank",
    "transformers_version": None,
    "architectures": None,
}


@dataclasses.dataclass
class RunConfig(Config):
    """What every training run has: the model, data, optimizer, numerics, cadence and logging.

    ``compile_mode``: ``torch.compile``'s mode where ``compile`` is set (``COMPILE_MODES``).
    ``eval_every``/``save_every`` count optimizer steps (``eval_every`` None: at each checkpoint
    in pretraining, every epoch in fine-tuning). ``tf32``: CUDA float32 matrix products on TF32
    tensor cores (a cosine of unit vectors moves by <= ~2e-4). ``seed`` seeds initialisation and
    masking; the data order has ``loader.seed``. ``allow_partial``: train on the shards there are
    when an output's shards are not those its manifest lists (or it has none), with a warning
    naming what is missing; otherwise such data is refused.
    """

    model: str = "tiny"
    model_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    seed: int = 0
    loader: LoaderSection = dataclasses.field(default_factory=LoaderSection)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    precision: str = "fp32"
    activation_checkpointing: bool = False
    compile: bool = False
    compile_mode: str = "default"
    deterministic: bool = False
    tf32: bool = False
    allow_partial: bool = False
    log_every: int = 10
    eval_every: int | None = None
    save_every: int = 1000
    keep_last: int = 3
    wandb: WandbConfig = dataclasses.field(default_factory=WandbConfig)
    backend: str = "auto"

    def validate(self) -> None:
        check_option("model", self.model, list_presets())
        self.model_overrides = check_mapping("model_overrides", self.model_overrides)
        self.seed = check_int("seed", self.seed, 0, 2**63 - 1, whole_float=True)
        for name, section in (("loader", LoaderSection), ("optim", OptimConfig), ("wandb", WandbConfig)):
            if not isinstance(getattr(self, name), section):
                raise ConfigError(
                    f"{name}: expected a mapping of {section.__name__} fields; got {getattr(self, name)!r}"
                )
        check_option("precision", self.precision, PRECISIONS)
        check_option("compile_mode", self.compile_mode, COMPILE_MODES)
        for name in ("activation_checkpointing", "compile", "deterministic", "tf32", "allow_partial"):
            check_bool(name, getattr(self, name))
        self.log_every = check_int("log_every", self.log_every, 1, INF, whole_float=True)
        self.eval_every = check_int("eval_every", self.eval_every, 1, INF, optional=True, whole_float=True)
        self.save_every = check_int("save_every", self.save_every, 1, INF, whole_float=True)
        self.keep_last = check_int("keep_last", self.keep_last, 1, INF, whole_float=True)
        check_option("backend", self.backend, BACKENDS)
        self.model_config()  # the model part must build: errors surface at load time

    def _model_fields(self, config_class: type = EEGFMConfig) -> dict[str, Any]:
        """Validated ``model_overrides`` (unknown or run-owned fields of ``config_class`` are errors)."""
        valid = {f.name for f in dataclasses.fields(config_class)} - set(_MODEL_FIELDS_SET_BY_RUN)
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

    def _build_model_config(self, config_class: type = EEGFMConfig, **fields: Any) -> EEGFMConfig:
        # A from-scratch architecture has presets of its own: ``model`` where it has that one, else base.
        preset = self.model if config_class is EEGFMConfig or self.model in config_class.presets else "base"
        try:
            return config_class.from_preset(preset, **fields)
        except ConfigError as err:
            raise ConfigError(f"model_overrides: {err}") from err

    def model_config(self) -> EEGFMConfig:
        """The validated ``EEGFMConfig`` of this run (preset + overrides + run-owned fields)."""
        return self._build_model_config(gradient_checkpointing=self.activation_checkpointing, **self._model_fields())


def check_corpus_splits(name: str, splits: Any) -> list[str]:
    """``splits``, a list of corpus splits (train, dev, eval), sorted and each once."""
    if isinstance(splits, str) or not isinstance(splits, Sequence):
        raise ConfigError(f"{name}: expected a list of corpus splits ({', '.join(CORPUS_SPLITS[1:])}); got {splits!r}")
    for split in splits:
        check_option(name, split, CORPUS_SPLITS[1:])
    return sorted(set(splits))


@dataclasses.dataclass
class PretrainConfig(RunConfig):
    """A self-supervised pretraining run; ``optim.max_steps`` is its length.

    val_fraction / split_group: the subjects (sites) held out; their loss picks the ``best``
        checkpoint (0: all train, ``best`` follows the training loss).
    val_windows: held-out windows evaluated (kept in memory, ~0.1 MB each for 10 s).
    exclude_corpus_splits: corpus splits never read; default ``eval``, so a benchmark's test
        recordings do not shape the encoder later tested on them.
    train_subject_fraction: pretrain on this fraction of the training groups (subjects, or sites
        by ``split_group``; >= 1 group, drawn by ``seed``): a scaling curve's smaller corpora.
    architecture: the encoder pretrained (``model.architectures`` with a pretraining model):
        ``eegfm`` by its own objectives, or a peer (``cbramod``, ``labram``) by masked patch
        modeling (``model.patch_pretraining``), at its preset (``model`` where it has it, else
        base) with ``model_overrides`` of its own config's fields.
    init_from: a pretraining's model folder (its ``model/``) whose weights start this run instead of
        random ones: continued pretraining of a shared encoder on this data. The run's model config
        must give every tensor the shape it has there; the optimizer and schedule start afresh.
    """

    architecture: str = "eegfm"
    init_from: str | None = None
    val_fraction: float = 0.0
    split_group: str = "subject"
    val_windows: int = 512
    exclude_corpus_splits: list[str] = dataclasses.field(default_factory=lambda: ["eval"])
    train_subject_fraction: float = 1.0

    def validate(self) -> None:
        check_option("architecture", self.architecture, tuple(list_pretrainable()))
        super().validate()
        if self.optim.max_steps is None:
            raise ConfigError("optim.max_steps: expected an integer >= 1 for pretraining; got None")
        self.val_fraction = check_float("val_fraction", self.val_fraction, 0, 1, high_inclusive=False)
        check_option("split_group", self.split_group, SPLIT_GROUPS)
        self.val_windows = check_int("val_windows", self.val_windows, 1, INF, whole_float=True)
        self.exclude_corpus_splits = check_corpus_splits("exclude_corpus_splits", self.exclude_corpus_splits)
        self.train_subject_fraction = check_float(
            "train_subject_fraction", self.train_subject_fraction, 0, 1, low_inclusive=False
        )
        if self.init_from is not None and (not isinstance(self.init_from, str) or not self.init_from):
            raise ConfigError(f"init_from: expected a model folder's path or null; got {self.init_from!r}")

    def model_config(self) -> EEGFMConfig:
        """``EEGFMConfig``, or the config of a peer ``architecture``."""
        if self.architecture == "eegfm":
            return super().model_config()
        config_class = get_architecture(self.architecture).config_class
        try:
            return self._build_model_config(config_class, **self._model_fields(config_class))
        except ConfigError as err:  # most often a preset's eegfm fields (cpu-small's summary_weight ...)
            raise ConfigError(
                f"{err} (architecture {self.architecture!r} takes its own config's fields; "
                "--set 'model_overrides={}' clears the preset's)"
            ) from err


@dataclasses.dataclass
class FinetuneConfig(RunConfig):
    """A supervised fine-tuning run of a pretrained encoder.

    task: label space (``TASK_HEADS``: its head; classes from ``eegfm.core.tasks``).
    mode: ``linear`` (head only), ``adapter`` (``adapter_kind``/``adapter_rank`` + head) or ``full``.
    head_init: a new head starts ``prior`` (random weights, bias at the training class prior) or
        ``probe`` (a logistic regression on the frozen encoder's embedding of the training windows,
        C by person-grouped cross-validation: ``training.finetune.probe_head``); with ``probe`` the
        starting weights are validated before the first step, so early stopping can keep them.
    probe_covariance_metrics: where the probe may map a head's covariances (``head_covariances``),
        the cross-validation choosing among them and none: ``logeuclid`` (at the training windows'
        log-Euclidean mean, a linear map of the graph's vectors) and ``riemann`` (at their
        affine-invariant mean, which the head's whitening buffer then holds).
    probe_chosen_by: who chooses the probe's C and inputs: ``cv`` (log loss of cross-validation
        grouped by person over the training people) or ``validation`` (log loss on the run's
        validation people, as the benchmark's readout and baselines choose theirs).
    loss: None is the head's own (hms6 KL, binary BCE, multiclass CE, regression MSE); else ``kl``
        (hms6), ``ce`` or ``focal``; label_smoothing applies to ce/focal.
    class_weights: ``none``, ``balanced`` (inverse training frequency) or one weight per class;
        the validation loss that chooses the checkpoint weighs them alike (but hms6's KL).
    unfreeze_schedule: ``full`` mode: the epochs (steps, per ``unfreeze_unit``) at which the next
        deeper layers unfreeze, starting from the head alone; empty trains all from the start.
    two_stage_min_votes: hms6: a second stage on windows with at least this many votes.
    early_stopping_patience: evaluations without improvement before stopping; None never stops.
    epochs_chosen_by: which epoch's weights the run keeps: ``validation`` (those of the lowest
        validation loss), ``training_people`` (``training.finetune.epoch_folds``: the epoch of the
        lowest mean held-out loss of ``epoch_folds`` runs, each holding out a fold of the training
        people, then the run on all of them stopped there) or ``none`` (every epoch, the last
        kept). But with ``validation``, validation only reports.
    ema_decay: above 0, validation, checkpoints and the saved model read an exponential moving
        average of the weights (``torch.optim.swa_utils``), updated after every step with this decay.
    temperature_scaling: fit a temperature on validation; checkpoints are compared each at its own fitted one.
    val_fraction / test_fraction / split_group: held-out subjects (sites); test is evaluated once.
    corpus_split: the corpus's own split (eval = test, dev = validation), as its benchmarks do.
    test_sites: sites held out as the test split (``evaluation.loso``: one at a time).
    train_subject_fraction: train on this fraction of the training groups' labels (>= 1 group, drawn by ``seed``).
    background_exclude_corpus_splits: the people of a ``--background`` folder in these corpus splits
        (a corpus's held-out people: eegmat's subjects 28-35) are neither trained nor validated on.
    epochs: passes over the training split; ``optim.max_steps``, if set, stops earlier.
    architecture: the task model (``model.architectures``): ``eegfm`` loads ``--pretrained``;
        ``spectrogram_cnn``, ``eeg_cnn_gru``, ``cbramod``, ``labram`` start from random weights (their preset,
        ``model`` where they have it, else base, with ``model_overrides`` of their own config's
        fields) unless ``--pretrained`` holds a saved model or pretrained encoder, and train with
        plain AdamW groups (no layer decay, no gradual unfreezing), in mode ``full`` or, on a
        ``--pretrained`` encoder, ``linear``.
    """

    task: str = "hms6"
    architecture: str = "eegfm"
    mode: str = "full"
    head_init: str = "prior"
    probe_covariance_metrics: list[str] = dataclasses.field(default_factory=lambda: ["logeuclid"])
    probe_chosen_by: str = "cv"
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
    epochs_chosen_by: str = "validation"
    epoch_folds: int = 4
    ema_decay: float = 0.0
    val_fraction: float = 0.15
    split_group: str = "subject"
    test_fraction: float = 0.0
    train_subject_fraction: float = 1.0
    corpus_split: bool = False
    test_sites: list[str] = dataclasses.field(default_factory=list)
    background_exclude_corpus_splits: list[str] = dataclasses.field(default_factory=lambda: ["dev", "eval"])
    temperature_scaling: bool = False
    epochs: int = 10

    def validate(self) -> None:
        check_option("task", self.task, tuple(TASK_HEADS))
        if TASK_HEADS[self.task] not in list_heads():  # the registry is the source of truth
            raise ConfigError(
                f"task: head {TASK_HEADS[self.task]!r} is not registered (registered: {', '.join(list_heads())})"
            )
        if self.task == "multiclass" and "id2label" not in self.model_overrides:
            # Else the model's default label space (the six HMS classes) would size the head.
            raise ConfigError(
                "model_overrides.id2label: task 'multiclass' takes its classes from it; expected the "
                "class names by label, e.g. --set 'model_overrides.id2label={0: rest, 1: task}'"
            )
        check_option("mode", self.mode, FINETUNE_MODES)
        check_option("head_init", self.head_init, HEAD_INITS)
        if self.head_init == "probe" and self.task == "regression":
            raise ConfigError("head_init: 'probe' fits a classifier; task 'regression' takes 'prior'")
        self._validate_probe_covariance_metrics()
        check_option("probe_chosen_by", self.probe_chosen_by, PROBE_CHOOSERS)
        check_option("adapter_kind", self.adapter_kind, ADAPTER_KINDS)
        self.adapter_rank = check_int("adapter_rank", self.adapter_rank, 1, 4096, whole_float=True)
        regression = self.task == "regression"
        if self.loss is not None:
            check_option("loss", self.loss, LOSSES)
            if regression:
                raise ConfigError(f"loss: task 'regression' uses mean squared error; expected None; got {self.loss!r}")
            if self.loss == "kl" and self.task != "hms6":
                raise ConfigError(f"loss: 'kl' needs vote distributions (task 'hms6'); got task {self.task!r}")
        self.label_smoothing = check_float("label_smoothing", self.label_smoothing, 0, 1, high_inclusive=False)
        if regression and self.label_smoothing:
            raise ConfigError(
                f"label_smoothing: task 'regression' has no classes; expected 0; got {self.label_smoothing!r}"
            )
        self.focal_gamma = check_float("focal_gamma", self.focal_gamma, 0, 100)
        check_option("unfreeze_unit", self.unfreeze_unit, UNFREEZE_UNITS)
        self._validate_unfreeze_schedule()
        self.two_stage_min_votes = check_int(
            "two_stage_min_votes", self.two_stage_min_votes, 1, INF, optional=True, whole_float=True
        )
        if self.two_stage_min_votes is not None and self.task != "hms6":
            raise ConfigError(
                f"two_stage_min_votes: only task 'hms6' has expert votes; expected None "
                f"for task {self.task!r}; got {self.two_stage_min_votes!r}"
            )
        self.early_stopping_patience = check_int(
            "early_stopping_patience", self.early_stopping_patience, 1, INF, optional=True, whole_float=True
        )
        self._validate_epoch_choice()
        self.ema_decay = check_float("ema_decay", self.ema_decay, 0, 1, high_inclusive=False)
        self._validate_splits()
        check_bool("temperature_scaling", self.temperature_scaling)
        if regression and self.temperature_scaling:
            raise ConfigError(
                "temperature_scaling: task 'regression' has no probabilities to calibrate; expected "
                "false (--set temperature_scaling=false)"
            )
        self.epochs = check_int("epochs", self.epochs, 1, 100_000, whole_float=True)
        self._validate_architecture()
        super().validate()  # builds the model config, whose labels class_weights must match
        self._validate_class_weights()

    def _validate_epoch_choice(self) -> None:
        check_option("epochs_chosen_by", self.epochs_chosen_by, EPOCH_CHOOSERS)
        self.epoch_folds = check_int("epoch_folds", self.epoch_folds, 2, 100, whole_float=True)
        if self.epochs_chosen_by == "training_people" and (self.eval_every or self.two_stage_min_votes):
            raise ConfigError(
                "epochs_chosen_by: 'training_people' compares the folds' losses epoch by epoch, in one "
                f"stage; expected eval_every None and two_stage_min_votes None; got {self.eval_every!r} "
                f"and {self.two_stage_min_votes!r}"
            )

    def _validate_probe_covariance_metrics(self) -> None:
        metrics = self.probe_covariance_metrics
        if (
            not isinstance(metrics, (list, tuple))
            or not metrics
            or not all(isinstance(m, str) and m in HEAD_COVARIANCE_METRICS for m in metrics)
        ):
            raise ConfigError(
                f"probe_covariance_metrics: expected a non-empty list drawn from "
                f"{', '.join(map(repr, HEAD_COVARIANCE_METRICS))}; got {metrics!r}"
            )
        self.probe_covariance_metrics = [m for m in HEAD_COVARIANCE_METRICS if m in metrics]

    def _validate_splits(self) -> None:
        self.val_fraction = check_float(
            "val_fraction", self.val_fraction, 0, 1, low_inclusive=False, high_inclusive=False
        )
        check_option("split_group", self.split_group, SPLIT_GROUPS)
        self.test_fraction = check_float("test_fraction", self.test_fraction, 0, 1, high_inclusive=False)
        if self.val_fraction + self.test_fraction >= 1:
            raise ConfigError(
                f"test_fraction: expected val_fraction + test_fraction < 1 (something must be "
                f"left to train on); got {self.val_fraction} + {self.test_fraction}"
            )
        self.train_subject_fraction = check_float(
            "train_subject_fraction", self.train_subject_fraction, 0, 1, low_inclusive=False
        )
        check_bool("corpus_split", self.corpus_split)
        if self.corpus_split and (self.split_group != "subject" or self.test_fraction):
            raise ConfigError(
                f"corpus_split: the corpus's eval recordings are the test split, and its splits "
                f"are of subjects; expected split_group 'subject' and test_fraction 0; got "
                f"{self.split_group!r} and {self.test_fraction}"
            )
        sites = self.test_sites
        if not isinstance(sites, (list, tuple)) or not all(isinstance(site, str) and site for site in sites):
            raise ConfigError(
                f"test_sites: expected a list of site pseudonyms (the manifest's sites, e.g. "
                f"[site-0123456789abcdef]); got {sites!r}"
            )
        self.test_sites = sorted(set(sites))
        self.background_exclude_corpus_splits = check_corpus_splits(
            "background_exclude_corpus_splits", self.background_exclude_corpus_splits
        )
        if self.test_sites and (self.test_fraction or self.corpus_split):
            raise ConfigError(
                f"test_sites: the named sites are the test split; expected test_fraction 0 and "
                f"corpus_split false; got {self.test_fraction} and {self.corpus_split}"
            )

    def _validate_architecture(self) -> None:
        check_option("architecture", self.architecture, tuple(list_architectures()))
        if self.architecture == "eegfm":
            return
        if self.mode == "adapter":
            raise ConfigError(
                f"mode: architecture {self.architecture!r} takes no adapters; expected 'full' or 'linear' "
                "(linear: a head on its --pretrained encoder); got 'adapter'"
            )
        if self.task == "regression":
            raise ConfigError(
                f"task: architecture {self.architecture!r} has classification heads only; got task 'regression'"
            )

    def _validate_unfreeze_schedule(self) -> None:
        schedule = self.unfreeze_schedule
        if not isinstance(schedule, (list, tuple)):
            raise ConfigError(
                f"unfreeze_schedule: expected a list of increasing {self.unfreeze_unit} numbers; got {schedule!r}"
            )
        self.unfreeze_schedule = [check_int("unfreeze_schedule", v, 0, INF, whole_float=True) for v in schedule]
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
            raise ConfigError(
                f"class_weights: expected 'none', 'balanced' or a list of positive "
                f"numbers (one per class); got {weights!r}"
            )
        n_classes = len(self.model_config().id2label or {})
        if len(weights) != n_classes:
            raise ConfigError(
                f"class_weights: expected {n_classes} weights (one per class of task {self.task!r}); got {len(weights)}"
            )
        self.class_weights = [check_float("class_weights", w, 0, low_inclusive=False) for w in weights]

    @property
    def head(self) -> str:
        return TASK_HEADS[self.task]

    def model_config(self) -> EEGFMConfig:
        """``EEGFMConfig``, or the config of a from-scratch ``architecture`` (``model.architectures``)."""
        scratch = None if self.architecture == "eegfm" else get_architecture(self.architecture).config_class
        fields = self._model_fields(scratch or EEGFMConfig)
        if self.task in _TASK_LABELS and "id2label" not in fields:
            fields["id2label"] = dict(enumerate(_TASK_LABELS[self.task]))
        if scratch is not None:
            return self._build_model_config(scratch, head=self.head, **fields)
        return self._build_model_config(
            head=self.head,
            gradient_checkpointing=self.activation_checkpointing,
            adapter_kind=self.adapter_kind if self.mode == "adapter" else None,
            adapter_rank=self.adapter_rank,
            **fields,
        )


CONFIG_CLASSES: dict[str, type[RunConfig]] = {"pretrain": PretrainConfig, "finetune": FinetuneConfig}


def load_config(
    name_or_path: str | os.PathLike[str],
    kind: str = "pretrain",
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
) -> PretrainConfig | FinetuneConfig:
    """Load a preset or a YAML file, apply ``overrides`` (``"key.sub=value"`` strings, values as
    YAML, or a nested or dotted dict), validate."""
    check_option("kind", kind, KINDS)
    path = resolve_config_path(name_or_path)
    cls = CONFIG_CLASSES[kind]
    data = read_section(path, kind, cls)
    for dotted, value in parse_overrides(overrides).items():
        apply_override(data, cls, dotted, value)
    try:
        return cls.from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path} [{kind}]: {err}") from err


def resolve_precision(precision: str, device: str | torch.device) -> torch.dtype:
    """The autocast dtype for ``precision`` on ``device``; fp16 needs CUDA (and a GradScaler)."""
    check_option("precision", precision, PRECISIONS)
    device_type = torch.device(device).type
    if precision == "fp16" and device_type != "cuda":
        raise ConfigError(f"precision: 'fp16' needs a CUDA device; got device {device_type!r} (use 'bf16' or 'fp32')")
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
