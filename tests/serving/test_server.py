"""``eegfm-serve``: a real uvicorn server on a free port, real uploads of eegmat recordings, every
route with API keys on and off."""

from __future__ import annotations

import io
import json
import logging
import re
import zipfile

import numpy as np
import pytest
import torch

from eegfm.core.machine import Cpus
from eegfm.core.palette import class_colours
from eegfm.inference.predictor import Predictor
from eegfm.serving.api.auth import key_fingerprint
from eegfm.serving.api.uploads import upload_extension
from tests.inference.conftest import PRIOR, validate_prediction
from tests.serving.serve_helpers import API_KEY, AUTH, multipart, serving

RAW = {**AUTH, "Content-Type": "application/octet-stream"}


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("keys") / "keys.txt"
    path.write_text(f"# the tests' key\n{API_KEY}\n\nanother-key-abcdefghijklmnop\n")
    return path


@pytest.fixture(scope="module")
def server(finetuned, keys_file):
    with serving(["--model", str(finetuned), "--max_upload_mb", "4", "--api_keys_file", str(keys_file)]) as running:
        yield running


def test_an_uploaded_recording_gets_the_predictors_answer(server, raw_sites, caplog):
    recording = raw_sites / "hospital2" / "Subject04_2.edf"
    with caplog.at_level(logging.INFO, logger="eegfm.serving"):
        named = "/v1/predict?filename=Jane%20Roe%201961.edf"
        status, reply, _ = server.request("POST", named, recording.read_bytes(), RAW)
        assert status == 200
        # named by index and token unless the client asks for its own name back
        assert re.fullmatch(r"file-[0-9a-f]{12}\.edf", reply["recordings"][0]["input"])
        assert reply["recordings"][0]["index"] == 1 and "Roe" not in json.dumps(reply)
        status, reply, _ = server.request(
            "POST", "/v1/predict?filename=Jane%20Roe%201961.edf&echo_name=true", recording.read_bytes(), RAW
        )
    assert status == 200
    [answer] = reply["recordings"]
    predictor = server.server.config.app.state.service.predictor
    [expected] = predictor.predict([str(recording)])
    assert answer["input"] == "Jane Roe 1961.edf" and answer["status"] == "processed"
    assert [w["start_s"] for w in answer["window_predictions"]] == [w.start_s for w in expected.windows]
    np.testing.assert_allclose(
        [w["outputs"] for w in answer["window_predictions"]], [w.outputs for w in expected.windows], atol=1e-9
    )
    assert reply["model"]["labels"] == ["rest", "task"] and answer["labels"] == ["rest", "task"]
    assert reply["model"]["class_colours"] == class_colours(["rest", "task"])  # the page colours as the CLI does
    validate_prediction(answer)  # every window's reading, as the schema in the package describes it
    assert reply["model"]["model_version"] == answer["model_version"] and reply["model"]["uncertainty"]["passes"] == 20
    # The client's file name (a patient's, here) is in its reply, never in the server's log
    assert "POST /v1/predict 200" in caplog.text and "Roe" not in caplog.text
    # who asked: the client's address and the key's fingerprint, never the key
    assert f"client=127.0.0.1 {key_fingerprint(API_KEY)}" in caplog.text and API_KEY not in caplog.text


def test_each_recording_of_a_reply_carries_its_answer_with_an_interval(server, shared_data):
    recording = (shared_data / "eegmat" / "Subject00_1.edf").read_bytes()  # 180 s at rest: 18 windows
    status, reply, _ = server.request("POST", "/v1/predict?filename=visit.edf", recording, RAW)
    assert status == 200
    [scored] = reply["recordings"]
    validate_prediction(scored)  # the answer is the windows' mean, in its interval, as the schema says
    answer = scored["recording"]
    assert answer["n_windows"] == scored["windows"] == 18 and answer["level"] == 0.95
    windows = np.array(
        [[w["class_probabilities"][label] for label in ("rest", "task")] for w in scored["window_predictions"]]
    )
    np.testing.assert_allclose([answer["probabilities"][label] for label in ("rest", "task")], windows.mean(axis=0))
    assert all(answer["low"][label] < answer["high"][label] for label in ("rest", "task"))
    assert answer["predicted"] == scored["predicted"]
    # the same recording again: the same answer (the interval's bootstrap is seeded)
    assert (
        server.request("POST", "/v1/predict?filename=visit.edf", recording, RAW)[1]["recordings"][0]["recording"]
        == answer
    )


