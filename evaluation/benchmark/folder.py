"""The folder suite: any folder of recordings the pipeline reads, labeled by a CSV of
``file,subject,label,split`` (other columns ignored). The eegmat suite is this suite run on
eegmat's own table (``benchmark.eegmat``): one code path from the CSV to the report.

- ``file``: relative to ``--data``; ``subject``: who was recorded (a subject stays in one split);
  ``label``: the class's name (two or more classes); ``split``: ``train``, ``val`` or ``test``.
- Without a ``split`` column, subjects are split by a seeded draw (``--split_seed``: 70 % training,
  15 % validation, 15 % test) and the split is written to ``split.csv`` by CSV line.
- ``--classes`` orders the class names (a label's index; with two classes the second is the
  positive one AUPRC scores); by default they are sorted.
- A bad row is an error naming its line and column; a file's name or subject is never echoed,
  as either may name the patient. A file whose every window the pipeline drops is listed by its
  line in the report, and the run goes on.

The recordings are preprocessed where they are, through the pipeline's generic adapter, with a
``labels.csv`` this suite writes (absolute paths, the class index, the subject, the split).
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eegfm.contract import layout
from eegfm.core.logs import get_logger
from eegfm.evaluation.benchmark.labeled import Suite, evaluate
from eegfm.evaluation.benchmark.preprocessing import benchmark_key, preprocess_windows

log = get_logger(__name__)
RECORD_TASK = "folder"  # the windows' task in the preprocessed records
SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)


@dataclasses.dataclass(frozen=True)
class LabelRow:
    line: int  # the CSV's line number: how errors and reports name a row
    file: Path
    subject: str
    label: str
    split: str


def _error(line: int, column: str, what: str) -> ValueError:
    return ValueError(f"--labels line {line}: {column}: {what}")


def _cells(row: dict, line: int, data: Path, has_split: bool) -> LabelRow:
    for column in ("file", "subject", "label"):
        if not (row.get(column) or "").strip():
            raise _error(line, column, "expected a value; the cell is empty")
    path = data / row["file"].strip()
    if not path.exists():  # the name is not echoed: it may name the patient
        raise _error(line, "file", "no such file or folder under --data (the name is not echoed)")
    split = (row.get("split") or "").strip().lower() if has_split else ""
    if has_split and split not in SPLITS:
        raise _error(line, "split", f"expected one of {', '.join(SPLITS)}; got {split[:12]!r}")
    return LabelRow(line, path, row["subject"].strip(), row["label"].strip(), split)


def read_label_table(labels: Path, data: Path) -> tuple[list[LabelRow], bool]:
    """The CSV's rows, checked cell by cell, and whether it has a ``split`` column; ValueError
    naming the line and column of the first bad cell."""
    with labels.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("file", "subject", "label") if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"--labels: expected the columns file, subject, label (and split); missing {missing}")
        has_split = "split" in reader.fieldnames
        rows = [_cells(row, reader.line_num, data, has_split) for row in reader]
    if not rows:
        raise ValueError("--labels: expected a row per recording; the table has none")
    _check_unique_files(rows)
    return rows, has_split


def _check_unique_files(rows: list[LabelRow]) -> None:
    seen: dict[Path, int] = {}
    for row in rows:
        if (first := seen.setdefault(row.file.resolve(), row.line)) != row.line:
            raise _error(row.line, "file", f"the same file as line {first}; expected one row per recording")


def seeded_split(rows: list[LabelRow], seed: int) -> list[LabelRow]:
    """``rows`` with a split drawn by subject: a seeded shuffle of the subjects, cut 70/15/15 (at
    least one subject in each split where there are three)."""
    subjects = sorted({row.subject for row in rows})
    order = np.random.default_rng(seed).permutation(len(subjects))
    n_val = max(1, round(SPLIT_FRACTIONS[1] * len(subjects))) if len(subjects) >= 3 else 0
    n_test = max(1, round(SPLIT_FRACTIONS[2] * len(subjects))) if len(subjects) >= 3 else 0
    split_of = {}
    for rank, index in enumerate(order):
        split_of[subjects[index]] = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
    return [dataclasses.replace(row, split=split_of[row.subject]) for row in rows]


def check_splits(rows: list[LabelRow], order: Sequence[str] = ()) -> tuple[str, ...]:
    """The classes: ``order`` where given (a label's index is its place; for two classes the second
    is the positive one AUPRC scores), else the sorted names. ValueError naming a row for a subject
    in two splits or a class with no training row, and for fewer than two classes or an ``order``
    that is not the table's classes."""
    first: dict[str, LabelRow] = {}
    for row in rows:
        earlier = first.setdefault(row.subject, row)
        if earlier.split != row.split:
            raise _error(
                row.line,
                "split",
                f"{row.split}, but its subject is in {earlier.split} on line {earlier.line}; "
                "expected each subject in one split",
            )
    trained = {row.label for row in rows if row.split == "train"}
    for row in rows:
        if row.label not in trained:
            raise _error(row.line, "label", "a class no training row has; expected every class in training")
    if len(trained) < 2:
        raise ValueError(f"--labels: expected two or more classes; the training rows have {len(trained)}")
    if not any(row.split == "val" for row in rows):
        raise ValueError("--labels: expected validation rows (split val): they choose checkpoints and C")
    if order and (len(set(order)) != len(order) or set(order) != trained):
        raise ValueError(f"--classes: expected each of the table's classes once, in any order; got {len(order)} names")
    return tuple(order) if order else tuple(sorted(trained))


