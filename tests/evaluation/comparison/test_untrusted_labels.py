"""The folder benchmark trusts no ``--labels`` CSV (issue 78, cases 12 to 14): a ``file`` outside
``--data`` is refused by its line, never read; a line or row too long is refused by its line after
reading a bounded part of it; a class name in any Unicode reaches the fine-tuned model's label map
and reads back the same."""

from __future__ import annotations

import csv
import json
import os
import time
import tracemalloc
from pathlib import Path

import pytest

from eegfm.evaluation.comparison.cli import main
from eegfm.evaluation.comparison.folder import check_splits, folder_suite, read_label_table
from eegfm.training.config import load_config
from eegfm.training.finetune.initial_model import load_model
from eegfm.training.finetune.plan import class_names
from tests.evaluation.comparison.test_eegmat import place

HEADER = ["file", "subject", "label", "split"]


def _table(folder: Path, rows: list[list[str]]) -> Path:
    path = folder / "labels.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([HEADER, *rows])
    return path


@pytest.fixture
def data(shared_data, tmp_path) -> Path:
    """--data with four real recordings, and one beside it (outside)."""
    for name in ("Subject00_1.edf", "Subject00_2.edf", "Subject01_1.edf", "Subject01_2.edf"):
        place(shared_data / "eegmat" / name, tmp_path / "data" / name)
    place(shared_data / "eegmat" / "Subject02_1.edf", tmp_path / "outside" / "Subject01_1.edf")
    return tmp_path / "data"


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("../../../../../../etc/passwd", "an absolute path or one with '..'"),
        ("/etc/passwd", "an absolute path or one with '..'"),
        ("Subject00_1.edf/../../outside/Subject01_1.edf", "an absolute path or one with '..'"),
        ("escape.edf", "a link out of --data"),  # a link in --data to a recording beside it
        ("loop.edf", "no such file or folder under --data"),
        (".", "a link out of --data, or --data itself"),
        ("x" * 300 + ".edf", "no such file or folder under --data"),  # a name the file system refuses
    ],
)
def test_a_file_outside_data_is_refused_by_its_line_and_never_echoed(data, tmp_path, name, said):
    (data / "escape.edf").symlink_to(tmp_path / "outside" / "Subject01_1.edf")
    (data / "loop.edf").symlink_to(data / "loop.edf")
    rows = [["Subject00_1.edf", "p0", "rest", "train"], [name, "p1", "task", "train"]]
    with pytest.raises(ValueError) as err:
        read_label_table(_table(tmp_path, rows), data)
    assert str(err.value).startswith(f"--labels line 3: file: {said}"), err.value
    assert name not in str(err.value) and "passwd" not in str(err.value)


def test_a_link_inside_data_is_a_recording_and_the_command_refuses_an_escape_before_any_work(data, tmp_path, capsys):
    (data / "alias.edf").symlink_to(data / "Subject00_2.edf")  # inside --data: fine
    rows, _ = read_label_table(_table(tmp_path, [["alias.edf", "p0", "rest", "train"]]), data)
    assert rows[0].file == data / "alias.edf"
    labels = _table(tmp_path, [["Subject00_1.edf", "p0", "rest", "train"], ["../../etc/passwd", "p1", "x", "val"]])
    argv = ["folder", "--data", str(data), "--labels", str(labels), "--output", str(tmp_path / "out")]
    assert main(argv) == 2
    assert "--labels line 3: file: an absolute path or one with '..'" in capsys.readouterr().err
    assert not (tmp_path / "out" / "data").exists() and not (tmp_path / "out" / "labels").exists()


def _refused(labels: Path, data: Path) -> tuple[str, float, int]:
    """The error reading ``labels`` gives, the seconds it took and the peak bytes Python allocated."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ValueError) as err:
            read_label_table(labels, data)
        return str(err.value), time.perf_counter() - started, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_long_line_a_long_row_and_bytes_not_utf8_are_refused_by_their_line(data, tmp_path):
    labels = _table(tmp_path, [["Subject00_1.edf", "p0", "rest", "train"], ["Subject00_2.edf", "p" * 200_000]])
    said, _, _ = _refused(labels, data)
    assert said == "--labels line 3: expected at most 65536 bytes a line"
    # a 1 GB line (sparse: no disk): refused after its first 64 KiB, in well under a second
    with labels.open("w") as fh:
        fh.write(",".join(HEADER) + "\nSubject00_1.edf,p0,rest,train\nSubject00_2.edf,")
    os.truncate(labels, 1 << 30)
    said, seconds, peak = _refused(labels, data)
    assert said == "--labels line 3: expected at most 65536 bytes a line" and seconds < 5 and peak < 4 << 20
    # quoted cells over many short lines: one over the csv module's cell limit, three over a row's
    quoted = '"' + "a\n" * 70_000 + '"'
    labels.write_text(",".join(HEADER) + f"\nSubject00_1.edf,{quoted},rest,train\n")
    assert _refused(labels, data)[0] == (
        "--labels line 65538: field larger than field limit (131072); expected a CSV row"
    )
    quoted = '"' + "a\n" * 50_000 + '"'
    labels.write_text(",".join(HEADER) + f"\nSubject00_1.edf,{quoted},{quoted},{quoted}\n")
    said, _, _ = _refused(labels, data)
    assert said.startswith("--labels line 131062: a row over 262144 bytes"), said
    labels.write_bytes(b"file,subject,label,split\nSubject00_1.edf,p0,rest,train\nSubject00_2.edf,p\xff,task,val\n")
    assert _refused(labels, data)[0] == "--labels line 3: byte 18 is not UTF-8; expected UTF-8 text"
    labels.write_bytes(b"file,subject,label,split\nSubject00_1.edf,p0\x00,rest,train\n")
    assert _refused(labels, data)[0] == "--labels line 2: a NUL byte; expected text"
    # a cell within the line limit but longer than any name
    labels.write_text(",".join(HEADER) + "\nSubject00_1.edf,p0," + "r" * 5000 + ",train\n")
    assert _refused(labels, data)[0] == "--labels line 2: label: 5000 characters; expected at most 4096"


def test_a_class_name_in_any_unicode_reaches_the_fine_tuned_label_map_intact(data, encoder, tmp_path):
    classes = ("rest 😀", "task\u00e9\u0301", "中文 \U0001f9e0")  # an emoji, a combining accent, CJK
    files = ("Subject00_1.edf", "Subject00_2.edf", "Subject01_1.edf", "Subject01_2.edf")
    people = [
        ("p0", classes[0], "train"),
        ("p1", classes[1], "train"),
        ("p2", classes[2], "train"),
        ("p3", classes[0], "val"),
    ]
    rows, _ = read_label_table(_table(tmp_path, [[f, *cells] for f, cells in zip(files, people)]), data)
    assert [row.label for row in rows] == [cells[1] for cells in people]
    suite = folder_suite(check_splits(rows, classes))
    cfg = load_config("cpu-tiny", "finetune").with_settings({**dict(suite.finetune_defaults), "task": suite.task})
    assert class_names(cfg) == list(classes)
    model, fresh = load_model(encoder, cfg)  # fine-tuning's own start: a new head for these classes
    assert fresh
    model.save_pretrained(tmp_path / "model")  # the label map a fine-tuned model carries (config.json)
    saved = json.loads((tmp_path / "model" / "config.json").read_text(encoding="utf-8"))
    assert [saved["id2label"][str(k)] for k in range(3)] == list(classes)
    assert "".join(saved["id2label"].values()).encode("utf-8").decode("utf-8") == "".join(classes)  # no surrogate
