"""The job's stages: the numeric DoFns run with one BLAS thread, and lift the limit after; their
workers keep freed memory for the next recording and exit without the last garbage collection."""

import platform

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
