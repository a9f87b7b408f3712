"""A fine-tuned model in an object store (``s3://``, ``gs://``): published there, fetched to serve.

``python -m eegfm.serving.model_store publish RUN_DIR STORE/NAME`` publishes a fine-tuning run's
serving files (``RUN_FILES`` and ``model/``'s ``MODEL_FILES``; no checkpoints), or a fused model
folder (``eegfm-benchmark ... --export DIR``: every file in it), as a version of the
model NAME (``model_versions``: ``alias`` moves an alias, ``list`` lists them);
``python -m eegfm.serving.model_store RUN_DIR URL`` copies them to URL, unversioned.
``--model s3://bucket/models/NAME@production`` fetches a version; ``--model s3://bucket/runs/ft``
fetches them through Beam's FileSystems (the pipeline's clients and credentials) into
``~/.cache/eegfm/models/<hash of the URL>/`` (``EEGFM_CACHE`` moves it), reused while the store
lists the same sizes and times; a staging folder renamed at the end means a pod killed
mid-download never leaves a half-written model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from eegfm.contract import layout
from eegfm.core.config import ConfigError
from eegfm.core.logs import get_logger, setup_logging
from eegfm.core.stores import filesystems, is_remote, join_path, match_below, match_path, open_binary

SOURCE_FILE = "source.json"  # in a cached copy: what the store listed when it was fetched
MODEL_FILES = (
    "config.json",
    "model.safetensors",
    layout.PREPROCESS_SPEC,
    layout.ARTIFACT_MODEL,
    "model.onnx",
    "model.int8.onnx",
)
RUN_FILES = (layout.RUN, layout.EVAL)  # the training prior, and the evaluation a served model reports
ALIAS_HELP = "a name matching [a-z][a-z0-9_-]*, e.g. staging, production"
log = get_logger(__name__)


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
    published version (``model_versions``)."""
    if "@" in url.rstrip("/").rsplit("/", 1)[-1] and (is_remote(url) or not Path(url).exists()):
        from eegfm.serving.model_versions import resolve_version  # it imports this module

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
    order = sorted(sources, key=lambda name: not name.endswith("model.safetensors"))
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
    if "config.json" not in model_files:
        model_url, run_url = url, url.rsplit("/", 1)[0]
        model_files = _listing(model_url)
    run_files = {k: v for k, v in _listing(run_url).items() if k in RUN_FILES}
    if "config.json" not in model_files or "model.safetensors" not in model_files:
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


def serving_files(run_dir: Path) -> list[Path]:
    """The files of ``run_dir`` a predictor reads, weights last, so a reader that finds the last
    finds the rest: a run's (``RUN_FILES``, ``model/``'s ``MODEL_FILES``, ``model.safetensors``
    last), or a fused model folder's (every file below it, ``fused.json`` last); ConfigError where
    it holds neither."""
    if (run_dir / layout.FUSED_MODEL).is_file():
        return _fused_files(run_dir)
    model = run_dir / "model"
    if not (model / "config.json").is_file() or not (model / "model.safetensors").is_file():
        raise ConfigError(
            f"{run_dir}: expected a fine-tuning run folder with model/config.json and model/model.safetensors, "
            f"or a fused model folder with {layout.FUSED_MODEL} (eegfm-benchmark --export)"
        )
    files = [run_dir / n for n in RUN_FILES if (run_dir / n).is_file()]
    present = _fresh([model / n for n in MODEL_FILES if (model / n).is_file()])
    return files + sorted(present, key=lambda p: p.name == "model.safetensors")


def _fused_files(folder: Path) -> list[Path]:
    files = _fresh(sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()))
    return sorted(files, key=lambda p: p == folder / layout.FUSED_MODEL)


def _fresh(paths: list[Path]) -> list[Path]:
    """``paths`` without an ONNX graph older than its folder's weights: one exported (or quantized)
    from earlier weights would be served as this model's."""

    def stale(path: Path) -> bool:
        weights = path.parent / "model.safetensors"
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eegfm-models",
        description="Publish fine-tuning runs as versions of a model in an object store (or folder), "
        "move its aliases and list them; eegfm-predict / eegfm-serve --model STORE/NAME@ALIAS serve "
        "one. (The older form `RUN_DIR URL` copies a run to URL, unversioned.)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{publish,alias,list}")
    publish = commands.add_parser("publish", help="publish a run as a version (once per content)")
    publish.add_argument(
        "run", help="the training.finetune run folder (with model/), or an eegfm-benchmark --export folder"
    )
    publish.add_argument("model", help="the model's URL: s3://bucket/models/NAME, gs://..., or a local folder")
    publish.add_argument("--alias", type=str, help=f"then point this alias at the version ({ALIAS_HELP})")
    alias = commands.add_parser("alias", help="point an alias at a version (moving it if it exists)")
    alias.add_argument("version", help="STORE/NAME@sha256:DIGEST (or a unique prefix, or another alias)")
    alias.add_argument("alias", help=f"the alias to set ({ALIAS_HELP})")
    listing = commands.add_parser("list", help="the model's versions, oldest first, with dates and aliases")
    listing.add_argument("model", help="the model's URL: s3://bucket/models/NAME, gs://..., or a local folder")
    return parser


def _run_command(args: argparse.Namespace) -> None:
    from eegfm.serving import model_versions as versions  # it imports this module

    if args.command == "publish":
        digest = versions.publish_version(args.run, args.model, args.alias)
        print(f"{args.model}@{versions.DIGEST_PREFIX}{digest}")
    elif args.command == "alias":
        model_url, ref = versions.split_versioned(args.version) or (args.version, "")
        if not ref:
            raise ConfigError(f"{args.version}: expected STORE/NAME@VERSION (sha256:DIGEST or an alias)")
        versions.set_alias(model_url, args.alias, ref)
    else:
        rows = versions.describe_versions(args.model)
        log.info("%s: %d versions", args.model, len(rows))
        for row in rows:
            print(f"{row['digest']}  {row['created']}  {' '.join(row['aliases'])}".rstrip())


def _publish_unversioned(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="eegfm-models",
        description="Copy a fine-tuning run's model to an object store (or folder), unversioned.",
    )
    parser.add_argument(
        "run", help="the training.finetune run folder (with model/), or an eegfm-benchmark --export folder"
    )
    parser.add_argument("url", help="where to: s3://bucket/runs/NAME, gs://..., or a local folder")
    args = parser.parse_args(argv)
    try:
        written = publish_model(args.run, args.url)
    except (ConfigError, OSError) as err:
        parser.error(str(err))
    log.info("published %d files of %s to %s", len(written), args.run, args.url)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    setup_logging("INFO")
    if argv and not argv[0].startswith("-") and argv[0] not in ("publish", "alias", "list"):
        return _publish_unversioned(argv)
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        _run_command(args)
    except (ConfigError, OSError) as err:
        parser.error(str(err))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
