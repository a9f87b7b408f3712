"""A fine-tuned model in an object store (``s3://``, ``gs://``): published there, fetched to serve.

``python -m eegfm.serving.model_store RUN_DIR URL`` publishes a fine-tuning run's serving files
(``RUN_FILES`` and ``model/``'s ``MODEL_FILES``; no checkpoints). ``--model s3://bucket/runs/ft``
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
import tempfile
from pathlib import Path

from eegfm.core.config import ConfigError
from eegfm.core.logs import get_logger, setup_logging
from eegfm.core.stores import filesystems, is_remote, join_path, match_below, open_binary

SOURCE_FILE = "source.json"  # in a cached copy: what the store listed when it was fetched
MODEL_FILES = (
    "config.json",
    "model.safetensors",
    "preprocess.json",
    "artifact_ae.npz",
    "model.onnx",
    "model.int8.onnx",
)
RUN_FILES = ("run.json", "eval.json")  # the training prior, and the evaluation a served model reports
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
    """The local run folder for ``url`` (a run folder or its model folder in an object store);
    ConfigError naming what is missing. Local paths are returned as they are."""
    if not is_remote(url):
        return Path(url)
    url = url.rstrip("/")
    model_url, run_url = join_path(url, "model"), url
    try:
        model_files = _listing(model_url)
        if "config.json" not in model_files:
            model_url, run_url = url, url.rsplit("/", 1)[0]
            model_files = _listing(model_url)
        run_files = {k: v for k, v in _listing(run_url).items() if k in RUN_FILES}
    except OSError as err:
        raise ConfigError(f"--model {url}: cannot list it ({err})") from None
    if "config.json" not in model_files or "model.safetensors" not in model_files:
        raise ConfigError(
            f"--model {url}: expected a fine-tuning run folder (with model/config.json and "
            f"model/model.safetensors) or its model folder; found {sorted(model_files) or 'no files'}"
        )
    local = cache_root() / hashlib.sha256(url.encode()).hexdigest()[:16]
    # The weights first: a model.onnx written after them is taken as exported from them (publish_model
    # leaves a stale one out), so the predictor reuses it instead of exporting again.
    wanted = {
        **{f"model/{k}": v for k, v in sorted(model_files.items(), key=lambda kv: kv[0] != "model.safetensors")},
        **run_files,
    }
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
    local.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{local.name}.", dir=local.parent))
    try:
        (staging / "model").mkdir()
        for name in wanted:
            source = join_path(run_url, name) if name in RUN_FILES else join_path(model_url, name.split("/", 1)[1])
            with open_binary(source) as src, (staging / name).open("wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        (staging / SOURCE_FILE).write_text(json.dumps(wanted))
        shutil.rmtree(local, ignore_errors=True)
        staging.replace(local)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return local


def publish_model(run_dir: str | os.PathLike[str], url: str) -> list[str]:
    """Upload a fine-tuning run's serving files to ``url`` (local folders too); the paths written.
    ``model.safetensors`` goes last, so a reader that finds it finds the rest."""
    from apache_beam.io.filesystem import CompressionTypes  # Beam: heavy, only to publish a model

    run_dir = Path(run_dir)
    model = run_dir / "model"
    if not (model / "config.json").is_file() or not (model / "model.safetensors").is_file():
        raise ConfigError(
            f"{run_dir}: expected a fine-tuning run folder with model/config.json and model/model.safetensors"
        )
    files = [run_dir / n for n in RUN_FILES if (run_dir / n).is_file()]
    weights_time = (model / "model.safetensors").stat().st_mtime
    present = [model / n for n in MODEL_FILES if (model / n).is_file()]
    # an ONNX graph exported (or quantized) from earlier weights would be served as this model's
    present = [p for p in present if p.suffix != ".onnx" or p.stat().st_mtime >= weights_time]
    files += sorted(present, key=lambda p: p.name == "model.safetensors")
    written = []
    for path in files:
        target = join_path(url.rstrip("/"), str(path.relative_to(run_dir)).replace(os.sep, "/"))
        if is_remote(target):
            with (
                filesystems(target).create(target, compression_type=CompressionTypes.UNCOMPRESSED) as out,
                path.open("rb") as src,
            ):
                shutil.copyfileobj(src, out, 1 << 20)
        else:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m eegfm.serving.model_store",
        description="Publish a fine-tuning run's model to an object store (or "
        "folder) that eegfm-predict / eegfm-serve --model can read.",
    )
    parser.add_argument("run", help="the training.finetune run folder (with model/)")
    parser.add_argument("url", help="where to: s3://bucket/runs/NAME, gs://..., or a local folder")
    args = parser.parse_args(argv)
    setup_logging("INFO")
    try:
        written = publish_model(args.run, args.url)
    except (ConfigError, OSError) as err:
        parser.error(str(err))
    log.info("published %d files of %s to %s", len(written), args.run, args.url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
