"""What a model says about whole corpora of real EEG, one line each: how much it calls the normal
class, how much the pipeline flags as artifact, and what it recommends.

``python -m eegfm.evaluation.corpus_check --model RUN --corpus NAME=PATTERN [--corpus ...]``. A model
trained on simulated EEG, or on another hospital's, should call healthy people's EEG normal and
clean; this is the first thing to check before trusting it on a new corpus, and ``make demo``
ends with it on the real recordings beside the project. Corpora are named by the user; files are
only counted (no path, file name or channel label reaches the output); a name given twice is one
corpus. ``--output DIR`` also writes ``corpus_check.json``, with, per finding, the share of windows
whose probability of it is under ``CLEAR_BELOW``.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm import tqdm

from eegfm.core.config import add_corpus_argument
from eegfm.core.threads import fair_threads

ARTIFACT_THRESHOLD = 0.5  # the recommendation table's artifact rule (inference/recommendation.yaml)
# A finding's probability under which a window of a healthy person counts as clear of it: the check
# that healthy alpha is not read as periodic discharges (P(GPD), P(LPD) < 0.1 on most windows).
CLEAR_BELOW = 0.1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="eegfm-corpus-check",
        description="One line per corpus of real EEG: the share of windows the model calls the normal class, "
        "the share the pipeline flags as artifact (artifact score >= 0.5), and its recommendations.",
    )
    parser.add_argument("--model", required=True, help="a fine-tuned run folder or model/ folder (as eegfm-predict)")
    add_corpus_argument(parser)
    parser.add_argument("--normal", default="Other", help="the class that means normal or no finding (default: Other)")
    parser.add_argument("--output", type=Path, default=None, help="also write corpus_check.json into this folder")
    parser.add_argument("--prefix", default="", help="text before each printed line (e.g. 'demo: ')")
    return parser.parse_args(argv)


def summarize(predictions: list, normal: str) -> dict[str, Any]:
    """Counts and shares over the processed recordings' windows (quarantined ones are counted)."""
    windows = [w for p in predictions if p.status == "processed" for w in p.windows]
    n = len(windows)
    summary: dict[str, Any] = {
        "recordings": len(predictions),
        "quarantined": sum(p.status != "processed" for p in predictions),
        "windows": n,
    }
    if n:
        summary["normal_share"] = sum(w.predicted_class == normal for w in windows) / n
        summary["artifact_share"] = sum(w.artifact_score >= ARTIFACT_THRESHOLD for w in windows) / n
        summary["classes"] = dict(Counter(w.predicted_class for w in windows).most_common())
        summary["recommendations"] = dict(Counter(w.clinical_recommendation for w in windows).most_common())
        labels = next(p.labels for p in predictions if p.status == "processed")
        summary["clear_share"] = {
            label: sum(w.outputs[k] < CLEAR_BELOW for w in windows) / n
            for k, label in enumerate(labels)
            if label != normal
        }
    return summary


def line(name: str, summary: dict[str, Any], normal: str) -> str:
    if not summary["windows"]:
        return f"{name}: no window scored ({summary['recordings']} recordings, {summary['quarantined']} quarantined)"
    n = summary["windows"]
    classes = ", ".join(f"{k} {v / n:.0%}" for k, v in summary["classes"].items() if k != normal)
    recommendations = ", ".join(f"{k} {v / n:.0%}" for k, v in summary["recommendations"].items())
    return (
        f"{name} ({summary['recordings']} recordings, {n} windows): {normal} {summary['normal_share']:.0%}"
        f"{f' ({classes})' if classes else ''}, flagged as artifact {summary['artifact_share']:.0%}; {recommendations}"
    )


def corpora(named: list[tuple[str, str]]) -> dict[str, list[str]]:
    """``--corpus`` values by name, in the order first given: one name given twice is one corpus
    of both patterns' recordings (held-out people whose files no single glob names)."""
    found: dict[str, list[str]] = {}
    for name, pattern in named:
        found.setdefault(name, []).extend(sorted(glob.glob(pattern)) or [pattern])
    return found


def main(argv: list[str] | None = None) -> int:
    fair_threads()  # before any work: core/threads.py
    args = parse_args(argv)
    from eegfm.inference.predictor import Predictor  # torch and the model: not for --help

    predictor = Predictor(args.model)
    if args.normal not in predictor.labels:
        print(f"--normal: expected one of the model's classes ({', '.join(predictor.labels)}); got {args.normal!r}")
        return 2
    report = {}
    for name, inputs in corpora(args.corpus).items():
        try:
            items = predictor.discover(inputs)
        except (FileNotFoundError, ValueError) as err:
            print(f"{args.prefix}{name}: no recording read ({type(err).__name__})")
            continue
        predictions = list(tqdm(predictor.predict_items(items), total=len(items), desc=name, unit="rec", disable=None))
        report[name] = summarize(predictions, args.normal)
        print(args.prefix + line(name, report[name], args.normal), flush=True)
    if args.output is not None:
        args.output.mkdir(parents=True, exist_ok=True)
        (args.output / "corpus_check.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report else 1


if __name__ == "__main__":
    sys.exit(main())
