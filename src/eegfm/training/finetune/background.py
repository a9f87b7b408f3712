"""Fine-tuning's ``--background`` folders: real recordings of people without the task's findings,
which the pipeline labeled background (``preprocess --background hms6``: every window Other, with
all of its votes). Their windows join ``--data``'s, read by the same loaders; what differs is who
may see them. A person the folder's corpus holds out (``background_exclude_corpus_splits``) is left
out, and the others are split into train and validation on their own, so that validation always
holds some real background however few people it has beside the task's data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eegfm.core.logs import get_logger
from eegfm.core.tasks import BACKGROUND_CLASSES
from eegfm.training.config import ConfigError, FinetuneConfig
from eegfm.training.data import data_label
from eegfm.training.splits import Split, split_groups

log = get_logger("eegfm.training.finetune")


def how_to_make(task: str) -> str:
    """What the refusal of a folder without background windows says to do."""
    return (
        f"; a background folder is the pipeline's output over real recordings with every window "
        f"labeled {BACKGROUND_CLASSES.get(task, 'background')}: python -m eegfm.pipelines.job.preprocess "
        f"--input RECORDINGS --output DIR --background {task}"
    )


def check_background_task(folders: Sequence[str], cfg: FinetuneConfig, record_task: str) -> None:
    """ConfigError unless the run's task has a background class and trains on its own record task."""
    if cfg.task not in BACKGROUND_CLASSES or record_task != cfg.task:
        raise ConfigError(
            f"--background {data_label(folders)}: background windows are labeled for task "
            f"{' or '.join(repr(t) for t in BACKGROUND_CLASSES)} (its class "
            f"{', '.join(BACKGROUND_CLASSES.values())}); got --task {cfg.task!r}, record task {record_task!r}"
        )


def without_held_out(
    windows: list[dict[str, Any]], folders: Sequence[str], excluded: Sequence[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """``windows`` less every person with a window in a corpus split of ``excluded`` (the whole person,
    not only those windows, as a corpus holds out people), and those people; ConfigError where no
    one is left."""
    held = {w["subject_id"] for w in windows if w["corpus_split"] in excluded}
    kept = [w for w in windows if w["subject_id"] not in held]
    if held:
        log.info(
            "--background: %d of %d windows left out, of %d people in the corpus split(s) %s "
            "(background_exclude_corpus_splits)",
            len(windows) - len(kept),
            len(windows),
            len(held),
            ", ".join(excluded),
        )
    if not kept:
        raise ConfigError(
            f"--background {data_label(folders)}: all {len(windows)} background windows are of people in "
            f"the corpus split(s) {', '.join(excluded)}, held out by background_exclude_corpus_splits; "
            "preprocess the corpus's train recordings, or set background_exclude_corpus_splits=[]"
        )
    return kept, sorted(held)


def with_background(split: Split, windows: list[dict[str, Any]], cfg: FinetuneConfig, key: str) -> Split:
    """``split`` with the background's groups (people, or sites) that it has not placed yet, split
    on their own by ``val_fraction`` (and ``test_fraction``) and ``seed``; one placed already (the
    same person in ``--data``) keeps its side. ValueError where they are too few to split."""
    placed = {g for name in ("train", "val", "test") for g in split.of(name)}
    new = sorted({w[key] for w in windows} - placed)
    if not new:
        return split
    own = split_groups(new, cfg.val_fraction, cfg.seed, cfg.test_fraction, cfg.split_group)
    return Split(*(tuple(sorted(split.of(name) + own.of(name))) for name in ("train", "val", "test")))
