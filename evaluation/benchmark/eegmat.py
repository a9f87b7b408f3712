"""The eegmat suite: rest vs mental arithmetic on PhysioNet's recordings, on the published split
(sorted subjects 00-27 train, 28-31 validation, 32-35 test), 5 s windows; preprocessed by the
eegmat adapter, then benchmarked as every labeled corpus is (``benchmark.labeled``)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from eegfm.core.tasks import FINETUNE_TASKS
from eegfm.evaluation.benchmark import report
from eegfm.evaluation.benchmark.labeled import Suite, evaluate
from eegfm.pipelines import preprocess as pipeline

TASK = "eegmat"  # the fine-tuning task; its records carry FINETUNE_TASKS[TASK]


# The benchmarks read public corpora: one fixed key gives the same pseudonyms, and so the same
# pretraining hold-out and shuffles, on every run and machine (a clinic's data needs its own key).
BENCHMARK_KEY = hashlib.sha256(b"eegfm benchmarks: public corpora only").hexdigest()


def benchmark_key(folder: Path, own: str | None = None) -> Path:
    """``own`` key file, else the benchmark's fixed key written once into ``folder``."""
    if own is not None:
        return Path(own)
    path = folder / "pseudonym.key"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(BENCHMARK_KEY + "\n")
        path.chmod(0o600)  # as deid expects of any key file
    return path


def preprocess(inputs: str, output: Path, key_file: str | None = None) -> str:
    """eegfm's pipeline on the recordings (5 s windows; rule-based artifact scores, so nothing is
    fitted across subjects); an earlier complete output is reused."""
    if not (output / "manifest.json").is_file():
        key = benchmark_key(output.parent, key_file)
        pipeline.run(
            ["--input", inputs, "--output", str(output), "--dataset", "eegmat", "--window_seconds", "5"]
            + ["--no_artifact_model", "--pseudonym_key_file", str(key), "--overwrite"]
        )
    return str(output)


SUITE = Suite(
    name=TASK,
    title="eegmat: rest vs mental arithmetic",
    task=TASK,
    record_task=FINETUNE_TASKS[TASK],
    classes=("rest", "arithmetic"),
    split_names="training (00-27) and validation (28-31) subjects",
    published=report.PUBLISHED_EEGMAT,
)


def run(args) -> dict[str, Any]:
    output = Path(args.output)
    data = preprocess(args.data, output / "data", args.pseudonym_key_file)
    return evaluate(data, output, args, SUITE)
