"""Kaggle HMS EEG parquet files."""

from __future__ import annotations

import os

import numpy as np

from eegfm.pipelines.channels import CANONICAL_CHANNELS
from eegfm.pipelines.readers.base import Reader, ReaderError, RecordingInfo, check_info, one_line

HMS_SFREQ = 200.0
HMS_EEG_COLUMNS = CANONICAL_CHANNELS
HMS_AUX_COLUMNS = ("EKG",)


class HmsParquetReader(Reader):
    """One Kaggle HMS EEG parquet: 19 canonical columns + EKG, 200 Hz, microvolts."""

    def __init__(self, path: str | os.PathLike):
        super().__init__(path)
        import pyarrow.parquet as pq  # heavy: only where a recording is an HMS parquet

        try:
            self._file = pq.ParquetFile(self.path)
        except Exception as err:  # pyarrow raises ArrowInvalid/OSError for non-parquet bytes
            raise ReaderError(path, f"not a parquet file ({one_line(err)})") from err
        columns = tuple(self._file.schema_arrow.names)
        missing = [c for c in HMS_EEG_COLUMNS if c not in columns]
        if missing:
            raise ReaderError(
                path,
                f"columns: expected the 19 HMS EEG columns {' '.join(HMS_EEG_COLUMNS)}; "
                f"missing {', '.join(missing)} (found {', '.join(columns[:25]) or 'none'})",
            )
        wanted = list(HMS_EEG_COLUMNS) + [c for c in HMS_AUX_COLUMNS if c in columns]
        # HMS files are at most tens of MB: read once, then slice per window.
        table = self._file.read(columns=wanted)
        arrays = {c: table.column(c).to_numpy(zero_copy_only=False) for c in wanted}
        # A column that is NaN from start to end is an electrode that was not recorded: leave it
        # out so the harmonizer interpolates it (and marks it in channel_mask). NaN stretches
        # inside a recorded column stay, and reject only the windows they touch.
        self.empty_columns = tuple(c for c, a in arrays.items() if table.num_rows and not np.isfinite(a).any())
        self._columns = [c for c in wanted if c not in self.empty_columns]
        n_times = int(self._file.metadata.num_rows)
        check_info(path, self._columns, HMS_SFREQ, n_times)
        self.info = RecordingInfo(tuple(self._columns), HMS_SFREQ, n_times)
        self.identity_key = self.path.stem
        self._data = np.stack([arrays[c].astype(np.float32) for c in self._columns])

    def _read(self, start: int, stop: int) -> np.ndarray:
        return self._data[:, start:stop].copy()
