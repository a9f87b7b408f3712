"""Equal-length windows as one batch: their samples stacked, their small fields as columns
(:func:`collate_records` decodes serialized records so, without the loader's processes or files;
serving stacks its window records with the same spectrogram crop, ``inference.model_inputs``)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from eegfm.contract.schema import FEATURES, N_CHANS, N_SPECTROGRAM_ROWS
from eegfm.contract.windows import N_CLASSES, VALUES, Window
from eegfm.model.inputs import SEX_CODES, encode_sex

Specs = dict[str, tuple[torch.dtype, tuple[int, ...]]]  # name -> (dtype, shape)
_NAN16 = np.full(1, np.nan, dtype="<f2").tobytes()
_SEX = {**{text.encode(): code for text, code in SEX_CODES.items()}, b"": math.nan}  # as the pipeline writes sex


def signal_specs(batch_size: int, n_times: int, dtype: torch.dtype, ecg: bool = True) -> Specs:
    specs = {"eeg": (dtype, (batch_size, N_CHANS, n_times))}
    if ecg:
        specs["ecg"] = (dtype, (batch_size, n_times))
    return specs


class Rows:
    """Row-by-row writes of float16 samples into a float16 or float32 batch tensor (the latter
    through a one-row float16 stage); no tensor is made per row."""

    __slots__ = ("tensor", "stage", "bytes", "size", "nan")

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor
        half = tensor if tensor.dtype == torch.float16 else torch.empty(tuple(tensor.shape[1:]), dtype=torch.float16)
        self.stage = None if half is tensor else half
        self.bytes = memoryview(half.numpy()).cast("B")
        self.size = 2 * math.prod(tensor.shape[1:])  # bytes per row
        self.nan = _NAN16 * (self.size // 2)

    def put(self, row: int, signal: bytes | torch.Tensor | None) -> None:
        """Row ``row`` from raw float16 bytes, a tensor row, or None (all NaN)."""
        if isinstance(signal, torch.Tensor):
            self.tensor[row].copy_(signal)
            return
        signal = self.nan if signal is None else signal
        if self.stage is None:
            self.bytes[row * self.size : (row + 1) * self.size] = signal
        else:
            self.bytes[:] = signal
            self.tensor[row].copy_(self.stage)


def stack(signals: Sequence[bytes | None], out: torch.Tensor) -> torch.Tensor:
    """Stack float16 signals (raw bytes; None: an all-NaN row) into ``out`` (float32 or float16).
    With several intra-op threads float32 converts in one call: a parallel region per row costs
    far more than the copy."""
    gather = out.dtype != torch.float16 and torch.get_num_threads() > 1
    stage = torch.empty(out.shape, dtype=torch.float16) if gather else out
    rows = Rows(stage)
    for i, signal in enumerate(signals):
        rows.put(i, signal)
    if stage is not out:
        out.copy_(stage)
    return out


def collate(windows: Sequence[Window], dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Decode and stack equal-length windows into a batch (the table in ``training.data``)."""
    eeg = [w.samples("eeg") for w in windows]
    ecg = [w.samples("ecg") for w in windows]
    specs = signal_specs(len(windows), windows[0].n_times, dtype, any(signal is not None for signal in ecg))
    out = {name: torch.empty(shape, dtype=kind) for name, (kind, shape) in specs.items()}
    stack(eeg, out["eeg"])
    if "ecg" in specs:
        stack(ecg, out["ecg"])
    return assemble(windows, out)


