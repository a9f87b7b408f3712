"""Shared helpers for the training tests (the pipeline output they read is ``tests/conftest.py``'s
``pipeline_output``)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port free on localhost now, for a test's process-group rendezvous."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
