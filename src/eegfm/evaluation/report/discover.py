"""What the report can draw on: the files the stages wrote below the RUN_DIRs given to it.

A folder is recognised by what it holds: a pipeline output by ``manifest.json``, a fine-tuning run
by ``run.json`` beside ``eval.json`` and ``model/``, a pretraining run by ``metrics.jsonl`` and
``run.json`` without ``eval.json``, a leave-one-site-out evaluation by ``loso.json``, robustness
by ``robustness.json``, a benchmark by ``benchmark.json``, explanations by
``explanations/*.json`` (``serving.predict --explain``), an ``eegfm-predict`` output by
``recordings.json`` and the model on real corpora by ``corpus_check.json``. Fine-tuning runs inside a leave-one-site-out
folder are its folds, not the model the report describes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from eegfm.contract import layout
from eegfm.core.config import ConfigError

MAX_DEPTH = 4  # run folders nest: OUT/finetune/robustness, OUT/loso/<site>, OUT/benchmark/<corpus>/runs/...
SKIPPED = {"checkpoints", "wandb", "model", "corpus", "timelines", "scratch-init"}


@dataclasses.dataclass
class Found:
    """The inputs found, each list in path order."""

    manifests: list[Path] = dataclasses.field(default_factory=list)  # pipeline output folders
    finetune_runs: list[Path] = dataclasses.field(default_factory=list)
    pretrain_runs: list[Path] = dataclasses.field(default_factory=list)
    loso: list[Path] = dataclasses.field(default_factory=list)  # folders holding loso.json
    robustness: list[Path] = dataclasses.field(default_factory=list)  # robustness.json files
    benchmarks: list[Path] = dataclasses.field(default_factory=list)  # folders holding benchmark.json
    explanations: list[Path] = dataclasses.field(default_factory=list)  # explanation JSON files
    predictions: list[Path] = dataclasses.field(default_factory=list)  # folders holding recordings.json
    corpus_checks: list[Path] = dataclasses.field(default_factory=list)  # corpus_check.json files

    @property
    def finetuned(self) -> Path | None:
        """The fine-tuned model the report describes: the first run that is no fold of a
        leave-one-site-out evaluation."""
        folds = {run for folder in self.loso for run in folder.iterdir()}
        runs = [run for run in self.finetune_runs if run not in folds]
        return runs[0] if runs else None


def _walk(folder: Path, depth: int):
    yield folder
    if depth >= MAX_DEPTH:
        return
    for child in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if child.name not in SKIPPED:
            yield from _walk(child, depth + 1)


def _classify(folder: Path, found: Found) -> None:
    names = {p.name for p in folder.iterdir()}
    if layout.MANIFEST in names and any(p.suffix == ".tfrecord" for p in folder.glob("*/*.tfrecord")):
        found.manifests.append(folder)
    if layout.RUN in names and layout.EVAL in names and "model" in names:
        found.finetune_runs.append(folder)
    elif layout.RUN in names and layout.METRICS in names:
        found.pretrain_runs.append(folder)
    if "loso.json" in names:
        found.loso.append(folder)
    if "robustness.json" in names:
        found.robustness.append(folder / "robustness.json")
    if "benchmark.json" in names:
        found.benchmarks.append(folder)
    if "recordings.json" in names:
        found.predictions.append(folder)
    if "corpus_check.json" in names:
        found.corpus_checks.append(folder / "corpus_check.json")
    if folder.name == "explanations":
        found.explanations += sorted(folder.glob("*.json"))


def discover(run_dirs: list[Path]) -> Found:
    """Every input below ``run_dirs``; ConfigError naming a RUN_DIR that is no folder."""
    found = Found()
    for run_dir in run_dirs:
        if not run_dir.is_dir():
            raise ConfigError(f"RUN_DIR {run_dir}: no such folder (expected the output folder of an eegfm stage)")
        for folder in _walk(run_dir, 0):
            _classify(folder, found)
    return found


def read_json(path: Path, *fields: str) -> dict[str, Any]:
    """``path`` parsed; ConfigError naming the file and the first of ``fields`` it lacks."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: not readable as JSON ({err})") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a JSON object; got {type(document).__name__}")
    for name in fields:
        if name not in document:
            raise ConfigError(f"{path}: expected the field {name!r}; it has {', '.join(sorted(document)) or 'none'}")
    return document
