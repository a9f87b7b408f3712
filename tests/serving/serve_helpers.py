"""eegfm-serve for the tests: a real uvicorn server on a free loopback port, in a thread (or a
subprocess where signals are under test), and plain HTTP requests to it."""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

from eegfm.serving.server import make_server

API_KEY = "test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@dataclasses.dataclass
class Running:
    host: str
    port: int
    server: object = None  # the GracefulServer of an in-process server

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None, timeout=120):
        """(status, parsed JSON body or text, headers) of one request on a new connection."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            data = response.read()
            kind = response.getheader("Content-Type", "")
            parsed = json.loads(data) if kind.startswith("application/json") else data.decode(errors="replace")
            return response.status, parsed, dict(response.getheaders())
        finally:
            connection.close()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def multipart(field: str, files: list[tuple[str, bytes]], boundary: str = "eegfm-test-boundary") -> tuple[bytes, dict]:
    """A multipart/form-data body of ``files`` (name, bytes) in ``field``, and its Content-Type header."""
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n\r\n'.encode()
        + data
        + b"\r\n"
        for name, data in files
    ]
    content_type = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), content_type


@contextlib.contextmanager
def serving(argv: list[str]) -> Iterator[Running]:
    """eegfm-serve with ``argv`` in a thread of this process; stopped on leaving."""
    server, sock = make_server(["--port", "0", *argv])
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "eegfm-serve did not start"
        time.sleep(0.02)
    host, port = sock.getsockname()[:2]
    try:
        yield Running(host, port, server)
    finally:
        server.should_exit = True
        thread.join(timeout=60)


@contextlib.contextmanager
def serving_process(argv: list[str], env: dict | None = None) -> Iterator[tuple[subprocess.Popen, Running]]:
    """eegfm-serve with ``argv`` in a subprocess (its banner gives the port); killed on leaving."""
    process = subprocess.Popen(
        [sys.executable, "-m", "eegfm.serving.server", "--port", "0", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        banner = process.stdout.readline()
        found = re.search(r"http://([\d.]+):(\d+)", banner)
        assert found, f"no banner: {banner!r} {process.stderr.read() if process.poll() is not None else ''}"
        yield process, Running(found.group(1), int(found.group(2)))
    finally:
        process.kill()
        process.wait()
