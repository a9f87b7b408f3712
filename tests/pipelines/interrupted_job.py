"""A preprocessing job signalled mid-run: started in its own process group, signalled once its first
recording is spilled (as a terminal's Ctrl-C reaches the whole group)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def signal_after_first_spill(
    argv: list[str], out: Path, signum: int, only_the_launcher: bool = False
) -> tuple[subprocess.Popen, str, str]:
    """Run ``eegfm.pipelines.job.preprocess argv``; send ``signum`` to its group (or, ``only_the_launcher``,
    to its process alone, as ``kill PID`` does) once a spilled record shows under ``out``; return the
    finished process, its stdout and its stderr."""
    job = subprocess.Popen(
        [sys.executable, "-m", "eegfm.pipelines.job.preprocess", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    # Once the first recording is spilled the job has seconds of work left.
    while not list(out.glob(".spill-[0-9a-f]*[0-9a-f]/*.tfrecord")) and job.poll() is None:
        assert time.monotonic() < deadline, "no recording was spilled in 120 s"
        time.sleep(0.02)
    assert job.poll() is None, "the job ended before any recording was seen spilled: nothing to interrupt"
    if only_the_launcher:
        os.kill(job.pid, signum)
    else:
        os.killpg(job.pid, signum)
    stdout, stderr = job.communicate(timeout=60)
    return job, stdout, stderr
