"""The folder benchmark on real recordings: eegmat's files with a CSV of file,subject,label,split
run end to end (tiny), a seeded split stratified by label when the CSV has none, a warning for a
split with one person of a class, an error naming the line for each bad row, no validation or test
subject's window in any training loader, no validation or test recording in ``--unlabeled`` or the
shared encoder's pretraining data, and the data folder made anew when its fingerprint changes."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from eegfm.core import stopwatch
from eegfm.core.job_pool import JobPool, Plan
from eegfm.evaluation.comparison import fingerprint, preprocessing
from eegfm.evaluation.comparison.cli import main
from eegfm.evaluation.comparison.folder import (
    RECORD_TASK,
    check_pretraining_data,
    check_splits,
    data_fields,
    pipeline_labels,
    preprocess,
    read_label_table,
    seeded_split,
    split_warnings,
    strata,
)
from eegfm.evaluation.comparison.labeled import metrics_of
from eegfm.evaluation.comparison.options import BenchmarkOptions
from eegfm.evaluation.comparison.preprocessing import ENCODER_RECORDINGS, pretraining_recordings
from eegfm.evaluation.comparison.pretrainings import pretrain_folder
from eegfm.evaluation.comparison.runs import (
    EEGFM_SETTINGS,
    METHODS,
    RecipeOptions,
    finetune,
    run_methods,
    seeds_note,
)
from eegfm.serving.predict import main as predict_main
from eegfm.training.data import scan_windows
from tests.evaluation.comparison.test_eegmat import loader_batches, place, tiny_data

# subject -> split: two training subjects, one validation, one test
SPLIT = {"00": "train", "01": "train", "28": "val", "29": "test"}
NAMED_ROOT = "Doe_Jane_1961-02-03"  # a clinic's folder named after a person: never in an output


def labeled_folder(
    shared: Path, folder: Path, split=SPLIT, columns=("file", "subject", "label", "split"), root: str = "recordings"
) -> Path:
    """eegmat's files for ``split``'s subjects, copied under ``folder/root`` as a clinic might
    keep them (a folder per subject), and ``folder/labels.csv`` with ``columns``; the CSV's path."""
    rows = []
    for subject, part in ((s, p) for s in split for p in (1, 2)):
        name = f"Subject{subject}_{part}.edf"
        place(shared / "eegmat" / name, folder / root / f"p{subject}" / name)
        cells = {"file": f"p{subject}/{name}", "subject": f"p{subject}", "label": ("rest", "arithmetic")[part - 1]}
        rows.append({**cells, "split": split[subject], "age": "41"})
    with (folder / "labels.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*columns, "age"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return folder / "labels.csv"


@pytest.fixture(scope="module")
def tiny_run(shared_data, tmp_path_factory):
    base = tmp_path_factory.mktemp("folder-benchmark")
    labels = labeled_folder(shared_data, base, root=NAMED_ROOT)
    # a recording no window comes from (a file the reader refuses): listed, and the run goes on
    _broken_edf(base / NAMED_ROOT / "p01" / "short.edf")
    with labels.open("a", newline="") as fh:
        csv.writer(fh).writerow(["p01/short.edf", "p01", "rest", "train", "50"])
    with loader_batches() as seen:
        argv = ["folder", "--data", str(base / NAMED_ROOT), "--labels", str(labels), "--output", str(base / "out")]
        argv += ["--config", "cpu-tiny", "--seeds", "0", "--methods", "eegfm", "cbramod", "labram"]
        argv += ["cbramod_pretrained"]  # its own pretraining reads the training windows alone too
        argv += ["--pretrain_steps", "4", "--eegnet_max_epochs", "2", "--export", str(base / "export")]
        argv += ["--finetune_set", "epochs=1", "--pretrain_set", "val_fraction=0"]
        argv += ["--workers", "1"]  # every loader in this process, where loader_batches sees it
        assert main(argv) == 0
    return base / "out", seen


def test_the_exported_winner_served_by_predict_reproduces_its_test_figures(tiny_run, shared_data, tmp_path):
    """--export writes the row validation ranks first; eegfm-predict on it, over the run's test
    recordings, gives the benchmark's window-level test metrics of that row's exported model."""
    output, _ = tiny_run
    report = json.loads((output / "benchmark.json").read_text())
    exported = report["run"]["exported"]
    assert exported["row"] == report["run"]["ranked_on_validation"][0]
    export = output.parent / "export"
    card = json.loads((export / "fused.json").read_text())["card"]
    assert card["row"] == exported["row"] and card["labels"] == ["arithmetic", "rest"]
    assert (export / "preprocess.json").is_file() and (export / "README.md").is_file()
    probs, labels = [], []
    for part, label in ((1, "rest"), (2, "arithmetic")):  # subject 29 is the test split
        folder = tmp_path / label
        argv = ["--model", str(export), "--input", str(shared_data / "eegmat" / f"Subject29_{part}.edf")]
        assert predict_main([*argv, "--output", str(folder), "--no_plots"]) == 0
        rows = list(csv.DictReader((folder / "predictions.csv").open()))
        probs += [[float(row["arithmetic"]), float(row["rest"])] for row in rows]
        labels += [card["labels"].index(label)] * len(rows)
    found = metrics_of(np.array(probs), np.array(labels), np.array([0.5, 0.5]))
    for metric in ("balanced_accuracy", "auroc", "auprc"):
        expected = report[f"{exported['row']}.test.{metric}"]["runs"][exported["model_index"]]
        assert found[metric] == pytest.approx(expected, abs=0.005), metric
    # the answer per recording and per person, with intervals over people, for every row
    for row in ("eegfm", "band_power_lr", "spectral_readout", "eegnet_stack"):
        assert 0.0 <= report[f"{row}.val.subject.auroc"]["mean"] <= 1.0
        assert report[f"{row}.val.subject.auroc_ci"]["people"] == 1  # one validation person: no interval


def test_the_folder_run_reports_every_method_split_and_metric(tiny_run):
    output, _ = tiny_run
    report = json.loads((output / "benchmark.json").read_text())
    rows = ("class_prior", "band_power_lr", "tangent_space_lr", "eegnet", "eegfm", "eegfm_model", "cbramod", "labram")
    rows += ("cbramod_pretrained",)
    for method in rows:
        for split in ("val", "test"):
            for metric in ("balanced_accuracy", "auroc", "auprc"):
                assert 0.0 <= report[f"{method}.{split}.{metric}"]["mean"] <= 1.0
    assert report["run"]["windows"] == {"train": 2, "dev": 1, "eval": 1}
    assert report["run"]["classes"] == ["arithmetic", "rest"] and report["run"]["dropped_lines"] == [10]
    assert "--labels lines 10: no window" in (output / "benchmark.md").read_text()
    assert "test: 1 person of class 'rest' (fewer than two" in (output / "benchmark.md").read_text()
    assert (output / "data" / "fingerprint.json").is_file() and (output / "pretrain" / "fingerprint.json").is_file()
    assert report["band_power_lr.val.auroc"]["mean"] > 0.6  # the band powers beat chance
    assert (output / "benchmark.png").stat().st_size > 10_000
    # the folder's, files' and subjects' names are the user's: none reaches the outputs
    for path in output.rglob("*"):
        if path.is_file() and path.parent.name != "labels":  # labels/: the pipeline's input, as private as the CSV
            data = path.read_bytes()
            assert NAMED_ROOT.encode() not in data and b"Subject0" not in data, path
            assert output / "data" not in path.parents or b"p00" not in data, path


def test_the_run_says_where_its_time_went(tiny_run):
    """OUT/timing.json (and the table printed at the end) holds every part the cold run did, each
    second once: the parts add up to no more than the whole."""
    output, _ = tiny_run
    timing = json.loads((output / "timing.json").read_text())
    parts = {part["part"]: part for part in timing["parts"]}
    assert {"pipeline", "pretraining", "fine-tuning", "EEGNet", "spectral readout", "report"} <= set(parts)
    assert {item["item"] for item in parts["pretraining"]["items"]} == {"eegfm", "cbramod"}
    runs = {item["item"]: item["calls"] for item in parts["fine-tuning"]["items"]}
    assert runs["eegfm"] == 1 and runs["linear_probe"] == 1 and runs["labram"] == 1
    assert all(part["seconds"] >= 0 for part in timing["parts"])
    assert not any(part.get("side_by_side") for part in timing["parts"])  # --workers 1: nothing overlaps
    assert sum(part["seconds"] for part in timing["parts"]) <= timing["total_s"] + 0.5
    assert "timing" not in json.loads((output / "benchmark.json").read_text())["run"]


def test_no_validation_or_test_window_reaches_a_training_loader(tiny_run):
    output, seen = tiny_run
    split_of = {w["subject_id"]: w["corpus_split"] for w in scan_windows(str(output / "data"))}
    assert sorted(set(split_of.values())) == ["dev", "eval", "train"]
    trained = {subject for infinite, subjects in seen if infinite for subject in subjects}
    assert trained and {split_of[s] for s in trained} == {"train"}
    assert (output / "pretrain-cbramod" / "model" / "config.json").is_file()  # the peer's pretraining ran


def test_without_a_split_column_subjects_are_drawn_by_seed(shared_data, tmp_path):
    split = {s: "" for s in ("00", "01", "02", "03", "04", "05", "06", "28")}
    labels = labeled_folder(shared_data, tmp_path, split, columns=("file", "subject", "label"))
    rows, has_split = read_label_table(labels, tmp_path / "recordings")
    assert not has_split
    drawn = seeded_split(rows, 0)
    by_subject = {row.subject: row.split for row in drawn}
    assert sorted(by_subject.values()).count("val") == 1 and sorted(by_subject.values()).count("test") == 1
    assert by_subject == {row.subject: row.split for row in seeded_split(rows, 0)}  # the seed decides
    assert check_splits(drawn) == ("arithmetic", "rest")


def _broken_edf(path: Path) -> None:
    path.write_bytes(b"0       " + b"not an EDF header" * 20)


def _edit(labels: Path, line: int, **cells) -> None:
    rows = list(csv.DictReader(labels.open()))
    rows[line - 2].update(cells)  # line 1 is the header
    with labels.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.parametrize(
    ("line", "cells", "message"),
    [
        (3, {"file": "p00/DOE_JOHN.edf"}, "--labels line 3: file: no such file or folder under --data"),
        (3, {"subject": "p28"}, "--labels line 6: split: val, but its subject is in train on line 3"),
        (6, {"label": "sleep"}, "--labels line 6: label: a class no training row has"),
        (3, {"split": "holdout"}, "--labels line 3: split: expected one of train, val, test"),
        (3, {"subject": ""}, "--labels line 3: subject: expected a value"),
    ],
)
def test_a_bad_row_is_an_error_naming_its_line(shared_data, tmp_path, line, cells, message):
    labels = labeled_folder(shared_data, tmp_path)
    _edit(labels, line, **cells)
    with pytest.raises(ValueError) as err:
        check_splits(read_label_table(labels, tmp_path / "recordings")[0])
    assert str(err.value).startswith(message), err.value
    assert "DOE" not in str(err.value)


def test_classes_order_the_labels_and_must_be_the_table_s(shared_data, tmp_path):
    rows, _ = read_label_table(labeled_folder(shared_data, tmp_path), tmp_path / "recordings")
    assert check_splits(rows) == ("arithmetic", "rest")  # sorted by default
    assert check_splits(rows, ("rest", "arithmetic")) == ("rest", "arithmetic")  # arithmetic: the positive class
    for wrong in (("rest", "task"), ("rest",), ("rest", "arithmetic", "rest")):
        with pytest.raises(ValueError, match="--classes: expected each of the table's classes once"):
            check_splits(rows, wrong)


def test_the_command_says_what_is_wrong_and_exits_2(shared_data, tmp_path, capsys):
    labels = labeled_folder(shared_data, tmp_path)
    _edit(labels, 4, file="p00/Subject00_1.edf")
    argv = ["folder", "--data", str(tmp_path / "recordings"), "--labels", str(labels), "--output", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "--labels line 4: file: the same file as line 2" in capsys.readouterr().err


def _one_label_each(shared: Path, folder: Path, labels: dict[str, str]) -> Path:
    """A table of one recording per subject (``labels``: eegmat subject -> class), copied under
    ``folder/recordings``, without a split column; the CSV's path."""
    (folder / "recordings").mkdir(parents=True, exist_ok=True)
    with (folder / "labels.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "subject", "label"])
        for subject, label in labels.items():
            name = f"Subject{subject}_1.edf"
            place(shared / "eegmat" / name, folder / "recordings" / name)
            writer.writerow([name, f"p{subject}", label])
    return folder / "labels.csv"


def test_the_drawn_split_is_stratified_by_label_and_seeded(shared_data, tmp_path):
    # 7 controls and 3 patients: an unstratified draw of 2 held-out people often misses the patients
    labels = {f"{i:02d}": "patient" if i < 3 else "control" for i in range(10)}
    rows, _ = read_label_table(_one_label_each(shared_data, tmp_path, labels), tmp_path / "recordings")
    draws = set()
    for seed in range(6):
        drawn = seeded_split(rows, seed)
        assert drawn == seeded_split(rows, seed)  # deterministic for a seed
        for split in ("val", "test"):
            assert {row.label for row in drawn if row.split == split} == {"control", "patient"}, (seed, split)
        assert check_splits(drawn) == ("control", "patient")
        draws.add(tuple(row.split for row in drawn))
    assert len(draws) > 1  # the seed draws
    # subjects with rows of two labels form a stratum of their own (eegmat: rest and arithmetic per person)
    assert strata(rows) == {"control": [f"p{i:02d}" for i in range(3, 10)], "patient": ["p00", "p01", "p02"]}
    # three people of three classes: still one in validation and one in test
    rows, _ = read_label_table(
        _one_label_each(shared_data, tmp_path / "three", {"00": "a", "01": "b", "02": "c"}),
        tmp_path / "three" / "recordings",
    )
    assert sorted(row.split for row in seeded_split(rows, 0)) == ["test", "train", "val"]


def test_a_split_with_one_person_of_a_class_is_warned_of_without_names(shared_data, tmp_path, caplog):
    rows, _ = read_label_table(labeled_folder(shared_data, tmp_path), tmp_path / "recordings")
    notes = split_warnings(rows, check_splits(rows))
    assert notes == [
        f"{split}: 1 person of class {name!r} (fewer than two: its metrics are one person's)"
        for split in ("val", "test")
        for name in ("arithmetic", "rest")
    ]
    assert notes[-1] in caplog.text and "p29" not in caplog.text and "Subject" not in caplog.text
    two_each = {"00": "train", "01": "train", "28": "val", "29": "val", "30": "test", "31": "test"}
    rows, _ = read_label_table(labeled_folder(shared_data, tmp_path / "two", two_each), tmp_path / "two" / "recordings")
    assert split_warnings(rows, check_splits(rows)) == []


def _fake_pipeline(monkeypatch) -> list:
    """The pipeline's job replaced by one that writes an empty manifest: the calls, to count them."""
    calls = []

    def preprocess(spec, config, launch=None):
        calls.append((spec, config, launch))
        out = Path(spec.output)
        out.mkdir(parents=True, exist_ok=True)
        (out / "manifest.json").write_text("{}")
        return {}

    monkeypatch.setattr(preprocessing.pipeline, "preprocess", preprocess)
    return calls


def test_the_data_folder_is_made_anew_when_its_fingerprint_changes(shared_data, tmp_path, monkeypatch, caplog):
    calls = _fake_pipeline(monkeypatch)
    rows, _ = read_label_table(labeled_folder(shared_data, tmp_path), tmp_path / "recordings")
    key, out = tmp_path / "key", tmp_path / "out" / "data"

    def preprocessed(rows, classes=("arithmetic", "rest"), window_seconds=5.0):
        labels_csv = pipeline_labels(rows, classes, tmp_path / "out" / "labels")
        fields = data_fields(rows, classes, labels_csv, window_seconds)
        return preprocess(rows, labels_csv, out, window_seconds, key, fields)

    preprocessed(rows)
    preprocessed(rows)
    assert len(calls) == 1  # the same inputs: reused
    stored = (out / "fingerprint.json").read_text()
    assert "p00" not in stored and "Subject" not in stored and "rest" not in stored  # hashes only
    changes = [
        ({"window_seconds": 4.0}, "the window length"),
        ({"classes": ("rest", "arithmetic")}, "the classes or their order"),
        ({"rows": [dataclasses.replace(rows[0], subject="p01"), *rows[1:]]}, "the labels table"),
        ({"rows": [dataclasses.replace(rows[0], split="val"), *rows[1:]]}, "the split"),
    ]
    for change, named in changes:
        caplog.clear()
        preprocessed(**{"rows": rows, **change})
        assert named in caplog.text and "preprocessing again" in caplog.text, change
        preprocessed(rows)  # back to the first inputs: made anew again
    assert len(calls) == 1 + 2 * len(changes)
    # an output from before fingerprints is made anew once
    (out / "fingerprint.json").unlink()
    preprocessed(rows)
    preprocessed(rows)
    assert len(calls) == 2 + 2 * len(changes)


def test_a_validation_or_test_recording_in_unlabeled_data_is_refused(shared_data, tmp_path, capsys):
    # a real preprocessed folder: subject 00 (training: pretraining reads it) and 28 (held out)
    unlabeled = tiny_data(tmp_path / "unlabeled", shared_data, ("00", "28"))
    key = tmp_path / "unlabeled" / "key"
    sha = {
        name: fingerprint.file_digest(shared_data / "eegmat" / name) for name in ("Subject00_2.edf", "Subject28_1.edf")
    }
    assert sha["Subject00_2.edf"] in pretraining_recordings(unlabeled, key)
    assert sha["Subject28_1.edf"] not in pretraining_recordings(unlabeled, key)  # its windows are held out
    other = tmp_path / "other.key"
    other.write_text("0" * 64 + "\n")
    other.chmod(0o600)
    assert sha["Subject28_1.edf"] in pretraining_recordings(unlabeled, other)  # held out under a key not told
    # the benchmark's test subject is unlabeled subject 00 under another name
    labels = labeled_folder(shared_data, tmp_path / "bench", {"01": "train", "02": "train", "28": "val", "00": "test"})
    rows, _ = read_label_table(labels, tmp_path / "bench" / "recordings")
    args = BenchmarkOptions(tmp_path / "o", unlabeled=(str(unlabeled),))
    with pytest.raises(ValueError) as err:
        check_pretraining_data(rows, args, key)
    assert str(err.value) == (
        "--labels line 8 (split test): its recording is also in --unlabeled's pretraining data; a test recording "
        "must not be pretrained on (as is line 9)"
    )
    # subject 28's windows are held out of the unlabeled folder's pretraining: not a leak
    assert check_pretraining_data([r for r in rows if r.split != "test"], args, key) == []
    # the command: exit 2, before any work, naming the line
    argv = ["folder", "--data", str(tmp_path / "bench" / "recordings"), "--labels", str(labels)]
    argv += ["--output", str(tmp_path / "o"), "--unlabeled", str(unlabeled), "--pseudonym_key_file", str(key)]
    assert main(argv) == 2
    assert "--labels line 8 (split test): its recording is also in --unlabeled's" in capsys.readouterr().err
    assert not (tmp_path / "o" / "data").exists()


def test_a_validation_or_test_recording_the_shared_encoder_read_is_refused(shared_data, tmp_path):
    labels = labeled_folder(shared_data, tmp_path)  # 28 validation, 29 test
    rows, _ = read_label_table(labels, tmp_path / "recordings")
    model = tmp_path / "shared" / "pretrain" / "model"
    model.mkdir(parents=True)
    args = BenchmarkOptions(tmp_path / "o", shared_encoder=str(model))
    record = {ENCODER_RECORDINGS: [fingerprint.file_digest(shared_data / "eegmat" / "Subject28_2.edf")]}
    (tmp_path / "shared" / "encoder.json").write_text(json.dumps(record))
    with pytest.raises(
        ValueError, match=r"^--labels line 7 \(split val\): its recording is also in --shared_encoder's"
    ):
        check_pretraining_data(rows, args, tmp_path / "key")
    # an older encoder.json, without the hashes: a warning that the check could not be made
    (tmp_path / "shared" / "encoder.json").write_text(json.dumps({"config": "cpu-tiny"}))
    (note,) = check_pretraining_data(rows, args, tmp_path / "key")
    assert note.startswith("--shared_encoder:") and "could not be checked" in note


def tiny_recipe(output: Path) -> RecipeOptions:
    """The tiny run's recipe (cpu-tiny, one epoch) for fine-tuning runs on its data folder."""
    task = json.loads((output / "benchmark.json").read_text())["run"]["classes"]
    return RecipeOptions(
        config="cpu-tiny",
        task="binary",
        pretrain_steps=4,
        record_task=RECORD_TASK,
        finetune_set=("epochs=1",),
        pretrain_set=("val_fraction=0",),
        finetune_defaults=(("model_overrides.id2label", dict(enumerate(task))),),
    )


def test_pretraining_and_fine_tuning_run_side_by_side_in_worker_processes(tiny_run, tmp_path):
    """The runs of ``run_methods`` in a pool of two workers: the pretraining is a job, a run that
    needs none (scratch) starts beside it, the others after it; each run's report, its parts timed
    as side by side; the same folders and reports a run in this process makes; ``meanwhile``
    called once, after the pretraining."""
    output, _ = tiny_run
    opts = tiny_recipe(output)
    data, methods = str(output / "data"), ["eegfm", "linear_probe", "scratch"]
    pretrained = pretrain_folder(tmp_path) / "model" / "config.json"
    calls = []
    with stopwatch.recording() as times, JobPool(Plan(2, 1)) as pool:
        found = run_methods(
            data, tmp_path, methods, [0], opts, {"corpus": {"corpus_split": True}}, [data], pool=pool,
            meanwhile=lambda: calls.append(pretrained.is_file()),
        )  # fmt: skip
    assert calls == [True]
    runs = {method: tmp_path / "runs" / method / "corpus" / "seed0" for method in methods}
    for method in methods:
        [report] = found[method]["corpus"]
        assert set(report["val"]) >= {"balanced_accuracy", "auroc", "auprc"}
        assert (runs[method] / "model" / "config.json").is_file()
    assert {"fine-tuning", "pretraining"} <= times.overlapping
    assert {item for group, item in times.items if group == "fine-tuning"} == set(methods)
    started = {method: (folder / "fingerprint.json").stat().st_mtime for method, folder in runs.items()}
    assert started["scratch"] < pretrained.stat().st_mtime < min(started["eegfm"], started["linear_probe"])


def test_a_linear_probe_runs_once_for_every_seed_and_another_seed_saves_the_same_model(tiny_run, tmp_path):
    """A linear probe with a fitted head (mode linear, head_init probe) reads no seed: ``run_methods``
    runs its first seed and reports that run for every seed, and says so; the premise checked: the
    same run with another seed saves the same bytes."""
    output, _ = tiny_run
    opts = dataclasses.replace(tiny_recipe(output), eegfm_settings=EEGFM_SETTINGS)
    data, split = str(output / "data"), {"corpus_split": True}
    with stopwatch.recording() as times:
        found = run_methods(data, tmp_path, ["linear_probe", "eegfm"], [0, 1], opts, {"corpus": split}, [data])
    first, second = found["linear_probe"]["corpus"]
    assert first == second and Path(first["run"]).name == "seed0"
    assert not (tmp_path / "runs" / "linear_probe" / "corpus" / "seed1").exists()
    assert [Path(r["run"]).name for r in found["eegfm"]["corpus"]] == ["seed0", "seed1"]  # full fine-tuning draws
    assert times.items["fine-tuning", "linear_probe"].calls == 1
    assert "linear_probe: one run serves every seed" in seeds_note(["eegfm", "linear_probe"], opts, [0, 1])
    assert seeds_note(["linear_probe"], dataclasses.replace(opts, eegfm_settings=()), [0, 1]) is None  # SGD head

    own = finetune(
        data, pretrain_folder(tmp_path) / "model", tmp_path / "seed1", METHODS["linear_probe"], 1, opts, split
    )
    assert own["val"] == first["val"]
    saved = [(run / "model" / "model.safetensors").read_bytes() for run in (Path(first["run"]), tmp_path / "seed1")]
    assert saved[0] == saved[1]
