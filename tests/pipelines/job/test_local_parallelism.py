import os

import pytest

from eegfm.core.machine import Cpus
from eegfm.pipelines.job.local_parallelism import (
    MULTI_PROCESS_MIN_BYTES,
    choose_parallelism,
    input_bytes,
)


def test_a_large_input_runs_a_process_per_core_and_a_small_one_in_memory():
    large = choose_parallelism(MULTI_PROCESS_MIN_BYTES, cores=16)
    assert (large.running_mode, large.num_workers) == ("multi_processing", 16)
    assert "16 cores" in large.reason
    small = choose_parallelism(MULTI_PROCESS_MIN_BYTES - 1, cores=16)
    assert (small.running_mode, small.num_workers) == ("in_memory", 1)
    assert "costs more than it saves" in small.reason


def test_one_core_or_an_object_store_input():
    assert choose_parallelism(10 * MULTI_PROCESS_MIN_BYTES, cores=1).running_mode == "in_memory"
    remote = choose_parallelism(None, cores=4)
    assert (remote.running_mode, remote.num_workers) == ("multi_processing", 4)
    assert "object store" in remote.reason


def test_input_bytes_sums_real_recordings_and_passes_over_unreadable_ones(shared_data, tmp_path):
    edfs = sorted((shared_data / "eegmat").glob("*.edf"))[:3]
    paths = [str(p) for p in edfs] + [str(tmp_path / "gone.edf")]
    assert input_bytes(paths) == sum(p.stat().st_size for p in edfs)
    assert input_bytes([*paths, "gs://bucket/a.edf"]) is None


@pytest.mark.parametrize("given", [["--direct_running_mode", "in_memory"], ["--direct_num_workers=1"]])
def test_the_command_line_choice_is_kept(given):
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions

    from eegfm.pipelines.job.launcher import _use_the_cores

    options = PipelineOptions(given)
    before = options.view_as(DirectOptions).get_all_options()
    _use_the_cores(options, given, ["gs://bucket/a.edf"])
    assert options.view_as(DirectOptions).get_all_options() == before


def test_a_run_without_runner_flags_says_what_it_chose(shared_data, key_file, tmp_path, caplog):
    from eegfm.pipelines.job.preprocess import run

    inputs = [str(shared_data / "eegmat" / name) for name in ("Subject00_1.edf", "Subject00_2.edf")]
    with caplog.at_level("INFO", logger="eegfm.preprocess"):
        manifest = run(["--input", *inputs, "--output", str(tmp_path / "out"), "--pseudonym_key_file", key_file])
    assert manifest["counts"]["processed"] == 2
    size_mb = sum(os.path.getsize(path) for path in inputs) / 2**20
    chosen = [r.getMessage() for r in caplog.records if r.getMessage().startswith("local runner:")]
    cores = Cpus.here().usable
    reason = "1 core"
    if cores > 1:
        reason = f"{cores} cores, {size_mb:.0f} MB of input: under 200 MB, "
        reason += "starting worker processes costs more than it saves"
    assert chosen == [
        f"local runner: in_memory, 1 worker ({reason}); --direct_running_mode and --direct_num_workers choose otherwise"
    ]
