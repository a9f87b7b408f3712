"""Where a data set's windows are: the pipeline output folders' shards, their manifests, and a
pass over the windows' metadata. Local paths, or anything the object-store layer reaches (gs://, s3://)."""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import IO, Any

from eegfm.contract import layout
from eegfm.contract.tfrecord import read_records
from eegfm.contract.windows import Window
from eegfm.core.config import ConfigError
from eegfm.core.logs import get_logger
from eegfm.core.stores import StoreUnreachableError, filesystems, is_remote, join_path, match_below, open_binary
from eegfm.training.data.config import RecordFilter

SHARD_PATTERN = "part-*-of-*.tfrecord"
DataPaths = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]

log = get_logger(__name__)


def open_source(path: str) -> contextlib.AbstractContextManager[str | IO[bytes]]:
    """What ``read_records`` reads ``path`` from: the local path itself (it opens it), else an
    open file object of the remote one."""
    return contextlib.nullcontext(path) if not is_remote(path) else open_binary(path)


def _shards_below(folder: str) -> list[tuple[str, int]]:
    """``(path, size in bytes)`` of an output folder's ``<site>/part-*`` shards."""
    if is_remote(folder):
        filesystems(join_path(folder, "*", SHARD_PATTERN))  # the store's client, as configured; errors name the pattern
        found = [(m.path, m.size_in_bytes) for m in match_below(folder, f"*/{SHARD_PATTERN}")]
    else:
        found = [(p, os.path.getsize(p)) for p in glob.glob(os.path.join(glob.escape(folder), "*", SHARD_PATTERN))]
    return sorted(found)


def _site_of(path: str) -> str:
    """The site folder of a shard (``OUTPUT/<site>/part-...``): by contract the ``site_id``."""
    return path.rstrip("/").split("/")[-2] if is_remote(path) else os.path.basename(os.path.dirname(path))


def list_files(data_dir: DataPaths, *, sites: Iterable[str] = (), exclude_sites: Iterable[str] = ()) -> list[str]:
    """Sorted non-empty TFRecord shards under pipeline output folder(s), or named ``.tfrecord``
    files; ``sites`` / ``exclude_sites`` prune by the site folder (the ``site_id``)."""
    return [path for path, _ in list_shards(data_dir, sites=sites, exclude_sites=exclude_sites)]


