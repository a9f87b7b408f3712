"""Order-independent random streams: every random quantity comes from a generator keyed by what
it is for (``rng_for(seed, "recording", site, subject, session)``), so adding a site or rendering
in another order leaves every other recording byte-identical.
"""

from __future__ import annotations

import zlib

import numpy as np


def _key_part(part: int | str) -> int:
    if isinstance(part, bool) or not isinstance(part, (int, np.integer, str)):
        raise TypeError(f"rng key parts must be ints or strings; got {part!r}")
    if isinstance(part, str):
        return zlib.crc32(part.encode("utf-8"))  # stable across processes (unlike hash())
    if part < 0:
        raise ValueError(f"rng key parts must be >= 0; got {part}")
    return int(part)


def seed_sequence(seed: int, *key: int | str) -> np.random.SeedSequence:
    """The SeedSequence for one purpose, e.g. ``seed_sequence(0, "noise", 3, 1, 0)``."""
    return np.random.SeedSequence(int(seed), spawn_key=tuple(_key_part(k) for k in key))


def rng_for(seed: int, *key: int | str) -> np.random.Generator:
    """A generator for one purpose; the same (seed, key) always gives the same stream."""
    return np.random.default_rng(seed_sequence(seed, *key))


def stable_int(seed: int, *key: int | str, low: int, high: int) -> int:
    """A deterministic integer in [low, high) for identifiers (eeg_id, label_id, ...)."""
    return int(rng_for(seed, "id", *key).integers(low, high))
