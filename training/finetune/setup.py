"""Fine-tuning's model and optimizer: the pretrained encoder with its task head (or another
registered architecture, built from scratch: ``model.architectures``), which parameters train
(mode, gradual unfreezing), the optimizer with layer-wise lr decay, the loss, and the state of one
stage's training (:class:`Run`)."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from eegfm.core.logs import get_logger
from eegfm.metrics import losses
from eegfm.metrics.classification import class_logits
from eegfm.model import adapters as adapters_lib
from eegfm.model.architectures import architecture_of, get_architecture, quiet_transformers
from eegfm.model.modeling import EEGFMModel
from eegfm.model.optim import decays, param_groups_lrd
from eegfm.training.config import ConfigError, FinetuneConfig, resolve_precision
from eegfm.training.data import EEGLoader, data_label, inputs_for_modalities
from eegfm.training.distributed import Dist, unwrap
from eegfm.training.finetune.plan import Plan, Stage, class_names, split_filter
from eegfm.training.loop import TrainState, core_state, load_core_state, loader_config

log = get_logger("eegfm.training.finetune")


def resolve_pretrained(path: str | os.PathLike[str]) -> Path:
    """The Hugging Face folder in ``path``: itself, or ``path/model`` (a pretraining run folder)."""
    path = Path(path)
    for candidate in (path, path / "model"):
        if (candidate / "config.json").is_file():
            return candidate
    raise ConfigError(
        f"--pretrained {path}: no config.json there (or in {path / 'model'}); expected a "
        "Hugging Face model folder, e.g. the model/ folder written by training.pretrain"
    )


def check_pretrained(pretrained: str | os.PathLike[str] | None, cfg: FinetuneConfig) -> Path | None:
    """``--pretrained``'s model folder; None where the architecture starts from scratch without one."""
    if pretrained is None:
        if not get_architecture(cfg.architecture).from_scratch:
            raise ConfigError(
                f"--pretrained: architecture {cfg.architecture!r} fine-tunes a pretrained encoder; "
                "expected its folder (the model/ folder of training.pretrain)"
            )
        return None
    folder = resolve_pretrained(pretrained)
    if (saved := architecture_of(folder).name) != cfg.architecture:
        raise ConfigError(
            f"--pretrained {folder}: holds a {saved!r} model; the run's architecture is {cfg.architecture!r}"
        )
    return folder


def patch_size_of(pretrained: str | os.PathLike[str] | None, cfg: FinetuneConfig | None = None) -> int:
    """The model's patch length in samples (its config.json), before the model is loaded; 1 for a
    model built from scratch that reads no EEG patches."""
    if pretrained is None:
        return 1
    saved = json.loads((resolve_pretrained(pretrained) / "config.json").read_text())
    return int(saved.get("patch_size") or 1)


def load_model(pretrained: str | os.PathLike[str] | None, cfg: FinetuneConfig) -> tuple[torch.nn.Module, bool]:
    """The task model; returns (model, head is new). eegfm: from a pretraining or fine-tuning
    output, the saved architecture, every encoder weight there (no silent init); another
    architecture: its saved model, else a new one (:func:`build_model`)."""
    if cfg.architecture != "eegfm":
        return build_model(pretrained, cfg)
    folder = resolve_pretrained(pretrained)
    saved = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if saved.get("model_type") != "eegfm":
        raise ConfigError(
            f"--pretrained {folder}: config.json has model_type {saved.get('model_type')!r}; expected 'eegfm'"
        )
    if saved.get("preset") not in (None, "custom", cfg.model):
        log.warning(
            "the run config names model %r but --pretrained holds a %r model; the architecture comes from --pretrained",
            cfg.model,
            saved.get("preset"),
        )
    overrides = {k: v for k, v in cfg._model_fields().items() if k != "id2label"}
    with quiet_transformers():  # our own one-line summary replaces the missing-keys table
        model, info = EEGFMModel.from_pretrained(
            folder,
            output_loading_info=True,
            gradient_checkpointing=cfg.activation_checkpointing,
            temperature=1.0,
            **overrides,
        )
    missing = sorted(k for k in info["missing_keys"] if not k.startswith("head."))
    if missing or info["mismatched_keys"]:
        raise ConfigError(
            f"--pretrained {folder}: the weights do not fit the model: missing {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}, mismatched {sorted(info['mismatched_keys'])[:5]}"
        )
    labels = class_names(cfg)
    was = saved.get("architectures") or []
    saved_labels = [str(v) for _, v in sorted((model.config.id2label or {}).items(), key=lambda kv: int(kv[0]))]
    fresh = (
        "EEGFMModel" not in was
        or model.config.head != cfg.head
        or any(k.startswith("head.") for k in info["missing_keys"])
        or (cfg.task != "regression" and saved_labels != labels)
    )
    if fresh:
        torch.manual_seed(cfg.seed)
        model.reset_head(cfg.head, labels if cfg.task != "regression" else None)
    log.info(
        "loaded %s from %s (%s); %s head %r",
        "encoder" if fresh else "model",
        folder,
        "/".join(was) or "?",
        "new" if fresh else "kept",
        cfg.head,
    )
    return model, fresh


