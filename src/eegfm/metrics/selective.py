"""Selective prediction: does the model's uncertainty pick out its mistakes?

Sort held-out windows from most to least certain by a score (low confidence, predictive entropy,
mutual information of the MC-dropout samples) and keep the most certain fraction (the coverage).
The risk at a coverage is the mean loss of the kept windows: the error rate (the predicted class
is not the target's most likely one) or, with soft labels (expert votes), the KL divergence from the
vote distribution to the prediction. The risk-coverage curve and its area (AURC, lower is better)
summarise how well a score ranks errors last (Geifman & El-Yaniv, 2017). A score that ranks at
random has an expected AURC equal to the risk at full coverage; one that ranks perfectly (by the
loss itself) reaches the oracle AURC. A score ``improves`` the retained windows only where both
its AURC and its risk at 80 % coverage are below the full-coverage risk; the summary says so, and
``uncertainty_helps`` is False when no score does (a finding, not an error).

    python -m eegfm.metrics.selective --predictions out/predictions.csv --output selective/

reads ``eegfm-predict``'s predictions.csv (windows with expert votes, the HMS layout, as targets).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eegfm.core.threads import fair_threads
from eegfm.metrics.uncertainty import entropy, uncertainty_of

COVERAGE = 0.8


def risk_coverage(uncertainty: np.ndarray, loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, risk) after keeping the k most certain windows, k = 1 .. N (ties: input order)."""
    uncertainty, loss = np.asarray(uncertainty, float), np.asarray(loss, float)
    if uncertainty.shape != loss.shape or uncertainty.ndim != 1 or not len(loss):
        raise ValueError(
            f"uncertainty, loss: expected equal non-empty 1-D arrays; got {uncertainty.shape}, {loss.shape}"
        )
    order = np.argsort(uncertainty, kind="stable")
    kept = np.arange(1, len(loss) + 1)
    return kept / len(loss), np.cumsum(loss[order]) / kept


def aurc(risk: np.ndarray) -> float:
    """The area under the risk-coverage curve: the mean risk over the N coverages k / N."""
    return float(np.mean(risk))


def risk_at(coverage: np.ndarray, risk: np.ndarray, fraction: float) -> float:
    """The risk keeping the most certain ``fraction`` of the windows (at least one)."""
    return float(risk[max(0, int(np.ceil(fraction * len(risk) - 1e-9)) - 1)])


