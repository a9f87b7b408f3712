"""Beam sinks that write TensorFlow-readable SNAPPY TFRecords (design §2).

Beam's Python ``CompressionTypes`` has no SNAPPY, and framed snappy (what a generic codec would
write) is not readable by TensorFlow. ``SnappyTFRecordSink`` therefore opens Beam's temporary
shard uncompressed and wraps it in ``pipelines.tfrecord.SnappyTFRecordWriter``; everything else is
``FileBasedSink``'s: shards go to a ``beam-temp-*`` folder and are renamed to their final
``-SSSSS-of-NNNNN`` names only once every bundle has succeeded, so retried or failed bundles never
leave partial files, on local disk or on GCS alike (all paths go through ``FileSystems``).

Per-site output (``OUTPUT/<site>/part-SSSSS-of-NNNNN.tfrecord``): Python's ``FileBasedSink`` (and
``iobase.Write``) has no dynamic destinations, and one Beam sink per site made the job graph grow
with the sites (about 0.2 s of graph construction, translation and stage overhead per site: 192
one-recording site folders took 41.5 s, where processing their EEG took about 8).
``WriteSnappyTFRecordsBySite`` is one stage for any number of sites, with ``FileBasedSink``'s
guarantees: each bundle writes one temporary file per site it meets (a new one whenever a
file reaches ``max_shard_bytes``) into a ``beam-temp-*`` folder, opened by ``SnappyTFRecordSink``
(so the bytes are the custom sink's), and a single finalizing step, run once every bundle has
succeeded, renames the files of the bundles that succeeded to their final names (files of
failed or retried bundles are never renamed) and deletes the folder. The EEG is not shuffled
unless ``num_shards`` asks for a fixed shard count. The size cap matters to the training loader:
a local run is one bundle, so without it a site of a thousand EEG-hours would be one 35 GB file,
and every loader worker and rank that shares a file reads and decompresses all of it to keep its
share of the records.
The only Python API with dynamic destinations, ``fileio.WriteToFiles``, is experimental and names
and finalizes files its own way. Sites are known from the inputs before the pipeline is built; an
element whose site was not declared fails the pipeline with a message naming it, rather than
being dropped.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable
from typing import Any

import apache_beam as beam
from apache_beam import coders
from apache_beam.io import filebasedsink
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindows

from pipelines.config import check_int
from pipelines.logging_setup import get_logger
from pipelines.object_stores import fix_s3_empty_uploads
from pipelines.schema import SITE_ID_PATTERN
from pipelines.tfrecord import SnappyTFRecordWriter

SHARD_NAME_TEMPLATE = "-SSSSS-of-NNNNN"
FILE_NAME_SUFFIX = ".tfrecord"
SITE_FILE_PREFIX = "part"
# Per-site shards of the default (runner-decided) layout close at this many bytes of records:
# about 1,350 ten-second windows (3.7 EEG-hours). Over 100 MB a file, as TensorFlow's input
# guide recommends for object stores, and small enough that a corpus of a few dozen EEG-hours
# gives every loader worker of a GPU machine files of its own.
DEFAULT_MAX_SHARD_BYTES = 128 * 2**20
fix_s3_empty_uploads()  # every process that writes shards or reports imports this module


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


def _require_bounded(pcoll: beam.PCollection, transform: str) -> None:
    if not pcoll.is_bounded:
        raise ValueError(f"{transform}: expected a bounded PCollection (batch pipeline); got an unbounded one")


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
        _require_bounded(pcoll, "WriteToSnappyTFRecord")
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


class _BySiteFn(beam.DoFn):
    """A DoFn over ``(site, example_bytes)`` pairs of declared sites, with per-bundle state per
    site (``self._bundle``)."""

    def __init__(self, sites: tuple[str, ...]):
        self._sites = sites
        self._index = {site: i for i, site in enumerate(sites)}
        self._bundle: dict[str, Any] = {}

    def start_bundle(self):
        self._bundle = {}

    def _site(self, element: Any) -> str:
        """The element's declared site, else a ValueError naming it."""
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
        return key


