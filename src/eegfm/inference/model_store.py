"""Where a served model comes from: a local folder, or a fine-tuned model in an object store
(``s3://``, ``gs://``) fetched to serve, published there unversioned or as a version.

``--model s3://bucket/models/NAME@production`` fetches a version (``NAME@sha256:<hex>`` or
``NAME@<hex prefix>`` names one too: :func:`resolve_version`; ``inference.model_versions``
publishes them and moves the aliases); ``--model s3://bucket/runs/ft`` fetches a run's serving
files through Beam's FileSystems (the pipeline's clients and credentials) into
``~/.cache/eegfm/models/<hash of the URL>/`` (``EEGFM_CACHE`` moves it), reused while the store
lists the same sizes and times; a staging folder renamed at the end means a pod killed
mid-download never leaves a half-written model. :func:`resolve_model_dir` gives the model folder
of what ``--model`` names, a run folder or the model folder itself.

Under a model's URL: ``versions/<sha256>/`` (a run's serving files and ``version.json``, written
last: a version without it is unfinished) and ``aliases/<alias>.json`` (``{"alias", "digest",
"updated"}``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from eegfm.contract import layout
from eegfm.contract import model_files as files
from eegfm.core.config import ConfigError
from eegfm.core.logs import get_logger
from eegfm.core.stores import is_remote, join_path, match_below, match_path, open_binary

SOURCE_FILE = "source.json"  # in a cached copy: what the store listed when it was fetched
MODEL_FILES = (files.CONFIG, files.WEIGHTS, files.PREPROCESS_SPEC, files.ARTIFACT_MODEL, files.ONNX, files.INT8_ONNX)
RUN_FILES = (layout.RUN, layout.EVAL)  # the training prior, and the evaluation a served model reports
ALIAS_PATTERN = "[a-z][a-z0-9_-]*"
DIGEST_PREFIX = "sha256:"
VERSION_RECORD = "version.json"
SHORT = 12  # hex digits of a digest shown in messages and listings
_HEX = re.compile("[0-9a-f]+")
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


def read_json(url: str) -> dict[str, Any]:
    """The JSON document at ``url`` (a store's or a local path); ConfigError naming it if unreadable."""
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
        name.removesuffix(".json"): read_json(url)["digest"].removeprefix(DIGEST_PREFIX) for name, url in found.items()
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


def cache_root() -> Path:
    return Path(os.environ.get("EEGFM_CACHE") or Path.home() / ".cache" / "eegfm") / "models"


def _listing(folder: str) -> dict[str, list]:
    """Name -> [size, last modified] of the files directly in ``folder`` that a predictor reads."""
    found = {}
    for meta in match_below(folder, "*"):
        name = meta.path[len(folder.rstrip("/")) + 1 :]
        if name in MODEL_FILES or name in RUN_FILES:
            found[name] = [meta.size_in_bytes, getattr(meta, "last_updated_in_seconds", None)]
    return found


def fetch_model(url: str) -> Path:
    """The local run folder for ``url`` (a run folder or its model folder in an object store, or a
    fused model folder, ``fused.json`` and what it names); ConfigError naming what is missing.
    Local paths are returned as they are. ``.../NAME@ALIAS`` or ``.../NAME@sha256:DIGEST`` is a
    published version (:func:`resolve_version`)."""
    if "@" in url.rstrip("/").rsplit("/", 1)[-1] and (is_remote(url) or not Path(url).exists()):
        url = resolve_version(url)
    if not is_remote(url):
        return Path(url)
    url = url.rstrip("/")
    try:
        sources = _fused_sources(url) or _run_sources(url)
    except OSError as err:
        raise ConfigError(f"--model {url}: cannot list it ({err})") from None
    local = cache_root() / hashlib.sha256(url.encode()).hexdigest()[:16]
    # The weights first: a model.onnx written after them is taken as exported from them (publish_model
    # leaves a stale one out), so the predictor reuses it instead of exporting again.
    order = sorted(sources, key=lambda name: not name.endswith(files.WEIGHTS))
    wanted = {name: sources[name][1] for name in order}
    try:  # the store's sizes and times when the copy was made: a re-published model (same sizes) differs
        cached = json.loads((local / SOURCE_FILE).read_text())
    except (OSError, ValueError):
        cached = None
    if cached == wanted and all((local / name).is_file() for name in wanted):
        log.info("model %s: using the copy in %s", url, local)
        return local
    log.info(
        "model %s: fetching %d files (%.1f MB) to %s", url, len(wanted), sum(v[0] for v in wanted.values()) / 1e6, local
    )
    _download({name: sources[name][0] for name in order}, wanted, local)
    return local


def _run_sources(url: str) -> dict[str, tuple[str, list]]:
    """``{name in the local copy: (its URL, [size, time])}`` of a run folder (or its model folder) at ``url``."""
    model_url, run_url = join_path(url, "model"), url
    model_files = _listing(model_url)
    if files.CONFIG not in model_files:
        model_url, run_url = url, url.rsplit("/", 1)[0]
        model_files = _listing(model_url)
    run_files = {k: v for k, v in _listing(run_url).items() if k in RUN_FILES}
    if files.CONFIG not in model_files or files.WEIGHTS not in model_files:
        raise ConfigError(
            f"--model {url}: expected a fine-tuning run folder (with model/config.json and "
            f"model/model.safetensors) or its model folder, or a fused model folder (with "
            f"{layout.FUSED_MODEL}); found {sorted(model_files) or 'no files'}"
        )
    found = {f"model/{k}": (join_path(model_url, k), v) for k, v in model_files.items()}
    return found | {k: (join_path(run_url, k), v) for k, v in run_files.items()}


def _fused_sources(url: str) -> dict[str, tuple[str, list]]:
    """Every file below ``url`` where it holds a fused model (``fused.json``), else none."""
    if not match_path(join_path(url, layout.FUSED_MODEL)):
        return {}
    found = {}
    for meta in match_below(url, "**"):
        name = meta.path[len(url) + 1 :]
        found[name] = (meta.path, [meta.size_in_bytes, getattr(meta, "last_updated_in_seconds", None)])
    return found


def _download(sources: dict[str, str], wanted: dict[str, list], local: Path) -> None:
    """``sources`` (name -> URL) copied into ``local`` through a staging folder renamed at the end."""
    local.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{local.name}.", dir=local.parent))
    try:
        for name, source in sources.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            with open_binary(source) as src, (staging / name).open("wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        (staging / SOURCE_FILE).write_text(json.dumps(wanted))
        shutil.rmtree(local, ignore_errors=True)
        staging.replace(local)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def resolve_model_dir(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """The model folder of a fine-tuning run (the run folder or its ``model/``, fetched first from
    an object store) and the run's run.json ({} where there is none)."""
    path = fetch_model(str(path))
    model_dir = path / layout.MODEL_DIR if files.is_model_folder(path / layout.MODEL_DIR) else path
    if not files.is_model_folder(model_dir):
        raise ConfigError(
            f"--model {path}: expected a fine-tuning run folder (with model/config.json) or its "
            "model folder (config.json, model.safetensors), an ensemble's (ensemble.json) or a benchmark "
            "export (fused.json); found none"
        )
    try:
        run = json.loads((model_dir.parent / layout.RUN).read_text())
    except (OSError, ValueError):
        run = {}
    return model_dir, run if isinstance(run, dict) else {}
