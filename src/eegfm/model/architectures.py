"""The one loader of a saved model folder, whatever it holds, that serving, export and fine-tuning
use: one model of a registered architecture (``model.registry``, re-exported here), an ensemble of
them (``ensemble.json``: ``model.ensemble``) or a benchmark row exported as a fused model
(``fused.json``: ``model.fused``), whose config is read here while serving runs it through its own
backend, not as one torch module. Which file is which: ``contract.model_files``.

Every model answers ``model(**inputs).logits`` and has a ``config`` with ``head``, ``id2label``,
``temperature``, ``modalities`` and ``patch_size``.

An eegfm network loaded ``for_inference`` and the config of one (what eegfm-predict and eegfm-serve
load) come without the registry: it imports every architecture's Hugging Face model and so
transformers' ``modeling_utils`` (torch._dynamo, torch.distributed: 1.5-2 s of a prediction's
start). The registry's names are re-exported here, imported on first use.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from transformers.utils import logging as hf_logging

from eegfm.contract import model_files as files
from eegfm.contract.model_files import is_ensemble, is_model_folder
from eegfm.core.config import ConfigError
from eegfm.core.lazy_exports import lazy_exports
from eegfm.model.config import EEGFMConfig

ENSEMBLE_FILE = files.ENSEMBLE
FUSED_FILE = files.FUSED
# The registry's names, imported on first use (PEP 562): see the module's docstring.
_REGISTRY_EXPORTS = {
    name: "eegfm.model.registry"
    for name in (
        "ARCHITECTURES",
        "Architecture",
        "architecture_of",
        "get_architecture",
        "list_architectures",
        "list_pretrainable",
        "register_architecture",
    )
}
__all__ = [
    "ENSEMBLE_FILE",
    "FUSED_FILE",
    "is_ensemble",
    "is_model_folder",
    "load_model_config",
    "load_model_folder",
    "quiet_transformers",
    "saved_model_type",
    *_REGISTRY_EXPORTS,
]
__getattr__ = lazy_exports(__name__, _REGISTRY_EXPORTS)


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
        from eegfm.model.ensemble import EnsembleModel

        return EnsembleModel.from_pretrained(folder).eval()
    if for_inference and _is_eegfm(folder):
        from eegfm.model.network import load_network

        return load_network(folder, **{"gnn_impl": "gather", **overrides})
    from eegfm.model.registry import load_single_model

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
        from eegfm.model.ensemble import EnsembleConfig

        return EnsembleConfig.from_folder(folder)
    if _is_eegfm(folder):
        return EEGFMConfig.from_pretrained(folder)
    from eegfm.model.registry import single_model_config

    return single_model_config(folder)


def saved_model_type(folder: str | os.PathLike[str]) -> str | None:
    """The ``model_type`` in the config.json of the single model saved in ``folder``."""
    path = Path(folder) / files.CONFIG
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: expected a model's config.json; {err}") from None


def _is_eegfm(folder: str | os.PathLike[str]) -> bool:
    return saved_model_type(folder) == EEGFMConfig.model_type


@contextlib.contextmanager
def quiet_transformers():
    """No Hugging Face progress bars or loading reports (rank 0 has its own progress bar)."""
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
