"""Finding the stages' outputs below the run folders, and clear errors for bad ones."""

from __future__ import annotations

import json

import pytest

from eegfm.core.config import ConfigError
from eegfm.evaluation.report.discover import discover, read_json


def test_each_output_is_found_and_the_folds_are_not_the_model(run_folder):
    found = discover([run_folder])
    assert found.manifests == [run_folder / "tfrecords"]
    assert found.finetuned == run_folder / "finetune"
    assert len(found.finetune_runs) == 4  # the model and a fold per site
    assert found.loso == [run_folder / "loso"] and found.robustness == [run_folder / "robustness" / "robustness.json"]
    assert [p.parent.name for p in found.explanations] == ["explanations"] and not found.benchmarks


def test_missing_folders_and_fields_are_named(tmp_path):
    with pytest.raises(ConfigError, match=f"RUN_DIR {tmp_path / 'nowhere'}: no such folder"):
        discover([tmp_path / "nowhere"])
    (tmp_path / "loso.json").write_text(json.dumps({"sites": {}}))
    with pytest.raises(ConfigError, match=r"loso.json: expected the field 'summary'; it has sites"):
        read_json(tmp_path / "loso.json", "sites", "summary")
    (tmp_path / "eval.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"eval.json: not readable as JSON"):
        read_json(tmp_path / "eval.json")