def list_shards(
    data_dir: DataPaths, *, sites: Iterable[str] = (), exclude_sites: Iterable[str] = ()
) -> list[tuple[str, int | None]]:
    """:func:`list_files` with each file's size in bytes (None for a named remote file)."""
    entries = [data_dir] if isinstance(data_dir, (str, os.PathLike)) else list(data_dir)
    if not entries:
        raise ValueError("data_dir: expected a pipeline output folder or .tfrecord files; got an empty list")
    keep, drop = set(sites), set(exclude_sites)
    files: dict[str, int | None] = {}
    for entry in map(os.fspath, entries):
        if entry.endswith(".tfrecord"):
            if not is_remote(entry) and not os.path.isfile(entry):
                raise FileNotFoundError(f"data_dir: {entry} does not exist")
            files[entry] = None if is_remote(entry) else os.path.getsize(entry)
            continue
        if not is_remote(entry) and not os.path.isdir(entry):
            raise FileNotFoundError(
                f"data_dir: {entry} is not a directory (expected the output folder "
                "of pipelines.job.preprocess, or .tfrecord files)"
            )
        found = _shards_below(entry)
        if not found:
            raise FileNotFoundError(
                f"data_dir: no TFRecord shards in {entry}; expected <site>/{SHARD_PATTERN} files "
                "written by pipelines.job.preprocess (with manifest.json beside the site folders)"
            )
        files.update(
            (path, size)
            for path, size in found
            if size > 0 and (not keep or _site_of(path) in keep) and _site_of(path) not in drop
        )
    return sorted(files.items())


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What ``manifest.json`` says about a pipeline output (see ``pipelines.job.preprocess``)."""

    sites: tuple[str, ...]
    channels: tuple[str, ...]
    sfreq: float
    quality_names: tuple[str, ...]
    classes: dict[str, list[str]]
    counts: dict[str, Any]
    config_hash: str
    pipeline_version: str


def data_dirs(data: DataPaths) -> list[str]:
    """The output folder(s) ``data`` names; a folder given twice is an error."""
    dirs = [os.fspath(data)] if isinstance(data, (str, os.PathLike)) else [os.fspath(d) for d in data]
    if twice := sorted({d for d in dirs if dirs.count(d) > 1}):
        raise ValueError(f"--data: {twice[0]} is given twice; expected each output folder once")
    return dirs


def data_label(data: DataPaths) -> str:
    """``data`` as messages name it: the folder, or the folders joined by commas."""
    return ", ".join(data_dirs(data))


def describe(data_dir: DataPaths) -> DatasetInfo:
    """``manifest.json`` of the output folder(s), merged: they must agree on channels, rate,
    quality metrics and each task's classes."""
    dirs = data_dirs(data_dir)
    infos = [(d, _describe_one(d)) for d in dirs]
    first_dir, merged = infos[0]
    for folder, info in infos[1:]:
        for field in ("channels", "sfreq", "quality_names"):
            if getattr(info, field) != getattr(merged, field):
                raise ValueError(
                    f"--data {first_dir} and {folder}: their manifests' {field} differ "
                    f"({getattr(merged, field)} vs {getattr(info, field)}); expected outputs of the "
                    "same pipeline version, read together"
                )
        for task in set(info.classes) & set(merged.classes):
            if list(info.classes[task]) != list(merged.classes[task]):
                raise ValueError(
                    f"--data {first_dir} and {folder}: task {task!r} has classes "
                    f"{merged.classes[task]} in one and {info.classes[task]} in the other"
                )
        merged = dataclasses.replace(
            merged,
            sites=tuple(sorted({*merged.sites, *info.sites})),
            classes={**merged.classes, **info.classes},
            counts=_added(merged.counts, info.counts),
            config_hash=",".join(sorted({*merged.config_hash.split(","), info.config_hash} - {""})),
            pipeline_version=",".join(sorted({*merged.pipeline_version.split(","), info.pipeline_version} - {""})),
        )
    return merged


def check_data(data: DataPaths, say: bool = True, allow_partial: bool = False) -> str | tuple[str, ...]:
    """``data`` as a run reads it: one output folder, or several whose manifests agree, each holding
    the shards its manifest lists (ConfigError otherwise; ``allow_partial`` warns instead, see
    :func:`check_shards`); ``say`` warns of recordings that several of them hold."""
    try:
        dirs = data_dirs(data)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    check_shards(dirs, allow_partial=allow_partial, say=say)
    try:
        if len(dirs) > 1:
            describe(dirs)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    except FileNotFoundError:  # shards without their manifest, read under allow_partial
        pass
    if len(dirs) > 1 and say:
        if shared := shared_recordings(dirs):
            log.warning(
                "%d recording(s) are in more than one --data folder (%s): the same file processed by "
                "each run, whose windows are read once per folder",
                len(shared),
                "; ".join(f"{n} in {pair}" for pair, n in sorted(Counter(shared.values()).items())),
            )
    return dirs[0] if len(dirs) == 1 else tuple(dirs)


class IncompleteDataError(ConfigError):
    """A pipeline output whose shards are not the ones its manifest lists, or without a manifest."""


@dataclasses.dataclass(frozen=True)
class ShardProblem:
    """One way an output folder's shards differ from its manifest. ``kind``: ``no manifest``,
    ``missing``, ``empty``, ``short``, ``longer`` or ``extra``; ``records``/``bytes`` are what the
    manifest lists (None where it does not say), ``found`` the bytes on disk (without a manifest:
    the shards there)."""

    folder: str
    shard: str
    kind: str
    records: int | None = None
    bytes: int | None = None
    found: int | None = None

    @property
    def unreadable(self) -> bool:
        """A cut file: its reader fails at the cut, so even a partial run cannot read it."""
        return self.kind == "short"

    def __str__(self) -> str:
        where = join_path(self.folder, self.shard)
        if self.kind == "no manifest":
            return (
                f"{where}: missing beside {count_of(self.found, 'shard')}; expected the manifest a finished "
                "pipelines.job.preprocess run writes beside its shards (a run stopped before its end writes none)"
            )
        if self.kind == "extra":
            return f"{where}: not among the shards manifest.json lists (a file of another run?)"
        listed = "listed in manifest.json" if self.bytes is None else f"manifest.json lists {self.expected()}"
        if self.kind == "missing":
            return f"{where}: missing; {listed}"
        return f"{where}: {self.kind} ({self.found} bytes); {listed}"

    def expected(self) -> str:
        return f"{count_of(self.records, 'record')}, {count_of(self.bytes, 'byte')}"


