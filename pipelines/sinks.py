"""Beam sinks that write TensorFlow-readable SNAPPY TFRecords (design §2).

Beam's Python ``CompressionTypes`` has no SNAPPY, and framed snappy (what a generic codec would
write) is not readable by TensorFlow. ``SnappyTFRecordSink`` therefore opens Beam's temporary
shard uncompressed and wraps it in ``pipelines.tfrecord.SnappyTFRecordWriter``; everything else is
``FileBasedSink``'s: shards go to a ``beam-temp-*`` folder and are renamed to their final
``-SSSSS-of-NNNNN`` names only once every bundle has succeeded, so retried or failed bundles never
leave partial files, on local disk or on GCS alike (all paths go through ``FileSystems``).

Per-site output (``OUTPUT/<site>/part-SSSSS-of-NNNNN.tfrecord``): Python's ``FileBasedSink`` (and
``iobase.Write``) has no dynamic destinations, so ``WriteSnappyTFRecordsBySite`` takes the site
list up front, partitions the collection by site and applies one sink per site. The only Python
API with dynamic destinations, ``fileio.WriteToFiles``, is experimental and names and finalizes
files its own way. Sites are few and known from the inputs before the pipeline is built; an
element whose site was not declared fails the pipeline with a message naming it, rather than
being dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import apache_beam as beam
from apache_beam import coders
from apache_beam.io import filebasedsink
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines.schema import SITE_ID_PATTERN
from pipelines.tfrecord import SnappyTFRecordWriter

SHARD_NAME_TEMPLATE = "-SSSSS-of-NNNNN"
FILE_NAME_SUFFIX = ".tfrecord"
SITE_FILE_PREFIX = "part"


class SnappyTFRecordSink(filebasedsink.FileBasedSink):
    """A ``FileBasedSink`` of serialized records (bytes) in TensorFlow's SNAPPY TFRecord format."""

    def __init__(self, file_path_prefix: str, file_name_suffix: str = FILE_NAME_SUFFIX,
                 num_shards: int = 0, shard_name_template: str = SHARD_NAME_TEMPLATE, *,
                 max_records_per_shard: int | None = None,
                 max_bytes_per_shard: int | None = None):
        super().__init__(
            file_path_prefix,
            coder=coders.BytesCoder(),
            file_name_suffix=file_name_suffix,
            num_shards=num_shards,
            shard_name_template=shard_name_template,
            mime_type="application/octet-stream",
            # The snappy blocks are written by SnappyTFRecordWriter, not by a Beam codec.
            compression_type=CompressionTypes.UNCOMPRESSED,
            max_records_per_shard=max_records_per_shard,
            max_bytes_per_shard=max_bytes_per_shard,
        )

    def open(self, temp_path: str) -> SnappyTFRecordWriter:
        # super().open counts bytes for max_bytes_per_shard, so the limit is on compressed bytes.
        return SnappyTFRecordWriter(super().open(temp_path), close_fileobj=True)

    def write_encoded_record(self, file_handle: SnappyTFRecordWriter, encoded_value: bytes) -> None:
        file_handle.write(encoded_value)

    # FileBasedSink.close(file_handle) calls file_handle.close(): the writer writes its last
    # block, then closes the temporary file.

    def display_data(self) -> dict[str, Any]:
        return {**super().display_data(), "format": "TFRecord, TensorFlow SNAPPY blocks"}


class WriteToSnappyTFRecord(beam.PTransform):
    """Write a bounded PCollection of serialized records as SNAPPY TFRecord shards.

    Files are ``file_path_prefix + shard_name_template + file_name_suffix`` with ``SSSSS``/``NNNNN``
    replaced by the shard number and count; ``num_shards=0`` lets the runner choose. The output
    PCollection holds the final file names.
    """

    def __init__(self, file_path_prefix: str, file_name_suffix: str = FILE_NAME_SUFFIX,
                 num_shards: int = 0, shard_name_template: str = SHARD_NAME_TEMPLATE, *,
                 max_records_per_shard: int | None = None,
                 max_bytes_per_shard: int | None = None):
        super().__init__()
        self._sink = SnappyTFRecordSink(
            file_path_prefix, file_name_suffix, num_shards, shard_name_template,
            max_records_per_shard=max_records_per_shard, max_bytes_per_shard=max_bytes_per_shard,
        )

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        if not pcoll.is_bounded:
            raise ValueError(
                "WriteToSnappyTFRecord: expected a bounded PCollection (batch pipeline); got an "
                "unbounded one"
            )
        return pcoll | beam.io.Write(self._sink)


