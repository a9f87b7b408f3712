"""The folder benchmark on real recordings: eegmat's files with a CSV of file,subject,label,split
run end to end (tiny), a seeded split when the CSV has none, an error naming the line for each bad
row, and no validation or test subject's window in any training loader."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from eegfm.evaluation.benchmark.cli import main
from eegfm.evaluation.benchmark.folder import check_splits, read_label_table, seeded_split
from eegfm.training.data import scan_windows
from tests.evaluation.benchmark.test_eegmat import loader_batches

# subject -> split: two training subjects, one validation, one test
SPLIT = {"00": "train", "01": "train", "28": "val", "29": "test"}
NAMED_ROOT = "Doe_Jane_1961-02-03"  # a clinic's folder named after a person: never in an output


def labeled_folder(
    shared: Path, folder: Path, split=SPLIT, columns=("file", "subject", "label", "split"), root: str = "recordings"
) -> Path:
    """eegmat's files for ``split``'s subjects, linked under ``folder/root`` as a clinic might
    keep them (a folder per subject), and ``folder/labels.csv`` with ``columns``; the CSV's path."""
    rows = []
    for subject, part in ((s, p) for s in split for p in (1, 2)):
        name = f"Subject{subject}_{part}.edf"
        target = folder / root / f"p{subject}" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(shared / "eegmat" / name)
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
        argv += ["--pretrain_steps", "4"]
        argv += ["--finetune_set", "epochs=1", "--pretrain_set", "val_fraction=0"]
        assert main(argv) == 0
    return base / "out", seen


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
    assert report["band_power_lr.val.auroc"]["mean"] > 0.6  # the band powers beat chance
    assert (output / "benchmark.png").stat().st_size > 10_000
    # the folder's, files' and subjects' names are the user's: none reaches the outputs
    for path in output.rglob("*"):
        if path.is_file() and path.parent.name != "labels":  # labels/: the pipeline's input, as private as the CSV
            data = path.read_bytes()
            assert NAMED_ROOT.encode() not in data and b"Subject0" not in data, path
            assert output / "data" not in path.parents or b"p00" not in data, path


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
