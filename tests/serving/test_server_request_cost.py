"""eegfm-serve's requests cost what they weigh (issue 78, case 4): a zip of many members is refused
past the cap before it is parsed; its work stops when its client leaves and its files go at once;
``/health`` answers while heavy requests run; SIGTERM ends work in flight within --graceful_timeout.
Real servers in processes of their own, whose temporary folder, CPU time and log the tests watch."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import threading
import time
import zipfile
from pathlib import Path

import pytest

from eegfm.serving.api.jobs import CLEANUP_WAIT
from eegfm.serving.api.uploads import MAX_ZIP_MEMBERS
from tests.serving.api.test_uploads import tiny_members
from tests.serving.serve_helpers import serving_process

RAW = {"Content-Type": "application/octet-stream"}


@pytest.fixture(scope="module")
def ward_zip(raw_sites) -> bytes:
    """24 real recordings (the 12 of ``raw_sites``, twice): seconds of scoring, a recording at a time."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zipped:
        for copy in range(2):
            for path in sorted(raw_sites.rglob("*.edf")):
                zipped.write(path, f"copy{copy}/{path.name}")
    return buffer.getvalue()


def _served(finetuned, tmp: Path, *options: str):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp)}
    return serving_process(["--model", str(finetuned), "--no-auth", "--max_upload_mb", "64", *options], env=env)


@pytest.fixture(scope="module")
def served(finetuned, tmp_path_factory):
    """The server process, its temporary folder, and a function giving its log so far."""
    tmp = tmp_path_factory.mktemp("server-tmp")
    with _served(finetuned, tmp) as (process, server):
        log: list[str] = []
        threading.Thread(target=lambda: log.extend(process.stderr), daemon=True).start()
        yield process, server, tmp, lambda: "".join(log)


def uploads_in(tmp: Path) -> list[Path]:
    return list(tmp.glob("eegfm-upload-*"))


def cpu_seconds(pid: int) -> float:
    """The process's CPU time so far (user and system, all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_zip_past_the_member_cap_is_refused_at_once_and_leaves_nothing(served):
    """100,000 one-byte members took over 590 s and left 395 MB and 100,105 entries; now a zip of
    more than MAX_ZIP_MEMBERS is refused on its bytes, before it is parsed or unpacked."""
    _, server, tmp, _ = served
    started = time.perf_counter()
    status, reply, _ = server.request("POST", "/v1/predict?filename=many.zip", tiny_members(MAX_ZIP_MEMBERS + 1), RAW)
    assert status == 413 and reply["error"].startswith(f"the zip holds more than {MAX_ZIP_MEMBERS} members"), reply
    assert time.perf_counter() - started < 10
    assert uploads_in(tmp) == []


def test_health_answers_while_heavy_requests_run(served, ward_zip):
    """A zip of 2,000 members and one of 24 recordings at once: /health answers each poll within a
    second (16-30 s before, when a folder of 100,000 files was removed on the event loop)."""
    _, server, tmp, log = served
    answers = {}

    def send(name, body):
        answers[name] = server.request("POST", f"/v1/predict?filename={name}.zip", body, RAW, timeout=600)

    heavy = [
        threading.Thread(target=send, args=("members", tiny_members(2000))),
        threading.Thread(target=send, args=("ward", ward_zip)),
    ]
    for thread in heavy:
        thread.start()
    waits = []
    while any(thread.is_alive() for thread in heavy):
        started = time.perf_counter()
        assert server.request("GET", "/health", timeout=30)[:2] == (200, {"status": "ok"})
        waits.append(time.perf_counter() - started)
        time.sleep(0.1)
    assert len(waits) >= 5 and max(waits) < 1.0, (len(waits), max(waits))
    status, reply, _ = answers["members"]
    assert status == 422 and len(reply["ignored"]) == 2000
    status, reply, _ = answers["ward"]
    assert status == 200 and len(reply["recordings"]) == 24
    assert uploads_in(tmp) == [] and "Traceback" not in log()


def test_a_client_that_leaves_abandons_its_work_and_its_files_go_at_once(served, ward_zip):
    """Before, the work went on after the client left, with its temporary files; now the request is
    abandoned: its folder goes within CLEANUP_WAIT seconds and the server's CPU falls idle."""
    process, server, tmp, log = served
    sock = socket.create_connection((server.host, server.port), timeout=30)
    head = f"POST /v1/predict?filename=ward.zip HTTP/1.1\r\nHost: x\r\nContent-Length: {len(ward_zip)}\r\n"
    sock.sendall(head.encode() + b"Content-Type: application/octet-stream\r\n\r\n" + ward_zip)
    deadline = time.monotonic() + 60
    while not any(folder.rglob("*.edf") for folder in uploads_in(tmp)):  # unpacked: scoring has begun
        assert time.monotonic() < deadline, "the upload was never unpacked"
        time.sleep(0.05)
    time.sleep(1.0)
    sock.close()
    left = time.monotonic()
    while uploads_in(tmp):
        assert time.monotonic() - left < CLEANUP_WAIT + 3, "the abandoned request's files stayed"
        time.sleep(0.05)
    time.sleep(1.0)  # the recording being scored when the client left may end
    before = cpu_seconds(process.pid)
    time.sleep(2.0)
    assert cpu_seconds(process.pid) - before < 0.5  # idle: 23 recordings were not scored for nobody
    assert re.search(r"POST /v1/predict 400 \d+ bytes", log()), log()[-2000:]
    assert "Traceback" not in log() and server.request("GET", "/health")[0] == 200


def test_sigterm_cancels_the_work_in_flight_within_the_grace_period(finetuned, ward_zip, tmp_path):
    """Two heavy requests in flight at SIGTERM took 274 s to stop with --graceful_timeout 30; now
    both are answered 503 before the grace period ends, their files removed, and the process exits."""
    grace = 1  # shorter than scoring one request's 24 recordings: the work is still in flight at the end
    with _served(finetuned, tmp_path, "--graceful_timeout", str(grace)) as (process, server):
        log: list[str] = []
        reader = threading.Thread(target=lambda: log.extend(process.stderr), daemon=True)
        reader.start()
        answers: list[tuple] = []

        def send():
            answers.append(server.request("POST", "/v1/predict?filename=ward.zip", ward_zip, RAW, timeout=120))

        inflight = [threading.Thread(target=send) for _ in range(2)]
        for thread in inflight:
            thread.start()
        deadline = time.monotonic() + 60
        while len([f for f in uploads_in(tmp_path) if any(f.rglob("*.edf"))]) < 2:
            assert time.monotonic() < deadline, "the uploads were never unpacked"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGTERM)
        signalled = time.monotonic()
        assert process.wait(timeout=grace + 30) == 0
        stopped = time.monotonic() - signalled
        for thread in inflight:
            thread.join(timeout=10)
        assert stopped < grace + 3, stopped
        assert [status for status, _, _ in answers] == [503, 503], answers
        assert all(reply["error"].startswith("the server is stopping") for _, reply, _ in answers)
        assert uploads_in(tmp_path) == []
        reader.join(timeout=10)
        assert "Traceback" not in "".join(log)
