"""ONNX export (dynamo exporter, dynamic batch, channels and time) and an ONNX Runtime runner.

The exported graph takes every input as a tensor, with NaN for "absent" (``model.inputs``)::

    eeg (B, C, T) float32 µV        positions (B, C, 3)        channel_mask (B, C)
    spectrogram (B, 400, F)  ecg (B, T)  age (B,)  sex (B,)     -- only the configured modalities

(``spectrogram``: log1p µV²/Hz in Kaggle's HMS layout, as the records store it; no log in the graph)

and returns ``logits`` (B, n_outputs) and ``embedding`` (B, D), and where ``config.mc_passes`` > 0
``sample_logits`` (B, S, n_outputs): the head under its S fixed dropout masks (``model.uncertainty``),
the same numbers as ``EEGFMModel.sample_logits``. ``B``, ``C`` (2 to
``MAX_CHANNELS``, or fixed with ``n_chans``), ``T`` and ``F`` are dynamic; ``C`` can be because the
electrode graph has a fixed number of neighbour slots (``model.spatial``). In the graph ``T`` is a
whole number of patches and ``F`` of spectrogram tokens; ``OnnxEEGFM.feed`` drops a remainder as
the PyTorch model ignores it, fills NaN for omitted modalities and tiles ``positions``. Label names,
patch size and modalities travel in the ONNX ``metadata_props``. The GNN is exported in its
``"dense"`` form by default (no scatter kernels: 2x faster in ONNX Runtime on CPU).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from eegfm.model.config import MODALITIES
from eegfm.model.inputs import canonical_positions
from eegfm.model.modeling import EEGFMModel

DEFAULT_OPSET = 20  # opset 20 has a native Gelu, which ONNX Runtime runs as one kernel
MAX_BATCH = 4096
MAX_CHANNELS = 512  # the channel dimension's upper bound (high-density nets have 256)
MAX_SECONDS = 3600  # the time dimension's upper bound, one hour at the model's rate
MODALITY_INPUTS = {"spectrogram": ("spectrogram",), "ecg": ("ecg",), "clinical": ("age", "sex")}


class ExportableEEGFM(nn.Module):
    """A forward with a fixed, all-tensor signature: (logits, embedding); subclasses may add
    outputs after these two, named by :meth:`output_names`."""

    def __init__(self, model: EEGFMModel) -> None:
        super().__init__()
        self.model = model
        self.modalities = tuple(model.config.modalities)

    def input_names(self) -> list[str]:
        optional = [name for m in MODALITIES if m in self.modalities for name in MODALITY_INPUTS[m]]
        return ["eeg", "positions", "channel_mask", *optional]

    def output_names(self) -> list[str]:
        return ["logits", "embedding", *(["sample_logits"] if self.samples_head() is not None else [])]

    def samples_head(self):
        """The head whose fixed-mask samples are the ``sample_logits`` output; None without masks."""
        head = getattr(self.model, "head", None)
        masks = getattr(head, "mc_masks", None)
        return head if masks is not None and len(masks) else None

    def forward(
        self, eeg: torch.Tensor, positions: torch.Tensor, channel_mask: torch.Tensor, *optional: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        extra = dict(zip(self.input_names()[3:], optional))
        return self.outputs_of(self.model.forward_features(eeg, positions, channel_mask, **extra))

    def outputs_of(self, features) -> tuple[torch.Tensor, ...]:
        """The outputs :meth:`output_names` names before a subclass's own, for the encoder's features."""
        outputs = (self.model.forward_head(features), features.pooled)
        head = self.samples_head()
        return outputs if head is None else (*outputs, head.sample_logits(features))


def example_inputs(
    model: EEGFMModel, batch_size: int = 2, n_chans: int = 19, n_seconds: int = 5, n_frames: int = 300
) -> tuple[torch.Tensor, ...]:
    """Inputs to trace the export with (their values do not matter, their shapes do)."""
    generator = torch.Generator().manual_seed(0)
    n_times = n_seconds * model.config.patch_size
    wrapper = ExportableEEGFM(model)
    tensors = {
        "positions": canonical_positions(batch_size)
        if n_chans == 19
        else torch.nn.functional.normalize(torch.randn(batch_size, n_chans, 3, generator=generator), dim=-1),
        "eeg": 20 * torch.randn(batch_size, n_chans, n_times, generator=generator),
        "channel_mask": torch.ones(batch_size, n_chans),
        "spectrogram": torch.rand(batch_size, model.config.spectrogram_bins, n_frames, generator=generator),
        "ecg": 100 * torch.randn(batch_size, n_times, generator=generator),
        "age": torch.full((batch_size,), 40.0),
        "sex": torch.zeros(batch_size),
    }
    return tuple(tensors[name] for name in wrapper.input_names())


def dynamic_shapes(model: EEGFMModel, *, dynamic_channels: bool = True) -> dict[str, object]:
    """``torch.export`` dynamic shapes for :class:`ExportableEEGFM`'s inputs."""
    wrapper = ExportableEEGFM(model)
    patch = model.config.patch_size
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    # At least 2 electrodes, as the PyTorch model requires (EEGFMPreTrainedModel.prepare_inputs).
    chans = torch.export.Dim("n_chans", min=2, max=MAX_CHANNELS) if dynamic_channels else None
    # Time and frames as whole multiples of the patch / pooling size: no floor divisions (slow,
    # guard-laden) in the exported shape arithmetic.
    n_patches = torch.export.Dim("n_patches", min=1, max=int(MAX_SECONDS * model.config.sfreq) // patch)
    time = patch * n_patches
    n_tokens = torch.export.Dim("spectrogram_tokens", min=1, max=100_000)
    frames = model.config.spectrogram_pool * n_tokens
    shapes = {
        "eeg": {0: batch, 1: chans, 2: time},
        "positions": {0: batch, 1: chans},
        "channel_mask": {0: batch, 1: chans},
        "spectrogram": {0: batch, 2: frames},
        "ecg": {0: batch, 1: time},
        "age": {0: batch},
        "sex": {0: batch},
    }
    names = wrapper.input_names()
    result: dict[str, object] = {n: shapes[n] for n in names[:3]}
    if names[3:]:  # the wrapper's *optional: one entry per configured modality input
        result["optional"] = tuple(shapes[n] for n in names[3:])
    return result


def export_onnx(
    model: EEGFMModel | ExportableEEGFM,
    path: str | os.PathLike[str],
    *,
    n_chans: int | None = None,
    gnn_impl: str | None = "dense",
    opset: int = DEFAULT_OPSET,
    verbose: bool = False,
) -> Path:
    """Export ``model`` (or an :class:`ExportableEEGFM`) in eval mode to ``path``.

    ``n_chans``: None keeps the channel count dynamic, an integer fixes it. ``gnn_impl``: the GNN
    formulation to export (None: the model's own). The model's modes are restored after.
    """
    wrapper = model if isinstance(model, ExportableEEGFM) else _exportable(model)
    model = wrapper.model
    if n_chans is None:  # a model with one input per canonical channel (model.eeg_cnn_gru) fixes it
        n_chans = getattr(model.config, "fixed_channels", None)
    if n_chans is not None and (
        isinstance(n_chans, bool) or not isinstance(n_chans, int) or not 2 <= n_chans <= MAX_CHANNELS
    ):
        raise ValueError(f"n_chans: expected None (dynamic) or an integer in [2, {MAX_CHANNELS}]; got {n_chans!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # eegfm models, alone or inside an ensemble (other architectures have no GNN)
    encoders = [m for m in wrapper.modules() if isinstance(m, EEGFMModel)]
    previous_impls = [m.config.gnn_impl for m in encoders]
    training = {module: module.training for module in wrapper.modules()}
    for encoder in encoders if gnn_impl is not None else ():
        encoder.set_gnn_impl(gnn_impl)
    wrapper.eval()
    if not verbose:  # the exporter logs every stage (and warns about unused torchvision ops)
        logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                wrapper,
                example_inputs(model, n_chans=19 if n_chans is None else n_chans),
                dynamo=True,
                dynamic_shapes=dynamic_shapes(model, dynamic_channels=n_chans is None),
                input_names=wrapper.input_names(),
                output_names=wrapper.output_names(),
                opset_version=opset,
                verbose=verbose,
                external_data=False,
            )
            program.model.metadata_props.update(export_metadata(model))
            program.save(str(path))
    finally:
        if not verbose:
            logging.disable(logging.NOTSET)
        for encoder, impl in zip(encoders, previous_impls):
            encoder.set_gnn_impl(impl)
        for module, mode in training.items():
            module.training = mode
    return path


def _exportable(model: nn.Module) -> ExportableEEGFM:
    """The model's own export wrapper where it has one (an ensemble adds ``sample_logits``)."""
    make = getattr(model, "exportable", None)
    return make() if make is not None else ExportableEEGFM(model)


def export_metadata(model: EEGFMModel) -> dict[str, str]:
    """What a runner needs besides the graph, stored as ONNX ``metadata_props``."""
    config = model.config
    return {
        "eegfm.patch_size": str(config.patch_size),
        "eegfm.sfreq": str(config.sfreq),
        "eegfm.spectrogram_pool": str(config.spectrogram_pool),
        "eegfm.spectrogram_bins": str(config.spectrogram_bins),
        "eegfm.head": config.head,
        "eegfm.id2label": json.dumps({str(k): v for k, v in (config.id2label or {}).items()}),
        "eegfm.modalities": ",".join(config.modalities),
        # the calibration fitted on validation (fine-tuning): divide the logits by it for probabilities
        "eegfm.temperature": repr(float(getattr(config, "temperature", 1.0) or 1.0)),
        "eegfm.mc_passes": str(int(getattr(config, "mc_passes", 0) or 0)),
    }


class OnnxEEGFM:
    """ONNX Runtime session for an exported eegfm model, called like the PyTorch model."""

    def __init__(
        self, path: str | os.PathLike[str], *, threads: int | None = None, providers: Sequence[str] | None = None
    ) -> None:
        import onnxruntime as ort  # optional: the serving extra; exporting needs only torch

        options = ort.SessionOptions()
        # A waiting worker thread sleeps instead of spinning: beside other work spinning takes the
        # cores they need (core/threads.py); ONNX Runtime's documented session switch.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=list(providers or ["CPUExecutionProvider"]))
        self.input_names = [i.name for i in self.session.get_inputs()]
        chans = self.session.get_inputs()[0].shape[1]
        self.n_chans: int | None = chans if isinstance(chans, int) else None  # None: any count
        meta = self.session.get_modelmeta().custom_metadata_map
        self.patch_size = int(meta["eegfm.patch_size"])
        self.spectrogram_pool = int(meta["eegfm.spectrogram_pool"])
        self.spectrogram_bins = int(meta["eegfm.spectrogram_bins"])
        self.id2label = {int(k): v for k, v in json.loads(meta["eegfm.id2label"]).items()}
        self.head = meta.get("eegfm.head", "")
        self.temperature = float(meta.get("eegfm.temperature", "1.0"))  # graphs exported before it: 1
        samples = next((o for o in self.session.get_outputs() if o.name == "sample_logits"), None)
        # S from the metadata, else the output's static shape (any graph with the output, e.g. an ensemble's)
        static = samples.shape[1] if samples is not None and isinstance(samples.shape[1], int) else 0
        self.mc_passes = int(meta.get("eegfm.mc_passes", static)) if samples is not None else 0
        self.has_samples = samples is not None

    def feed(
        self,
        eeg: np.ndarray | torch.Tensor,
        positions: np.ndarray | torch.Tensor | None = None,
        channel_mask: np.ndarray | torch.Tensor | None = None,
        spectrogram: np.ndarray | torch.Tensor | None = None,
        ecg: np.ndarray | torch.Tensor | None = None,
        age: np.ndarray | torch.Tensor | None = None,
        sex: np.ndarray | torch.Tensor | None = None,
    ) -> dict[str, np.ndarray]:
        """Inputs for ``session.run``: numpy float32, NaN for absent modalities, trimmed to whole
        patches and spectrogram tokens (the graph takes no remainder)."""
        eeg = _numpy(eeg)
        if eeg.ndim != 3:
            raise ValueError(f"eeg: expected an array (batch, n_chans, n_times); got shape {eeg.shape}")
        batch, n_chans, n_times = eeg.shape
        if n_times < self.patch_size:
            raise ValueError(f"eeg: expected at least one patch of {self.patch_size} samples; got n_times={n_times}")
        if self.n_chans is not None and n_chans != self.n_chans:
            raise ValueError(
                f"eeg: this graph was exported for {self.n_chans} channels; got {n_chans} "
                "(export with n_chans=None for a dynamic channel count)"
            )
        if n_chans < 2:
            raise ValueError(f"eeg: expected at least 2 channels; got {n_chans}")
        pool, whole = self.spectrogram_pool, n_times - n_times % self.patch_size
        if ecg is not None:
            ecg = _numpy(ecg)
            if ecg.shape != (batch, n_times):
                raise ValueError(f"ecg: expected shape {(batch, n_times)} to match eeg; got {ecg.shape}")
            ecg = np.ascontiguousarray(ecg[..., :whole])
        if spectrogram is not None:
            spectrogram = _numpy(spectrogram)
            shape = spectrogram.shape
            if len(shape) != 3 or shape[:2] != (batch, self.spectrogram_bins) or shape[2] < pool:
                raise ValueError(
                    f"spectrogram: expected shape ({batch}, {self.spectrogram_bins}, n_frames >= {pool}); got {shape}"
                )
            spectrogram = np.ascontiguousarray(spectrogram[..., : shape[-1] // pool * pool])
        if positions is None:
            if n_chans != 19:
                raise ValueError(
                    f"positions: required for {n_chans} channels; use model.inputs.positions_for(ch_names)"
                )
            positions = canonical_positions().numpy()
        positions = np.ascontiguousarray(np.broadcast_to(_numpy(positions), (batch, n_chans, 3)))
        mask = np.ones((batch, n_chans), np.float32) if channel_mask is None else _numpy(channel_mask)
        mask = np.ascontiguousarray(np.broadcast_to(mask.reshape(-1, n_chans), (batch, n_chans)))
        values = {
            "eeg": eeg[..., :whole],
            "positions": positions,
            "channel_mask": mask,
            "spectrogram": _numpy_or_nan(spectrogram, batch, self.spectrogram_bins, pool),
            "ecg": _numpy_or_nan(ecg, batch, whole),
            "age": _numpy_or_nan(age, batch),
            "sex": _numpy_or_nan(sex, batch),
        }
        return {name: values[name] for name in self.input_names}

    def __call__(self, *args: object, **kwargs: object) -> tuple[np.ndarray, np.ndarray]:
        """(logits, embedding) for the same arguments as ``EEGFMModel.forward``."""
        return tuple(self.session.run(["logits", "embedding"], self.feed(*args, **kwargs)))

    def logits_with_samples(self, *args: object, **kwargs: object) -> tuple[np.ndarray, np.ndarray | None]:
        """(logits, sample_logits (B, S, n_outputs)) from one run; None for the samples of a graph
        exported without MC-dropout masks (``mc_passes`` 0, or before they existed)."""
        if not self.has_samples:
            return self.session.run(["logits"], self.feed(*args, **kwargs))[0], None
        logits, samples = self.session.run(["logits", "sample_logits"], self.feed(*args, **kwargs))
        return logits, samples


def _numpy(value: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.ascontiguousarray(value, dtype=np.float32)


def _numpy_or_nan(value: np.ndarray | torch.Tensor | None, *shape: int) -> np.ndarray:
    """``value`` as float32 numpy, or NaN ("absent") of ``shape`` where it is None."""
    return np.full(shape, np.nan, np.float32) if value is None else _numpy(value)
