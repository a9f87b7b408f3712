"""``eegfm-predict`` end to end: raw recordings in, a row per window and an entry per input out;
and no identifier from a file header in anything it writes or logs."""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from eegfm.core.machine import Cpus
from eegfm.pipelines.privacy.redact import PathRedactor
from eegfm.serving import model_threads, predict
from tests.inference.conftest import validate_prediction
from tests.pipelines.named_ward import IDENTIFIER, leaks, write_named_ward


def test_every_input_is_accounted_for_with_a_row_per_window(finetuned, raw_sites, tmp_path, capsys):
    inputs = tmp_path / "ward"
    inputs.mkdir()
    for name in ("Subject03_1.edf", "Subject03_2.edf"):
        (inputs / name).symlink_to(raw_sites / "hospital1" / name)
    (inputs / "empty.edf").write_bytes(b"")
    out = tmp_path / "out"
    assert (
        predict.main(
            [
                "--model",
                str(finetuned),
                "--input",
                str(inputs),
                "--output",
                str(out),
                "--batch_size",
                "5",
                "--keep_paths",
            ]
        )
        == 0
    )
    report = json.loads((out / "recordings.json").read_text())
    by_name = {Path(r["input"]).name: r for r in report["recordings"]}
    assert set(by_name) == {"Subject03_1.edf", "Subject03_2.edf", "empty.edf"}
    assert by_name["empty.edf"]["status"] == "quarantined" and "empty (0-byte)" in by_name["empty.edf"]["reason"]
    assert report["counts"] == {**report["counts"], "recordings": 3, "processed": 2, "quarantined": 1}
    with (out / "predictions.csv").open() as fileobj:
        rows = list(csv.DictReader(fileobj))
    assert len(rows) == report["counts"]["windows"] == sum(r["windows"] for r in report["recordings"]) == 24
    assert {Path(r["input"]).name for r in rows} == {"Subject03_1.edf", "Subject03_2.edf"}
    for row in rows:
        probabilities = [float(row["rest"]), float(row["task"])]
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
        assert row["predicted"] == ("task" if probabilities[1] > probabilities[0] else "rest")
    starts = [float(r["start_s"]) for r in rows if r["input"].endswith("Subject03_1.edf")]
    assert starts == [10.0 * k for k in range(len(starts))]
    for recording in report["recordings"][:2]:
        assert (out / recording["timeline"]).stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "3 recordings: 2 scored, 1 quarantined; 24 windows" in printed and "quarantined at read" in printed
    # the model's own held-out evaluation travels with its predictions
    eval_report = json.loads((finetuned / "eval.json").read_text())
    split = "test" if "test" in eval_report else "val_calibrated"
    held, evaluation = eval_report[split], report["evaluation"]
    assert evaluation["split"] == ("test" if split == "test" else "validation") and evaluation["calibrated"]
    assert evaluation["metrics"] == {k: held[k] for k in evaluation["metrics"]}
    assert {"kl", "baseline_kl", "ece", "brier", "balanced_accuracy", "n_windows"} <= set(evaluation["metrics"])
    assert (
        f"the model on {held['n_windows']} held-out {evaluation['split']} windows: kl {held['kl']:.3f} "
        f"(class prior {held['baseline_kl']:.3f})"
    ) in printed and f"ECE {held['ece']:.3f}" in printed


def test_a_run_without_a_test_split_says_its_numbers_are_validation_ones(tmp_path):
    from eegfm.inference.predictor import held_out_evaluation

    path = tmp_path / "eval.json"
    assert held_out_evaluation(path) is None  # no eval.json: a bare model folder
    path.write_text(
        json.dumps(
            {
                "val": {"kl": 0.9, "n_windows": 40},
                "val_calibrated": {"kl": 0.8, "ece": 0.05, "n_windows": 40, "note": "x"},
            }
        )
    )
    evaluation = held_out_evaluation(path)
    assert evaluation["split"] == "validation" and evaluation["calibrated"]
    assert evaluation["metrics"] == {"kl": 0.8, "ece": 0.05, "n_windows": 40} and "optimistic" in evaluation["note"]
    path.write_text("not json")
    assert held_out_evaluation(path) is None


