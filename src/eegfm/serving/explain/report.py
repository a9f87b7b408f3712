"""One window's explanation as JSON (``explanations/NNN_<token>_w<k>.json`` of eegfm-predict).

Per class: its probability, its top channels and seconds ranked by summed |attribution| (where the
model is sensitive), each with its share and its signed contribution to the class's target; the
completeness error. Then the checks' statistics, the attention's top channels and seconds, and the
verdict (``explanation_reliable``, ``why``). Channels are the 19 canonical names.
"""

from __future__ import annotations

import numpy as np

from eegfm.contract.schema import CHANNELS, SFREQ
from eegfm.inference.explain.attribution import ExplainConfig, WindowExplanation, binned


def _ranked(magnitude: np.ndarray, contribution: np.ndarray, names: list, key: str, top_k: int) -> list[dict]:
    """The ``top_k`` names by ``magnitude``, each with its share of the total and its signed
    ``contribution`` (None where there is none: attention)."""
    total = float(magnitude.sum()) or 1.0
    order = np.argsort(-magnitude, kind="stable")[:top_k]
    return [
        {
            key: names[i],
            "share": round(float(magnitude[i]) / total, 4),
            **({} if contribution is None else {"contribution": round(float(contribution[i]), 6)}),
        }
        for i in order
    ]


def explanation_json(explanation: WindowExplanation, config: ExplainConfig, *, start_s: float = 0.0) -> dict:
    """The window's explanation as JSON: per class its probability, top channels and seconds
    (shares of the class's summed |attribution|), completeness error; the checks; the attention's
    top channels and seconds; ``explanation_reliable`` and ``why``."""
    n_bins = explanation.maps.shape[-1]
    seconds = [round(start_s + k * config.resolution_seconds, 3) for k in range(n_bins)]
    channels = list(CHANNELS) if explanation.maps.shape[1] == len(CHANNELS) else None
    if channels is None:
        raise ValueError(
            f"explanation: expected the {len(CHANNELS)} canonical channels; got {explanation.maps.shape[1]}"
        )
    classes = {}
    magnitudes = binned(explanation.attributions, config.resolution_seconds, absolute=True)
    for c, label in enumerate(explanation.labels):
        size, signed = magnitudes[c], explanation.maps[c]
        classes[label] = {
            "probability": round(float(explanation.probabilities[c]), 6),
            "top_channels": _ranked(size.sum(axis=1), signed.sum(axis=1), channels, "channel", config.top_k),
            "top_seconds": _ranked(size.sum(axis=0), signed.sum(axis=0), seconds, "start_s", config.top_k),
            "completeness_error": round(float(explanation.completeness[c]), 4),
        }
    # The pooling weights sum to 1 over channels in every patch, so they rank channels only; the
    # patch layers' received attention ranks the seconds (patches are 1 s).
    attention = {}
    if "channel_pool" in explanation.attention:
        pool = explanation.attention["channel_pool"].sum(axis=1)
        attention["channel_pool_top_channels"] = _ranked(pool, None, channels, "channel", config.top_k)
    if "patch" in explanation.attention:
        patch = explanation.attention["patch"]
        patch_seconds = (explanation.attributions.shape[-1] // len(patch)) / SFREQ
        patch_starts = [round(start_s + k * patch_seconds, 3) for k in range(len(patch))]
        attention["patch_layers_top_seconds"] = _ranked(patch, None, patch_starts, "start_s", config.top_k)
    return {
        "start_s": round(start_s, 3),
        "predicted": explanation.labels[explanation.predicted],
        "method": {
            "attribution": "integrated_gradients",
            "target": config.target.replace("_", " "),
            "baseline": "zeros (flat EEG)",
            "steps": config.steps,
            "resolution_seconds": config.resolution_seconds,
            "map": "signed attribution summed per channel and bin (contribution to the target)",
        },
        "channels": channels,
        "classes": classes,
        "checks": {"class_specificity": explanation.specificity, "model_randomisation": explanation.randomisation},
        "attention": attention,
        "explanation_reliable": explanation.reliable,
        "why": explanation.why,
    }
