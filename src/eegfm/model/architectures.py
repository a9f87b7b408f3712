"""The one loader of a saved model folder, whatever it holds, that serving, export and fine-tuning
use: one model of a registered architecture (``model.registry``, re-exported here), an ensemble of
them (``ensemble.json``: ``model.ensemble``) or a benchmark row exported as a fused model
(``fused.json``: ``model.fused``), whose config is read here while serving runs it through its own
backend, not as one torch module. Which file is which: ``contract.model_files``.

Every model answers ``model(**inputs).logits`` and has a ``config`` with ``head``, ``id2label``,
``temperature``, ``modalities`` and ``patch_size``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from eegfm.contract import model_files as files
from eegfm.contract.model_files import is_ensemble, is_model_folder
from eegfm.core.config import ConfigError
from eegfm.model.config import EEGFMConfig
from eegfm.model.ensemble import EnsembleConfig, EnsembleModel
from eegfm.model.registry import (
    ARCHITECTURES,
    Architecture,
    architecture_of,
    get_architecture,
    list_architectures,
    list_pretrainable,
    load_single_model,
    quiet_transformers,
    register_architecture,
    single_model_config,
)

ENSEMBLE_FILE = files.ENSEMBLE
FUSED_FILE = files.FUSED

__all__ = [
    "ARCHITECTURES",
    "ENSEMBLE_FILE",
    "FUSED_FILE",
    "Architecture",
    "architecture_of",
    "get_architecture",
    "is_ensemble",
    "is_model_folder",
    "list_architectures",
    "list_pretrainable",
    "load_model_config",
    "load_model_folder",
    "quiet_transformers",
    "register_architecture",
]


def load_model_folder(folder: str | os.PathLike[str], *, for_inference: bool = False, **overrides: Any):
    """The model saved in ``folder``, in eval mode: an ensemble where it holds ensemble.json.
    ConfigError for a fused model, which is no single torch module (``model.fused``).
    ``for_inference``: an eegfm network's GNN in the "gather" form (``model.spatial``: the same
    sums as torch_geometric's "pyg" form it trains with, the same predictions, without the 0.5-1 s
    torch_geometric import that a prediction would otherwise begin with)."""
    if files.is_fused(folder):
        raise ConfigError(
            f"{folder}: a fused model (a benchmark row: networks and a readout); this needs one network "
            "(a fine-tuned model folder), e.g. for explanations"
        )
    if is_ensemble(folder):
        return EnsembleModel.from_pretrained(folder).eval()
    if for_inference and architecture_of(folder).config_class is EEGFMConfig:
        overrides = {"gnn_impl": "gather", **overrides}
    return load_single_model(folder, **overrides)


def load_model_config(folder: str | os.PathLike[str]):
    """The config of the model saved in ``folder`` (``EnsembleConfig`` for an ensemble,
    ``FusedConfig`` for a fused model)."""
    if files.is_fused(folder):
        # model.fused brings braindecode and pyriemann (MNE, scikit-learn: about a second), which
        # --help and every other kind of model do without.
        from eegfm.model.fused import FusedConfig

        return FusedConfig.from_folder(folder)
    if is_ensemble(Path(folder)):
        return EnsembleConfig.from_folder(folder)
    return single_model_config(folder)
