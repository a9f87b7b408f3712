"""Preemption-safe training checkpoints that never run pickled code when they are read.

A checkpoint is one directory per step::

    <directory>/
        step-00001200/
            model.safetensors       the model's state_dict
            optimizer.safetensors   every other tensor (optimizer, scheduler, scaler, torch RNG),
                                    flattened to keys like ``optimizer/state/0/exp_avg``
            state.json              everything else, the structure to rebuild the nested state,
                                    a format version and the sha256 of both safetensors files
        latest                      name of the newest checkpoint
        best                        name of the best checkpoint by metric (kept out of rotation)

Why this format: ``torch.save`` files are pickles, and unpickling runs arbitrary code; safetensors
and JSON hold only data. Pickles, unparsable safetensors and hash mismatches raise
:class:`CheckpointError`.

Why the write order: a job killed at any moment must leave the previous checkpoint loadable and
nothing that looks complete but is not. Files go into ``.tmp-step-...``, each fsynced, then one
``os.rename`` and a parent fsync; only then are the pointers replaced and old checkpoints rotated.
:func:`latest_checkpoint` only returns a directory whose hashes verify.

``save_checkpoint`` records the RNG states under ``"rng"`` unless the state has one. Only rank 0
saves. ``training.checkpoint_state`` (tensors/JSON split) and ``training.preemption`` (SIGTERM ->
save at the next step) are re-exported here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from eegfm.core.logs import get_logger
from eegfm.training.checkpoint_state import (  # noqa: F401 - capture/restore are part of this module's interface
    CheckpointError,
    capture_rng_state,
    flatten_state,
    restore_rng_state,
    unflatten_state,
)
from eegfm.training.preemption import PreemptionHandler  # noqa: F401 - part of this module's interface

log = get_logger(__name__)

FORMAT_NAME = "eegfm-checkpoint"
FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
TENSORS_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
LATEST_POINTER = "latest"
BEST_POINTER = "best"

_STEP_DIR = re.compile(r"^step-(\d{8,})$")
_TMP_PREFIX = ".tmp-"
_OLD_PREFIX = ".old-"
# Suffixes of pickle-based formats (torch.save, pickle.dump, Lightning .ckpt): never read.
_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")


def _fsync_path(path: Path) -> None:
    """fsync a file or a directory (a directory's fsync makes its entries durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` so that readers see either the old or the new content."""
    tmp = path.with_name(f"{_TMP_PREFIX}{path.name}.{os.getpid()}")
    _write_durably(tmp, text)
    os.replace(tmp, path)
    _fsync_path(path.parent)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _storable(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous, detached tensors with no two sharing storage (safetensors' conditions)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, tensor in tensors.items():
        tensor = tensor.detach().cpu()
        pointer = tensor.untyped_storage().data_ptr() if tensor.numel() else 0
        if not tensor.is_contiguous() or (pointer and pointer in seen):
            tensor = tensor.contiguous().clone()  # tied weights / views: store an own copy
            pointer = tensor.untyped_storage().data_ptr()
        seen.add(pointer)
        out[key] = tensor
    return out


def _write_safetensors(path: Path, tensors: Mapping[str, torch.Tensor]) -> str:
    save_file(_storable(tensors), str(path), metadata={"format": "pt"})
    _fsync_path(path)
    return _sha256(path)


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def _list_steps(directory: Path) -> list[tuple[int, Path]]:
    """Complete-looking ``step-*`` directories, oldest first (temporary ones never match)."""
    if not directory.is_dir():
        return []
    return sorted((int(m.group(1)), e) for e in directory.iterdir() if (m := _STEP_DIR.match(e.name)) and e.is_dir())


def _read_pointer(directory: Path, name: str) -> Path | None:
    try:
        target = (directory / name).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return directory / target if _STEP_DIR.match(target) else None


def save_checkpoint(
    directory: str | os.PathLike[str],
    step: int,
    state: Mapping[str, Any],
    *,
    keep_last: int | None = 3,
    metric: float | None = None,
    is_best: bool | None = None,
    higher_is_better: bool = False,
) -> Path:
    """Write ``state`` (``state["model"]``: a flat state_dict) as the checkpoint of ``step``; returns its directory.

    ``keep_last`` newest checkpoints are kept (None keeps all) plus the best one: ``is_best``
    decides, else ``metric`` against the current best's (lower is better unless
    ``higher_is_better``). Saving a step that exists replaces it.
    """
    directory = Path(directory)
    model_state = _check_save_arguments(step, state, keep_last, metric)
    rest = {key: value for key, value in state.items() if key != "model"}
    rest.setdefault("rng", capture_rng_state())
    tensors, skeleton = flatten_state(rest)
    directory.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(directory)
    final = directory / step_dir_name(step)
    _write_step_dir(final, step, model_state, tensors, skeleton, metric)
    _write_text_atomic(directory / LATEST_POINTER, final.name + "\n")
    if _decide_best(directory, final, metric, is_best, higher_is_better):
        _write_text_atomic(directory / BEST_POINTER, final.name + "\n")
    if keep_last is not None:
        _rotate(directory, keep_last, protect=final)
    log.info("saved checkpoint %s", final)
    return final


def _check_save_arguments(step: Any, state: Any, keep_last: Any, metric: Any) -> Mapping[str, torch.Tensor]:
    """The model's state_dict, once every argument of :func:`save_checkpoint` is valid."""
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"step: expected a non-negative integer; got {step!r}")
    if keep_last is not None and (isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1):
        raise CheckpointError(f"keep_last: expected an integer >= 1 or None (keep all); got {keep_last!r}")
    if metric is not None and (isinstance(metric, bool) or not isinstance(metric, (int, float))):
        raise CheckpointError(f"metric: expected a number or None; got {metric!r}")
    if not isinstance(state, Mapping) or "model" not in state:
        raise CheckpointError("state: expected a mapping with a 'model' state_dict entry")
    model_state = state["model"]
    if not isinstance(model_state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model_state.items()
    ):
        raise CheckpointError("state['model']: expected a flat mapping of str -> tensor (a state_dict)")
    return model_state


def _write_step_dir(
    final: Path,
    step: int,
    model_state: Mapping[str, torch.Tensor],
    tensors: Mapping[str, torch.Tensor],
    skeleton: Any,
    metric: float | None,
) -> None:
    """Write the files into a temporary directory and rename it to ``final`` (see the module docstring)."""
    directory = final.parent
    tmp = directory / f"{_TMP_PREFIX}{final.name}.{os.getpid()}"
    tmp.mkdir()
    try:
        hashes = {
            MODEL_FILE: _write_safetensors(tmp / MODEL_FILE, model_state),
            TENSORS_FILE: _write_safetensors(tmp / TENSORS_FILE, tensors),
        }
        document = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "step": step,
            "metric": flatten_state(float(metric))[1] if metric is not None else None,
            "sha256": hashes,
            "state": skeleton,
        }
        _write_durably(tmp / STATE_FILE, json.dumps(document, allow_nan=False))
        _fsync_path(tmp)
        if final.exists():  # re-saving a step (e.g. after resuming from it): move the old aside
            old = directory / f"{_OLD_PREFIX}{final.name}.{os.getpid()}"
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
        _fsync_path(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _decide_best(
    directory: Path, candidate: Path, metric: float | None, is_best: bool | None, higher_is_better: bool
) -> bool:
    if is_best is not None:
        return bool(is_best)
    if metric is None:
        return False
    current = _read_pointer(directory, BEST_POINTER)
    if current is None or current == candidate or not current.is_dir():
        return True
    try:
        best = json.loads((current / STATE_FILE).read_text(encoding="utf-8")).get("metric")
    except (OSError, ValueError):
        return True
    if best is None:
        return True
    best = float(unflatten_state({}, best))
    return metric > best if higher_is_better else metric < best


def _rotate(directory: Path, keep_last: int, protect: Path) -> None:
    """Delete all but the newest ``keep_last`` checkpoints, the best one and ``protect`` (the one
    just written, which after resuming from an older step is not among the newest)."""
    best = _read_pointer(directory, BEST_POINTER)
    keep = {protect.name, None if best is None else best.name}
    for _, path in _list_steps(directory)[:-keep_last]:
        if path.name in keep:
            continue
        # Rename first so that a crash mid-delete leaves a temporary, never a partial step-*.
        doomed = directory / f"{_OLD_PREFIX}{path.name}.{os.getpid()}"
        os.rename(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
    _fsync_path(directory)


def _remove_stale_temporaries(directory: Path) -> None:
    """Leftovers of killed writers (``.tmp-*``/``.old-*``); only rank 0 writes here."""
    for entry in directory.iterdir():
        if entry.name.startswith((_TMP_PREFIX, _OLD_PREFIX)):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _refuse_pickles(paths: Iterable[Path]) -> None:
    for path in paths:
        if path.suffix.lower() in _PICKLE_SUFFIXES:
            raise CheckpointError(
                f"{path}: pickled checkpoints are refused (loading a pickle can execute arbitrary "
                "code). eegfm reads only its own format: a step-* directory with model.safetensors, "
                "optimizer.safetensors and state.json. To use trusted weights, load them yourself "
                "with torch.load(..., weights_only=True) and save them with save_checkpoint."
            )


def _looks_like_pickle(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(9)
    # safetensors: a little-endian u64 header length, then the JSON header's "{". Its first byte
    # can be 0x80 (a header of 128 + 256k bytes), so that is checked first; nothing here is ever
    # unpickled either way, a wrong guess only changes the error message.
    if len(head) == 9 and head[8:9] == b"{":
        return False
    # pickle protocol >= 2 starts with PROTO (0x80); torch.save writes a zip (PK\x03\x04).
    return head[:1] == b"\x80" or head[:4] == b"PK\x03\x04"


def _read_document(path: Path) -> dict[str, Any]:
    try:
        document = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise CheckpointError(f"{path / STATE_FILE}: missing; {path} is not a complete checkpoint") from err
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path / STATE_FILE}: not a readable JSON document ({err})") from err
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path / STATE_FILE}: not an {FORMAT_NAME} state file")
    if document.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path / STATE_FILE}: format_version {document.get('format_version')!r} is not supported "
            f"(this eegfm reads version {FORMAT_VERSION})"
        )
    return document


