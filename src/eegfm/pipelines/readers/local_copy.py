"""A local copy of a recording wherever it is stored, and the SHA-256 of the file as stored.

Remote files stream to a temporary folder with the companions their readers open (BrainVision's
.eeg/.vmrk, EEGLAB's .fdt, a split FIF's later parts); a gzipped EDF/BDF is decompressed; an EGI
MFF folder is fetched file by file. Beam is imported only where a remote file needs it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import math
import os
import posixpath
import shutil
import tempfile
import zlib
from collections.abc import Iterator

from eegfm.core.stores import is_remote, match_below, match_path
from eegfm.pipelines.datasets.listing import not_regular
from eegfm.pipelines.job.limits import DEFAULT_MAX_DECOMPRESSED_GB, DEFAULT_MAX_DECOMPRESSED_RATIO
from eegfm.pipelines.job.process_io import StageError
from eegfm.pipelines.readers import GZIPPED, eeglab_data_file
from eegfm.pipelines.readers.fif_parts import next_part_name
from eegfm.pipelines.readers.regular_files import check_regular, open_regular

# A gzipped file may always expand this far: a short recording of flat channels compresses far
# more than EEG's 2-4x without being a bomb.
RATIO_FLOOR = 16 << 20


class _Hashing:
    """A file object's reads, hashed as they pass."""

    def __init__(self, fileobj, digest):
        self._fileobj, self._digest = fileobj, digest

    def read(self, size: int = -1) -> bytes:
        block = self._fileobj.read(size)
        self._digest.update(block)
        return block


@dataclasses.dataclass(frozen=True)
class DecompressLimit:
    """How far a gzipped recording may expand: ``ratio`` times its size as stored (a file that stays
    under ``RATIO_FLOOR`` bytes is never refused by it) and ``gb`` GB (10^9 bytes) in all."""

    ratio: float = DEFAULT_MAX_DECOMPRESSED_RATIO
    gb: float = DEFAULT_MAX_DECOMPRESSED_GB

    def cap(self, stored: int) -> tuple[int, str]:
        """The most bytes a file of ``stored`` bytes may expand to, and what to say on reaching it."""
        by_ratio, total = max(RATIO_FLOOR, int(self.ratio * stored)), int(self.gb * 1e9)
        if by_ratio < total:
            return by_ratio, (
                f"over {self.ratio:g}x the {stored} bytes stored (the max_decompressed_ratio cap): a gzip bomb "
                "or not a recording; if it is a recording after all, raise --max_decompressed_ratio"
            )
        return total, (
            f"over the {self.gb:g} GB cap (max_decompressed_gb); if the recording is this large, "
            "raise --max_decompressed_gb"
        )


def _copy(src, dst, digest, gzipped: bool = False, cap: tuple[int, str] | None = None) -> None:
    """``src`` to ``dst`` in blocks, ``digest`` over the bytes as stored; gunzipped on the way, and
    with ``cap`` (`DecompressLimit.cap`) a `StageError` before the first block that would pass it."""
    source = _Hashing(src, digest)
    if not gzipped:
        shutil.copyfileobj(source, dst, 1 << 20)
        return
    limit, why = cap or (math.inf, "")
    written = 0
    try:
        with gzip.GzipFile(fileobj=source, mode="rb") as unzipped:
            while block := unzipped.read(1 << 20):
                if written + len(block) > limit:
                    raise StageError("read", f"decompressed size: {why}; stopped after {written} bytes")
                dst.write(block)
                written += len(block)
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise StageError("read", f"not a valid gzip file ({' '.join(str(err).split())[:200]})") from None
    while source.read(1 << 20):  # the digest covers the whole file, whatever gzip left unread
        pass


