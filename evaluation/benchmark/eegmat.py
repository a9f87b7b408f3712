"""The eegmat suite: rest vs mental arithmetic on PhysioNet's recordings, on the published split
(sorted subjects 00-27 train, 28-31 validation, 32-35 test), 5 s windows; preprocessed by the
eegmat adapter, then benchmarked as every labeled corpus is (``benchmark.labeled``)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from eegfm.contract import layout
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


def preprocess_windows(
    inputs: list[str], output: Path, key: Path, dataset: str = "auto", window_seconds: float = 5.0
) -> str:
    """eegfm's pipeline on the benchmark's recordings (rule-based artifact scores, so nothing is
    fitted across subjects), pseudonymized with ``key``; an earlier complete output is reused."""
    if not (output / layout.MANIFEST).is_file():
        argv = ["--input", *inputs, "--output", str(output), "--dataset", dataset]
        argv += ["--window_seconds", f"{window_seconds:g}", "--no_artifact_model"]
        pipeline.run([*argv, "--pseudonym_key_file", str(key), "--overwrite"])
    return str(output)


def preprocess(inputs: str, output: Path, key_file: str | None = None) -> str:
    """eegmat's recordings through its adapter (its split), 5 s windows."""
    return preprocess_windows([inputs], output, benchmark_key(output.parent, key_file), "eegmat")


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
