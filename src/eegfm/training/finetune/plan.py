"""Fine-tuning's plan: one metadata-only pass over ``--data`` (and ``--background``) finds the task's
labeled windows, splits their subjects (or sites) into train / validation (/ test) and counts the
training split's classes (for ``class_weights: balanced``) and mean target (the class-prior baseline)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from eegfm.contract.schema import SFREQ
from eegfm.training.config import ConfigError, FinetuneConfig
from eegfm.training.data import RecordFilter, data_label, file_key, list_files, scan_windows
from eegfm.training.finetune.background import check_background_task, how_to_make, with_background, without_held_out
from eegfm.training.splits import SPLITS, Split, corpus_splits, fewer_groups, site_splits, split_groups


@dataclasses.dataclass
class Plan:
    """What the metadata pass decides; built on rank 0 and broadcast (plain data only)."""

    record_task: str
    split_group: str
    split: Split
    windows: dict[str, int]  # labeled windows per split
    class_counts: list[int]  # training split, per class (empty for regression)
    prior: list[float]  # training split mean target distribution
    stage2_windows: int | None  # training windows with >= two_stage_min_votes votes
    # Per split, the labeled windows each file holds (empty in a checkpoint from before it).
    files: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    # Per split, the windows of them from --background folders (empty without, or from before it),
    # and the background's people its corpus holds out (background_exclude_corpus_splits): never read.
    background: dict[str, int] = dataclasses.field(default_factory=dict)
    held_out: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return cls(**{**data, "split": Split(**{k: tuple(v) for k, v in data["split"].items()})})


@dataclasses.dataclass
class Stage:
    name: str  # "stage1" | "stage2"
    index: int
    min_votes: float  # training windows need at least this many votes (hms6)
    windows: int  # training windows in this stage


def stages_of(cfg: FinetuneConfig, plan: Plan) -> list[Stage]:
    first = Stage("stage1", 0, 1.0 if cfg.task == "hms6" else 0.0, plan.windows["train"])
    if cfg.two_stage_min_votes is None:
        return [first]
    return [first, Stage("stage2", 1, float(cfg.two_stage_min_votes), int(plan.stage2_windows))]


def class_names(cfg: FinetuneConfig) -> list[str]:
    return [str(v) for _, v in sorted((cfg.model_config().id2label or {}).items())]


def is_labeled(window: dict[str, Any], cfg: FinetuneConfig) -> bool:
    """Whether a scanned window carries a target for ``cfg.task``: votes (hms6), else a label >= 0."""
    if cfg.task == "hms6":
        return float(window["votes"].sum()) > 0
    return window["label"] >= 0


def check_plan_files(plan: Plan, data: str | Sequence[str], checkpoint: str) -> None:
    """A resumed run reads the files its split was planned on, wherever they lie now (by site
    folder and file name, ``training.data.file_key``); ConfigError naming the missing ones otherwise."""
    files = list_files(data)
    key = file_key(files)
    planned = {key(path) for counts in plan.files.values() for path, n in counts.items() if n > 0}
    if missing := sorted(planned - set(map(key, files))):
        raise ConfigError(
            f"resume: {checkpoint} continues a run whose split was planned on {len(planned)} TFRecord "
            f"file{'s' * (len(planned) != 1)}, "
            f"{len(missing)} of them not in --data {data_label(data)} "
            f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}); "
            f"give that run's --data (its run.json names it), or start a new run (another --output, or --resume none)"
        )


def labeled_windows(
    data: str | Sequence[str], cfg: FinetuneConfig, record_task: str, patch_size: int, option: str = "--data"
) -> list[dict[str, Any]]:
    """The scanned windows of ``record_task`` with a target; ConfigError, naming ``data`` as the
    command line's ``option``, where one is shorter than a patch, none has a target, or a label is
    outside the task's classes."""
    windows = scan_windows(data, RecordFilter())
    labeled = [w for w in windows if w["task"] == record_task and is_labeled(w, cfg)]
    if short := [w["n_times"] for w in labeled if w["n_times"] < patch_size]:
        raise ConfigError(
            f"{option} {data_label(data)}: {len(short)} labeled window{'s' * (len(short) != 1)} of {record_task!r} "
            f"{'are' if len(short) != 1 else 'is'} shorter than the model's patch of {patch_size} samples "
            f"({patch_size / SFREQ:g} s at {SFREQ:g} Hz), the least it reads: {min(short)} samples "
            f"({min(short) / SFREQ:.2f} s) the shortest; label windows of at least {patch_size / SFREQ:g} s "
            f"(labels.csv duration_s, preprocess --window_seconds)"
        )
    if not labeled:
        found = Counter(w["task"] or "<unlabeled>" for w in windows)
        need = "expert votes" if cfg.task == "hms6" else "a label >= 0"
        same = found.get(record_task, 0)
        why = (
            ""
            if not same
            else f"; none of its {same} {record_task!r} window{'s' * (same != 1)} has {need}"
            + (" (an HMS test.csv layout: windows to classify, not to train on)" if cfg.task == "hms6" else "")
        )
        raise ConfigError(
            f"{option} {data_label(data)}: no labeled windows for task {cfg.task!r} (windows with task "
            f"{record_task!r} and "
            f"{need}); the data holds {dict(sorted(found.items())) or 'no windows'}{why}"
            + (how_to_make(record_task) if option == "--background" else "")
        )
    if cfg.task not in ("hms6", "regression"):
        classes = class_names(cfg)
        if outside := Counter(int(w["label"]) for w in labeled if not 0 <= w["label"] < len(classes)):
            found = ", ".join(f"{label} ({n} window{'s' * (n != 1)})" for label, n in sorted(outside.items()))
            raise ConfigError(
                f"{option} {data_label(data)}: task {cfg.task!r} takes labels 0..{len(classes) - 1} "
                f"({', '.join(classes)}); "
                f"windows of {record_task!r} have label {found}. For more classes use --task multiclass with "
                f"--set 'model_overrides.id2label={{0: a, 1: b, 2: c}}'"
            )
    return labeled