def test_multipart_uploads_and_curls_default_content_type_are_recordings_too(server, raw_sites):
    recording = raw_sites / "hospital0" / "Subject00_2.edf"
    boundary = "eegfm-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="visit.edf"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + recording.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {**AUTH, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    status, reply, _ = server.request("POST", "/v1/predict?echo_name=1", body, headers)
    assert status == 200 and reply["recordings"][0]["input"] == "visit.edf"
    assert reply["recordings"][0]["windows"] == 6
    form = {**AUTH, "Content-Type": "application/x-www-form-urlencoded"}  # what curl --data-binary sends
    status, again, _ = server.request("POST", "/v1/predict?filename=a.edf", recording.read_bytes(), form)
    assert status == 200
    assert again["recordings"][0]["window_predictions"] == reply["recordings"][0]["window_predictions"]


def test_a_recording_of_several_files_comes_zipped(server, raw_sites):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        for name in ("Subject00_2.edf", "Subject01_2.edf"):
            zipped.write(raw_sites / "hospital0" / name, f"visit/{name}")
    status, reply, _ = server.request("POST", "/v1/predict?filename=visit.zip&echo_name=1", archive.getvalue(), RAW)
    assert status == 200
    assert sorted(r["input"] for r in reply["recordings"]) == [
        "visit.zip/visit/Subject00_2.edf",
        "visit.zip/visit/Subject01_2.edf",
    ]
    assert all(r["windows"] == 6 for r in reply["recordings"])


def test_every_route_asks_for_a_key_where_it_should(server, raw_sites):
    recording = (raw_sites / "hospital0" / "Subject00_2.edf").read_bytes()
    batch, batch_type = multipart("files", [("a.edf", recording)])
    for method, path, body, kind in (
        ("GET", "/v1/model", None, {}),
        ("POST", "/v1/predict?filename=a.edf", recording, {"Content-Type": "application/octet-stream"}),
        ("POST", "/v1/predict_batch", batch, batch_type),
    ):
        for headers in ({}, {"Authorization": "Bearer wrong-key-0123456789abcdef"}, {"Authorization": "Basic eA=="}):
            status, reply, got = server.request(method, path, body, {**headers, **kind})
            assert status == 401 and got["www-authenticate"].startswith('Bearer realm="eegfm"'), (path, headers)
            assert reply["error"].startswith("header Authorization") and reply["status"] == 401
    other = {"Authorization": "Bearer another-key-abcdefghijklmnop"}  # every key of the file works
    status, model, _ = server.request("GET", "/v1/model", headers=other)
    assert status == 200 and model["window_seconds"] == 10.0 and model["backend"] == "torch"
    assert model["evaluation"]["split"] in ("test", "validation") and model["evaluation"]["metrics"]["n_windows"] > 0
    # the probes, the metrics and the API's description need no key
    assert server.request("GET", "/health")[:2] == (200, {"status": "ok"})
    status, ready, _ = server.request("GET", "/ready")
    assert status == 200 and ready == {"status": "ready", "model_version": model["model_version"]}
    status, text, _ = server.request("GET", "/metrics")
    assert status == 200 and "eegfm_requests_total" in text
    status, spec, _ = server.request("GET", "/openapi.json")
    assert status == 200
    assert {"/v1/predict", "/v1/predict_batch", "/v1/model", "/health", "/ready"} <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_the_docs_page_loads_nothing_from_elsewhere(server):
    status, page, _ = server.request("GET", "/docs")
    assert status == 200 and "/docs/static/swagger-ui-bundle.js" in page
    assert not re.search(r"(src|href)=\"https?://", page)  # no CDN: every asset is the server's own
    status, script, _ = server.request("GET", "/docs/static/swagger-ui-bundle.js")
    assert status == 200 and len(script) > 100_000


