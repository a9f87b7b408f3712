"""The pipeline's windows as a model's inputs, without the wire: what the training loader's batch
gives the model (``model.batch.collate`` of the stored records, then
``model.inputs.inputs_for_modalities``), built from the window records themselves.

The records hold exactly what the TFRecords store (``contract.schema.WindowRecord`` casts every
field on construction: float16 signals, float32 numbers), so stacking them gives the tensors that
encoding them and decoding the bytes gave, and serving still cannot drift from training
(``tests/inference/test_model_inputs.py`` holds them equal on real recordings).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from eegfm.contract.schema import WindowRecord
from eegfm.model.batch import crop_spectrograms
from eegfm.model.inputs import encode_sex, inputs_for_modalities


def record_batch(windows: Sequence[WindowRecord]) -> dict[str, torch.Tensor]:
    """The model's columns of the loader's batch of equal-length ``windows``: ``eeg``,
    ``channel_mask``, ``age``, ``sex``, and ``ecg`` / ``spectrogram`` where any window has one (the
    others' rows all NaN, spectrograms centre-cropped to the fewest frames)."""
    batch = {
        "eeg": torch.from_numpy(np.stack([w.eeg for w in windows])).float(),
        "channel_mask": torch.from_numpy(np.stack([w.channel_mask for w in windows]).astype(np.float32)),
        "age": torch.tensor([w.age for w in windows], dtype=torch.float32),
        "sex": encode_sex([w.sex for w in windows]),
    }
    if any(w.ecg is not None for w in windows):
        nan = np.full(windows[0].n_times, np.nan, dtype=np.float16)
        batch["ecg"] = torch.from_numpy(np.stack([nan if w.ecg is None else w.ecg for w in windows])).float()
    spectrogram = crop_spectrograms([w.spectrogram for w in windows])
    if spectrogram is not None:
        batch["spectrogram"] = spectrogram
    return batch


def model_inputs(windows: Sequence[WindowRecord], config: Any) -> dict[str, torch.Tensor]:
    """The inputs a model with ``config`` (its ``modalities`` and, where it has one,
    ``spectrogram_pool``) reads for ``windows``, one batch of equal-length windows."""
    pool = int(getattr(config, "spectrogram_pool", 1) or 1)
    return inputs_for_modalities(record_batch(windows), config.modalities, spectrogram_pool=pool)
