"""Beam sinks: real pipelines write shards that TensorFlow reads back as the input multiset."""

from __future__ import annotations

import collections
import os
import tempfile
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from pipelines.preprocess import local_runner
from pipelines.schema import decode_example, encode_example
from pipelines.sinks import (
    WriteSnappyTFRecordsBySite,
    WriteToSnappyTFRecord,
    site_file_pattern,
    site_file_prefix,
)
from tests.pipelines.test_schema import make_record

tf = pytest.importorskip("tensorflow")

REPO_ROOT = Path(__file__).resolve().parents[2]
IN_MEMORY = ["--runner=DirectRunner", "--direct_running_mode=in_memory"]
RECORDS = [make_record(seed, n_times=256) for seed in range(60)]  # sites site0, site1, site2
EXAMPLES = [encode_example(r) for r in RECORDS]


@pytest.fixture(autouse=True)
def _beam_scratch_in_tmp_path(tmp_path, monkeypatch):
    # A pipeline built and never run keeps the scratch folder Beam made for it.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def _read_shards(pattern: str) -> list[bytes]:
    files = tf.io.gfile.glob(pattern)
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="SNAPPY")]


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith("beam-temp")]


def test_write_to_snappy_tfrecord_shards_round_trip(tmp_path):
    prefix = str(tmp_path / "windows")
    with _pipeline(IN_MEMORY) as p:
        names = p | beam.Create(EXAMPLES) | WriteToSnappyTFRecord(prefix, num_shards=3)
        expected = [str(tmp_path / f"windows-{i:05d}-of-00003.tfrecord") for i in range(3)]
        assert_that(names, equal_to(expected))
    assert sorted(p.name for p in tmp_path.iterdir()) == [Path(f).name for f in expected]
    written = _read_shards(f"{prefix}-*-of-*.tfrecord")
    assert collections.Counter(written) == collections.Counter(EXAMPLES)
    decoded = sorted((decode_example(b) for b in written), key=lambda r: r.window_start_s)
    assert decoded == RECORDS


def _pipeline(args: list[str]) -> beam.Pipeline:
    """A local pipeline on the job's own runner (``local_runner``): Beam's default DirectRunner
    would first try to download its Prism runner."""
    options = PipelineOptions(args)
    return beam.Pipeline(runner=local_runner(options), options=options)


def _by_site(options: list[str], output: Path, sites: list[str], num_shards: int = 0) -> None:
    pairs = [(r.site_id, b) for r, b in zip(RECORDS, EXAMPLES)]
    with _pipeline(options) as p:
        _ = p | beam.Create(pairs) | WriteSnappyTFRecordsBySite(str(output), sites, num_shards)


def _assert_site_layout(output: Path, sites: list[str], num_shards: int) -> None:
    assert sorted(p.name for p in output.iterdir()) == sorted(sites)
    for site in sites:
        shards = sorted(p.name for p in (output / site).iterdir())
        assert shards == [f"part-{i:05d}-of-{num_shards:05d}.tfrecord" for i in range(num_shards)]
        expected = [b for r, b in zip(RECORDS, EXAMPLES) if r.site_id == site.encode()]
        written = _read_shards(site_file_pattern(str(output), site))
        assert collections.Counter(written) == collections.Counter(expected), site
    assert not _leftovers(output)


def test_by_site_write_partitions_into_site_folders(tmp_path):
    sites = ["site0", "site1", "site2", "site-without-windows"]
    _by_site(IN_MEMORY, tmp_path, sites, num_shards=2)
    _assert_site_layout(tmp_path, sites, num_shards=2)
    assert (tmp_path / "site-without-windows" / "part-00000-of-00002.tfrecord").stat().st_size == 0


def test_by_site_write_without_a_shard_count_writes_each_bundles_records_unshuffled(tmp_path):
    sites = ["site0", "site1", "site2", "site-without-windows"]
    _by_site(IN_MEMORY, tmp_path, sites)
    for site in sites[:3]:
        shards = sorted(p.name for p in (tmp_path / site).iterdir())
        assert shards and shards == [f"part-{i:05d}-of-{len(shards):05d}.tfrecord" for i in range(len(shards))]
        expected = [b for r, b in zip(RECORDS, EXAMPLES) if r.site_id == site.encode()]
        assert collections.Counter(_read_shards(site_file_pattern(str(tmp_path), site))) == collections.Counter(expected)
    assert [p.name for p in (tmp_path / "site-without-windows").iterdir()] == ["part-00000-of-00001.tfrecord"]
    assert (tmp_path / "site-without-windows" / "part-00000-of-00001.tfrecord").stat().st_size == 0
    assert not _leftovers(tmp_path)


