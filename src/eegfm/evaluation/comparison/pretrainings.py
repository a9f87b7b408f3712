"""A benchmark's encoders before fine-tuning: its own pretraining of an architecture, the shared
encoder pretrained further on the same windows (``init_from``: the ``eegfm_adapted`` row), and
seeded random weights for the runs from scratch. Each folder carries ``fingerprint.json``: a rerun
of the same inputs reuses it, other inputs make it anew."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from eegfm.core import stopwatch
from eegfm.core.logs import get_logger
from eegfm.evaluation.comparison import fingerprint
from eegfm.model.modeling import EEGFMForPretraining
from eegfm.training import pretrain as pretraining
from eegfm.training.command import RunSpec
from eegfm.training.config import load_config

if TYPE_CHECKING:  # annotations only: runs imports this module
    from eegfm.evaluation.comparison.runs import RecipeOptions

log = get_logger(__name__)


def check_status(status: int, what: str) -> None:
    """RuntimeError where a job's exit ``status`` is not 0."""
    if status:
        raise RuntimeError(f"{what} failed with exit status {status} (its log above says why)")


def pretrain_folder(output: Path, name: str = "eegfm") -> Path:
    """Where a benchmark run's pretraining ``name`` (an architecture, or ``eegfm-adapted``) lives
    (its ``model/`` inside)."""
    return output / ("pretrain" if name == "eegfm" else f"pretrain-{name}")


def pretrain(
    data: Sequence[str],
    output: Path,
    opts: RecipeOptions,
    architecture: str = "eegfm",
    init_from: Path | None = None,
) -> Path:
    """Pretrain ``architecture`` on the training split of ``data`` and the unlabeled folders;
    returns the model folder. A peer takes the run's settings but its preset's own model fields.
    ``init_from``: a pretrained encoder's model folder to start from, for
    :meth:`RecipeOptions.adapted_steps` steps."""
    fields = {
        "data": [fingerprint.identity(d) for d in data],
        "unlabeled": [fingerprint.identity(d) for d in opts.unlabeled],
        "config": fingerprint.config_identity(opts.config),
        "steps": opts.pretrain_steps,
        "settings": {"set": list(opts.pretrain_set), "held_out": list(opts.held_out_splits)},
        "architecture": architecture,
    }
    if init_from is not None:
        fields["init_from"] = {"encoder": fingerprint.identity(init_from), "steps": opts.adapted_steps()}
    what = f"pretraining {architecture}" + (f" from {init_from}" if init_from is not None else "")
    fingerprint.refresh(output, fields, what)
    if not (output / "model" / "config.json").is_file():
        cfg, note = opts.pretrain_config(architecture, init_from)
        cfg = cfg.with_settings({"wandb.mode": "disabled"})
        log.info("%s on %s into %s", what, ", ".join([*data, *opts.unlabeled]), output)
        with stopwatch.part("pretraining", architecture if init_from is None else f"{architecture} (continued)"):
            status = pretraining.pretrain(cfg, RunSpec((*data, *opts.unlabeled), output), note=note)
            check_status(status, what)
    return output / "model"


def untrained(output: Path, opts: RecipeOptions, seed: int) -> Path:
    """The pretraining architecture with seeded random weights, saved as a model folder."""
    folder = output / f"seed{seed}"
    fields = {"config": fingerprint.config_identity(opts.config), "settings": list(opts.pretrain_set), "seed": seed}
    fingerprint.refresh(folder, fields, "random initialisation")
    if not (folder / "config.json").is_file():
        cfg = load_config(opts.config, "pretrain", list(opts.pretrain_set))
        torch.manual_seed(seed)
        EEGFMForPretraining(cfg.model_config()).save_pretrained(folder)
    return folder
