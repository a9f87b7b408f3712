"""Stopping a run cleanly when the scheduler preempts it: finish the step, save, exit."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterable
from types import FrameType
from typing import Any

from eegfm.core.logs import get_logger
from eegfm.training.checkpoint_state import CheckpointError

log = get_logger(__name__)


class PreemptionHandler:
    """Turns SIGTERM (and SIGINT) into a flag the training loop checks at step boundaries, so a
    preempted job finishes its step and saves before the scheduler's SIGKILL.

    A second signal of the same kind re-delivers it to the previous handler (Ctrl-C twice still
    interrupts). Leaving the ``with`` restores the previous handlers. Main thread only.
    """

    def __init__(self, signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT)) -> None:
        self.signals = tuple(signals)
        self.requested = False
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, Any] = {}
        self._owner = os.getpid()

    def install(self) -> PreemptionHandler:
        if threading.current_thread() is not threading.main_thread():
            raise CheckpointError("PreemptionHandler: signal handlers can only be installed from the main thread")
        self._owner = os.getpid()
        for signum in self.signals:
            if signum not in self._previous:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        received = signal.Signals(signum)
        if os.getpid() != self._owner:
            # A loader worker inherited the handler: the training process handles Ctrl-C and ends
            # it; SIGTERM (DataLoader's shutdown) must end it as it would without the handler.
            if received != signal.SIGINT:
                signal.signal(signum, signal.SIG_DFL)
                signal.raise_signal(received)
            return
        if self.requested and self.received == received:
            self._restore(received)
            signal.raise_signal(received)
            return
        self.requested = True
        self.received = received
        log.warning("received %s: will save a checkpoint and stop at the next step boundary", received.name)

    def _restore(self, signum: signal.Signals) -> None:
        previous = self._previous.pop(signum, None)
        if previous is not None:
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signum, previous)

    def close(self) -> None:
        for signum in list(self._previous):
            self._restore(signum)

    def __enter__(self) -> PreemptionHandler:
        return self.install()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
