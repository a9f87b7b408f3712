"""The model a fine-tuning run starts from: a pretrained encoder found, checked against the run's
config and loaded (or a from-scratch architecture built), with a new task head started at the
class prior."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from eegfm.core.logs import get_logger
from eegfm.metrics import losses
from eegfm.model.architectures import architecture_of, get_architecture, quiet_transformers
from eegfm.model.heads import create_head
from eegfm.model.modeling import EEGFMModel
from eegfm.training.config import ConfigError, FinetuneConfig
from eegfm.training.finetune.plan import class_names

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
    missing = sorted(k for k in info["missing_keys"] if not k.startswith(EEGFMModel.new_at_finetuning))
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
    """A non-eegfm architecture: the one saved in ``pretrained`` (its task model with the run's
    labels continues; an encoder from ``training.pretrain``, or a model of other labels, gets a new
    head), else built from its preset (``cfg.model`` where the architecture has it, else base) and
    ``cfg.model_overrides`` with random initialisation. The bool: whether the head is new."""
    architecture = get_architecture(cfg.architecture)
    labels = class_names(cfg)
    if pretrained is not None:
        folder = check_pretrained(pretrained, cfg)
        saved = architecture.config_class.from_pretrained(folder)
        names = [str(v) for _, v in sorted(saved.id2label.items(), key=lambda kv: int(kv[0]))]
        task_model = architecture.model_class.__name__ in (saved.architectures or [])
        fresh = not task_model or names != labels or saved.head != cfg.head
        task = dict(head=cfg.head, id2label=dict(enumerate(labels))) if fresh else {}
        with quiet_transformers():
            model = architecture.model_class.from_pretrained(
                folder, temperature=1.0, ignore_mismatched_sizes=fresh, **task
            )
        if fresh:
            torch.manual_seed(cfg.seed)
            model.head = create_head(cfg.head, model.config)
        log.info(
            "loaded %s %s from %s; %s head",
            cfg.architecture,
            "model" if task_model else "encoder",
            folder,
            "new" if fresh else "kept",
        )
        return model, fresh
    if cfg.mode == "linear":
        raise ConfigError(
            f"mode: 'linear' trains a head on a pretrained encoder; architecture {cfg.architecture!r} "
            "from random weights has none (give --pretrained, or mode 'full')"
        )
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