def site_name(site: str | bytes) -> str:
    """A site id as the folder name it becomes; rejects names unsafe as a path component."""
    name = site.decode("utf-8", "replace") if isinstance(site, bytes) else site
    if not isinstance(name, str) or not SITE_ID_PATTERN.fullmatch(name):
        raise ValueError(
            f"site: expected a name matching {SITE_ID_PATTERN.pattern!r}; got {site!r}"
        )
    return name


def site_file_prefix(output_dir: str, site: str | bytes) -> str:
    """``output_dir/<site>/part``: the ``file_path_prefix`` of one site's shards."""
    return FileSystems.join(output_dir, site_name(site), SITE_FILE_PREFIX)


def site_file_pattern(output_dir: str, site: str | bytes,
                      file_name_suffix: str = FILE_NAME_SUFFIX) -> str:
    """A glob matching one site's final shards (never Beam's temporary files)."""
    return f"{site_file_prefix(output_dir, site)}-*-of-*{file_name_suffix}"


class _SiteIndex:
    """``beam.Partition`` function: the index of an element's site in the declared site list."""

    def __init__(self, sites: tuple[str, ...]):
        self._sites = sites
        self._index = {site: i for i, site in enumerate(sites)}

    def __call__(self, element: tuple[str | bytes, bytes], num_partitions: int) -> int:
        if not (isinstance(element, tuple) and len(element) == 2):
            raise ValueError(
                f"WriteSnappyTFRecordsBySite: expected (site, example_bytes) pairs; got "
                f"{type(element).__name__} {element!r:.80}"
            )
        site = element[0]
        key = site.decode("utf-8", "replace") if isinstance(site, bytes) else site
        if key not in self._index:
            raise ValueError(
                f"WriteSnappyTFRecordsBySite: site {site!r} is not one of the "
                f"{len(self._sites)} sites declared when the pipeline was built "
                f"({', '.join(self._sites)}); declare every site so no window is dropped"
            )
        return self._index[key]


class WriteSnappyTFRecordsBySite(beam.PTransform):
    """Write ``(site, example_bytes)`` pairs to ``output_dir/<site>/part-SSSSS-of-NNNNN.tfrecord``.

    ``sites`` must list every site that can occur (see the module docstring for why). A declared
    site without records gets one empty (zero-byte, valid) shard, as Beam writes for empty
    collections. The output PCollection holds the final file names of all sites.
    """

    def __init__(self, output_dir: str, sites: Iterable[str | bytes], num_shards: int = 0,
                 file_name_suffix: str = FILE_NAME_SUFFIX):
        super().__init__()
        names = tuple(site_name(site) for site in sites)
        if not names:
            raise ValueError("sites: expected at least one site; got none")
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"sites: expected unique site names; got duplicates {duplicates}")
        self._output_dir = output_dir
        self._sites = names
        self._num_shards = num_shards
        self._file_name_suffix = file_name_suffix

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        parts = pcoll | "PartitionBySite" >> beam.Partition(
            _SiteIndex(self._sites), len(self._sites))
        written = []
        for site, part in zip(self._sites, parts):
            prefix = site_file_prefix(self._output_dir, site)
            written.append(
                part
                | f"Records[{site}]" >> beam.Values()
                | f"Write[{site}]" >> WriteToSnappyTFRecord(
                    prefix, self._file_name_suffix, self._num_shards)
            )
        return written | "FileNames" >> beam.Flatten()