def verify_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Check a checkpoint directory without loading tensors; returns its ``state.json``.
    Raises :class:`CheckpointError` for pickle files, missing files and hash mismatches."""
    path = Path(path)
    if not path.is_dir():
        _refuse_pickles([path])
        raise CheckpointError(f"{path}: expected a checkpoint directory (step-*) or a directory of them")
    _refuse_pickles(path.iterdir())
    document = _read_document(path)
    for name in (MODEL_FILE, TENSORS_FILE):
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{file}: missing; {path} is not a complete checkpoint")
        if _looks_like_pickle(file):
            raise CheckpointError(
                f"{file}: holds a pickle, not safetensors; pickled checkpoints are refused "
                "(loading a pickle can execute arbitrary code)"
            )
        expected = document.get("sha256", {}).get(name)
        if expected != _sha256(file):
            raise CheckpointError(
                f"{file}: sha256 does not match state.json (truncated, corrupted or replaced); refusing to load it"
            )
    return document


def _load_tensors(file: Path, device: str) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file), device=device)
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{file}: not a valid safetensors file ({err})") from err


def load_checkpoint(path_or_dir: str | os.PathLike[str], *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The saved state of a checkpoint directory (or the newest valid one in a directory of them):
    ``"model"``, every other entry with its original types, ``"rng"`` and ``"step"``."""
    path = Path(path_or_dir)
    if path.is_dir() and not (path / STATE_FILE).exists() and _list_steps(path):
        newest = latest_checkpoint(path)
        if newest is None:
            raise CheckpointError(f"{path}: holds step-* directories but none is a valid checkpoint")
        path = newest
    document = verify_checkpoint(path)
    device = str(torch.device(map_location))
    model_state = _load_tensors(path / MODEL_FILE, device)
    tensors = _load_tensors(path / TENSORS_FILE, device)
    state = unflatten_state(tensors, document["state"])
    if not isinstance(state, dict):
        raise CheckpointError(f"{path / STATE_FILE}: the saved state is not a mapping")
    state["model"] = model_state
    state["step"] = document["step"]
    return state


