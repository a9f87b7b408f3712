"""The eegfm task model's torch body, one definition for both ways of loading it.

``model.modeling.EEGFMModel`` is a Hugging Face ``PreTrainedModel`` (training, ``save_pretrained``,
``from_pretrained``); :class:`EEGFMNetwork` is the same network as a plain ``nn.Module``, which
:func:`load_network` builds from a saved folder (config.json + model.safetensors) for inference.
Importing transformers' ``modeling_utils`` (what ``PreTrainedModel`` needs) brings torch._dynamo and
torch.distributed.tensor, 1.5-2 s of a prediction's start; this module and its imports never do.
Both classes take their inputs, features and heads from :class:`EEGFMInputs` and
:class:`EEGFMTask` here, so the two answer the same logits for the same weights.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers.utils import ModelOutput

from eegfm.contract import model_files as files
from eegfm.contract.channels import N_CANONICAL
from eegfm.core.config import ConfigError
from eegfm.core.logs import get_logger
from eegfm.model import adapters as adapters_lib
from eegfm.model.classifier import HeadClassifier
from eegfm.model.config import GNN_IMPLS, EEGFMConfig
from eegfm.model.encoder import EEGFMEncoder, EncoderOutput
from eegfm.model.heads import TaskHead, create_head
from eegfm.model.inputs import canonical_positions
from eegfm.model.uncertainty import config_masks

log = get_logger(__name__)
# Computed once (per call, torch.compile traced the numpy lookup every step); never modified in place.
CANONICAL_POSITIONS = canonical_positions()


class EEGFMInputs:
    """Mixin of every eegfm network (task and pretraining): its inputs checked, defaulted and cast,
    and its GNN's form. The host class has ``config``, ``encoder`` and ``dtype``."""

    config: EEGFMConfig
    encoder: EEGFMEncoder

    def add_default_positions(self) -> None:
        # A buffer moves with the model (a per-step CPU-to-GPU copy synchronised the host); not a weight.
        self.register_buffer("default_positions", CANONICAL_POSITIONS.clone(), persistent=False)

    def prepare_inputs(
        self,
        eeg: torch.Tensor,
        positions: torch.Tensor | None = None,
        channel_mask: torch.Tensor | None = None,
        spectrogram: torch.Tensor | None = None,
        ecg: torch.Tensor | None = None,
        age: torch.Tensor | None = None,
        sex: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor | None]:
        """Validate shapes, fill defaults and cast to the model's dtype. Errors name the argument."""
        dtype = self.dtype
        if not isinstance(eeg, torch.Tensor) or eeg.dim() != 3:
            got = f"a tensor of shape {tuple(eeg.shape)}" if isinstance(eeg, torch.Tensor) else type(eeg).__name__
            raise ValueError(f"eeg: expected a tensor (batch, n_chans, n_times); got {got}")
        batch, n_chans, n_times = eeg.shape
        if n_times < self.config.patch_size:
            raise ValueError(
                f"eeg: expected at least one patch of {self.config.patch_size} samples "
                f"({self.config.patch_seconds:g} s at {self.config.sfreq:g} Hz); got n_times={n_times}"
            )
        if n_chans < 2:
            raise ValueError(f"eeg: expected at least 2 channels (the electrode graph needs neighbours); got {n_chans}")
        eeg = eeg.to(dtype)
        if positions is None:
            if n_chans != N_CANONICAL:
                raise ValueError(
                    f"positions: required for {n_chans} channels (only the 19 canonical channels have "
                    "default positions); build it with model.inputs.positions_for(ch_names)"
                )
            positions = self.default_positions
        if positions.dim() == 2:
            positions = positions.unsqueeze(0)
        if positions.dim() != 3 or positions.shape[1:] != (n_chans, 3) or positions.shape[0] not in (1, batch):
            raise ValueError(
                f"positions: expected shape (1 or {batch}, {n_chans}, 3) to match eeg; got {tuple(positions.shape)}"
            )
        positions = positions.to(device=eeg.device, dtype=dtype)
        if channel_mask is None:
            channel_mask = eeg.new_ones(batch, n_chans)
        if channel_mask.dim() == 1:
            channel_mask = channel_mask.unsqueeze(0)
        if channel_mask.shape[-1] != n_chans or channel_mask.dim() != 2 or channel_mask.shape[0] not in (1, batch):
            raise ValueError(
                f"channel_mask: expected shape ({batch}, {n_chans}) (1 measured, 0 interpolated); "
                f"got {tuple(channel_mask.shape)}"
            )
        channel_mask = channel_mask.to(device=eeg.device, dtype=dtype).expand(batch, n_chans)
        optional = self._prepare_optional(eeg, spectrogram=spectrogram, ecg=ecg, age=age, sex=sex)
        return dict(eeg=eeg, positions=positions, channel_mask=channel_mask, **optional)

    def _prepare_optional(self, eeg: torch.Tensor, **values: torch.Tensor | None) -> dict[str, torch.Tensor | None]:
        """The optional modalities' inputs, checked against ``eeg`` (batch, n_chans, n_times) and cast."""
        batch, _, n_times = eeg.shape
        modalities = self.config.modalities
        checks = {
            "spectrogram": ("spectrogram", (batch, self.config.spectrogram_bins, None)),
            "ecg": ("ecg", (batch, n_times)),
            "age": ("clinical", (batch,)),
            "sex": ("clinical", (batch,)),
        }
        prepared: dict[str, torch.Tensor | None] = {}
        for name, (modality, shape) in checks.items():
            value = values[name]
            if value is not None:
                if modality not in modalities:
                    raise ValueError(
                        f"{name}: this model was configured without the {modality!r} modality "
                        f"(config.modalities={modalities}); pass None"
                    )
                if value.dim() != len(shape) or any(s is not None and v != s for v, s in zip(value.shape, shape)):
                    expected = tuple("n_frames" if s is None else s for s in shape)
                    raise ValueError(f"{name}: expected shape {expected}; got {tuple(value.shape)}")
                if name == "spectrogram" and value.shape[-1] < self.config.spectrogram_pool:
                    raise ValueError(
                        f"spectrogram: expected at least spectrogram_pool={self.config.spectrogram_pool} frames; "
                        f"got {value.shape[-1]}"
                    )
                value = value.to(device=eeg.device, dtype=eeg.dtype)
            prepared[name] = value
        return prepared

    def _output(self, output: ModelOutput, return_dict: bool | None) -> Any:
        return_dict = self.config.return_dict if return_dict is None else return_dict
        return output if return_dict else output.to_tuple()

    def set_gnn_impl(self, impl: str) -> None:
        """Switch the GNN between ``"pyg"`` message passing and the equal ``"dense"`` and ``"gather"`` forms."""
        if impl not in GNN_IMPLS:
            raise ValueError(f"gnn_impl: expected one of {', '.join(map(repr, GNN_IMPLS))}; got {impl!r}")
        self.config.gnn_impl = impl
        self.encoder.set_gnn_impl(impl)


