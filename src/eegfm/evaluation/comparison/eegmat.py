"""The eegmat suite: rest vs mental arithmetic on PhysioNet's recordings, on the published split
(sorted subjects 00-27 train, 28-31 validation, 32-35 test), 5 s windows.

It is the folder suite (``benchmark.folder``) on eegmat's own table, which this module writes to
``OUT/eegmat_labels.csv`` (``file,subject,label,split``): the same command a user runs on a
labeled corpus of their own, with eegmat's title, class order and published numbers. So are its
split warnings, its leak check of ``--unlabeled`` and ``--shared_encoder``, and its fingerprints:
recordings added to ``--data`` change the table, and the windows and runs are made anew.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from eegfm.core.logs import get_logger
from eegfm.core.tasks import FINETUNE_TASKS
from eegfm.evaluation.comparison import report
from eegfm.evaluation.comparison.folder import benchmark_table, check_splits, read_label_table
from eegfm.evaluation.comparison.labeled import Suite
from eegfm.evaluation.comparison.options import BENCHMARK_WINDOW_SECONDS, BenchmarkOptions
from eegfm.pipelines.datasets.physionet import eegmat_split

log = get_logger(__name__)
TASK = "eegmat"  # the fine-tuning task; its records carry FINETUNE_TASKS[TASK]
LABEL_TABLE = "eegmat_labels.csv"
_RECORDING = re.compile(r"Subject(\d{2})_([12])\.edf")
_SPLIT_OF = {"train": "train", "dev": "val", "eval": "test"}  # the corpus split -> the table's

SUITE = Suite(
    name=TASK,
    title="eegmat: rest vs mental arithmetic",
    task=TASK,
    record_task=FINETUNE_TASKS[TASK],
    classes=("rest", "arithmetic"),  # _1 is rest, _2 the task; arithmetic is the positive class
    split_names="training (00-27) and validation (28-31) subjects",
    published=report.PUBLISHED_EEGMAT,
)


def write_label_table(data: Path, path: Path) -> Path:
    """eegmat's table for the folder suite: ``SubjectNN_1.edf`` rest and ``_2`` arithmetic, subject
    ``eegmat-NN`` (the eegmat adapter's key, so pseudonyms match the shared encoder's corpus), the
    published split; files outside subjects 00-35 are left out with a warning."""
    rows, skipped = [], 0
    for recording in sorted(data.glob("Subject*_*.edf")):
        named = _RECORDING.fullmatch(recording.name)
        split = eegmat_split(int(named.group(1))) if named else ""
        if not split:
            skipped += 1
            continue
        label = SUITE.classes[int(named.group(2)) - 1]
        rows.append((recording.name, f"eegmat-{named.group(1)}", label, _SPLIT_OF[split]))
    if skipped:
        log.warning("eegmat: %d files are not SubjectNN_1/2.edf of subjects 00-35; left out", skipped)
    if not rows:
        raise FileNotFoundError(f"--data: no eegmat recording (SubjectNN_1.edf, SubjectNN_2.edf) in {data}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows([("file", "subject", "label", "split"), *rows])
    return path


def run(options: BenchmarkOptions, data: Path) -> dict[str, Any]:
    """eegmat's recordings in ``data`` benchmarked into ``options.output``."""
    rows, _ = read_label_table(write_label_table(data, options.output / LABEL_TABLE), data)
    check_splits(rows, SUITE.classes)
    return benchmark_table(rows, options, SUITE, window_seconds=BENCHMARK_WINDOW_SECONDS)