def _split(labeled: list[dict[str, Any]], cfg: FinetuneConfig, key: str) -> Split:
    if cfg.corpus_split:
        return corpus_splits(((w["subject_id"], w["corpus_split"]) for w in labeled), cfg.val_fraction, cfg.seed)
    if cfg.test_sites:
        return site_splits(
            ((w[key], w["site_id"]) for w in labeled), cfg.test_sites, cfg.val_fraction, cfg.seed, cfg.split_group
        )
    return split_groups((w[key] for w in labeled), cfg.val_fraction, cfg.seed, cfg.test_fraction, cfg.split_group)


def _class_counts_and_prior(train: list[dict[str, Any]], cfg: FinetuneConfig) -> tuple[list[int], list[float]]:
    """The training windows per class, and their mean target distribution (regression: mean label)."""
    if cfg.task == "regression":  # the baseline predicts the training split's mean
        return [], [float(np.mean([w["label"] for w in train]))]
    n_classes = len(class_names(cfg))
    counts, prior = [0] * n_classes, [0.0] * n_classes
    for w in train:
        if cfg.task == "hms6":
            votes = w["votes"].astype(np.float64)
            counts[int(w["label"]) if 0 <= w["label"] < n_classes else int(votes.argmax())] += 1
            prior = [p + v for p, v in zip(prior, votes / votes.sum())]
        elif 0 <= w["label"] < n_classes:
            counts[w["label"]] += 1
            prior[w["label"]] += 1.0
    total = sum(prior)
    return counts, [p / total for p in prior] if total > 0 else prior


def _background_windows(
    background: Sequence[str], cfg: FinetuneConfig, record_task: str, patch_size: int
) -> tuple[list[dict[str, Any]], list[str]]:
    """The ``--background`` folders' windows of people not held out, and the held-out people; each
    folder must hold background windows (``labeled_windows`` refuses it by name otherwise)."""
    windows = [
        w for folder in background for w in labeled_windows(folder, cfg, record_task, patch_size, "--background")
    ]
    return without_held_out(windows, background, cfg.background_exclude_corpus_splits)


def plan_data(
    data: str | Sequence[str],
    cfg: FinetuneConfig,
    record_task: str,
    patch_size: int = 1,
    background: Sequence[str] = (),
    fold: Split | None = None,
) -> Plan:
    """Scan ``data`` for the task's labeled windows, split their groups, count the training split.
    ``patch_size``: the model's, in samples; a shorter window is an error (the model reads patches).
    ``background``: folders of background windows (``preprocess --background``) read beside ``data``,
    their people split on their own and the corpus's held-out ones left out (``finetune.background``).
    ``fold``: the split to use in place of the one the settings draw (a fold of the training people,
    ``finetune.epoch_folds``)."""
    if background:  # before --data's scan: a task without background windows says so, not that it has no labels
        check_background_task(background, cfg, record_task)
    labeled = labeled_windows(data, cfg, record_task, patch_size)
    extra, held_out = _background_windows(background, cfg, record_task, patch_size) if background else ([], [])
    key = "subject_id" if cfg.split_group == "subject" else "site_id"
    try:
        split = _split(labeled, cfg, key)
    except ValueError as err:
        raise ConfigError(f"--data {data_label(data)}, task {cfg.task!r}: {err}") from None
    try:
        split = with_background(split, extra, cfg, key)
    except ValueError as err:
        raise ConfigError(f"--background {data_label(background)}: {err}") from None
    background_paths = {w["path"] for w in extra}
    labeled += extra
    if cfg.train_subject_fraction < 1:
        split = dataclasses.replace(split, train=fewer_groups(split.train, cfg.train_subject_fraction, cfg.seed))
    split = fold or split
    side = {g: name for name in SPLITS for g in split.of(name)}
    labeled = [w for w in labeled if w[key] in side]
    train = [w for w in labeled if side[w[key]] == "train"]
    counts, prior = _class_counts_and_prior(train, cfg)
    stage2 = None
    if cfg.two_stage_min_votes is not None:
        stage2 = sum(float(w["votes"].sum()) >= cfg.two_stage_min_votes for w in train)
        if stage2 == 0:
            raise ConfigError(
                f"two_stage_min_votes: no training window in {data_label(data)} has >= "
                f"{cfg.two_stage_min_votes} votes; lower it or set it to null"
            )
    files: dict[str, Counter] = {name: Counter() for name in SPLITS}
    for w in labeled:
        files[side[w[key]]][w["path"]] += 1
    return Plan(
        record_task,
        cfg.split_group,
        split,
        {name: sum(side[w[key]] == name for w in labeled) for name in SPLITS},
        counts,
        prior,
        stage2,
        {name: dict(sorted(found.items())) for name, found in files.items()},
        {name: sum(n for path, n in files[name].items() if path in background_paths) for name in SPLITS},
        held_out,
    )


def split_filter(plan: Plan, name: str, min_votes: float = 0.0) -> RecordFilter:
    """The loader filter of one split: the task's windows of that split's subjects (sites), less the
    background's held-out people (a site of theirs may be among the split's)."""
    groups = plan.split.of(name)
    by_group = {"sites": groups} if plan.split_group == "site" else {"subjects": groups}
    return RecordFilter(
        tasks=(plan.record_task,), min_votes=min_votes, exclude_subjects=tuple(plan.held_out), **by_group
    )