def build_model(pretrained: str | os.PathLike[str] | None, cfg: FinetuneConfig) -> tuple[torch.nn.Module, bool]:
    """A non-eegfm architecture: the one saved in ``pretrained`` (same labels), else built from its
    preset (``cfg.model`` where the architecture has it, else base) and ``cfg.model_overrides`` with
    random initialisation."""
    architecture = get_architecture(cfg.architecture)
    labels = class_names(cfg)
    if pretrained is not None:
        folder = check_pretrained(pretrained, cfg)
        with quiet_transformers():
            model = architecture.model_class.from_pretrained(folder, temperature=1.0)
        saved = [str(v) for _, v in sorted(model.config.id2label.items(), key=lambda kv: int(kv[0]))]
        if saved != labels or model.config.head != cfg.head:
            raise ConfigError(
                f"--pretrained {folder}: a {model.config.head!r} model of labels {saved}; task {cfg.task!r} "
                f"needs head {cfg.head!r} with labels {labels}"
            )
        log.info("loaded %s model from %s", cfg.architecture, folder)
        return model, False
    torch.manual_seed(cfg.seed)
    config = cfg.model_config()  # its preset and ``model_overrides``, validated with the run config
    model = architecture.model_class(config)
    log.info("built %s (%s preset) from random initialisation", cfg.architecture, config.preset)
    if cfg.unfreeze_schedule:
        log.info("unfreeze_schedule %s: ignored, a model trained from scratch trains all of it", cfg.unfreeze_schedule)
    return model, True


def init_head(model: EEGFMModel, prior: Sequence[float], task: str, seed: int) -> None:
    """Initialise a new head: weights N(0, 1/hidden_size), bias at the training class prior (the
    untrained head predicts the baseline).

    Unit-scale logits on the LayerNorm-ed embedding reach the encoder from the first step; the
    generic init (0.02) left the tiny model at the baseline for epochs (held-out KL after 10
    epochs 0.71-0.83x the baseline, against 0.46-0.52x with this init).
    """
    fc = model.head.fc
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        fc.weight.copy_(torch.randn(fc.weight.shape, generator=generator) / math.sqrt(fc.in_features))
        fc.bias.zero_()
        if task == "regression":  # the bias at the training mean
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
            raise ConfigError(
                f"adapter_kind: --pretrained already has {kind!r} adapters of rank "
                f"{model.config.adapter_rank}; got {cfg.adapter_kind!r} rank {cfg.adapter_rank}"
            )
        else:
            for name, parameter in model.named_parameters():
                parameter.requires_grad = adapters_lib.is_adapter_parameter(name) or name.startswith("head.")
    else:
        model.unfreeze_encoder(None)


def unfreeze_level(cfg: FinetuneConfig, step: int, steps_per_epoch: int) -> int:
    """How many milestones of ``unfreeze_schedule`` have passed at ``step`` (0-based)."""
    now = step // steps_per_epoch if cfg.unfreeze_unit == "epoch" else step
    return sum(now >= milestone for milestone in cfg.unfreeze_schedule)


