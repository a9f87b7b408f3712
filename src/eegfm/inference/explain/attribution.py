"""Why the model predicted what it did for one window: integrated gradients per class, checked.

``explain_window(model, inputs, labels, config)`` gives a :class:`WindowExplanation`: for every
class, Captum's ``IntegratedGradients`` of the class's logit with respect to the EEG input
(19 channels x n_times at 256 Hz, in microvolts), summed per channel and second into the class's
*map* (each channel-second's contribution to the logit: by completeness the map adds up to the
logit's change from the baseline); the encoder's attention (``inference.explain.attention``); and the
two checks of ``inference.explain.checks`` (class specificity, model randomisation), whose verdict is
``explanation_reliable`` with a ``why``.

Choices, and why:

- Target: the class's *centred* logit, z_c - mean_k z_k (``target="logit"``: the raw one). A
  probability's gradient mixes in every other class's logit, making the maps alike by
  construction; a raw logit also carries a shift common to all classes that softmax training never
  constrains.
- Signed maps, not |attribution|: evidence for one class is often evidence against another at the
  same place (a left temporal discharge: for LPD, against LRDA). Summed |attribution| keeps the
  place and drops the direction, and mostly follows the EEG's amplitude: on the tiny model
  fine-tuned on the simulated HMS classes, the |attribution| maps of the six classes rank-correlated
  at 0.96-0.97 in every window tried (the "same map for every class" of the published report),
  their signed maps at 0.26-0.67. The JSON (``serving.explain.report``) still ranks the top
  channels and seconds by summed |attribution| (where the model is sensitive) and gives each one's
  signed contribution.
- Baseline zeros: 0 µV on every channel is a flat, silent EEG, which the pipeline's band-pass
  filtering makes the signal's own mean, so a map is the contributions to the logit's difference
  between this window and no activity at all. A blurred or noise baseline would attribute only what
  differs from a background the model may itself call "other".
- The path is integrated in pieces, decade by decade (``PATH_BREAKS``), ``steps`` (default 8)
  Gauss-Legendre points each: the logits change mostly in the path's first thousandth. Each
  class's completeness error (attributions' sum minus the logit's change from the baseline,
  relative to that change) is reported, so too few steps show.
- The other inputs (positions, channel mask, optional modalities) are held fixed: only the EEG is
  explained.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torch import nn

from eegfm.contract.schema import SFREQ
from eegfm.core.config import Config, check_int, check_option, check_range
from eegfm.inference.explain.attention import attention_maps
from eegfm.inference.explain.checks import (
    SPECIFICITY_STATISTICS,
    class_specificity,
    randomisation_check,
    randomised_copy,
    verdict,
)

TARGETS = ("centred_logit", "logit")


@dataclasses.dataclass
class ExplainConfig(Config):
    """How windows are explained and when an explanation counts as reliable."""

    target: str = "centred_logit"  # what is attributed: see the module docstring
    steps: int = 8  # Gauss-Legendre points per piece of the path (PATH_BREAKS: 7 pieces)
    max_windows: int = 4  # per recording: its most confident windows
    resolution_seconds: float = 1.0  # the maps' time bins (the model's patches are 1 s)
    specificity_statistic: str = "median"  # of the correlations with the other classes' maps
    specificity_threshold: float = 0.9
    randomisation_threshold: float = 0.5
    top_k: int = 5  # channels and seconds listed per class
    internal_batch_size: int = 64  # rows (path point x class x piece) per forward pass: bounds memory
    seed: int = 0  # the randomised model's weights

    def validate(self) -> None:
        check_option("target", self.target, TARGETS)
        check_int("steps", self.steps, 2, 1024)
        check_int("max_windows", self.max_windows, 1)
        check_range("resolution_seconds", self.resolution_seconds, 1 / SFREQ, 3600)
        check_option("specificity_statistic", self.specificity_statistic, SPECIFICITY_STATISTICS)
        check_range("specificity_threshold", self.specificity_threshold, -1.0, 1.0)
        check_range("randomisation_threshold", self.randomisation_threshold, -1.0, 1.0)
        check_int("top_k", self.top_k, 1)
        check_int("internal_batch_size", self.internal_batch_size, 1)
        check_int("seed", self.seed, 0)


@dataclasses.dataclass
class WindowExplanation:
    labels: list[str]
    probabilities: np.ndarray  # (n_classes,)
    predicted: int
    attributions: np.ndarray  # (n_classes, C, T) signed, of each class's target (config.target)
    maps: np.ndarray  # (n_classes, C, n_bins) signed attribution summed per bin (contributions)
    randomised_map: np.ndarray  # (C, n_bins): the predicted class's map on the randomised model
    completeness: np.ndarray  # (n_classes,) relative completeness error
    attention: dict[str, np.ndarray]  # inference.explain.attention's maps of this window
    specificity: dict[str, Any]
    randomisation: dict[str, Any]
    reliable: bool
    why: str


def class_logits(
    model: nn.Module, eeg: torch.Tensor, *extra: torch.Tensor, keys: tuple[str, ...] = (), centred: bool = False
) -> torch.Tensor:
    """(B, n_outputs) logits of ``model(eeg, **extra)``; a binary head's (B,) becomes (B, 1).
    ``centred``: minus their mean over the classes (where there are several)."""
    out = model(eeg, **dict(zip(keys, extra, strict=True)))
    logits = getattr(out, "logits", out).reshape(len(eeg), -1)
    return logits - logits.mean(dim=-1, keepdim=True) if centred and logits.shape[-1] > 1 else logits


# The straight path from the zero baseline is cut at these fractions of the window (decades) and
# each piece integrated with ``steps`` Gauss-Legendre points: the encoder layer-normalises each
# patch's embedding, so the logits are nearly scale invariant and change mostly within the first
# 1/1000 of the path, which evenly spread points miss (a tiny model's completeness error was ~100%
# at 32 or 512 uniform points, under 0.5% with 8 per piece). The pieces sum to the same integral.
PATH_BREAKS = (0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def integrated_gradients(
    model: nn.Module,
    inputs: dict[str, torch.Tensor],
    targets: list[int],
    *,
    steps: int,
    internal_batch_size: int,
    centred: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(len(targets), C, T) attributions of the given logits of one window's ``inputs`` (batch 1),
    zero baseline, along the straight path in the pieces of ``PATH_BREAKS`` (``centred``: of the
    centred logits); and each target's relative completeness error, |sum of attributions - logit
    change| / |logit change|."""
    from captum.attr import IntegratedGradients  # the model extra's captum: only where explained

    eeg = inputs["eeg"].float()
    if eeg.shape[0] != 1:
        raise ValueError(f"inputs: expected one window (eeg of shape (1, C, T)); got {tuple(eeg.shape)}")
    keys = tuple(k for k in inputs if k != "eeg")
    n_rows = len(targets) * (len(PATH_BREAKS) - 1)
    extra = tuple(inputs[k].expand(n_rows, *inputs[k].shape[1:]) for k in keys)
    # rows: piece-major, target-minor; piece j runs from PATH_BREAKS[j] * x to PATH_BREAKS[j + 1] * x
    scales = torch.tensor(PATH_BREAKS, dtype=eeg.dtype).repeat_interleave(len(targets))
    starts = eeg * scales[:n_rows].view(-1, 1, 1)
    ends = eeg * scales[len(targets) :].view(-1, 1, 1)
    method = IntegratedGradients(lambda x, *more: class_logits(model, x, *more, keys=keys, centred=centred))
    pieces = method.attribute(
        ends,
        baselines=starts,
        target=targets * (len(PATH_BREAKS) - 1),
        additional_forward_args=extra or None,
        n_steps=steps,
        internal_batch_size=max(internal_batch_size, n_rows),  # captum: at least one path point's rows
    )
    attributions = pieces.detach().double().view(len(PATH_BREAKS) - 1, len(targets), *eeg.shape[1:]).sum(dim=0)
    with torch.no_grad():
        both = torch.cat([eeg, torch.zeros_like(eeg)])
        kept = {k: v.expand(2, *v.shape[1:]) for k, v in inputs.items() if k != "eeg"}
        logits = class_logits(model, both, *kept.values(), keys=tuple(kept), centred=centred).double()
    change = (logits[0] - logits[1])[targets]
    error = (attributions.sum(dim=(1, 2)) - change).abs() / change.abs().clamp_min(1e-12)
    return attributions.numpy(), error.numpy()


