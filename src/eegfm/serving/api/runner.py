"""uvicorn set up for eegfm-serve: the connection limits, the header deadline, a socket bound before
the banner (``--port 0`` prints the port it got), one process or ``--workers`` processes, and an exit
status of 0 after SIGTERM once the requests in flight are answered."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time

import uvicorn
from uvicorn._subprocess import get_subprocess

from eegfm.core.logs import get_logger
from eegfm.serving.api.protocol import HeaderDeadlineProtocol
from eegfm.serving.api.stopping import STOP

log = get_logger("eegfm.serving.server")


def _ignore(_signum, _frame) -> None:
    """What a signal does once uvicorn has stopped on it: uvicorn raises it again after its graceful
    shutdown, and the process should then exit 0, not die of it."""


class GracefulServer(uvicorn.Server):
    """uvicorn's server, saying what SIGTERM does and exiting 0 after it."""

    def handle_exit(self, sig: int, frame) -> None:
        if not self.should_exit:
            log.info(
                "%s: finishing the requests in flight, then stopping (at most %gs)",
                signal.Signals(sig).name,
                self.config.timeout_graceful_shutdown,
            )
        STOP.start(self.config.timeout_graceful_shutdown)
        super().handle_exit(sig, frame)

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        main = threading.current_thread() is threading.main_thread()
        previous = signal.getsignal(signal.SIGTERM) if main else None
        if previous is not None:
            signal.signal(signal.SIGTERM, _ignore)
        try:
            super().run(sockets=sockets)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        if main:
            _leave_abandoned_predictions()

    def serve_socket(self, sock: socket.socket) -> int:
        """Serve ``sock`` until SIGTERM or Ctrl-C, here or in ``--workers`` processes; the exit status."""
        if self.config.workers and self.config.workers > 1:
            return self._supervise_workers(sock)
        try:
            self.run(sockets=[sock])
        except KeyboardInterrupt:
            pass
        return 0

    def _supervise_workers(self, sock: socket.socket) -> int:
        """``--workers`` processes serving ``sock`` (each loads the model); SIGTERM or SIGINT is passed
        on to them and waited for (status 0); a worker that dies on its own stops the others (status
        1: the orchestrator restarts the whole server, not one worker with a half-loaded model)."""
        received: list[int] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, _frame: received.append(signum))
        workers = [get_subprocess(self.config, target=self.run, sockets=[sock]) for _ in range(self.config.workers)]
        for worker in workers:
            worker.start()
        while not received and all(worker.is_alive() for worker in workers):
            time.sleep(0.2)
        if received:
            log.info("%s: stopping the %d workers", signal.Signals(received[0]).name, len(workers))
        else:
            log.error("a worker exited (status %s): stopping the others", [w.exitcode for w in workers])
        for worker in workers:
            if worker.is_alive():
                os.kill(worker.pid, signal.SIGTERM)
        for worker in workers:
            worker.join()
        return 0 if received else 1


def _leave_abandoned_predictions() -> None:
    """Exit now (status 0) if predictions cut off by --graceful_timeout still run in worker threads:
    the interpreter would otherwise wait for them past the grace period."""
    running = [t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon]
    for thread in running:
        thread.join(timeout=0.2)
    left = sum(thread.is_alive() for thread in running)
    if left:
        log.warning("%d prediction(s) cut off by --graceful_timeout: exiting without them", left)
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)


def make_uvicorn_server(app, args) -> tuple[GracefulServer, socket.socket]:
    """The server for ``app`` (an application, or for several workers its factory's import path)
    and the socket it will serve, already bound to ``args.host``:``args.port``."""
    config = uvicorn.Config(
        app,
        factory=isinstance(app, str),
        host=args.host,
        port=args.port,
        workers=args.workers,
        http=HeaderDeadlineProtocol,
        ws="none",
        lifespan="on",
        log_config=None,  # eegfm's logging; uvicorn's own loggers propagate to it
        access_log=False,  # its lines carry the query string (a file name): api.metrics logs requests
        limit_concurrency=args.limit_concurrency,
        timeout_keep_alive=args.timeout_keep_alive,
        timeout_graceful_shutdown=args.graceful_timeout,
        server_header=False,
        ssl_certfile=args.tls_certfile,
        ssl_keyfile=args.tls_keyfile,
    )
    config.header_timeout = args.header_timeout  # read by HeaderDeadlineProtocol, in every worker
    sock = config.bind_socket()
    sock.listen(config.backlog)  # from now on: a client connecting before the loop runs waits in the backlog
    return GracefulServer(config), sock