def test_without_keys_the_server_needs_no_auth_said_out_loud(finetuned, raw_sites, caplog, monkeypatch):
    monkeypatch.delenv("EEGFM_API_KEYS", raising=False)
    with pytest.raises(SystemExit) as refused:
        with serving(["--model", str(finetuned)]):
            pass
    assert refused.value.code == 2
    monkeypatch.delenv("OMP_NUM_THREADS")  # one_thread's: the model's threads come from the machine
    with caplog.at_level(logging.INFO), serving(["--model", str(finetuned), "--no-auth"]) as server:
        assert "--no-auth: predictions are served to anyone" in caplog.text
        cores = Cpus.here().usable
        threads = f"{cores} torch thread{'s' if cores > 1 else ''} (--threads N to change)"
        said = f"using {cores} CPU core{'s' if cores > 1 else ''}: 1 worker (--workers N to change), {threads}"
        assert said in caplog.text and torch.get_num_threads() == cores
        status, reply, _ = server.request(
            "POST",
            "/v1/predict?filename=a.edf",
            (raw_sites / "hospital0" / "Subject00_2.edf").read_bytes(),
            {"Content-Type": "application/octet-stream"},
        )
        assert status == 200 and reply["recordings"][0]["status"] == "processed"
        assert server.request("GET", "/v1/model")[0] == 200
        assert server.request("GET", "/ready")[0] == 200
        batch, batch_type = multipart("files", [("a.edf", b"0" * 300)])
        status, reply, _ = server.request("POST", "/v1/predict_batch", batch, batch_type)
        assert status == 200 and reply["results"][0]["status"] == 422
    monkeypatch.setenv("EEGFM_API_KEYS", f"{API_KEY}, second-key-abcdefghijklmnop")
    with serving(["--model", str(finetuned)]) as server:
        second = {"Authorization": "Bearer second-key-abcdefghijklmnop"}
        assert server.request("GET", "/v1/model", headers=second)[0] == 200
        assert server.request("GET", "/v1/model")[0] == 401


def test_bad_requests_get_a_status_and_a_reason(server, raw_sites):
    edf = (raw_sites / "hospital0" / "Subject00_2.edf").read_bytes()
    status, reply, _ = server.request("POST", "/v1/predict?filename=cut.edf", edf[:2000], RAW)
    assert status == 422 and reply["recordings"][0]["stage"] == "read"  # a truncated EDF
    [cut] = reply["recordings"]
    assert cut["reason"].startswith(cut["input"] + ": header: declares 22 signals")  # its token, as in "input"
    status, reply, _ = server.request("POST", "/v1/predict", b"x", RAW)
    assert status == 400 and reply["error"].startswith("query parameter filename")
    status, reply, _ = server.request("POST", "/v1/predict?filename=notes.txt", b"x", RAW)
    assert status == 400 and ".edf" in reply["error"] and "notes" not in reply["error"]
    status, reply, _ = server.request("POST", "/v1/predict?filename=a.edf&echo_name=maybe", b"x", RAW)
    assert status == 400 and "echo_name" in reply["error"]
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as zipped:
        zipped.writestr("../../escape.edf", b"x")
    status, reply, _ = server.request("POST", "/v1/predict?filename=a.zip", evil.getvalue(), RAW)
    assert status == 400 and "inside the archive" in reply["error"]
    status, reply, _ = server.request("POST", "/v1/predict?filename=a.zip", b"PK not a zip", RAW)
    assert status == 400 and "zip" in reply["error"]
    status, reply, _ = server.request("POST", "/v1/predict?filename=a.edf", edf, {**AUTH, "Content-Type": "text/plain"})
    assert status == 415 and reply["error"].startswith("header Content-Type") and "text/plain" in reply["error"]
    assert server.request("GET", "/v1/predict", headers=AUTH)[0] == 405
    status, reply, _ = server.request("GET", "/nowhere/Jane_Roe.edf")
    assert status == 404 and "Roe" not in reply["error"]


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


def test_a_benchmark_export_is_served_with_the_recording_s_answer(fused_export, finetuned, raw_sites):
    """eegfm-serve --model on an --export folder: each window the fused model's probabilities (the
    network's fused with the other part, not the network's own), and the recording's answer."""
    recording = raw_sites / "hospital2" / "Subject04_2.edf"
    with serving(["--model", str(fused_export), "--no-auth"]) as running:
        status, reply, _ = running.request("POST", "/v1/predict?filename=a.edf", recording.read_bytes(), RAW)
        status_info, info, _ = running.request("GET", "/v1/model")
    assert status == 200 and status_info == 200
    [answer] = reply["recordings"]
    validate_prediction(answer)
    outputs = np.array([w["outputs"] for w in answer["window_predictions"]])
    [network] = Predictor(finetuned).predict([str(recording)])
    alone = np.array([w.outputs for w in network.windows])
    weighted = 0.25 * np.log(alone) + 0.75 * np.log(np.array(PRIOR))
    expected = np.exp(weighted) / np.exp(weighted).sum(1, keepdims=True)
    np.testing.assert_allclose(outputs, expected, atol=1e-5)
    assert not np.allclose(outputs, alone, atol=1e-3)
    np.testing.assert_allclose(list(answer["recording"]["probabilities"].values()), outputs.mean(0), atol=1e-9)
    assert answer["recording"]["n_windows"] == len(outputs) and info["labels"] == ["rest", "task"]
