"""Publishing models to a store: a run's serving files, unversioned (:func:`publish_model`) or as
an immutable version named by its content's digest (:func:`publish_version`), and the movable
aliases that name versions (:func:`set_alias`). ``inference.model_store`` reads what this writes;
``eegfm-models`` (``serving.models``) is the command line.

Under a model's URL (``s3://bucket/models/NAME``, ``gs://...`` or a local folder):

- ``versions/<sha256>/``: a run's serving files as ``publish_model`` writes them, and
  ``version.json`` (digest, creation time, each file's size and sha256, the run's ``eval.json``
  and ``benchmark.json``), written last: a version without it is unfinished;
- ``aliases/<alias>.json``: ``{"alias", "digest", "updated"}``, rewritten to move the alias.

The digest is the sha256 of the files' manifest (relative path, size, sha256 of each), so the same
files published twice are the same version, whose files are never written again.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from eegfm.contract import layout
from eegfm.contract.model_files import CONFIG, WEIGHTS
from eegfm.core.config import ConfigError
from eegfm.core.logs import get_logger
from eegfm.core.stores import filesystems, is_remote, join_path
from eegfm.inference.model_store import (
    ALIAS_PATTERN,
    DIGEST_PREFIX,
    MODEL_FILES,
    RUN_FILES,
    SHORT,
    VERSION_RECORD,
    aliases,
    read_json,
    resolve_digest,
    version_digests,
)

BENCHMARK_FILE = "benchmark.json"  # benchmark numbers beside a run's eval.json, if any
_ALIAS = re.compile(ALIAS_PATTERN)
# a string value that names a local file: left out of a version record (it may hold a patient's name)
_LOCAL_PATH = re.compile(r"^(/|~|\.{1,2}/|file:|[A-Za-z]:[\\/])")
log = get_logger(__name__)


def check_alias(alias: str) -> str:
    if not _ALIAS.fullmatch(alias):
        raise ConfigError(f"alias {alias!r}: expected a name matching {ALIAS_PATTERN} (e.g. staging, production)")
    return alias


def serving_files(run_dir: Path) -> list[Path]:
    """The files of ``run_dir`` a predictor reads, weights last, so a reader that finds the last
    finds the rest: a run's (``RUN_FILES``, ``model/``'s ``MODEL_FILES``, ``model.safetensors``
    last), or a fused model folder's (every file below it, ``fused.json`` last); ConfigError where
    it holds neither."""
    if (run_dir / layout.FUSED_MODEL).is_file():
        return _fused_files(run_dir)
    model = run_dir / layout.MODEL_DIR
    if not (model / CONFIG).is_file() or not (model / WEIGHTS).is_file():
        raise ConfigError(
            f"{run_dir}: expected a fine-tuning run folder with model/config.json and model/model.safetensors, "
            f"or a fused model folder with {layout.FUSED_MODEL} (eegfm-benchmark --export)"
        )
    files = [run_dir / n for n in RUN_FILES if (run_dir / n).is_file()]
    present = _fresh([model / n for n in MODEL_FILES if (model / n).is_file()])
    return files + sorted(present, key=lambda p: p.name == WEIGHTS)


def _fused_files(folder: Path) -> list[Path]:
    files = _fresh(sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()))
    return sorted(files, key=lambda p: p == folder / layout.FUSED_MODEL)


def _fresh(paths: list[Path]) -> list[Path]:
    """``paths`` without an ONNX graph older than its folder's weights: one exported (or quantized)
    from earlier weights would be served as this model's."""

    def stale(path: Path) -> bool:
        weights = path.parent / WEIGHTS
        return path.suffix == ".onnx" and weights.is_file() and path.stat().st_mtime < weights.stat().st_mtime

    return [p for p in paths if not stale(p)]


def write_file(source: Path | bytes, target: str) -> None:
    """Write a local file (or bytes) to ``target``: an object-store URL or a local path."""
    from apache_beam.io.filesystem import CompressionTypes  # Beam: heavy, only to publish a model

    if is_remote(target):
        with filesystems(target).create(target, compression_type=CompressionTypes.UNCOMPRESSED) as out:
            if isinstance(source, bytes):
                out.write(source)
            else:
                with source.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        return
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    if isinstance(source, bytes):
        Path(target).write_bytes(source)
    else:
        shutil.copyfile(source, target)