def latest_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    """The newest checkpoint in ``directory`` whose hashes verify, or None; a ``step-*`` that fails
    is skipped with a warning. "Newest": the ``latest`` pointer's (so a run rewound to an earlier
    step continues its own timeline), else the highest step."""
    directory = Path(directory)
    candidates = [path for _, path in reversed(_list_steps(directory))]
    pointed = _read_pointer(directory, LATEST_POINTER)
    if pointed is not None and pointed in candidates:
        candidates.remove(pointed)
        candidates.insert(0, pointed)
    for path in candidates:
        try:
            verify_checkpoint(path)
        except CheckpointError as err:
            log.warning("skipping invalid checkpoint %s: %s", path, err)
            continue
        return path
    return None


def best_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    """The checkpoint the ``best`` pointer names, if it still exists."""
    path = _read_pointer(Path(directory), BEST_POINTER)
    return path if path is not None and path.is_dir() else None


def resolve_resume(value: str | os.PathLike[str] | None, directory: str | os.PathLike[str]) -> Path | None:
    """The checkpoint a ``--resume`` value names: ``"auto"`` the newest valid one in ``directory``
    (None: start fresh), ``"none"``/None start fresh, else a path that must exist and verify."""
    allowed = "'auto', 'none' or the path of a checkpoint directory"
    if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
        earlier = _list_steps(Path(directory))
        if earlier:
            log.warning(
                "resume none: %s already holds %d checkpoint(s) up to %s; this run starts fresh and "
                "writes its own beside them (the 'latest' pointer follows this run; a new --output keeps "
                "runs apart)",
                directory,
                len(earlier),
                earlier[-1][1].name,
            )
        return None
    if isinstance(value, str) and value.strip().lower() == "auto":
        found = latest_checkpoint(directory)
        log.info("resume auto: %s", found if found is not None else f"no checkpoint in {directory}, starting fresh")
        return found
    if not isinstance(value, (str, os.PathLike)):
        raise CheckpointError(f"resume: expected {allowed}; got {value!r}")
    path = Path(value)
    if not path.exists():
        raise CheckpointError(f"resume: expected {allowed}; got {os.fspath(value)!r} (no such file or directory)")
    if path.is_dir() and not (path / STATE_FILE).exists():
        found = latest_checkpoint(path)
        if found is None:
            raise CheckpointError(f"resume: {os.fspath(value)!r} holds no valid checkpoint; expected {allowed}")
        return found
    try:
        verify_checkpoint(path)
    except CheckpointError as err:
        raise CheckpointError(f"resume: {err}") from err
    return path
