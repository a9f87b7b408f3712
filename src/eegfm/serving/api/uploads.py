"""Uploaded recordings: received within size and time limits, unpacked safely, refused when they
would expand past the server's caps.

Everything here runs outside the model's lock: a client's zip, gzip or parquet bomb costs that
client's thread at most ``UNZIP_FACTOR`` times ``--max_upload_mb`` of decompression, and never more
than the pipeline's ratio cap of the upload's size as stored, summed over all its members
(`ExpansionBudget`), while other requests are scored. A zip's members are counted before it is
parsed (at most ``MAX_ZIP_MEMBERS``), each costs at least a file system block of the budget, and
extraction stops at the next `stopping.checkpoint` once the request is abandoned.
"""

from __future__ import annotations

import dataclasses
import errno
import gzip
import math
import time
import zipfile
import zlib
from pathlib import Path

from eegfm.pipelines.datasets import RECORDING_EXTENSIONS
from eegfm.pipelines.datasets.items import Ignored
from eegfm.pipelines.readers.local_copy import DecompressLimit
from eegfm.serving.api.stopping import StoppingError, before_stop, checkpoint

UNZIP_FACTOR = 8  # EEG compresses about 2-4x; more than this is not a recording
ACCEPTED = tuple(sorted({*RECORDING_EXTENSIONS, ".zip"} - {".mff", ".vhdr"}))  # those two are never one file
CHUNK = 1 << 20
# A parquet column decodes to float32 samples at least: 4 bytes a row
PARQUET_SAMPLE_BYTES = 4
# A recording is a few files and a corpus export hundreds: 10,000 members is far beyond either,
# and bounds a zip's listing, extraction and reply (100,000 one-byte members took minutes before)
MAX_ZIP_MEMBERS = 10_000
MEMBER_BLOCK = 4096  # what a member costs the budget at least: the file system block it takes
_CENTRAL_ENTRY = b"PK\x01\x02"  # the signature that starts each member's central directory entry


class UploadError(Exception):
    """A request the server refuses: the HTTP status and a message naming what was expected."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def upload_extension(filename: str) -> str:
    """The recording format a client's file name says, or ValueError naming what is accepted."""
    name = filename.strip().lower()
    for ext in sorted(ACCEPTED, key=len, reverse=True):
        if name.endswith(ext) and len(name) > len(ext):
            return ext
    raise ValueError(
        f"filename: expected a name ending in one of {', '.join(ACCEPTED)} (its "
        "extension says the format; a recording of several files goes in a .zip)"
    )


class ExpansionBudget:
    """What one request's upload may still unpack or decompress to, across all its members: the
    smaller of the server's cap and the pipeline's ratio cap of the upload's size as stored. Every
    zip member and every gunzipped file spends from it, so 40 small gzip bombs in one zip cost
    what one would, not 40 times its floor."""

    def __init__(self, stored: int, max_bytes: int) -> None:
        self.left, self.why = _expansion_cap(stored, max_bytes)

    def spend(self, size: int, what: str) -> None:
        """``size`` more bytes written; UploadError 413 naming ``what`` past the budget."""
        if size > self.left:
            raise UploadError(413, f"{what} expands past this upload's budget of {self.left} more bytes ({self.why})")
        self.left -= size


# zipfile's own methods; a member compressed another way cannot be read here
_ZIP_METHODS = {
    zipfile.ZIP_STORED: "stored",
    zipfile.ZIP_DEFLATED: "deflate",
    zipfile.ZIP_BZIP2: "bzip2",
    zipfile.ZIP_LZMA: "lzma",
}


def unpack_zip(archive: Path, folder: Path, budget: ExpansionBudget) -> list[Ignored]:
    """Extract ``archive`` into ``folder`` member by member, spending from ``budget``; the members
    that could not be extracted, each with why (encrypted, an unknown method, a name the file
    system refuses, a file and a folder of one name). ValueError for a bad zip or a member that
    would land outside ``folder`` (absolute paths, ``..``); UploadError 413 past the budget."""
    skipped: list[Ignored] = []
    check_zip_members(archive)
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = zipped.infolist()
            # zipfile stops each member at its declared size: the declared sum bounds what is written
            budget.spend(sum(max(m.file_size, MEMBER_BLOCK) for m in members), "the zip")
            root = folder.resolve()
            for member in members:
                if not (folder / member.filename).resolve().is_relative_to(root):
                    raise ValueError(  # the member's name is not echoed: it may name the patient
                        "a zip member: expected a path inside the archive; one is absolute or goes above it (..)"
                    )
            folder.mkdir(exist_ok=True)
            for index, member in enumerate(members, start=1):
                checkpoint()
                if why := _unextractable(zipped, member, folder):
                    skipped.append(Ignored(str(folder / member.filename), f"zip member {index}: {why}"))
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise ValueError(f"the upload is not a readable zip archive ({type(err).__name__})") from None
    return skipped


