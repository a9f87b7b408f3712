"""Subject- (or site-) grouped splits: fine-tuning's train / validation / test, and the groups
pretraining holds out; each a pure function of the group ids and a seed, the same on every rank
and every resumed run."""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from eegfm.core.logs import get_logger
from eegfm.training.data import RecordFilter, data_label, describe, list_files, scan_windows

log = get_logger(__name__)

SPLITS = ("train", "val", "test")
# split_group -> (the window's feature, the manifest's per-group window counts)
_GROUP_KEYS = {"subject": ("subject_id", "per_subject"), "site": ("site_id", "per_site")}


@dataclasses.dataclass(frozen=True)
class Split:
    """Disjoint group ids (subject or site pseudonyms) of each split."""

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...] = ()

    def of(self, name: str) -> tuple[str, ...]:
        return getattr(self, name)


def split_groups(
    groups: Iterable[str], val_fraction: float, seed: int, test_fraction: float = 0.0, kind: str = "subject"
) -> Split:
    """Split a set of subject (or site) ids into train / val / test by ranking each by
    ``sha256(seed:id)``: the first ``round(val_fraction * n)`` (at least 1) validate, the next
    ``round(test_fraction * n)`` test. An id's rank ignores the others, so adding subjects moves few.
    """
    ids = sorted(set(groups))
    if not 0 < val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError(
            f"val_fraction, test_fraction: expected 0 < val, 0 <= test, val + test < 1; "
            f"got {val_fraction}, {test_fraction}"
        )
    n_val = max(1, round(val_fraction * len(ids)))
    n_test = max(1, round(test_fraction * len(ids))) if test_fraction > 0 else 0
    if len(ids) - n_val - n_test < 1:
        raise ValueError(
            f"split_group={kind}: {len(ids)} {kind}(s) cannot give {n_val} validation, {n_test} test "
            f"and at least 1 training {kind}; the data needs more {kind}s"
            + ("" if kind == "subject" else " (or split_group=subject)")
        )
    ranked = sorted(ids, key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())
    train, val, test = ranked[n_val + n_test :], ranked[:n_val], ranked[n_val : n_val + n_test]
    return Split(*(tuple(sorted(part)) for part in (train, val, test)))


def fewer_groups(groups: Iterable[str], fraction: float, seed: int) -> tuple[str, ...]:
    """A seeded ``fraction`` (at least one) of ``groups``, sorted: fine-tuning on fewer labeled
    people, pretraining on fewer people for a scaling curve."""
    ids = sorted(set(groups))
    n = max(1, round(fraction * len(ids)))
    return tuple(sorted(np.random.default_rng(seed).choice(ids, size=n, replace=False).tolist()))


def corpus_splits(windows: Iterable[tuple[str, str]], val_fraction: float, seed: int) -> Split:
    """Subjects split as their corpus splits them, from every window's ``(subject_id, corpus_split)``:
    ``eval`` tests, ``dev`` (else ``val_fraction`` of ``train``) validates. A window without a corpus
    split, or a subject in two, is an error."""
    parts: dict[str, set[str]] = {}
    for subject, part in windows:
        parts.setdefault(subject, set()).add(part)
    if bare := sorted(s for s, found in parts.items() if "" in found):
        raise ValueError(
            f"corpus_split: {len(bare)} of {len(parts)} subjects have windows with no corpus split "
            f"(subject {bare[0]}, ...): expected every window from a corpus with its own train/dev/eval "
            "(preprocess --dataset tuab, tusz or tuev on its edf/train, dev and eval folders; eegmat "
            "splits by subject)"
        )
    if mixed := sorted(s for s, found in parts.items() if len(found) > 1):
        raise ValueError(
            f"corpus_split: subject {mixed[0]} has recordings in the corpus's "
            f"{' and '.join(sorted(parts[mixed[0]]))} splits ({len(mixed)} such subjects); "
            "expected each subject in one"
        )
    named = {
        name: tuple(sorted(s for s, found in parts.items() if found == {name})) for name in ("train", "dev", "eval")
    }
    if not named["train"]:
        raise ValueError(
            f"corpus_split: no subject in the corpus's train split (found: "
            f"{', '.join(f'{k} {len(v)}' for k, v in named.items() if v)}); expected train/ recordings"
        )
    if named["dev"]:
        return Split(train=named["train"], val=named["dev"], test=named["eval"])
    inner = split_groups(named["train"], val_fraction, seed)
    return Split(train=inner.train, val=inner.val, test=named["eval"])


def site_splits(
    windows: Iterable[tuple[str, str]], test_sites: Sequence[str], val_fraction: float, seed: int, kind: str = "subject"
) -> Split:
    """The groups of ``test_sites`` as the test split, from every window's ``(group id, site id)``;
    the others split by :func:`split_groups`. A group at a test site and another is an error."""
    sites_of: dict[str, set[str]] = {}
    for group, site in windows:
        sites_of.setdefault(group, set()).add(site)
    found = sorted(set().union(*sites_of.values())) if sites_of else []
    wanted = set(test_sites)
    if missing := sorted(wanted - set(found)):
        raise ValueError(
            f"test_sites: {', '.join(missing)} has no window of the task; expected some of "
            f"{', '.join(found) or 'no site'}"
        )
    if mixed := sorted(g for g, sites in sites_of.items() if sites & wanted and sites - wanted):
        sites = sites_of[mixed[0]]
        raise ValueError(
            f"test_sites: {kind} {mixed[0]} has windows in the test site {sorted(sites & wanted)[0]} and "
            f"in {sorted(sites - wanted)[0]} ({len(mixed)} such {kind}s); expected each {kind} at sites "
            "of one side, or test_sites naming all of its sites"
        )
    test = tuple(sorted(g for g, sites in sites_of.items() if sites <= wanted))
    rest = sorted(set(sites_of) - set(test))
    if not rest:
        raise ValueError(
            f"test_sites: every site ({', '.join(found)}) is a test site; expected at least one "
            "other to train and validate on"
        )
    inner = split_groups(rest, val_fraction, seed, kind=kind)
    return Split(train=inner.train, val=inner.val, test=test)


