"""Task heads, registered by name (the timm ``register_model`` / ``create_model`` pattern).

A head maps the encoder's features to outputs and owns its loss::

    head = create_head("hms6", config)
    logits = head(features)              # features: EncoderOutput (or a (B, D) embedding)
    loss = head.loss(logits, target)
    probabilities = head.predict(logits)
    samples = head.sample_logits(features)  # (B, S, n_outputs): fixed MC-dropout masks (model.uncertainty)

=============  =========  ===========================================  ==========================
name           outputs    target given to ``loss``                     loss
=============  =========  ===========================================  ==========================
hms6           6          (B, 6) HMS vote counts (or a distribution)    KL(target || prediction)
binary         1          (B,) 0/1; NaN or -1 ignored                   BCE with logits
multiclass     n labels   (B,) class index; -1 ignored                  cross-entropy
regression     n targets  (B,) or (B, n) values; NaN ignored            mean squared error
sleep_stage    5          (B,) W/N1/N2/N3/REM index; -1 ignored         cross-entropy (auxiliary)
=============  =========  ===========================================  ==========================

Add a head with ``@register_head("name")`` on a :class:`TaskHead` subclass.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from eegfm.contract.channels import N_CANONICAL
from eegfm.core.config import ConfigError
from eegfm.core.tasks import HMS_CLASSES, SLEEP_STAGES
from eegfm.model.band_powers import head_spectral_width
from eegfm.model.config import HEAD_REGISTRY, EEGFMConfig
from eegfm.model.encoder import EncoderOutput
from eegfm.model.uncertainty import config_masks


def register_head(name: str) -> Callable[[type[TaskHead]], type[TaskHead]]:
    def decorator(cls: type[TaskHead]) -> type[TaskHead]:
        if name in HEAD_REGISTRY:
            raise ConfigError(f"register_head: head {name!r} is already registered")
        cls.name = name
        HEAD_REGISTRY[name] = cls
        return cls

    return decorator


def list_heads() -> list[str]:
    return sorted(HEAD_REGISTRY)


def create_head(name: str, config: EEGFMConfig) -> TaskHead:
    """Build a registered head for ``config``; the main head (``config.head``) uses its labels."""
    if name not in HEAD_REGISTRY:
        raise ConfigError(f"head: expected one of {', '.join(map(repr, list_heads()))}; got {name!r}")
    head_class = HEAD_REGISTRY[name]
    return head_class(config, head_class.n_outputs(config, name == config.head))


class TaskHead(nn.Module):
    """LayerNorm -> dropout -> linear on the pooled embedding, plus, with
    ``config.head_band_powers`` or ``config.head_covariances``, a linear layer on the encoder's
    ``band_features`` (zero at first: the head starts as the embedding's alone). Subclasses define
    the loss."""

    name: str = ""
    default_labels: tuple[str, ...] | None = None

    def __init__(self, config: EEGFMConfig, n_outputs: int) -> None:
        super().__init__()
        self.n_outputs = n_outputs
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.head_dropout)
        self.fc = nn.Linear(config.hidden_size, n_outputs)
        self.fc_bands = None
        # the peers' configs (model.canonical) have neither field
        self.reads_band_powers = bool(getattr(config, "head_band_powers", False))
        self.reads_covariances = bool(getattr(config, "head_covariances", False))
        if self.reads_band_powers or self.reads_covariances:
            width = head_spectral_width(N_CANONICAL, self.reads_band_powers, self.reads_covariances)
            self.fc_bands = nn.Linear(width, n_outputs, bias=False)
            self.fc_bands.zero_init = True  # ``_init_weights`` reads the flag
            nn.init.zeros_(self.fc_bands.weight)
            # 1 where the layer reads an input, 0 where a probe fit left it out (:meth:`read_only`):
            # saved with the weights, so fine-tuning and a reloaded model leave it out too
            self.register_buffer("band_gate", torch.ones(width))
        # Not saved: rebuilt from config.json (mc_passes, mc_dropout, mc_seed), so they cannot drift.
        self.register_buffer("mc_masks", config_masks(config), persistent=False)

    def set_mc_masks(self, masks: torch.Tensor) -> None:
        """Sample with these (S, hidden_size) masks from now on (``model.uncertainty.dropout_masks``)."""
        if masks.dim() != 2 or masks.shape[1] != self.fc.in_features:
            raise ValueError(f"masks: expected shape (S, {self.fc.in_features}); got {tuple(masks.shape)}")
        self.mc_masks = masks.to(device=self.fc.weight.device, dtype=self.mc_masks.dtype)

    def sample_logits(self, features: EncoderOutput | torch.Tensor) -> torch.Tensor:
        """(B, S, n_outputs): the head's logits under each fixed dropout mask (S = ``mc_passes``;
        no randomness, so eval mode, ONNX and any rerun give the same samples)."""
        pooled = features if isinstance(features, torch.Tensor) else features.pooled
        normed = self.norm(pooled)
        masks = self.mc_masks.to(normed.dtype)
        samples = self.fc(normed.unsqueeze(1) * masks.unsqueeze(0))
        return samples if self.fc_bands is None else samples + self.band_logits(features).unsqueeze(1)

    def band_logits(self, features: EncoderOutput | torch.Tensor) -> torch.Tensor:
        """The spectral layer's share of the logits (``head_band_powers`` / ``head_covariances``)."""
        bands = getattr(features, "band_features", None)
        if bands is None or bands.shape[-1] != self.fc_bands.in_features:
            raise ValueError(
                f"features: a head with band powers or covariances reads the encoder's band_features of the "
                f"{N_CANONICAL} canonical channels ({self.fc_bands.in_features} values a window); got "
                f"{None if bands is None else tuple(bands.shape)}"
            )
        return self.fc_bands(bands.to(self.fc_bands.weight.dtype) * self.band_gate)

    def probe_features(self, features: EncoderOutput) -> torch.Tensor:
        """(B, F) what the head's linear layers read (``fc``'s input, then ``band_features``): a
        linear probe fitted on them is the head (``training.finetune.probe_head``)."""
        normed = self.norm(features.pooled)
        return normed if self.fc_bands is None else torch.cat([normed, features.band_features.to(normed)], dim=-1)

    def probe_feature_groups(self) -> dict[str, slice]:
        """The columns of :meth:`probe_features` each input fills: ``embedding``, then
        ``band_powers`` and ``covariances`` where the head reads them."""
        groups, start = {"embedding": slice(0, self.fc.in_features)}, self.fc.in_features
        for name, read in (("band_powers", self.reads_band_powers), ("covariances", self.reads_covariances)):
            if read:
                width = head_spectral_width(N_CANONICAL, name == "band_powers", name == "covariances")
                groups[name], start = slice(start, start + width), start + width
        return groups

    def read_only(self, inputs: list[str] | tuple[str, ...]) -> None:
        """Read only ``inputs`` of :meth:`probe_feature_groups` (the embedding always) from now on:
        the spectral layer's other inputs are gated to zero, so no gradient reaches their weights."""
        groups = self.probe_feature_groups()
        unknown = sorted(set(inputs) - set(groups))
        if unknown or "embedding" not in inputs:
            raise ValueError(f"inputs: expected 'embedding' and any of {sorted(groups)}; got {list(inputs)}")
        if self.fc_bands is None:
            return
        with torch.no_grad():
            offset = self.fc.in_features
            for name, columns in groups.items():
                if name != "embedding":
                    self.band_gate[columns.start - offset : columns.stop - offset] = float(name in inputs)

    def set_linear(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Set the head's linear layers from one (n_outputs, F) ``weight`` on :meth:`probe_features`."""
        width = self.fc.in_features
        with torch.no_grad():
            self.fc.weight.copy_(weight[:, :width].to(self.fc.weight))
            self.fc.bias.copy_(bias.to(self.fc.bias))
            if self.fc_bands is not None:
                self.fc_bands.weight.copy_(weight[:, width:].to(self.fc_bands.weight))

    @classmethod
    def n_outputs(cls, config: EEGFMConfig, use_config_labels: bool) -> int:  # noqa: D401
        """Output width; ``use_config_labels`` when this is the config's main head."""
        if cls.default_labels is None:
            raise NotImplementedError
        if use_config_labels and config.id2label is not None and len(config.id2label) != len(cls.default_labels):
            raise ConfigError(
                f"EEGFMConfig.id2label: head {cls.name!r} expects {len(cls.default_labels)} labels "
                f"({', '.join(cls.default_labels)}); got {len(config.id2label)}: {config.id2label}"
            )
        return len(cls.default_labels)

    def pre_logits(self, features: EncoderOutput | torch.Tensor) -> torch.Tensor:
        pooled = features if isinstance(features, torch.Tensor) else features.pooled
        return self.dropout(self.norm(pooled))

    def forward(self, features: EncoderOutput | torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pre_logits(features)
        if pre_logits:
            return x
        return self.fc(x) if self.fc_bands is None else self.fc(x) + self.band_logits(features)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar float32 loss; 0 with a gradient path when no target counts."""
        raise NotImplementedError

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(dim=-1)


def _check_target_size(head: str, logits: torch.Tensor, target: torch.Tensor, per_sample: str) -> None:
    if target.numel() != logits.numel():
        raise ValueError(
            f"{head} target: expected {per_sample} per sample, {logits.numel()} values for "
            f"logits of shape {tuple(logits.shape)}; got shape {tuple(target.shape)}"
        )


def _masked_mean(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``keep``; 0 (with a gradient path) when nothing is kept."""
    keep = keep.to(values.dtype)
    return (values * keep).sum() / keep.sum().clamp(min=1.0)


@register_head("hms6")
class HMSHead(TaskHead):
    """Six HMS classes trained on expert-vote distributions (Kaggle metric: KL divergence)."""

    default_labels = HMS_CLASSES

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.shape != logits.shape:
            raise ValueError(f"hms6 target: expected votes of shape {tuple(logits.shape)}; got {tuple(target.shape)}")
        logits, target = logits.float(), target.float()
        total = target.sum(dim=-1, keepdim=True)
        distribution = target / total.clamp(min=1e-12)
        log_p = F.log_softmax(logits, dim=-1)
        kl = (torch.xlogy(distribution, distribution) - distribution * log_p).sum(dim=-1)
        return _masked_mean(kl, total.squeeze(-1) > 0)  # windows without votes do not count


@register_head("binary")
class BinaryHead(TaskHead):
    default_labels = ("negative", "positive")

    @classmethod
    def n_outputs(cls, config: EEGFMConfig, use_config_labels: bool) -> int:
        super().n_outputs(config, use_config_labels)
        return 1

    def forward(self, features: EncoderOutput | torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = super().forward(features, pre_logits)
        return x if pre_logits else x.squeeze(-1)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_target_size(self.name, logits, target, "one 0/1 label")
        logits = logits.float()
        target = target.float().reshape(logits.shape)
        keep = (target == 0) | (target == 1)
        safe = torch.where(keep, target, torch.zeros_like(target))
        loss = F.binary_cross_entropy_with_logits(logits, safe, reduction="none")
        return _masked_mean(loss, keep)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)


@register_head("multiclass")
class MultiClassHead(TaskHead):
    """Single-label classification over ``config.id2label`` (at least two classes)."""

    @classmethod
    def n_outputs(cls, config: EEGFMConfig, use_config_labels: bool) -> int:
        if cls.default_labels is not None:  # a subclass with a fixed label set
            return super().n_outputs(config, use_config_labels)
        if not use_config_labels:
            raise ConfigError(
                f"EEGFMConfig.auxiliary_head: head {cls.name!r} takes its classes from id2label, "
                "so it can only be the main head"
            )
        n = len(config.id2label or {})
        if n < 2:
            raise ConfigError(
                f"EEGFMConfig.id2label: head {cls.name!r} needs at least 2 classes; got {config.id2label}"
            )
        return n

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # Masked mean, not logits[keep]: no host sync or data-dependent shapes, 0 (not NaN) without labels.
        _check_target_size(self.name, logits[..., 0], target, "one class index")
        target = target.reshape(-1).long()
        keep = target >= 0
        loss = F.cross_entropy(logits.float(), target.clamp(min=0), reduction="none")
        return _masked_mean(loss, keep)


@register_head("regression")
class RegressionHead(TaskHead):
    """Real-valued targets, one per ``config.id2label`` entry (default: one, named "target")."""

    default_labels = ("target",)

    @classmethod
    def n_outputs(cls, config: EEGFMConfig, use_config_labels: bool) -> int:
        if use_config_labels and config.id2label:
            return len(config.id2label)
        return 1

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_target_size(self.name, logits, target, f"{logits.shape[-1]} value(s)")
        logits = logits.float()
        target = target.float().reshape(logits.shape)
        keep = ~torch.isnan(target)
        error = (logits - torch.where(keep, target, torch.zeros_like(target))).square()
        return _masked_mean(error, keep)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return logits


@register_head("sleep_stage")
class SleepStageHead(MultiClassHead):
    """Five sleep stages (AASM); the default auxiliary pretraining head."""

    default_labels = SLEEP_STAGES
