"""How each ``WindowRecord`` field is checked and cast to the precision the Example stores.

Each normalizer takes the field's name and value and returns the stored value, or raises
``SchemaError`` naming the field, what it expects and what it got.
"""

from __future__ import annotations

import math
from typing import Any, NoReturn

import numpy as np

from eegfm.pipelines.channels import CANONICAL_CHANNELS, N_CANONICAL
from eegfm.pipelines.example_wire import SchemaError

EEG_DTYPE = np.dtype("<f2")
FLOAT16_MAX: float = float(np.finfo(np.float16).max)  # 65504 µV; larger samples cannot be stored
FLOAT32_MAX: float = float(np.finfo(np.float32).max)


def same_value(a: Any, b: Any) -> bool:
    """Equal values; arrays by shape, dtype and value, and NaN equals NaN."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return False
        if a.shape != b.shape or a.dtype != b.dtype:
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
    if array.dtype == EEG_DTYPE:  # decoded windows: already stored precision, no cast
        stored = np.ascontiguousarray(array)
    elif array.dtype == np.float32:  # what the pipeline makes
        stored = float32_to_float16(array)
    else:
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


def float32_to_float16(x: np.ndarray) -> np.ndarray:
    """``x.astype(float16)`` as a C-ordered little-endian array, bit for bit (round to nearest
    even, subnormals, overflow to infinity, NaN payloads), about twice as fast: numpy converts
    one value at a time (120 us for a 10 s window), this takes a few vector passes over the bits.
    """
    bits = np.ascontiguousarray(x, dtype="<f4").view(np.uint32)
    magnitude = bits & np.uint32(0x7FFFFFFF)
    # Normal results: rebias the exponent (127 -> 15), add half an ulp of float16 less one plus
    # the lowest kept bit (ties to even), then drop the 13 extra mantissa bits.
    half = magnitude >> 13
    half &= 1
    half += magnitude
    half += np.uint32(0xC8000FFF)
    half >>= 13
    subnormal = magnitude < np.uint32(113 << 23)  # below float16's smallest normal, 2**-14
    if subnormal.any():
        # Adding 0.5 lines the value's bits up with float16's subnormal steps; the float unit
        # rounds to even on the way.
        with np.errstate(invalid="ignore"):  # signalling NaNs among the other values
            shifted = (magnitude.view(np.float32) + np.float32(0.5)).view(np.uint32)
        shifted -= np.uint32(0x3F000000)
        np.copyto(half, shifted, where=subnormal)
    special = magnitude >= np.uint32(143 << 23)  # rounds past 65504, infinite, or NaN
    if special.any():
        np.copyto(half, np.uint32(0x7C00), where=special)
        nan = magnitude > np.uint32(0x7F800000)
        if nan.any():
            half[nan] = x.reshape(half.shape)[nan].astype(np.float16).view(np.uint16)
    half |= (bits >> 16) & np.uint32(0x8000)
    return half.astype("<u2").view(EEG_DTYPE)


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


def text(name: str, value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    fail(name, "bytes or str", f"{type(value).__name__} {value!r}")
