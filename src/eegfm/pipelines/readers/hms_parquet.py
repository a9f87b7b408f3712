"""Kaggle HMS EEG parquet files, read a batch of rows at a time.

A parquet's few MB can hold tens of millions of rows (a constant column compresses to almost
nothing), so nothing here reads the whole table: the reader keeps one decoded batch and a cursor,
and a whole-column test (a column NaN from start to end) is a streaming pass over that column.
"""

from __future__ import annotations

import bisect
import os

import numpy as np

from eegfm.contract.channels import CANONICAL_CHANNELS
from eegfm.pipelines.readers.base import Reader, ReaderError, RecordingInfo, check_info, one_line

HMS_SFREQ = 200.0
HMS_EEG_COLUMNS = CANONICAL_CHANNELS
HMS_AUX_COLUMNS = ("EKG",)
# Rows decoded at once: about 5 MB for 20 float32 columns, whatever the file's row groups.
BATCH_ROWS = 1 << 16
# Column chunks are read through a buffer of this size, not whole: a row group may hold the file.
_READ_BUFFER = 1 << 20


class HmsParquetReader(Reader):
    """One Kaggle HMS EEG parquet: 19 canonical columns + EKG, 200 Hz, microvolts."""

    def __init__(self, path: str | os.PathLike):
        super().__init__(path)
        import pyarrow.parquet as pq  # heavy: only where a recording is an HMS parquet

        try:
            self._file = pq.ParquetFile(self.path, buffer_size=_READ_BUFFER)
        except Exception as err:  # pyarrow raises ArrowInvalid/OSError for non-parquet bytes
            raise ReaderError(path, f"not a parquet file ({one_line(err)})") from err
        columns = tuple(self._file.schema_arrow.names)
        missing = [c for c in HMS_EEG_COLUMNS if c not in columns]
        if missing:
            shown = columns[:25]
            # A column may be named after the patient (an export's MRN column): the names shown go
            # with the error as labels, so redaction replaces those that are no channel's by tokens.
            raise ReaderError(
                path,
                f"columns: expected the 19 HMS EEG columns {' '.join(HMS_EEG_COLUMNS)}; "
                f"missing {', '.join(missing)} (found {', '.join(shown) or 'none'})",
                labels=shown,
            )
        wanted = list(HMS_EEG_COLUMNS) + [c for c in HMS_AUX_COLUMNS if c in columns]
        untyped = _check_types(path, self._file.schema_arrow, wanted)
        n_times = int(self._file.metadata.num_rows)
        # A column that is NaN from start to end is an electrode that was not recorded: leave it
        # out so the harmonizer interpolates it (and marks it in channel_mask). NaN stretches
        # inside a recorded column stay, and reject only the windows they touch.
        typed = [c for c in wanted if c not in untyped]
        empty = {*untyped, *_all_nan(path, self._file, typed)} if n_times else set()
        self.empty_columns = tuple(c for c in wanted if c in empty)
        self._columns = [c for c in wanted if c not in self.empty_columns]
        check_info(path, self._columns, HMS_SFREQ, n_times)
        self.info = RecordingInfo(tuple(self._columns), HMS_SFREQ, n_times)
        self.identity_key = self.path.stem
        meta = self._file.metadata
        self._group_starts = np.cumsum([0] + [meta.row_group(g).num_rows for g in range(meta.num_row_groups)])
        self._batches = None  # the cursor: an iterator of record batches, from row ``_next_row`` on
        self._next_row = 0
        self._held, self._held_start = np.empty((len(self._columns), 0), dtype=np.float32), 0

    def _read(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((len(self._columns), stop - start), dtype=np.float32)
        if stop == start:
            return out
        group_start = self._group_starts[bisect.bisect_right(self._group_starts, start) - 1]
        if self._batches is None or start < self._held_start or group_start > self._next_row:
            self._seek(start)  # backwards, or a later row group: no decoding of the rows between
        filled = start
        while filled < stop:
            held_stop = self._held_start + self._held.shape[1]
            if self._held_start <= filled < held_stop:
                upto, at = min(stop, held_stop), self._held_start
                out[:, filled - start : upto - start] = self._held[:, filled - at : upto - at]
                filled = upto
            else:
                self._advance(filled)
        return out

    def _seek(self, row: int) -> None:
        """Point the cursor at the row group holding ``row``: parquet can only be decoded from a row group's start."""
        group = bisect.bisect_right(self._group_starts, row) - 1
        groups = list(range(group, len(self._group_starts) - 1))
        self._batches = self._file.iter_batches(
            batch_size=BATCH_ROWS, row_groups=groups, columns=self._columns, use_threads=False
        )
        self._next_row = int(self._group_starts[group])
        self._held, self._held_start = self._held[:, :0], self._next_row

    def _advance(self, needed: int) -> None:
        """Decode the next batch; one ending before row ``needed`` is skipped unconverted."""
        try:
            batch = next(self._batches, None)
        except Exception as err:  # pyarrow raises ArrowInvalid/OSError for damaged pages
            raise ReaderError(self.path, f"data: unreadable rows from {self._next_row} on ({one_line(err)})") from err
        if batch is None:
            raise ReaderError(
                self.path,
                f"rows: the parquet footer declares {self.info.n_times} rows; the data ends after {self._next_row}",
            )
        first, self._next_row = self._next_row, self._next_row + batch.num_rows
        if self._next_row > needed:
            self._held_start = first
            self._held = np.stack([_floats(batch.column(c)) for c in self._columns])

    def close(self) -> None:
        self._batches = None
        self._file.close()


def _floats(column) -> np.ndarray:
    # nulls become NaN (integer columns with nulls come back as float64)
    return column.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)


def _check_types(path, schema, columns: list[str]) -> tuple[str, ...]:
    """The columns typed null (no values at all: not recorded); ReaderError naming the first column
    whose values are not numbers (bool, timestamp, string ...)."""
    import pyarrow as pa  # heavy: only where a recording is an HMS parquet

    untyped = []
    for name in columns:
        kind = schema.field(name).type
        if pa.types.is_null(kind):
            untyped.append(name)
        elif not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            raise ReaderError(
                path, f"column {name}: expected numbers (an integer or floating-point type); got type {kind}"
            )
    return tuple(untyped)


def _all_nan(path, file, columns: list[str]) -> tuple[str, ...]:
    """Of ``columns``, those with no finite value, in a pass that reads a batch at a time and only
    the columns not yet seen to hold one (mostly the first batch settles every column)."""
    unseen = list(columns)
    for group in range(file.metadata.num_row_groups):
        if not unseen:
            break
        try:
            for batch in file.iter_batches(BATCH_ROWS, row_groups=[group], columns=unseen, use_threads=False):
                unseen = [c for c in unseen if not np.isfinite(_floats(batch.column(c))).any()]
                if not unseen:
                    break
        except Exception as err:  # pyarrow raises ArrowInvalid/OSError for damaged pages
            raise ReaderError(path, f"data: unreadable in row group {group + 1} ({one_line(err)})") from err
    return tuple(unseen)
