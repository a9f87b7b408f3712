"""How a fine-tuned model's windows were made, saved beside the model so new EEG is prepared the same way.

Fine-tuning copies the pipeline manifest's recipe (config, its hash, the artifact autoencoder) into
the model folder as ``preprocess.json`` (plus ``artifact_ae.npz``), so the folder alone serves
predictions. With several ``--data`` folders the first one's recipe is saved, the others' hashes listed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from eegfm.contract import layout
from eegfm.core.config import ConfigError
from eegfm.core.logs import get_logger
from eegfm.core.stores import join_path, open_binary

log = get_logger(__name__)


def _manifest(data_dir: str) -> dict[str, Any]:
    with open_binary(join_path(data_dir, layout.MANIFEST)) as fileobj:
        return json.loads(fileobj.read())


def _recipe(manifest: dict[str, Any]) -> dict[str, Any]:
    """A manifest's preprocessing recipe: its config and hash, pipeline version, channel order and rate."""
    recipe = {key: manifest[key] for key in ("config", "config_hash", "channels", "sfreq")}
    return {**recipe, "pipeline_version": manifest.get("pipeline_version", "")}


def save_preprocess_spec(data_dirs: list[str], model_dir: str | os.PathLike[str]) -> Path | None:
    """Write ``model_dir/preprocess.json`` (and the artifact autoencoder) from the first data
    folder's manifest; None, with a warning, where there is no readable manifest."""
    model_dir = Path(model_dir)
    try:
        manifests = [_manifest(d) for d in data_dirs]
    except (OSError, ValueError) as err:
        log.warning(
            "no %s beside the model: cannot read the data's manifest (%s); predictions on new EEG "
            "will need --data naming the pipeline output it was trained on",
            layout.PREPROCESS_SPEC,
            err,
        )
        return None
    first = manifests[0]
    artifact_model = None
    if first.get("artifact_model"):
        try:
            with open_binary(join_path(data_dirs[0], first["artifact_model"])) as src:
                (model_dir / layout.ARTIFACT_MODEL).write_bytes(src.read())
            artifact_model = layout.ARTIFACT_MODEL
        except OSError as err:
            log.warning(
                "the data's artifact autoencoder %s is not copied beside the model (%s): predictions "
                "score artifacts by rules only",
                first["artifact_model"],
                err,
            )
    others = sorted({m["config_hash"] for m in manifests[1:]} - {first["config_hash"]})
    return write_preprocess_spec(
        model_dir, **_recipe(first), data=data_dirs, artifact_model=artifact_model, other_config_hashes=others
    )


def write_preprocess_spec(
    model_dir: str | os.PathLike[str],
    config: dict[str, Any],
    config_hash: str,
    *,
    channels: list[str],
    sfreq: float,
    pipeline_version: str = "",
    data: list[str] = (),
    artifact_model: str | None = None,
    other_config_hashes: list[str] = (),
) -> Path:
    """Write ``model_dir/preprocess.json``: the pipeline config (``PreprocessConfig.to_dict()``)
    and its hash, the channel order and rate, and the artifact autoencoder's file name beside it."""
    spec = {
        "config": config,
        "config_hash": config_hash,
        "pipeline_version": pipeline_version,
        "channels": list(channels),
        "sfreq": sfreq,
        "data": list(data),
        "other_config_hashes": list(other_config_hashes),
        "artifact_model": artifact_model,
    }
    path = Path(model_dir) / layout.PREPROCESS_SPEC
    path.write_text(json.dumps(spec, indent=2, sort_keys=True))
    return path


def load_preprocess_spec(model_dir: str | os.PathLike[str], data_dirs: list[str] | None = None) -> dict[str, Any]:
    """The recipe saved beside the model, else (older runs) its data's manifest's, with
    ``artifact_model`` an absolute path or None; ConfigError when neither has it."""
    model_dir = Path(model_dir)
    path = model_dir / layout.PREPROCESS_SPEC
    if path.is_file():
        try:
            spec = json.loads(path.read_text())
            _ = spec["config"], spec["config_hash"]
        except (ValueError, KeyError) as err:
            raise ConfigError(
                f"{path}: not a preprocessing spec ({err}); expected the file fine-tuning writes beside the model"
            ) from None
        spec["artifact_model"] = str(model_dir / spec["artifact_model"]) if spec.get("artifact_model") else None
        return spec
    for data_dir in data_dirs or ():
        try:
            manifest = _manifest(data_dir)
        except (OSError, ValueError):
            continue
        model = manifest.get("artifact_model")
        artifact_model = join_path(data_dir, model) if model else None
        return {**_recipe(manifest), "data": [data_dir], "artifact_model": artifact_model}
    raise ConfigError(
        f"{model_dir}: no {layout.PREPROCESS_SPEC} (written by fine-tuning since eegfm 0.1) and no readable "
        f"manifest.json in the data it was trained on ({', '.join(data_dirs or []) or 'none named'}); "
        "expected one of them to know how the training windows were made"
    )
