"""An ensemble of fine-tuned models (the eegfm encoder on raw EEG, the spectrogram CNN ...), stacked
by weights fitted on the validation windows.

Combination (log-linear pooling, a weighted product of experts)::

    log p(c | x) = log_softmax_c( sum_m w_m * log p_m(c | x) + b_c ),   w_m >= 0

chosen over a weighted mean of probabilities because (1) ``w_m`` is also member m's inverse
temperature, so stacking calibrates the members and the ensemble in one fit (the members' own
temperatures are not used; the ensemble's ``temperature`` is 1); (2) the KL (or cross-entropy) of
this form is convex in (w, b), so L-BFGS-B with the bounds w >= 0 finds the global optimum, and a
member that carries no information beyond the others gets w = 0; (3) members that agree sharpen
the prediction, as independent evidence should. The bias ``b`` (optional; ``training.ensemble``
fits it only with ``--bias fit``) absorbs the members' shared prior.

Saved folder: ``ensemble.json`` (member folders relative to it, weights, bias, labels, how and on
which windows the weights were fitted, validation scores) and one subfolder per member, each a
model folder as fine-tuning writes it: one model of a registered architecture, loaded through
``model.registry``. ``EnsembleModel.from_pretrained(folder)`` loads it; serving, ``eegfm-predict``
and the ONNX export load it through ``model.architectures.load_model_folder``.

Outputs: ``forward(...)`` -> ``EEGFMOutput`` with ``logits`` (B, C), the stacked log-probabilities
(valid logits), and ``pooled``, the members' embeddings side by side; ``sample_logits(...)`` ->
(B, members, C), every member's log-probabilities (the predictor's spread across members).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import optimize
from torch import nn

from eegfm.contract.model_files import ENSEMBLE as ENSEMBLE_FILE
from eegfm.core.config import ConfigError
from eegfm.model.classifier import EEGFMOutput
from eegfm.model.config import KAGGLE_SPECTROGRAM_BINS, MODALITIES
from eegfm.model.export import ExportableEEGFM
from eegfm.model.registry import architecture_of, load_single_model, single_model_config

EEG_INPUTS = ("eeg", "positions", "channel_mask")
MODALITY_INPUTS = {"spectrogram": ("spectrogram",), "ecg": ("ecg",), "clinical": ("age", "sex")}
FORMAT_VERSION = 1


def labels_of(config: Any) -> list[str]:
    return [str(v) for _, v in sorted((config.id2label or {}).items(), key=lambda kv: int(kv[0]))]


@dataclasses.dataclass
class EnsembleConfig:
    """``ensemble.json``, and what every model's config answers (read from the members')."""

    members: list[str]  # member folders, relative to the ensemble folder
    weights: list[float]
    bias: list[float]
    labels: list[str]
    fit: dict[str, Any] = dataclasses.field(default_factory=dict)  # objective, windows, scores ...
    member_configs: list[Any] = dataclasses.field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        n = len(self.members)
        if n < 1 or len(self.weights) != n:
            raise ConfigError(f"ensemble.json: expected one weight per member ({n} members); got {self.weights}")
        if any(not math.isfinite(w) or w < 0 for w in self.weights):
            raise ConfigError(f"ensemble.json weights: expected finite numbers >= 0; got {self.weights}")
        if len(self.bias) != len(self.labels) or len(self.labels) < 2:
            raise ConfigError(
                f"ensemble.json bias: expected one value per label (at least 2 labels); got bias {self.bias}, "
                f"labels {self.labels}"
            )
        for name, config in zip(self.members, self.member_configs):
            if labels_of(config) != self.labels or config.head == "regression":
                raise ConfigError(
                    f"ensemble member {name}: expected a classifier of labels {self.labels}; got head "
                    f"{config.head!r} with labels {labels_of(config)}"
                )

    # What serving and export read from any model's config.
    head = property(lambda self: self.member_configs[0].head)
    temperature = 1.0  # the stacking weights calibrate (module docstring)
    mc_passes = property(lambda self: len(self.members))  # uncertainty samples: one per member
    architectures = ["EnsembleModel"]
    sfreq = property(lambda self: float(self.member_configs[0].sfreq))
    spectrogram_bins = KAGGLE_SPECTROGRAM_BINS

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    @property
    def modalities(self) -> list[str]:
        return [m for m in MODALITIES if any(m in c.modalities for c in self.member_configs)]

    @property
    def patch_size(self) -> int:
        return math.lcm(*(int(c.patch_size) for c in self.member_configs))

    @property
    def fixed_channels(self) -> int | None:
        """The channel count a member with one input per channel fixes (the ONNX export's); else None."""
        counts = {c.fixed_channels for c in self.member_configs if getattr(c, "fixed_channels", None)}
        return counts.pop() if len(counts) == 1 else None

    @property
    def spectrogram_pool(self) -> int:
        """Frames the graph reads whole multiples of: the eegfm members' spectrogram tokens."""
        pools = [int(getattr(c, "spectrogram_pool", 1)) for c in self.member_configs if "spectrogram" in c.modalities]
        return math.lcm(*pools) if pools else 1

    def to_json(self) -> dict[str, Any]:
        fields = ("members", "weights", "bias", "labels", "fit")
        return {"format_version": FORMAT_VERSION, **{k: getattr(self, k) for k in fields}}

    @classmethod
    def from_folder(cls, folder: str | os.PathLike[str]) -> EnsembleConfig:
        """``folder``'s ensemble.json with its members' configs; errors name the file and field."""
        path = Path(folder) / ENSEMBLE_FILE
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            values = {k: saved[k] for k in ("members", "weights", "bias", "labels")}
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"{path}: expected members, weights, bias and labels; {err!r}") from None
        configs = [single_model_config(Path(folder) / member) for member in values["members"]]
        return cls(**values, fit=saved.get("fit", {}), member_configs=configs)


