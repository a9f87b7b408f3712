"""eegfm-predict's ``--input`` paths as the user typed them: what is wrong with one that names nothing
or holds no recording file. Said with the path exactly as typed, once: it is the user's own text, not
data, so it is never a token (the names found inside a folder are, everywhere)."""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence

from eegfm.pipelines.datasets.items import RECORDING_EXTENSIONS, RECORDING_OR_PART

_WILDCARD = re.compile(r"[*?\[]")
# what a folder is searched for, as a user reads it: each kind once (.edf stands for .edf.gz too)
LOOKED_FOR = ", ".join(dict.fromkeys(e for e in (*RECORDING_EXTENSIONS, *RECORDING_OR_PART) if not e.endswith(".gz")))


def _is_local(typed: str) -> bool:
    return "://" not in typed


def _no_recording(typed: str) -> str:
    """Why ``typed`` (it exists) gave no recording, by what it is."""
    if _is_local(typed) and not _WILDCARD.search(typed) and os.path.isdir(typed):
        return f"holds no recording file (looked for {LOOKED_FOR})"
    if _WILDCARD.search(typed):
        return f"matches no recording file (looked for {LOOKED_FOR})"
    return f"is no recording file (expected one of {LOOKED_FOR})"


def input_problem(typed: str) -> str | None:
    """What is wrong with a local --input before anything is listed: it names nothing (a missing
    path, a glob that matches nothing) or an empty folder; None where it names something (an object
    store's path is listed by discovery, which says what it lacks)."""
    if not _is_local(typed):
        return None
    if _WILDCARD.search(typed):
        return None if glob.glob(typed, recursive=True) else "matches no file or folder"
    if not os.path.lexists(typed):
        return "no such file or folder"
    if os.path.isdir(typed):
        try:
            with os.scandir(typed) as entries:
                empty = next(entries, None) is None
        except OSError as err:
            return f"cannot list this folder ({err.strerror})"
        if empty:
            return f"{_no_recording(typed)}: it is empty"
    return None


def typed_listing_error(message: str, typed: Sequence[str]) -> str | None:
    """Discovery's "matched no files" for one of the typed inputs, said as :func:`input_problem` says
    it; None for any other message (one about a file found inside a folder, which is data)."""
    for given in typed:
        if message.startswith(f"--input {given}: matched no files"):
            return f"--input {given}: {_no_recording(given)}"
    return None


def no_recording_problem(typed: Sequence[str], others: int) -> str:
    """The usage error for inputs that hold no recording at all, ``others`` entries that are none:
    each --input as typed with what it is."""
    said = "; ".join(f"--input {given}: {_no_recording(given)}" for given in typed)
    if others:
        said += f" ({others} other entr{'ies' if others > 1 else 'y'}, none a recording)"
    return said
