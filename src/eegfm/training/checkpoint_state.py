"""A nested training state as flat tensors plus a JSON skeleton, and the process's RNG states.

A checkpoint stores tensors in safetensors files and everything else as JSON, so reading it never
unpickles anything. Containers and special values in the JSON skeleton are tagged objects
(``{"t": ...}``), so a JSON object in the skeleton is always a tag and never user data; dict keys
keep their type (``optimizer.state_dict()["state"]`` is keyed by int parameter index).
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from eegfm.core.logs import get_logger

log = get_logger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written or is not one we will read; the message names the file."""


def flatten_state(obj: Any, prefix: str = "") -> tuple[dict[str, torch.Tensor], Any]:
    """Split a nested state into ``{path: tensor}`` and a JSON-able skeleton that references them.

    Handles dicts (str/int/float/bool/None keys), lists, tuples, str, int, float (including
    inf/nan), bool, None, tensors, numpy scalars and small numpy arrays (stored as lists).
    Anything else raises :class:`CheckpointError` naming its path.
    """
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(obj, prefix.strip("/"), tensors)
    return tensors, skeleton


def unflatten_state(tensors: Mapping[str, torch.Tensor], skeleton: Any) -> Any:
    """Rebuild what :func:`flatten_state` split, with the same container and key types."""
    if skeleton is None or isinstance(skeleton, (bool, int, float, str)):
        return skeleton
    if not isinstance(skeleton, dict) or "t" not in skeleton:
        raise CheckpointError(f"state skeleton: unexpected entry {skeleton!r}")
    tag = skeleton["t"]
    if tag == "tensor":
        key = skeleton["key"]
        if key not in tensors:
            raise CheckpointError(f"state skeleton: tensor {key!r} is missing from the tensor file")
        return tensors[key]
    if tag == "dict":
        # JSON keeps str/int/float/bool/None keys apart inside the items list.
        return {key: unflatten_state(tensors, v) for key, v in skeleton["items"]}
    if tag == "list":
        return [unflatten_state(tensors, v) for v in skeleton["items"]]
    if tag == "tuple":
        return tuple(unflatten_state(tensors, v) for v in skeleton["items"])
    if tag == "float":
        return float(skeleton["v"])
    if tag == "ndarray":
        return np.asarray(skeleton["data"], dtype=np.dtype(skeleton["dtype"])).reshape(skeleton["shape"])
    raise CheckpointError(f"state skeleton: unknown tag {tag!r}")


def _flatten(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = path or "tensor"
        while key in tensors:  # a "/" inside a dict key could make two paths collide
            key += "'"
        tensors[key] = obj
        return {"t": "tensor", "key": key}
    if isinstance(obj, np.ndarray):
        return {"t": "ndarray", "dtype": obj.dtype.str, "shape": list(obj.shape), "data": obj.reshape(-1).tolist()}
    if isinstance(obj, np.generic):
        obj = obj.item()
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"t": "float", "v": repr(obj)}
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, Mapping):
        items = [[_key_to_json(key, path), _flatten(value, _join(path, key), tensors)] for key, value in obj.items()]
        return {"t": "dict", "items": items}
    if isinstance(obj, (list, tuple)):
        items = [_flatten(v, _join(path, i), tensors) for i, v in enumerate(obj)]
        return {"t": "list" if isinstance(obj, list) else "tuple", "items": items}
    raise CheckpointError(
        f"state {path or '<root>'!s}: cannot store a {type(obj).__name__} in a checkpoint "
        "(allowed: tensors, numbers, str, bool, None, numpy arrays and dicts/lists/tuples of them)"
    )


def _join(path: str, key: Any) -> str:
    return f"{path}/{key}" if path else str(key)


def _key_to_json(key: Any, path: str) -> Any:
    if isinstance(key, np.generic):
        key = key.item()
    if key is None or isinstance(key, (bool, int, str)) or (isinstance(key, float) and math.isfinite(key)):
        return key
    raise CheckpointError(
        f"state {path or '<root>'}: dict key {key!r} of type {type(key).__name__} cannot be stored "
        "(allowed key types: str, int, finite float, bool, None)"
    )


def capture_rng_state() -> dict[str, Any]:
    """The python, numpy and torch (CPU and every CUDA device) RNG states of this process."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`capture_rng_state` returned (after a checkpoint round trip)."""
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") is not None and torch.cuda.is_available():
        cuda_states = [s.cpu() for s in state["cuda"]]
        if len(cuda_states) != torch.cuda.device_count():
            log.warning(
                "checkpoint has CUDA RNG states for %d devices, this process sees %d; restoring the common ones",
                len(cuda_states),
                torch.cuda.device_count(),
            )
        for index, cuda_state in enumerate(cuda_states[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)
