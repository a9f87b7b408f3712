"""A fused model (a benchmark row as a folder): its readout answers what scikit-learn's fit
answers, it saves without pickle and loads to the same probabilities, and a bad folder is
refused naming the file and field."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from eegfm.contract.model_files import is_fused
from eegfm.core.config import ConfigError
from eegfm.model import eegnet, spectral_features
from eegfm.model.architectures import load_model_config
from eegfm.model.fused import FusedModel, Part, Readout, fuse
from eegfm.model.linear_fit import linear_readout_of

T = 1280


def _windows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise with a 10 Hz rhythm whose size is the class: eeg [n, 19, T], mask, labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    rhythm = np.sin(2 * np.pi * 10 * np.arange(T) / 256.0 + rng.uniform(0, 6.3, (n, 19, 1)))
    eeg = 5 * rng.standard_normal((n, 19, T)) + (4 + 12 * labels)[:, None, None] * rhythm
    return eeg.astype(np.float32), np.ones((n, 19), np.float32), labels


@pytest.fixture(scope="module")
def fitted():
    eeg, mask, labels = _windows(24, seed=0)
    powers = spectral_features.band_power_features(eeg)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000)).fit(powers, labels)
    tangent = spectral_features.TangentMap.fit(spectral_features.band_covariances(eeg), "logeuclid")
    return pipeline, tangent, (eeg, mask, labels)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_the_linear_readout_answers_what_scikit_learn_answers(n_classes):
    rng = np.random.default_rng(n_classes)
    x, y = rng.standard_normal((60, 7)), np.arange(60) % n_classes
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(x, y)
    held = rng.standard_normal((9, 7))
    found = linear_readout_of(pipeline, n_classes).probabilities(held)
    np.testing.assert_allclose(found, pipeline.predict_proba(held), rtol=1e-10, atol=1e-12)


def test_a_saved_model_loads_to_the_same_probabilities(fitted, tmp_path):
    pipeline, tangent, (eeg, mask, labels) = fitted
    powers = Readout(("powers",), linear_readout_of(pipeline, 2))
    network = eegnet.build_model(19, T // 2, 2, 0.25).eval()
    model = FusedModel(
        ("rest", "task"),
        [
            Part("readout", 0.5, readout=powers),
            Part(
                "eegnet", 0.3, eegnets=[network], eegnet_settings={"n_chans": 19, "n_times": T // 2, "drop_prob": 0.25}
            ),
            Part("prior", 0.2, prior=np.array([0.7, 0.3])),
        ],
        5.0,
        {"row": "test"},
    )
    expected = model.probabilities(eeg, mask)
    model.save(tmp_path / "export")
    assert is_fused(tmp_path / "export") and not list((tmp_path / "export").rglob("*.pt"))
    loaded = FusedModel.load(tmp_path / "export")
    np.testing.assert_allclose(loaded.probabilities(eeg, mask), expected, rtol=1e-9, atol=1e-12)
    assert loaded.card == {"row": "test"} and load_model_config(tmp_path / "export").id2label == {0: "rest", 1: "task"}
    # the readout part alone reads the rhythm: the larger class is the likelier one
    readout = Part("readout", 1.0, readout=powers).probabilities(eeg, mask, 2)
    assert readout[labels == 1, 1].mean() > readout[labels == 0, 1].mean() + 0.3


def test_a_tangent_map_saves_its_reference_and_metric(fitted, tmp_path):
    _, tangent, (eeg, mask, labels) = fitted
    features = tangent.transform(spectral_features.band_covariances(eeg))
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000)).fit(features, labels)
    readout = Readout(("logeuclid",), linear_readout_of(pipeline, 2), {"logeuclid": tangent})
    model = FusedModel(("a", "b"), [Part("readout", 1.0, readout=readout)], 5.0)
    model.save(tmp_path / "m")
    loaded = FusedModel.load(tmp_path / "m")
    np.testing.assert_allclose(loaded.probabilities(eeg, mask), pipeline.predict_proba(features), rtol=1e-8)


def test_fusion_weights_must_sum_to_one():
    with pytest.raises(ValueError, match=r"weights: expected numbers in \[0, 1\] that sum to 1"):
        fuse([np.full((1, 2), 0.5)] * 2, [0.5, 0.6])


def test_a_bad_folder_is_refused_naming_the_file_and_field(tmp_path):
    (tmp_path / "fused.json").write_text(json.dumps({"format": "eegfm-fused", "format_version": 9}))
    with pytest.raises(ConfigError, match=r"fused.json: format_version: expected 1; got 9"):
        FusedModel.load(tmp_path)