def _create_temp(sink: SnappyTFRecordSink, temp_dir: str, site: str, suffix: str,
                 name: str | None = None) -> tuple[str, SnappyTFRecordWriter]:
    """A new temporary file of ``site`` in ``temp_dir``, opened by ``sink`` (the job's records are
    written by the custom ``FileBasedSink``; only the finalizing differs): (path, writer). Files
    of a site are numbered in the order of their (sorted) names: ``name`` orders them, by default
    a random one."""
    path = FileSystems.join(temp_dir, f"{site}.{name or uuid.uuid4().hex}{suffix}")
    return path, sink.open(path)


class _WriteBundleBySiteFn(_BySiteFn):
    """Each bundle's records to temporary files per site, a new one whenever a file holds
    ``max_shard_bytes`` of records; emits ``(site, temp_path)`` per file once it is closed. A
    bundle's files are named so that they sort in the order of their records."""

    def __init__(self, sites: tuple[str, ...], temp_dir: str, suffix: str,
                 max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES):
        super().__init__(sites)
        self._temp_dir, self._suffix, self._max_bytes = temp_dir, suffix, max_shard_bytes
        self._sink = SnappyTFRecordSink(FileSystems.join(temp_dir, "part"), suffix)
        self._id, self._files = "", 0  # the bundle's id and how many files it opened

    def start_bundle(self):
        super().start_bundle()
        self._id, self._files = uuid.uuid4().hex, 0

    def process(self, element):
        site = self._site(element)
        target = self._bundle.get(site)  # [temp path, writer, bytes of records]
        if target is None:
            self._files += 1
            name = f"{self._id}.{self._files:06d}"
            target = self._bundle[site] = [*_create_temp(self._sink, self._temp_dir, site, self._suffix, name), 0]
        target[1].write(element[1])
        target[2] += len(element[1])
        if target[2] >= self._max_bytes:
            del self._bundle[site]
            target[1].close()
            yield site, target[0]

    def finish_bundle(self):
        opened, self._bundle = self._bundle, {}
        for site, (path, writer, _) in sorted(opened.items()):
            writer.close()
            yield GlobalWindows.windowed_value((site, path))


class _RoundRobinShardFn(_BySiteFn):
    """``((site, shard), record)`` with shards dealt in turn, from a random start per bundle."""

    def __init__(self, sites: tuple[str, ...], num_shards: int):
        super().__init__(sites)
        self._num_shards = num_shards

    def process(self, element):
        site = self._site(element)
        shard = self._bundle.get(site)  # the next shard
        if shard is None:
            shard = random.randrange(self._num_shards)
        self._bundle[site] = (shard + 1) % self._num_shards
        yield (site, shard), element[1]


class _WriteShardFn(beam.DoFn):
    """One grouped ``((site, shard), records)`` to one temporary file: ``(site, temp_path)``."""

    def __init__(self, temp_dir: str, suffix: str):
        self._temp_dir, self._suffix = temp_dir, suffix
        self._sink = SnappyTFRecordSink(FileSystems.join(temp_dir, "part"), suffix)

    def process(self, element):
        (site, _), records = element
        path, writer = _create_temp(self._sink, self._temp_dir, site, self._suffix)
        for record in records:
            writer.write(record)
        writer.close()
        yield site, path


class _FinalizeBySiteFn(beam.DoFn):
    """Once: every site's temporary files renamed to ``<site>/part-SSSSS-of-NNNNN``, empty shards
    where a site has fewer files than shards (a declared site without records gets one, or
    ``num_shards``), the temporary folder deleted. Emits every final file name. Safe to retry:
    a file already renamed by an earlier attempt is not renamed again."""

    def __init__(self, output_dir: str, sites: tuple[str, ...], num_shards: int, temp_dir: str,
                 suffix: str):
        self._output_dir, self._sites, self._num_shards = output_dir, sites, num_shards
        self._temp_dir, self._suffix = temp_dir, suffix

    def process(self, _, written):
        by_site: dict[str, list[str]] = {site: [] for site in self._sites}
        for site, path in written:
            by_site[site].append(path)
        present = set(_listing(self._temp_dir))  # one listing, not a request per file
        sources, destinations, empty, final = [], [], [], []
        for site in self._sites:
            temps = sorted(by_site[site])
            count = self._num_shards or max(1, len(temps))
            if len(temps) > count:
                raise RuntimeError(f"site {site}: {len(temps)} written shards for num_shards={count}")
            prefix = site_file_prefix(self._output_dir, site)
            names = [f"{prefix}-{i:05d}-of-{count:05d}{self._suffix}" for i in range(count)]
            _make_folder(FileSystems.split(prefix)[0])
            for temp, name in zip(temps, names):
                if temp in present:
                    sources.append(temp)
                    destinations.append(name)
                elif not FileSystems.exists(name):  # neither: a file was lost
                    raise OSError(f"site {site}: temporary shard {temp} is gone and {name} does not exist")
                # else: renamed by an earlier attempt of this step
            empty += names[len(temps):]
            final += names
        if sources:
            FileSystems.rename(sources, destinations)
        for name in empty:
            FileSystems.create(name, mime_type="application/octet-stream").close()
        _remove_folder(self._temp_dir)
        yield from final


