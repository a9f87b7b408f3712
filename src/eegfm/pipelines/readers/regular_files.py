"""Opening a local input without waiting on it: ``O_NONBLOCK``, then ``fstat`` on the open descriptor.

The listing passes over FIFOs, sockets and devices, but an entry listed as a file may be swapped for
one before a worker reads it. Opening a FIFO waits for a writer for ever and a device such as
``/dev/zero`` never ends; with ``O_NONBLOCK`` a FIFO's open returns at once (a socket's fails), and
the type is read off the open descriptor itself, so no swap between a check and the open goes unseen.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

# What a file-type test names an entry that is no regular file.
_FILE_TYPES = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a folder"),
)


class NotRegularFile(OSError):
    """A local input that is no regular file when opened; ``why`` says what it is."""

    def __init__(self, path: str, why: str):
        super().__init__(errno.EINVAL, why, path)
        self.why = why

    def __str__(self) -> str:
        return self.why


def file_kind(mode: int) -> str:
    """'a FIFO', 'a socket', ... for a ``st_mode`` that is no regular file's."""
    return next((name for test, name in _FILE_TYPES if test(mode)), f"file type {stat.S_IFMT(mode):o}")


def not_regular_reason(kind: str) -> str:
    return f"not a regular file when opened ({kind}; changed after the inputs were listed?): not read"


def open_regular_fd(path: str | os.PathLike) -> int:
    """A blocking read-only descriptor on the regular file ``path``; :class:`NotRegularFile` for
    anything else (never waited on), OSError where it cannot be opened."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        if err.errno == errno.ENXIO:  # a socket (or a device with no driver) cannot be opened at all
            try:
                kind = file_kind(os.stat(path).st_mode)
            except OSError:
                raise err from None
            raise NotRegularFile(os.fspath(path), not_regular_reason(kind)) from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(os.fspath(path), not_regular_reason(file_kind(mode)))
        os.set_blocking(fd, True)  # reads of a regular file never block for long; some FUSE file systems honour it
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """:func:`open_regular_fd` as a binary file object."""
    return os.fdopen(open_regular_fd(path), "rb")


def check_regular(path: str | os.PathLike) -> int:
    """The size of the regular file ``path``, opened as :func:`open_regular_fd` opens it."""
    fd = open_regular_fd(path)
    try:
        return os.fstat(fd).st_size
    finally:
        os.close(fd)