def count_of(n: int | None, noun: str) -> str:
    return f"? {noun}s" if n is None else f"{n} {noun}{'' if n == 1 else 's'}"


def shard_problems(folder: str) -> list[ShardProblem]:
    """How the shards in the output ``folder`` differ from its manifest's ``shards`` (and, from
    manifests that list them, ``shard_bytes``/``shard_records``): [] when they are the same."""
    # The listing first: an unreachable store is named by the shards' pattern, as the loaders name it.
    found = {shard_name(path): size for path, size in _shards_below(folder)}
    try:
        manifest = _manifest(folder)
    except FileNotFoundError:
        list_shards(folder)  # no folder, or no shards: that error first, as the loaders would say it
        return [ShardProblem(folder, layout.MANIFEST, "no manifest", found=len(found))]
    listed = {shard_name(name) for name in manifest.get("shards", ())}
    sizes = {shard_name(k): int(v) for k, v in (manifest.get("shard_bytes") or {}).items()}
    records = {shard_name(k): int(v) for k, v in (manifest.get("shard_records") or {}).items()}
    problems = []
    for name in sorted(listed | set(found)):
        want, have = sizes.get(name), found.get(name)
        kind = None
        if name not in listed:
            kind = "extra"
        elif have is None:
            kind = "missing"
        elif want is not None and have != want:
            kind = "empty" if have == 0 else "short" if have < want else "longer"
        if kind:
            problems.append(ShardProblem(folder, name, kind, records.get(name), want, have))
    return problems


_NAMED = 20  # problems a warning names one by one; the rest are counted by site


def check_shards(data: DataPaths, *, allow_partial: bool = False, say: bool = True) -> list[ShardProblem]:
    """Refuse (``IncompleteDataError``, naming each file and what was expected) output folders whose
    shards differ from their manifests, or that have none: a run stopped mid-write, a shard lost or
    cut. ``allow_partial`` reads what is there and warns (``say``) of what is not, but for a cut
    file, which no reader gets through. Named ``.tfrecord`` files are not checked."""
    try:
        problems = [p for d in data_dirs(data) if not d.endswith(".tfrecord") for p in shard_problems(d)]
    except StoreUnreachableError as err:
        raise StoreUnreachableError(f"--data {data_label(data)}: {err}") from None
    cut = [p for p in problems if p.unreadable]
    if problems and not (allow_partial and not cut):
        shown = cut if allow_partial else problems
        more = f"; and {len(shown) - 5} more" if len(shown) > 5 else ""
        hint = (
            "remove the cut file(s) to train on the rest with --allow_partial, or rerun eegfm-preprocess"
            if allow_partial
            else "rerun eegfm-preprocess for a whole data set, or pass --allow_partial to train on what is there"
        )
        raise IncompleteDataError(
            f"--data {data_label(data)}: {count_of(len(shown), 'problem')} with its shards: "
            f"{'; '.join(map(str, shown[:5]))}{more}. Expected every shard its manifest lists, whole; {hint}"
        )
    if problems and say:
        lost = [p for p in problems if p.kind in ("missing", "empty")]
        bare = [p for p in problems if p.kind == "no manifest"]
        summary = [
            lost and f"{count_of(len(lost), 'shard')} missing or empty",
            lost and f"{sum(p.records or 0 for p in lost)} windows the manifest lists not read",
            bare and f"{count_of(len(bare), 'folder')} without a manifest, its shards unchecked",
        ]
        rest = Counter(p.shard.split("/")[0] for p in problems[_NAMED:])
        log.warning(
            "--allow_partial: training on what is there (%s): %s%s",
            ", ".join(filter(None, summary)) or "shards differ from the manifest",
            "; ".join(map(str, problems[:_NAMED])),
            f"; and {len(problems) - _NAMED} more, by site: {dict(sorted(rest.items()))}" if rest else "",
        )
    return problems


