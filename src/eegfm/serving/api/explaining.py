"""``POST /v1/explain``'s work: one window of an uploaded recording explained as ``eegfm-predict
--explain`` explains it (``inference.explain.attribution``: integrated gradients per class, the class-specificity
and model-randomisation checks), answered as arrays a page can draw.

The window is the ``k``-th of the recording's windows in time order: the ``k``-th entry of
``/v1/predict``'s ``window_predictions`` for the same upload. The maps are each class's signed
attribution summed per channel and time bin (``resolution_s``, finer than the checks' 1 s bins:
a page draws them); the verdict is computed on the 1 s maps, as the command line's.

The torch model is loaded on the first explanation (an ONNX-served model's own weights, read again
from its folder) and its randomised copy made once; explanations run one at a time (each takes
the CPU for seconds), never inside the predictions' model lock.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from eegfm.contract.layout import FUSED_MODEL
from eegfm.contract.schema import CHANNELS, SFREQ
from eegfm.inference.explain.attribution import ExplainConfig, binned, explain_window
from eegfm.inference.explain.checks import randomised_copy
from eegfm.inference.model_inputs import model_inputs
from eegfm.model.architectures import load_model_folder
from eegfm.serving.api.uploads import UploadError
from eegfm.serving.api.windows import recording_item, window_in_time_order

FUSED_REFUSAL = (
    "this model cannot be explained: it is a benchmark row that fuses networks with a readout of band "
    "powers, and explanations need one network (explain its network folder, network-*, with eegfm-predict --explain)"
)
MAX_STEPS = 32  # integrated-gradient points per piece of the path a client may ask for
MAX_WINDOW = 10_000_000  # a window a second for over a hundred days: past it no recording's index


class ExplainService:
    """Explanations of uploaded recordings' windows for a loaded Predictor (see the module docstring)."""

    def __init__(self, predictor, limits) -> None:
        self.predictor, self.limits = predictor, limits
        self._lock = threading.Lock()
        self._models: tuple | None = None  # (model, randomised copy), loaded on first use

    def _loaded(self, seed: int):
        if self._models is None:
            if (Path(self.predictor.model_dir) / FUSED_MODEL).is_file():  # no local path in the reply
                raise UploadError(422, FUSED_REFUSAL)
            model = load_model_folder(self.predictor.model_dir).float().eval()
            if getattr(model, "main_input_name", "eeg") != "eeg" or self.predictor.head == "regression":
                raise UploadError(422, "this model cannot be explained: it reads no EEG or has no classes")
            self._models = model, randomised_copy(model, seed)
        return self._models

    def explain_file(self, path: Path, ext: str, window: int, steps: int, resolution_s: float) -> dict[str, Any]:
        """The reply for window ``window`` of the upload saved at ``path``; UploadError 422 naming the
        recording's window count for an index out of range, ValueError for an upload holding no
        recording."""
        item = recording_item(self.predictor, path, ext, self.limits.expanded_max_bytes)
        # the pipeline's pass too: explanations waiting hold their upload on disk, not a working set each
        with self._lock:
            return self._explain_item(item, window, steps, resolution_s)

    def _explain_item(self, item, window: int, steps: int, resolution_s: float) -> dict[str, Any]:
        config = ExplainConfig(steps=steps)
        model, randomised = self._loaded(config.seed)
        # the windows stream past and only the asked one is kept: memory stays one window's however
        # long the recording (tests/serving/test_server_explain_memory.py)
        record, count = window_in_time_order(self.predictor, item, window)
        if record is None:
            raise UploadError(
                422,
                f"query parameter window: expected a window index from 0 to {count - 1} (the "
                f"recording's {count} windows); got {window}"
                if count
                else "the recording has no windows to explain (see /v1/predict for why)",
            )
        inputs = model_inputs([record], model.config)
        explanation = explain_window(
            model,
            inputs,
            list(self.predictor.labels),
            config,
            temperature=self.predictor.temperature,
            randomised=randomised,
        )
        labels, probabilities, maps = _per_class(
            explanation, tuple(self.predictor.labels), binned(explanation.attributions, resolution_s)
        )
        return {
            "window": window,
            "windows": count,
            "start_s": round(float(record.window_start_s), 3),
            "duration_s": record.n_times / SFREQ,
            "labels": labels,
            "predicted": labels[int(np.argmax(probabilities))],
            "probabilities": dict(zip(labels, map(_rounded, probabilities), strict=True)),
            "channels": list(CHANNELS),
            "resolution_s": resolution_s,
            "maps": {label: _rounded_rows(maps[c]) for c, label in enumerate(labels)},
            "completeness_error": dict(zip(explanation.labels, map(_rounded, explanation.completeness), strict=True)),
            "checks": {"class_specificity": explanation.specificity, "model_randomisation": explanation.randomisation},
            "explanation_reliable": explanation.reliable,
            "reasons": [reason for reason in explanation.why.split("; ") if reason],
            "method": {"attribution": "integrated_gradients", "target": config.target, "steps": steps},
        }


def _per_class(explanation, all_labels: tuple[str, ...], maps: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Labels, probabilities and maps, one per class. A binary head's one logit z is its positive
    class's; the negative class's probability is 1 - sigmoid(z) = sigmoid(-z), so its map is the
    negative of the positive class's (integrated gradients are linear in the target)."""
    positive = explanation.labels
    if len(positive) == 1 and len(all_labels) == 2:
        p = float(explanation.probabilities[0])
        return list(all_labels), np.array([1.0 - p, p]), np.stack([-maps[0], maps[0]])
    return list(positive), np.asarray(explanation.probabilities), maps


def _rounded(value) -> float:
    return round(float(value), 6)


def _rounded_rows(values: np.ndarray) -> list[list[float]]:
    """A (channels, bins) map as nested lists, 4 significant digits (a page draws colours)."""
    return [[float(f"{v:.4g}") for v in row] for row in np.asarray(values, dtype=np.float64)]