def assemble(windows: Sequence[Window], signals: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The batch of ``windows`` around their ``signals`` (``eeg`` and, if any has ECG, ``ecg``), with
    ``spectrogram`` if any window has one (:func:`stack_spectrograms`)."""
    # numpy, not torch: on arrays this small each torch call costs several times the arithmetic
    none = (0.0,) * N_CLASSES
    votes = np.array([v if v else none for v in _lists(windows, "votes", (0, N_CLASSES))], np.float32)
    n_votes = votes.sum(1)
    has_votes = n_votes > 0
    targets = np.zeros_like(votes)
    np.divide(votes, n_votes[:, None], out=targets, where=has_votes[:, None])
    sexes = _firsts(windows, "sex")
    sex = [_SEX.get(value) for value in sexes]
    mask = np.fromiter(
        itertools.chain.from_iterable(_lists(windows, "channel_mask", (N_CHANS,))), np.float32, len(windows) * N_CHANS
    ).reshape(len(windows), N_CHANS)
    batch: dict[str, Any] = {
        "eeg": signals["eeg"],
        "channel_mask": torch.from_numpy(mask),
        "age": torch.from_numpy(np.array(_firsts(windows, "age"), np.float32)),
        "sex": encode_sex(sexes) if None in sex else torch.from_numpy(np.array(sex, np.float32)),
        "votes": torch.from_numpy(votes),
        "targets": torch.from_numpy(targets),
        "has_votes": torch.from_numpy(has_votes),
        "n_votes": torch.from_numpy(n_votes),
        "label": torch.from_numpy(np.array(_firsts(windows, "label"), np.int64)),
        "artifact_score": torch.from_numpy(np.array(_firsts(windows, "artifact_score"), np.float32)),
        "window_start": torch.from_numpy(np.array(_firsts(windows, "window_start_index"), np.int64)),
    }
    if "ecg" in signals:
        batch["ecg"] = signals["ecg"]
    spectrogram = stack_spectrograms(windows)
    if spectrogram is not None:
        batch["spectrogram"] = spectrogram
    for name in ("site_id", "subject_id", "recording_id", "task"):
        batch[name] = [value.decode("utf-8") for value in _firsts(windows, name)]
    return batch


def stack_spectrograms(windows: Sequence[Window]) -> torch.Tensor | None:
    """float32 (B, 400, F) of the windows' spectrograms (log1p µV²/Hz), an all-NaN row for a window
    without one; None if none has one. Where frame counts differ (an HMS window's 300 Kaggle frames
    beside 25 computed ones), each is centre-cropped to the fewest: Kaggle's 10 minutes are centred
    on the labeled EEG window, so the middle frames are the window's own time."""
    return crop_spectrograms([w.spectrogram() for w in windows])


def crop_spectrograms(found: Sequence[np.ndarray | None]) -> torch.Tensor | None:
    """float32 (B, 400, F) of (400, frames) spectrograms (None: an all-NaN row), each centre-cropped
    to the fewest frames (:func:`stack_spectrograms`); None if none is there."""
    frames = [s.shape[1] for s in found if s is not None]
    if not frames:
        return None
    n_frames = min(frames)
    out = np.full((len(found), N_SPECTROGRAM_ROWS, n_frames), np.nan, dtype=np.float32)
    for row, spectrogram in enumerate(found):
        if spectrogram is not None:
            start = (spectrogram.shape[1] - n_frames) // 2
            out[row] = spectrogram[:, start : start + n_frames]
    return torch.from_numpy(out)


def _lists(windows: Sequence[Window], name: str, lengths: tuple[int, ...]) -> list[Sequence[Any]]:
    """Each window's values of list feature ``name``; a count not in ``lengths`` raises through the
    window's own check."""
    found = [window.values(name) for window in windows]
    for window, values in zip(windows, found, strict=True):
        if len(values) not in lengths:
            getattr(window, name)()
    return found


def _firsts(windows: Sequence[Window], name: str) -> list[Any]:
    """Each window's first value of scalar feature ``name``, as ``Window.scalar``/``bytes`` give it."""
    getter = VALUES[name]
    try:
        return [getter(w.features.get(name))[0] for w in windows]
    except (AttributeError, IndexError):  # absent or empty somewhere: defaults, kinds checked
        read = Window.bytes if FEATURES[name].kind == "bytes" else Window.scalar
        return [read(w, name) for w in windows]


def collate_records(records: Sequence[bytes], source: str = "") -> dict[str, Any]:
    """Serialized window records of one length as the loader's batch, decoded by the same code."""
    return collate([Window(raw, source, index) for index, raw in enumerate(records)])
