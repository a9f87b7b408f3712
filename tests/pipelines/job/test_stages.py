"""The job's stages: the numeric DoFns run with one BLAS thread, and lift the limit after; their
workers keep freed memory for the next recording, exit without the last garbage collection, and
end where a thread of theirs dies of a memory limit."""

import platform
import re
import subprocess
import sys

import numpy as np
import pytest

from eegfm.pipelines.job.process import PreprocessConfig
from eegfm.pipelines.job.stages import ProcessRecordingFn, ScoreSpillFn
from eegfm.pipelines.privacy.deid import create_key
from eegfm.pipelines.quality import QualityConfig
from tests.core.test_allocator import faults_per_step
from tests.core.test_final_collection import exit_of

threadpoolctl = pytest.importorskip("threadpoolctl")


def _blas_threads() -> set[int]:
    np.dot(np.ones((64, 64)), np.ones((64, 64)))  # numpy's BLAS is loaded
    found = {info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"}
    assert found, "no BLAS library loaded"
    return found


@pytest.mark.parametrize(
    "make",
    [
        lambda key: ProcessRecordingFn(key, PreprocessConfig(), "unused-spill-dir"),
        lambda key: ScoreSpillFn(QualityConfig()),
    ],
    ids=["process", "score"],
)
def test_the_numeric_dofns_run_with_one_blas_thread(make, tmp_path):
    key_file = str(tmp_path / "pseudonym.key")
    create_key(key_file)  # ProcessRecordingFn's setup loads it
    fn = make(key_file)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        fn.setup()
        try:
            assert _blas_threads() == {1}
        finally:
            fn.teardown()
        assert _blas_threads() == {2}


# A Beam worker's first act with a numeric DoFn.
DOFN_SETUP = (
    "from eegfm.pipelines.job.stages import ScoreSpillFn; from eegfm.pipelines.quality import QualityConfig; "
    "ScoreSpillFn(QualityConfig()).setup()"
)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_a_numeric_dofns_worker_keeps_freed_memory_for_the_next_recording():
    """core/allocator.py: without the DoFn's setup glibc gives 40 MB back after each recording and
    the kernel faults it in again for the next; a worker that set the DoFn up keeps it."""
    kept, glibc = faults_per_step(DOFN_SETUP), faults_per_step("")
    assert kept < 100 < 500 < glibc, (kept, glibc)


def test_a_numeric_dofns_worker_exits_without_the_last_collection():
    """core/final_collection.py: a Beam worker that set the DoFn up skips the interpreter's last
    garbage collection at exit (Beam waits for each worker to exit, one after another); one that
    did not collects the cycles left."""
    (kept, folder), (collected, _) = exit_of(DOFN_SETUP), exit_of("")
    assert "collected" not in kept and not folder.exists() and collected.count("collected") == 3


# A two-worker job whose worker, set up as the numeric DoFns set theirs up, loses a thread to a
# memory limit while its bundle waits for that thread: a MemoryError stands in for a reader's
# allocation under ulimit -v (tests/core/test_process_tree.py meets a real limit).
_WORKER_LOSES_A_THREAD = """
import threading
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from eegfm.pipelines.job.local_job import BeamJobFailed, run_in_session

class LosesAThread(beam.DoFn):
    def setup(self):
        from eegfm.pipelines.job.stages import ScoreSpillFn
        from eegfm.pipelines.quality import QualityConfig
        ScoreSpillFn(QualityConfig()).setup()

    def process(self, item):
        def read():
            raise MemoryError("a reader's allocation")
        threading.Thread(target=read, name="read_inputs").start()
        threading.Event().wait(600)  # what the reader would have read never comes
        yield item

def job():
    options = ["--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    with beam.Pipeline(options=PipelineOptions(options)) as pipeline:
        pipeline | beam.Create([1, 2]) | beam.ParDo(LosesAThread())

try:
    run_in_session(job)
except BeamJobFailed as err:
    print(err)
"""


def test_a_worker_whose_thread_dies_of_a_memory_limit_ends_the_run_with_one_line():
    done = subprocess.run([sys.executable, "-c", _WORKER_LOSES_A_THREAD], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    said = done.stdout.strip()
    assert re.fullmatch(
        r"the Beam job stopped: a thread of worker process \d+ \(read_inputs\) failed: MemoryError: a reader's "
        r"allocation \(a memory or thread limit, ulimit -v or -u, too low for this many worker processes\?\)",
        said,
    ), said
    assert said.split("stopped: ")[1] in done.stderr  # the worker said it too, as it ended