def binned(attributions: np.ndarray, resolution_seconds: float, *, absolute: bool = False) -> np.ndarray:
    """Attributions (..., T) summed over bins of ``resolution_seconds`` -> (..., n_bins): signed
    (each bin's contribution) or, ``absolute``, their magnitudes; a trailing part shorter than a
    bin is left out (as the model leaves out a partial patch)."""
    width = max(1, int(round(resolution_seconds * SFREQ)))
    n_bins = attributions.shape[-1] // width
    if n_bins == 0:
        raise ValueError(f"resolution_seconds: {resolution_seconds:g} s is longer than the window")
    kept = attributions[..., : n_bins * width]
    kept = np.abs(kept) if absolute else kept
    return kept.reshape(*attributions.shape[:-1], n_bins, width).sum(axis=-1)


def explain_window(
    model: nn.Module,
    inputs: dict[str, torch.Tensor],
    labels: list[str],
    config: ExplainConfig,
    *,
    temperature: float = 1.0,
    randomised: nn.Module | None = None,
) -> WindowExplanation:
    """Attributions, attention and checks of one window (``inputs``: batch 1, the model's forward
    arguments); ``randomised``: the model's randomised copy (made here when None; pass one to reuse
    it across windows)."""
    model.eval()
    keys = tuple(k for k in inputs if k != "eeg")
    with torch.no_grad():
        logits = class_logits(model, inputs["eeg"].float(), *(inputs[k] for k in keys), keys=keys)[0].double()
    n_outputs = len(logits)
    probabilities = _probabilities(logits, temperature)
    predicted = int(np.argmax(probabilities)) if n_outputs > 1 else 0
    steps = dict(
        steps=config.steps, internal_batch_size=config.internal_batch_size, centred=config.target == "centred_logit"
    )
    attributions, completeness = integrated_gradients(model, inputs, list(range(n_outputs)), **steps)
    maps = binned(attributions, config.resolution_seconds)
    randomised = randomised if randomised is not None else randomised_copy(model, config.seed)
    random_attr, _ = integrated_gradients(randomised, inputs, [predicted], **steps)
    randomised_map = binned(random_attr[0], config.resolution_seconds)
    labels = list(labels)
    if len(labels) != n_outputs:  # a binary head's one logit is its positive (second) label's
        labels = [labels[-1]] if n_outputs == 1 and len(labels) == 2 else [f"output{k}" for k in range(n_outputs)]
    specificity = class_specificity(
        maps,
        predicted,
        labels,
        threshold=config.specificity_threshold,
        statistic=config.specificity_statistic,
    )
    randomisation = randomisation_check(maps[predicted], randomised_map, threshold=config.randomisation_threshold)
    reliable, why = verdict(specificity, randomisation, maps[predicted])
    attention = {name: value[0].double().numpy() for name, value in attention_maps(model, inputs).items()}
    return WindowExplanation(
        labels=labels,
        probabilities=probabilities,
        predicted=predicted,
        attributions=attributions,
        maps=maps,
        randomised_map=randomised_map,
        completeness=completeness,
        attention=attention,
        specificity=specificity,
        randomisation=randomisation,
        reliable=reliable,
        why=why,
    )


def _probabilities(logits: torch.Tensor, temperature: float) -> np.ndarray:
    """Softmax of the logits over the temperature; one logit: its sigmoid (a binary head's
    positive class; a regression head is not explained)."""
    if len(logits) == 1:
        return torch.sigmoid(logits / temperature).numpy()
    return torch.softmax(logits / temperature, dim=-1).numpy()
