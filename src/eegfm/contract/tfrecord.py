"""TFRecord files, plain or SNAPPY-compressed the way TensorFlow reads them, without TensorFlow.

Framing (TensorFlow's ``core/lib/io/record_writer.cc``), all integers little-endian::

    uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)

SNAPPY (``core/lib/io/snappy/snappy_{output,input}stream``): the framed stream is cut into blocks,
each a 4-byte *big-endian* compressed length and one raw snappy block (framed snappy is not readable
by TF); blocks need not align with records. TensorFlow 2.21's reader rejects a block that
decompresses to over 256 KiB (``tests/contract/test_tfrecord.py`` pins this), and its writer
writes such blocks for bigger records. So this writer cuts the stream into blocks of exactly
``SNAPPY_BLOCK_BYTES`` of input, the last one shorter: records of any size stay readable by TF. The
bytes differ from TF's, the format does not. The reader takes blocks up to ``MAX_BLOCK_BYTES``.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from typing import IO, Any

import cramjam
import google_crc32c

from eegfm.core.config import check_int, check_option, check_range

SNAPPY_BLOCK_BYTES = 256 * 1024  # TF's snappy input/output buffer size; its reader's hard limit
MAX_BLOCK_BYTES = 64 * 1024 * 1024  # reader's bound, so a corrupt length cannot allocate GiBs
COMPRESSIONS = ("SNAPPY", None)
HEADER_BYTES = 12  # uint64 length + uint32 masked crc of it
FOOTER_BYTES = 4  # uint32 masked crc of the data
FRAME_OVERHEAD = HEADER_BYTES + FOOTER_BYTES

# snappy::MaxCompressedLength: the worst case for incompressible input.
_MAX_COMPRESSED_BLOCK = 32 + MAX_BLOCK_BYTES + MAX_BLOCK_BYTES // 6
_MASK_DELTA = 0xA282EAD8
_READ_CHUNK = 1 << 20


class CorruptTFRecordError(OSError):
    """A TFRecord file is truncated or corrupt; the message names the file and the byte offset."""

    def __init__(self, path: str, offset: int, reason: str, block_offset: int | None = None):
        self.path, self.offset, self.reason, self.block_offset = path, offset, reason, block_offset
        where = f"byte offset {offset}"
        if block_offset is not None:
            where += f" of the decompressed record stream (in the snappy block at file byte offset {block_offset})"
        super().__init__(f"{path}: corrupt TFRecord at {where}: {reason}")

    def __reduce__(self):  # pickled (between processes) by its fields, not its message
        return CorruptTFRecordError, (self.path, self.offset, self.reason, self.block_offset)


def masked_crc32c(data: bytes | bytearray | memoryview) -> int:
    """TFRecord's masked CRC-32C: rotated right by 15 bits, plus a constant (mod 2**32)."""
    crc = google_crc32c.value(data if isinstance(data, bytes) else bytes(data))
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def record_header(length: int) -> bytes:
    """The 12 bytes that precede a record of ``length`` bytes."""
    length_bytes = struct.pack("<Q", length)
    return length_bytes + struct.pack("<I", masked_crc32c(length_bytes))


def frame_record(data: bytes) -> bytes:
    """One record in TFRecord framing (what an uncompressed TFRecord file is a concatenation of)."""
    return record_header(len(data)) + data + struct.pack("<I", masked_crc32c(data))


def unframe_record(framed: bytes, size: int, where: str) -> bytes:
    """The ``size``-byte record of one ``frame_record`` frame, its length and CRCs checked; a
    ``CorruptTFRecordError`` naming ``where`` otherwise (e.g. a file cut short)."""
    if len(framed) != size + FRAME_OVERHEAD:
        raise CorruptTFRecordError(
            where, 0, f"expected a framed record of {size + FRAME_OVERHEAD} bytes; got {len(framed)} (file cut short?)"
        )
    if framed[:HEADER_BYTES] != record_header(size):
        raise CorruptTFRecordError(where, 0, f"expected the header of a {size}-byte record")
    data = framed[HEADER_BYTES:-FOOTER_BYTES]
    if struct.unpack("<I", framed[-FOOTER_BYTES:])[0] != masked_crc32c(data):
        raise CorruptTFRecordError(where, HEADER_BYTES, "data CRC mismatch")
    return data