def _unextractable(zipped: zipfile.ZipFile, member: zipfile.ZipInfo, folder: Path) -> str:
    """Why ``member`` was not extracted into ``folder``, or "" once it is. The OS's and zipfile's
    own messages are never passed on: they quote the member's path."""
    if member.flag_bits & 0x1:
        return "encrypted; expected an unencrypted member (the server takes no passwords)"
    if member.compress_type not in _ZIP_METHODS:
        methods = ", ".join(sorted(_ZIP_METHODS.values()))
        return f"compressed with method {member.compress_type}; expected one of {methods}"
    try:
        _extract(zipped, member, folder)
    except (NotADirectoryError, IsADirectoryError, FileExistsError):
        return "a file and a folder in the archive have one name; expected distinct names"
    except OSError as err:
        if err.errno == errno.ENAMETOOLONG:
            return "its name is longer than a file system allows (255 bytes a folder or file name)"
        return f"could not be written ({type(err).__name__}: {errno.errorcode.get(err.errno, 'unknown')})"
    except (NotImplementedError, RuntimeError, zipfile.BadZipFile, zlib.error, EOFError) as err:
        return f"could not be read ({type(err).__name__}): a damaged or unsupported member"
    return ""


def _extract(zipped: zipfile.ZipFile, member: zipfile.ZipInfo, folder: Path) -> None:
    """``member`` written below ``folder`` where ``zipfile.extract`` writes it (empty, ``.`` and
    ``..`` parts of its name dropped), a block at a time with a `checkpoint` between blocks: an
    abandoned request stops within a block, not after a member of gigabytes."""
    parts = [part for part in member.filename.split("/") if part not in ("", ".", "..")]
    if not parts:
        return
    target = folder.joinpath(*parts)
    if member.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipped.open(member) as source, target.open("wb") as out:
        while block := source.read(CHUNK):
            checkpoint()
            out.write(block)


def check_zip_members(archive: Path) -> None:
    """UploadError 413 when ``archive`` may hold more than ``MAX_ZIP_MEMBERS`` members, before
    zipfile parses it (its directory of a million members would take gigabytes of objects): every
    central directory entry starts with a signature, so counting signatures anywhere in the file
    bounds the members zipfile can read. Linear, one block in memory; a zip stored inside the zip
    counts its own members too."""
    found, tail = 0, b""
    with archive.open("rb") as stream:
        while block := stream.read(CHUNK):
            # the previous block's last 3 bytes: a signature split between blocks counts once
            data = tail + block
            found += data.count(_CENTRAL_ENTRY)
            tail = data[-(len(_CENTRAL_ENTRY) - 1) :]
            if found > MAX_ZIP_MEMBERS:
                raise UploadError(
                    413,
                    f"the zip holds more than {MAX_ZIP_MEMBERS} members; expected at most {MAX_ZIP_MEMBERS} "
                    "(send a larger set of recordings in several requests)",
                )


def _expansion_cap(stored: int, max_bytes: int) -> tuple[int, str]:
    """The most bytes ``stored`` compressed bytes may expand to, and why: the server's budget or
    the pipeline's decompression ratio cap, whichever is smaller."""
    by_ratio, _ = DecompressLimit().cap(stored)
    if by_ratio < max_bytes:
        return by_ratio, f"{DecompressLimit().ratio:g}x its {stored} bytes: the decompression ratio cap"
    return max_bytes, f"{UNZIP_FACTOR}x the server's --max_upload_mb"


def gunzip(path: Path, budget: ExpansionBudget) -> Path:
    """``path`` (``x.edf.gz``) decompressed beside it (``x.edf``) and deleted; the new path, its
    size spent from ``budget``. UploadError 413 as soon as it passes the budget; ValueError for a
    broken gzip stream."""
    target = path.with_name(path.name[: -len(".gz")])
    written = 0
    try:
        with gzip.open(path, "rb") as source, target.open("wb") as out:
            while block := source.read(CHUNK):
                checkpoint()
                written += len(block)
                if written > budget.left:
                    budget.spend(written, "a gzip file")  # raises: the budget's message says why
                out.write(block)
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        target.unlink(missing_ok=True)
        raise ValueError(f"the upload is not a readable gzip file ({type(err).__name__})") from None
    except UploadError:
        target.unlink(missing_ok=True)
        raise
    budget.spend(written, "a gzip file")
    path.unlink()
    return target


def check_parquet(path: Path, max_bytes: int) -> None:
    """UploadError 413 when a parquet's rows would decode past its cap (a few MB of a constant
    column can declare tens of millions of rows); unreadable files are left to the reader's verdict."""
    import pyarrow.parquet as pq  # heavy: only for a parquet upload

    try:
        meta = pq.ParquetFile(path).metadata
    except Exception:  # pyarrow raises ArrowInvalid/OSError for non-parquet bytes: the reader says why
        return
    decoded = int(meta.num_rows) * int(meta.num_columns) * PARQUET_SAMPLE_BYTES
    cap, why = _expansion_cap(path.stat().st_size, max_bytes)
    if decoded > cap:
        raise UploadError(
            413,
            f"the parquet file declares {meta.num_rows} rows of {meta.num_columns} columns, {decoded} bytes "
            f"decoded; expected at most {cap} ({why})",
        )


