"""The job's stages: the numeric DoFns run with one BLAS thread, and lift the limit after."""

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
