"""eegfm model: an electrode-aware EEG encoder with pluggable heads, in Hugging Face format.

    from eegfm.model import create_model, positions_for
    model = create_model("base", head="hms6")
    out = model(eeg, positions=positions_for(ch_names), channel_mask=mask)   # out.logits, out.pooled

Modules: ``config`` (EEGFMConfig, presets), ``inputs`` (names/metadata -> tensors), ``embedding``
(channel tokens), ``temporal`` (rotary self-attention), ``spatial`` (electrode-graph GNN; its
torch_geometric form in ``graph_conv``, imported only by a model that uses it),
``fusion`` (spectrogram / ECG / clinical cross-attention), ``readout`` (electrode-position filters
of the channel tokens), ``encoder``, ``heads`` (registry), ``pretraining`` (masked reconstruction,
contrastive channel prediction, band-power summary), ``adapters`` (LoRA,
bottleneck, freezing), ``modeling`` (Hugging Face models, ``create_model``), ``optim`` (parameter
groups, layer-wise lr decay), ``numerics`` (autocast-safe regions, DDP tie-ins), ``export`` (ONNX),
``classifier`` (the head, ``predict`` and outputs every task model shares), ``spectrogram_cnn``
(an EfficientNet-style CNN on the HMS spectrogram), ``eeg_cnn_gru`` (a 1-D CNN-GRU on raw EEG),
``registry`` (the task models by ``model_type``), ``architectures`` (``load_model_folder`` loads any
saved model, ensemble or fused model; which file is which: ``contract.model_files``),
``ensemble`` (members stacked by weights fitted on validation).
"""

from eegfm.model.adapters import add_adapters, count_parameters, count_trainable, freeze_encoder, unfreeze_encoder
from eegfm.model.architectures import list_architectures, load_model_folder, register_architecture
from eegfm.model.classifier import EEGFMOutput, HeadClassifier
from eegfm.model.config import (
    MODALITIES,
    ConfigError,
    EEGFMConfig,
    get_preset,
    list_presets,
    register_preset,
)
from eegfm.model.encoder import EncoderOutput
from eegfm.model.heads import TaskHead, create_head, list_heads, register_head
from eegfm.model.inputs import canonical_positions, encode_age, encode_sex, positions_for
from eegfm.model.modeling import (
    EEGFMForPretraining,
    EEGFMModel,
    EEGFMPreTrainedModel,
    PretrainingOutput,
    create_model,
    create_pretraining_model,
    register_auto_classes,
)
from eegfm.model.optim import param_groups_lrd
from eegfm.model.spectrogram_cnn import SpectrogramCNN, SpectrogramCNNConfig

__all__ = [
    "MODALITIES",
    "ConfigError",
    "EEGFMConfig",
    "EEGFMForPretraining",
    "EEGFMModel",
    "EEGFMOutput",
    "HeadClassifier",
    "EEGFMPreTrainedModel",
    "EncoderOutput",
    "PretrainingOutput",
    "SpectrogramCNN",
    "SpectrogramCNNConfig",
    "TaskHead",
    "add_adapters",
    "canonical_positions",
    "count_parameters",
    "count_trainable",
    "create_head",
    "create_model",
    "create_pretraining_model",
    "encode_age",
    "encode_sex",
    "freeze_encoder",
    "get_preset",
    "list_architectures",
    "list_heads",
    "list_presets",
    "load_model_folder",
    "param_groups_lrd",
    "positions_for",
    "register_architecture",
    "register_auto_classes",
    "register_head",
    "register_preset",
    "unfreeze_encoder",
]