def _targets(probabilities: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The target's class per window and, for soft labels, its distribution."""
    target = np.asarray(target, float)
    if target.ndim == 1:
        return target.astype(int), None
    if target.shape != probabilities.shape:
        raise ValueError(
            f"target: expected class indices (N,) or distributions {probabilities.shape}; got {target.shape}"
        )
    distribution = target / np.clip(target.sum(-1, keepdims=True), 1e-12, None)
    return distribution.argmax(-1), distribution


def uncertainty_scores(probabilities: np.ndarray, sample_probabilities: np.ndarray | None) -> dict[str, np.ndarray]:
    """Per window, higher = less certain: 1 - confidence, predictive entropy and (with samples)
    their mutual information."""
    scores = {"confidence": 1.0 - probabilities.max(-1)}
    if sample_probabilities is None:
        scores["entropy"] = entropy(probabilities)
    else:
        measured = uncertainty_of(sample_probabilities)
        scores["entropy"] = measured.predictive_entropy
        scores["mutual_information"] = measured.mutual_information
    return scores


def window_losses(probabilities: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    """Per window: ``error`` (0/1) and, for soft labels, ``kl`` (target || prediction, nats)."""
    classes, distribution = _targets(probabilities, target)
    losses = {"error": (probabilities.argmax(-1) != classes).astype(float)}
    if distribution is not None:
        p = np.clip(probabilities, 1e-12, None)
        q = np.where(distribution > 0, distribution, 1.0)
        losses["kl"] = (distribution * (np.log(q) - np.log(p))).sum(-1)
    return losses


def curves_of(
    probabilities: np.ndarray,
    target: np.ndarray,
    sample_probabilities: np.ndarray | None = None,
    scores: Mapping[str, np.ndarray] | None = None,
) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """{loss: {score: (coverage, risk)}} for every loss and score (``scores``: given per window,
    higher = less certain; default :func:`uncertainty_scores`)."""
    probabilities = np.asarray(probabilities, float)
    scores = scores if scores is not None else uncertainty_scores(probabilities, sample_probabilities)
    return {
        name: {score: risk_coverage(values, loss) for score, values in scores.items()}
        for name, loss in window_losses(probabilities, target).items()
    }


def selective_summary(
    probabilities: np.ndarray,
    target: np.ndarray,
    sample_probabilities: np.ndarray | None = None,
    coverage: float = COVERAGE,
    scores: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """The numbers of the module docstring for N windows: ``probabilities`` (N, C), ``target``
    class indices (N,) or vote counts / distributions (N, C), optional (N, S, C) samples or
    ``scores`` (as :func:`curves_of`)."""
    probabilities = np.asarray(probabilities, float)
    losses = window_losses(probabilities, target)
    summary: dict[str, Any] = {"n_windows": len(probabilities), "coverage": coverage, "risks": {}}
    helped: dict[str, list[str]] = {}  # risk -> the scores that lower it
    for name, curves in curves_of(probabilities, target, sample_probabilities, scores).items():
        full = float(losses[name].mean())
        _, oracle = risk_coverage(losses[name], losses[name])
        entry: dict[str, Any] = {"full_coverage_risk": full, "oracle_aurc": aurc(oracle), "scores": {}}
        for score, (cov, risk) in curves.items():
            at = risk_at(cov, risk, coverage)
            area = aurc(risk)
            improves = area < full and at < full
            if improves:
                helped.setdefault(name, []).append(score)
            entry["scores"][score] = {"aurc": area, f"risk_at_{coverage:g}": at, "improves": improves}
            if name == "error":
                entry["scores"][score].update({f"accuracy_at_{coverage:g}": 1 - at, "accuracy_at_1": 1 - full})
        summary["risks"][name] = entry
    summary["uncertainty_helps"] = bool(helped)
    summary["note"] = (
        f"keeping the most certain {coverage:.0%} of {len(probabilities)} windows lowers "
        + "; ".join(f"the {name} by {', '.join(scores)}" for name, scores in helped.items())
        if helped
        else "no uncertainty score ranks these windows' errors last: keeping the most certain "
        f"{coverage:.0%} does not lower the risk (the scores do not flag this model's mistakes)"
    )
    return summary


def plot_risk_coverage(
    curves: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]], title: str, path: Path
) -> None:
    """One panel per loss: the risk-coverage curve of every score (PNG)."""
    from matplotlib.figure import Figure  # matplotlib: only where a plot is drawn

    figure = Figure(figsize=(5 * len(curves), 4))
    for axes, (loss, by_score) in zip(figure.subplots(1, len(curves), squeeze=False)[0], curves.items()):
        for score, (coverage, risk) in by_score.items():
            axes.plot(coverage, risk, label=f"{score} (AURC {aurc(risk):.3f})")
        axes.axhline(float(next(iter(by_score.values()))[1][-1]), color="0.6", linestyle=":", label="all windows")
        axes.set_xlabel("coverage (most certain windows kept)")
        axes.set_ylabel("error rate" if loss == "error" else "KL to the votes (nats)")
        axes.legend(fontsize=7)
    figure.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")


def read_predictions(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(probabilities (N, C), votes (N, C), scores) of the windows with expert votes in
    predictions.csv; the scores as :func:`uncertainty_scores`, entropy and mutual information from
    its columns (the MC-dropout samples') where it has them."""
    with path.open(newline="") as fileobj:
        reader = csv.DictReader(fileobj)
        fields = reader.fieldnames or []
        if "votes" not in fields or "artifact_score" not in fields:
            raise ValueError(f"{path}: expected eegfm-predict's predictions.csv (columns votes, artifact_score ...)")
        labels = fields[fields.index("duration_s") + 1 : fields.index("predicted")]
        rows = [row for row in reader if row["votes"]]
    if not rows:
        raise ValueError(f"{path}: no window has expert votes (the votes column); expected the HMS layout's windows")
    probabilities = np.array([[float(row[label]) for label in labels] for row in rows])
    votes = np.array([[float(v) for v in row["votes"].split(";")] for row in rows])
    if votes.shape != probabilities.shape:
        raise ValueError(f"{path}: votes: expected {len(labels)} per window (one per label); got {votes.shape[1]}")
    scores = uncertainty_scores(probabilities, None)
    for column in ("entropy", "mutual_information"):
        if column in fields and all(row[column] for row in rows):
            scores[column] = np.array([float(row[column]) for row in rows])
    return probabilities, votes, scores


def main(argv: Sequence[str] | None = None) -> int:
    fair_threads()  # before any work: core/threads.py
    parser = argparse.ArgumentParser(prog="eegfm-selective", description=__doc__.split("\n\n")[0])
    parser.add_argument("--predictions", type=Path, required=True, help="eegfm-predict's predictions.csv")
    parser.add_argument("--output", type=Path, required=True, help="folder for selective.json and selective.png")
    parser.add_argument("--coverage", type=float, default=COVERAGE, help="the fraction of windows kept (default 0.8)")
    args = parser.parse_args(argv)
    if not 0 < args.coverage <= 1:
        parser.error(f"--coverage: expected a fraction in (0, 1]; got {args.coverage}")
    try:
        probabilities, votes, scores = read_predictions(args.predictions)
    except (OSError, ValueError) as err:
        parser.error(str(err))
    summary = selective_summary(probabilities, votes, coverage=args.coverage, scores=scores)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "selective.json").write_text(json.dumps(summary, indent=2) + "\n")
    curves = curves_of(probabilities, votes, scores=scores)
    plot_risk_coverage(curves, f"{len(votes)} windows with expert votes", args.output / "selective.png")
    print(summary["note"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
