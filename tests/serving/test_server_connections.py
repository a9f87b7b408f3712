"""eegfm-serve's connections: stalled uploads, slow-loris clients and SIGTERM, against a real server."""

from __future__ import annotations

import http.client
import io
import json
import logging
import os
import signal
import socket
import threading
import time
import zipfile

import pytest

from tests.serving.serve_helpers import serving, serving_process

RAW = {"Content-Type": "application/octet-stream"}
TIMEOUTS = ["--upload_timeout", "1", "--header_timeout", "2"]


@pytest.fixture(scope="module")
def server(finetuned):
    with serving(["--model", str(finetuned), "--no-auth", *TIMEOUTS]) as running:
        yield running


def _connect(server) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=30)


def _reply_of(sock: socket.socket) -> bytes:
    """What the server sends until it closes the connection (b'' for a close without a reply)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def test_a_stalled_upload_gets_408_not_500(server):
    sock = _connect(server)
    sock.sendall(
        b"POST /v1/predict?filename=a.edf HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: 100000\r\n\r\n" + b"0" * 1000
    )
    started = time.perf_counter()
    reply = _reply_of(sock)
    waited = time.perf_counter() - started
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ") and b"connection: close" in head.lower()
    assert json.loads(body)["error"].startswith("the upload stalled: nothing received for 1 s after 1000 bytes")
    assert 0.9 < waited < 5
    sock.close()


def test_a_body_trickled_a_byte_at_a_time_gets_408_at_its_deadline(finetuned):
    """A byte every 0.3 s never stalls for --upload_timeout (1 s), but averages far below
    --min_upload_kb_per_s: cut at 1 s plus what its bytes buy. With --limit_concurrency 4, three
    such clients made /health answer 503 for as long as they trickled; now their slots free in ~1 s."""
    argv = ["--model", str(finetuned), "--no-auth", "--limit_concurrency", "4", *TIMEOUTS]
    with serving(argv) as running:
        stop = threading.Event()
        socks = [_trickle_upload(running.host, running.port, stop) for _ in range(3)]
        started = time.perf_counter()
        replies = []
        for sock in socks:
            sock.settimeout(10)
            replies.append(_reply_of(sock).partition(b"\r\n\r\n"))
        waited = time.perf_counter() - started
        stop.set()
        for head, _, body in replies:
            assert head.startswith(b"HTTP/1.1 408 ") and b"connection: close" in head.lower()
            assert json.loads(body)["error"].startswith("the upload is too slow: ")
            assert "--min_upload_kb_per_s" in json.loads(body)["error"]
        assert 0.9 < waited < 4, waited
        assert running.request("GET", "/health", timeout=10)[0] == 200
        for sock in socks:
            sock.close()


def test_slow_loris_connections_are_bounded_and_the_server_keeps_answering(server, raw_sites, caplog):
    recording = (raw_sites / "hospital0" / "Subject00_2.edf").read_bytes()
    with caplog.at_level(logging.DEBUG):
        slow = [_connect(server) for _ in range(200)]
        for sock in slow:  # headers that never end, a byte at a time
            sock.sendall(b"POST /v1/predict?filename=a.edf HTTP/1.1\r\nHost: x\r\n")
        stop = threading.Event()

        def trickle():
            while not stop.wait(0.3):
                for sock in slow:
                    try:
                        sock.send(b"X")
                    except OSError:
                        pass

        trickler = threading.Thread(target=trickle, daemon=True)
        trickler.start()
        started = time.perf_counter()
        assert server.request("GET", "/health", timeout=10)[:2] == (200, {"status": "ok"})
        status, reply, _ = server.request("POST", "/v1/predict?filename=a.edf", recording, RAW, timeout=30)
        assert status == 200 and reply["recordings"][0]["status"] == "processed"
        assert time.perf_counter() - started < 10
        for sock in slow:  # each closed at its header deadline (2 s), trickle or not
            sock.settimeout(10)
            assert _reply_of(sock).startswith(b"HTTP/1.1 408 ")
        closed_after = time.perf_counter() - started
        stop.set()
        trickler.join()
    assert closed_after < 12
    assert "Traceback" not in caplog.text and len(caplog.records) < 20, caplog.text[-2000:]
    for sock in slow:
        sock.close()
    assert server.request("GET", "/health", timeout=10)[0] == 200


def _trickle_upload(host: str, port: int, stop: threading.Event) -> socket.socket:
    """A raw upload that sends a byte every 0.3 s (never stalled long enough for 408) until ``stop``."""
    sock = socket.create_connection((host, port), timeout=60)
    sock.sendall(
        b"POST /v1/predict?filename=a.edf HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: 1000000\r\n\r\n"
    )

    def trickle():
        while not stop.wait(0.3):
            try:
                sock.send(b"0")
            except OSError:
                return

    threading.Thread(target=trickle, daemon=True).start()
    return sock


def test_sigterm_answers_the_request_in_flight_cuts_trickles_at_the_grace_period_and_exits_0(finetuned, raw_sites):
    archive = io.BytesIO()  # 12 recordings: a request that takes seconds to score
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(raw_sites.rglob("*.edf")):
            zipped.write(path, path.name)
    grace = 10
    # no rate deadline here: the trickle must still be uploading when the grace period ends
    argv = ["--model", str(finetuned), "--no-auth", "--graceful_timeout", str(grace), "--min_upload_kb_per_s", "0"]
    argv += TIMEOUTS
    with serving_process(argv, env={**os.environ, "OMP_NUM_THREADS": "1"}) as (process, server):
        stop = threading.Event()
        trickling = _trickle_upload(server.host, server.port, stop)
        connection = http.client.HTTPConnection(server.host, server.port, timeout=120)
        connection.request("POST", "/v1/predict?filename=ward.zip", body=archive.getvalue(), headers=RAW)
        time.sleep(0.5)  # the server has the upload and is unpacking or scoring it
        os.kill(process.pid, signal.SIGTERM)
        signalled = time.perf_counter()
        response = connection.getresponse()
        reply = json.loads(response.read())
        answered = time.perf_counter() - signalled
        assert response.status == 200 and len(reply["recordings"]) == 12
        assert response.getheader("Connection") == "close"  # a kept-alive client is let go
        assert process.wait(timeout=grace + 15) == 0
        assert time.perf_counter() - signalled < grace + 5
        stop.set()
        trickling.settimeout(5)
        head, _, body = _reply_of(trickling).partition(b"\r\n\r\n")  # cut just before the grace period ends
        assert head.startswith(b"HTTP/1.1 503 ") and b"connection: close" in head.lower()
        assert json.loads(body)["error"].startswith("the server is stopping; the upload did not end")
        assert answered < grace
        log = process.stderr.read()
        assert "SIGTERM: finishing the requests in flight" in log and "Traceback" not in log
        with pytest.raises(OSError):  # nothing listens any more
            socket.create_connection((server.host, server.port), timeout=5)


def test_a_stopping_server_is_not_ready_and_closes_connections(server):
    from eegfm.serving.api.stopping import STOP

    assert server.request("GET", "/ready")[0] == 200
    STOP.start(30)  # what SIGTERM does, without stopping the test's server
    try:
        status, reply, headers = server.request("GET", "/ready")
        assert status == 503 and reply["error"] == "the server is stopping"
        assert headers["connection"] == "close"
        assert server.request("GET", "/health")[2]["connection"] == "close"
    finally:
        STOP.deadline = float("inf")
    assert server.request("GET", "/ready")[0] == 200
