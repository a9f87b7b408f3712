"""The dataset adapter registry, and what every adapter does with a data set folder's files.

A corpus module registers its adapter with :func:`register` and the files it reads beside the
recordings with :func:`companion_files`: a new corpus is one new module imported by ``discovery``
and its name in ``names.ADAPTER_NAMES``, which orders detection.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from collections.abc import Callable

from eegfm.core.logs import get_logger
from eegfm.core.stores import STORE_ERRORS
from eegfm.pipelines.datasets.companions import by_lower_name, part_of_recording
from eegfm.pipelines.datasets.items import (
    COMPANION_EXTENSIONS,
    RECORDING_EXTENSIONS,
    RECORDING_OR_PART,
    Ignored,
    SourceItem,
)
from eegfm.pipelines.datasets.names import ADAPTER_NAMES
from eegfm.pipelines.readers.fif_parts import GZIPPED_PART, previous_part, previous_part_names

log = get_logger("datasets")

# Documents that ship beside recordings (EEGMMI's montage drawing, a data set's README).
_DOCUMENTATION = (".md", ".txt", ".pdf", ".png", ".jpg", ".jpeg", ".html", ".htm", ".rtf", ".doc", ".docx")
_FILE_SYSTEM_METADATA = (".DS_Store", "Thumbs.db", "desktop.ini")


@dataclasses.dataclass(frozen=True)
class Group:
    """One data set's files, as its adapter lists them."""

    files: list[str]
    roots: list[str]  # the input folders: a recording's site is the first folder below them
    site: str | None = None  # --site: one site for every recording
    label_files: tuple[str, ...] = ()  # every labels.csv of the inputs (one may describe the folders below it)

    def site_of(self, path: str) -> str:
        return self.site or site_from_path(path, self.roots)


Listing = tuple[list[SourceItem], list[Ignored]]


@dataclasses.dataclass(frozen=True)
class Adapter:
    name: str  # its place in names.ADAPTER_NAMES is its detection order
    list_items: Callable[[Group], Listing]
    detect: Callable[[list[str]], bool] | None = None  # None: never detected, only asked for (or the fallback)


ADAPTERS: dict[str, Adapter] = {}
# Per corpus module: why a file that is no recording is listed as read (a label file, an index), or None.
COMPANION_FILES: list[Callable[[str, set[str]], str | None]] = []


def register(name: str, detect: Callable[[list[str]], bool] | None = None):
    """Decorator: ``list_items(group) -> (items, ignored)`` is the adapter of the data set ``name``,
    one of ``names.ADAPTER_NAMES``."""
    if name not in ADAPTER_NAMES:
        raise ValueError(f"dataset adapter {name!r}: not in names.ADAPTER_NAMES, which orders detection")

    def add(list_items: Callable[[Group], Listing]) -> Callable[[Group], Listing]:
        ADAPTERS[name] = Adapter(name, list_items, detect)
        return list_items

    return add


def companion_files(reason: Callable[[str, set[str]], str | None]) -> Callable[[str, set[str]], str | None]:
    COMPANION_FILES.append(reason)
    return reason


def sidecar(path: str) -> str:
    return f"metadata sidecar ({lower_ext(path)}), read by the data set adapter"


def lower_ext(path: str) -> str:
    name = posixpath.basename(path).lower()
    if GZIPPED_PART.search(name):
        return ".fif.gz"
    return next((d for d in (".fif.gz", ".edf.gz", ".bdf.gz") if name.endswith(d)), posixpath.splitext(name)[1])


def every_edf(files: list[str], named: Callable[[str], bool]) -> bool:
    """Whether ``files`` hold EDF files, each one ``named`` as a corpus names its recordings."""
    edfs = [f for f in files if lower_ext(f) == ".edf"]
    return bool(edfs) and all(named(f) for f in edfs)


def site_from_path(path: str, roots: list[str]) -> str:
    """The first folder below the input root, e.g. `<root>/site-a/x.edf` -> 'site-a'."""
    for root in sorted(roots, key=len, reverse=True):
        root = root.rstrip("/")
        if path.startswith(root + "/"):
            head = path[len(root) + 1 :].split("/", 1)
            return head[0] if len(head) == 2 else posixpath.basename(root) or "default"
    return posixpath.basename(posixpath.dirname(path)) or "default"