@contextlib.contextmanager
def localized(path: str, limit: DecompressLimit = DecompressLimit()) -> Iterator[tuple[str, str]]:
    """A local path for `path` (a temporary copy of a remote or gzipped file) and the SHA-256 of the file as
    stored; a gzipped file that expands past ``limit`` is a `StageError` at ``read``, its partial copy deleted."""
    if path.lower().endswith(".mff") and (is_remote(path) or os.path.isdir(path)):
        with _localized_folder(path) as found:
            yield found
        return
    gzipped = path.lower().endswith(GZIPPED)
    if not is_remote(path) and not gzipped:
        with open_regular(path) as fh:  # file_digest reads into one buffer: 30-50% faster than read()
            sha = hashlib.file_digest(fh, "sha256").hexdigest()
        for companion in _companions(path, path):  # its reader opens them by name: none may be a FIFO
            if os.path.lexists(companion):
                check_regular(companion)
        yield path, sha
        return
    # apache_beam: ~1 s to import; only for a remote or gzipped file (its companions may be remote)
    from apache_beam.io.filesystems import FileSystems

    digest = hashlib.sha256()
    suffix = "".join(os.path.basename(path).partition(".")[1:]) or ".bin"
    if gzipped:
        suffix = suffix[: -len(".gz")]
    with tempfile.TemporaryDirectory(prefix="eegfm-") as tmp:
        # A split FIF keeps its name: a part may name the next only by number, relative to its own;
        # so does an EEGLAB .set, whose data file MNE looks for under the .set's own name too.
        fif = path.lower().endswith((".fif", ".fif.gz"))
        named = fif or path.lower().endswith((".set", *_NAMED_PARTS))
        local = os.path.join(tmp, os.path.basename(path) if named else "recording." + suffix.lstrip("."))
        cap = limit.cap(_stored_size(path)) if gzipped else None
        # A StageError leaves through the temporary folder, which deletes the partial copy with it.
        with open_regular(path) if not is_remote(path) else _open_raw(path) as src, open(local, "wb") as dst:
            _copy(src, dst, digest, gzipped, cap)
        # BrainVision/EEGLAB headers name companion files next to them; fetch those too.
        companions = _companions(path, local)
        if path.lower().endswith(".set") and not FileSystems.exists(companions[0]):
            companions = _renamed_eeglab_data(path, local)
        for companion in companions:
            if FileSystems.exists(companion):
                with _open_raw(companion) as src, open(os.path.join(tmp, os.path.basename(companion)), "wb") as dst:
                    shutil.copyfileobj(src, dst)
        if fif:
            _fetch_split_parts(path, local)
        yield local, digest.hexdigest()


def _stored_size(path: str) -> int:
    """The bytes of ``path`` as stored; 0 for a remote file the store does not list (opening it says why)."""
    if not is_remote(path):
        return os.path.getsize(path)
    found = match_path(path)
    return int(found[0].size_in_bytes) if found else 0


def _open_raw(path: str):
    """A remote file opened as stored (a .fif.gz stays gzip, as on local disk)."""
    # apache_beam: ~1 s to import; only for a remote file
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


