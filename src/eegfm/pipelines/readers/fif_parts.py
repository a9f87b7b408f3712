"""Split FIF recordings: which file continues which.

MNE and MEGIN/Neuromag split a recording over 2 GB into parts ``x_raw.fif``, ``x_raw-1.fif`` ...
(BIDS: ``..._split-01_eeg.fif`` ...). A later part references the part before it, ahead of its
data; every part but the last ends with a reference to the next. MNE, asked for a part, reads it
and every part after it, so a later part given as an input of its own would be read twice.

A FIF file is a sequence of tags: kind, type, size and next (big-endian int32), then ``size``
bytes of data. A reference is a ``FIFFB_REF`` block holding its role, the file's name and number.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import posixpath
import re
import struct
from typing import BinaryIO

_TAG = struct.Struct(">iiii")
_BLOCK_START, _BLOCK_END = 104, 105
_REF_BLOCK = 118  # FIFFB_REF
_REF_ROLE, _REF_FILE_NUM, _REF_FILE_NAME = 115, 117, 118
_REF_FIELDS = {_REF_ROLE: "role", _REF_FILE_NUM: "number", _REF_FILE_NAME: "name"}
_ROLES = {1: "previous", 2: "next"}
_DATA_BUFFER = 300
# The reference to a previous part comes right after the measurement info, at the start of the raw data block and before
# its first buffer; the info, even with hundreds of channels and projectors, stays well under this.
HEAD_BYTES = 4 << 20
# MNE names the later parts of a gzipped ``x.fif.gz`` ``x.fif-1.gz``, ``x.fif-2.gz`` ...
GZIPPED_PART = re.compile(r"\.fif-\d+\.gz$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class PartReference:
    """A reference block: role (``"previous"``/``"next"``), the file's name as stored (a path on the
    machine that wrote it: only its base name means anything) and part number (0 for the first)."""

    role: str
    name: str
    number: int | None

    @property
    def basename(self) -> str:
        return posixpath.basename(self.name.replace("\\", "/"))


def _references(fh: BinaryIO, limit: int | None) -> list[PartReference]:
    """The reference blocks met walking the tags of ``fh`` from its start; with ``limit``, stops
    at the first data buffer (or past ``limit`` bytes): a previous-part reference comes before."""
    found: list[PartReference] = []
    current: dict | None = None
    pos = 0
    while limit is None or pos < limit:
        header = fh.read(_TAG.size)
        if len(header) < _TAG.size:
            break
        kind, _type, size, _next = _TAG.unpack(header)
        if size < 0:
            break  # not a FIF file, or a damaged one: MNE's reader says which
        wanted = kind in (_BLOCK_START, _BLOCK_END) or (current is not None and kind in _REF_FIELDS)
        if limit is not None and kind == _DATA_BUFFER:
            break
        if wanted and size <= 4096:
            data = fh.read(size)
            if len(data) < size:
                break
        else:
            data = b""
            if limit is None:
                fh.seek(size, os.SEEK_CUR)
            elif len(fh.read(size)) < size:  # a remote or gzipped head: reading on beats seeking
                break
        pos += _TAG.size + size
        value = struct.unpack(">i", data[:4])[0] if len(data) >= 4 else None
        if kind == _BLOCK_START and value == _REF_BLOCK:
            current = {}
        elif kind == _BLOCK_END and value == _REF_BLOCK and current is not None:
            role = _ROLES.get(current.get("role"))
            if role:
                found.append(PartReference(role, current.get("name", ""), current.get("number")))
            current = None
        elif current is not None and kind in _REF_FIELDS:
            text = data.decode("utf-8", "replace").rstrip("\x00")
            current[_REF_FIELDS[kind]] = text if kind == _REF_FILE_NAME else value
    return found


def previous_part(fh: BinaryIO) -> PartReference | None:
    """The part ``fh`` (a FIF file, read from its start) continues; None for a first part or a
    file that is not split."""
    return next((r for r in _references(fh, HEAD_BYTES) if r.role == "previous"), None)


_LEGACY_PART = re.compile(r"^(?P<stem>[^.]*?)-(?P<n>\d+)(?P<ext>\..*)$")
_BIDS_PART = re.compile(r"_split-(?P<n>\d+)_")


def previous_part_names(name: str, ref: PartReference) -> list[str]:
    """Names the part before the file ``name`` (whose previous-part reference is ``ref``) may
    have beside it, likeliest first: the name the reference stores, then this file's name with
    its part number less one. The stored name can be stale: MNE's BIDS naming stores the name
    the recording was saved under (``x_eeg.fif``), though the first part is ``x_split-01_eeg.fif``."""
    names = [ref.basename] if ref.basename else []
    if (legacy := _LEGACY_PART.match(name)) and int(legacy["n"]) >= 1:
        n = int(legacy["n"]) - 1
        names.append(f"{legacy['stem']}{'' if n == 0 else f'-{n}'}{legacy['ext']}")
    if (bids := _BIDS_PART.search(name)) and int(bids["n"]) >= 2:
        n = int(bids["n"]) - 1
        names.append(name[: bids.start()] + f"_split-{n:0{len(bids['n'])}d}_" + name[bids.end() :])
    return list(dict.fromkeys(n for n in names if n != name))


def next_part_name(path: str) -> str | None:
    """The base name of the part after the local FIF file ``path``; None for a last part or a
    file that is not split. Walks every tag (seeking over the data), so local files only."""
    opener = gzip.open if path.lower().endswith(".gz") else open
    with opener(path, "rb") as fh:
        ref = next((r for r in _references(fh, None) if r.role == "next"), None)
    if ref is not None and ref.name:
        return ref.basename
    if ref is None or ref.number is None:
        return None
    # Only a number: MNE derives the name from this file's ("x_raw.fif" -> "x_raw-1.fif").
    base = os.path.basename(path)
    stem, dot, ext = base.partition(".")
    head, dash, number = stem.rpartition("-")
    stem = head if dash and number.isdigit() else stem
    return f"{stem}-{ref.number}{dot}{ext}"
