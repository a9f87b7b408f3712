"""Which file of a model folder is which: every name a saved model's folder holds, and where the
files derived from it (the ONNX graphs, TensorRT engines) go.

A **model folder** holds one of three descriptions: :data:`CONFIG` with :data:`WEIGHTS` (one
model, Hugging Face format), :data:`ENSEMBLE` (``model.ensemble``: member folders beside it) or
:data:`FUSED` (``model.fused``: a benchmark row's parts). Fine-tuning saves the preprocessing recipe
(:data:`PREPROCESS_SPEC`) and the data's artifact autoencoder (:data:`ARTIFACT_MODEL`) beside
them; serving exports :data:`ONNX` and quantizes it to :data:`INT8_ONNX` in the folder, or, where
the folder is read-only, in :func:`derived_dir`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from eegfm.contract import layout
from eegfm.core.logs import get_logger

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
ENSEMBLE = "ensemble.json"
FUSED = layout.FUSED_MODEL
ONNX = "model.onnx"
INT8_ONNX = "model.int8.onnx"
PREPROCESS_SPEC = layout.PREPROCESS_SPEC
ARTIFACT_MODEL = layout.ARTIFACT_MODEL
DESCRIPTIONS = (CONFIG, ENSEMBLE, FUSED)  # a folder with one of them holds a saved model
log = get_logger(__name__)


def is_model_folder(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds a saved model: config.json (one model), ensemble.json or fused.json."""
    return any((Path(folder) / name).is_file() for name in DESCRIPTIONS)


def is_ensemble(folder: str | os.PathLike[str]) -> bool:
    return (Path(folder) / ENSEMBLE).is_file()


def is_fused(folder: str | os.PathLike[str]) -> bool:
    return (Path(folder) / FUSED).is_file()


def weights_of(model_dir: Path) -> Path:
    """The file whose change means a retrained model: an ensemble's ensemble.json (its fitted
    weights), else model.safetensors. A derived graph older than it is stale."""
    return model_dir / (ENSEMBLE if is_ensemble(model_dir) else WEIGHTS)


def derived_dir(model_dir: Path) -> Path:
    """Where derived files (ONNX graphs, engines) go: beside the model, else (read-only) a temporary folder."""
    if os.access(model_dir, os.W_OK):
        return model_dir
    cache = Path(tempfile.gettempdir()) / f"eegfm-{hashlib.sha256(str(model_dir.resolve()).encode()).hexdigest()[:16]}"
    cache.mkdir(parents=True, exist_ok=True)
    log.info("%s is read-only: derived engines go to %s", model_dir, cache)
    return cache


def int8_path(model_dir: Path) -> Path:
    """Where the model folder's INT8 graph is (or goes): beside its ``model.onnx``."""
    local = model_dir / INT8_ONNX
    return local if local.is_file() else derived_dir(model_dir) / INT8_ONNX