def apply_unfreeze(model: EEGFMModel, cfg: FinetuneConfig, level: int) -> None:
    """Gradual unfreezing (full mode): level 0 trains the head alone; level i of k the top
    ``round(i / k)`` share of the encoder's layers (``unfreeze_encoder`` order); level k all."""
    schedule = cfg.unfreeze_schedule
    if cfg.mode != "full":
        return
    if not isinstance(model, EEGFMModel):  # built from scratch (build_model): everything trains
        model.unfreeze_encoder(None)
        return
    if not schedule or level >= len(schedule):
        model.unfreeze_encoder(None)
    elif level == 0:
        model.freeze_encoder()
    else:
        n_layers = len(model.encoder.blocks) + len(model.encoder.patch_layers)
        model.unfreeze_encoder(max(1, round(n_layers * level / len(schedule))))


def optimizer_groups(model: EEGFMModel, cfg: FinetuneConfig) -> list[dict[str, Any]]:
    """AdamW groups with layer-wise lr decay over every parameter, frozen or not: AdamW skips
    parameters without gradients, so gradual unfreezing needs no new optimizer. Architectures
    other than eegfm: two groups, with and without weight decay, at the base lr."""
    if not isinstance(model, EEGFMModel):
        named = list(model.named_parameters())
        decayed = [p for n, p in named if decays(n, p)]
        rest = [p for n, p in named if not decays(n, p)]
        return [
            {"params": decayed, "lr": cfg.optim.lr, "weight_decay": cfg.optim.weight_decay},
            {"params": rest, "lr": cfg.optim.lr, "weight_decay": 0.0},
        ]
    frozen = [p for p in model.parameters() if not p.requires_grad]
    for parameter in frozen:
        parameter.requires_grad_(True)
    try:
        return param_groups_lrd(model, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.layer_decay)
    finally:
        for parameter in frozen:
            parameter.requires_grad_(False)


def inputs_for(
    model: torch.nn.Module, batch: dict[str, Any], device: torch.device, data: str | Sequence[str] | None = None
) -> dict[str, torch.Tensor]:
    """The batch's model inputs, without the optional ones the model was configured without
    (``model_overrides: {modalities: [...]}``); ConfigError naming ``data`` and the feature where
    the batch lacks one the model cannot do without (the spectrogram CNN's ``spectrogram``)."""
    net = unwrap(model)
    config = net.config
    inputs = inputs_for_modalities(batch, config.modalities, device, spectrogram_pool=config.spectrogram_pool)
    for name in getattr(net, "required_inputs", ()):
        if name in inputs:
            continue
        if batch.get(name) is None:
            where = f"--data {data_label(data)}" if data is not None else "the data"
            raise ConfigError(
                f"{where}: its windows carry no {name!r} feature, which a {type(net).__name__} reads; "
                f"preprocess the recordings again with the {name} (windows written before it have none)"
            )
        inputs[name] = batch[name].to(device, non_blocking=True)
    return inputs


def targets_of(batch: dict[str, Any], cfg: FinetuneConfig, device: torch.device) -> torch.Tensor:
    """hms6: the (mixed) vote distributions; regression: label values (NaN = none); else labels."""
    if cfg.task == "hms6":
        return batch["targets"].to(device)
    label = batch["label"].to(device)
    if cfg.task == "regression":
        return torch.where(label >= 0, label.float(), torch.full_like(label, float("nan"), dtype=torch.float32))
    return label


