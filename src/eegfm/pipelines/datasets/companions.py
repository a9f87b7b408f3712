"""Files a recording is made of beside its own: which of a folder's files are read through another.

Nihon Kohden keeps a recording in ``X.EEG`` with ``X.21E`` (electrode names), ``X.PNT`` (patient,
start time), ``X.LOG`` (events) and, on some systems, ``X.11D``, ``X.CMT`` and ``X.CN2`` (settings,
comments); Persyst in ``X.lay`` with ``X.dat``; Curry 8 in ``X.cdt`` with ``X.cdt.dpa``/``X.cdt.cef``,
Curry 7 in ``X.dat`` with ``X.dap``/``X.rs3``/``X.ceo``; ANT Neuro's eego in ``X.cnt`` with ``X.evt``;
BrainVision in ``X.vhdr`` with ``X.vmrk``/``X.eeg``. A ``.eeg`` is BrainVision's data or Nihon
Kohden's recording, a ``.dat`` Persyst's data or Curry 7's recording: the files beside them, and a
.eeg's first bytes, tell which.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping

from eegfm.core.stores import STORE_ERRORS
from eegfm.pipelines.readers.file_magic import NIHON_KOHDEN_MAGIC

# Part extension -> (format, the recording extensions it belongs to), matched on the lower-cased name.
_PARTS = {
    ".21e": ("Nihon Kohden", (".eeg",)),
    ".pnt": ("Nihon Kohden", (".eeg",)),
    ".log": ("Nihon Kohden", (".eeg",)),
    ".11d": ("Nihon Kohden", (".eeg",)),  # the montage settings
    ".cmt": ("Nihon Kohden", (".eeg",)),  # the technician's comments
    ".cn2": ("Nihon Kohden", (".eeg",)),  # the channel settings of newer systems
    ".dap": ("Curry", (".dat",)),
    ".rs3": ("Curry", (".dat",)),
    ".ceo": ("Curry", (".dat",)),
    ".cdt.dpa": ("Curry", (".cdt",)),
    ".cdt.cef": ("Curry", (".cdt",)),
    ".cdt.ceo": ("Curry", (".cdt",)),
    ".evt": ("ANT Neuro", (".cnt",)),
}


def by_lower_name(listed: Iterable[str]) -> dict[str, str]:
    """``{path.lower(): path}`` of a listing: built once per listing, since every file's lookup reads it
    (rebuilt per file it made a 10,000-file upload quadratic)."""
    return {f.lower(): f for f in listed}


def part_of_recording(path: str, lowered: Mapping[str, str]) -> str | None:
    """Why ``path`` is read through another listed file (a reason for the listing), or None where it is
    a recording itself or no recording of the listing claims it; ``lowered``: the listing's
    :func:`by_lower_name`."""
    name = path.lower()
    stem = name.rsplit(".", 1)[0]
    for ext, (fmt, owners) in _PARTS.items():
        if name.endswith(ext):
            base = name[: -len(ext)]
            owner = next((lowered[base + o] for o in owners if base + o in lowered), None)
            if owner:
                return f"{fmt} part of the recording {posixpath.basename(owner)} ({ext}), read with it"
            return None
    if name.endswith(".eeg"):
        if header := lowered.get(stem + ".vhdr"):
            return f"BrainVision data of {posixpath.basename(header)} (.eeg), read through it"
        nihon = any(stem + e in lowered for e in (".21e", ".pnt")) or _starts_with(path, NIHON_KOHDEN_MAGIC)
        return None if nihon else "data part of another recording (.eeg), read through its header file"
    if name.endswith(".dat"):
        if header := lowered.get(stem + ".lay"):
            return f"Persyst data of {posixpath.basename(header)} (.dat), read through it"
        if stem + ".dap" in lowered:
            return None  # Curry 7's recording
        return "data part of another recording (.dat), read through its header file (.lay or .dap): none beside it"
    return None


def _starts_with(path: str, magic: tuple[bytes, ...]) -> bool:
    from apache_beam.io.filesystems import FileSystems  # apache_beam: ~1 s to import; only for .eeg/.dat parts

    try:
        with FileSystems.open(path) as fh:
            return fh.read(16).startswith(magic)
    except (OSError, EOFError, *STORE_ERRORS):
        return False