# ------------------------------------------------------------------------------ pretraining's
@dataclasses.dataclass(frozen=True)
class HeldOut:
    """The groups pretraining leaves out of training and validates on."""

    group: str  # "subject" or "site"
    val: tuple[str, ...]  # held-out ids
    n_groups: int  # ids in the data
    windows: int  # windows of the held-out ids
    total_windows: int  # windows in the data
    exclude_corpus_splits: tuple[str, ...] = ()  # neither trained nor validated on

    def train_filter(self) -> RecordFilter:
        return self._filter("exclude_")

    def val_filter(self) -> RecordFilter:
        return self._filter("")

    def _filter(self, prefix: str) -> RecordFilter:
        key = prefix + ("sites" if self.group == "site" else "subjects")
        return RecordFilter(exclude_corpus_splits=self.exclude_corpus_splits, **{key: self.val})

    def describe(self) -> str:
        return (
            f"{len(self.val)} of {self.n_groups} {self.group}s held out for validation "
            f"({self.windows} of {self.total_windows} windows)"
        )


def corpus_split_windows(counts: Mapping, splits: Iterable[str]) -> int | None:
    """Windows of the corpus ``splits`` by a manifest's counts; None where it does not count them."""
    per_split = counts.get("per_corpus_split")
    if not isinstance(per_split, Mapping):
        return None
    return sum(int(per_split.get(split, 0)) for split in splits)


def group_counts(data: str | Sequence[str], group: str, exclude_corpus_splits: tuple[str, ...] = ()) -> dict[str, int]:
    """Windows per subject (site) of a pipeline output, leaving out ``exclude_corpus_splits``: from
    its manifest where that can tell, else from one metadata pass."""
    feature, key = _GROUP_KEYS[group]
    try:
        manifest = describe(data).counts
    except OSError:  # no manifest (or ``data`` is a file)
        list_files(data)  # a missing or empty folder is an error of its own, before any talk of manifests
        manifest = {}
    counts = manifest.get(key)
    excluded = corpus_split_windows(manifest, exclude_corpus_splits) if exclude_corpus_splits else 0
    if isinstance(counts, Mapping) and counts and excluded == 0:
        return {str(k): int(v) for k, v in counts.items()}
    splits = ", ".join(exclude_corpus_splits)
    why = (
        f"no {key} counts in a manifest"
        if not (isinstance(counts, Mapping) and counts)
        else f"its manifest does not count windows by corpus split, and those of {splits} are left out"
        if excluded is None
        else f"its counts include {excluded} windows of the corpus split(s) {splits}, left out"
    )
    log.info("%s: %s; reading the windows' %s (one pass over the data)", data_label(data), why, feature)
    keep = RecordFilter(exclude_corpus_splits=exclude_corpus_splits)
    return dict(Counter(w[feature] for w in scan_windows(data, keep)))


def hold_out(
    data: str | Sequence[str], val_fraction: float, group: str, seed: int, exclude_corpus_splits: tuple[str, ...] = ()
) -> HeldOut | None:
    """The held-out groups for pretraining's validation; None when ``val_fraction`` is 0 or the
    data has a single group (with a warning)."""
    if val_fraction <= 0:
        return None
    counts = group_counts(data, group, tuple(exclude_corpus_splits))
    if len(counts) < 2:
        log.warning(
            "validation off: %s holds %d %s(s)%s, and holding one out would leave nothing to pretrain on "
            "(set val_fraction=0 to silence this)",
            data_label(data),
            len(counts),
            group,
            f" outside the corpus split(s) {', '.join(exclude_corpus_splits)}" if exclude_corpus_splits else "",
        )
        return None
    split = split_groups(counts, val_fraction, seed, kind=group)
    held = sum(counts[g] for g in split.val)
    return HeldOut(group, split.val, len(counts), held, sum(counts.values()), tuple(exclude_corpus_splits))


def training_filter(
    data: str | Sequence[str],
    group: str,
    fraction: float,
    seed: int,
    held_out: HeldOut | None,
    exclude_corpus_splits: tuple[str, ...] = (),
) -> RecordFilter:
    """The windows pretraining trains on: every group but the held-out ones, or a seeded
    ``fraction`` of them (:func:`fewer_groups`; 1: all, without reading the data again)."""
    if fraction >= 1 and held_out is not None:
        return held_out.train_filter()
    if fraction >= 1:
        return RecordFilter(exclude_corpus_splits=exclude_corpus_splits)
    counts = group_counts(data, group, exclude_corpus_splits)
    left = set(counts) - set(held_out.val if held_out is not None else ())
    kept = fewer_groups(left, fraction, seed)
    log.info(
        "pretraining reads %d of its %d training %ss (train_subject_fraction %g): %d of %d windows",
        len(kept), len(left), group, fraction, sum(counts[g] for g in kept), sum(counts[g] for g in left),
    )  # fmt: skip
    key = "sites" if group == "site" else "subjects"
    return RecordFilter(exclude_corpus_splits=exclude_corpus_splits, **{key: kept})
