"""The preprocessing pipeline's snappy TFRecords as torch batches, for step-based DDP training.

Each shard (one DataLoader worker of one rank) reads its files' records in a seeded order,
filters them and shuffles them into open batches; only batches handed out get their small fields
and augmentation, so a resume fast-forwards without copying skipped samples. Modules: ``catalog``,
``config``, ``stream``, ``handoff``, ``workers``, ``loader`` (``EEGLoader``). A record is decoded into
a window by ``contract.windows`` and windows are collated by ``model.batch``.

Batches are dicts (``model_inputs`` picks the model's keyword arguments):

=================  ================  ======================================================
key                type              meaning
=================  ================  ======================================================
eeg                float32 [B,19,T]  µV, canonical channel order (float16 with eeg_dtype)
channel_mask       float32 [B,19]    1 measured, 0 interpolated (or dropped by augmentation)
age, sex           float32 [B]       years; 0 female, 1 male (``model.inputs``); NaN unknown
ecg                float32 [B,T]     only if some window has ECG; all-NaN rows where absent
spectrogram        float32 [B,400,F] only if some window has one: log1p µV²/Hz, Kaggle's HMS
                                     layout; all-NaN rows where absent; frame counts that
                                     differ are centre-cropped to the fewest
votes              float32 [B,6]     expert votes; zeros without votes
targets            float32 [B,6]     votes as a distribution (mixed by mixup/cutmix); zeros
                                     without votes
has_votes          bool [B]          the window has at least one vote
n_votes            float32 [B]       total votes (before mixing)
label              int64 [B]         class index or -1
artifact_score     float32 [B]       0 clean ... 1 artifact
window_start       int64 [B]         ``window_start_index`` (samples at 256 Hz)
site_id, task,     list[str]         pseudonyms; ``task`` is the label space (``""``:
subject_id,                          unlabeled)
recording_id
=================  ================  ======================================================
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "catalog": (
        "SHARD_PATTERN",
        "DatasetInfo",
        "IncompleteDataError",
        "ShardProblem",
        "check_data",
        "check_shards",
        "data_dirs",
        "data_label",
        "describe",
        "file_key",
        "list_files",
        "list_shards",
        "open_source",
        "scan_windows",
        "shard_name",
        "shard_problems",
        "shared_recordings",
    ),
    "config": ("AUTO", "EEG_DTYPES", "LoaderConfig", "RecordFilter"),
    "stream": ("shard_files", "shard_loads"),
    "workers": ("AUTO_MAX_WORKERS", "AUTO_MIN_BATCHES", "Machine", "auto_num_workers"),
    "loader": ("STATE_VERSION", "EEGLoader"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted([*_MODULE_OF, "MODEL_KEYS", "inputs_for_modalities", "model_inputs"])


def __getattr__(name: str) -> Any:
    # Imported on first use: serving's import of ``batch`` brings no loader with it.
    if name in ("MODEL_KEYS", "inputs_for_modalities", "model_inputs"):
        return getattr(importlib.import_module("eegfm.model.inputs"), name)
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