class SnappyTFRecordWriter:
    """Writes serialized records to a binary file object in TensorFlow-readable SNAPPY blocks of
    ``block_bytes``; ``flush`` ends a block early (still valid). ``close`` closes ``fileobj`` only
    if ``close_fileobj``: by default the caller owns it."""

    def __init__(self, fileobj: IO[bytes], *, block_bytes: int = SNAPPY_BLOCK_BYTES, close_fileobj: bool = False):
        check_range("block_bytes", block_bytes, 1, SNAPPY_BLOCK_BYTES)
        self.fileobj, self.block_bytes, self.close_fileobj = fileobj, int(block_bytes), close_fileobj
        self.records_written = 0
        self.closed = False
        self._pending = bytearray()

    def write(self, record: bytes | bytearray | memoryview) -> None:
        if self.closed:
            raise ValueError("SnappyTFRecordWriter.write: the writer is closed")
        data = record if isinstance(record, bytes) else bytes(record)
        self._feed(memoryview(record_header(len(data))))
        self._feed(memoryview(data))
        self._feed(memoryview(struct.pack("<I", masked_crc32c(data))))
        self.records_written += 1

    def _feed(self, data: memoryview) -> None:
        """Append to the pending block, writing out every block that fills up."""
        if self._pending:
            take = min(self.block_bytes - len(self._pending), len(data))
            self._pending += data[:take]
            data = data[take:]
            if len(self._pending) < self.block_bytes:
                return
            self._write_block(self._pending)
            self._pending = bytearray()
        while len(data) >= self.block_bytes:  # big records go straight from the caller's buffer
            self._write_block(data[: self.block_bytes])
            data = data[self.block_bytes :]
        self._pending += data

    def _write_block(self, block: bytes | bytearray | memoryview) -> None:
        compressed = bytes(cramjam.snappy.compress_raw(block))
        self.fileobj.write(struct.pack(">I", len(compressed)) + compressed)

    def flush(self) -> None:
        if self.closed:
            raise ValueError("SnappyTFRecordWriter.flush: the writer is closed")
        if self._pending:
            self._write_block(self._pending)
            self._pending = bytearray()
        if hasattr(self.fileobj, "flush"):
            self.fileobj.flush()

    def close(self) -> None:
        if self.closed:
            return
        self.flush()
        self.closed = True
        if self.close_fileobj:
            self.fileobj.close()

    def __enter__(self) -> SnappyTFRecordWriter:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def write_records(
    target: str | os.PathLike[str] | IO[bytes], records: Iterable[bytes], *, compression: str | None = "SNAPPY"
) -> int:
    """Write ``records`` to a local path or a binary file object (e.g. ``FileSystems.create``'s
    for object stores); return how many were written."""
    check_option("compression", compression, COMPRESSIONS)
    if isinstance(target, (str, os.PathLike)):
        with open(target, "wb") as fileobj:
            return write_records(fileobj, records, compression=compression)
    if compression is None:
        count = 0
        for record in records:
            target.write(frame_record(bytes(record)))
            count += 1
        return count
    with SnappyTFRecordWriter(target) as writer:
        for record in records:
            writer.write(record)
    return writer.records_written


