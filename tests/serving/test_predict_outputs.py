"""``eegfm-predict``'s outputs cannot mix or inject: a folder holding another run is refused unless
``--overwrite``, which removes that run's files and nothing else; a name that a spreadsheet would
run as a formula is text in every CSV; a control character in a name is escaped on stdout and in
the log (issue 78, cases 8, 10 and 11)."""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil

import pytest

from eegfm.core.tasks import HMS_CLASSES
from eegfm.core.text_safety import ControlEscaping, escape_controls
from eegfm.inference.predictor import RecordingPrediction, WindowPrediction
from eegfm.serving import predict
from eegfm.serving.predict_outputs import prediction_header, prediction_row, previous_run, write_submission
from eegfm.serving.recording_table import RecordingTable

FAST = ["--no_artifact_model", "--batch_size", "8"]


def _copy(raw_sites, folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for source, target in names.items():
        shutil.copyfile(raw_sites / source, folder / target)
    return folder


def test_a_folder_holding_another_run_is_refused_unless_overwrite_which_removes_that_run_only(
    finetuned, raw_sites, tmp_path, capsys
):
    out = tmp_path / "out"
    first = _copy(raw_sites, tmp_path / "first", {"hospital1/Subject03_1.edf": "a.edf"})
    second = _copy(raw_sites, tmp_path / "second", {"hospital1/Subject03_2.edf": "b.edf"})
    common = ["--model", str(finetuned), "--output", str(out), "--keep_paths", *FAST]
    assert predict.main([*common, "--input", str(first)]) == 0
    (old_timeline,) = (out / "timelines").iterdir()
    # the user's own files beside the run, and a link to one: none is eegfm-predict's to remove
    (out / "notes.txt").write_text("mine")
    (out / "timelines" / "sketch.png").write_bytes(b"mine")
    (tmp_path / "precious.png").write_bytes(b"mine")
    (out / "timelines" / "002_linked.png").symlink_to(tmp_path / "precious.png")
    before = (out / "predictions.csv").read_bytes()
    capsys.readouterr()

    with pytest.raises(SystemExit) as refused:
        predict.main([*common, "--input", str(second)])
    assert refused.value.code == 2
    said = capsys.readouterr().err
    assert (
        "holds another eegfm-predict run (predictions.csv, recordings.csv, recordings.json and 2 files in timelines/)"
        in said
    )
    assert "--overwrite" in said and (out / "predictions.csv").read_bytes() == before  # nothing written

    assert predict.main([*common, "--input", str(second), "--overwrite"]) == 0
    report = json.loads((out / "recordings.json").read_text())
    assert [r["input"] for r in report["recordings"]] == [str(second / "b.edf")]
    with (out / "predictions.csv").open() as fileobj:
        assert {row["input"] for row in csv.DictReader(fileobj)} == {str(second / "b.edf")}
    timelines = sorted(p.name for p in (out / "timelines").iterdir())
    assert timelines == sorted([report["recordings"][0]["timeline"].split("/")[1], "sketch.png"])
    assert old_timeline.name not in timelines and old_timeline.name.endswith("_a.png")
    assert (out / "notes.txt").read_text() == "mine" and (tmp_path / "precious.png").read_bytes() == b"mine"
    assert not (out / "timelines" / "002_linked.png").exists()  # the link went, not what it named
    # an empty folder, or one of the user's files only, is no run
    assert previous_run(tmp_path / "first") == [] and previous_run(tmp_path / "nothing") == []


def test_names_a_spreadsheet_would_run_are_text_in_every_csv(finetuned, raw_sites, tmp_path, monkeypatch):
    ward = _copy(
        raw_sites,
        tmp_path / "ward",
        {
            "hospital1/Subject03_1.edf": "=HYPERLINK(1).edf",
            "hospital1/Subject03_2.edf": "+SUM(1).edf",
            "hospital2/Subject04_1.edf": "@cmd.edf",
        },
    )
    (ward / "=empty.edf").write_bytes(b"")  # quarantined: a row in recordings.csv alone
    monkeypatch.chdir(ward)  # names as given, relative: the cell starts with the name
    out = tmp_path / "out"
    argv = ["--model", str(finetuned), "--output", str(out), "--keep_paths", "--no_plots", *FAST]
    assert predict.main([*argv, "--input", "=HYPERLINK(1).edf", "+SUM(1).edf", "@cmd.edf", "=empty.edf"]) == 0
    names = {r["input"] for r in json.loads((out / "recordings.json").read_text())["recordings"]}
    assert {name[0] for name in names} >= {"=", "+", "@"}  # the names themselves, as given
    with (out / "predictions.csv").open() as fileobj:
        windows = list(csv.DictReader(fileobj))
    with (out / "recordings.csv").open() as fileobj:
        recordings = list(csv.DictReader(fileobj))
    assert {row["input"] for row in windows} == {f"'{name}" for name in names if "empty" not in name}
    assert {row["input"] for row in recordings} == {f"'{name}" for name in names}
    for row in windows:  # the numbers stay numbers
        assert float(row["rest"]) + float(row["task"]) == pytest.approx(1.0, abs=1e-5)
        assert row["predicted"] in ("rest", "task")


def test_only_text_cells_are_neutralized_and_a_negative_number_stays_a_number(tmp_path):
    labels = ("=cmd", "-x")
    window = WindowPrediction(0.0, 10.0, (0.25, 0.75), -0.5, ("@Fp1",), clinical_recommendation="+look")
    prediction = RecordingPrediction("=name.edf", "processed", labels, index=1, windows=[window])
    header, row = prediction_header(labels), prediction_row(prediction, window, labels)
    assert header[4:7] == ["'=cmd", "'-x", "predicted"]
    assert row[1] == "'=name.edf" and row[6] == "'-x" and row[7] == "-0.5000" and row[8] == "'@Fp1"
    assert "'+look" in row
    buffer = io.StringIO()
    table = RecordingTable(buffer, ("value",))  # a regression head's value may be negative
    regression = [WindowPrediction(0.0, 10.0, (-0.5,), 0.1, ())]
    table.write(RecordingPrediction("-1.edf", "processed", ("value",), index=1, windows=regression).summary())
    assert (
        buffer.getvalue().splitlines()[1] == "1,'-1.edf,processed,1,-0.5,,,"
    )  # no flagged episodes, no stage, no reason
    # the Kaggle submission's eeg_id is text too
    done = {"eeg_id": "=1+2", "status": "processed", "mean_outputs": dict.fromkeys(HMS_CLASSES, 1 / 6)}
    write_submission(tmp_path / "submission.csv", [done], None)
    assert (tmp_path / "submission.csv").read_text().splitlines()[1].startswith("'=1+2,0.166667")


def test_control_characters_in_names_are_escaped_on_stdout_and_in_the_log(finetuned, raw_sites, tmp_path, capsys):
    forged = "ward\x1b[2J\nWARNING forged: all clear"
    ward = _copy(raw_sites, tmp_path / "ward", {"hospital1/Subject03_1.edf": f"{forged}.edf"})
    (ward / f"{forged}-empty.edf").write_bytes(b"")  # quarantined: named in a warning of the log
    out = tmp_path / "out"
    argv = ["--model", str(finetuned), "--input", str(ward), "--output", str(out), "--keep_paths", "--no_plots"]
    assert predict.main([*argv, *FAST]) == 0
    printed = capsys.readouterr()
    for stream in (printed.out, printed.err):
        assert "\x1b" not in stream and "\nWARNING forged" not in stream
    assert escape_controls(forged) in printed.out and "ward\\x1b[2J\\nWARNING forged" in printed.err
    names = {r["input"] for r in json.loads((out / "recordings.json").read_text())["recordings"]}
    assert names == {str(ward / f"{forged}.edf"), str(ward / f"{forged}-empty.edf")}  # JSON escapes them itself


def test_the_log_filter_escapes_arguments_and_keeps_a_message_s_own_layout():
    def formatted(msg, *args):
        record = logging.LogRecord("eegfm", logging.WARNING, __file__, 1, msg, args, None)
        ControlEscaping().filter(record)
        return record.getMessage()

    assert formatted("read %s: %d windows", "a\x1b[31m\nb\u202e", 3) == "read a\\x1b[31m\\nb\\u202e: 3 windows"
    assert formatted("two lines\n\tthe second\x07") == "two lines\n\tthe second\\x07"
    assert escape_controls("\x85\x7f\u2028") == "\\x85\\x7f\\u2028" and escape_controls("é😀") == "é😀"
