"""Benchmark: the recipe's validation figures at every share of the network in its fusion with the
readout; prints one JSON object.

On a labeled benchmark run's output folder (``data/``, ``pretrain/model`` and the ``eegfm`` runs of
``runs/eegfm/corpus/seed*``): the spectral readout fitted as the benchmark fits it
(``spectral_stack.spectral_readout``), each seed's fine-tuned network, and for each share ``w`` of
``--shares`` their fusion (``model.fused.fuse``: the weighted geometric mean, ``w`` on the
network). For each share: the mean over seeds of the validation balanced accuracy, AUROC, AUPRC and
KL, and the score the benchmark ranks runs by (``choice.score``: the mean of the first three).
Share 0 is the ``spectral_readout`` row and 1 the full fine-tuning's network alone. Also the share
each of two rules would choose: the lowest validation KL, and the highest score; and the share the
benchmark's ``eegfm`` row takes (``spectral_stack.choose_share``: of ``FUSION_SHARES``, the lowest
validation log loss).

    python benchmarks/fusion_share.py OUTPUT [--task eegmat_rest_task] [--shares 0 0.25 0.5 0.75 1]

``OUTPUT``: a labeled benchmark's folder, e.g. the eegmat command's (docs/evaluation.md); the
``folder`` suite's windows carry the task ``folder``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from eegfm.evaluation.comparison import baselines, choice, spectral_stack  # noqa: E402
from eegfm.evaluation.comparison.labeled import metrics_of  # noqa: E402
from eegfm.evaluation.comparison.windows import load_windows  # noqa: E402
from eegfm.model.fused import fuse, network_probabilities  # noqa: E402

NEEDS_INPUT = "a labeled benchmark's output folder"  # make bench skips it

METRICS = ("balanced_accuracy", "auroc", "auprc", "kl")


def share_table(networks: list[np.ndarray], readout: np.ndarray, target: np.ndarray, prior: np.ndarray, shares):
    """``{share: {metric: mean over the networks}}`` of each network fused with ``readout`` at
    ``share`` on the network, against ``target`` [N, C] (distributions); ``score``: ``choice.score``."""
    top = target.argmax(1)
    table = {}
    for share in shares:
        fused = [fuse([network, readout], [share, 1.0 - share]) for network in networks]
        found = [metrics_of(probs, target, prior) for probs in fused]
        row = {m: round(float(np.mean([f[m] for f in found])), 4) for m in METRICS}
        row["score"] = round(float(np.mean([choice.score(probs, top) for probs in fused])), 4)
        table[float(share)] = row
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="a labeled benchmark's output folder")
    parser.add_argument("--task", default="eegmat_rest_task", help="the windows' task (the folder suite's: folder)")
    parser.add_argument("--shares", type=float, nargs="+", default=[0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 1])
    args = parser.parse_args(argv)
    windows = load_windows(str(args.output / "data"), args.task)
    train, validation = windows.of_split("train"), windows.of_split("dev")
    n_classes = int(max(windows.label.max() + 1, 2))
    readout, chosen = spectral_stack.spectral_readout(args.output / "pretrain" / "model", train, n_classes, validation)
    folders = sorted((args.output / "runs" / "eegfm" / "corpus").glob("seed*"))
    networks = [network_probabilities(f / "model", validation.eeg, validation.channel_mask) for f in folders]
    target = baselines.targets(validation, n_classes)
    prior = baselines.targets(train, n_classes).mean(0)
    readout_probs = readout.probabilities(validation.eeg, validation.channel_mask)
    table = share_table(networks, readout_probs, target, prior, args.shares)
    result = {
        "output": str(args.output),
        "seeds": [f.name for f in folders],
        "validation_people": int(len(np.unique(validation.subject.astype(str)))),
        "readout": chosen,
        "benchmark_share": spectral_stack.choose_share(networks, readout_probs, target, balanced=True)[0],
        "shares": {str(share): row for share, row in table.items()},
        "lowest_kl_share": min(table, key=lambda s: (table[s]["kl"], s)),
        "highest_score_share": max(table, key=lambda s: (table[s]["score"], -s)),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