@contextlib.contextmanager
def _localized_folder(path: str) -> Iterator[tuple[str, str]]:
    """A recording that is a folder (EGI's MFF): a local one as it is, a remote one fetched file by
    file. The SHA-256 covers each file's name and bytes, so both agree."""
    top = path.rstrip("/")
    digest = hashlib.sha256()
    if not is_remote(path):
        for name in sorted(
            os.path.relpath(os.path.join(folder, f), top).replace(os.sep, "/")
            for folder, _, files in os.walk(top)
            for f in files
        ):
            if why := not_regular(os.path.join(top, name)):  # said as the listing says it
                raise StageError("read", f"an EGI MFF recording: expected only regular files in it; one is {why}")
            with open_regular(os.path.join(top, name)) as fh:
                digest.update(
                    name.encode("utf-8", "surrogateescape") + b"\0" + hashlib.file_digest(fh, "sha256").digest()
                )
        yield top, digest.hexdigest()
        return
    with tempfile.TemporaryDirectory(prefix="eegfm-") as tmp:
        local = os.path.join(tmp, posixpath.basename(top))
        for meta in sorted(match_below(top, "**"), key=lambda m: m.path):
            name = meta.path[len(top) + 1 :]
            target = os.path.join(local, *name.split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            one = hashlib.sha256()
            with _open_raw(meta.path) as src, open(target, "wb") as dst:
                _copy(src, dst, one)
            digest.update(name.encode("utf-8", "surrogateescape") + b"\0" + one.digest())
        if not os.path.isdir(local):
            raise StageError("read", "an EGI MFF recording: expected a folder of files; found none under it")
        yield local, digest.hexdigest()


def _fetch_split_parts(path: str, local: str) -> None:
    """The later parts of the remote split FIF ``path`` beside its local copy ``local``, where MNE
    reads them; stops at a part that is not there."""
    from apache_beam.io.filesystems import FileSystems  # apache_beam: ~1 s to import; only for a remote file

    current = local
    while (name := next_part_name(current)) is not None:
        target = os.path.join(os.path.dirname(local), name)
        remote = posixpath.join(posixpath.dirname(path), name)
        if os.path.exists(target) or not FileSystems.exists(remote):
            return  # a loop of names, or a missing part: MNE's reader names it
        with _open_raw(remote) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        current = target


# Recordings whose reader opens files of their own name beside them (datasets.companions): Nihon
# Kohden's .EEG, Curry's .cdt (x.cdt.dpa ...) and .dat, ANT Neuro's .cnt; Persyst's .lay names its .dat.
_NAMED_PARTS = {
    ".eeg": (".21E", ".PNT", ".LOG", ".21e", ".pnt", ".log"),
    ".cdt": (".cdt.dpa", ".cdt.cef", ".cdt.ceo"),
    ".dat": (".dap", ".rs3", ".ceo"),
    ".cnt": (".evt",),
    ".lay": (".dat",),
}


def _companions(path: str, header: str | None = None) -> list[str]:
    """The files beside ``path`` its reader opens too: those a BrainVision header (``header``, its
    local copy) names, else the header's own name with .vmrk/.eeg; an EEGLAB .set's .fdt; the parts
    of `_NAMED_PARTS` (a Persyst .lay's data file as its File= names it)."""
    base, ext = os.path.splitext(path)
    ext = ext.lower()
    if ext == ".set":
        return [base + ".fdt"]
    if ext == ".lay" and header and (data := _persyst_data_file(header)):
        return [posixpath.join(posixpath.dirname(path), data)]
    if ext in _NAMED_PARTS:
        return [base + part for part in _NAMED_PARTS[ext]]
    if ext != ".vhdr":
        return []
    named = _brainvision_files(header) if header else {}
    folder = posixpath.dirname(path)
    return [
        posixpath.join(folder, named[key]) if key in named else base + suffix
        for key, suffix in (("MarkerFile", ".vmrk"), ("DataFile", ".eeg"))
    ]


def _renamed_eeglab_data(path: str, local: str) -> list[str]:
    """The data file a renamed EEGLAB .set still names (``EEG.data``), where MNE looks first; its
    copy ``local`` is read only where ``path``'s folder holds some .fdt (else it holds its data)."""
    if not match_below(posixpath.dirname(path), "*.fdt", limit=1):
        return []
    name = eeglab_data_file(local)
    return [posixpath.join(posixpath.dirname(path), name)] if name else []


def _persyst_data_file(header: str) -> str | None:
    """The data file a Persyst .lay's [FileInfo] File= names (its base name), or None."""
    with contextlib.suppress(OSError), open(header, encoding="latin-1") as fh:
        for line in fh:
            key, sep, value = line.strip().partition("=")
            if sep and key.strip().lower() == "file" and value.strip():
                return posixpath.basename(value.strip().replace("\\", "/"))
    return None


def _brainvision_files(header: str) -> dict[str, str]:
    """``{"DataFile": name, "MarkerFile": name}`` as the header's [Common Infos] gives them (base
    names only: a header never fetches a file from another folder)."""
    named = {}
    with contextlib.suppress(OSError), open(header, encoding="latin-1") as fh:
        for line in fh:
            key, sep, value = line.strip().partition("=")
            if sep and key in ("DataFile", "MarkerFile") and value.strip():
                named[key] = posixpath.basename(value.strip().replace("\\", "/"))
    return named