def test_a_bundle_starts_a_new_shard_when_one_reaches_the_size_cap(tmp_path):
    # One local bundle holds a whole site: without the cap every site would be one file.
    size = len(EXAMPLES[0])
    assert all(len(e) == size for e in EXAMPLES)
    pairs = [(r.site_id, b) for r, b in zip(RECORDS, EXAMPLES)]
    with _pipeline(IN_MEMORY) as p:
        _ = (p | beam.Create(pairs, reshuffle=False)
             | WriteSnappyTFRecordsBySite(str(tmp_path), ["site0", "site1", "site2"], max_shard_bytes=3 * size - 1))
    for site in ("site0", "site1", "site2"):
        expected = [b for r, b in zip(RECORDS, EXAMPLES) if r.site_id == site.encode()]
        n_files = -(-len(expected) // 3)
        names = sorted(p.name for p in (tmp_path / site).iterdir())
        assert names == [f"part-{i:05d}-of-{n_files:05d}.tfrecord" for i in range(n_files)]
        shards = [_read_shards(str(tmp_path / site / name)) for name in names]
        # Full shards of 3 records (the one that reaches the cap closes it), the rest in the
        # last, and the shards in order hold the records in the order they were written.
        assert [len(shard) for shard in shards] == [3] * (len(expected) // 3) + ([len(expected) % 3] if len(expected) % 3 else [])
        assert [record for shard in shards for record in shard] == expected
    assert not _leftovers(tmp_path)


@pytest.mark.parametrize("num_shards", [0, 2])
def test_the_job_graph_does_not_grow_with_the_sites(num_shards):
    # One sink per site cost about 0.2 s of graph building, translation and stages per site.
    def transforms(n_sites: int) -> int:
        p = beam.Pipeline(options=PipelineOptions(IN_MEMORY))
        _ = (p | beam.Create([("s0", EXAMPLES[0])])
             | WriteSnappyTFRecordsBySite("out", [f"s{i}" for i in range(n_sites)], num_shards))
        return len(p.to_runner_api().components.transforms)

    assert transforms(3) == transforms(300)


def test_finalizing_twice_renames_once_and_gives_the_same_names(tmp_path):
    # A retried finalize (its worker lost after the renames) must neither fail nor lose shards.
    from apache_beam.io.filesystems import FileSystems

    from pipelines.sinks import SnappyTFRecordSink, _create_temp, _FinalizeBySiteFn

    temp_dir = str(tmp_path / "beam-temp-sites-x")
    sink = SnappyTFRecordSink(temp_dir + "/part")
    written = []
    for site, records in (("a", EXAMPLES[:3]), ("a", EXAMPLES[3:5]), ("b", EXAMPLES[5:6])):
        path, writer = _create_temp(sink, temp_dir, site, ".tfrecord")
        for record in records:
            writer.write(record)
        writer.close()
        written.append((site, path))
    finalize = _FinalizeBySiteFn(str(tmp_path), ("a", "b", "c"), 0, temp_dir, ".tfrecord")
    first = list(finalize.process(None, written))
    assert first == [str(tmp_path / "a" / "part-00000-of-00002.tfrecord"),
                     str(tmp_path / "a" / "part-00001-of-00002.tfrecord"),
                     str(tmp_path / "b" / "part-00000-of-00001.tfrecord"),
                     str(tmp_path / "c" / "part-00000-of-00001.tfrecord")]
    assert not FileSystems.exists(temp_dir)
    assert list(finalize.process(None, written)) == first
    assert collections.Counter(_read_shards(str(tmp_path / "a" / "*.tfrecord"))) == collections.Counter(EXAMPLES[:5])
    assert _read_shards(str(tmp_path / "b" / "*.tfrecord")) == EXAMPLES[5:6]
    assert (tmp_path / "c" / "part-00000-of-00001.tfrecord").stat().st_size == 0


@pytest.mark.slow  # starts two SDK worker processes: about 10 s
def test_by_site_write_with_worker_processes(tmp_path, monkeypatch):
    # Workers import pipelines.* by name; until the package is pip-installed, point them at it.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p))
    options = ["--runner=DirectRunner", "--direct_running_mode=multi_processing",
               "--direct_num_workers=2"]
    _by_site(options, tmp_path, ["site0", "site1", "site2"], num_shards=2)
    _assert_site_layout(tmp_path, ["site0", "site1", "site2"], num_shards=2)


def test_undeclared_site_fails_the_pipeline_instead_of_dropping_data(tmp_path):
    with pytest.raises(Exception, match=r"site b?'site2' is not one of the 2 sites declared"):
        _by_site(IN_MEMORY, tmp_path, ["site0", "site1"])
    assert not list(tmp_path.rglob("part-*-of-*.tfrecord"))


@pytest.mark.parametrize("sites, message", [
    ([], "sites: expected at least one site"),
    (["a", "a"], "unique site names; got duplicates ['a']"),
    (["../up"], "site: expected a name matching"),
    (["a/b"], "site: expected a name matching"),
    (["a"], "num_shards: expected an integer >= 0"),
    (["a"], "max_shard_bytes: expected an integer >= 1; got 0"),
])
def test_site_list_is_validated_at_construction(sites, message):
    with pytest.raises(ValueError) as err:
        WriteSnappyTFRecordsBySite("out", sites, num_shards=-1 if "num_shards" in message else 0,
                                   max_shard_bytes=0 if "max_shard_bytes" in message else 1)
    assert message in str(err.value)


def test_site_paths_use_beam_filesystems():
    assert site_file_prefix("gs://bucket/out", b"site0") == "gs://bucket/out/site0/part"
    assert site_file_pattern("gs://bucket/out", "s") == "gs://bucket/out/s/part-*-of-*.tfrecord"


def test_dataflow_graph_builds_offline():
    options = PipelineOptions([
        "--runner=DataflowRunner", "--dry_run=True", "--project=eegfm-test",
        "--region=us-central1", "--temp_location=gs://eegfm-test/tmp",
    ])
    p = beam.Pipeline(options=options)
    _ = (p | beam.Create([("site0", EXAMPLES[0])])
         | WriteSnappyTFRecordsBySite("gs://eegfm-test/out", ["site0", "site1"]))
    p.run()


def test_finalizing_removes_what_failed_bundles_left(tmp_path):
    # A bundle that failed after creating its temporary file never reports it; it must not
    # survive the run (nor become a shard).
    from pipelines.sinks import SnappyTFRecordSink, _create_temp, _FinalizeBySiteFn

    temp_dir = str(tmp_path / "beam-temp-sites-y")
    sink = SnappyTFRecordSink(temp_dir + "/part")
    done, writer = _create_temp(sink, temp_dir, "a", ".tfrecord")
    writer.write(EXAMPLES[0])
    writer.close()
    _, orphan = _create_temp(sink, temp_dir, "a", ".tfrecord")
    orphan.write(EXAMPLES[1])
    orphan.close()
    names = list(_FinalizeBySiteFn(str(tmp_path), ("a",), 0, temp_dir, ".tfrecord").process(None, [("a", done)]))
    assert names == [str(tmp_path / "a" / "part-00000-of-00001.tfrecord")]
    assert _read_shards(names[0]) == EXAMPLES[:1]
    assert not _leftovers(tmp_path)


def test_finalizing_fails_loudly_when_a_written_shard_is_lost(tmp_path):
    from pipelines.sinks import _FinalizeBySiteFn

    finalize = _FinalizeBySiteFn(str(tmp_path), ("a",), 0, str(tmp_path / "beam-temp-sites-z"), ".tfrecord")
    lost = str(tmp_path / "beam-temp-sites-z" / "a.0123.tfrecord")
    with pytest.raises(OSError, match=r"site a: temporary shard .*a\.0123\.tfrecord is gone and .*part-00000-of-00001"):
        list(finalize.process(None, [("a", lost)]))


@pytest.mark.parametrize("transform", [
    lambda out: WriteToSnappyTFRecord(out + "/w"),
    lambda out: WriteSnappyTFRecordsBySite(out, ["site0"]),
])
def test_streaming_input_is_refused_when_the_graph_is_built(tmp_path, transform):
    p = beam.Pipeline(options=PipelineOptions(IN_MEMORY))
    pairs = p | beam.Create([("site0", EXAMPLES[0])])
    pairs.is_bounded = False  # as a streaming source's output is
    with pytest.raises(ValueError, match=r"expected a bounded PCollection \(batch pipeline\); got an unbounded one"):
        _ = pairs | transform(str(tmp_path))
