"""The epoch a fine-tuning run keeps, chosen by its training people (``epochs_chosen_by:
training_people``).

With 4-9 validation people, the epoch of their lowest loss is one noisy draw: on eegmat the
validation loss of one run moves by a third from one epoch to the next, and the checkpoint it picks
is the one those few people happen to favour. Here the training people choose instead:

- they are dealt into ``epoch_folds`` folds, grouped as the run splits (by person, or by site);
- for each fold a run of the same settings trains on the other folds and is validated on this one
  at every epoch, to the last (no early stopping), in ``OUTPUT/folds/foldK``: a run of its own,
  resumable, and reused once it has finished;
- the epoch whose held-out loss, averaged over the folds, is lowest is the one the run on all the
  training people stops at and keeps. Its validation people then report; they choose nothing.

``OUTPUT/folds/choice.json`` keeps the curves, the choice and each fold's own best epoch (the
choice's spread); ``eval.json`` repeats the choice.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eegfm.contract import layout
from eegfm.core.config import ConfigError
from eegfm.training.splits import Split

FOLDS = "folds"
CHOICE = "choice.json"


def fold_splits(train: Sequence[str], folds: int, seed: int) -> list[Split]:
    """``folds`` splits of the training groups ``train``, each group held out in exactly one: the
    groups ranked by ``sha256(seed:id)`` (as ``training.splits`` ranks them) and dealt in turn."""
    if len(train) < folds:
        raise ConfigError(
            f"epoch_folds: each fold holds out at least one of the {len(train)} training groups; "
            f"expected at most {len(train)}; got {folds}"
        )
    ranked = sorted(train, key=lambda group: hashlib.sha256(f"{seed}:{group}".encode()).hexdigest())
    held = [tuple(sorted(ranked[k::folds])) for k in range(folds)]
    return [Split(train=tuple(g for g in sorted(train) if g not in out), val=out) for out in held]


def held_out_curve(folder: Path) -> dict[int, dict[str, float]]:
    """A fold run's validation metrics (``evaluate``'s names: ``metric``, the loss that chooses,
    ``auroc`` ...) at each whole epoch, from its ``metrics.jsonl`` (the last line where an epoch
    was evaluated twice, as a resumed run may)."""
    curve: dict[int, dict[str, float]] = {}
    for line in (folder / layout.METRICS).read_text().splitlines():
        row = json.loads(line)
        if "val/metric" in row and float(row["epoch"]).is_integer():
            found = {k.removeprefix("val/"): v for k, v in row.items() if k.startswith("val/")}
            curve[int(row["epoch"])] = {k: float(v) for k, v in found.items() if isinstance(v, (int, float))}
    return curve


def choose_epoch(curves: Sequence[Mapping[int, float]]) -> dict[str, Any]:
    """The epoch of lowest mean held-out loss over the folds' ``curves`` (each fold's ``metric`` by
    epoch; among the epochs every fold evaluated; the earliest of equals; a fold's non-finite loss
    is left out of that epoch's mean), with the curves and each fold's own best epoch. ValueError
    where no epoch has a finite mean."""
    epochs = sorted(set.intersection(*(set(curve) for curve in curves))) if curves else []
    losses = np.array([[curve[e] for e in epochs] for curve in curves], dtype=np.float64).reshape(len(curves), -1)
    finite = np.isfinite(losses)
    counts = finite.sum(0)
    mean = np.where(counts > 0, np.where(finite, losses, 0.0).sum(0) / np.maximum(counts, 1), math.inf)
    if not np.isfinite(mean).any():
        raise ValueError(f"the {len(curves)} folds share no epoch with a finite held-out loss (epochs {epochs})")
    best = int(np.argmin(mean))
    own = [epochs[int(np.argmin(np.where(ok, row, math.inf)))] if ok.any() else None for row, ok in zip(losses, finite)]
    return {
        "epoch": epochs[best],
        "epochs": epochs,
        "mean_loss": [float(m) for m in mean],
        "fold_losses": losses.tolist(),
        "fold_best_epochs": own,
    }


def write_choice(folder: Path, choice: Mapping[str, Any], splits: Sequence[Split]) -> None:
    """``choice.json``: the choice, and how many groups each fold trained on and held out (counts:
    the groups' ids are pseudonyms, but a count says what the reader needs)."""
    folder.mkdir(parents=True, exist_ok=True)
    sizes = [{"train_groups": len(s.train), "held_out_groups": len(s.val)} for s in splits]
    (folder / CHOICE).write_text(json.dumps({**choice, "folds": sizes}, indent=2) + "\n")


def summary(choice: Mapping[str, Any]) -> dict[str, Any]:
    """What ``eval.json`` says of the choice."""
    return {
        "by": "training_people",
        "epoch": choice["epoch"],
        "folds": len(choice["fold_losses"]),
        "fold_best_epochs": choice["fold_best_epochs"],
        "mean_held_out_loss": dict(zip(map(str, choice["epochs"]), choice["mean_loss"])),
    }
