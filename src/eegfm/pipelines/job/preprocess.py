"""``eegfm-preprocess``: raw EEG -> de-identified, 256 Hz, artifact-scored windows in snappy
TFRecords, with a manifest of every input.

    eegfm-preprocess --input DIR_OR_GLOB [...] --output OUT [beam options]

The command parses its arguments (``options.build_parser``); ``launcher`` checks them, makes them
typed and runs the job (``launcher.preprocess``, what the project's own callers run) on the
DirectRunner or Dataflow.
"""

from __future__ import annotations

import signal
import sys

# Only what the parser needs: --help, a usage error and shell completion load no Beam, scipy or
# readers (tests/test_commands.py); the job is ``launcher``, imported by run().
from eegfm.core.final_collection import skip_final_collection
from eegfm.core.process_tree import Stopped, exhaustion_hint
from eegfm.core.threads import fair_threads
from eegfm.pipelines.job.local_job import BeamJobFailed
from eegfm.pipelines.job.options import build_parser

__all__ = ["build_parser", "main", "run"]


def run(argv: list[str] | None = None) -> dict:
    """The command without :func:`main`'s exit statuses: returns the manifest (empty on Dataflow and
    for a dry run); a usage problem exits as argparse's own do (status 2), scrubbed of the inputs' names."""
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    from eegfm.pipelines.job.launcher import run_parsed  # Beam, the readers, scipy: not for --help

    return run_parsed(parser, args, beam_args, argv)


def main(argv: list[str] | None = None) -> int:
    fair_threads()  # before any work: core/threads.py
    skip_final_collection()  # Beam's imports cost 0.4 s at exit otherwise: core/final_collection.py
    try:
        run(argv)
    except Stopped as err:
        if err.signum == signal.SIGINT:
            print("eegfm-preprocess: interrupted", file=sys.stderr)
        else:
            print(f"eegfm-preprocess: stopped by {signal.Signals(err.signum).name}", file=sys.stderr)
        return 128 + err.signum  # as a shell reports a process the signal ended
    except KeyboardInterrupt:
        print("eegfm-preprocess: interrupted", file=sys.stderr)
        return 130  # as a shell reports a process that SIGINT ended
    except BeamJobFailed as err:
        print(f"eegfm-preprocess: {err}", file=sys.stderr)
        return 1
    except (MemoryError, RuntimeError) as err:
        if not (hint := exhaustion_hint(err)):
            raise
        # Under a memory cap the launcher itself may fail (importing Beam, starting a thread): one
        # line, as a job that fails so says, not a traceback through Beam's imports.
        text = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        print(f"eegfm-preprocess: the launcher stopped: {text}{hint}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
