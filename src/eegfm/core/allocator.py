"""Freed memory kept for the next step: glibc's malloc thresholds for a process that trains.

glibc's malloc serves a request above its mmap threshold with a fresh mapping, which it returns to
the kernel on free, and gives back the heap's free top above its trim threshold. Both start low
(128 kB) and slide up as large blocks are freed, to at most 32 MB and 64 MB. A training step
allocates and frees the same large tensors every step: EEGNet's first activations for a batch of
64 windows are 25 MB each, several live at once, and at the end of each step the heap's top is
trimmed, so the next step has the kernel fault in and zero those pages again, 4 kB at a time:
about 12,800 page faults a step and nearly a quarter of its time on one core
(``benchmarks/allocator.py``: 125 ms a step against 96 ms with the memory kept). A
60-person ``folder`` benchmark spent 279 s of its 2,571 s of CPU in the kernel, most of it there.

:func:`keep_freed_memory` fixes the mmap threshold at the 32 MB glibc's sliding rule ends at and
the trim threshold at 256 MB (``mallopt``, glibc's public switch): blocks above 32 MB are still
mapped and unmapped as before, and an arena keeps at most 256 MB of free top. glibc's own ceiling
for the trim threshold, 64 MB, still trimmed every step of an EEGNet epoch that validates between
its steps. The commands that train call it first thing (pretraining, fine-tuning, ensembles, the
benchmarks, leave-one-site-out, robustness), and so do a job pool's workers and the preprocessing
job's workers: each recording's arrays (its filtered copies, windows, spectrograms) are freed and
allocated again for the next, and with a worker per core faulting pages in at once the kernel took
5.0 of the 28 CPU-seconds of ``benchmarks/preprocess.py --copies 8``; with the memory kept, 2.7 s,
and the whole run 16.5 s -> 14.9 s. Serving does not: a long-lived server would keep up to 256 MB
of freed heap per arena for nothing. Set :data:`MALLOC_VARIABLE` to ``glibc`` to
keep glibc's own rule, or set glibc's variables (``MALLOC_*_``, ``GLIBC_TUNABLES``): the user's
settings are then left alone. Other C libraries (macOS, musl) are left alone. Standard library only.
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Mapping

MALLOC_VARIABLE = "EEGFM_MALLOC"
MALLOC_CHOICES = ("keep", "glibc")
# mallopt's parameter numbers (glibc's malloc.h); the mmap threshold's largest value on a 64-bit
# machine (DEFAULT_MMAP_THRESHOLD_MAX), and a trim threshold above a training step's freed top.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 256 << 20
_GLIBC_OWN = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")


def malloc_choice(environ: Mapping[str, str] | None = None) -> str:
    """``keep`` or ``glibc``: :data:`MALLOC_VARIABLE` (default ``keep``); ``glibc`` where the user
    set glibc's own malloc variables. Any other value is refused, naming the variable."""
    environ = os.environ if environ is None else environ
    value = environ.get(MALLOC_VARIABLE, "").strip().lower() or "keep"
    if value not in MALLOC_CHOICES:
        raise ValueError(f"{MALLOC_VARIABLE}: expected one of {', '.join(MALLOC_CHOICES)}; got {value!r}")
    users_own = any(name in environ for name in _GLIBC_OWN) or "glibc.malloc." in environ.get("GLIBC_TUNABLES", "")
    return "glibc" if users_own else value


def keep_freed_memory(environ: Mapping[str, str] | None = None) -> bool:
    """Fix glibc's mmap and trim thresholds at :data:`MMAP_THRESHOLD` and :data:`TRIM_THRESHOLD`
    in this process, where :func:`malloc_choice` is ``keep`` and the C library is glibc; whether
    they were set."""
    if malloc_choice(environ) != "keep" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)  # the running process's symbols: glibc's malloc
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