class EEGFMTask(HeadClassifier, EEGFMInputs):
    """Mixin: the encoder with one task head (``config.head``), in timm's encoder/head split."""

    head: TaskHead

    def build_task(self, config: EEGFMConfig) -> None:
        """The encoder, the head and the adapters ``config`` records, freshly initialised."""
        self.encoder = EEGFMEncoder(config)
        self.head = create_head(config.head, config)
        if config.adapter_kind is not None:
            adapters_lib.build_adapters(self.encoder, config.adapter_kind, config.adapter_rank, config.layer_norm_eps)

    def forward_features(
        self,
        eeg: torch.Tensor,
        positions: torch.Tensor | None = None,
        channel_mask: torch.Tensor | None = None,
        spectrogram: torch.Tensor | None = None,
        ecg: torch.Tensor | None = None,
        age: torch.Tensor | None = None,
        sex: torch.Tensor | None = None,
        sample_mask: torch.Tensor | None = None,
    ) -> EncoderOutput:
        inputs = self.prepare_inputs(eeg, positions, channel_mask, spectrogram, ecg, age, sex)
        if sample_mask is not None and tuple(sample_mask.shape) != tuple(eeg.shape):
            raise ValueError(
                f"sample_mask: expected the shape of eeg {tuple(eeg.shape)} (1 where a sample "
                f"is hidden); got {tuple(sample_mask.shape)}"
            )
        return self.encoder(**inputs, sample_mask=sample_mask)

    def sample_logits(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """(B, S, n_outputs) logits under the head's S fixed dropout masks (``model.uncertainty``;
        last-layer MC dropout), for the inputs of ``forward``; S = ``config.mc_passes``."""
        return self.logits_with_samples(*args, **kwargs)[1]

    def logits_with_samples(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward``'s logits and ``sample_logits`` from one run of the encoder."""
        features = self.forward_features(*args, **kwargs)
        return self.forward_head(features), self.head.sample_logits(features)

    def set_mc_passes(self, passes: int) -> None:
        """Sample ``passes`` masks from now on (0: none); ``config.mc_passes`` follows, so a model
        saved after samples as this one does. The first masks do not change."""
        if isinstance(passes, bool) or not isinstance(passes, int) or not 0 <= passes <= 1000:
            raise ValueError(f"mc_passes: expected an integer in [0, 1000]; got {passes!r}")
        self.config.mc_passes = passes
        self.head.set_mc_masks(config_masks(self.config))


class EEGFMNetwork(EEGFMTask, nn.Module):
    """``EEGFMModel``'s network as a plain torch module: the same submodules and weight names
    (a saved model's state dict loads as is), for inference only; no ``save_pretrained``."""

    def __init__(self, config: EEGFMConfig) -> None:
        super().__init__()
        self.config = config
        self.add_default_positions()
        self.build_task(config)

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype, which inputs are cast to (``PreTrainedModel.dtype`` for the other form)."""
        return next(self.parameters()).dtype


def load_network(folder: str | os.PathLike[str], **overrides: Any) -> EEGFMNetwork:
    """The eegfm task model saved in ``folder`` by ``save_pretrained``, as :class:`EEGFMNetwork` in
    eval mode; ``overrides`` set config fields, as ``EEGFMModel.from_pretrained``'s do. A weight the
    file lacks is a ConfigError (from_pretrained would keep its random initialisation and only
    warn: a model that answers noise); a tensor in it that is no weight is ignored with a warning,
    as from_pretrained ignores it."""
    from safetensors.torch import load_file  # with the weights only: not for importing this module

    config = EEGFMConfig.from_pretrained(folder, **overrides)
    config.name_or_path = str(folder)  # as from_pretrained records it
    model = EEGFMNetwork(config)
    path = Path(folder) / files.WEIGHTS
    # assign: the file's tensors become the weights, as from_pretrained's do. Copied into the
    # module's own (differently aligned) memory, the CPU matmul kernels round differently: logits
    # 1e-8 apart, where the two loads must answer bit for bit.
    missing, unexpected = model.load_state_dict(load_file(path), strict=False, assign=True)
    if missing:
        raise ConfigError(f"{path}: no weights for {', '.join(missing)}; expected this config's network")
    if unexpected:
        log.warning("%s: ignored %d tensors that are no weight: %s", path, len(unexpected), ", ".join(unexpected))
    dtype = getattr(config, "dtype", None)  # from_pretrained's dtype="auto": the config's dtype
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    if isinstance(dtype, torch.dtype) and dtype != model.dtype:
        model = model.to(dtype)
    return model.eval()
