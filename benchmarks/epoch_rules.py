"""Benchmark: which rule for the fine-tuned epoch holds on people no rule saw; prints one JSON object.

A labeled benchmark run with ``--finetune_set epochs_chosen_by=training_people`` keeps, for every
run of the eegfm architecture, its folds of the training people (``runs/<method>/<fold>/seed*/folds``):
each fold's held-out loss, balanced accuracy, AUROC and AUPRC at every epoch. This scores every
fold's run at the epoch each rule keeps:

- ``validation``: the epoch the validation people chose for the same method and seed, read from
  a run of the same benchmark with the validation rule (``--validation``; its kept checkpoint);
- ``other_folds``: the epoch of lowest mean held-out loss over the *other* folds (the
  ``training_people`` rule, leaving out the fold it is scored on);
- ``last``: the last epoch (``none``);
- ``start``: epoch 0, the fitted probe head, where the runs validated it.

No rule saw the scored fold's people. Means over the fold runs, each method apart and all pooled,
with how often ``other_folds`` and ``last`` beat ``validation``.

    python benchmarks/epoch_rules.py FOLDS_OUTPUT --validation VALIDATION_OUTPUT [--methods eegfm eegfm_shared]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from eegfm.training.finetune.epoch_folds import held_out_curve  # noqa: E402

NEEDS_INPUT = "a labeled benchmark output run with epochs_chosen_by=training_people"  # make bench skips it

METRICS = ("metric", "balanced_accuracy", "auroc", "auprc")  # "metric": the loss that chooses
RULES = ("validation", "other_folds", "last", "start")


def curve(fold: Path) -> dict[int, dict[str, float]]:
    """A fold run's :data:`METRICS` at each whole epoch."""
    return {e: {m: found[m] for m in METRICS if m in found} for e, found in held_out_curve(fold).items()}


def kept_epoch(metrics_jsonl: Path) -> int:
    """The epoch whose checkpoint a run kept (its last evaluation marked best)."""
    rows = [json.loads(line) for line in metrics_jsonl.read_text().splitlines()]
    return round([r for r in rows if "val/metric" in r and r.get("best")][-1]["epoch"])


def rule_epochs(fold_curves: list[dict[int, dict[str, float]]], k: int, validation_epoch: int) -> dict[str, int]:
    """The epoch each rule keeps when fold ``k`` is scored."""
    epochs = sorted(set.intersection(*(set(c) for c in fold_curves)))
    others = [c for i, c in enumerate(fold_curves) if i != k]
    mean = [np.mean([c[e]["metric"] for c in others]) for e in epochs]
    return {
        "validation": validation_epoch,
        "other_folds": epochs[int(np.argmin(mean))],
        "last": epochs[-1],
        "start": epochs[0],
    }


def score_runs(folds_output: Path, validation_output: Path, methods: list[str]) -> dict[str, list[dict]]:
    """{method: one row per fold run: each rule's epoch and that epoch's held-out metrics}."""
    found: dict[str, list[dict]] = {}
    for method in methods:
        for folds in sorted((folds_output / "runs" / method).glob("*/seed*/folds")):
            seed_run = folds.parent.relative_to(folds_output)
            chosen = kept_epoch(validation_output / seed_run / "metrics.jsonl")
            curves = [curve(f) for f in sorted(folds.glob("fold*"))]
            for k, held_out in enumerate(curves):
                epochs = rule_epochs(curves, k, chosen)
                row = {"seed_run": str(seed_run), "fold": k, "epochs": epochs}
                row.update({rule: held_out[e] for rule, e in epochs.items() if e in held_out})
                found.setdefault(method, []).append(row)
    return found


def summary(rows: list[dict]) -> dict:
    """Each rule's mean metrics over ``rows``, and how often a rule beats ``validation``."""
    out: dict = {"fold_runs": len(rows)}
    for rule in RULES:
        have = [r[rule] for r in rows if rule in r]
        if have:
            out[rule] = {m: round(float(np.mean([h[m] for h in have])), 4) for m in METRICS if m in have[0]}
    for rule in ("other_folds", "last"):
        pairs = [(r[rule], r["validation"]) for r in rows if rule in r and "validation" in r]
        measured = [m for m in METRICS if pairs and m in pairs[0][0]]
        out[f"{rule}_beats_validation_in"] = {
            m: sum((a[m] < b[m]) if m == "metric" else (a[m] > b[m]) for a, b in pairs) for m in measured
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folds_output", type=Path, help="a benchmark output run with epochs_chosen_by=training_people")
    parser.add_argument(
        "--validation", type=Path, required=True, help="the same benchmark's output run with the validation rule"
    )
    parser.add_argument("--methods", nargs="+", default=["eegfm", "eegfm_shared"], help="the methods to score")
    args = parser.parse_args(argv)
    rows = score_runs(args.folds_output, args.validation, args.methods)
    if not rows:
        parser.error(f"{args.folds_output}: no runs/<method>/*/seed*/folds of {', '.join(args.methods)}")
    result = {
        "metric_is": "each fold run's validation 'metric' (the loss that chooses, lower is better)",
        "methods": {method: summary(found) for method, found in rows.items()},
        "pooled": summary([r for found in rows.values() for r in found]),
        "runs": rows,
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
