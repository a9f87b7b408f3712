"""Benchmark: which readout inputs and C the training people choose, against the validation people;
prints one JSON object.

On a benchmark run's output folder (``data/``, the pipeline's windows, and ``pretrain/model``, its
encoder): for each of the readout's candidate feature sets (``spectral_stack.READOUT_FEATURES``)
a class-balanced logistic regression (``model.linear_fit``) with C chosen two ways, by 5-fold
cross-validation grouped by person over the training people (the network head's rule) and on the
validation split (the readout's), each fitted on the training windows and scored on validation;
beside it, the out-of-fold AUROC over the training people at the CV's C, pooled and within a
person (a person's windows of both classes against each other). The rows say where the two sets
of people agree on what reads the task.

    python benchmarks/readout_by_people.py OUTPUT [--task eegmat_rest_task]

``OUTPUT``: a labeled benchmark's folder, e.g. the eegmat command's (docs/evaluation.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, balanced_accuracy_score, roc_auc_score
from sklearn.model_selection import GroupKFold

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from eegfm.evaluation.comparison import baselines, tangent_space  # noqa: E402
from eegfm.evaluation.comparison.spectral_stack import READOUT_FEATURES  # noqa: E402
from eegfm.evaluation.comparison.windows import load_windows  # noqa: E402
from eegfm.model import linear_fit  # noqa: E402
from eegfm.model.fused import encoder_embedding  # noqa: E402
from eegfm.model.spectral_features import band_power_features  # noqa: E402

NEEDS_INPUT = "a labeled benchmark's output folder"  # make bench skips it

FOLDS = 5


def _scores(fitted, x: np.ndarray) -> np.ndarray:
    return linear_fit.linear_readout_of(fitted, 2).probabilities(x)[:, 1]


def _metrics(labels: np.ndarray, scores: np.ndarray) -> list[float]:
    found = balanced_accuracy_score(labels, scores > 0.5), roc_auc_score(labels, scores)
    return [round(float(v), 3) for v in (*found, average_precision_score(labels, scores))]


def _within_person(labels: np.ndarray, scores: np.ndarray, people: np.ndarray) -> float | None:
    """The mean AUROC of each person's windows; None where no person has windows of both classes
    (a corpus where each person carries one label)."""
    both = [p for p in np.unique(people) if len(set(labels[people == p].tolist())) == 2]
    if not both:
        return None
    return round(float(np.mean([roc_auc_score(labels[people == p], scores[people == p]) for p in both])), 3)


def _out_of_fold(x, train, c: float) -> np.ndarray:
    """Each training window's score from the fold that held its person out."""
    people, targets, scores = np.asarray(train.subject), baselines.targets(train, 2), np.zeros(len(x))
    for fit_rows, held in GroupKFold(FOLDS).split(x, train.label, people):
        rows = linear_fit.soft_rows(x[fit_rows], targets[fit_rows], people[fit_rows])
        scores[held] = _scores(linear_fit.fit_pipeline(*rows[:3], c, True), x[held])
    return scores


def feature_set_row(x: np.ndarray, x_val: np.ndarray, train, validation) -> dict:
    """One feature set's C by each rule, its validation figures, and the training people's
    out-of-fold AUROC at the CV's C."""
    people = np.asarray(train.subject)
    rows, labels, weights, _ = fit_rows = linear_fit.soft_rows(x, baselines.targets(train, 2), people)
    c_cv, losses = linear_fit.c_by_grouped_cv(*fit_rows, True, FOLDS)
    c_val = linear_fit.c_by_validation(rows, labels, weights, x_val, baselines.targets(validation, 2), True)

    def scored(c: float) -> dict:
        readout = linear_fit.linear_readout_of(linear_fit.fit_pipeline(rows, labels, weights, c, True), 2)
        found = readout.probabilities(x_val)
        loss = linear_fit.log_loss(found, baselines.targets(validation, 2), True)
        return {"C": c, "validation": _metrics(validation.label, found[:, 1]), "validation_loss": round(loss, 4)}

    held = _out_of_fold(x, train, c_cv)
    return {
        "cv": {**scored(c_cv), "cv_loss": round(losses[c_cv], 4)},
        "validation_chose": scored(c_val),
        "training_people_out_of_fold_auroc": {
            "pooled": round(float(roc_auc_score(train.label, held)), 3),
            "within_person": _within_person(train.label, held, people),
        },
    }


def two_class_splits(argv: list[str] | None, description: str, output_help: str):
    """The command line of a benchmark that reads a labeled run's folder (``OUTPUT [--task T]``),
    parsed, and that folder's training and validation windows; the task must have two classes
    (:func:`feature_set_row` reads class 1's probability). Returns ``(args, train, validation)``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("output", type=Path, help=output_help)
    parser.add_argument(
        "--task",
        default="eegmat_rest_task",
        help="the windows' task (default eegmat_rest_task; a folder run's: folder)",
    )
    args = parser.parse_args(argv)
    windows = load_windows(str(args.output / "data"), args.task)
    classes = sorted(set(windows.label.tolist()))
    if classes != [0, 1]:
        parser.error(f"{args.output / 'data'}: task {args.task!r}: expected two classes (0, 1); got {classes}")
    return args, windows.of_split("train"), windows.of_split("dev")


def main(argv: list[str] | None = None) -> int:
    args, train, validation = two_class_splits(
        argv, __doc__.splitlines()[0], "a labeled benchmark's output folder (data/, pretrain/model)"
    )
    embed = encoder_embedding(args.output / "pretrain" / "model")
    covariances = tangent_space.band_covariances_of()
    maps = {m: tangent_space.tangent_space(train, m, covariances)[1] for m in tangent_space.METRICS}
    parts = {}
    for name, split in (("train", train), ("dev", validation)):
        parts[name] = {"embedding": embed(split.eeg, split.channel_mask), "powers": band_power_features(split.eeg)}
        parts[name].update({m: featurize(split) for m, featurize in maps.items()})
    rows = {}
    for name, inputs in READOUT_FEATURES.items():
        x, x_val = (np.concatenate([parts[split][i] for i in inputs], axis=1) for split in parts)
        rows[name] = feature_set_row(x, x_val, train, validation)
    chosen = {
        "by_cv": min(rows, key=lambda n: rows[n]["cv"]["cv_loss"]),
        "by_validation": min(rows, key=lambda n: rows[n]["validation_chose"]["validation_loss"]),
    }
    print(json.dumps({"metrics": "balanced accuracy, AUROC, AUPRC", "chosen": chosen, "feature_sets": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