def test_nothing_to_score_exits_1_and_usage_errors_exit_2(finetuned, encoder, tmp_path, capsys, monkeypatch):
    (tmp_path / "bad.edf").write_bytes(b"0       not an EDF header")
    monkeypatch.delenv("OMP_NUM_THREADS")  # one_thread's: the model's threads come from the machine
    assert (
        predict.main(
            [
                "--model",
                str(finetuned),
                "--input",
                str(tmp_path / "bad.edf"),
                "--output",
                str(tmp_path / "out"),
                "--no_plots",
            ]
        )
        == 1
    )
    printed = capsys.readouterr().err
    assert "no recording could be scored" in printed
    cores = Cpus.here().usable
    said = f"using {cores} CPU core{'s' if cores > 1 else ''}: {cores} torch thread{'s' if cores > 1 else ''} ("
    assert f"{said}--threads N to change)" in printed and torch.get_num_threads() == cores
    for argv, message in (
        (["--model", str(encoder)], "pretraining encoder"),
        (["--model", str(finetuned), "--batch_size", "0"], "batch_size"),
        (["--model", str(finetuned), "--input", str(tmp_path / "nothing*.edf")], "--input"),
    ):
        args = {"--input": str(tmp_path / "bad.edf"), **dict(zip(argv[::2], argv[1::2]))}
        with pytest.raises(SystemExit) as exit_info:
            predict.main([*(x for kv in args.items() for x in kv), "--output", str(tmp_path / "o")])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(
    "cores, processes, expected",
    [(2, 1, 2), (16, 1, 16), (16, 4, 4), (2, 4, 1), (7, 2, 3)],
)
def test_the_model_gets_each_process_share_of_the_cores(cores, processes, expected):
    assert model_threads.model_threads(cores, processes) == expected


def test_threads_are_given_or_from_the_machine(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.delenv("EEGFM_THREADS", raising=False)
    cores = Cpus.here().per_rank
    served = argparse.Namespace(backend="onnx", threads=None, workers=2)
    assert str(model_threads.threads_use(served)) == (
        f"{max(1, cores // 2)} onnxruntime thread{'s' if cores >= 4 else ''} per worker (--threads N to change)"
    )
    given = argparse.Namespace(backend="torch", threads=3)
    assert str(model_threads.threads_use(given)) == "3 torch threads (from --threads)"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert model_threads.threads_use(argparse.Namespace(backend="torch", threads=None)).given_by == "OMP_NUM_THREADS"
    monkeypatch.setenv("EEGFM_THREADS", "4")  # over OMP_NUM_THREADS, and shared by eegfm-serve's workers
    shared = "2 onnxruntime threads per worker (from EEGFM_THREADS; --threads N to change)"
    assert str(model_threads.threads_use(served)) == shared


def test_planted_identifiers_reach_no_prediction_and_no_log(finetuned, tmp_path):
    from eegfm.simulate.cli import main as simulate

    simulated = tmp_path / "simulated"
    assert (
        simulate(
            [
                "--output",
                str(simulated),
                "--sites",
                "2",
                "--subjects-per-site",
                "1",
                "--recordings-per-subject",
                "1",
                "--minutes",
                "1",
                "--seed",
                "5",
                "--quiet",
            ]
        )
        == 0
    )
    planted = json.loads((simulated / "identifiers.json").read_text())["recordings"]
    needles = sorted({s.encode() for rec in planted for s in rec["search_strings"] if len(s) >= 4})
    headers = b"".join(p.read_bytes()[:4096] for p in (simulated / "edf").rglob("*.edf"))
    assert len(needles) >= 8 and sum(n in headers for n in needles) >= len(needles) // 2  # they are there
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "eegfm.serving.predict",
            "--model",
            str(finetuned),
            "--input",
            str(simulated / "edf"),
            "--output",
            str(out),
        ],
        capture_output=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "recordings.json").read_text())
    # the simulator's labels.csv gives each recording one 50 s window with expert votes, as the pipeline cuts it
    assert report["counts"]["processed"] == 2 and report["counts"]["windows"] == 2
    with (out / "predictions.csv").open() as fileobj:
        assert all(len(row["votes"].split(";")) == 6 for row in csv.DictReader(fileobj))
    haystacks = {
        "stdout+stderr": result.stdout + result.stderr,
        **{str(p): p.read_bytes() for p in out.rglob("*") if p.is_file()},
    }
    leaks = [(name, n.decode()) for name, blob in haystacks.items() for n in needles if n in blob]
    assert not leaks, leaks[:10]