def pipeline_labels(rows: list[LabelRow], classes: tuple[str, ...], folder: Path, task: str = RECORD_TASK) -> Path:
    """The generic adapter's ``labels.csv`` for ``rows``: absolute paths, the windows' ``task``, the
    class index, subject and split."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "labels.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "patient_id", "task", "label", "split"])
        for row in rows:
            writer.writerow([str(row.file.resolve()), row.subject, task, classes.index(row.label), row.split])
    path.chmod(0o600)  # it names the files and subjects: the user's own, kept as private as their CSV
    return path


def preprocess(rows: list[LabelRow], labels_csv: Path, output: Path, window_seconds: float, key: Path) -> str:
    """The pipeline on the table's files (read where they are) with its labels; reused once complete.
    Only the suite's own ``labels/`` folder is shown: every name of the user's folders is a token."""
    inputs = [str(row.file.resolve()) for row in rows] + [str(labels_csv)]
    return preprocess_windows(inputs, output, key, "edf", window_seconds, [str(labels_csv.parent)])


def dropped_rows(rows: list[LabelRow], data: str, labels_csv: Path, key: Path) -> list[int]:
    """The lines of the rows whose recording gave no window (quarantined, or every window dropped),
    matched to the manifest by the tokens the pipeline names them with."""
    from eegfm.pipelines.deid import load_key
    from eegfm.pipelines.redact import PathRedactor

    manifest = json.loads((Path(data) / layout.MANIFEST).read_text())
    windows = {entry["source"]: entry.get("windows", 0) for entry in manifest.get("inputs", [])}
    redactor = PathRedactor(load_key(key), True, [str(labels_csv.parent)])
    return [row.line for row in rows if not windows.get(redactor.path(str(row.file.resolve())), 0)]


def benchmark_table(
    rows: list[LabelRow], output: Path, args, suite: Suite, window_seconds: float, extra: dict | None = None
) -> dict[str, Any]:
    """Benchmark a checked table (:func:`check_splits`): its recordings through the pipeline where
    they are, then the baselines and eegfm's rows (``labeled.evaluate``). The folder and eegmat
    suites both run this."""
    key = benchmark_key(output, args.pseudonym_key_file)
    labels_csv = pipeline_labels(rows, suite.classes, output / "labels", suite.record_task)
    data = preprocess(rows, labels_csv, output / "data", window_seconds, key)
    notes = []
    if dropped := dropped_rows(rows, data, labels_csv, key):
        notes.append(f"--labels lines {', '.join(map(str, dropped))}: no window (quarantined or every window dropped)")
        log.warning(notes[-1])
    extra = {**(extra or {}), "dropped_lines": dropped, "window_seconds": window_seconds}
    return evaluate(data, output, args, suite, notes, extra)


def run(args) -> dict[str, Any]:
    output = Path(args.output)
    rows, has_split = read_label_table(Path(args.labels), Path(args.data))
    if not has_split:
        rows = seeded_split(rows, args.split_seed)
        output.mkdir(parents=True, exist_ok=True)
        with (output / "split.csv").open("w", newline="") as fh:  # by line: the CSV's names stay in it
            csv.writer(fh).writerows([("line", "split"), *((row.line, row.split) for row in rows)])
    classes = check_splits(rows, args.classes)
    suite = Suite(
        name="folder",
        # the folder's own name stays out of the report: a clinic may name folders after people
        title=f"labeled folder: {' vs '.join(classes) if len(classes) < 5 else f'{len(classes)} classes'}",
        task="binary" if len(classes) == 2 else "multiclass",
        record_task=RECORD_TASK,
        classes=classes,
        finetune_defaults=(_id2label(classes),),
    )
    return benchmark_table(rows, output, args, suite, args.window_seconds, {"split_made": not has_split})


def _id2label(classes: tuple[str, ...]) -> str:
    """The fine-tuning setting naming the classes by index (names quoted: YAML reads them as strings)."""
    return "model_overrides.id2label={" + ", ".join(f"{i}: {json.dumps(c)}" for i, c in enumerate(classes)) + "}"
