"""recordings.csv: ``eegfm-predict``'s answer per recording on real EEG, a row per input whether
scored or quarantined, named by token and never by path; and its header whatever a model's
class names hold."""

from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
import pytest

from eegfm.inference.predictor import RecordingPrediction, WindowPrediction
from eegfm.serving import predict
from eegfm.serving.recording_table import RecordingTable, answer_text, class_columns
from tests.inference.conftest import validate_prediction
from tests.pipelines.named_ward import IDENTIFIER, leaks


def _ward(shared_data, folder):
    """A real eegmat recording under a patient's name and a BrainVision one (test_NO: no 10-20
    channels, so quarantined at harmonization) in a folder named by a record number."""
    folder.mkdir(parents=True)
    (folder / f"{IDENTIFIER}.edf").symlink_to(shared_data / "eegmat" / "Subject00_1.edf")
    for part in (shared_data / "formats" / "brainvision").glob("test_NO.*"):
        (folder / part.name).symlink_to(part)
    return folder


def test_each_recording_gets_one_row_with_its_answer_or_why_not(finetuned, shared_data, tmp_path, capsys):
    ward = _ward(shared_data, tmp_path / "MRN1234567")
    out = tmp_path / "out"
    assert predict.main(["--model", str(finetuned), "--input", str(ward), "--output", str(out), "--no_plots"]) == 0
    printed = capsys.readouterr()
    text = (out / "recordings.csv").read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    report = {r["index"]: r for r in json.loads((out / "recordings.json").read_text())["recordings"]}
    assert [int(r["index"]) for r in rows] == sorted(report) == [1, 2]  # one row per input recording
    assert list(rows[0]) == [
        *("index", "input", "status", "n_windows"),
        *("p_rest", "p_rest_low", "p_rest_high", "p_task", "p_task_low", "p_task_high"),
        *("predicted", "flagged_episodes", "stage", "reason"),
    ]
    [scored] = [r for r in rows if r["status"] == "processed"]
    [quarantined] = [r for r in rows if r["status"] == "quarantined"]
    entry = report[int(scored["index"])]
    validate_prediction(entry)
    assert scored["input"] == entry["input"] and re.fullmatch(r"file-[0-9a-f]{12}\.edf", scored["input"])
    assert int(scored["n_windows"]) == entry["windows"] == entry["recording"]["n_windows"] == 18  # 180 s
    probabilities = {label: float(scored[f"p_{label}"]) for label in ("rest", "task")}
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    for label, p in probabilities.items():
        assert float(scored[f"p_{label}_low"]) <= p <= float(scored[f"p_{label}_high"])
        assert float(scored[f"p_{label}_low"]) < float(scored[f"p_{label}_high"])  # 18 windows that differ
    windows = np.array([w["outputs"] for w in entry["window_predictions"]])
    np.testing.assert_allclose(list(probabilities.values()), windows.mean(axis=0), atol=1e-5)
    assert scored["predicted"] == max(probabilities, key=probabilities.get) == entry["predicted"]
    # quarantined: its line, an empty answer and why
    assert quarantined["n_windows"] == "0" and quarantined["stage"] == "harmonize"
    assert "only 0 of the 19 10-20 channels" in quarantined["reason"]
    answer = [k for k in quarantined if k.startswith("p_")] + ["predicted"]
    assert all(quarantined[k] == "" for k in answer)
    assert re.fullmatch(r"file-[0-9a-f]{12}\.vhdr", quarantined["input"])
    # no path, folder or file name under default redaction (here nor on stdout)
    assert str(tmp_path) not in text and "test_NO" not in text and "Subject00" not in text
    assert not leaks(out, printed.out, printed.err)
    said = answer_text(entry)
    assert said.startswith(f"{scored['predicted']} ") and f"{said}    18 windows" in printed.out


def _prediction(rows, labels=("rest", "task")) -> RecordingPrediction:
    windows = [WindowPrediction(10.0 * k, 10.0, tuple(r), 0.1, ()) for k, r in enumerate(rows)]
    return RecordingPrediction("file-0123456789ab.edf", "processed", tuple(labels), index=1, windows=windows)


def test_class_names_make_safe_distinct_columns():
    assert class_columns(["Seizure", "LPD", "Other"]) == ["p_Seizure", "p_LPD", "p_Other"]
    assert class_columns(["slow, left\nside", "=cmd()"]) == ["p_slow_left_side", "p_cmd"]
    # two labels that would share a column: each carries its class index
    assert class_columns(["a b", "a_b"]) == ["p_0_a_b", "p_1_a_b"]
    assert class_columns(["x", "x_low"]) == ["p_0_x", "p_1_x_low"]  # x's lower bound would be p_x_low
    assert class_columns(["", "?"]) == ["p_0_class", "p_1_class"]


def test_a_table_row_per_recording_with_one_window_without_an_interval():
    buffer = io.StringIO()
    labels = ("Seizure", "slow, left")
    table = RecordingTable(buffer, labels)
    table.write(_prediction([[0.2, 0.8], [0.4, 0.6], [0.3, 0.7]], labels).summary())
    one = _prediction([[0.9, 0.1]], labels).summary()
    table.write(one)
    table.write(
        RecordingPrediction("file-x.edf", "quarantined", labels, index=3, stage="read", reason="empty").summary()
    )
    header, *rows = list(csv.reader(io.StringIO(buffer.getvalue())))
    assert header[4:] == [
        *("p_Seizure", "p_Seizure_low", "p_Seizure_high", "p_slow_left", "p_slow_left_low", "p_slow_left_high"),
        *("predicted", "flagged_episodes", "stage", "reason"),
    ]
    assert rows[0][4] == "0.3" and rows[0][7] == "0.7" and rows[0][10] == "slow, left"  # quoted by the csv module
    assert float(rows[0][5]) <= 0.3 <= float(rows[0][6])
    assert rows[1][4:11] == ["0.9", "", "", "0.1", "", "", "Seizure"] and answer_text(one) == "Seizure 0.90"
    assert rows[2] == ["3", "file-x.edf", "quarantined", "0", *[""] * 8, "read", "empty"]


def test_a_regression_head_gets_its_mean_value_and_no_class_answer():
    buffer = io.StringIO()
    table = RecordingTable(buffer, ("value",))
    summary = _prediction([[2.0], [4.0]], ("value",)).summary()
    assert "recording" not in summary
    table.write(summary)
    assert buffer.getvalue().splitlines() == [
        "index,input,status,n_windows,value,flagged_episodes,stage,reason",
        "1,file-0123456789ab.edf,processed,2,3,,,",
    ]
