"""The job's stages: the numeric DoFns run with one BLAS thread, and lift the limit after; their
workers keep freed memory for the next recording and exit without the last garbage collection."""

import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eegfm.pipelines.job.process import PreprocessConfig
from eegfm.pipelines.job.stages import ProcessRecordingFn, ScoreSpillFn
from eegfm.pipelines.privacy.deid import create_key
from eegfm.pipelines.quality import QualityConfig

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


# A recording's worth of arrays allocated and freed ten times after the DoFn's setup: the minor page
# faults per recording, as the kernel counts them for the worker.
_RECORDINGS = """
import resource, sys, numpy as np
from eegfm.pipelines.job.stages import ScoreSpillFn
from eegfm.pipelines.quality import QualityConfig
if sys.argv[1] == "setup":
    ScoreSpillFn(QualityConfig()).setup()
def recording():
    a = np.ones((20 << 20) // 8); b = a * 2.0; return float(b[-1])
for _ in range(2): recording()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10): recording()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_a_numeric_dofns_worker_keeps_freed_memory_for_the_next_recording():
    """core/allocator.py: without the DoFn's setup glibc gives 40 MB back after each recording and
    the kernel faults it in again for the next; a worker that set the DoFn up keeps it."""
    src = Path(__file__).resolve().parents[3] / "src"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES", "EEGFM_MALLOC"))}

    def faults(mode: str) -> float:
        done = subprocess.run(
            [sys.executable, "-c", _RECORDINGS, mode], env={**env, "PYTHONPATH": str(src)},
            capture_output=True, text=True, check=True, timeout=120,
        )  # fmt: skip
        return float(done.stdout.split()[-1])

    kept, glibc = faults("setup"), faults("none")
    assert kept < 100 < 500 < glibc, (kept, glibc)


_EXIT = """
import os, sys
from eegfm.pipelines.job.stages import ScoreSpillFn
from eegfm.pipelines.quality import QualityConfig
if sys.argv[1] == "setup":
    ScoreSpillFn(QualityConfig()).setup()
class Cycle:
    def __init__(self): self.me = self
    def __del__(self): os.write(1, b"collected ")
keep = [Cycle() for _ in range(3)]
del keep
"""


def test_a_numeric_dofns_worker_exits_without_the_last_collection():
    """core/final_collection.py: a Beam worker that set the DoFn up skips the interpreter's last
    garbage collection at exit (Beam waits for each worker to exit, one after another); one that
    did not collects the cycles left."""
    src = Path(__file__).resolve().parents[3] / "src"

    def exits(mode: str) -> str:
        return subprocess.run(
            [sys.executable, "-c", _EXIT, mode], env={**os.environ, "PYTHONPATH": str(src)},
            capture_output=True, text=True, check=True, timeout=120,
        ).stdout  # fmt: skip

    assert "collected" not in exits("setup") and exits("none").count("collected") == 3
