"""Uploaded recordings: received within size and time limits, unpacked safely, refused when they
would expand past the server's caps.

Everything here runs outside the model's lock: a client's zip, gzip or parquet bomb costs that
client's thread at most ``UNZIP_FACTOR`` times ``--max_upload_mb`` of decompression (and never more
than the pipeline's ratio cap of its size as stored), while other requests are scored.
"""

from __future__ import annotations

import gzip
import zipfile
import zlib
from pathlib import Path

from eegfm.pipelines.datasets import RECORDING_EXTENSIONS
from eegfm.pipelines.localize import DecompressLimit
from eegfm.serving.api.stopping import StoppingError, before_stop

UNZIP_FACTOR = 8  # EEG compresses about 2-4x; more than this is not a recording
ACCEPTED = tuple(sorted({*RECORDING_EXTENSIONS, ".zip"} - {".mff", ".vhdr"}))  # those two are never one file
CHUNK = 1 << 20
# A parquet column decodes to float32 samples at least: 4 bytes a row
PARQUET_SAMPLE_BYTES = 4


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


def unpack_zip(archive: Path, folder: Path, max_bytes: int) -> int:
    """Extract ``archive`` into ``folder``; the bytes unpacked. ValueError for a bad zip or a member
    that would land outside ``folder`` (absolute paths, ``..``); UploadError 413 for more than
    ``max_bytes`` unpacked or past the ratio cap of the archive's size (a zip bomb)."""
    stored = archive.stat().st_size
    try:
        with zipfile.ZipFile(archive) as zipped:
            unpacked = sum(member.file_size for member in zipped.infolist())
            cap, why = _expansion_cap(stored, max_bytes)
            if unpacked > cap:
                raise UploadError(413, f"the zip unpacks to {unpacked} bytes; expected at most {cap} ({why})")
            root = folder.resolve()
            for member in zipped.infolist():
                target = (folder / member.filename).resolve()
                if not target.is_relative_to(root):
                    raise ValueError(  # the member's name is not echoed: it may name the patient
                        "a zip member: expected a path inside the archive; one is absolute or goes above it (..)"
                    )
            # zipfile stops each member at its declared size: the sum above bounds what is written
            zipped.extractall(folder)
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise ValueError(f"the upload is not a readable zip archive ({type(err).__name__})") from None
    return unpacked


def _expansion_cap(stored: int, max_bytes: int) -> tuple[int, str]:
    """The most bytes ``stored`` compressed bytes may expand to, and why: the server's budget or
    the pipeline's decompression ratio cap, whichever is smaller."""
    by_ratio, _ = DecompressLimit().cap(stored)
    if by_ratio < max_bytes:
        return by_ratio, f"{DecompressLimit().ratio:g}x its {stored} bytes: the decompression ratio cap"
    return max_bytes, f"{UNZIP_FACTOR}x the server's --max_upload_mb"


def gunzip(path: Path, max_bytes: int) -> tuple[Path, int]:
    """``path`` (``x.edf.gz``) decompressed beside it (``x.edf``) and deleted; the new path and its
    size. UploadError 413 as soon as it passes its cap; ValueError for a broken gzip stream."""
    target = path.with_name(path.name[: -len(".gz")])
    cap, why = _expansion_cap(path.stat().st_size, max_bytes)
    written = 0
    try:
        with gzip.open(path, "rb") as source, target.open("wb") as out:
            while block := source.read(CHUNK):
                written += len(block)
                if written > cap:
                    raise UploadError(413, f"the gzip file decompresses to over {cap} bytes; expected at most ({why})")
                out.write(block)
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        target.unlink(missing_ok=True)
        raise ValueError(f"the upload is not a readable gzip file ({type(err).__name__})") from None
    except UploadError:
        target.unlink(missing_ok=True)
        raise
    path.unlink()
    return target, written


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


def expand_upload(path: Path, ext: str, max_bytes: int) -> Path:
    """What the predictor reads for an upload saved at ``path``: a zip unpacked into a folder beside
    it, gzipped recordings decompressed, every parquet checked; all within ``max_bytes`` expanded.
    (A gzipped FIF split into parts, which name each other, is left to the pipeline's reader.)"""
    if ext == ".zip":
        folder = path.parent / "files"
        budget = max_bytes - unpack_zip(path, folder, max_bytes)
        path.unlink()
        files = sorted(p for p in folder.rglob("*") if p.is_file())
    else:
        folder, budget, files = path.parent, max_bytes, [path]
    expanded = []
    for file in files:
        if _gunzipped_here(file):
            file, size = gunzip(file, max(budget, 0))
            budget -= size
        if file.name.lower().endswith(".parquet"):
            check_parquet(file, max_bytes)
        expanded.append(file)
    return folder if ext == ".zip" else expanded[0]


def _gunzipped_here(file: Path) -> bool:
    name = file.name.lower()
    if name.endswith(".fif.gz"):
        return not any(file.parent.glob(f"{file.name[: -len('.fif.gz')]}*.fif-*.gz"))
    return name.endswith((".edf.gz", ".bdf.gz"))


class BodyGuard:
    """An ASGI ``receive`` that counts the body: UploadError 413 past ``max_bytes``, 408 when the
    client sends nothing for ``stall_seconds`` (a stalled or trickling-to-nothing upload)."""

    def __init__(self, receive, max_bytes: int, stall_seconds: float, what: str = "--max_upload_mb") -> None:
        self._receive, self.max_bytes, self.stall_seconds, self.what = receive, max_bytes, stall_seconds, what
        self.received = 0

    async def __call__(self):
        try:
            message = await before_stop(self._receive(), self.stall_seconds)
        except TimeoutError:
            raise UploadError(
                408,
                f"the upload stalled: nothing received for {self.stall_seconds:g} s after {self.received} bytes "
                "(the server's --upload_timeout)",
            ) from None
        except StoppingError:
            raise UploadError(503, "the server is stopping; the upload did not end in its --graceful_timeout") from None
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.max_bytes:
                raise UploadError(413, f"upload of over {self.max_bytes} bytes: expected at most that ({self.what})")
        elif message["type"] == "http.disconnect":
            raise UploadError(400, f"the client disconnected after {self.received} bytes of its upload")
        return message


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