@dataclasses.dataclass
class Expanded:
    """An upload ready for the predictor: the file or folder it reads, and the zip members that
    could not be extracted, each with why."""

    target: Path
    skipped: list[Ignored]


def unpacked_upload(path: Path, ext: str, max_bytes: int) -> Expanded:
    """What the predictor reads for an upload saved at ``path``: a zip unpacked into a folder beside
    it, gzipped recordings decompressed, every parquet checked; all within one `ExpansionBudget`.
    (A gzipped FIF split into parts, which name each other, is left to the pipeline's reader.)"""
    budget = ExpansionBudget(path.stat().st_size, max_bytes)
    skipped: list[Ignored] = []
    if ext == ".zip":
        folder = path.parent / "files"
        skipped = unpack_zip(path, folder, budget)
        path.unlink()
        files = sorted(p for p in folder.rglob("*") if p.is_file())
    else:
        folder, files = path.parent, [path]
    expanded = []
    for file in files:
        checkpoint()
        if _gunzipped_here(file):
            file = gunzip(file, budget)
        if file.name.lower().endswith(".parquet"):
            check_parquet(file, max_bytes)
        expanded.append(file)
    return Expanded(folder if ext == ".zip" else expanded[0], skipped)


def expand_upload(path: Path, ext: str, max_bytes: int) -> Path:
    """The file or folder the predictor reads for an upload (`unpacked_upload`'s target)."""
    return unpacked_upload(path, ext, max_bytes).target


def _gunzipped_here(file: Path) -> bool:
    name = file.name.lower()
    if name.endswith(".fif.gz"):
        return not any(file.parent.glob(f"{file.name[: -len('.fif.gz')]}*.fif-*.gz"))
    return name.endswith((".edf.gz", ".bdf.gz"))


class BodyGuard:
    """An ASGI ``receive`` that counts the body: UploadError 413 past ``max_bytes``; 408 when the
    client sends nothing for ``stall_seconds``, or falls behind ``min_rate`` bytes a second on
    average after its first ``stall_seconds`` (a whole-body deadline that moves with what has
    arrived: a byte every few seconds never stalls, but cannot hold a connection for ever)."""

    def __init__(self, receive, max_bytes: int, stall_seconds: float, what: str = "--max_upload_mb", min_rate=0.0):
        self._receive, self.max_bytes, self.stall_seconds, self.what = receive, max_bytes, stall_seconds, what
        self.min_rate, self.started, self.received = min_rate, time.monotonic(), 0

    def _deadline_left(self) -> float:
        """Seconds until the body falls behind ``min_rate``, at the bytes received so far."""
        if self.min_rate <= 0:
            return math.inf
        return self.started + self.stall_seconds + self.received / self.min_rate - time.monotonic()

    async def __call__(self):
        try:
            message = await before_stop(self._receive(), min(self.stall_seconds, self._deadline_left()))
        except TimeoutError:
            raise UploadError(408, self._timed_out()) from None
        except StoppingError:
            raise UploadError(503, "the server is stopping; the upload did not end in its --graceful_timeout") from None
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.max_bytes:
                raise UploadError(413, f"upload of over {self.max_bytes} bytes: expected at most that ({self.what})")
        elif message["type"] == "http.disconnect":
            raise UploadError(400, f"the client disconnected after {self.received} bytes of its upload")
        return message

    def _timed_out(self) -> str:
        if self._deadline_left() <= 0.05:  # the deadline, not a silence, ended the wait
            elapsed = time.monotonic() - self.started
            return (
                f"the upload is too slow: {self.received} bytes in {elapsed:.0f} s; expected at least "
                f"{self.min_rate / 1024:g} KB/s on average after its first {self.stall_seconds:g} s "
                "(the server's --min_upload_kb_per_s)"
            )
        return (
            f"the upload stalled: nothing received for {self.stall_seconds:g} s after {self.received} bytes "
            "(the server's --upload_timeout)"
        )


async def save_body(guard: BodyGuard, path: Path, expected: int | None = None) -> int:
    """The request body (read through ``guard``) written to ``path``; its size. ValueError when it
    ends before the ``expected`` bytes its Content-Length declared."""
    with path.open("wb") as out:
        while True:
            message = await guard()
            out.write(message.get("body", b""))
            if not message.get("more_body", False):
                break
    if expected is not None and guard.received < expected:
        raise ValueError(f"the upload ended after {guard.received} of its {expected} bytes")
    return guard.received
