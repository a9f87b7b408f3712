"""The folder suite: any folder of recordings the pipeline reads, labeled by a CSV of
``file,subject,label,split`` (other columns ignored). The eegmat suite is this suite run on
eegmat's own table (``benchmark.eegmat``): one code path from the CSV to the report.

- ``file``: relative to ``--data``; ``subject``: who was recorded (a subject stays in one split);
  ``label``: the class's name (two or more classes); ``split``: ``train``, ``val`` or ``test``.
- Without a ``split`` column, subjects are split by a seeded draw (``--split_seed``: 70 % training,
  15 % validation, 15 % test) stratified by each subject's label (a subject with rows of several
  labels: by its set of labels), and the split is written to ``split.csv`` by CSV line.
- A validation or test split with fewer than two people of a class is warned of, in the log and
  the report: its metrics for that class are one person's.
- ``--unlabeled`` and ``--shared_encoder`` (its ``encoder.json``) must not hold a validation or test
  recording (the same bytes, under any name): a ValueError names the line.
- ``--classes`` orders the class names (a label's index; with two classes the second is the
  positive one AUPRC scores); by default they are sorted.
- A bad row is an error naming its line and column; a file's name or subject is never echoed,
  as either may name the patient. A file whose every window the pipeline drops is listed by its
  line in the report, and the run goes on.

The recordings are preprocessed where they are, through the pipeline's generic adapter, with a
``labels.csv`` this suite writes (absolute paths, the class index, the subject, the split).
``OUT/data/fingerprint.json`` hashes that table, the split, the classes in order and the window
length (:func:`data_fields`); a rerun with other ones preprocesses again, and the pretraining
and runs made from the old windows are made anew (``benchmark.fingerprint``).
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
from eegfm.core.text_safety import bounded_csv_rows
from eegfm.evaluation.comparison import fingerprint
from eegfm.evaluation.comparison.labeled import Suite, evaluate
from eegfm.evaluation.comparison.options import BenchmarkOptions, FolderOptions
from eegfm.evaluation.comparison.preprocessing import (
    ENCODER_RECORDINGS,
    benchmark_key,
    preprocess_windows,
    pretraining_recordings,
)

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


MAX_CELL = 4096  # characters of a cell read (PATH_MAX for ``file``); a longer one is no name


def _inside(data: Path, line: int, name: str) -> Path:
    """``data / name``, a file or folder that exists inside ``data`` once every symlink is followed:
    a table from elsewhere must not make the pipeline read ``../../etc/passwd``, an absolute path or
    a link leaving ``--data``. The name is never echoed: it may name the patient."""
    relative = Path(name)
    if relative.is_absolute() or ".." in relative.parts:
        raise _error(line, "file", "an absolute path or one with '..'; expected a path relative to --data, inside it")
    root = data.resolve()
    try:
        found = (data / relative).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):  # missing, a link loop, a NUL, a name too long
        raise _error(line, "file", "no such file or folder under --data (the name is not echoed)") from None
    if found == root or not found.is_relative_to(root):
        raise _error(line, "file", "a link out of --data, or --data itself; expected a recording inside --data")
    return data / relative


def _cells(row: dict, line: int, data: Path, has_split: bool) -> LabelRow:
    for column in ("file", "subject", "label", *(("split",) if has_split else ())):
        if len(row.get(column) or "") > MAX_CELL:
            raise _error(line, column, f"{len(row[column])} characters; expected at most {MAX_CELL}")
    for column in ("file", "subject", "label"):
        if not (row.get(column) or "").strip():
            raise _error(line, column, "expected a value; the cell is empty")
    path = _inside(data, line, row["file"].strip())
    split = (row.get("split") or "").strip().lower() if has_split else ""
    if has_split and split not in SPLITS:
        raise _error(line, "split", f"expected one of {', '.join(SPLITS)}; got {split[:12]!r}")
    return LabelRow(line, path, row["subject"].strip(), row["label"].strip(), split)


def read_label_table(labels: Path, data: Path) -> tuple[list[LabelRow], bool]:
    """The CSV's rows, checked cell by cell, and whether it has a ``split`` column; ValueError
    naming the line (and column) of the first bad one. Read a line at a time with bounded lines and
    rows (``core.text_safety.bounded_csv_rows``): the table may come from anyone."""
    found = bounded_csv_rows(labels, "--labels")
    _, header = next(found, (0, []))
    header = [name.strip() for name in header]
    missing = [c for c in ("file", "subject", "label") if c not in header]
    if missing:
        raise ValueError(f"--labels: expected the columns file, subject, label (and split); missing {missing}")
    has_split = "split" in header
    rows = []
    for line, cells in found:
        if cells:  # csv.DictReader's rule: a blank line is no row
            rows.append(_cells(dict(zip(header, cells)), line, data, has_split))
    if not rows:
        raise ValueError("--labels: expected a row per recording; the table has none")
    _check_unique_files(rows)
    return rows, has_split


def _check_unique_files(rows: list[LabelRow]) -> None:
    seen: dict[Path, int] = {}
    for row in rows:
        if (first := seen.setdefault(row.file.resolve(), row.line)) != row.line:
            raise _error(row.line, "file", f"the same file as line {first}; expected one row per recording")


def strata(rows: list[LabelRow]) -> dict[str, list[str]]:
    """The subjects (sorted) by stratum: a subject's label, or for a subject with rows of several
    labels (eegmat's rest and arithmetic per person) its sorted labels joined by ``+``."""
    labels: dict[str, set[str]] = {}
    for row in rows:
        labels.setdefault(row.subject, set()).add(row.label)
    found: dict[str, list[str]] = {}
    for subject in sorted(labels):
        found.setdefault("+".join(sorted(labels[subject])), []).append(subject)
    return dict(sorted(found.items()))


def _held_out(n: int, held: dict[str, int]) -> dict[str, int]:
    """How many of a stratum's ``n`` subjects go to validation and test: 15 % each, at least one
    from three on; of two, one, to whichever of the two has fewer so far (``held``: the counts)."""
    if n >= 3:
        return {split: max(1, round(fraction * n)) for split, fraction in zip(SPLITS[1:], SPLIT_FRACTIONS[1:])}
    if n == 2:
        return {"val": 1, "test": 0} if held["val"] <= held["test"] else {"val": 0, "test": 1}
    return {"val": 0, "test": 0}


def seeded_split(rows: list[LabelRow], seed: int) -> list[LabelRow]:
    """``rows`` with a split drawn by subject, stratified by :func:`strata`: each stratum's subjects
    shuffled by ``seed`` and cut 70/15/15 (each stratum of three or more in both validation and
    test), and at least one subject in validation and one in test where there are three."""
    rng = np.random.default_rng(seed)
    split_of: dict[str, str] = {}
    held = {"val": 0, "test": 0}
    shuffled = {}
    for name, subjects in strata(rows).items():
        order = [subjects[i] for i in rng.permutation(len(subjects))]
        shuffled[name] = order
        counts = _held_out(len(order), held)
        for rank, subject in enumerate(order):
            split_of[subject] = "val" if rank < counts["val"] else "test" if rank < sum(counts.values()) else "train"
        held = {split: held[split] + counts[split] for split in held}
    if len(split_of) >= 3:
        for split in (s for s in ("val", "test") if not held[s]):
            # strata too small to give one: the last training subject of the one training most
            trained = {name: [s for s in subjects if split_of[s] == "train"] for name, subjects in shuffled.items()}
            split_of[trained[max(trained, key=lambda name: len(trained[name]))][-1]] = split
    return [dataclasses.replace(row, split=split_of[row.subject]) for row in rows]


def split_warnings(rows: list[LabelRow], classes: Sequence[str]) -> list[str]:
    """A warning (logged, and returned for the report) per validation or test split with fewer than
    two people of a class: its metrics for that class are one person's, or none. Class names and
    counts only: a subject's or file's name may name the patient."""
    notes = []
    for split in ("val", "test"):
        people: dict[str, set[str]] = {name: set() for name in classes}
        for row in (r for r in rows if r.split == split):
            people.setdefault(row.label, set()).add(row.subject)
        if not any(people.values()):
            continue  # no such split at all: the report says so (labeled._split_counts)
        for name, found in people.items():
            if len(found) == 1:
                notes.append(f"{split}: 1 person of class {name!r} (fewer than two: its metrics are one person's)")
            elif not found:
                notes.append(f"{split}: no person of class {name!r} (its metrics cannot tell that class)")
    for note in notes:
        log.warning(note)
    return notes


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


def data_fields(rows: list[LabelRow], classes: Sequence[str], labels_csv: Path, window_seconds: float) -> dict:
    """What the preprocessed windows depend on (their ``fingerprint.json``, which pretraining and
    every run fold into their own): the pipeline's labels table (paths, class indices, subjects,
    splits: hashed, never copied), the split by line, the classes in order, the window length."""
    return {
        "labels": fingerprint.file_digest(labels_csv),
        "split": [(row.line, row.split) for row in rows],
        "classes": list(classes),
        "window_seconds": window_seconds,
    }


def preprocess(
    rows: list[LabelRow], labels_csv: Path, output: Path, window_seconds: float, key: Path, fields: dict | None = None
) -> str:
    """The pipeline on the table's files (read where they are) with its labels; reused once complete
    while ``fields`` (:func:`data_fields`) are the same. Only the suite's own ``labels/`` folder is
    shown: every name of the user's folders is a token."""
    inputs = [str(row.file.resolve()) for row in rows] + [str(labels_csv)]
    return preprocess_windows(inputs, output, key, "edf", window_seconds, [str(labels_csv.parent)], fields)


def dropped_rows(rows: list[LabelRow], data: str, labels_csv: Path, key: Path) -> list[int]:
    """The lines of the rows whose recording gave no window (quarantined, or every window dropped),
    matched to the manifest by the tokens the pipeline names them with."""
    from eegfm.pipelines.privacy.deid import load_key
    from eegfm.pipelines.privacy.redact import PathRedactor

    manifest = json.loads((Path(data) / layout.MANIFEST).read_text())
    windows = {entry["source"]: entry.get("windows", 0) for entry in manifest.get("inputs", [])}
    redactor = PathRedactor(load_key(key), True, [str(labels_csv.parent)])
    return [row.line for row in rows if not windows.get(redactor.path(str(row.file.resolve())), 0)]


def recording_sha256(path: Path) -> str:
    """A recording's content hash as the pipeline's manifest gives it (``source_sha256``): the
    SHA-256 of a file's bytes; of a folder recording (EGI's MFF), the pipeline's own digest."""
    if not path.is_dir():
        return fingerprint.file_digest(path)
    from eegfm.pipelines.readers.local_copy import localized

    with localized(str(path)) as (_, sha):
        return sha


def encoder_recordings(model: Path) -> set[str] | None:
    """The content hashes of the recordings the shared encoder in ``model`` pretrained on, from the
    ``encoder.json`` that ``benchmark pretrain`` wrote beside its ``pretrain/model``; None where
    there is none, or an older one without them."""
    for place in (model.parent.parent, model.parent):
        if (path := place / "encoder.json").is_file():
            found = json.loads(path.read_text(encoding="utf-8")).get(ENCODER_RECORDINGS)
            return set(found) if found is not None else None
    return None


def pretraining_sources(options: BenchmarkOptions, key: Path) -> tuple[list[tuple[str, set[str]]], list[str]]:
    """``(what, content hashes)`` of each pretraining data source beside the benchmark's own
    (``--unlabeled``'s folders, ``--shared_encoder``), and notes on those that cannot be checked."""
    unlabeled = list(options.unlabeled)
    sources, notes = [], []
    for number, folder in enumerate(unlabeled, 1):
        what = "--unlabeled's pretraining data" + (f" (its folder {number})" if len(unlabeled) > 1 else "")
        if not (Path(folder) / layout.MANIFEST).is_file():
            raise FileNotFoundError(
                f"--unlabeled folder {number}: no {layout.MANIFEST}; expected a preprocessed folder"
            )
        sources.append((what, pretraining_recordings(folder, key)))
    if encoder := options.shared_encoder:
        if (found := encoder_recordings(Path(encoder))) is None:
            notes.append(
                "--shared_encoder: no encoder.json listing its recordings' hashes beside it (an older one?): "
                "whether it pretrained on a validation or test recording could not be checked"
            )
            log.warning(notes[-1])
        else:
            sources.append(("--shared_encoder's pretraining data", found))
    return sources, notes


def check_pretraining_data(rows: list[LabelRow], options: BenchmarkOptions, key: Path) -> list[str]:
    """Refuse (ValueError naming the ``--labels`` line) a validation or test recording that
    ``--unlabeled`` or ``--shared_encoder`` pretrained on, by content hash: the same bytes under any
    name; returns the notes of what could not be checked."""
    sources, notes = pretraining_sources(options, key)
    leaks = []
    for row in (r for r in rows if sources and r.split in ("val", "test")):
        digest = recording_sha256(row.file)
        leaks += [(row, what) for what, digests in sources if digest in digests]
    if leaks:
        (row, what), more = leaks[0], sorted({r.line for r, _ in leaks[1:]} - {leaks[0][0].line})
        split = {"val": "validation", "test": "test"}[row.split]
        also = f" (as {'are lines' if len(more) > 1 else 'is line'} {', '.join(map(str, more))})" if more else ""
        raise ValueError(
            f"--labels line {row.line} (split {row.split}): its recording is also in {what}; a {split} "
            f"recording must not be pretrained on{also}"
        )
    return notes


def benchmark_table(
    rows: list[LabelRow], options: BenchmarkOptions, suite: Suite, window_seconds: float, extra: dict | None = None
) -> dict[str, Any]:
    """Benchmark a checked table (:func:`check_splits`): its recordings through the pipeline where
    they are, then the baselines and eegfm's rows (``labeled.evaluate``). The folder and eegmat
    suites both run this."""
    output = options.output
    key = benchmark_key(output, options.pseudonym_key_file)
    notes = check_pretraining_data(rows, options, key)  # before any work: a leak is refused at once
    notes += split_warnings(rows, suite.classes)
    labels_csv = pipeline_labels(rows, suite.classes, output / "labels", suite.record_task)
    fields = data_fields(rows, suite.classes, labels_csv, window_seconds)
    data = preprocess(rows, labels_csv, output / "data", window_seconds, key, fields)
    if dropped := dropped_rows(rows, data, labels_csv, key):
        notes.append(f"--labels lines {', '.join(map(str, dropped))}: no window (quarantined or every window dropped)")
        log.warning(notes[-1])
    extra = {**(extra or {}), "dropped_lines": dropped, "window_seconds": window_seconds}
    return evaluate(data, options, suite, window_seconds, notes, extra)


def run(options: BenchmarkOptions, corpus: FolderOptions) -> dict[str, Any]:
    output = options.output
    rows, has_split = read_label_table(corpus.labels, corpus.data)
    if not has_split:
        rows = seeded_split(rows, corpus.split_seed)
        output.mkdir(parents=True, exist_ok=True)
        with (output / "split.csv").open("w", newline="") as fh:  # by line: the CSV's names stay in it
            csv.writer(fh).writerows([("line", "split"), *((row.line, row.split) for row in rows)])
    suite = folder_suite(check_splits(rows, corpus.classes))
    return benchmark_table(rows, options, suite, corpus.window_seconds, {"split_made": not has_split})


def folder_suite(classes: tuple[str, ...]) -> Suite:
    """The folder suite of a table of ``classes`` (:func:`check_splits`); its fine-tuning runs name
    them by index (``model_overrides.id2label``: the names themselves, no YAML text between)."""
    return Suite(
        name="folder",
        # the folder's own name stays out of the report: a clinic may name folders after people
        title=f"labeled folder: {' vs '.join(classes) if len(classes) < 5 else f'{len(classes)} classes'}",
        task="binary" if len(classes) == 2 else "multiclass",
        record_task=RECORD_TASK,
        classes=classes,
        finetune_defaults=(("model_overrides.id2label", dict(enumerate(classes))),),
    )
