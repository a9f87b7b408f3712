"""TFRecord framing and TensorFlow's SNAPPY block format, checked against TensorFlow itself."""

from __future__ import annotations

import io
import re
import struct
import warnings

import cramjam
import numpy as np
import pytest

from eegfm.contract.schema import decode_example, encode_example
from eegfm.contract.tfrecord import (
    SNAPPY_BLOCK_BYTES,
    CorruptTFRecordError,
    SnappyTFRecordWriter,
    frame_record,
    read_records,
    write_records,
)
from eegfm.core.config import ConfigError
from tests.contract.test_schema import make_record

tf = pytest.importorskip("tensorflow")

_RNG = np.random.default_rng(7)
BLOCK = SNAPPY_BLOCK_BYTES
OVERHEAD = 16  # 12-byte header + 4-byte footer per record


def _random(n: int) -> bytes:
    return _RNG.bytes(n)


def _compressible(n: int) -> bytes:
    return bytes(_RNG.integers(0, 4, n, dtype=np.uint8))


RECORD_SETS = {
    "empty": [],
    "one": [b"hello"],
    "empty-record": [b"", b"x", b""],
    "many-small": [_compressible(int(n)) for n in _RNG.integers(0, 200, 500)],
    "over-256KiB": [_random(600 * 1024)],
    "block-edges": [
        _random(BLOCK - OVERHEAD),
        _random(BLOCK - OVERHEAD + 1),
        _random(BLOCK),
        _random(1),
        _random(BLOCK + 1),
        _random(3 * BLOCK),
    ],
    "thousands": [_compressible(int(n)) for n in _RNG.integers(0, 3000, 3000)],
    "examples": [encode_example(make_record(seed, n_times=2560)) for seed in range(12)],
}


def _tf_read(path, compression="SNAPPY") -> list[bytes]:
    return [r.numpy() for r in tf.data.TFRecordDataset(str(path), compression_type=compression)]


def _blocks(path) -> list[tuple[int, int]]:
    """(compressed, decompressed) size of each block: 4-byte big-endian length + raw snappy."""
    data, sizes, offset = path.read_bytes(), [], 0
    while offset < len(data):
        (size,) = struct.unpack(">I", data[offset : offset + 4])
        block = data[offset + 4 : offset + 4 + size]
        sizes.append((size, len(cramjam.snappy.decompress_raw(block))))
        offset += 4 + size
    return sizes


def _tf_snappy_write(path, records) -> None:
    """TensorFlow's own SNAPPY writer; the Python TFRecordOptions has no SNAPPY."""
    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(records, dtype=tf.string))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.data.experimental.TFRecordWriter is deprecated
        tf.data.experimental.TFRecordWriter(str(path), compression_type="SNAPPY").write(dataset)


@pytest.mark.parametrize("name", list(RECORD_SETS))
def test_tensorflow_reads_our_snappy_files(tmp_path, name):
    records = RECORD_SETS[name]
    path = tmp_path / f"{name}.tfrecord"
    assert write_records(path, records) == len(records)
    assert _tf_read(path) == records
    assert list(read_records(path)) == records


@pytest.mark.parametrize("block_bytes", [1, 1000, 65536])
def test_small_blocks_split_records_and_still_read(tmp_path, block_bytes):
    records = RECORD_SETS["examples"][:1] + RECORD_SETS["many-small"][:50]
    path = tmp_path / "small-blocks.tfrecord"
    with open(path, "wb") as fileobj, SnappyTFRecordWriter(fileobj, block_bytes=block_bytes) as w:
        for record in records:
            w.write(record)
    assert _tf_read(path) == records
    assert list(read_records(path)) == records


def test_blocks_are_full_256KiB_except_the_last(tmp_path):
    path = tmp_path / "big.tfrecord"
    write_records(path, RECORD_SETS["block-edges"])
    raw_sizes = [raw for _, raw in _blocks(path)]
    total = sum(len(r) + OVERHEAD for r in RECORD_SETS["block-edges"])
    assert raw_sizes[:-1] == [BLOCK] * (len(raw_sizes) - 1)
    assert sum(raw_sizes) == total and 0 < raw_sizes[-1] <= BLOCK


def test_empty_stream_is_an_empty_file(tmp_path):
    ours, theirs = tmp_path / "ours.tfrecord", tmp_path / "tf.tfrecord"
    write_records(ours, [])
    _tf_snappy_write(theirs, [])
    assert ours.read_bytes() == theirs.read_bytes() == b""
    assert list(read_records(theirs)) == []


def test_flush_ends_a_block_and_the_file_stays_readable(tmp_path):
    path = tmp_path / "flushed.tfrecord"
    with open(path, "wb") as fileobj:
        writer = SnappyTFRecordWriter(fileobj)
        writer.write(b"first")
        writer.flush()
        writer.write(b"second")
        writer.close()
        assert not fileobj.closed  # the caller owns the file unless close_fileobj=True
    assert len(_blocks(path)) == 2
    assert _tf_read(path) == [b"first", b"second"]
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"late")