def make_loss(
    cfg: FinetuneConfig, head: torch.nn.Module, class_weights: torch.Tensor | None
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training loss ``f(logits, target)`` the config asks for."""
    if cfg.task == "regression":
        return head.loss
    name = cfg.loss or ("kl" if cfg.task == "hms6" else "ce")
    if name == "kl":
        return lambda logits, target: losses.kl_divergence(logits, target, class_weights)
    if name == "ce":
        return lambda logits, target: losses.soft_cross_entropy(
            class_logits(logits, cfg), target, cfg.label_smoothing, class_weights
        )
    return lambda logits, target: losses.focal_loss(
        class_logits(logits, cfg), target, cfg.focal_gamma, cfg.label_smoothing, class_weights
    )


def resolve_class_weights(cfg: FinetuneConfig, plan: Plan) -> torch.Tensor | None:
    if cfg.class_weights == "none" or cfg.task == "regression":
        return None
    if cfg.class_weights == "balanced":
        return losses.balanced_class_weights(plan.class_counts)
    return torch.tensor(cfg.class_weights, dtype=torch.float32)


def split_loader(
    cfg: FinetuneConfig, dist: Dist, data: str | Sequence[str], plan: Plan, name: str, patch_size: int
) -> EEGLoader:
    """One pass over a held-out split (``val``, ``test``) in file order, sharded over the ranks."""
    config = loader_config(cfg.loader, patch_size, filters=split_filter(plan, name), train=False)
    return EEGLoader(
        data, config, rank=dist.rank, world_size=dist.world_size, infinite=False, windows_per_file=plan.files.get(name)
    )


@dataclasses.dataclass(kw_only=True)
class Run(TrainState):
    """One stage's training state (``step`` counts this stage's steps)."""

    cfg: FinetuneConfig
    plan: Plan
    stage: Stage
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    data: str | Sequence[str]
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
        """Full training state. Collective: every rank must call it."""
        return {
            **core_state(self),
            "stage": self.stage.index,
            "offset": self.offset,
            "bad_evals": self.bad_evals,
            "done": self.done,
            "plan": self.plan.to_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_core_state(self, state)
        self.offset = int(state["offset"])
        self.step = int(state["step"]) - self.offset
        self.bad_evals, self.done = int(state["bad_evals"]), bool(state["done"])


def build_run(
    cfg: FinetuneConfig,
    dist: Dist,
    data: str | Sequence[str],
    plan: Plan,
    stage: Stage,
    model: EEGFMModel,
    best_metric: float = math.inf,
    offset: int = 0,
) -> Run:
    amp_dtype = resolve_precision(cfg.precision, dist.device)
    optimizer = torch.optim.AdamW(
        optimizer_groups(model, cfg), lr=cfg.optim.lr, betas=cfg.optim.betas, eps=cfg.optim.eps
    )
    batch = cfg.loader.batch_size * cfg.optim.grad_accum_steps * dist.world_size
    steps_per_epoch = max(1, math.ceil(stage.windows / batch))
    total = min(cfg.epochs * steps_per_epoch, cfg.optim.max_steps or math.inf)
    optim = cfg.optim
    if optim.warmup_steps >= total:
        log.warning(
            "optim.warmup_steps=%d is not below the %d steps of %s; warming up for %d steps",
            optim.warmup_steps,
            total,
            stage.name,
            total // 10,
        )
        optim = dataclasses.replace(optim, warmup_steps=total // 10, max_steps=None)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(optim.lr_factor, total_steps=total))
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    config = loader_config(cfg.loader, model.config.patch_size, filters=split_filter(plan, "train", stage.min_votes))
    loader = EEGLoader(
        data,
        config,
        rank=dist.rank,
        world_size=dist.world_size,
        infinite=True,
        windows_per_file=plan.files.get("train"),
    )
    loss_fn = make_loss(cfg, model.head, resolve_class_weights(cfg, plan))
    optimizer = dist.wrap_optimizer(optimizer, model, cfg.optim.grad_accum_steps)
    return Run(
        cfg=cfg,
        dist=dist,
        plan=plan,
        stage=stage,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        loader=loader,
        loss_fn=loss_fn,
        data=data,
        amp_dtype=amp_dtype,
        steps_per_epoch=steps_per_epoch,
        total_steps=total,
        offset=offset,
        best_metric=best_metric,
    )


def set_trainable(run: Run) -> None:
    """Apply the unfreeze level of the current step; rewrap for DDP when it changes (DDP fixes
    the parameters it synchronises when built)."""
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
        log.info(
            "%s step %d: unfreeze level %d of %d, %d trainable parameters",
            run.stage.name,
            run.step,
            level,
            len(run.cfg.unfreeze_schedule),
            adapters_lib.count_trainable(model),
        )
    run.unfreeze = level
