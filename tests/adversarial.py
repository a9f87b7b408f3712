"""Adversarial input folders: entries an export or a hostile user leaves beside real recordings, each
with what a run must say of it. For the batch jobs' tests (``eegfm-preprocess``, ``eegfm-predict``) and
for the server's: build once with :func:`build_adversarial_inputs`, then check outputs with
:func:`raw_names_in`.

Every builder works in a folder of the test's own (``tmp_path``); the real recordings are linked,
never copied.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
from pathlib import Path

GOOD_EDF = "eegmat/Subject00_1.edf"
OTHER_EDF = "eegmat/Subject00_2.edf"
# A Latin-1 export's name: the bytes b"M\xfcller.edf", which Python on Linux spells surrogate-escaped.
LATIN1_NAME = os.fsdecode(b"M\xfcller.edf")
# Identifier-like strings that must never show under the default redaction, as bytes in any encoding
# a file or log could hold them: surrogate-escaped in JSON, Latin-1, UTF-8, or UTF-8 decomposed.
RAW_NAME_BYTES = (
    b"DOE_JOHN",
    b"M\xfcller",
    "Müller".encode(),
    "Mu\u0308ller".encode(),
    b"M\\udcfcller",
    b"M\\u00fcller",
    b"M\\xfcller",
)


@dataclasses.dataclass(frozen=True)
class Case:
    """One entry of the folder: ``outcome`` is "processed", "quarantined" or "ignored"; ``reason``
    words its manifest or quarantine reason must hold (for a processed one, '')."""

    name: str
    outcome: str
    reason: str = ""


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _socket(path: Path) -> None:
    """A Unix socket file (it stays when the socket closes); too long a path for AF_UNIX: OSError."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))


def build_adversarial_inputs(folder: Path, shared_data: Path, *, sockets: bool = True) -> dict[str, Case]:
    """Fill ``folder`` with one good recording and every adversarial entry; ``{name: Case}``.

    - ``good.edf``: a link to a real recording (processed);
    - ``M\\xfcller.edf`` (not UTF-8): a link to another real recording (processed, named by its token);
    - ``DOE_JOHN.edf``: a FIFO (opening it would wait for a writer for ever); ``sock.edf``: a socket;
    - ``zero.edf``, ``urandom.edf``: links to ``/dev/zero`` and ``/dev/urandom`` (reads never end);
    - ``gone.edf``: a link to nothing (quarantined at read);
    - ``y.edf/``: a folder named like a recording; ``.DS_Store``, ``._good.edf`` (AppleDouble),
      ``.hidden.edf``: macOS and hidden files.
    """
    folder.mkdir(parents=True, exist_ok=True)
    cases = [
        Case("good.edf", "processed"),
        Case(LATIN1_NAME, "processed"),
        Case("DOE_JOHN.edf", "ignored", "not a regular file (a FIFO)"),
        Case("zero.edf", "ignored", "not a regular file (a symbolic link to a character device)"),
        Case("urandom.edf", "ignored", "not a regular file (a symbolic link to a character device)"),
        Case("gone.edf", "quarantined", "dangling symbolic link"),
        Case("y.edf", "ignored", "a folder, not a recording file"),
        Case(".DS_Store", "ignored", "file-system metadata"),
        Case("._good.edf", "ignored", "macOS AppleDouble metadata of"),
        Case(".hidden.edf", "ignored", "hidden file"),
    ]
    (folder / "good.edf").symlink_to(shared_data / GOOD_EDF)
    (folder / LATIN1_NAME).symlink_to(shared_data / OTHER_EDF)
    _fifo(folder / "DOE_JOHN.edf")
    (folder / "zero.edf").symlink_to("/dev/zero")
    (folder / "urandom.edf").symlink_to("/dev/urandom")
    (folder / "gone.edf").symlink_to(folder / "nowhere" / "x.edf")
    (folder / "y.edf").mkdir()
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(64))
    (folder / "._good.edf").write_bytes(b"\x00\x05\x16\x07" + bytes(60))  # AppleDouble's magic
    (folder / ".hidden.edf").write_bytes(b"0       not an EDF")
    if sockets:
        with contextlib.suppress(OSError):  # AF_UNIX paths are short (108 bytes): a deep tmp_path has none
            _socket(folder / "sock.edf")
            cases.append(Case("sock.edf", "ignored", "not a regular file (a socket)"))
    return {case.name: case for case in cases}


def raw_names_in(root: Path, *texts: str | bytes) -> list[tuple[str, bytes]]:
    """``(where, what)`` for every raw identifier-like name (``RAW_NAME_BYTES``) in a file below
    ``root`` (its name and bytes) or in ``texts`` (captured logs)."""
    blobs = {os.fsdecode(p): os.fsencode(p.name) + b"\n" + p.read_bytes() for p in root.rglob("*") if p.is_file()}
    for k, text in enumerate(texts):
        blobs[f"text {k}"] = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
    return [(where, raw) for where, blob in blobs.items() for raw in RAW_NAME_BYTES if raw in blob]


def run_module(module: str, argv: list[str], timeout: float) -> subprocess.CompletedProcess:
    """``python -m module argv`` in a child with a time limit: a run that hangs (a FIFO opened) fails
    the test with TimeoutExpired instead of hanging it. Output as bytes (a raw name need not be UTF-8)."""
    return subprocess.run(
        [sys.executable, "-m", module, *argv],
        capture_output=True,
        timeout=timeout,
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
