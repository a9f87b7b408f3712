"""core.allocator: a step's freed memory stays in the heap, unless the user chose otherwise."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from eegfm.core.allocator import MALLOC_VARIABLE, keep_freed_memory, malloc_choice

SRC = Path(__file__).resolve().parents[2] / "src"

# A step's worth of large arrays, allocated and freed ten times after two to warm up, after
# ``{setup}``: the minor page faults per step, as the kernel counts them for this process.
STEPS = """
import resource, numpy as np
{setup}
def step():
    a = np.ones((20 << 20) // 8); b = a * 2.0; return float(b[-1])
for _ in range(2): step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10): step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""
KEEP = "from eegfm.core.allocator import keep_freed_memory; keep_freed_memory()"


def faults_per_step(setup: str = KEEP, **environ: str) -> float:
    """The page faults per 40 MB step of a fresh process that first ran ``setup``, with none of
    glibc's or eegfm's malloc variables but ``environ``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES", MALLOC_VARIABLE))}
    done = subprocess.run(
        [sys.executable, "-c", STEPS.format(setup=setup)], env={**env, **environ, "PYTHONPATH": str(SRC)},
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return float(done.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_a_steps_freed_memory_stays_for_the_next():
    """40 MB allocated and freed a step: glibc's own rule gives its pages back at the end of each
    step and the kernel faults them in again on the next; after :func:`keep_freed_memory` they stay."""
    kept, glibc = faults_per_step(), faults_per_step(**{MALLOC_VARIABLE: "glibc"})
    assert kept < 100 < 500 < glibc, (kept, glibc)


def test_the_choice_is_keep_unless_the_user_chose():
    assert malloc_choice({}) == "keep" and malloc_choice({MALLOC_VARIABLE: " Glibc "}) == "glibc"
    assert malloc_choice({"MALLOC_TRIM_THRESHOLD_": "131072"}) == "glibc"  # the user's glibc settings win
    assert malloc_choice({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}) == "glibc"
    assert malloc_choice({"GLIBC_TUNABLES": "glibc.pthread.rseq=0"}) == "keep"
    assert keep_freed_memory({MALLOC_VARIABLE: "glibc"}) is False


def test_an_unknown_choice_is_refused_naming_the_variable():
    with pytest.raises(ValueError, match=f"{MALLOC_VARIABLE}: expected one of keep, glibc; got 'tcmalloc'"):
        malloc_choice({MALLOC_VARIABLE: "tcmalloc"})