def test_uncompressed_files_are_byte_identical_to_tensorflow(tmp_path):
    records = RECORD_SETS["many-small"][:100] + RECORD_SETS["examples"][:2]
    ours, theirs = tmp_path / "ours.tfrecord", tmp_path / "tf.tfrecord"
    write_records(ours, records, compression=None)
    with tf.io.TFRecordWriter(str(theirs)) as writer:
        for record in records:
            writer.write(record)
    assert ours.read_bytes() == theirs.read_bytes() == b"".join(map(frame_record, records))
    assert list(read_records(theirs, compression=None)) == records


@pytest.mark.parametrize("name", ["many-small", "thousands", "examples"])
def test_we_read_tensorflow_written_snappy_files(tmp_path, name):
    path = tmp_path / "tf.tfrecord"
    _tf_snappy_write(path, RECORD_SETS[name])
    assert list(read_records(path)) == RECORD_SETS[name]
    if name == "examples":
        assert [decode_example(r) for r in read_records(path)] == [
            make_record(seed, n_times=2560) for seed in range(12)
        ]


def test_tensorflow_facts_this_module_relies_on(tmp_path):
    """Pins TF behaviour documented in contract/tfrecord.py; revisit the writer if it changes."""
    for args, kwargs in [(("SNAPPY",), {}), ((), {"compression_type": "SNAPPY"})]:
        with pytest.raises(ValueError, match="SNAPPY"):
            tf.io.TFRecordOptions(*args, **kwargs)
    big = [RECORD_SETS["over-256KiB"][0]]
    path = tmp_path / "tf-big.tfrecord"
    _tf_snappy_write(path, big)
    assert max(raw for _, raw in _blocks(path)) > BLOCK  # TF's writer: one block per big write
    with pytest.raises(tf.errors.ResourceExhaustedError, match="262144"):
        _tf_read(path)  # ... which TF's own reader refuses
    assert list(read_records(path)) == big  # while ours reads it


def test_file_objects_and_compression_option():
    buffer = io.BytesIO()
    write_records(buffer, [b"a", b"bc"])
    assert list(read_records(io.BytesIO(buffer.getvalue()))) == [b"a", b"bc"]
    with pytest.raises(ConfigError, match="compression: expected one of 'SNAPPY', None; got 'GZIP"):
        list(read_records(io.BytesIO(b""), compression="GZIP"))
    with pytest.raises(ConfigError, match="block_bytes"):
        SnappyTFRecordWriter(buffer, block_bytes=BLOCK + 1)


class _ShortReads:
    """An object-store stream: ``read`` only (no ``readinto``), at most 1000 bytes per call."""

    def __init__(self, data: bytes):
        self._data, self._pos, self.name = data, 0, "gs://bucket/short-reads.tfrecord"

    def read(self, size: int = -1) -> bytes:
        size = min(1000, len(self._data) - self._pos if size < 0 else size)
        part = self._data[self._pos : self._pos + size]
        self._pos += len(part)
        return part


def test_streams_with_short_reads_and_no_readinto(tmp_path):
    # Blocks are decompressed into a reused buffer: records must still be whole copies.
    records = RECORD_SETS["block-edges"] + RECORD_SETS["examples"]
    path = tmp_path / "stream.tfrecord"
    write_records(path, records)
    assert list(read_records(_ShortReads(path.read_bytes()))) == records
    truncated = _ShortReads(path.read_bytes()[:-10])
    with pytest.raises(CorruptTFRecordError, match="gs://bucket/short-reads.tfrecord.*truncated snappy block"):
        list(read_records(truncated))


# Corruption: every error names the file and a byte offset.


def _corrupt(path, offset: int, xor: int = 0x01) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= xor
    path.write_bytes(bytes(data))


def test_flipped_byte_in_snappy_literal_is_a_crc_mismatch_at_the_record(tmp_path):
    records = [_random(1000), _random(2000)]  # incompressible: stored as snappy literals
    path = tmp_path / "bad.tfrecord"
    write_records(path, records)
    _corrupt(path, path.stat().st_size - 100)  # inside record 1's data
    with pytest.raises(CorruptTFRecordError) as err:
        list(read_records(path))
    assert str(err.value) == (
        f"{path}: corrupt TFRecord at byte offset 1016 of the decompressed record stream "
        f"(in the snappy block at file byte offset 0): record 1: data crc32c mismatch over "
        f"2000 bytes"
    )
    assert (err.value.path, err.value.offset) == (str(path), 1016)
    assert len(list(read_records(path, verify_crc=False))) == 2


@pytest.mark.parametrize(
    "where, reason",
    [
        (0, "snappy block length"),  # the block's 4-byte length prefix
        (4, "invalid snappy block"),  # the snappy header (uncompressed length varint)
    ],
)
def test_corrupt_block_structure_names_file_and_offset(tmp_path, where, reason):
    path = tmp_path / "bad.tfrecord"
    write_records(path, RECORD_SETS["many-small"][:100])
    _corrupt(path, where, xor=0x40)
    prefix = f"{path}: corrupt TFRecord at byte offset 0: {reason}"
    with pytest.raises(CorruptTFRecordError, match="^" + re.escape(prefix)):
        list(read_records(path))


