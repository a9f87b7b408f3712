"""``eegfm-serve``: a real HTTP server on a free port, real uploads of eegmat recordings."""

from __future__ import annotations

import http.client
import io
import json
import logging
import re
import threading
import zipfile

import numpy as np
import pytest

from eegfm.serving.server import make_server, upload_extension
from tests.serving.conftest import validate_prediction


@pytest.fixture(scope="module")
def server(finetuned):
    served = make_server(["--model", str(finetuned), "--port", "0", "--max_upload_mb", "4"])
    thread = threading.Thread(target=served.serve_forever, daemon=True)
    thread.start()
    yield served
    served.shutdown()
    served.server_close()


def _request(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    connection = http.client.HTTPConnection(*server.server_address[:2], timeout=120)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_an_uploaded_recording_gets_the_predictors_answer(server, raw_sites, caplog):
    recording = raw_sites / "hospital2" / "Subject04_2.edf"
    with caplog.at_level(logging.INFO, logger="eegfm.serving.server"):
        status, reply = _request(server, "POST", "/v1/predict?filename=Jane%20Roe%201961.edf", recording.read_bytes())
        assert status == 200
        # named by index and token unless the client asks for its own name back
        assert re.fullmatch(r"file-[0-9a-f]{12}\.edf", reply["recordings"][0]["input"])
        assert reply["recordings"][0]["index"] == 1 and "Roe" not in json.dumps(reply)
        status, reply = _request(
            server, "POST", "/v1/predict?filename=Jane%20Roe%201961.edf&echo_name=true", recording.read_bytes()
        )
    assert status == 200
    [answer] = reply["recordings"]
    [expected] = server.predictor.predict([str(recording)])
    assert answer["input"] == "Jane Roe 1961.edf" and answer["status"] == "processed"
    assert [w["start_s"] for w in answer["window_predictions"]] == [w.start_s for w in expected.windows]
    np.testing.assert_allclose(
        [w["outputs"] for w in answer["window_predictions"]], [w.outputs for w in expected.windows], atol=1e-9
    )
    assert reply["model"]["labels"] == ["rest", "task"] and answer["labels"] == ["rest", "task"]
    # every window's reading, as the schema in the package describes it
    validate_prediction(answer)
    assert [w["clinical_recommendation"] for w in answer["window_predictions"]] == [
        w.clinical_recommendation for w in expected.windows
    ]
    assert reply["model"]["model_version"] == answer["model_version"] and reply["model"]["uncertainty"]["passes"] == 20
    # The client's file name (a patient's, here) is in its reply, never in the server's log
    assert "POST /v1/predict 200" in caplog.text and "Roe" not in caplog.text


def test_a_recording_of_several_files_comes_zipped(server, raw_sites):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        for name in ("Subject00_2.edf", "Subject01_2.edf"):
            zipped.write(raw_sites / "hospital0" / name, f"visit/{name}")
    status, reply = _request(server, "POST", "/v1/predict?filename=visit.zip&echo_name=1", archive.getvalue())
    assert status == 200
    assert sorted(r["input"] for r in reply["recordings"]) == [
        "visit.zip/visit/Subject00_2.edf",
        "visit.zip/visit/Subject01_2.edf",
    ]
    assert all(r["windows"] == 6 for r in reply["recordings"])


def test_bad_requests_get_a_status_and_a_reason(server, raw_sites):
    status, reply = _request(
        server,
        "POST",
        "/v1/predict?filename=cut.edf",
        (raw_sites / "hospital0" / "Subject00_2.edf").read_bytes()[:2000],
    )
    assert status == 422 and reply["recordings"][0]["stage"] == "read"
    [cut] = reply["recordings"]
    assert cut["reason"].startswith(cut["input"] + ": header: declares 22 signals")  # its token, as in "input"
    assert _request(server, "POST", "/v1/predict", b"x")[0] == 400
    status, reply = _request(server, "POST", "/v1/predict?filename=notes.txt", b"x")
    assert status == 400 and ".edf" in reply["error"] and "notes" not in reply["error"]
    assert _request(server, "POST", "/v1/predict?filename=a.edf&echo_name=maybe", b"x")[0] == 400
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as zipped:
        zipped.writestr("../../escape.edf", b"x")
    status, reply = _request(server, "POST", "/v1/predict?filename=a.zip", evil.getvalue())
    assert status == 400 and "inside the archive" in reply["error"]
    # refused on its Content-Length, before the body is read
    connection = http.client.HTTPConnection(*server.server_address[:2], timeout=60)
    connection.putrequest("POST", "/v1/predict?filename=big.edf")
    connection.putheader("Content-Length", str(5 << 20))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and "--max_upload_mb" in json.loads(response.read())["error"]
    connection.close()
    assert _request(server, "GET", "/v1/predict")[0] == 405
    assert _request(server, "GET", "/nowhere")[0] == 404
    assert _request(server, "GET", "/health") == (200, {"status": "ok"})
    status, model = _request(server, "GET", "/v1/model")
    assert status == 200 and model["window_seconds"] == 10.0 and model["backend"] == "torch"
    assert model["evaluation"]["split"] in ("test", "validation") and model["evaluation"]["metrics"]["n_windows"] > 0


def test_upload_names_say_the_format():
    assert [upload_extension(n) for n in ("a.EDF", "b.fif.gz", "c.zip", "d.parquet")] == [
        ".edf",
        ".fif.gz",
        ".zip",
        ".parquet",
    ]
    for name in ("", ".edf", "a.vhdr", "a.txt"):
        with pytest.raises(ValueError, match="expected a name ending in one of"):
            upload_extension(name)


def test_sigterm_lets_the_request_in_flight_finish_and_exits_0(finetuned, raw_sites):
    import os
    import signal
    import subprocess
    import sys

    archive = io.BytesIO()  # 48 recordings (4 copies of 12): a request that takes seconds to score
    with zipfile.ZipFile(archive, "w") as zipped:
        for copy in range(4):
            for path in sorted(raw_sites.rglob("*.edf")):
                zipped.write(path, f"copy{copy}/{path.name}")
    server = subprocess.Popen(
        [sys.executable, "-m", "eegfm.serving.server", "--model", str(finetuned), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner = server.stdout.readline()
        host, port = re.search(r"http://([\d.]+):(\d+)", banner).groups()
        connection = http.client.HTTPConnection(host, int(port), timeout=120)
        connection.request("POST", "/v1/predict?filename=ward.zip", body=archive.getvalue())
        os.kill(server.pid, signal.SIGTERM)  # the server has the upload and is still unpacking or scoring it
        response = connection.getresponse()
        reply = json.loads(response.read())
        assert response.status == 200 and len(reply["recordings"]) == 48
        assert response.getheader("Connection") == "close"  # a kept-alive client is let go
        assert server.wait(timeout=30) == 0
        assert "SIGTERM: finishing the requests in flight" in server.stderr.read()
    finally:
        server.kill()
