"""A zip of what a messy clinic export or a hostile client puts beside real recordings, for the
server's tests: members with over-long, clashing, encrypted or unsupported entries, folders and
metadata named like recordings, all under identifier-like names that no reply or log may show."""

from __future__ import annotations

import gzip
import io
import struct
import zipfile
from pathlib import Path

# strings that name the patient in the members' names: never in a reply or the server's log
IDENTIFIERS = ("DOE_JOHN", "MRN1234567", "Smith", "19600101", "Müller", "Mu\u0308ller")
PATIENT = "Smith^John_19600101/DOE_JOHN_MRN1234567_"


def _patch(data: bytearray, name: str, *, flags: int = 0, method: int | None = None) -> None:
    """Set general-purpose ``flags`` bits and the compression ``method`` of member ``name`` in its
    local header and its central directory entry (zipfile writes neither for us)."""
    encoded = name.encode()
    for signature, flags_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        start = 0
        while (start := data.find(signature, start)) >= 0:
            length_at = name_at - 4 if signature == b"PK\x03\x04" else 28
            (length,) = struct.unpack_from("<H", data, start + length_at)
            if bytes(data[start + name_at : start + name_at + length]) == encoded:
                (old,) = struct.unpack_from("<H", data, start + flags_at)
                struct.pack_into("<H", data, start + flags_at, old | flags)
                if method is not None:
                    struct.pack_into("<H", data, start + flags_at + 2, method)
            start += 4


def adversarial_zip(shared_data: Path) -> tuple[bytes, int, list[str]]:
    """The zip's bytes, how many recordings in it are processed, and the reasons (words of) its
    other entries are listed with, one per entry."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.write(shared_data / "eegmat" / "Subject00_1.edf", "visit/good.edf")
        zipped.write(shared_data / "eegmat" / "Subject00_2.edf", "visit/Müller.edf")
        zipped.writestr(PATIENT + "x" * 260 + ".edf", b"0")
        zipped.writestr("visit/clash", b"a file")
        zipped.writestr("visit/clash/DOE_JOHN.edf", b"0")
        zipped.writestr("visit/DOE_JOHN_encrypted.edf", b"0" * 256)
        zipped.writestr("visit/DOE_JOHN_zstd.edf", b"0" * 256)
        zipped.writestr("visit/Smith.edf/", b"")  # a folder named like a recording
        zipped.writestr("visit/.DS_Store", b"\x00\x00\x00\x01Bud1" + bytes(64))
        zipped.writestr("visit/._good.edf", b"\x00\x05\x16\x07" + bytes(60))
    data = bytearray(buffer.getvalue())
    _patch(data, "visit/DOE_JOHN_encrypted.edf", flags=0x1)
    _patch(data, "visit/DOE_JOHN_zstd.edf", method=93)  # Zstandard: zipfile of Python 3.11 cannot read it
    reasons = [
        "its name is longer than a file system allows",
        "a file and a folder in the archive have one name",
        "encrypted; expected an unencrypted member",
        "compressed with method 93",
        "a folder, not a recording file",
        "(macOS .DS_Store",
        "macOS AppleDouble metadata of",
    ]
    return bytes(data), 2, reasons


def gzip_bomb_zip(members: int = 40, mib: int = 16) -> bytes:
    """A small zip of ``members`` gzipped "recordings", each ``mib`` MiB of zeros decompressed."""
    one = gzip.compress(bytes(mib << 20), compresslevel=9)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zipped:
        for index in range(members):
            zipped.writestr(f"r{index:02d}.edf.gz", one)
    return buffer.getvalue()