def publish_model(run_dir: str | os.PathLike[str], url: str) -> list[str]:
    """Upload a run's (or a fused model folder's) serving files to ``url`` (local folders too); the
    paths written, in :func:`serving_files`' order: a reader that finds the last finds the rest."""
    run_dir = Path(run_dir)
    written = []
    for path in serving_files(run_dir):
        target = join_path(url.rstrip("/"), str(path.relative_to(run_dir)).replace(os.sep, "/"))
        write_file(path, target)
        written.append(target)
    return written


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        for block in iter(lambda: src.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest(run_dir: Path) -> list[dict[str, Any]]:
    """Each serving file of ``run_dir``: its path in the run (``model/config.json``), size and sha256."""
    return [
        {"path": path.relative_to(run_dir).as_posix(), "size": path.stat().st_size, "sha256": _sha256(path)}
        for path in serving_files(run_dir)
    ]


def content_digest(files: list[dict[str, Any]]) -> str:
    """The sha256 (hex) of a manifest, whatever order its files were listed in."""
    canonical = json.dumps(sorted(files, key=lambda f: f["path"]), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _without_local_paths(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_local_paths(v) for k, v in value.items() if not _is_local_path(v)}
    if isinstance(value, list):
        return [_without_local_paths(v) for v in value if not _is_local_path(v)]
    return value


def _is_local_path(value: Any) -> bool:
    return isinstance(value, str) and _LOCAL_PATH.match(value) is not None


def _run_json(path: Path) -> Any:
    """A JSON file of the run (None if absent); ConfigError naming it if it is not JSON."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise ConfigError(f"{path}: expected JSON ({err})") from None


def version_record(run_dir: Path, files: list[dict[str, Any]]) -> dict[str, Any]:
    """What ``version.json`` says of a version: no local paths (nor the names in them)."""
    return {
        "digest": DIGEST_PREFIX + content_digest(files),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "files": files,
        "evaluation": _without_local_paths(_run_json(run_dir / layout.EVAL)),
        "benchmark": _without_local_paths(_run_json(run_dir / BENCHMARK_FILE)),
        # a fused model's card: the benchmark row it is, what validation chose, its metrics
        "card": _without_local_paths((_run_json(run_dir / layout.FUSED_MODEL) or {}).get("card")),
    }


def set_alias(model_url: str, alias: str, ref: str) -> str:
    """Point ``alias`` at the version ``ref`` names (a digest, its prefix or another alias); the digest."""
    check_alias(alias)
    before = aliases(model_url).get(alias)
    digest = resolve_digest(model_url, ref)
    record = {
        "alias": alias,
        "digest": DIGEST_PREFIX + digest,
        "updated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    write_file(json.dumps(record, indent=2).encode(), join_path(model_url, "aliases", f"{alias}.json"))
    moved = f"moved from {DIGEST_PREFIX}{before[:SHORT]}" if before and before != digest else "set"
    log.info("%s@%s -> %s%s (%s)", model_url, alias, DIGEST_PREFIX, digest[:SHORT], moved)
    return digest


def publish_version(run_dir: str | Path, model_url: str, alias: str | None = None) -> str:
    """Publish ``run_dir``'s serving files as a version of ``model_url`` (once: the same files again
    write nothing) and point ``alias`` at it; the digest (hex)."""
    if alias is not None:
        check_alias(alias)
    run_dir = Path(run_dir)
    files = manifest(run_dir)
    digest = content_digest(files)
    version_url = join_path(model_url, "versions", digest)
    if digest in version_digests(model_url):
        log.info("%s: already published as %s%s; its files are left as they are", run_dir, DIGEST_PREFIX, digest)
    else:
        log.info(
            "%s: publishing %d files (%.1f MB) as %s",
            run_dir,
            len(files),
            sum(f["size"] for f in files) / 1e6,
            version_url,
        )
        publish_model(run_dir, version_url)
        record = json.dumps(version_record(run_dir, files), indent=2).encode()
        write_file(record, join_path(version_url, VERSION_RECORD))  # last: the version is complete
    if alias is not None:
        set_alias(model_url, alias, DIGEST_PREFIX + digest)
    return digest


def describe_versions(model_url: str) -> list[dict[str, Any]]:
    """Each version of ``model_url``, oldest first: digest, created, aliases pointing at it."""
    pointing = aliases(model_url)
    rows = []
    for digest in version_digests(model_url):
        record = read_json(join_path(model_url, "versions", digest, VERSION_RECORD))
        names = sorted(a for a, d in pointing.items() if d == digest)
        rows.append({"digest": DIGEST_PREFIX + digest, "created": record.get("created"), "aliases": names})
    return sorted(rows, key=lambda row: (row["created"] or "", row["digest"]))
