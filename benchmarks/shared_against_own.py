"""Benchmark: the shared encoder (``eegfm_shared``, or with ``--shared_row eegfm_adapted`` the shared
encoder pretrained further on the benchmark's windows) against the benchmark's own pretraining
(``eegfm``) on the validation people, seed by seed and paired; prints one JSON object.

On one or more labeled benchmark output folders run with ``--methods eegfm eegfm_shared`` (each
``runs/<method>/corpus/seed*``; several folders pool their seeds, e.g. seeds 0-2 and 3-5 on the
same ``data/``):

- each seed's validation balanced accuracy, AUROC and AUPRC for both encoders, and the mean;
- the paired difference, shared less own, averaged over the seeds, with its 80 % interval over
  ``--draws`` resamples of the validation people (``levels.people_draws``) and the share of draws
  where shared is at or above own: how much of a gap 4-8 people can tell;
- where each network's decision falls: the offset added to its log-odds that maximises balanced
  accuracy on the validation windows and on the training windows. An offset chosen on the training
  people (or by their cross-validation) moves the threshold toward what they prefer; this shows
  whether that is where the validation people's is. Binary tasks only.

    python benchmarks/shared_against_own.py OUTPUT [OUTPUT ...] [--task eegmat_rest_task] [--draws 1000]
        [--shared_row eegfm_shared|eegfm_adapted]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from eegfm.evaluation.comparison.levels import people_draws  # noqa: E402
from eegfm.evaluation.comparison.windows import WindowSet, load_windows  # noqa: E402
from eegfm.metrics.classification import ranking_scores  # noqa: E402
from eegfm.model.fused import network_probabilities  # noqa: E402

NEEDS_INPUT = "labeled benchmark output folders with eegfm_shared runs"  # make bench skips it

METRICS = ("balanced_accuracy", "auroc", "auprc")
OWN = "eegfm"
SHARED_ROWS = ("eegfm_shared", "eegfm_adapted")
OFFSETS = np.round(np.arange(-4.0, 4.01, 0.1), 2)  # log-odds
FLOOR = 1e-12


def scores(probs: np.ndarray, top: np.ndarray) -> np.ndarray:
    found = ranking_scores(probs, top)
    return np.array([found[m] for m in METRICS])


def best_offset(probs: np.ndarray, top: np.ndarray) -> tuple[float, float]:
    """The log-odds offset of :data:`OFFSETS` with the highest balanced accuracy (the one nearest 0
    among ties), and that accuracy."""
    log_odds = np.log(np.clip(probs[:, 1], FLOOR, 1)) - np.log(np.clip(probs[:, 0], FLOOR, 1))
    found = [np.mean([((log_odds[top == c] + d > 0) == c).mean() for c in (0, 1)]) for d in OFFSETS]
    best = max(range(len(OFFSETS)), key=lambda i: (round(found[i], 9), -abs(OFFSETS[i])))
    return float(OFFSETS[best]), float(found[best])


def seed_runs(outputs: list[Path], methods: tuple[str, str]) -> dict[str, dict[str, Path]]:
    """``{seed: {method: model folder}}`` of the seeds both ``methods`` ran."""
    found: dict[str, dict[str, Path]] = {}
    for output in outputs:
        for method in methods:
            for run in sorted((output / "runs" / method / "corpus").glob("seed*")):
                found.setdefault(run.name, {})[method] = run / "model"
    return {seed: runs for seed, runs in sorted(found.items()) if len(runs) == len(methods)}


def probabilities(folder: Path, windows: WindowSet) -> np.ndarray:
    return network_probabilities(folder, windows.eeg, windows.channel_mask)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outputs", type=Path, nargs="+", help="labeled benchmark output folders (the same data/)")
    parser.add_argument("--task", default="eegmat_rest_task", help="the windows' task (the folder suite's: folder)")
    parser.add_argument("--draws", type=int, default=1000, help="resamples of the validation people")
    parser.add_argument(
        "--shared_row", default=SHARED_ROWS[0], choices=SHARED_ROWS, help="the row from the shared encoder compared"
    )
    args = parser.parse_args(argv)
    methods = (OWN, args.shared_row)
    windows = load_windows(str(args.outputs[0] / "data"), args.task)
    train, validation = windows.of_split("train"), windows.of_split("dev")
    runs = seed_runs(args.outputs, methods)
    if not runs:
        parser.error(f"no seed ran both {' and '.join(methods)} under {', '.join(map(str, args.outputs))}")
    held = {(seed, m): probabilities(f, validation) for seed, found in runs.items() for m, f in found.items()}
    seen = {(seed, m): probabilities(f, train) for seed, found in runs.items() for m, f in found.items()}
    top, every = validation.label, np.arange(len(validation))
    per_seed, differences = {}, []
    for seed in runs:
        row = {m: dict(zip(METRICS, np.round(scores(held[seed, m], top), 4).tolist())) for m in methods}
        for m in methods:
            row[m]["offset_on_validation"], _ = best_offset(held[seed, m], top)
            row[m]["offset_on_training"], _ = best_offset(seen[seed, m], train.label)
        per_seed[seed] = row
    _, person = np.unique(validation.subject.astype(str), return_inverse=True)
    for rows in [every, *people_draws(person, top, args.draws)]:
        differences.append(np.mean([_paired(held, seed, methods, top, rows) for seed in runs], axis=0))
    point, draws = differences[0], np.array(differences[1:])
    result = {
        "outputs": [str(o) for o in args.outputs],
        "validation_people": int(person.max() + 1),
        "shared_row": args.shared_row,
        "seeds": per_seed,
        "mean": {m: {k: round(float(np.mean([per_seed[s][m][k] for s in runs])), 4) for k in METRICS} for m in methods},
        "shared_less_own": {
            k: {
                "difference": round(float(point[i]), 4),
                "interval_80": [round(float(q), 4) for q in np.percentile(draws[:, i], [10, 90])],
                "shared_at_or_above_in": round(float(np.mean(draws[:, i] >= 0)), 3),
            }
            for i, k in enumerate(METRICS)
        },
    }
    print(json.dumps(result, indent=2))
    return 0


def _paired(held: dict, seed: str, methods: tuple[str, str], top: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Shared less own on the validation windows ``rows`` (with repeats), one seed."""
    own, shared = methods
    return scores(held[seed, shared][rows], top[rows]) - scores(held[seed, own][rows], top[rows])


if __name__ == "__main__":
    raise SystemExit(main())
