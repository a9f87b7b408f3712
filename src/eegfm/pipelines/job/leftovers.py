"""What runs killed before the end left in their output folder, and its removal by the next run.

A run stopped on this machine removes its own temporary folders (``preprocess``); a killed one
(SIGKILL, the out-of-memory killer, a lost machine) cannot: its spill folders (every recording's
encoded windows, tens of MB) and Beam's temporary shard folders stay in the output. The next run
into a local output folder removes them once it holds the folder's run lock, so no run is writing
there; an object store has no lock, so there only ``--overwrite`` removes them.
"""

from __future__ import annotations

import glob
import os

from eegfm.core.logs import get_logger
from eegfm.core.stores import discard_folders, is_remote, match_below

log = get_logger("preprocess")

# A run's temporary folders in its output (spilled windows, shards not yet renamed).
TEMPORARY_FOLDERS = (".spill-*", "beam-temp-*")


def temporary_folders(output: str) -> dict[str, int]:
    """The temporary folders in ``output`` with the bytes of their files (0: empty or unknown)."""
    found: dict[str, int] = {}
    for pattern in TEMPORARY_FOLDERS:
        for meta in match_below(output, f"{pattern}/*"):
            folder = meta.path.rsplit("/", 1)[0]
            found[folder] = found.get(folder, 0) + meta.size_in_bytes
        if not is_remote(output):  # empty local folders have no files to match
            for folder in glob.glob(os.path.join(glob.escape(output), pattern)):
                if os.path.isdir(folder):
                    found.setdefault(folder, 0)
    return found


def clear_temporary_folders(output: str, *, locked: bool, overwrite: bool) -> int:
    """Remove the temporary folders of killed runs from ``output`` where this run holds its lock
    (``locked``) or ``overwrite`` says so, else warn of them; the number removed. The log line gives
    their number and size only: no names."""
    stale = temporary_folders(output)
    if not stale:
        return 0
    size_mb = sum(stale.values()) / 1e6
    if not (locked or overwrite):
        log.warning(
            "%s holds %d temporary folder(s) (%.1f MB) of runs that stopped early; with no run lock on an "
            "object store another run may be using them: --overwrite deletes them",
            output,
            len(stale),
            size_mb,
        )
        return 0
    discard_folders(stale)
    left = temporary_folders(output)
    log.info(
        "removed %d temporary folder(s) (%.1f MB: spilled windows, unfinished shards) that runs killed "
        "before the end left in the output folder",
        len(stale) - len(left),
        (sum(stale.values()) - sum(left.values())) / 1e6,
    )
    return len(stale) - len(left)
