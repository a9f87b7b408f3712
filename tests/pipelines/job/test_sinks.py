"""Beam sinks: real pipelines write shards that TensorFlow reads back as the input multiset."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from eegfm.contract.schema import encode_example
from eegfm.pipelines.job.launcher import local_runner
from eegfm.pipelines.job.sinks import (
    FinalizeBySiteFn,
    WriteSnappyTFRecordsBySite,
    WrittenShard,
    open_shard,
    plan_shards,
    site_file_prefix,
    temp_shard_path,
)
from tests.contract.test_schema import make_record

tf = pytest.importorskip("tensorflow")

REPO_ROOT = Path(__file__).resolve().parents[3]
IN_MEMORY = ["--runner=DirectRunner", "--direct_running_mode=in_memory"]
RECORDS = [make_record(seed, n_times=256) for seed in range(60)]  # sites site0, site1, site2
EXAMPLES = [encode_example(r) for r in RECORDS]


@dataclasses.dataclass
class InMemorySource:
    """A ``RecordSource`` holding its records."""

    site: str
    order: Any
    data: list[bytes]

    @property
    def sizes(self) -> np.ndarray:
        return np.array([len(r) for r in self.data], dtype=np.int64)

    def records(self, first: int, last: int) -> list[bytes]:
        return self.data[first:last]


@pytest.fixture(autouse=True)
def _beam_scratch_in_tmp_path(tmp_path, monkeypatch):
    # A pipeline built and never run keeps the scratch folder Beam made for it.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def _read_shards(pattern: str) -> list[bytes]:
    files = tf.io.gfile.glob(pattern)
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="SNAPPY")]


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith("beam-temp")]


def _pipeline(args: list[str]) -> beam.Pipeline:
    """A local pipeline on the job's own runner (``local_runner``): Beam's default DirectRunner
    would first try to download its Prism runner."""
    options = PipelineOptions(args)
    return beam.Pipeline(runner=local_runner(options), options=options)


def _sources(chunk: int = 4) -> list[InMemorySource]:
    """The records of each site in sources of ``chunk`` records, ordered by their first record."""
    sources = []
    for site in ("site0", "site1", "site2"):
        records = [b for r, b in zip(RECORDS, EXAMPLES) if r.site_id == site.encode()]
        sources += [InMemorySource(site, k, records[k : k + chunk]) for k in range(0, len(records), chunk)]
    return sources


def _by_site(options: list[str], output: Path, sites: list[str], num_shards: int = 0, **kwargs) -> None:
    with _pipeline(options) as p:
        _ = p | beam.Create(_sources()) | WriteSnappyTFRecordsBySite(str(output), sites, num_shards, **kwargs)


def _site_records(site: str) -> list[bytes]:
    return [b for r, b in zip(RECORDS, EXAMPLES) if r.site_id == site.encode()]


def _assert_site_layout(output: Path, sites: list[str], num_shards: int) -> None:
    assert sorted(p.name for p in output.iterdir()) == sorted(sites)
    for site in sites:
        shards = sorted(p.name for p in (output / site).iterdir())
        assert shards == [f"part-{i:05d}-of-{num_shards:05d}.tfrecord" for i in range(num_shards)]
        # The shards, in order, hold the site's records in the sources' order.
        written = [r for name in shards for r in _read_shards(str(output / site / name))]
        assert written == _site_records(site), site
    assert not _leftovers(output)


def test_by_site_write_partitions_into_site_folders(tmp_path):
    sites = ["site0", "site1", "site2", "site-without-windows"]
    _by_site(IN_MEMORY, tmp_path, sites, num_shards=2)
    _assert_site_layout(tmp_path, sites, num_shards=2)
    assert (tmp_path / "site-without-windows" / "part-00000-of-00002.tfrecord").stat().st_size == 0


def test_without_a_shard_count_a_site_is_one_shard_up_to_the_size_cap(tmp_path):
    sites = ["site0", "site1", "site2", "site-without-windows"]
    _by_site(IN_MEMORY, tmp_path, sites)
    _assert_site_layout(tmp_path, sites, num_shards=1)
    assert (tmp_path / "site-without-windows" / "part-00000-of-00001.tfrecord").stat().st_size == 0


def test_the_size_cap_gives_as_few_shards_as_it_allows_cut_across_sources(tmp_path):
    # A local run is one bundle: without the cap every site would be one file, however large.
    size = len(EXAMPLES[0])
    assert all(len(e) == size for e in EXAMPLES)
    _by_site(IN_MEMORY, tmp_path, ["site0", "site1", "site2"], max_shard_bytes=3 * size - 1)
    for site in ("site0", "site1", "site2"):
        expected = _site_records(site)
        n_files = -(-len(expected) * size // (3 * size - 1))
        names = sorted(p.name for p in (tmp_path / site).iterdir())
        assert names == [f"part-{i:05d}-of-{n_files:05d}.tfrecord" for i in range(n_files)]
        shards = [_read_shards(str(tmp_path / site / name)) for name in names]
        # Equal shards (sources of 4 records are cut), each at most one record over the cap, in order.
        assert max(len(shard) for shard in shards) - min(len(shard) for shard in shards) <= 1
        assert all((len(shard) - 1) * size <= 3 * size - 1 for shard in shards)
        assert [record for shard in shards for record in shard] == expected
    assert not _leftovers(tmp_path)


def test_the_plan_depends_on_the_sources_only_not_on_their_arrival():
    sources = _sources(chunk=3)
    first = plan_shards(sources, ("site0", "site1", "site2", "empty"), max_shard_bytes=4 * len(EXAMPLES[0]))
    again = plan_shards(sources[::-1], ("site0", "site1", "site2", "empty"), max_shard_bytes=4 * len(EXAMPLES[0]))
    assert [(t.site, t.index, t.count, list(t.records())) for t in first] == [
        (t.site, t.index, t.count, list(t.records())) for t in again
    ]
    assert [(t.site, t.index, t.count) for t in first if t.site == "empty"] == [("empty", 0, 1)]
    assert [r for t in first if t.site == "site1" for r in t.records()] == _site_records("site1")
    # More shards than records: the extra ones are empty, never missing.
    tiny = plan_shards([InMemorySource("a", 0, EXAMPLES[:2])], ("a",), num_shards=3)
    assert [len(list(t.records())) for t in tiny] == [1, 1, 0]


def test_sources_with_the_same_order_are_refused():
    twins = [InMemorySource("a", 7, EXAMPLES[:1]), InMemorySource("a", 7, EXAMPLES[1:2])]
    with pytest.raises(ValueError, match=r"site a: two record sources share the order 7"):
        plan_shards(twins, ("a",))


@pytest.mark.parametrize("num_shards", [0, 2])
def test_the_job_graph_does_not_grow_with_the_sites(num_shards):
    # One sink per site cost about 0.2 s of graph building, translation and stages per site.
    def transforms(n_sites: int) -> int:
        p = beam.Pipeline(options=PipelineOptions(IN_MEMORY))
        _ = (
            p
            | beam.Create([InMemorySource("s0", 0, EXAMPLES[:1])])
            | WriteSnappyTFRecordsBySite("out", [f"s{i}" for i in range(n_sites)], num_shards)
        )
        return len(p.to_runner_api().components.transforms)

    assert transforms(3) == transforms(300)


def _write_temp(temp_dir: str, site: str, index: int, records: list[bytes]) -> str:
    path = temp_shard_path(temp_dir, site, index)
    writer = open_shard(path)
    for record in records:
        writer.write(record)
    writer.close()
    return path


def test_finalizing_twice_renames_once_and_gives_the_same_names(tmp_path):
    # A retried finalize (its worker lost after the renames) must neither fail nor lose shards.
    from apache_beam.io.filesystems import FileSystems

    temp_dir = str(tmp_path / "beam-temp-sites-x")
    written = [
        ("a", _write_temp(temp_dir, "a", 1, EXAMPLES[3:5]), 2, 2),
        ("a", _write_temp(temp_dir, "a", 0, EXAMPLES[:3]), 2, 3),
        ("b", _write_temp(temp_dir, "b", 0, EXAMPLES[5:6]), 1, 1),
    ]
    finalize = FinalizeBySiteFn(str(tmp_path), ("a", "b"), temp_dir, ".tfrecord")
    first = list(finalize.process(None, written))
    names = [
        str(tmp_path / "a" / "part-00000-of-00002.tfrecord"),
        str(tmp_path / "a" / "part-00001-of-00002.tfrecord"),
        str(tmp_path / "b" / "part-00000-of-00001.tfrecord"),
    ]
    # Each final file with its records and its size on disk, as the manifest lists them.
    assert first == [WrittenShard(name, n, Path(name).stat().st_size) for name, n in zip(names, (3, 2, 1))]
    assert all(shard.bytes > 0 for shard in first)
    assert not FileSystems.exists(temp_dir)
    assert list(finalize.process(None, written)) == first  # a retry finds the renamed files and their sizes
    assert _read_shards(str(tmp_path / "a" / "part-00000-of-00002.tfrecord")) == EXAMPLES[:3]
    assert _read_shards(str(tmp_path / "a" / "part-00001-of-00002.tfrecord")) == EXAMPLES[3:5]
    assert _read_shards(str(tmp_path / "b" / "*.tfrecord")) == EXAMPLES[5:6]


@pytest.mark.slow  # starts two SDK worker processes: about 10 s
def test_by_site_write_with_worker_processes(tmp_path):
    options = ["--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    _by_site(options, tmp_path, ["site0", "site1", "site2"], num_shards=2)
    _assert_site_layout(tmp_path, ["site0", "site1", "site2"], num_shards=2)


def test_undeclared_site_fails_the_pipeline_instead_of_dropping_data(tmp_path):
    with pytest.raises(Exception, match=r"site '?site2'? is not one of the 2 sites declared"):
        _by_site(IN_MEMORY, tmp_path, ["site0", "site1"])
    assert not list(tmp_path.rglob("part-*-of-*.tfrecord"))


@pytest.mark.parametrize(
    "sites, message",
    [
        ([], "sites: expected at least one site"),
        (["a", "a"], "unique site names; got duplicates ['a']"),
        (["../up"], "site: expected a name matching"),
        (["a/b"], "site: expected a name matching"),
        (["a"], "num_shards: expected an integer >= 0"),
        (["a"], "max_shard_bytes: expected an integer >= 1; got 0"),
    ],
)
def test_site_list_is_validated_at_construction(sites, message):
    with pytest.raises(ValueError) as err:
        WriteSnappyTFRecordsBySite(
            "out",
            sites,
            num_shards=-1 if "num_shards" in message else 0,
            max_shard_bytes=0 if "max_shard_bytes" in message else 1,
        )
    assert message in str(err.value)


def test_site_paths_use_beam_filesystems():
    assert site_file_prefix("gs://bucket/out", b"site0") == "gs://bucket/out/site0/part"


def test_dataflow_graph_builds_offline():
    options = PipelineOptions(
        [
            "--runner=DataflowRunner",
            "--dry_run=True",
            "--project=eegfm-test",
            "--region=us-central1",
            "--temp_location=gs://eegfm-test/tmp",
        ]
    )
    p = beam.Pipeline(options=options)
    _ = (
        p
        | beam.Create([InMemorySource("site0", 0, EXAMPLES[:1])])
        | WriteSnappyTFRecordsBySite("gs://eegfm-test/out", ["site0", "site1"])
    )
    p.run()


def test_finalizing_removes_what_failed_tasks_left(tmp_path):
    # A task that failed after creating its temporary file never reports it; it must not
    # survive the run (nor become a shard).
    temp_dir = str(tmp_path / "beam-temp-sites-y")
    done = _write_temp(temp_dir, "a", 0, EXAMPLES[:1])
    orphan = open_shard(temp_dir + "/a.orphan.tfrecord")
    orphan.write(EXAMPLES[1])
    orphan.close()
    shards = list(FinalizeBySiteFn(str(tmp_path), ("a",), temp_dir, ".tfrecord").process(None, [("a", done, 1, 1)]))
    assert [shard.path for shard in shards] == [str(tmp_path / "a" / "part-00000-of-00001.tfrecord")]
    assert _read_shards(shards[0].path) == EXAMPLES[:1]
    assert not _leftovers(tmp_path)


def test_finalizing_fails_loudly_when_a_shard_is_lost_or_missing(tmp_path):
    finalize = FinalizeBySiteFn(str(tmp_path), ("a",), str(tmp_path / "beam-temp-sites-z"), ".tfrecord")
    lost = str(tmp_path / "beam-temp-sites-z" / "a.00000.tfrecord")
    with pytest.raises(
        OSError, match=r"site a: temporary shard .*a\.00000\.tfrecord is gone and .*part-00000-of-00001"
    ):
        list(finalize.process(None, [("a", lost, 1, 1)]))
    with pytest.raises(RuntimeError, match=r"site a: 1 written shards; the plan has 2"):
        list(finalize.process(None, [("a", lost, 2, 1)]))


def test_streaming_input_is_refused_when_the_graph_is_built(tmp_path):
    p = beam.Pipeline(options=PipelineOptions(IN_MEMORY))
    pairs = p | beam.Create([("site0", EXAMPLES[0])])
    pairs.is_bounded = False  # as a streaming source's output is
    with pytest.raises(ValueError, match=r"expected a bounded PCollection \(batch pipeline\); got an unbounded one"):
        _ = pairs | WriteSnappyTFRecordsBySite(str(tmp_path), ["site0"])
