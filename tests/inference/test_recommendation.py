"""The recommendation rule table: first match wins, classes by label, non-HMS models keep the
rules that apply, and bad tables are named by rule, field and allowed values."""

from __future__ import annotations

import math

import pytest
import yaml

from eegfm.core.config import ConfigError
from eegfm.core.tasks import HMS_CLASSES
from eegfm.inference.recommendation import RecommendationRules, WindowEvidence, load_rules


def _hms(probabilities, entropy=0.5, mutual_information=0.0, artifact_score=0.0) -> WindowEvidence:
    return WindowEvidence(dict(zip(HMS_CLASSES, probabilities)), entropy, mutual_information, artifact_score)


def test_the_default_table_gives_urgent_expert_routine_and_default():
    rules = load_rules().for_labels(HMS_CLASSES)
    seizure = _hms([0.55, 0.05, 0.1, 0.1, 0.1, 0.1])
    assert rules.recommend(seizure) == ("urgent review", "seizure or lateralized periodic discharges")
    # urgent comes first: a seizure in an artifact-laden window is still urgent
    assert rules.recommend(_hms([0.1, 0.6, 0.1, 0.1, 0.05, 0.05], artifact_score=0.9))[0] == "urgent review"
    assert rules.recommend(_hms([0.1, 0.1, 0.1, 0.1, 0.1, 0.5], artifact_score=0.7)) == ("expert review", "artifact")
    assert rules.recommend(_hms([0, 0, 0, 0, 0.2, 0.8], mutual_information=0.2))[1] == "samples disagree"
    assert rules.recommend(_hms([0, 0, 0, 0, 0.2, 0.8], mutual_information=None))[0] == "routine"
    flat = _hms([1 / 6] * 6, entropy=math.log(6))
    assert rules.recommend(flat) == ("expert review", "no class stands out")
    assert rules.recommend(_hms([0.1, 0, 0.6, 0.1, 0.1, 0.1])) == ("standard review", "default")
    assert rules.is_flagged("urgent review") and not rules.is_flagged("routine")


def test_a_binary_model_keeps_the_uncertainty_and_artifact_rules():
    rules = load_rules().for_labels(("rest", "task"))
    assert [r.name for r in rules.rules] == ["artifact", "samples disagree", "no class stands out"]
    assert rules.flagged == ("expert review",)
    window = WindowEvidence({"rest": 0.5, "task": 0.5}, math.log(2), 0.0, 0.1)
    assert rules.recommend(window) == ("expert review", "no class stands out")
    calm = WindowEvidence({"rest": 0.9, "task": 0.1}, 0.33, 0.0, 0.1)
    assert rules.recommend(calm) == ("standard review", "default")


def _table(**rule) -> dict:
    return {"default": "read", "flagged": ["look"], "rules": [{"name": "r1", "recommendation": "look", **rule}]}


def test_unknown_classes_are_named_with_the_rule_field_and_labels(tmp_path):
    with pytest.raises(ConfigError, match="rule 'r1': predicted: unknown class 'Seizur'; expected one of Seizure, LPD"):
        RecommendationRules.from_dict({**_table(predicted=["Seizur"]), "labels": list(HMS_CLASSES)})
    table = RecommendationRules.from_dict(_table(classes=["task"], min_probability=0.7))  # no labels: the model's
    assert (
        table.for_labels(("rest", "task")).recommend(WindowEvidence({"rest": 0.2, "task": 0.8}, 0.5, None, 0))[0]
        == "look"
    )
    with pytest.raises(
        ConfigError, match="rule 'r1': classes: unknown class 'task'; expected one of Seizure, LPD, GPD"
    ):
        table.for_labels(HMS_CLASSES)
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({**_table(predicted=["Other"], min_confidnce=0.5)}))
    with pytest.raises(ConfigError, match=rf"{path}: rule 'r1': .*unknown field\(s\) min_confidnce"):
        load_rules(path)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (_table(), "rule 'r1': expected at least one condition"),
        (_table(classes=["Other"]), "rule 'r1': classes and min_probability: expected both or neither"),
        (
            _table(min_probability=1.5, classes=["Other"]),
            r"rule 'r1': min_probability: expected a value in \[0.0, 1.0\]",
        ),
        (_table(min_mutual_information=-0.1), r"rule 'r1': min_mutual_information: expected a value in \[0.0, inf\]"),
        ({**_table(min_confidence=0.5), "flagged": ["urgent"]}, r"flagged: expected recommendations the table gives"),
        ({"rules": "x"}, "rules: expected a list of rules"),
    ],
)
def test_bad_tables_are_refused_by_name(table, message):
    with pytest.raises(ConfigError, match=message):
        RecommendationRules.from_dict(table)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=f"{tmp_path / 'none.yaml'}: cannot read the recommendation rules"):
        load_rules(tmp_path / "none.yaml")