def member_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """A classifier's log-probabilities; a binary head's single logit z reads as [0, z]."""
    logits = logits.float()
    if logits.dim() == 1 or logits.shape[-1] == 1:
        z = logits.reshape(-1)
        logits = torch.stack([torch.zeros_like(z), z], dim=-1)
    return F.log_softmax(logits, dim=-1)


class EnsembleModel(nn.Module):
    """Members and stacking weights; see the module docstring."""

    def __init__(self, members: list[nn.Module], config: EnsembleConfig) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.config = config
        self.register_buffer("weights", torch.tensor(config.weights, dtype=torch.float32))
        self.register_buffer("bias", torch.tensor(config.bias, dtype=torch.float32))

    @property
    def required_inputs(self) -> tuple[str, ...]:
        """Inputs some member cannot do without (the spectrogram CNN's ``spectrogram``)."""
        return tuple(dict.fromkeys(n for m in self.members for n in getattr(m, "required_inputs", ())))

    @staticmethod
    def inputs_of(member: nn.Module, inputs: dict[str, torch.Tensor | None]) -> dict[str, torch.Tensor]:
        """The inputs ``member`` takes: EEG (always accepted) and its configured modalities."""
        names = [*EEG_INPUTS, *(n for m in member.config.modalities for n in MODALITY_INPUTS[m])]
        return {n: inputs[n] for n in names if inputs.get(n) is not None}

    def _member_outputs(self, **inputs: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        log_probs, pooled = [], []
        for member in self.members:
            out = member(**self.inputs_of(member, inputs), return_dict=True)
            log_probs.append(member_log_probs(out.logits))
            pooled.append(out.pooled.float())
        return torch.stack(log_probs, dim=1), torch.cat(pooled, dim=-1)

    def sample_logits(self, eeg: torch.Tensor | None = None, **inputs: torch.Tensor | None) -> torch.Tensor:
        """(B, members, C): every member's log-probabilities, for the inputs of ``forward``."""
        return self._member_outputs(eeg=eeg, **inputs)[0]

    def stack(self, log_probs: torch.Tensor) -> torch.Tensor:
        """(B, members, C) member log-probabilities -> (B, C) ensemble log-probabilities."""
        combined = torch.einsum("bmc,m->bc", log_probs, self.weights.to(log_probs)) + self.bias.to(log_probs)
        return F.log_softmax(combined, dim=-1)

    def forward(
        self, eeg: torch.Tensor | None = None, *, return_dict: bool | None = None, **inputs: torch.Tensor | None
    ) -> EEGFMOutput | tuple:
        """``EEGFMOutput`` (``logits``: stacked log-probabilities; ``pooled``: members' embeddings) of
        the inputs by name: ``eeg``, ``positions``, ``channel_mask`` and the modalities'."""
        unknown = set(inputs) - {*EEG_INPUTS, *(n for names in MODALITY_INPUTS.values() for n in names)}
        if unknown:
            raise TypeError(f"EnsembleModel: unexpected inputs {sorted(unknown)}")
        log_probs, pooled = self._member_outputs(eeg=eeg, **inputs)
        output = EEGFMOutput(logits=self.stack(log_probs), pooled=pooled)
        return output if return_dict in (None, True) else output.to_tuple()

    def exportable(self) -> ExportableEnsemble:
        """The ONNX export wrapper (``model.export.export_onnx`` asks for it); a member that
        cannot be exported (``EEGCNNGRU``) refuses here, by name."""
        for member in self.members:
            if (check := getattr(member, "exportable", None)) is not None:
                check()
        return ExportableEnsemble(self)

    def predict(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Class probabilities, in eval mode without gradients."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                return self(*args, **kwargs).logits.exp()
        finally:
            self.train(was_training)

    def save_pretrained(self, folder: str | os.PathLike[str]) -> Path:
        """Write every member to its subfolder and ensemble.json beside them."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, member in zip(self.config.members, self.members):
            member.save_pretrained(folder / name)
        self.config.weights = [float(w) for w in self.weights]
        self.config.bias = [float(b) for b in self.bias]
        (folder / ENSEMBLE_FILE).write_text(json.dumps(self.config.to_json(), indent=2) + "\n", encoding="utf-8")
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike[str]) -> EnsembleModel:
        config = EnsembleConfig.from_folder(folder)
        members = [load_single_model(Path(folder) / name) for name in config.members]
        return cls(members, config)

    @classmethod
    def from_members(
        cls, folders: list[str | os.PathLike[str]], weights: list[float] | None = None, bias: list[float] | None = None
    ) -> EnsembleModel:
        """An ensemble of saved model folders (equal weights and zero bias until fitted)."""
        members = [load_single_model(f) for f in folders]
        labels = labels_of(members[0].config)
        names = [f"members/{i}-{architecture_of(f).name}" for i, f in enumerate(folders)]
        config = EnsembleConfig(
            members=names,
            weights=list(weights or [1.0 / len(members)] * len(members)),
            bias=list(bias or [0.0] * len(labels)),
            labels=labels,
            member_configs=[m.config for m in members],
        )
        return cls(members, config)


class ExportableEnsemble(ExportableEEGFM):
    """One ONNX graph of the members and the weights: outputs ``logits`` (B, C) (stacked
    log-probabilities), ``embedding`` (the members' side by side) and ``sample_logits`` (B, M, C)."""

    def output_names(self) -> list[str]:
        return ["logits", "embedding", "sample_logits"]

    def forward(
        self, eeg: torch.Tensor, positions: torch.Tensor, channel_mask: torch.Tensor, *optional: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        extra = dict(zip(self.input_names()[3:], optional))
        log_probs, pooled = self.model._member_outputs(eeg=eeg, positions=positions, channel_mask=channel_mask, **extra)
        return self.model.stack(log_probs), pooled, log_probs


def _objective(log_probs: torch.Tensor, target: torch.Tensor, l2: float):
    """f(theta) -> (mean cross-entropy to ``target`` + l2 |b|^2, gradient) for scipy, theta = [w, b]."""
    n_members = log_probs.shape[1]

    def value_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        params = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
        w, b = params[:n_members], params[n_members:]
        log_p = F.log_softmax(torch.einsum("bmc,m->bc", log_probs, w) + b, dim=-1)
        loss = -(target * log_p).sum(dim=-1).mean() + l2 * b.square().sum()
        loss.backward()
        return float(loss.detach()), params.grad.numpy().copy()

    return value_and_grad


def fit_stacking(
    log_probs: torch.Tensor, target: torch.Tensor, *, l2: float = 1e-4, fit_bias: bool = True
) -> tuple[list[float], list[float], dict[str, Any]]:
    """Weights (>= 0) and bias minimising the mean KL from ``target`` to the stacked prediction.

    ``log_probs``: (N, members, C) member log-probabilities of the VALIDATION windows only.
    ``target``: (N, C) vote counts or distributions (soft targets; KL differs from cross-entropy by
    the targets' entropy, a constant) or (N,) class indices (hard labels: cross-entropy). Windows
    without a target are left out. ``l2`` (on the bias) keeps it finite where a class never occurs,
    and larger values shrink it towards the members' own prior; ``fit_bias=False`` keeps it at 0.
    Returns (weights, bias, {objective, windows, kl_before (equal weights), kl_after, converged}).
    """
    log_probs = log_probs.detach().double()
    n, n_members, n_classes = log_probs.shape
    target = target.detach().double()
    if target.dim() == 1:
        objective = "cross_entropy"
        keep = target >= 0
        target = F.one_hot(target.clamp(min=0).long(), n_classes).double()
    else:
        objective = "kl"
        keep = target.sum(dim=-1) > 0
        target = target / target.sum(dim=-1, keepdim=True).clamp(min=1e-12)
    log_probs, target = log_probs[keep], target[keep]
    if len(target) == 0:
        raise ValueError("fit_stacking: no validation window has a target; cannot fit the stacking weights")
    entropy = float(torch.xlogy(target, target).sum(dim=-1).mean())
    function = _objective(log_probs, target, l2)
    start = np.concatenate([np.full(n_members, 1.0 / n_members), np.zeros(n_classes)])
    bounds = [(0.0, None)] * n_members + [(None, None) if fit_bias else (0.0, 0.0)] * n_classes
    result = optimize.minimize(function, start, jac=True, method="L-BFGS-B", bounds=bounds)
    weights, bias = result.x[:n_members], result.x[n_members:]
    info = {
        "objective": objective,
        "optimizer": "scipy L-BFGS-B, weights >= 0",
        "bias": f"fitted, l2 {l2:g}" if fit_bias else "none",
        "windows": int(len(target)),
        "kl_equal_weights": function(start)[0] + entropy,
        "kl_fitted": float(result.fun) + entropy,
        "converged": bool(result.success),
    }
    return [float(w) for w in weights], [float(b) for b in bias], info
