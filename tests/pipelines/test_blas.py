"""One BLAS thread in the pipeline's workers: the limit holds inside, and is lifted after."""

import numpy as np
import pytest

from eegfm.pipelines.blas import single_threaded_blas
from eegfm.pipelines.deid import create_key
from eegfm.pipelines.preprocess import ProcessRecordingFn, ScoreSpillFn
from eegfm.pipelines.process import PreprocessConfig
from eegfm.pipelines.quality import QualityConfig

threadpoolctl = pytest.importorskip("threadpoolctl")


def _blas_threads() -> set[int]:
    np.dot(np.ones((64, 64)), np.ones((64, 64)))  # numpy's BLAS is loaded
    found = {info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"}
    assert found, "no BLAS library loaded"
    return found


def test_single_threaded_blas_limits_and_restores():
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):  # a threaded start on any machine
        assert _blas_threads() == {2}
        with single_threaded_blas():
            assert _blas_threads() == {1}
        assert _blas_threads() == {2}


@pytest.mark.parametrize("make", [
    lambda key: ProcessRecordingFn(key, PreprocessConfig(), "unused-spill-dir"),
    lambda key: ScoreSpillFn(QualityConfig()),
], ids=["process", "score"])
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
