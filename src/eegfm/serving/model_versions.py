"""Versioned models in a store: immutable versions named by their content's digest, movable aliases.

Under a model's URL (``s3://bucket/models/NAME``, ``gs://...`` or a local folder):

- ``versions/<sha256>/``: a run's serving files as ``publish_model`` writes them, and
  ``version.json`` (digest, creation time, each file's size and sha256, the run's ``eval.json``
  and ``benchmark.json``), written last: a version without it is unfinished;
- ``aliases/<alias>.json``: ``{"alias", "digest", "updated"}``, rewritten to move the alias.

The digest is the sha256 of the files' manifest (relative path, size, sha256 of each), so the same
files published twice are the same version, whose files are never written again.
``NAME@production``, ``NAME@sha256:<hex>`` or ``NAME@<hex prefix>`` names one version
(:func:`resolve_version`).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from eegfm.contract import layout
from eegfm.core.config import ConfigError
from eegfm.core.logs import get_logger
from eegfm.core.stores import is_remote, join_path, match_below, open_binary
from eegfm.serving.model_store import publish_model, serving_files, write_file

ALIAS_PATTERN = "[a-z][a-z0-9_-]*"
DIGEST_PREFIX = "sha256:"
VERSION_RECORD = "version.json"
BENCHMARK_FILE = "benchmark.json"  # benchmark numbers beside a run's eval.json, if any
SHORT = 12  # hex digits of a digest shown in messages and listings
_ALIAS = re.compile(ALIAS_PATTERN)
_HEX = re.compile("[0-9a-f]+")
# a string value that names a local file: left out of a version record (it may hold a patient's name)
_LOCAL_PATH = re.compile(r"^(/|~|\.{1,2}/|file:|[A-Za-z]:[\\/])")
log = get_logger(__name__)


def split_versioned(url: str) -> tuple[str, str] | None:
    """``(model URL, version or alias)`` of ``.../NAME@REF``; None for a URL without ``@``."""
    head, _, last = url.rstrip("/").rpartition("/")
    if "@" not in last:
        return None
    name, _, ref = last.partition("@")
    if not name or not ref:
        raise ConfigError(f"{url}: expected NAME@ALIAS or NAME@sha256:DIGEST after the store's folder")
    return (f"{head}/{name}" if head else name), ref


def check_alias(alias: str) -> str:
    if not _ALIAS.fullmatch(alias):
        raise ConfigError(f"alias {alias!r}: expected a name matching {ALIAS_PATTERN} (e.g. staging, production)")
    return alias


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


def _read_json(url: str) -> dict[str, Any]:
    try:
        with open_binary(url) as src:
            return json.loads(src.read())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{url}: cannot read it as JSON ({err})") from None


def _names_below(folder: str, pattern: str) -> dict[str, str]:
    """First path segment below ``folder`` -> URL, of the files matching ``pattern`` there."""
    folder = folder.rstrip("/") if is_remote(folder) else str(Path(folder))
    if not is_remote(folder) and not Path(folder).is_dir():
        return {}
    found = {}
    for meta in match_below(folder, pattern):
        relative = meta.path[len(folder) + 1 :].replace("\\", "/")
        found[relative.split("/", 1)[0]] = meta.path
    return found


def version_digests(model_url: str) -> list[str]:
    """The digests (hex) of the finished versions of ``model_url``."""
    return sorted(_names_below(join_path(model_url, "versions"), f"*/{VERSION_RECORD}"))


def aliases(model_url: str) -> dict[str, str]:
    """Alias -> digest (hex) of ``model_url``."""
    found = _names_below(join_path(model_url, "aliases"), "*.json")
    return {
        name.removesuffix(".json"): _read_json(url)["digest"].removeprefix(DIGEST_PREFIX) for name, url in found.items()
    }


def _abbreviated(digests: list[str]) -> str:
    return ", ".join(DIGEST_PREFIX + d[:SHORT] for d in digests) or "none"


def _by_prefix(model_url: str, prefix: str) -> str:
    known = version_digests(model_url)
    matches = [d for d in known if d.startswith(prefix)]
    if len(matches) == 1:
        return matches[0]
    what = "is ambiguous; it begins" if matches else "is not a version of this model; known versions"
    raise ConfigError(f"{model_url}@{DIGEST_PREFIX}{prefix}: {what}: {_abbreviated(matches or known)}")


def resolve_digest(model_url: str, ref: str) -> str:
    """The digest (hex) that ``ref`` names: ``sha256:<hex prefix>``, an alias, or a bare hex prefix
    (an alias of that name comes first); ConfigError naming the known aliases or versions."""
    if ref.startswith(DIGEST_PREFIX):
        prefix = ref.removeprefix(DIGEST_PREFIX).lower()
        if not _HEX.fullmatch(prefix):
            raise ConfigError(f"{model_url}@{ref}: expected hexadecimal digits after {DIGEST_PREFIX}")
        return _by_prefix(model_url, prefix)
    known = aliases(model_url)
    if ref in known:
        return known[ref]
    if _HEX.fullmatch(ref):
        return _by_prefix(model_url, ref)
    listed = ", ".join(sorted(known)) or "none"
    raise ConfigError(
        f"{model_url}@{ref}: no such alias; known aliases: {listed} (or a version: {DIGEST_PREFIX}<digest prefix>)"
    )


def resolve_version(url: str) -> str:
    """The version folder that ``.../NAME@REF`` names (``url`` itself without ``@``)."""
    versioned = split_versioned(url)
    if versioned is None:
        return url
    model_url, ref = versioned
    digest = resolve_digest(model_url, ref)
    log.info("model %s: version %s%s", url, DIGEST_PREFIX, digest[:SHORT])
    return join_path(model_url, "versions", digest)


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
        record = _read_json(join_path(model_url, "versions", digest, VERSION_RECORD))
        names = sorted(a for a, d in pointing.items() if d == digest)
        rows.append({"digest": DIGEST_PREFIX + digest, "created": record.get("created"), "aliases": names})
    return sorted(rows, key=lambda row: (row["created"] or "", row["digest"]))