def _listing(folder: str) -> list[str]:
    return [m.path for m in FileSystems.match([FileSystems.join(folder, "*")])[0].metadata_list]


def _remove_folder(path: str) -> None:
    """Delete the temporary folder: what failed bundles left in it, then the folder itself where
    the file system has folders (an object store has only the objects)."""
    try:
        left = _listing(path)
        if left:
            FileSystems.delete(left)
        if FileSystems.get_filesystem(path).has_dirs() and FileSystems.exists(path):
            FileSystems.delete([path])
    except OSError as err:  # the shards are final; a leftover temporary file is only clutter
        get_logger("sinks").warning("could not delete the temporary folder %s: %s", path, err)


def _make_folder(path: str) -> None:
    """Create ``path`` where the file system has folders (local disk; a no-op on object stores)."""
    if FileSystems.get_filesystem(path).has_dirs() and not FileSystems.exists(path):
        try:
            FileSystems.mkdirs(path)
        except OSError:  # created meanwhile by another writer
            if not FileSystems.exists(path):
                raise


class WriteSnappyTFRecordsBySite(beam.PTransform):
    """Write ``(site, example_bytes)`` pairs to ``output_dir/<site>/part-SSSSS-of-NNNNN.tfrecord``.

    ``sites`` must list every site that can occur (see the module docstring for why). A declared
    site without records gets one empty (zero-byte, valid) shard, or ``num_shards`` of them, as
    Beam writes for empty collections. ``num_shards=0``: the shards of each bundle that met the site
    (no shuffle); ``num_shards=N``: exactly N per site, records dealt round robin and grouped
    (a shuffle of the records, as Beam's own sinks do for a fixed count). With ``num_shards=0``
    a bundle also starts a new shard of a site once the current one holds ``max_shard_bytes``
    of records (so a shard is at most one record over it). The output PCollection holds the
    final file names of all sites.
    """

    def __init__(self, output_dir: str, sites: Iterable[str | bytes], num_shards: int = 0,
                 file_name_suffix: str = FILE_NAME_SUFFIX, max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES):
        super().__init__()
        names = tuple(site_name(site) for site in sites)
        if not names:
            raise ValueError("sites: expected at least one site; got none")
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"sites: expected unique site names; got duplicates {duplicates}")
        self._num_shards = check_int("num_shards", num_shards, 0)  # 0: shards by bundle and size
        self._max_shard_bytes = check_int("max_shard_bytes", max_shard_bytes, 1)
        self._output_dir = output_dir
        self._sites = names
        self._file_name_suffix = file_name_suffix

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        _require_bounded(pcoll, "WriteSnappyTFRecordsBySite")
        temp_dir = FileSystems.join(self._output_dir, f"beam-temp-sites-{uuid.uuid4().hex}")
        suffix = self._file_name_suffix
        if self._num_shards:
            written = (
                pcoll
                | "DealShards" >> beam.ParDo(_RoundRobinShardFn(self._sites, self._num_shards))
                | "GroupShards" >> beam.GroupByKey()
                | "WriteShards" >> beam.ParDo(_WriteShardFn(temp_dir, suffix))
            )
        else:
            written = pcoll | "WriteBundles" >> beam.ParDo(
                _WriteBundleBySiteFn(self._sites, temp_dir, suffix, self._max_shard_bytes))
        return (
            pcoll.pipeline
            | "Once" >> beam.Create([None])
            | "Finalize" >> beam.ParDo(
                _FinalizeBySiteFn(self._output_dir, self._sites, self._num_shards, temp_dir, suffix),
                beam.pvalue.AsList(written))
        )
