"""Adversarial input folders: entries an export or a hostile user leaves beside real recordings, each
with what a run must say of it. For the batch jobs' tests (``eegfm-preprocess``, ``eegfm-predict``) and
for the server's: build once with :func:`build_adversarial_inputs`, then check outputs with
:func:`raw_names_in`.

Every builder works in a folder of the test's own (``tmp_path``); the real recordings are linked,
never copied, but for parquets whose columns are the case (rewritten with a column renamed or added).

Root reads a folder of mode 000 all the same, so :func:`run_module` starts its child without the
capabilities that pass over file modes: the run lists the input folder as any other user would.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

GOOD_EDF = "eegmat/Subject00_1.edf"
OTHER_EDF = "eegmat/Subject00_2.edf"
HMS_EEG = "hms/train_eegs/1000913311.parquet"
# A parquet column an export named after the patient, and a folder so named that this user may not list.
NAMED_COLUMN = "DOE_JOHN_MRN1234567"
UNLISTABLE = "Smith^Jane_19700101"
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
    b"MRN1234567",
    b"Smith",
    b"Jane",
    b"19700101",
)
# Compressed signal spells a 4-byte name by chance about once in 4 GB: a binary output's bytes are
# searched for the longer names only (its name for all).
_BINARY = (".tfrecord", ".png", ".gz", ".npz", ".safetensors")
# prctl(PR_CAPBSET_DROP): root's child keeps no capability to read, list or enter what modes forbid.
_PR_CAPBSET_DROP, _CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 24, 1, 2


@dataclasses.dataclass(frozen=True)
class Case:
    """One entry of the folder: ``outcome`` is "processed", "quarantined" or "ignored"; ``reason``
    words its manifest or quarantine reason must hold (for a processed one, '')."""

    name: str
    outcome: str
    reason: str = ""
    at_read: bool = False  # the reason comes from reading the file, not from listing the folder


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _socket(path: Path) -> None:
    """A Unix socket file (it stays when the socket closes); too long a path for AF_UNIX: OSError."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))


def _hms_columns(source: Path, out: Path, *, renamed: bool) -> None:
    """The real HMS parquet ``source`` with a column named ``NAMED_COLUMN``: in place of Fp1 (one of the
    19 EEG columns gone), or beside the others (a column no reader reads)."""
    import pyarrow.parquet as pq

    table = pq.read_table(source)
    if renamed:
        table = table.rename_columns([NAMED_COLUMN if n == "Fp1" else n for n in table.column_names])
    else:
        table = table.append_column(NAMED_COLUMN, table.column("Fp1"))
    pq.write_table(table, out)


def _unlistable(folder: Path, shared_data: Path) -> None:
    """``folder`` holding a recording, mode 000; the test is skipped where a child of root keeps reading it."""
    folder.mkdir()
    (folder / "EEG1.edf").symlink_to(shared_data / GOOD_EDF)
    folder.chmod(0)
    probe = "import os, sys\ntry:\n    os.scandir(sys.argv[1])\nexcept PermissionError:\n    sys.exit(3)"
    try:
        done = subprocess.run([sys.executable, "-c", probe, str(folder)], preexec_fn=_as_any_user, capture_output=True)
    except subprocess.SubprocessError as err:  # root without CAP_SETPCAP: its children keep reading all
        pytest.skip(f"uid {os.geteuid()} cannot start a child that a folder of mode 000 keeps out ({err})")
    if done.returncode != 3:
        pytest.skip(f"a folder of mode 000 is listed by this process's children (uid {os.geteuid()}): {done.stderr!r}")


def build_adversarial_inputs(
    folder: Path, shared_data: Path, *, sockets: bool = True, unlistable: bool = True
) -> dict[str, Case]:
    """Fill ``folder`` with one good recording and every adversarial entry; ``{name: Case}``.

    - ``good.edf``: a link to a real recording (processed);
    - ``M\\xfcller.edf`` (not UTF-8): a link to another real recording (processed, named by its token);
    - ``DOE_JOHN.edf``: a FIFO (opening it would wait for a writer for ever); ``sock.edf``: a socket;
    - ``zero.edf``, ``urandom.edf``: links to ``/dev/zero`` and ``/dev/urandom`` (reads never end);
    - ``gone.edf``: a link to nothing (quarantined at read);
    - ``y.edf/``: a folder named like a recording; ``.DS_Store``, ``._good.edf`` (AppleDouble),
      ``.hidden.edf``: macOS and hidden files;
    - ``hms_named.parquet``: a real HMS EEG whose Fp1 column is named ``NAMED_COLUMN`` (quarantined at read,
      its reason listing the columns found); ``hms_extra.parquet``: the same column beside the 20 (processed);
    - ``UNLISTABLE/`` (``unlistable``; as root, only for :func:`run_module`'s children): a folder of mode 000
      holding a recording (quarantined: it cannot be listed).
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
        Case("hms_named.parquet", "quarantined", "missing Fp1 (found chan-", at_read=True),
        Case("hms_extra.parquet", "processed"),
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
    _hms_columns(shared_data / HMS_EEG, folder / "hms_named.parquet", renamed=True)
    _hms_columns(shared_data / HMS_EEG, folder / "hms_extra.parquet", renamed=False)
    if unlistable:
        _unlistable(folder / UNLISTABLE, shared_data)
        cases.append(Case(UNLISTABLE, "quarantined", "permission denied: this user may not list this folder"))
    if sockets:
        with contextlib.suppress(OSError):  # AF_UNIX paths are short (108 bytes): a deep tmp_path has none
            _socket(folder / "sock.edf")
            cases.append(Case("sock.edf", "ignored", "not a regular file (a socket)"))
    return {case.name: case for case in cases}


def raw_names_in(root: Path, *texts: str | bytes) -> list[tuple[str, bytes]]:
    """``(where, what)`` for every raw identifier-like name (``RAW_NAME_BYTES``) in a file below
    ``root`` (its name and bytes; a binary one's bytes for names of 5 bytes or more) or in ``texts``
    (captured logs)."""
    blobs = {os.fsdecode(p): (os.fsencode(p.name), p.read_bytes()) for p in root.rglob("*") if p.is_file()}
    for k, text in enumerate(texts):
        blobs[f"text {k}"] = (b"", text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape"))
    return [
        (where, raw)
        for where, (name, body) in blobs.items()
        for raw in RAW_NAME_BYTES
        if raw in name or (raw in body and (len(raw) >= 5 or not where.endswith(_BINARY)))
    ]


def _as_any_user() -> None:
    """In a child of root, before it runs: drop the capabilities that pass over file modes, so that a
    folder of mode 000 stays shut to it (any other user's child has none to drop)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), f"prctl(PR_CAPBSET_DROP, {cap})")


def run_module(module: str, argv: list[str], timeout: float) -> subprocess.CompletedProcess:
    """``python -m module argv`` in a child with a time limit: a run that hangs (a FIFO opened) fails
    the test with TimeoutExpired instead of hanging it. Output as bytes (a raw name need not be UTF-8).
    As root, the child runs without the capabilities that pass over file modes (``_as_any_user``)."""
    return subprocess.run(
        [sys.executable, "-m", module, *argv],
        capture_output=True,
        preexec_fn=_as_any_user,
        timeout=timeout,
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
