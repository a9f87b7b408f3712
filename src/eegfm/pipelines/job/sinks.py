"""The Beam sink that writes TensorFlow-readable SNAPPY TFRecords, ``OUTPUT/<site>/part-SSSSS-of-NNNNN.tfrecord``.

Beam has no SNAPPY codec TensorFlow can read, so each shard is written uncompressed through Beam's
``FileSystems`` by ``SnappyTFRecordWriter`` (:func:`open_shard`) to a temporary file, renamed once every
shard is written. Every site goes through one stage (one sink per site made the graph grow with them).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple, Protocol

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from eegfm.contract.schema import SITE_ID_PATTERN
from eegfm.contract.tfrecord import SnappyTFRecordWriter
from eegfm.core.config import check_int
from eegfm.core.stores import discard_folders, fix_s3_empty_uploads, match_below
from eegfm.pipelines.job.limits import DEFAULT_MAX_SHARD_BYTES

FILE_NAME_SUFFIX = ".tfrecord"
SITE_FILE_PREFIX = "part"


def open_shard(path: str) -> SnappyTFRecordWriter:
    """A SNAPPY TFRecord writer of a new file at ``path``, on any Beam file system; closing the
    writer closes the file."""
    fix_s3_empty_uploads()  # in the worker that writes: a shard may be empty (core.stores)
    fileobj = FileSystems.create(path, "application/octet-stream", CompressionTypes.UNCOMPRESSED)
    return SnappyTFRecordWriter(fileobj, close_fileobj=True)


def site_name(site: str | bytes) -> str:
    """A site id as the folder name it becomes; rejects names unsafe as a path component."""
    name = site.decode("utf-8", "replace") if isinstance(site, bytes) else site
    if not isinstance(name, str) or not SITE_ID_PATTERN.fullmatch(name):
        raise ValueError(f"site: expected a name matching {SITE_ID_PATTERN.pattern!r}; got {site!r}")
    return name


def site_file_prefix(output_dir: str, site: str | bytes) -> str:
    """``output_dir/<site>/part``: the ``file_path_prefix`` of one site's shards."""
    return FileSystems.join(output_dir, site_name(site), SITE_FILE_PREFIX)


class RecordSource(Protocol):
    """Records of one site that stay together and in order, read on demand (a recording's windows):
    ``order`` is unique within the site, ``sizes`` the records' lengths in bytes."""

    site: str
    order: Any
    sizes: np.ndarray

    def records(self, first: int, last: int) -> Iterable[bytes]: ...


@dataclasses.dataclass
class ShardTask:
    """The ``index``-th of a site's ``count`` shards: records ``first..last-1`` of each source, in order."""

    site: str
    index: int
    count: int
    pieces: list[tuple[RecordSource, int, int]]

    def records(self) -> Iterator[bytes]:
        for source, first, last in self.pieces:
            yield from source.records(first, last)


