"""Beam's worker command in warm multi_processing runs (see ``pipelines.warm_workers``).

Runs as ``python -S <this file>``: standard library only, started in milliseconds. It hands the
environment Beam gave it (control and logging addresses, options, worker id) to the job's
zygote and waits for the worker the zygote forks, then exits with that worker's status, so Beam
manages it like the worker process itself. Without a zygote it becomes Beam's own worker.
"""

import json
import os
import signal
import socket
import struct
import sys

# Beam sets these for its worker process (apache_beam/runners/portability/local_job_service.py).
WORKER_ENV = ("CONTROL_API_SERVICE_DESCRIPTOR", "LOGGING_API_SERVICE_DESCRIPTOR", "PIPELINE_OPTIONS", "WORKER_ID")
ZYGOTE_ENV = "EEGFM_WORKER_ZYGOTE"


def _cold_worker() -> None:
    os.execv(sys.executable, [sys.executable, "-m", "apache_beam.runners.worker.sdk_worker_main"])


def main() -> None:
    address = os.environ.get(ZYGOTE_ENV)
    if address:  # Ctrl-C reaches the job, which ends the zygote and so this launcher (cold: Beam's own)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not address:
        _cold_worker()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(address)
    except OSError:
        _cold_worker()
    request = json.dumps({name: os.environ[name] for name in WORKER_ENV if name in os.environ}).encode()
    conn.sendall(struct.pack("<I", len(request)) + request)
    status = b""
    while len(status) < 4:
        chunk = conn.recv(4 - len(status))
        if not chunk:  # the zygote went away with the job
            sys.exit(1)
        status += chunk
    sys.exit(struct.unpack("<i", status)[0])


if __name__ == "__main__":
    main()
