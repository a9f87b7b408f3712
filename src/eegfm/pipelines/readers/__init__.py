"""Recording readers: one interface (`base.Reader`) over EDF/BDF/FIF/BrainVision/EEGLAB/EGI and HMS parquet files."""

from __future__ import annotations

import os
from pathlib import Path

from eegfm.pipelines.readers.annotations import annotated_events, annotated_segments, annotation_samples
from eegfm.pipelines.readers.base import ARCHIVES, FORMATS, GZIPPED, Reader, ReaderError, Segment, format_of
from eegfm.pipelines.readers.edf import EdfReader
from eegfm.pipelines.readers.eeglab import eeglab_data_file
from eegfm.pipelines.readers.hms_parquet import HmsParquetReader
from eegfm.pipelines.readers.mne_reader import EpochsReader, MneReader, read_epochs
from eegfm.pipelines.readers.regular_files import check_regular

__all__ = [
    "GZIPPED",
    "HmsParquetReader",
    "MneReader",
    "Reader",
    "ReaderError",
    "Segment",
    "annotated_events",
    "annotated_segments",
    "annotation_samples",
    "eeglab_data_file",
    "open_recording",
]


def open_recording(path: str | os.PathLike) -> Reader:
    """The reader for a file, chosen by extension."""
    fmt = format_of(path)
    if fmt == "recording":
        archive = next((a for a in ARCHIVES if Path(path).name.lower().endswith(a)), None)
        got = archive or Path(path).suffix
        hint = " (an archive: unpack it and give the folder as --input)" if archive else ""
        raise ReaderError(
            path, f"file type: expected one of {', '.join(sorted({*FORMATS, *GZIPPED}))}; got {got!r}{hint}"
        )
    if os.path.isdir(path) and fmt == "egi":  # an MFF is a folder of files (pipelines.readers.local_copy checks them)
        size = 1
    else:  # opened without blocking, as every reader's own open is not: a FIFO swapped in is refused here
        size = check_regular(path)
    if size == 0:
        raise ReaderError(path, "file size: expected a recording; got an empty (0-byte) file")
    if fmt == "hms_parquet":
        return HmsParquetReader(path)
    if fmt in ("edf", "bdf"):
        return EdfReader(path)
    try:
        return MneReader(path)
    except ReaderError:
        epochs = read_epochs(path) if fmt in ("fif", "eeglab") else None
        if epochs is None:
            raise
        return EpochsReader(path, epochs)
