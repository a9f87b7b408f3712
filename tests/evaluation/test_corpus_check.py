"""python -m eegfm.evaluation.corpus_check on real recordings: one line per corpus, its counts and
shares as the predictor computes them, nothing of the files' names in the output."""

from __future__ import annotations

import json

import pytest

from eegfm.evaluation import corpus_check


def test_one_line_per_corpus_with_its_shares_and_no_file_name(finetuned, shared_data, tmp_path, capsys):
    rest = str(shared_data / "eegmat" / "Subject0[01]_1.edf")
    task = str(shared_data / "eegmat" / "Subject02_2.edf")
    argv = ["--model", str(finetuned), "--normal", "rest", "--output", str(tmp_path), "--prefix", "demo: "]
    other = str(shared_data / "eegmat" / "Subject03_1.edf")  # the same name again: one corpus of both
    argv += ["--corpus", f"healthy rest={rest}", "--corpus", f"task={task}", "--corpus", "nothing=/no/such/folder"]
    argv += ["--corpus", f"healthy rest={other}"]
    assert corpus_check.main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("demo: healthy rest (3 recordings, 54 windows): rest ")
    assert lines[1].startswith("demo: task (1 recordings, 6 windows): rest ")
    assert "flagged as artifact" in lines[0] and lines[2] == "demo: nothing: no recording read (FileNotFoundError)"
    report = json.loads((tmp_path / "corpus_check.json").read_text())
    assert set(report) == {"healthy rest", "task"}
    rest_report = report["healthy rest"]
    assert rest_report["windows"] == 54 and rest_report["quarantined"] == 0
    assert rest_report["normal_share"] == pytest.approx(rest_report["classes"].get("rest", 0) / 54)
    assert sum(rest_report["recommendations"].values()) == 54
    # the one finding, task: the share of windows it is unlikely on, as the predictor's probabilities say
    assert set(rest_report["clear_share"]) == {"task"} and 0.0 <= rest_report["clear_share"]["task"] <= 1.0
    if rest_report["classes"].get("task"):
        assert f"(task {rest_report['classes']['task'] / 54:.0%})" in lines[0]
    assert "Subject" not in json.dumps(report) + "\n".join(lines)


def test_a_class_the_model_lacks_is_refused(finetuned, shared_data, capsys):
    argv = ["--model", str(finetuned), "--normal", "Other", "--corpus", f"x={shared_data / 'eegmat'}"]
    assert corpus_check.main(argv) == 2
    assert "--normal: expected one of the model's classes (rest, task); got 'Other'" in capsys.readouterr().out


def test_a_corpus_without_name_is_refused_by_argparse(finetuned):
    with pytest.raises(SystemExit):
        corpus_check.main(["--model", str(finetuned), "--corpus", "no-equals-sign"])