def test_flipped_bytes_throughout_a_file_are_detected(tmp_path):
    path = tmp_path / "sweep.tfrecord"
    write_records(path, RECORD_SETS["examples"][:2])
    clean = path.read_bytes()
    for offset in range(0, len(clean), max(1, len(clean) // 64)):
        _corrupt(path, offset)
        with pytest.raises(CorruptTFRecordError, match=re.escape(str(path))):
            list(read_records(path))
        path.write_bytes(clean)


def test_truncated_files_name_the_record(tmp_path):
    snappy, plain = tmp_path / "cut.snappy.tfrecord", tmp_path / "cut.tfrecord"
    write_records(snappy, [b"a" * 100, b"b" * 100])
    write_records(plain, [b"a" * 100, b"b" * 100], compression=None)
    snappy.write_bytes(snappy.read_bytes()[:-5])
    plain.write_bytes(plain.read_bytes()[:-5])
    with pytest.raises(CorruptTFRecordError, match="truncated snappy block"):
        list(read_records(snappy))
    with pytest.raises(CorruptTFRecordError, match=r"at byte offset 116: record 1: truncated record"):
        list(read_records(plain, compression=None))


def test_uncompressed_crc_mismatch_names_the_exact_offset(tmp_path):
    path = tmp_path / "plain.tfrecord"
    write_records(path, [b"x" * 10, b"y" * 10, b"z" * 10], compression=None)
    _corrupt(path, 2 * 26 + 3)  # third record's length field
    with pytest.raises(CorruptTFRecordError, match=r"at byte offset 52: record 2: length crc32c mismatch"):
        list(read_records(path, compression=None))


# Readers that share a file: every stride-th record, the others passed over unread.


@pytest.mark.parametrize("compression", ["SNAPPY", None])
@pytest.mark.parametrize("block_bytes", [1000, SNAPPY_BLOCK_BYTES])
def test_strided_readers_together_read_every_record_once(tmp_path, compression, block_bytes):
    records = RECORD_SETS["examples"][:5] + RECORD_SETS["many-small"][:60] + RECORD_SETS["block-edges"][:3]
    path = tmp_path / "shared.tfrecord"
    with open(path, "wb") as fileobj:
        if compression:
            with SnappyTFRecordWriter(fileobj, block_bytes=block_bytes) as writer:
                for record in records:
                    writer.write(record)
        else:
            for record in records:
                fileobj.write(frame_record(record))
    for stride in (1, 2, 3, 7):
        for offset in range(stride):
            got = list(read_records(path, compression, stride=stride, offset=offset))
            assert got == records[offset::stride], (stride, offset)


def test_a_strided_reader_checks_the_records_it_keeps_and_the_lengths_of_all(tmp_path):
    records = [_random(1000), _random(2000), _random(500)]  # incompressible: snappy literals
    path = tmp_path / "bad.tfrecord"
    write_records(path, records)
    clean = path.read_bytes()
    length_field = clean.find(struct.pack("<Q", 2000))  # record 1's header, stored as a literal
    assert length_field > 1000 and clean.find(struct.pack("<Q", 2000), length_field + 1) == -1
    _corrupt(path, length_field + 12 + 100)  # inside record 1's data
    assert list(read_records(path, stride=2, offset=0)) == records[::2]  # record 1 is not its own
    with pytest.raises(CorruptTFRecordError, match=r"record 1: data crc32c mismatch over 2000 bytes"):
        list(read_records(path, stride=2, offset=1))
    path.write_bytes(clean)
    _corrupt(path, length_field)  # record 1's length field: where record 2 starts is unknown
    for offset in (0, 1):
        with pytest.raises(CorruptTFRecordError, match=r"record 1: length crc32c mismatch"):
            list(read_records(path, stride=2, offset=offset))
    path.write_bytes(clean[:-10])
    with pytest.raises(CorruptTFRecordError, match="truncated snappy block"):
        list(read_records(path, stride=2, offset=1))


def test_a_strided_reader_names_a_truncated_record_it_passes_over(tmp_path):
    path = tmp_path / "cut.tfrecord"
    write_records(path, [b"a" * 100, b"b" * 100], compression=None)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(
        CorruptTFRecordError,
        match=r"at byte offset 116: record 1: truncated record: header announces 100 data bytes; "
        r"the stream ends after 99",
    ):
        list(read_records(path, compression=None, stride=2, offset=0))


@pytest.mark.parametrize(
    "stride, offset, message",
    [
        (0, 0, "stride: expected an integer >= 1; got 0"),
        (2, -1, "offset: expected an integer >= 0; got -1"),
        (2, 2, "offset: expected an integer < stride (2); got 2"),
        (True, 0, "stride: expected an integer >= 1; got True"),
    ],
)
def test_stride_arguments_are_checked(tmp_path, stride, offset, message):
    path = tmp_path / "x.tfrecord"
    write_records(path, [b"x"])
    with pytest.raises(ValueError, match=re.escape(message)):
        list(read_records(path, stride=stride, offset=offset))
