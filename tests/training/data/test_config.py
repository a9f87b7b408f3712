"""training.data.config: LoaderConfig and RecordFilter."""

from __future__ import annotations

from collections import Counter

import pytest

from eegfm.core.config import ConfigError
from eegfm.training.data import LoaderConfig, RecordFilter
from tests.training.data.conftest import _epoch, _keys, _record_keys


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": None}, "batch_size, LoaderConfig.token_budget: expected exactly one"),
        ({"num_workers": -1}, "LoaderConfig.num_workers: expected an integer >= 0 or 'auto'; got -1"),
        ({"num_workers": "all"}, "LoaderConfig.num_workers: expected an integer >= 0 or 'auto'; got 'all'"),
        ({"eeg_dtype": "bfloat16"}, "LoaderConfig.eeg_dtype: expected one of 'float32', 'float16'"),
        ({"shuffle": "yes"}, "LoaderConfig.shuffle: expected True or False"),
        ({"split_samples": 1}, "LoaderConfig.split_samples: expected True or False; got 1"),
        ({"full_shuffle_mb": -1}, "LoaderConfig.full_shuffle_mb: expected a number of MiB >= 0; got -1"),
        ({"filters": RecordFilter(), "augment": {"noise_std": 1}}, "LoaderConfig.augment: expected a AugmentConfig"),
    ],
)
def test_loader_config_errors_name_the_field(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        LoaderConfig(**kwargs)


def test_filter_validation():
    with pytest.raises(ConfigError, match="RecordFilter.sites: expected a list of strings"):
        RecordFilter(sites="site-a")
    with pytest.raises(ConfigError, match=r"RecordFilter.max_artifact_score: expected a value in \[0.0, 1.0\]"):
        RecordFilter(max_artifact_score=2)


def test_filters(pipeline_output, records):
    def kept(**filters):
        config = LoaderConfig(batch_size=5, num_workers=0, filters=RecordFilter(**filters))
        return Counter(k for b in _epoch(pipeline_output, config) for k in _keys(b))

    def expect(predicate):
        return _record_keys(r for r in records if predicate(r))

    site = records[0].site_id.decode()
    assert kept(tasks=("hms6",)) == expect(lambda r: r.task == b"hms6") and 0 < len(kept(tasks=("hms6",))) < 30
    assert kept(tasks=("",)) == expect(lambda r: r.label == -1)
    assert kept(min_votes=3) == expect(lambda r: r.votes.sum() >= 3) and len(kept(min_votes=3)) > 0
    assert kept(max_artifact_score=0.3) == expect(lambda r: r.artifact_score <= 0.3)
    assert len(kept(max_artifact_score=0.3)) < 30  # the fixture has an artifactual window
    assert kept(sites=(site,)) == expect(lambda r: r.site_id.decode() == site)
    assert kept(exclude_sites=(site,)) == expect(lambda r: r.site_id.decode() != site)
