"""Which MNE reader opens a recording: by extension, and by content where an extension is shared.

A ``.cnt`` is Neuroscan's or ANT Neuro's (eego; a RIFF/RF64 container); a ``.eeg`` is Nihon Kohden's
recording or BrainVision's data file (read through its ``.vhdr``). Readers that need a package this
installation lacks fail with a `ReaderError` naming it, not with MNE's install hint deep in a traceback.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable

import numpy as np

from eegfm.pipelines.readers.base import ReaderError, format_of, one_line
from eegfm.pipelines.readers.file_magic import ANT_MAGIC, NIHON_KOHDEN_MAGIC
from eegfm.pipelines.readers.regular_files import open_regular
from eegfm.pipelines.signal.chunking import max_chunk

# The packages MNE's readers import for a format, where they are not MNE's own dependencies.
NEEDS_PACKAGE = {"ant": "antio", "curry": "curryreader", "nedf": "defusedxml"}
_NAMES = {
    "ant": "ANT Neuro eego .cnt",
    "neuroscan": "Neuroscan .cnt",
    "curry": "Curry",
    "nihon": "Nihon Kohden .EEG",
    "nedf": "NeuroElectrics .nedf",
}


def head_bytes(path: str | os.PathLike, n: int = 16) -> bytes:
    with open_regular(path) as fh:
        return fh.read(n)


def is_ant_cnt(path: str | os.PathLike) -> bool:
    return head_bytes(path, 4) in ANT_MAGIC


def is_nihon_kohden_eeg(path: str | os.PathLike) -> bool:
    return head_bytes(path).startswith(NIHON_KOHDEN_MAGIC)


def resolved_format(path: str | os.PathLike) -> str:
    """``format_of`` with a shared extension resolved by the file's first bytes: 'ant' or 'neuroscan'
    for a .cnt; 'nihon' for a Nihon Kohden .EEG (a BrainVision data file is refused: read its header)."""
    fmt = format_of(path)
    if fmt == "cnt":
        return "ant" if is_ant_cnt(path) else "neuroscan"
    if fmt == "nihon" and not is_nihon_kohden_eeg(path):
        raise ReaderError(
            path,
            f"file type: a .eeg without Nihon Kohden's header (expected it to start with one of "
            f"{', '.join(m.decode() for m in NIHON_KOHDEN_MAGIC)}; got {head_bytes(path)!r}): a BrainVision "
            "data file, read through its .vhdr",
        )
    if str(path).lower().endswith(".dat") and not _beside(path, ".dap"):
        raise ReaderError(
            path,
            "file type: a .dat is Curry 7's recording with its .dap beside it (none here), or Persyst's data, "
            "read through its .lay",
        )
    return fmt


def _beside(path: str | os.PathLike, ext: str) -> bool:
    """Whether a file of ``path``'s name with extension ``ext`` (either case) lies beside it."""
    stem = os.path.splitext(str(path))[0]
    return any(os.path.exists(stem + e) for e in (ext, ext.upper()))


def missing_package(fmt: str) -> str | None:
    package = NEEDS_PACKAGE.get(fmt)
    return package if package and importlib.util.find_spec(package) is None else None


def raw_reader(fmt: str) -> Callable:
    """``read(path)`` -> MNE Raw for a resolved format (see `resolved_format`)."""
    import mne  # heavy: only where a file is not EDF or parquet

    if package := missing_package(fmt):

        def unavailable(path):
            raise ReaderError(
                path,
                f"{_NAMES[fmt]} file: MNE reads it with the package {package}, which is not installed "
                f"(pip install {package})",
            )

        return unavailable
    readers = {
        "fif": mne.io.read_raw_fif,
        "neuroscan": read_neuroscan_cnt,
        "ant": mne.io.read_raw_ant,
        "gdf": mne.io.read_raw_gdf,
        "nihon": mne.io.read_raw_nihon,
        "persyst": mne.io.read_raw_persyst,
        "curry": mne.io.read_raw_curry,
        "eximia": mne.io.read_raw_eximia,
        "nedf": mne.io.read_raw_nedf,
        "egi": mne.io.read_raw_egi,
        "brainvision": mne.io.read_raw_brainvision,
        "eeglab": mne.io.read_raw_eeglab,
        "edf": mne.io.read_raw_edf,
        "bdf": mne.io.read_raw_bdf,
    }
    read = readers[fmt]
    return lambda path: read(path, preload=False, verbose="error")


def read_cnt_either(path: str | os.PathLike):
    """A .cnt by the reader its first bytes call for; where that one fails, the error names both formats."""
    fmt = "ant" if is_ant_cnt(path) else "neuroscan"
    try:
        return raw_reader(fmt)(path)
    except ReaderError:
        raise
    except Exception as err:  # MNE raises many types for malformed files
        other = "Neuroscan (no RIFF/RF64 header)" if fmt == "ant" else "ANT Neuro eego (it has no RIFF/RF64 header)"
        raise ReaderError(
            path, f"not a readable .cnt: read as {_NAMES[fmt]}: {one_line(err)}; and not {other}"
        ) from err


def read_neuroscan_cnt(path: str | os.PathLike, **kwargs):
    """MNE's Neuroscan reader; where it cannot tell 16- from 32-bit samples from the sizes (a clipped
    file), the width whose samples are smoother: 32-bit samples read as 16-bit halves alternate
    between a sample's high and low word, noise-like."""
    import mne  # heavy: only where a file is not EDF or parquet

    try:
        return mne.io.read_raw_cnt(path, **kwargs)
    except RuntimeError as err:
        if "data_format" not in str(err):
            raise
    candidates = [mne.io.read_raw_cnt(path, data_format=f, **kwargs) for f in ("int32", "int16")]
    return min(candidates, key=_roughness)


def _roughness(raw) -> float:
    """Sample-to-sample change over spread, on the first few seconds: about 0.1 for EEG, 1.4 for noise."""
    stop = min(raw.n_times, int(10 * raw.info["sfreq"]), max_chunk(len(raw.ch_names)))
    data = raw.get_data(start=0, stop=stop)
    spread = float(np.std(data))
    return float(np.std(np.diff(data, axis=1))) / spread if spread > 0 else np.inf


def read_raw_by_format(path: str | os.PathLike):
    """MNE's Raw for any format of ``readers.base.FORMATS`` but parquet, by `resolved_format`."""
    if format_of(path) == "cnt":
        return read_cnt_either(path)
    return raw_reader(resolved_format(path))(path)
