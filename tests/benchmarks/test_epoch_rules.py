"""benchmarks/epoch_rules.py: each fold's run scored at the epoch each rule keeps, none of them
having seen that fold's people."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.epoch_rules import main, score_runs, summary

# Held-out loss per epoch of three folds: the validation people kept epoch 1, fold 0 alone would
# keep 3, and the other folds' mean moves with the fold left out.
FOLDS = [[0.6, 0.5, 0.4, 0.3], [0.6, 0.7, 0.4, 0.5], [0.6, 0.4, 0.5, 0.45]]


def _lines(losses: list[float], best: int | None = None) -> str:
    rows = [
        {"epoch": e, "val/metric": m, "val/balanced_accuracy": 1 - m, "val/auroc": 1 - m / 2, "best": e == best}
        for e, m in enumerate(losses)
    ]
    return "".join(json.dumps(row) + "\n" for row in rows)


@pytest.fixture
def outputs(tmp_path: Path) -> tuple[Path, Path]:
    folds, validation = tmp_path / "folds", tmp_path / "validation"
    for k, losses in enumerate(FOLDS):
        run = folds / "runs" / "eegfm" / "corpus" / "seed0" / "folds" / f"fold{k}"
        run.mkdir(parents=True)
        (run / "metrics.jsonl").write_text(_lines(losses))
    kept = validation / "runs" / "eegfm" / "corpus" / "seed0"
    kept.mkdir(parents=True)
    (kept / "metrics.jsonl").write_text(_lines([0.5, 0.2, 0.3, 0.4], best=1) + _lines([0.5], best=None))
    return folds, validation


def test_each_rule_keeps_its_epoch_and_is_scored_on_the_fold_it_never_saw(outputs):
    rows = score_runs(*outputs, ["eegfm", "eegfm_shared"])["eegfm"]
    assert [r["epochs"] for r in rows] == [
        {"validation": 1, "other_folds": 2, "last": 3, "start": 0},  # folds 1 and 2: 0.45 at epoch 2
        {"validation": 1, "other_folds": 3, "last": 3, "start": 0},  # folds 0 and 2: 0.375 at epoch 3
        {"validation": 1, "other_folds": 2, "last": 3, "start": 0},  # folds 0 and 1: 0.40 at 2 and 3, the earlier
    ]
    assert [r["last"]["metric"] for r in rows] == [0.3, 0.5, 0.45]
    found = summary(rows)
    assert found["validation"]["metric"] == pytest.approx((0.5 + 0.7 + 0.4) / 3, abs=1e-4)
    assert found["other_folds"]["metric"] == pytest.approx((0.4 + 0.5 + 0.5) / 3, abs=1e-4)
    assert found["last_beats_validation_in"]["metric"] == 2 == found["other_folds_beats_validation_in"]["metric"]
    assert "auprc" not in found["last"]  # these runs logged none
    assert found["last_beats_validation_in"]["auroc"] == 2  # higher is better there


def test_the_command_prints_one_json_object_and_names_a_folder_without_folds(outputs, tmp_path, capsys):
    folds, validation = outputs
    assert main([str(folds), "--validation", str(validation)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["pooled"]["fold_runs"] == 3 and set(printed["methods"]) == {"eegfm"}
    with pytest.raises(SystemExit):
        main([str(tmp_path / "empty"), "--validation", str(validation)])
    assert "no runs/<method>/*/seed*/folds of eegfm, eegfm_shared" in capsys.readouterr().err
