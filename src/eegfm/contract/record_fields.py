"""How each ``WindowRecord`` field is checked and cast to the precision the Example stores.

Each normalizer takes the field's name and value and returns the stored value, or raises
``SchemaError`` naming the field, what it expects and what it got.
"""

from __future__ import annotations

import math
from typing import Any, NoReturn

import numpy as np

from eegfm.contract.channels import CANONICAL_CHANNELS, N_CANONICAL
from eegfm.contract.example_wire import SchemaError

EEG_DTYPE = np.dtype("<f2")
FLOAT16_MAX: float = float(np.finfo(np.float16).max)  # 65504 µV; larger samples cannot be stored
FLOAT32_MAX: float = float(np.finfo(np.float32).max)


def same_value(a: Any, b: Any) -> bool:
    """Equal values; arrays by shape, dtype and value, and NaN equals NaN."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)) or (a.shape, a.dtype) != (b.shape, b.dtype):
            return False
        return bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def fail(name: str, expected: str, got: str) -> NoReturn:
    raise SchemaError(f"WindowRecord.{name}: expected {expected}; got {got}")


def signal(name: str, value: Any, *, ndim: int) -> np.ndarray:
    """A real-valued array as C-ordered little-endian float16, rejecting what float16 can't hold."""
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        fail(name, "a real-valued numeric array", f"dtype {array.dtype}")
    if array.ndim != ndim or array.shape[-1] == 0:
        fail(name, f"a non-empty {ndim}-d array", f"shape {list(array.shape)}")
    with np.errstate(over="ignore", invalid="ignore"):  # reported below, by position
        stored = np.ascontiguousarray(array, dtype=EEG_DTYPE)
    # float16 inf and NaN have all five exponent bits set; testing the bits is 5x faster than
    # np.isfinite, which has no native half-precision loop.
    bad = (stored.view(np.uint16) & 0x7C00) == 0x7C00
    if bad.any():
        index = np.unravel_index(int(np.argmax(bad)), bad.shape)
        where = f"channel {CANONICAL_CHANNELS[index[0]]!r}, sample {index[1]}" if ndim == 2 else f"sample {index[0]}"
        fail(
            name,
            f"finite samples within the float16 range ±{FLOAT16_MAX:g} µV",
            f"{int(bad.sum())} non-finite or out-of-range sample(s), first at {where} (value {array[index]!r})",
        )
    return stored


def spectrogram(value: Any, n_rows: int) -> np.ndarray:
    """A (n_rows, n_frames) spectrogram (log1p µV²/Hz) as C-ordered little-endian float16; NaN
    (a chain not recorded) is kept, infinities and values beyond float16 are rejected."""
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        fail("spectrogram", "a real-valued numeric array", f"dtype {array.dtype}")
    if array.ndim != 2 or array.shape[0] != n_rows or array.shape[1] == 0:
        expected = f"shape [{n_rows}, n_frames > 0] (log1p power, Kaggle's rows)"
        fail("spectrogram", expected, f"shape {list(array.shape)}")
    with np.errstate(over="ignore", invalid="ignore"):
        stored = np.ascontiguousarray(array, dtype=EEG_DTYPE)
    bits = stored.view(np.uint16)
    infinite = (bits & 0x7FFF) == 0x7C00  # float16 infinity: exponent all ones, mantissa zero
    if infinite.any():
        row, frame = np.unravel_index(int(np.argmax(infinite)), infinite.shape)
        fail(
            "spectrogram",
            f"finite values or NaN within the float16 range ±{FLOAT16_MAX:g}",
            f"{int(infinite.sum())} infinite or out-of-range value(s), first at row {row}, frame {frame}",
        )
    return stored


def channel_mask(value: Any) -> np.ndarray:
    mask = np.asarray(value)
    if mask.shape != (N_CANONICAL,):
        fail("channel_mask", f"{N_CANONICAL} flags in canonical order", f"shape {list(mask.shape)}")
    if mask.dtype.kind not in "biu" or not ((mask == 0) | (mask == 1)).all():
        fail("channel_mask", "integers 0 (interpolated) or 1 (measured)", f"{mask.tolist()} (dtype {mask.dtype})")
    return mask.astype(np.int64)


def float_list(name: str, value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 1 or array.dtype.kind not in "fiu":
        fail(name, "a 1-d list of real numbers", f"shape {list(array.shape)}, dtype {array.dtype}")
    if array.dtype == np.float32:
        stored = array
    elif array.size and not np.abs(array).max() <= FLOAT32_MAX:  # NaN fails the <= too
        fail(name, "finite float32 values", f"{array.tolist()}")
    else:
        stored = array.astype(np.float32)
    if not np.isfinite(stored).all():
        fail(name, "finite float32 values", f"{array.tolist()}")
    return stored


def float32(
    name: str, value: Any, *, low: float | None = None, high: float | None = None, allow_nan: bool = False
) -> float:
    """A real scalar rounded to float32, the precision a FloatList stores."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        fail(name, "a real number", repr(value))
    if allow_nan and math.isnan(value):
        return math.nan  # one canonical NaN keeps encoding deterministic
    stored = float(np.float32(value)) if abs(value) <= FLOAT32_MAX else math.inf
    in_range = math.isfinite(stored) and (low is None or stored >= low) and (high is None or stored <= high)
    if not in_range:
        bounds = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        fail(name, f"a finite float32 in {bounds}{' or NaN' if allow_nan else ''}", repr(value))
    return stored


def int64(name: str, value: Any, *, low: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        fail(name, "an integer", repr(value))
    if not low <= int(value) < 2**63:
        fail(name, f"an int64 >= {low}", repr(value))
    return int(value)


def text(name: str, value: Any, *, required: str = "") -> bytes:
    """``value`` as bytes (str is UTF-8 encoded); ``required``: what an empty value should be."""
    if isinstance(value, str):
        stored = value.encode("utf-8")
    elif isinstance(value, (bytes, bytearray, memoryview)):
        stored = bytes(value)
    else:
        fail(name, "bytes or str", f"{type(value).__name__} {value!r}")
    if required and not stored:
        fail(name, required, "b''")
    return stored


def choice(name: str, value: Any, allowed: tuple[str, ...], note: str) -> bytes:
    """``text`` that must be one of ``allowed`` (``note`` says what empty means)."""
    stored = text(name, value)
    if stored.decode("utf-8", "replace") not in allowed:
        fail(name, f"one of {allowed!r} ({note})", repr(stored))
    return stored
