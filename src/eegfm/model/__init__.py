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
bottleneck, freezing), ``modeling`` (Hugging Face models, ``create_model``), ``network`` (their
network's code, and ``EEGFMModel``'s as a plain torch module for inference), ``optim`` (parameter
groups, layer-wise lr decay), ``numerics`` (autocast-safe regions, DDP tie-ins), ``export`` (ONNX),
``classifier`` (the head, ``predict`` and outputs every task model shares), ``spectrogram_cnn``
(an EfficientNet-style CNN on the HMS spectrogram), ``eeg_cnn_gru`` (a 1-D CNN-GRU on raw EEG),
``registry`` (the task models by ``model_type``), ``architectures`` (``load_model_folder`` loads any
saved model, ensemble or fused model; which file is which: ``contract.model_files``),
``ensemble`` (members stacked by weights fitted on validation).
"""

from eegfm.core.lazy_exports import lazy_exports
from eegfm.model import heads as _heads  # noqa: F401  (registers the heads every config names)

# Public names, imported on first use (PEP 562): the Hugging Face models (``modeling``) bring
# transformers' modeling_utils (torch._dynamo, torch.distributed: 1.5-2 s), which the inference
# path (``model.network``) and a config do without.
_EXPORTS = {
    **dict.fromkeys(
        ("add_adapters", "count_parameters", "count_trainable", "freeze_encoder", "unfreeze_encoder"),
        "eegfm.model.adapters",
    ),
    **dict.fromkeys(("list_architectures", "load_model_folder", "register_architecture"), "eegfm.model.architectures"),
    **dict.fromkeys(("EEGFMOutput", "HeadClassifier"), "eegfm.model.classifier"),
    **dict.fromkeys(
        ("MODALITIES", "ConfigError", "EEGFMConfig", "get_preset", "list_presets", "register_preset"),
        "eegfm.model.config",
    ),
    "EncoderOutput": "eegfm.model.encoder",
    **dict.fromkeys(("TaskHead", "create_head", "list_heads", "register_head"), "eegfm.model.heads"),
    **dict.fromkeys(("canonical_positions", "encode_age", "encode_sex", "positions_for"), "eegfm.model.inputs"),
    **dict.fromkeys(
        (
            "EEGFMForPretraining",
            "EEGFMModel",
            "EEGFMPreTrainedModel",
            "PretrainingOutput",
            "create_model",
            "create_pretraining_model",
            "register_auto_classes",
        ),
        "eegfm.model.modeling",
    ),
    "param_groups_lrd": "eegfm.model.optim",
    **dict.fromkeys(("SpectrogramCNN", "SpectrogramCNNConfig"), "eegfm.model.spectrogram_cnn"),
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
