"""Two tests an explanation must pass before anyone reads it as the model's reasons.

Both compare maps (``inference.explain.attribution``: each channel-second's signed contribution to a class's
logit) by the *absolute* Spearman rank correlation: a map and its negative are one explanation read
two ways (``a_c * g(x)`` for a negative ``a_c`` is still ``g``'s map).

**Class specificity.** A published spectrogram-XAI report on the HMS task found Grad-CAM and
integrated-gradient maps nearly identical for every class: the maps showed where the model looks,
not why it chose one class over another. Here the predicted class's map is rank-correlated with
every other class's; the window fails when the *median* of these |correlations| exceeds the
threshold (default 0.9). The median, not the maximum: clinically related classes (seizure and LPD,
LRDA and GRDA) may rightly share their evidence, and one such pair must not condemn a window,
whereas the failure reported was every class sharing one map, which moves the median.
``statistic="max"`` is the stricter choice.

**Model randomisation** (Adebayo et al. 2018, "Sanity checks for saliency maps"). The predicted
class's map is recomputed on a copy of the model whose every weight tensor is redrawn from a
normal distribution with that tensor's own mean and standard deviation (the same scale, none of
the learned structure); an explanation that survives the model losing what it learned shows the
input (its amplitude, its artifacts) or the architecture, not the model: the window fails when the
two maps' |rank correlation| exceeds the threshold (default 0.5).

A map that is constant has no ranking: two constant maps count as identical (correlation 1), a
constant map against a varying one as unrelated (0).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

SPECIFICITY_STATISTICS = ("median", "max")


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps of the same shape, flattened (see the module
    docstring for constant maps)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"rank_correlation: maps of different sizes ({a.size} and {b.size} values)")
    constant_a, constant_b = np.ptp(a) == 0, np.ptp(b) == 0
    if constant_a or constant_b:
        return 1.0 if constant_a and constant_b else 0.0
    return float(spearmanr(a, b).statistic)


def class_specificity(
    maps: np.ndarray, predicted: int, labels: list[str], *, threshold: float, statistic: str = "median"
) -> dict:
    """The predicted class's map (``maps[predicted]`` of (n_classes, ...)) against each other
    class's: the (signed) correlations, the ``statistic`` of their absolute values and whether it
    stays at or below ``threshold``."""
    if statistic not in SPECIFICITY_STATISTICS:
        raise ValueError(f"statistic: expected one of {', '.join(SPECIFICITY_STATISTICS)}; got {statistic!r}")
    if len(maps) < 2:
        return {"applicable": False, "passed": True, "note": "one output: no other class to compare with"}
    correlations = {
        labels[c]: round(rank_correlation(maps[predicted], maps[c]), 4) for c in range(len(maps)) if c != predicted
    }
    values = [abs(v) for v in correlations.values()]
    value = float(np.median(values) if statistic == "median" else np.max(values))
    return {
        "applicable": True,
        "statistic": statistic,
        "value": round(value, 4),
        "threshold": threshold,
        "correlations": correlations,
        "passed": bool(value <= threshold),
    }


@torch.no_grad()
def randomised_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with every floating-point parameter redrawn from N(mean, std) of that
    tensor (a one-element or constant tensor keeps its value: it has no spread to draw from);
    ``model`` itself is untouched."""
    clone = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    for parameter in clone.parameters():
        if not parameter.is_floating_point() or parameter.numel() < 2:
            continue
        values = parameter.detach().float()
        mean, std = values.mean(), values.std()
        noise = torch.randn(parameter.shape, generator=generator)
        parameter.copy_((mean + std * noise).to(device=parameter.device, dtype=parameter.dtype))
    return clone.eval()


def randomisation_check(trained_map: np.ndarray, randomised_map: np.ndarray, *, threshold: float) -> dict:
    """Whether the predicted class's map changed when the weights were randomised (|correlation|)."""
    value = abs(rank_correlation(trained_map, randomised_map))
    return {"correlation": round(value, 4), "threshold": threshold, "passed": bool(value <= threshold)}


def verdict(specificity: dict, randomisation: dict, predicted_map: np.ndarray) -> tuple[bool, str]:
    """``explanation_reliable`` and ``why`` (empty when reliable), naming each failed check and
    its statistic."""
    reasons = []
    if np.ptp(np.asarray(predicted_map)) == 0 or not math.isfinite(float(np.sum(predicted_map))):
        reasons.append(
            "attribution: the predicted class's map is constant or not finite (no gradient reaches the input)"
        )
    if not specificity["passed"]:
        reasons.append(
            f"class specificity: {specificity['statistic']} |rank correlation| with the other classes' maps "
            f"{specificity['value']:.3f} > {specificity['threshold']:g} (the maps do not depend on the class)"
        )
    if not randomisation["passed"]:
        reasons.append(
            f"model randomisation: |rank correlation| with the randomised model's map "
            f"{randomisation['correlation']:.3f} > {randomisation['threshold']:g} (the map does not depend "
            "on the learned weights)"
        )
    return not reasons, "; ".join(reasons)