def _added(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Two manifests' counts added: numbers summed, nested counts (per site, per label ...) key by key."""
    out = dict(a)
    for key, value in b.items():
        mine = out.get(key)
        if isinstance(value, Mapping) and isinstance(mine, Mapping):
            out[key] = _added(mine, value)
        elif isinstance(value, (int, float)) and isinstance(mine, (int, float)) and not isinstance(value, bool):
            out[key] = mine + value
        elif key not in out:
            out[key] = value
    return out


def _manifest(data_dir: str) -> dict[str, Any]:
    path = join_path(os.fspath(data_dir), layout.MANIFEST)
    try:
        with open_binary(path) as fileobj:
            return json.loads(fileobj.read())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no manifest; expected the output folder of eegfm-preprocess") from None


def shared_recordings(dirs: Sequence[str]) -> dict[str, str]:
    """The recordings (content digests) that more than one of ``dirs`` holds -> "A and B"."""
    holders: dict[str, set[str]] = {}
    for folder in dirs:
        try:
            inputs = _manifest(folder).get("inputs", ())
        except FileNotFoundError:
            continue
        for row in inputs:
            if row.get("status") == "processed" and row.get("source_sha256"):
                holders.setdefault(row["source_sha256"], set()).add(folder)
    return {digest: " and ".join(d for d in dirs if d in found) for digest, found in holders.items() if len(found) > 1}


def _describe_one(data_dir: str) -> DatasetInfo:
    manifest = _manifest(data_dir)
    return DatasetInfo(
        sites=tuple(manifest.get("sites", ())),
        channels=tuple(manifest["channels"]),
        sfreq=float(manifest["sfreq"]),
        quality_names=tuple(manifest.get("quality_names", ())),
        classes=dict(manifest.get("classes", {})),
        counts=dict(manifest.get("counts", {})),
        config_hash=str(manifest.get("config_hash", "")),
        pipeline_version=str(manifest.get("pipeline_version", "")),
    )


def shard_name(path: str) -> str:
    """``<site>/<file>``: a shard's name wherever its data set lies."""
    return "/".join(path.replace("\\", "/").split("/")[-2:])


def file_key(files: Sequence[str]) -> Callable[[str], str]:
    """How a run's records name the shards ``files``: by :func:`shard_name` (so a resumed run may
    find its data elsewhere), or by full path where two share one."""
    names = [shard_name(path) for path in files]
    return shard_name if len(set(names)) == len(names) else os.fspath


def estimated_windows(shards: Sequence[tuple[str, int | None]], record_bytes: int) -> int | None:
    """Windows in the files, from their sizes over the first record's (EEG barely compresses: 223
    for 216 windows in 18 files); None where a size is unknown."""
    if record_bytes <= 0 or any(size is None for _, size in shards):
        return None
    return sum(size for _, size in shards) // record_bytes


def first_record_bytes(path: str) -> int:
    """The size of the first record of ``path`` (the loader's unit of memory), 0 if it has none."""
    with open_source(path) as source:
        return next((len(raw) for raw in read_records(source, "SNAPPY")), 0)


def scan_windows(
    data_dir: DataPaths, filters: RecordFilter | None = None, *, verify_crc: bool = True
) -> list[dict[str, Any]]:
    """Metadata of every window that passes ``filters``, in file order, without decoding samples
    (fine-tuning plans its splits with it)."""
    filters = RecordFilter() if filters is None else filters
    found = []
    for path in list_files(data_dir, sites=filters.sites, exclude_sites=filters.exclude_sites):
        with open_source(path) as source:
            for index, raw in enumerate(read_records(source, "SNAPPY", verify_crc)):
                window = Window(raw, path, index)
                if filters.accepts(window):
                    found.append(
                        {
                            "site_id": window.text("site_id"),
                            "subject_id": window.text("subject_id"),
                            "task": window.text("task"),
                            "label": window.scalar("label"),
                            "votes": window.floats("votes"),
                            "n_times": window.n_times,
                            "path": path,
                            "corpus_split": window.text("corpus_split"),
                        }
                    )
    return found
