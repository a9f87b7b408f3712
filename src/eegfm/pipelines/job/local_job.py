"""A local Beam job with more than one worker (processes or threads), run as one process tree.

The job runs in a forked child leading a process session of its own (``core.process_tree``), which
shares the launcher's run lock on the output folder: whatever ends the launcher (Ctrl-C, SIGTERM,
SIGHUP, its death) ends every process of the job within seconds, and the folder stays held until the
last one is gone.
"""

from __future__ import annotations

import sys

from eegfm.core.logs import get_logger
from eegfm.core.process_tree import (
    JobFailed,
    JobStalled,
    StallWatchdog,
    exhaustion_hint,
    run_in_own_session,
    tell_launcher,
)
from eegfm.core.run_lock import name_job_group, shared_with_forks
from eegfm.core.stores import is_remote

log = get_logger("preprocess")


def run_in_session(job, watchdog: StallWatchdog | None = None, output: str = "", scrub=str) -> None:
    """Runs ``job`` in a forked child that leads a process session of its own, with the worker
    processes (or threads) Beam starts (``core.process_tree``). Ctrl-C at a terminal then reaches this
    launcher alone, which ends that whole session at once, as SIGTERM, SIGHUP and its own death do: no
    worker reports the interrupt, and none outlives the run. The child shares the run lock on a local
    ``output`` and logs its own error (through the run's redaction); this raises :class:`BeamJobFailed`."""

    def logged() -> None:
        try:
            job()
        except Exception as err:
            # Logged, not printed: the log's redaction scrubs a traceback's paths and labels too.
            log.exception("the Beam job failed")
            if hint := exhaustion_hint(err):  # no bug of the job: say it in one line
                tell_launcher(f"{type(err).__name__}: {err}{hint}")
            sys.exit(1)

    def started(pgid: int) -> None:
        if output and not is_remote(output):
            name_job_group(output, pgid)

    try:
        with shared_with_forks():  # the job's process keeps the output folder until it is gone
            run_in_own_session(logged, watchdog, on_start=started)
    except JobFailed as err:
        detail = (
            f": {scrub(err.reason)}" if err.reason else f" with exit status {err.exitcode}; its error is logged above"
        )
        raise BeamJobFailed(f"the Beam job stopped{detail}") from None
    except JobStalled as err:
        raise BeamJobFailed(f"the Beam job made {err}") from None


class BeamJobFailed(RuntimeError):
    """A local multi-process Beam job that ended with an error (logged by the job itself)."""
