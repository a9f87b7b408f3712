"""ONNX export (dynamo exporter, dynamic batch, channels and time) and an ONNX Runtime runner.

The exported graph takes every input as a tensor, with NaN for "absent" (``model.inputs``)::

    eeg (B, C, T) float32 µV        positions (B, C, 3)        channel_mask (B, C)
    spectrogram (B, 400, F)  ecg (B, T)  age (B,)  sex (B,)     -- only the configured modalities

and returns ``logits`` (B, n_outputs) and ``embedding`` (B, D). ``B``, ``C``, ``T`` and ``F`` are
dynamic (``torch.export.Dim``): one graph serves the 19 contract channels and any other montage of
2 to ``MAX_CHANNELS`` electrodes (``export_onnx(..., n_chans=8)`` fixes the count instead). In the
graph ``T`` is a whole number of patches and ``F`` of spectrogram tokens (derived dimensions: no
floor divisions in the traced shape arithmetic); ``OnnxEEGFM.feed`` drops a remainder exactly as the
PyTorch model ignores it. Label names, patch size and modalities travel in the ONNX
``metadata_props``.

Why the channel axis can be dynamic: the electrode graph always has ``graph_neighbours + 1``
neighbour slots per electrode (montages with fewer electrodes pad them with zero-weight slots,
``model.spatial``), so no shape depends on ``C`` through a ``min``; channel pooling, the GNN's
dense (B, heads, C, C) adjacency and the per-channel attention take ``C`` symbolically. Tests pin
ONNX Runtime parity at 3, 12 and 19 channels on one exported graph.

``OnnxEEGFM(path)(eeg, positions=..., ...)`` fills the NaN placeholders for omitted modalities
and tiles ``positions`` over the batch, so calling it mirrors calling the PyTorch model.

The GNN is exported in its ``"dense"`` formulation by default (equal sums, no scatter kernels;
2x faster in ONNX Runtime on CPU); ``export_onnx(..., gnn_impl="pyg")`` exports the
torch_geometric message passing itself, which the dynamo exporter also handles.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from eegfm.model.inputs import canonical_positions
from eegfm.model.modeling import EEGFMModel

DEFAULT_OPSET = 20  # opset 20 has a native Gelu, which ONNX Runtime runs as one kernel
MAX_BATCH = 4096
MAX_CHANNELS = 512  # the channel dimension's upper bound (high-density nets have 256)
MAX_SECONDS = 3600  # the time dimension's upper bound, one hour at the model's rate


class ExportableEEGFM(nn.Module):
    """A forward with a fixed, all-tensor signature: (logits, embedding).

    Subclasses may return more outputs (after these two), named by :meth:`output_names`; they
    export with :func:`export_onnx` too.
    """

    def __init__(self, model: EEGFMModel) -> None:
        super().__init__()
        self.model = model
        self.modalities = tuple(model.config.modalities)

    def input_names(self) -> list[str]:
        names = ["eeg", "positions", "channel_mask"]
        if "spectrogram" in self.modalities:
            names.append("spectrogram")
        if "ecg" in self.modalities:
            names.append("ecg")
        if "clinical" in self.modalities:
            names += ["age", "sex"]
        return names

    def output_names(self) -> list[str]:
        return ["logits", "embedding"]

    def forward(
        self, eeg: torch.Tensor, positions: torch.Tensor, channel_mask: torch.Tensor, *optional: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        extra = dict(zip(self.input_names()[3:], optional))
        features = self.model.forward_features(eeg, positions, channel_mask, **extra)
        return self.model.forward_head(features), features.pooled


def example_inputs(
    model: EEGFMModel, batch_size: int = 2, n_chans: int = 19, n_seconds: int = 5, n_frames: int = 300
) -> tuple[torch.Tensor, ...]:
    """Inputs to trace the export with (their values do not matter, their shapes do)."""
    generator = torch.Generator().manual_seed(0)
    n_times = n_seconds * model.config.patch_size
    wrapper = ExportableEEGFM(model)
    if n_chans == 19:
        positions = canonical_positions(batch_size)
    else:
        positions = torch.nn.functional.normalize(torch.randn(batch_size, n_chans, 3, generator=generator), dim=-1)
    tensors = {
        "eeg": 20 * torch.randn(batch_size, n_chans, n_times, generator=generator),
        "positions": positions,
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
    # Time and frames are whole multiples of the patch / pooling size: derived dimensions keep the
    # exported shape arithmetic free of floor divisions (which make export slow and guard-laden);
    # OnnxEEGFM.feed trims a remainder exactly as the PyTorch model ignores it.
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
    """Export ``model`` (eval mode) to ``path`` with dynamic batch, channels, time and frames.

    ``model`` may also be an :class:`ExportableEEGFM` (or a subclass with more outputs).
    ``n_chans``: None (the default) keeps the channel count dynamic (2 to ``MAX_CHANNELS``
    electrodes, identified by their ``positions``); an integer fixes it to that count.
    ``gnn_impl`` selects the GNN formulation for the exported graph (``"dense"`` by default: the
    same sums as torch_geometric's message passing, without scatter kernels, which ONNX Runtime
    runs faster on CPU); ``None`` keeps the model's own setting. The model is restored after.
    """
    wrapper = model if isinstance(model, ExportableEEGFM) else ExportableEEGFM(model)
    model = wrapper.model
    if n_chans is not None and (
        isinstance(n_chans, bool) or not isinstance(n_chans, int) or not 2 <= n_chans <= MAX_CHANNELS
    ):
        raise ValueError(f"n_chans: expected None (dynamic) or an integer in [2, {MAX_CHANNELS}]; got {n_chans!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    previous_impl = model.config.gnn_impl
    training = {module: module.training for module in wrapper.modules()}
    if gnn_impl is not None:
        model.set_gnn_impl(gnn_impl)
    wrapper.eval()
    try:
        with warnings.catch_warnings(), _quiet_exporter(verbose):
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
        model.set_gnn_impl(previous_impl)
        for module, mode in training.items():
            module.training = mode
    return path


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
    }


@contextlib.contextmanager
def _quiet_exporter(verbose: bool) -> Iterator[None]:
    """The exporter logs every stage (and warns about unused torchvision ops); quiet unless verbose."""
    if verbose:
        yield
        return
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


class OnnxEEGFM:
    """ONNX Runtime session for an exported eegfm model, called like the PyTorch model."""

    def __init__(
        self, path: str | os.PathLike[str], *, threads: int | None = None, providers: Sequence[str] | None = None
    ) -> None:
        import onnxruntime as ort  # optional: the serving extra; exporting needs only torch

        options = ort.SessionOptions()
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
        """Inputs for ``session.run``: numpy float32, NaN for absent modalities.

        Samples after the last whole patch and spectrogram frames after the last whole token are
        dropped here, as the PyTorch model ignores them (the graph takes whole patches only).
        """
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
        if ecg is not None:
            ecg = _numpy(ecg)
            if ecg.shape != (batch, n_times):
                raise ValueError(f"ecg: expected shape {(batch, n_times)} to match eeg; got {ecg.shape}")
        if spectrogram is not None:
            spectrogram = _numpy(spectrogram)
            if (
                spectrogram.ndim != 3
                or spectrogram.shape[:2] != (batch, self.spectrogram_bins)
                or spectrogram.shape[2] < self.spectrogram_pool
            ):
                raise ValueError(
                    f"spectrogram: expected shape ({batch}, {self.spectrogram_bins}, n_frames >= "
                    f"{self.spectrogram_pool}); got {spectrogram.shape}"
                )
        n_times -= n_times % self.patch_size
        eeg = eeg[..., :n_times]
        if ecg is not None:
            ecg = ecg[..., :n_times]
        if spectrogram is not None:
            n_frames = spectrogram.shape[-1] - spectrogram.shape[-1] % self.spectrogram_pool
            spectrogram = spectrogram[..., :n_frames]
        if positions is None:
            if n_chans != 19:
                raise ValueError(
                    f"positions: required for {n_chans} channels; use model.inputs.positions_for(ch_names)"
                )
            positions = canonical_positions().numpy()
        positions = _numpy(positions)
        if positions.ndim == 2:
            positions = positions[None]
        positions = np.ascontiguousarray(np.broadcast_to(positions, (batch, n_chans, 3)))
        mask = np.ones((batch, n_chans), np.float32) if channel_mask is None else _numpy(channel_mask)
        mask = np.ascontiguousarray(np.broadcast_to(mask.reshape(-1, n_chans), (batch, n_chans)))
        nan = np.float32("nan")
        values = {
            "eeg": eeg,
            "positions": positions,
            "channel_mask": mask,
            "spectrogram": (
                np.full((batch, self.spectrogram_bins, self.spectrogram_pool), nan, np.float32)
                if spectrogram is None
                else np.ascontiguousarray(spectrogram)
            ),
            "ecg": np.full((batch, n_times), nan, np.float32) if ecg is None else np.ascontiguousarray(ecg),
            "age": np.full(batch, nan, np.float32) if age is None else _numpy(age),
            "sex": np.full(batch, nan, np.float32) if sex is None else _numpy(sex),
        }
        return {name: values[name] for name in self.input_names}

    def __call__(self, *args: object, **kwargs: object) -> tuple[np.ndarray, np.ndarray]:
        """(logits, embedding) for the same arguments as ``EEGFMModel.forward``."""
        logits, embedding = self.session.run(["logits", "embedding"], self.feed(*args, **kwargs))
        return logits, embedding


def _numpy(value: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.ascontiguousarray(value, dtype=np.float32)
