"""The registry of task-model architectures, keyed by ``config.json``'s ``model_type``, and the
loader of one saved model of a registered architecture.

=================  ==========================  ===============================================
name               model_type                  model
=================  ==========================  ===============================================
eegfm              eegfm                       ``EEGFMModel``: the encoder on raw EEG (+ fusion)
spectrogram_cnn    eegfm_spectrogram_cnn       ``SpectrogramCNN``: a 2-D CNN on the spectrogram
eeg_cnn_gru        eegfm_eeg_cnn_gru           ``EEGCNNGRU``: a 1-D CNN-GRU on raw EEG (torch only)
cbramod            eegfm_cbramod               ``CBraMod``: a CBraMod-style criss-cross transformer
labram             eegfm_labram                ``LaBraM``: a LaBraM-style patch transformer
=================  ==========================  ===============================================

Architectures built from scratch have a ``config_class.presets`` dict and ``from_preset``. Those
with a self-supervised objective name its model (``pretraining_class``: eegfm's masked
reconstruction and contrastive heads, the peers' masked patch modeling in ``model.patch_pretraining``);
``training.pretrain`` trains it and the task model loads its encoder.

The models made of such models (``model.ensemble``'s members, ``model.fused``'s networks) load
them here; ``model.architectures`` loads any saved folder, those composites included.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from transformers import AutoConfig, AutoModel

from eegfm.contract import model_files as files
from eegfm.core.config import ConfigError
from eegfm.model.architectures import saved_model_type
from eegfm.model.cbramod import CBraMod, CBraModConfig
from eegfm.model.config import EEGFMConfig
from eegfm.model.eeg_cnn_gru import EEGCNNGRU, EEGCNNGRUConfig
from eegfm.model.labram import LaBraM, LaBraMConfig
from eegfm.model.modeling import EEGFMForPretraining, EEGFMModel
from eegfm.model.patch_pretraining import CBraModForPretraining, LaBraMForPretraining
from eegfm.model.spectrogram_cnn import SpectrogramCNN, SpectrogramCNNConfig


@dataclasses.dataclass(frozen=True)
class Architecture:
    name: str
    config_class: type
    model_class: type
    from_scratch: bool  # fine-tuning may build it without a pretrained folder
    pretraining_class: type | None = None  # its self-supervised pretraining model, if it has one


ARCHITECTURES: dict[str, Architecture] = {}


def register_architecture(
    name: str, config_class: type, model_class: type, *, from_scratch: bool, pretraining_class: type | None = None
) -> None:
    if name in ARCHITECTURES:
        raise ConfigError(f"register_architecture: architecture {name!r} is already registered")
    ARCHITECTURES[name] = Architecture(name, config_class, model_class, from_scratch, pretraining_class)
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    AutoModel.register(config_class, model_class, exist_ok=True)


def list_architectures() -> list[str]:
    return sorted(ARCHITECTURES)


def list_pretrainable() -> list[str]:
    """The architectures with a self-supervised pretraining model."""
    return sorted(name for name, a in ARCHITECTURES.items() if a.pretraining_class is not None)


def get_architecture(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        raise ConfigError(f"architecture: expected one of {', '.join(map(repr, list_architectures()))}; got {name!r}")
    return ARCHITECTURES[name]


def architecture_of(folder: str | os.PathLike[str]) -> Architecture:
    """The architecture of a saved single-model folder, from its config.json's ``model_type``."""
    model_type = saved_model_type(folder)
    for architecture in ARCHITECTURES.values():
        if architecture.config_class.model_type == model_type:
            return architecture
    known = ", ".join(repr(a.config_class.model_type) for a in ARCHITECTURES.values())
    raise ConfigError(
        f"{Path(folder) / files.CONFIG}: model_type {model_type!r} is no registered architecture ({known})"
    )


def load_single_model(folder: str | os.PathLike[str], **overrides: Any):
    """The one model (config.json and weights) saved in ``folder``, in eval mode; ConfigError
    naming the file where it holds no registered architecture's."""
    return architecture_of(folder).model_class.from_pretrained(folder, **overrides).eval()


def single_model_config(folder: str | os.PathLike[str]):
    """The config of the one model saved in ``folder``."""
    return architecture_of(folder).config_class.from_pretrained(folder)


register_architecture("eegfm", EEGFMConfig, EEGFMModel, from_scratch=False, pretraining_class=EEGFMForPretraining)
register_architecture("spectrogram_cnn", SpectrogramCNNConfig, SpectrogramCNN, from_scratch=True)
register_architecture("eeg_cnn_gru", EEGCNNGRUConfig, EEGCNNGRU, from_scratch=True)
register_architecture("cbramod", CBraModConfig, CBraMod, from_scratch=True, pretraining_class=CBraModForPretraining)
register_architecture("labram", LaBraMConfig, LaBraM, from_scratch=True, pretraining_class=LaBraMForPretraining)