def test_the_kaggle_hms_test_layout_gets_a_submission_row_per_eeg_id(hms6_run, finetuned, shared_data, tmp_path):
    layout = tmp_path / "hms"
    (layout / "test_eegs").mkdir(parents=True)
    (layout / "test.csv").write_text("spectrogram_id,eeg_id,patient_id\n853520,1000913311,30539\n7,42,8\n")
    (layout / "test_eegs" / "1000913311.parquet").symlink_to(shared_data / "hms" / "train_eegs" / "1000913311.parquet")
    (layout / "test_eegs" / "42.parquet").write_text("eeg_id,Fp1\n42,1.0\n")  # a CSV named .parquet
    out, submission = tmp_path / "out", tmp_path / "submission.csv"
    assert (
        predict.main(
            [
                "--model",
                str(hms6_run),
                "--input",
                str(layout),
                "--output",
                str(out),
                "--submission",
                str(submission),
                "--no_plots",
            ]
        )
        == 0
    )
    with submission.open() as fileobj:
        rows = list(csv.reader(fileobj))
    assert rows[0] == ["eeg_id", "seizure_vote", "lpd_vote", "gpd_vote", "lrda_vote", "grda_vote", "other_vote"]
    assert [r[0] for r in rows[1:]] == ["1000913311", "42"]
    report = {r["eeg_id"]: r for r in json.loads((out / "recordings.json").read_text())["recordings"]}
    assert all(re.fullmatch(r"file-[0-9a-f]{12}\.parquet", r["input"]) for r in report.values())  # redacted
    scored = report["1000913311"]
    assert scored["status"] == "processed" and scored["windows"] == 1  # test.csv's one 50 s window
    assert [float(v) for v in rows[1][1:]] == pytest.approx(list(scored["mean_outputs"].values()), abs=1e-5)
    assert report["42"]["status"] == "quarantined"
    assert [float(v) for v in rows[2][1:]] == [0.1, 0.2, 0.1, 0.15, 0.15, 0.3]  # the training windows' prior
    with pytest.raises(SystemExit) as exit_info:  # an eegmat model has no HMS labels
        predict.main(
            ["--model", str(finetuned), "--input", str(layout), "--output", str(out), "--submission", str(submission)]
        )
    assert exit_info.value.code == 2


