"""Which spectrogram a window's record carries (none under ``--no_spectrogram``).

An HMS labeled window whose recording has its Kaggle spectrogram file beside it
(``SourceItem.spectrogram_path``) carries that file's 10 minutes from the label's
``spectrogram_label_offset_seconds``: the frames with ``time`` in [offset, offset + 600), 300 in
Kaggle's files, as log1p of Kaggle's power. Every other window carries
``contract.spectrogram.window_spectrogram`` of its own signal (one frame per whole 2 s). A Kaggle
file that cannot be read, lacks Kaggle's columns or holds no frame in those 10 minutes costs the
window its spectrogram only; one warning per recording names it by its pseudonym, not its path.
"""

from __future__ import annotations

import numpy as np

from eegfm.contract.spectrogram import kaggle_window, spectrogram_columns, window_spectrogram
from eegfm.core.logs import get_logger
from eegfm.pipelines.datasets import SourceItem
from eegfm.pipelines.readers.local_copy import localized

log = get_logger("spectrogram")

KAGGLE_WINDOW_S = 600.0  # Kaggle's labeled spectrogram windows: 10 minutes


class SpectrogramFileError(ValueError):
    """A Kaggle spectrogram file that cannot be used; the message names no path."""


def read_kaggle_spectrogram(path: str) -> tuple[np.ndarray, np.ndarray]:
    """``(time (n,) seconds, power (n, 400) µV²/Hz)`` of a Kaggle spectrogram parquet, columns in
    ``spectrogram_columns()`` order; `SpectrogramFileError` says what is wrong."""
    import pyarrow.parquet as pq  # heavy: only where a recording has a Kaggle spectrogram

    columns = spectrogram_columns()
    try:
        with localized(path) as (local, _):
            table = pq.read_table(local)
    except Exception as err:  # pyarrow's ArrowInvalid, OSError, a store's error: all cost the spectrogram only
        raise SpectrogramFileError(f"not a readable parquet file ({type(err).__name__})") from err
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise SpectrogramFileError(
            f"expected Kaggle's columns time, LL_0.59 .. RP_19.92; {len(missing)} missing, such as {missing[0]!r}"
        )
    times = table.column("time").to_numpy(zero_copy_only=False).astype(np.float64)
    power = np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for c in columns[1:]])
    return times, power.astype(np.float64)


class WindowSpectrograms:
    """The spectrograms of one recording's windows; its Kaggle file, if any, is read once."""

    def __init__(self, item: SourceItem, enabled: bool, recording: str) -> None:
        self.enabled = enabled
        self.path = item.spectrogram_path
        self.recording = recording  # the recording's pseudonym, for the warning
        self._kaggle: tuple[np.ndarray, np.ndarray] | None = None
        self._failed = False

    def for_windows(self, offsets_s: list[float | None], eeg: np.ndarray, masks: np.ndarray) -> list[np.ndarray | None]:
        """Per window, (400, n_frames) log1p µV²/Hz or None: windows with Kaggle spectrogram offsets
        ``offsets_s`` (None: none), samples ``eeg`` (windows, 19, n) at 256 Hz and channel masks
        ``masks`` (windows, 19). The computed ones come from one batched call."""
        if not self.enabled:
            return [None] * len(offsets_s)
        out = [None if offset is None or not self.path else self._from_kaggle(offset) for offset in offsets_s]
        computed = [i for i, offset in enumerate(offsets_s) if offset is None or not self.path]
        if computed:
            every = len(computed) == len(offsets_s)  # the usual case: no copy of the samples
            spectrograms = window_spectrogram(*((eeg, masks) if every else (eeg[computed], masks[computed])))
            for i, spectrogram in zip(computed, spectrograms):
                out[i] = spectrogram if spectrogram.shape[1] else None
        return out

    def _from_kaggle(self, offset_s: float) -> np.ndarray | None:
        kaggle = self._kaggle_file()
        if kaggle is None:
            return None
        window = kaggle_window(*kaggle, offset_s, KAGGLE_WINDOW_S)
        if not window.shape[1]:
            log.warning(
                "recording %s: its Kaggle spectrogram has no frame in [%g s, %g s); the window is kept without one",
                self.recording,
                offset_s,
                offset_s + KAGGLE_WINDOW_S,
            )
            return None
        return window

    def _kaggle_file(self) -> tuple[np.ndarray, np.ndarray] | None:
        if self._kaggle is None and not self._failed:
            try:
                self._kaggle = read_kaggle_spectrogram(self.path)
            except SpectrogramFileError as err:
                self._failed = True
                log.warning(
                    "recording %s: its Kaggle spectrogram file is unusable (%s); its windows are kept without one",
                    self.recording,
                    err,
                )
        return self._kaggle
