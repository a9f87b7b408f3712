"""eegfm-serve for the tests: a real uvicorn server on a free loopback port, in a thread (or a
subprocess where signals are under test), plain HTTP requests to it, and a self-signed certificate
for HTTPS."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import http.client
import ipaddress
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from eegfm.serving.server import make_server

API_KEY = "test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@dataclasses.dataclass
class Running:
    host: str
    port: int
    server: object = None  # the GracefulServer of an in-process server

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None, timeout=120):
        """(status, parsed JSON body or text, headers) of one request on a new connection. A server
        may answer before reading a large body (401, 413) and close: the answer is read as a
        careful client (curl) reads it, not lost to the broken pipe of the rest of the upload."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            try:
                connection.request(method, path, body=body, headers=headers or {})
                response = connection.getresponse()
            except (BrokenPipeError, ConnectionResetError):
                response = http.client.HTTPResponse(connection.sock, method=method)
                response.begin()
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


def self_signed_certificate(folder, name: str) -> tuple[str, str]:
    """A certificate for 127.0.0.1 signed by its own key: (certificate path, key path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "eegfm-test")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)