def _why_not_recording(f: str, listed: set[str], lowered: dict[str, str]) -> str | None:
    ext, name = lower_ext(f), posixpath.basename(f)
    if name.startswith("._") and len(name) > 2:
        return f"macOS AppleDouble metadata of {name[2:]} (file-system metadata, not a recording)"
    if name in _FILE_SYSTEM_METADATA:
        return "file-system metadata (macOS .DS_Store, Windows Thumbs.db), not a recording"
    if name.startswith("."):
        return "hidden file (its name starts with a dot), not a recording"
    if part := part_of_recording(f, lowered):
        return part
    if ext in RECORDING_EXTENSIONS or ext in RECORDING_OR_PART:
        return None
    if reason := next((r for r in (known(f, listed) for known in COMPANION_FILES) if r), None):
        return reason
    if ext in _DOCUMENTATION:
        return f"documentation ({ext}), not a recording"
    if ext in (".csv", ".tsv", ".json", ".csv_bi"):
        return f"metadata ({ext}), not a recording; no data set adapter reads {name}"
    if ext in COMPANION_EXTENSIONS:
        return f"data part of another recording ({ext}), read through its header file"
    return None  # unknown type: the reader quarantines it with a clear reason


def named_in_reason(path: str) -> list[str]:
    """The other files the reason ``split_recordings`` gives for ``path`` names: the recording an
    AppleDouble ``._rec.edf`` describes (``rec.edf`` beside it), for redaction to know it."""
    name = posixpath.basename(path)
    return [posixpath.join(posixpath.dirname(path), name[2:])] if name.startswith("._") and len(name) > 2 else []


def split_recordings(files: list[str]) -> tuple[list[str], list[Ignored]]:
    """A folder's recordings, and its other files with why each is not one."""
    listed, lowered = set(files), by_lower_name(files)
    reasons = [(f, _why_not_recording(f, listed, lowered)) for f in files]
    recordings = [f for f, reason in reasons if not reason]
    ignored = [Ignored(f, reason) for f, reason in reasons if reason]
    continued = _fif_continuations(recordings)
    ignored += [Ignored(f, reason) for f, reason in continued.items()]
    return [f for f in recordings if f not in continued], ignored


def _fif_continuations(recordings: list[str]) -> dict[str, str]:
    """``{part: reason}`` for the FIF files that continue another input FIF (``pipelines.readers.fif_parts``),
    read through its first part. Only FIFs beside another are opened (a part lies beside the one before)."""
    folders: dict[str, list[str]] = {}
    for f in recordings:
        if lower_ext(f) in (".fif", ".fif.gz"):
            folders.setdefault(posixpath.dirname(f), []).append(f)
    previous: dict[str, tuple[str, int | None]] = {}
    for files in folders.values():
        if len(files) < 2:
            continue
        from apache_beam.io.filesystems import FileSystems  # apache_beam: ~1 s to import; only to open FIF parts

        names = {posixpath.basename(f): f for f in files}
        for f in files:
            try:
                with FileSystems.open(f) as fh:
                    ref = previous_part(fh)
            except (OSError, EOFError, *STORE_ERRORS):
                continue  # the reader quarantines what it cannot read, with the reason
            if ref is None:
                continue
            before = next((n for n in previous_part_names(posixpath.basename(f), ref) if n in names), None)
            if before:
                previous[f] = (names[before], ref.number)
            else:
                log.warning(
                    "%s continues a split FIF recording whose part %s is not among the inputs: read from this part on",
                    f,
                    ref.basename or ref.number,
                )
    reasons = {}
    for f, (before, number) in previous.items():
        first, seen = before, {f}
        while first in previous and first not in seen:
            seen.add(first)
            first = previous[first][0]
        part = f"part {number + 2} " if isinstance(number, int) and number >= 0 else "a later part "
        reasons[f] = (
            f"{part}of a split FIF recording; its data are read through the first part, {posixpath.basename(first)}"
        )
    return reasons


def plain(path: str, group: Group) -> SourceItem:
    """A recording no adapter labels: processed as it is, unlabeled."""
    return SourceItem(path=path, dataset="edf", site=group.site_of(path))


def by_name(group: Group, pattern: re.Pattern, *companions: str):
    """A data set folder's recordings as ``(items, ignored, named)``: ``named`` pairs each recording ``pattern`` names,
    with a file of each ``companions`` extension beside it, with the match; the others are `plain` items."""
    recordings, ignored = split_recordings(group.files)
    listed = set(group.files)
    items, named = [], []
    for path in recordings:
        found = pattern.match(posixpath.basename(path))
        if found and all(path[:-4] + ext in listed for ext in companions):
            named.append((path, found))
        else:
            items.append(plain(path, group))
    return items, ignored, named