def plan_shards(
    sources: Iterable[RecordSource],
    sites: Sequence[str],
    num_shards: int = 0,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
) -> list[ShardTask]:
    """Every declared site's shards: its sources, in ``order``, cut into ``num_shards`` contiguous
    shards of about equal bytes, or (``num_shards=0``) as few as keep each within ``max_shard_bytes``
    (at most one record over). A site without records gets one empty shard, or ``num_shards``."""
    by_site: dict[str, list[RecordSource]] = {site: [] for site in sites}
    for source in sources:
        site = source.site
        if site not in by_site:
            raise ValueError(
                f"WriteSnappyTFRecordsBySite: site {site!r} is not one of the {len(sites)} sites declared "
                f"when the pipeline was built ({', '.join(sites)}); declare every site so no window is dropped"
            )
        by_site[site].append(source)
    tasks = []
    for site in sites:
        ordered = sorted(by_site[site], key=lambda s: s.order)
        for a, b in zip(ordered, ordered[1:]):
            if a.order == b.order:
                raise ValueError(
                    f"site {site}: two record sources share the order {a.order!r}; expected "
                    "unique orders, or the shards would depend on the order of arrival"
                )
        sizes = [np.asarray(s.sizes, dtype=np.int64) for s in ordered]
        total = int(sum(int(s.sum()) for s in sizes))
        count = num_shards or max(1, -(-total // max_shard_bytes))
        pieces: list[list[tuple[RecordSource, int, int]]] = [[] for _ in range(count)]
        offset = 0
        for source, size in zip(ordered, sizes):
            # A record belongs to the shard its first byte falls in: contiguous, about equal shards.
            starts = offset + np.cumsum(size) - size
            shard = (starts * count) // max(total, 1)
            for k in np.unique(shard):
                where = np.flatnonzero(shard == k)
                pieces[int(k)].append((source, int(where[0]), int(where[-1]) + 1))
            offset += int(size.sum())
        tasks += [ShardTask(site, k, count, part) for k, part in enumerate(pieces)]
    return tasks


def _plan(_, sources, sites, num_shards, max_shard_bytes) -> list[ShardTask]:
    return plan_shards(sources, sites, num_shards, max_shard_bytes)


class WrittenShard(NamedTuple):
    """A final shard: its path, its records and its size in bytes (what the manifest lists, so a
    reader can tell a truncated or missing shard from a whole one)."""

    path: str
    records: int
    bytes: int


class _WriteShardFn(beam.DoFn):
    """One ``ShardTask`` to its temporary file: ``(site, temp_path, count, records)``."""

    def __init__(self, temp_dir: str, suffix: str, guard: Callable[[], None] | None = None):
        self._temp_dir, self._suffix, self._guard = temp_dir, suffix, guard

    def process(self, task: ShardTask):
        if self._guard is not None:
            self._guard()
        # Named by the shard's index, so a retried task rewrites the same file.
        path = temp_shard_path(self._temp_dir, task.site, task.index, self._suffix)
        writer = open_shard(path)
        for record in task.records():
            writer.write(record)
        writer.close()
        yield task.site, path, task.count, writer.records_written


def temp_shard_path(temp_dir: str, site: str, index: int, suffix: str = FILE_NAME_SUFFIX) -> str:
    """Where shard ``index`` of ``site`` is written before finalizing (sorted names = shard order)."""
    return FileSystems.join(temp_dir, f"{site}.{index:05d}{suffix}")


class FinalizeBySiteFn(beam.DoFn):
    """Once: every site's temporary shards renamed to ``<site>/part-SSSSS-of-NNNNN``, the temporary folder deleted.
    Emits a ``WrittenShard`` per final file. Safe to retry: a file already renamed by an earlier attempt is not
    renamed again."""

    def __init__(
        self,
        output_dir: str,
        sites: tuple[str, ...],
        temp_dir: str,
        suffix: str,
        guard: Callable[[], None] | None = None,
    ):
        self._output_dir, self._sites = output_dir, sites
        self._temp_dir, self._suffix, self._guard = temp_dir, suffix, guard

    def process(self, _, written):
        """``written``: ``(site, temp_path, count, records)`` of every shard."""
        if self._guard is not None:  # before a shard takes its final name
            self._guard()
        by_site: dict[str, list[str]] = {site: [] for site in self._sites}
        counts: dict[str, set[int]] = {site: set() for site in self._sites}
        records: dict[str, int] = {}
        for site, path, count, n in written:
            by_site[site].append(path)
            counts[site].add(count)
            records[path] = n
        present = {m.path for m in match_below(self._temp_dir)}  # one listing, not a request per file
        sources, destinations, final = [], [], []
        for site in self._sites:
            temps = sorted(by_site[site])
            if counts[site] != {len(temps)}:
                raise RuntimeError(
                    f"site {site}: {len(temps)} written shards; the plan has "
                    f"{', '.join(map(str, sorted(counts[site]))) or 'none'}"
                )
            prefix = site_file_prefix(self._output_dir, site)
            names = [f"{prefix}-{i:05d}-of-{len(temps):05d}{self._suffix}" for i in range(len(temps))]
            folder = FileSystems.split(prefix)[0]
            if FileSystems.get_filesystem(folder).has_dirs() and not FileSystems.exists(folder):  # local disk
                try:
                    FileSystems.mkdirs(folder)
                except OSError:  # created meanwhile by another writer
                    if not FileSystems.exists(folder):
                        raise
            for temp, name in zip(temps, names):
                if temp in present:
                    sources.append(temp)
                    destinations.append(name)
                elif not FileSystems.exists(name):  # neither: a file was lost
                    raise OSError(f"site {site}: temporary shard {temp} is gone and {name} does not exist")
                # else: renamed by an earlier attempt of this step
                final.append((name, records[temp]))
        if sources:
            FileSystems.rename(sources, destinations)
        discard_folders([self._temp_dir])  # the shards are final: a leftover file is only clutter
        # The sizes the manifest lists are those of the final files (one listing), as a reader finds them.
        sizes = {_tail(m.path): m.size_in_bytes for m in match_below(self._output_dir, f"*/*{self._suffix}")}
        yield from (WrittenShard(name, n, sizes[_tail(name)]) for name, n in final)


def _tail(path: str) -> str:
    """``<site>/<file>``: a shard's name however its folder is spelled (``out/``, ``./out``)."""
    return "/".join(path.replace("\\", "/").split("/")[-2:])


class WriteSnappyTFRecordsBySite(beam.PTransform):
    """Write ``RecordSource``s to ``output_dir/<site>/part-SSSSS-of-NNNNN.tfrecord``; outputs a
    ``WrittenShard`` (final name, records, bytes) per file. ``sites`` lists every site that can
    occur. Shards are planned once every source is known, then each written by one task: no record
    passes through a shuffle."""

    def __init__(
        self,
        output_dir: str,
        sites: Iterable[str | bytes],
        num_shards: int = 0,
        file_name_suffix: str = FILE_NAME_SUFFIX,
        max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
        guard: Callable[[], None] | None = None,
    ):
        """``guard``: called before each shard is written and before they are renamed into place; it
        raises to stop a run that no longer holds ``output_dir`` (``core.run_lock.check_run_lock``)."""
        super().__init__()
        self._guard = guard
        names = tuple(site_name(site) for site in sites)
        if not names:
            raise ValueError("sites: expected at least one site; got none")
        if duplicates := sorted({name for name in names if names.count(name) > 1}):
            raise ValueError(f"sites: expected unique site names; got duplicates {duplicates}")
        self._num_shards = check_int("num_shards", num_shards, 0)  # 0: as many as max_shard_bytes needs
        self._max_shard_bytes = check_int("max_shard_bytes", max_shard_bytes, 1)
        self._output_dir, self._sites, self._file_name_suffix = output_dir, names, file_name_suffix

    def expand(self, sources: beam.PCollection) -> beam.PCollection:
        if not sources.is_bounded:
            raise ValueError(
                "WriteSnappyTFRecordsBySite: expected a bounded PCollection (batch pipeline); got an unbounded one"
            )
        temp_dir = FileSystems.join(self._output_dir, f"beam-temp-sites-{uuid.uuid4().hex}")
        suffix = self._file_name_suffix
        p = sources.pipeline
        written = (
            p
            | "Once" >> beam.Create([None])
            | "PlanShards"
            >> beam.FlatMap(_plan, beam.pvalue.AsList(sources), self._sites, self._num_shards, self._max_shard_bytes)
            | "Spread" >> beam.Reshuffle()  # shards to every worker
            | "WriteShards" >> beam.ParDo(_WriteShardFn(temp_dir, suffix, self._guard))
        )
        return (
            p
            | "OnceMore" >> beam.Create([None])
            | "Finalize"
            >> beam.ParDo(
                FinalizeBySiteFn(self._output_dir, self._sites, temp_dir, suffix, self._guard),
                beam.pvalue.AsList(written),
            )
        )