def test_by_default_a_recording_is_named_by_index_and_token_never_by_its_name(hms6_run, shared_data, tmp_path, capsys):
    ward = write_named_ward(shared_data, tmp_path / "ward")
    common = ["--model", str(hms6_run), "--input", str(ward), "--no_artifact_model"]
    assert predict.main([*common, "--output", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr()
    report = json.loads((tmp_path / "out" / "recordings.json").read_text())
    assert [r["index"] for r in report["recordings"]] == [1, 2, 3, 4]
    assert all(re.fullmatch(r"file-[0-9a-f]{12}\.edf", r["input"]) for r in report["recordings"])
    assert report["counts"] == report["counts"] | {"processed": 2, "quarantined": 2}
    timelines = sorted(p.name for p in (tmp_path / "out" / "timelines").iterdir())
    assert len(timelines) == 2 and all(re.fullmatch(r"00[1-4]_file-[0-9a-f]{12}\.png", n) for n in timelines)
    with (tmp_path / "out" / "predictions.csv").open() as fileobj:
        named = {(int(row["index"]), row["input"]) for row in csv.DictReader(fileobj)}
    assert named == {(r["index"], r["input"]) for r in report["recordings"] if r["status"] == "processed"}
    reasons = " ".join(r["reason"] for r in report["recordings"])
    assert "'chan-" in reasons and "quarantined at harmonize" in printed.out
    assert not leaks(tmp_path / "out", printed.out, printed.err)

    # one key file, the same tokens as eegfm-preprocess's manifest gives (and eegfm-redact maps back)
    key = tmp_path / "key"
    key.write_bytes(b"0123456789abcdef0123456789abcdef")
    assert predict.main([*common, "--output", str(tmp_path / "keyed"), "--pseudonym_key_file", str(key)]) == 0
    keyed = json.loads((tmp_path / "keyed" / "recordings.json").read_text())["recordings"]
    capsys.readouterr()
    assert {r["input"] for r in keyed} == {PathRedactor(key.read_bytes()).name(p.name) for p in ward.iterdir()}

    assert predict.main([*common, "--output", str(tmp_path / "kept"), "--keep_paths", "--no_plots"]) == 0
    printed = capsys.readouterr()
    kept = json.loads((tmp_path / "kept" / "recordings.json").read_text())["recordings"]
    assert str(ward / f"{IDENTIFIER}.edf") in {r["input"] for r in kept} and IDENTIFIER in printed.out
    assert "'DOE_JOHN', 'MRN1234567_1960'" in " ".join(r["reason"] for r in kept)


def test_each_window_gets_its_uncertainty_and_recommendation_as_the_schema_says(hms6_run, shared_data, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "labels: [Seizure, LPD, GPD, LRDA, GRDA, Other]\ndefault: routine\nflagged: [look]\n"
        "rules:\n  - {name: any seizure, recommendation: look, classes: [Seizure], min_probability: 0.01}\n"
    )
    common = ["--model", str(hms6_run), "--input", str(shared_data / "eegmat" / "Subject00_2.edf"), "--no_plots"]
    assert (
        predict.main(
            [*common, "--output", str(tmp_path / "out"), "--mc_passes", "5", "--recommendation_rules", str(rules)]
        )
        == 0
    )
    [recording] = json.loads((tmp_path / "out" / "recordings.json").read_text())["recordings"]
    validate_prediction(recording)
    windows = recording["window_predictions"]
    assert len(windows) == recording["windows"] == 6 and {w["uncertainty"]["passes"] for w in windows} == {5}
    assert all(w["clinical_recommendation"] == "look" and w["recommendation_rule"] == "any seizure" for w in windows)
    # the six windows are contiguous: one flagged episode per run of one predicted class
    episodes = recording["flagged_episodes"]
    assert episodes[0]["start_s"] == 0.0 and episodes[-1]["end_s"] == 60.0 and episodes[0]["recommendation"] == "look"
    for e in episodes:
        peak = windows[e["peak_window"]]
        assert peak["predicted_class"] == e["class"] and e["peak_probability"] == pytest.approx(
            peak["class_probabilities"][e["class"]], abs=1e-6
        )
    with (tmp_path / "out" / "recordings.csv").open() as fileobj:
        [row] = list(csv.DictReader(fileobj))
    assert row["flagged_episodes"] == "; ".join(
        f"{e['class']} {e['start_s']:g}-{e['end_s']:g} s (look)" for e in episodes
    )
    assert sum(recording["minutes_by_class"].values()) == pytest.approx(1.0)
    with (tmp_path / "out" / "predictions.csv").open() as fileobj:
        rows = list(csv.DictReader(fileobj))
    assert [float(r["mutual_information"]) for r in rows] == pytest.approx(
        [w["uncertainty"]["mutual_information"] for w in windows], rel=1e-5
    )
    assert {r["model_version"] for r in rows} == {recording["model_version"]}
    # no samples: the entropy of the probabilities, no mutual information; the default rules
    assert predict.main([*common, "--output", str(tmp_path / "none"), "--mc_passes", "0"]) == 0
    [bare] = json.loads((tmp_path / "none" / "recordings.json").read_text())["recordings"]
    validate_prediction(bare)
    assert all(w["uncertainty"]["mutual_information"] is None for w in bare["window_predictions"])
    assert [w["outputs"] for w in bare["window_predictions"]] == [w["outputs"] for w in windows]
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {name: typo, recommendation: look, predicted: [Seizur]}\n")
    with pytest.raises(SystemExit) as exit_info:
        predict.main([*common, "--output", str(tmp_path / "bad"), "--recommendation_rules", str(bad)])
    assert exit_info.value.code == 2