class _Scratch:
    """A reusable byte buffer: new objects per snappy block cost a third of the reader's time. A
    larger request gets a new buffer, never a resize: views of the old one may still be alive."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def view(self, size: int) -> memoryview:
        if len(self._buffer) < size:
            self._buffer = bytearray(max(size, SNAPPY_BLOCK_BYTES))
        return memoryview(self._buffer)[:size]


class _FileBytes:
    """``take(size)``: the next ``size`` bytes of a file object (fewer at end of file), read into
    a reused buffer; the view is valid until the next ``take``."""

    def __init__(self, fileobj: IO[bytes]):
        self._fileobj, self._scratch = fileobj, _Scratch()
        self._readinto = getattr(fileobj, "readinto", None)  # some object-store streams lack it

    def take(self, size: int) -> memoryview:
        view = self._scratch.view(size)
        got = 0
        while got < size:  # raw streams may return short reads
            if self._readinto is not None:
                n = self._readinto(view[got:])
            else:
                part = self._fileobj.read(size - got)
                n = len(part)
                view[got : got + n] = part
            if not n:
                break
            got += n
        return view[:got]


def _plain_chunks(fileobj: IO[bytes]) -> Iterator[tuple[int | None, bytes]]:
    while chunk := fileobj.read(_READ_CHUNK):
        yield None, chunk


def _snappy_chunks(source: _FileBytes, path: str) -> Iterator[tuple[int | None, memoryview]]:
    """``(file_offset, decompressed_block)`` per snappy block; the next block overwrites the view."""
    offset = 0
    decompressed = _Scratch()
    while prefix := source.take(4):
        if len(prefix) < 4:
            raise CorruptTFRecordError(path, offset, f"truncated block length: expected 4 bytes; got {len(prefix)}")
        (size,) = struct.unpack(">I", prefix)
        if size > _MAX_COMPRESSED_BLOCK:
            raise CorruptTFRecordError(
                path, offset, f"snappy block length {size} exceeds the limit for {MAX_BLOCK_BYTES}-byte blocks"
            )
        block = source.take(size)
        if len(block) < size:
            raise CorruptTFRecordError(path, offset, f"truncated snappy block: expected {size} bytes; got {len(block)}")
        yield offset, _decompress_block(block, decompressed, path, offset)
        offset += 4 + size


def _decompress_block(block: memoryview, out: _Scratch, path: str, offset: int) -> memoryview:
    try:
        size = cramjam.snappy.decompress_raw_len(block)
        if size > MAX_BLOCK_BYTES:
            raise CorruptTFRecordError(
                path, offset, f"snappy block claims {size} decompressed bytes, over the {MAX_BLOCK_BYTES}-byte limit"
            )
        view = out.view(size)
        written = cramjam.snappy.decompress_raw_into(block, view)
    except cramjam.DecompressionError as err:
        raise CorruptTFRecordError(path, offset, f"invalid snappy block ({err})") from err
    if written != size:
        raise CorruptTFRecordError(
            path, offset, f"invalid snappy block (header claims {size} bytes; {written} decompressed)"
        )
    return view


class _Stream:
    """Exact-size reads across chunks, remembering where each byte came from. A chunk may be a
    reused buffer (``_snappy_chunks``), so ``read`` returns a copy."""

    def __init__(self, chunks: Iterator[tuple[int | None, bytes | memoryview]]):
        self._chunks = chunks
        self._chunk: bytes | memoryview = b""
        self._pos = 0
        self.offset = 0  # offset of the next byte in the (decompressed) stream
        self.block_offset: int | None = None  # file offset of the snappy block holding it

    def at_end(self) -> bool:
        while self._pos == len(self._chunk):
            nxt = next(self._chunks, None)
            if nxt is None:
                return True
            self.block_offset, self._chunk = nxt
            self._pos = 0
        return False

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes; fewer only where the stream ends."""
        start = self._pos
        if start + size <= len(self._chunk):  # the common case: inside the current chunk
            self._pos += size
            self.offset += size
            return bytes(self._chunk[start : self._pos])
        parts, remaining = [], size
        while remaining and not self.at_end():
            part = bytes(self._chunk[self._pos : self._pos + remaining])
            self._pos += len(part)
            self.offset += len(part)
            remaining -= len(part)
            parts.append(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def skip(self, size: int) -> int:
        """Move ``size`` bytes on without copying them; how many there were (fewer at the end)."""
        remaining = size
        while remaining and not self.at_end():
            step = min(remaining, len(self._chunk) - self._pos)
            self._pos += step
            self.offset += step
            remaining -= step
        return size - remaining


class _BadRecord(Exception):
    """Why a record cannot be read; ``_records`` adds the file and offset."""


def _next_record(stream: _Stream, verify_crc: bool, keep: bool) -> bytes | None:
    """The next record's data, or None for one passed over: its length is checked (the next one
    starts after it), its data neither copied nor checked."""
    header = stream.read(HEADER_BYTES)
    if len(header) < HEADER_BYTES:
        raise _BadRecord(f"truncated header: expected {HEADER_BYTES} bytes; got {len(header)}")
    length, length_crc = struct.unpack("<QI", header)
    if verify_crc and masked_crc32c(header[:8]) != length_crc:
        raise _BadRecord(f"length crc32c mismatch (length field reads {length})")
    if keep:
        data, footer = stream.read(length), stream.read(FOOTER_BYTES)
        got = len(data) + len(footer)
    else:
        data, got = None, stream.skip(length + FOOTER_BYTES)
    if got < length + FOOTER_BYTES:
        raise _BadRecord(
            f"truncated record: header announces {length} data bytes; the stream ends after {min(got, length)}"
        )
    if keep and verify_crc and masked_crc32c(data) != struct.unpack("<I", footer)[0]:
        raise _BadRecord(f"data crc32c mismatch over {length} bytes")
    return data


def _records(stream: _Stream, path: str, verify_crc: bool, stride: int, offset: int) -> Iterator[bytes]:
    index = 0
    while not stream.at_end():
        start, block = stream.offset, stream.block_offset
        try:
            record = _next_record(stream, verify_crc, keep=index % stride == offset)
        except _BadRecord as err:
            raise CorruptTFRecordError(path, start, f"record {index}: {err}", block_offset=block) from None
        if record is not None:
            yield record
        index += 1


def read_records(
    source: str | os.PathLike[str] | IO[bytes],
    compression: str | None = "SNAPPY",
    verify_crc: bool = True,
    *,
    stride: int = 1,
    offset: int = 0,
) -> Iterator[bytes]:
    """Yield the records of a TFRecord file, plain (``compression=None``) or ``"SNAPPY"``.

    ``source``: a local path or a binary file object (for object stores ``FileSystems.open(path,
    compression_type=CompressionTypes.UNCOMPRESSED)``). ``CorruptTFRecordError`` names the file and
    byte offset of a truncation, invalid snappy data or (``verify_crc``) a CRC mismatch, after the
    intact records before it. ``stride``/``offset``: only the records ``r % stride == offset``, for
    readers that share a file; the others' lengths are checked, their data not.
    """
    check_option("compression", compression, COMPRESSIONS)
    check_int("stride", stride, 1)
    check_int("offset", offset, 0)
    if offset >= stride:
        raise ValueError(f"offset: expected an integer < stride ({stride}); got {offset}")
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as fileobj:
            yield from read_records(fileobj, compression, verify_crc, stride=stride, offset=offset)
        return
    path = str(getattr(source, "name", None) or repr(source))
    chunks = _snappy_chunks(_FileBytes(source), path) if compression else _plain_chunks(source)
    yield from _records(_Stream(chunks), path, verify_crc, stride, offset)
