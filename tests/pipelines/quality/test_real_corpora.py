"""Clean EEG from people is not called an artifact: every real corpus beside the project that
harmonizes, through the pipeline's own per-recording path and its default rules."""

from __future__ import annotations

import pytest

from eegfm.pipelines.datasets import discover
from eegfm.pipelines.job.process_io import PreprocessConfig
from eegfm.pipelines.quality.corpus_survey import survey_corpus

CORPORA = {
    "eegmat rest": "eegmat/Subject0*_1.edf",  # eyes closed, 10 adults
    "eegmat task": "eegmat/Subject1*_2.edf",  # mental arithmetic, 10 adults
    "eegmmi": "eegmmi/*.edf",  # eyes open, motor runs, another amplifier at 160 Hz
    "hms": "hms/train_eegs/*.parquet",  # an ICU recording at 200 Hz
}


@pytest.mark.parametrize("name", list(CORPORA))
def test_at_most_a_tenth_of_a_real_corpus_is_flagged_and_nothing_is_dropped(shared_data, name):
    files = sorted(str(p) for p in shared_data.glob(CORPORA[name]))
    assert files
    report = survey_corpus(discover(files, warn_sidecars=False)[0], PreprocessConfig(), name, None)
    assert report["windows"] >= 5 and report["dropped"] == {}
    assert report["artifact_rules"] <= 0.1, report
