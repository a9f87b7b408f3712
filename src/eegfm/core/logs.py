"""One logging set-up for every eegfm entry point.

Logs go to stderr in a compact, greppable format. Third-party libraries that are chatty at INFO
(MNE, TensorFlow, Beam's runner internals) are kept at WARNING unless ``--verbose`` is given.
"""

from __future__ import annotations

import logging
import os
import sys

_NOISY = "mne tensorflow absl apache_beam urllib3 matplotlib h5py numexpr botocore boto3 s3transfer google.auth".split()
# Relays every worker-process warning of the DirectRunner's multi_processing mode (missing
# semi-persistent directories, options it does not parse): noise for users, kept with --verbose.
_RELAYS = ("apache_beam.runners.portability.local_job_service",)
_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at emit time (tests and notebooks swap it)."""

    _eegfm = True

    def __init__(self) -> None:
        logging.Handler.__init__(self)  # not StreamHandler's: it would set the stream
        self.verbose = False

    def filter(self, record: logging.LogRecord) -> bool:
        # Beam's object-store modules log through the root logger ("Finished listing 4 files
        # in 0.01 seconds", once per listing), out of reach of the apache_beam logger's level.
        if (
            not self.verbose
            and record.name == "root"
            and record.levelno < logging.WARNING
            and f"{os.sep}apache_beam{os.sep}" in record.pathname
        ):
            return False
        # Beam logs an interrupt (Ctrl-C, SIGTERM) as the failing step's error, traceback and all, on its
        # way out: the command says it in one line.
        if (
            not self.verbose
            and record.name.startswith("apache_beam")
            and record.exc_info
            and isinstance(record.exc_info[1], KeyboardInterrupt)
        ):
            return False
        return super().filter(record)

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr


def setup_logging(level: str | int = "INFO", *, verbose: bool = False) -> logging.Logger:
    """Configure the root logger once; safe to call from every entry point."""
    if isinstance(level, str):
        numeric = logging.getLevelName(level.upper())
        if not isinstance(numeric, int):
            raise ValueError(f"log level: expected one of DEBUG, INFO, WARNING, ERROR; got {level!r}")
        level = numeric
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_eegfm", False)), None)
    if handler is None:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
        root.addHandler(handler)
    handler.verbose = verbose
    root.setLevel(level)
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)
    for name in _RELAYS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.ERROR)
    return logging.getLogger("eegfm")


def get_logger(name: str) -> logging.Logger:
    """The logger ``eegfm.<name>``; a module passes ``__name__``, which already starts with it."""
    return logging.getLogger(name if name.startswith("eegfm.") else f"eegfm.{name}")


class RedactingFilter(logging.Filter):
    """Rewrites every record the root logger's handlers emit through ``scrub`` (redaction, the default of
    eegfm-preprocess and eegfm-predict: input file and folder names and channel labels may name patients).
    Until :meth:`release` gives it the scrubber it holds records back, since the names to replace are
    known only once the inputs are listed."""

    def __init__(self) -> None:
        super().__init__()
        self._held: list[tuple[logging.Handler, logging.LogRecord]] = []
        self._scrub = None
        self._handlers: list[logging.Handler] = []

    def install(self) -> RedactingFilter:
        self._handlers = list(logging.getLogger().handlers)
        for handler in self._handlers:
            handler.addFilter(self)
        return self

    def remove(self) -> None:
        for handler in self._handlers:
            handler.removeFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        if self._scrub is None:
            if not any(record is r for _, r in self._held):  # each handler calls this filter
                self._held.extend((h, record) for h in self._handlers if h.level <= record.levelno)
            return False
        if not getattr(record, "_eegfm_scrubbed", False):
            message = record.getMessage()
            if record.exc_info:  # a traceback names files too
                message += "\n" + logging.Formatter().formatException(record.exc_info)
                record.exc_info, record.exc_text = None, None
            record.msg, record.args = self._scrub(message), None
            record._eegfm_scrubbed = True
        return True

    def release(self, scrub) -> None:
        """From now on scrub every record; emit the held ones, scrubbed."""
        self._scrub = scrub
        held, self._held = self._held, []
        for handler, record in held:
            handler.handle(record)
