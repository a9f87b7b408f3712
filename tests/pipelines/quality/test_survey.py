"""python -m eegfm.pipelines.quality.survey on real corpora: per rule, the share of kept windows it
fires on, through the pipeline's own per-recording path; no file name in the output."""

from __future__ import annotations

import json

import numpy as np

from eegfm.pipelines.quality import RULES
from eegfm.pipelines.quality import survey as quality_survey
from eegfm.pipelines.quality.artifact_autoencoder import ArtifactAutoencoder
from eegfm.pipelines.quality.rules import SIGNS


def test_a_survey_of_two_real_corpora(shared_data, tmp_path, capsys):
    rng = np.random.default_rng(0)
    model = ArtifactAutoencoder(epochs=5).fit(rng.standard_normal((50, 19, 2560)) * 10)
    model.save(tmp_path / "ae.npz")
    argv = ["--corpus", f"rest={shared_data / 'eegmat' / 'Subject0[0-3]_1.edf'}"]
    argv += ["--corpus", f"motor={shared_data / 'eegmmi'}", "--artifact_model", str(tmp_path / "ae.npz")]
    assert quality_survey.main([*argv, "--output", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "quality_survey.json").read_text())
    assert set(report) == {"rest", "motor"}
    rest = report["rest"]
    assert rest["recordings"] == 4 and rest["windows"] == 4 * 18 and rest["dropped"] == {}
    assert set(rest["fires"]) == {*RULES, *SIGNS} and all(0.0 <= v <= 1.0 for v in rest["fires"].values())
    assert rest["artifact_rules"] <= 0.1  # clean resting EEG
    assert 0.0 <= rest["artifact_autoencoder"] <= 1.0 and rest["novelty_median"] > 0
    table = (tmp_path / "quality_survey.md").read_text()
    assert table == capsys.readouterr().out.strip() + "\n"
    assert "| `muscle` fires |" in table and "Subject" not in table + json.dumps(report)
