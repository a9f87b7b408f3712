"""Model folders the inference tests (and serving's, which import them) run: a six-class HMS run
(``hms6_run``), a fused model (``fused_export``), and the check of one recording's output against
its schema (``validate_prediction``); one torch thread. The fine-tuned run (``finetuned``) and its
raw recordings (``raw_sites``) are in ``tests/conftest.py``."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from eegfm.contract.layout import PREPROCESS_SPEC
from eegfm.model.fused import FusedModel, Part


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every inference test runs in-process with one intra-op thread (``tests/conftest.py``)."""


@pytest.fixture(scope="session")
def hms6_run(tmp_path_factory) -> Path:
    """A six-class HMS run folder as fine-tuning leaves one (cpu-tiny weights as initialised, the
    pipeline's default recipe, a run.json with the class prior): for what needs the HMS labels."""
    import json

    import torch

    from eegfm.contract.preprocess_spec import write_preprocess_spec
    from eegfm.contract.schema import CHANNELS, SFREQ
    from eegfm.model.config import EEGFMConfig
    from eegfm.model.modeling import EEGFMModel
    from eegfm.pipelines.job.process import PreprocessConfig

    torch.manual_seed(0)
    run = tmp_path_factory.mktemp("hms6") / "run"
    EEGFMModel(EEGFMConfig.from_preset("tiny", head="hms6", modalities=[])).save_pretrained(run / "model")
    config = PreprocessConfig()
    write_preprocess_spec(run / "model", config.to_dict(), config.config_hash(), channels=list(CHANNELS), sfreq=SFREQ)
    (run / "run.json").write_text(json.dumps({"prior": [0.1, 0.2, 0.1, 0.15, 0.15, 0.3]}))
    return run


def validate_prediction(recording: dict) -> None:
    """Check one recording's output against inference/prediction.schema.json, and what a schema cannot
    say: each window's probabilities sum to 1 and its predicted class is the most likely; the
    recording's answer is its windows' mean, sums to 1, lies in its interval and names its top class."""
    import json
    import math
    from importlib import resources

    import jsonschema

    schema = json.loads(resources.files("eegfm.inference").joinpath("prediction.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    recording = json.loads(json.dumps(recording))  # as a client reads it (tuples are arrays)
    jsonschema.Draft202012Validator(schema).validate(recording)
    for window in recording["window_predictions"]:
        probabilities = window["class_probabilities"]
        if probabilities:
            assert math.isclose(sum(probabilities.values()), 1.0, abs_tol=1e-6)
            assert window["predicted_class"] == max(probabilities, key=probabilities.get)
            assert window["confidence"] == max(probabilities.values())
    if recording["status"] == "processed" and len(recording["labels"]) > 1:
        answer = recording["recording"]
        probabilities, low, high = answer["probabilities"], answer["low"], answer["high"]
        assert list(probabilities) == recording["labels"] and answer["n_windows"] == recording["windows"]
        assert math.isclose(sum(probabilities.values()), 1.0, abs_tol=1e-6)
        assert answer["predicted"] == max(probabilities, key=probabilities.get) == recording["predicted"]
        for k, label in enumerate(recording["labels"]):
            mean = sum(w["outputs"][k] for w in recording["window_predictions"]) / recording["windows"]
            assert math.isclose(probabilities[label], mean, abs_tol=1e-6)
            assert (low is None) == (high is None) == (recording["windows"] < 2)
            assert low is None or low[label] <= probabilities[label] <= high[label]
    else:
        assert "recording" not in recording


PRIOR = (0.2, 0.8)  # the fused model's second part: what moves its answer off the network's


@pytest.fixture(scope="session")
def fused_export(finetuned, tmp_path_factory) -> Path:
    """A fused model folder as ``eegfm-benchmark --export`` writes one: ``finetuned``'s network
    (weight 0.25) with a fixed class distribution (0.75), geometric mean as the recipe fuses."""
    parts = [Part("network", 0.25, folders=[finetuned / "model"]), Part("prior", 0.75, prior=np.array(PRIOR))]
    folder = tmp_path_factory.mktemp("fused") / "export"
    FusedModel(("rest", "task"), parts, 5.0, {"row": "eegfm", "val": {"auroc": 0.9}}).save(folder)
    shutil.copyfile(finetuned / "model" / PREPROCESS_SPEC, folder / PREPROCESS_SPEC)  # as the export's
    return folder
