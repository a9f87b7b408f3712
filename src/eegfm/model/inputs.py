"""Channel names and clinical metadata -> the tensors the model (and ONNX) consumes.

A channel is identified by its electrode's unit-sphere position (``contract.channels``), so any
subset of 10-20/10-10 electrodes, in any order, is a valid input and the exported graph holds no
strings. NaN always means "absent": ``age`` (years), ``sex`` (0 female, 1 male), and an all-NaN
``ecg`` (B, n_times) or ``spectrogram`` (B, 400, n_frames) row; isolated NaN values read as 0.
``spectrogram`` holds log1p power in µV²/Hz in Kaggle's HMS layout (``contract.spectrogram``),
as the records store it: the model applies no further log.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from eegfm.contract.channels import CANONICAL_CHANNELS, electrode_position

SEX_CODES: dict[str, float] = {"F": 0.0, "M": 1.0}


def positions_for(ch_names: Sequence[str], *, batch_size: int | None = None) -> torch.Tensor:
    """Electrode positions (1 or batch_size, n_chans, 3) for channel names (10-20, 10-10 or
    clinical spellings); ``KeyError`` names an unknown channel."""
    if isinstance(ch_names, str) or not len(ch_names):
        raise ValueError(f"ch_names: expected a non-empty sequence of channel names; got {ch_names!r}")
    seen: dict[str, str] = {}
    rows = []
    for name in ch_names:
        position = electrode_position(name)  # raises KeyError naming the channel
        key = position.round(6).tobytes().hex()
        if key in seen:
            raise ValueError(
                f"ch_names: every channel must be a distinct electrode; {name!r} and {seen[key]!r} "
                "are the same position"
            )
        seen[key] = name
        rows.append(position)
    positions = torch.from_numpy(np.stack(rows).astype(np.float32)).unsqueeze(0)
    if batch_size is not None:
        positions = positions.expand(batch_size, -1, -1).contiguous()
    return positions


def canonical_positions(batch_size: int | None = None) -> torch.Tensor:
    """Positions of the 19 canonical channels of the data contract, in contract order."""
    return positions_for(CANONICAL_CHANNELS, batch_size=batch_size)


def encode_sex(values: Iterable[str | bytes | float | None]) -> torch.Tensor:
    """``["F", "M", "", None, nan]`` -> ``tensor([0., 1., nan, nan, nan])`` (the data contract's ``sex``)."""
    codes = []
    for value in values:
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        if value is None or (isinstance(value, float) and math.isnan(value)):
            text = ""
        elif not isinstance(text, str) or text.strip().upper() not in (*SEX_CODES, ""):
            raise ValueError(f"sex: expected one of 'F', 'M' or '' (unknown); got {value!r}")
        codes.append(SEX_CODES.get(text.strip().upper(), float("nan")))
    return torch.tensor(codes, dtype=torch.float32)


def encode_age(values: Iterable[float | None]) -> torch.Tensor:
    """Ages in years with None/NaN for unknown -> float tensor with NaN for unknown."""
    return torch.tensor([float("nan") if v is None else float(v) for v in values], dtype=torch.float32)


MODEL_KEYS = ("eeg", "channel_mask", "ecg", "age", "sex")


def model_inputs(
    batch: dict[str, Any], device: torch.device | str | None = None, *, non_blocking: bool = False
) -> dict[str, torch.Tensor]:
    """The ``MODEL_KEYS`` of a batch (the model's forward arguments; positions default to the 19
    canonical channels the batches hold), optionally moved to ``device``."""
    inputs = {key: batch[key] for key in MODEL_KEYS if key in batch}
    if device is not None:
        inputs = {key: value.to(device, non_blocking=non_blocking) for key, value in inputs.items()}
    return inputs


def inputs_for_modalities(
    batch: dict[str, Any],
    modalities: Sequence[str],
    device: torch.device | str | None = None,
    *,
    spectrogram_pool: int = 1,
) -> dict[str, torch.Tensor]:
    """:func:`model_inputs` without the optional ones a model was configured without (age and
    sex are ``clinical``), plus the batch's ``spectrogram`` for a model with that modality when it
    has at least ``spectrogram_pool`` frames (the model's ``config.spectrogram_pool``; a shorter
    one, a short window's, would make no token: the model sees the modality absent)."""
    skip = set() if "clinical" in modalities else {"age", "sex"}
    skip |= set() if "ecg" in modalities else {"ecg"}
    inputs = {k: v for k, v in model_inputs(batch, device, non_blocking=True).items() if k not in skip}
    spectrogram = batch.get("spectrogram")
    if "spectrogram" in modalities and spectrogram is not None and spectrogram.shape[-1] >= spectrogram_pool:
        inputs["spectrogram"] = spectrogram if device is None else spectrogram.to(device, non_blocking=True)
    return inputs
