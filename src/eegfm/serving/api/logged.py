"""What the server's log may say about an upload: never the client's file or member names.

Uploads live in temporary folders named ``eegfm-upload-*``; any path below one (in a message, an
OS error or a traceback, whoever logged it: the routes, the pipeline, a library) is written as
``<upload>``. A fault of the server's is logged as its type and the code it passed through, never
its message, which may quote such a path.
"""

from __future__ import annotations

import logging
import re
import traceback

UPLOAD_PREFIX = "eegfm-upload-"
# a path up to the end of its quoted or unquoted run: names may hold spaces, not quotes or newlines
_UPLOAD_PATH = re.compile(r"[^\s'\"]*" + re.escape(UPLOAD_PREFIX) + r"[^\n'\"]*")


def scrub_upload_paths(text: str) -> str:
    """``text`` with every path into an upload's temporary folder replaced by ``<upload>``."""
    return _UPLOAD_PATH.sub("<upload>", text) if UPLOAD_PREFIX in text else text


class UploadPathFilter(logging.Filter):
    """Rewrites a record that names a path into an upload's folder (in its message or traceback),
    whichever logger made it; other records pass as they are, for other filters to see."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        if UPLOAD_PREFIX in message:
            record.msg, record.args = scrub_upload_paths(message), None
            record.exc_info, record.exc_text = None, None
        return True


_INSTALLED: list[UploadPathFilter] = []


def install_upload_redaction() -> None:
    """Every handler of the root logger scrubs upload paths from now on (once per process: each
    server made in it shares the filter)."""
    if not _INSTALLED:
        _INSTALLED.append(UploadPathFilter())
        for handler in logging.getLogger().handlers:
            handler.addFilter(_INSTALLED[0])


def fault(err: BaseException, frames: int = 8) -> str:
    """``err``'s type and the innermost ``frames`` of its traceback (file, line, function)."""
    stack = traceback.extract_tb(err.__traceback__)[-frames:]
    where = "; ".join(f"{frame.filename}:{frame.lineno} in {frame.name}" for frame in stack)
    return f"{type(err).__name__} at {where}" if where else type(err).__name__
