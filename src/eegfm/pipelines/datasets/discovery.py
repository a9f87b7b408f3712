"""Input discovery, on the launcher: `--input` patterns -> one `SourceItem` per recording, an `Ignored` per other file.

The files are grouped by data set (a folder holding a layout marker, else each first-level folder
below an input folder), each group listed by its adapter (``--dataset``, or with ``auto`` the first
that recognises the layout), so the manifest accounts for every file matched.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Sequence

from eegfm.core.config import check_option
from eegfm.core.stores import exists, is_remote, join_path
from eegfm.pipelines.datasets import bids, hms, physionet, tuh  # noqa: F401 (they register their adapters)
from eegfm.pipelines.datasets.adapters import ADAPTERS, Group, log, site_from_path, split_recordings
from eegfm.pipelines.datasets.generic import labeled_path, warn_unmatched_labels
from eegfm.pipelines.datasets.items import Ignored, SourceItem
from eegfm.pipelines.datasets.listing import is_dir, listing, normalized, root_of, under_any
from eegfm.pipelines.datasets.names import ADAPTER_NAMES, DATASETS
from eegfm.pipelines.datasets.tables import csv_rows

_DETECTION_ORDER = tuple(ADAPTERS[name] for name in ADAPTER_NAMES)
# Files whose presence directly in a folder makes that folder one data set root.
_LAYOUT_MARKERS = ("train.csv", "test.csv", "dataset_description.json", "participants.tsv", "SUBJECT-INFO")
# Files an adapter reads beside the recordings: labels, votes, age and sex.
_SIDECARS = ("labels.csv", "train.csv", "test.csv", "participants.tsv", "subject-info.csv")


def detect_dataset(files: list[str]) -> str:
    return next((a.name for a in _DETECTION_ORDER if a.detect is not None and a.detect(files)), "edf")


def discover(
    patterns: list[str],
    *,
    dataset: str = "auto",
    site: str | None = None,
    exclude: Sequence[str] = (),
    warn_sidecars: bool = True,
) -> tuple[list[SourceItem], list[Ignored], dict[str, str]]:
    """Items to process, files not processed (with reasons), and the dataset used per group (with
    `auto` each is detected on its own, so one run covers a mixed tree). ``exclude``: files and
    folders that are no inputs (the job's own output and key file). ``warn_sidecars``: warn of
    label files beside the inputs that the patterns leave out (off for predictions)."""
    check_option("--dataset", dataset, DATASETS)
    patterns = normalized(patterns)
    sizes, unreadable, passed_over = listing(patterns)
    left_out = [path for path in [*sizes, *unreadable, *passed_over] if under_any(path, exclude)]
    for path in left_out:
        sizes.pop(path, None)
        unreadable.pop(path, None)
        passed_over.pop(path, None)
    if left_out:
        log.info(
            "%d of the files the inputs match are the job's own (%s): not inputs", len(left_out), ", ".join(exclude)
        )
    if not sizes and not unreadable and not passed_over:
        raise FileNotFoundError(
            f"--input {' '.join(patterns)}: matched no files but the job's own ({', '.join(exclude)})"
        )
    files, inside = _folder_recordings(sorted(sizes), sizes)
    folders = [p.rstrip("/") for p in patterns if is_dir(p)]
    # A file or glob inside an input folder takes its site from that folder, as the folder's own files do.
    roots = folders + [root for root in map(root_of, patterns) if not under_any(root, folders)]
    # Label sidecars may sit above the site folders they describe (simulator: edf/labels.csv).
    label_files = tuple(f for f in files if posixpath.basename(f) == "labels.csv")
    items, ignored, used = [], [], {}
    for key, group_files in sorted(_group_by_layout(files, roots).items()):
        kind = detect_dataset(group_files) if dataset == "auto" else dataset
        got, skipped = ADAPTERS[kind].list_items(Group(group_files, roots, site, label_files))
        items += got
        ignored += skipped
        used[key] = kind
    ignored += inside
    # FIFOs, sockets, devices, links to them, folders named like a recording: never opened
    ignored += [Ignored(path, why) for path, why in sorted(passed_over.items())]
    unread, passed_over = _unreadable_inputs(unreadable, roots, site, dataset, used)
    items += unread
    ignored += passed_over
    if "edf" in used.values():
        warn_unmatched_labels(list(label_files), {item.path for item in items})
    for sidecar in _sidecars_left_out(patterns, set(files)) if warn_sidecars else ():
        log.warning(
            "%s is not among the inputs, so what it says of them (labels, votes, age, sex) is not used; "
            "give its folder %s as --input to read it",
            sidecar,
            posixpath.dirname(sidecar),
        )
    # Largest recordings first: runners hand out work in input order (the DirectRunner deals it
    # to its workers in turn, Dataflow starts it first), so the long tail ends balanced.
    items.sort(key=lambda item: (-sizes.get(item.path, 0), item.path))
    return items, ignored, used


def _unreadable_inputs(
    unreadable: dict[str, str], roots: list[str], site: str | None, dataset: str, used: dict[str, str]
) -> tuple[list[SourceItem], list[Ignored]]:
    """The entries this user cannot read (``listing.unreadable``): a recording (or what may hold one,
    a folder that cannot be listed) as an input quarantined at ``read`` with what is wrong, any other
    file passed over with it. No adapter saw them: each takes its site's data set, if known."""
    items, ignored = [], []
    kinds = set(used.values())
    only = kinds.pop() if len(kinds) == 1 else "edf"  # the data set of every readable input, if one
    for path, problem in sorted(unreadable.items()):
        folder = os.path.isdir(path)
        # A folder's site as its files' would be (a site folder that cannot be listed is that site).
        site_name = site_from_path(path + "/" if folder else path, roots)
        why_not = [] if folder else split_recordings([path])[1]
        if why_not:
            ignored.append(Ignored(path, f"{problem}; {why_not[0].reason}"))
            continue
        kind = dataset if dataset != "auto" else used.get(site_name, only)
        items.append(SourceItem(path, kind, site or site_name, read_problem=problem))
    return items, ignored


def _sidecar_places(pattern: str) -> set[tuple[str, tuple[str, ...]]]:
    """``(folder, names)`` where sidecars of what ``pattern`` matches may lie: where a file or glob
    starts, the folders above it, above train_eegs/ or test_eegs/ (HMS), atop a BIDS data set."""
    folder = is_dir(pattern)
    root = pattern.rstrip("/") if folder else root_of(pattern)
    places = set() if folder else {(root, _SIDECARS)}
    # labels.csv may sit above the site folders it describes (the simulator's edf/labels.csv),
    # CHB-MIT's SUBJECT-INFO above its case folders; not above a bucket ("gs://b" is no folder of "gs:").
    for above in (posixpath.dirname(root), posixpath.dirname(posixpath.dirname(root))):
        if above and above != root and is_remote(above) == is_remote(root):
            places.add((above, ("labels.csv", "SUBJECT-INFO")))
    if posixpath.basename(root) in ("train_eegs", "test_eegs"):
        places.add((posixpath.dirname(root), ("train.csv", "test.csv")))
    if "/sub-" in root + "/":
        places.add(((root + "/").split("/sub-", 1)[0], ("participants.tsv",)))
    return places


def _sidecars_left_out(patterns: list[str], files: set[str]) -> list[str]:
    """Sidecars of what the inputs match that are no inputs (train.csv for ``hms/train_eegs/*.parquet``)."""
    found = []
    for folder, names in sorted(set().union(*map(_sidecar_places, patterns))):
        for name in names:
            path = join_path(folder, name) if folder else name
            if path in files or not exists(path):
                continue
            if name == "labels.csv" and not any(
                labeled_path(folder, row["path"]) in files for _, row in csv_rows(path) if row.get("path")
            ):
                continue  # describes other files than these
            found.append(path)
    return sorted(set(found))


def _group_by_layout(files: list[str], roots: list[str]) -> dict[str, list[str]]:
    """Files grouped by data set: a root holding a layout marker, else each first-level folder (a site)."""
    marked = {r for r in roots if any(f == join_path(r, m) for f in files for m in _LAYOUT_MARKERS)}
    groups: dict[str, list[str]] = {}
    for f in files:
        root = next((r for r in sorted(marked, key=len, reverse=True) if f.startswith(r + "/")), None)
        key = posixpath.basename(root) if root else site_from_path(f, roots)
        groups.setdefault(key, []).append(f)
    return groups


def mff_folder(path: str) -> str:
    """The EGI MFF recording (a folder ``x.mff``) a file is part of, or ''."""
    parts = path.split("/")
    for k, part in enumerate(parts[:-1]):
        if part.lower().endswith(".mff") and not (is_remote(path) and k <= 2):  # a bucket is no recording
            return "/".join(parts[: k + 1])
    return ""


def _folder_recordings(files: list[str], sizes: dict[str, int]) -> tuple[list[str], list[Ignored]]:
    """``files`` with each EGI MFF folder's files replaced by the folder (its size theirs, in ``sizes``),
    and those files, as read through it."""
    kept: dict[str, None] = {}
    inside = []
    for f in files:
        folder = mff_folder(f)
        if folder:
            sizes[folder] = sizes.get(folder, 0) + sizes.get(f, 0)
            why = f"part of the EGI MFF recording {posixpath.basename(folder)} (a folder, read as one recording)"
            inside.append(Ignored(f, why))
        kept[folder or f] = None
    return list(kept), inside
