"""eegfm-serve's /metrics: Prometheus text that parses, counters that move with requests, the
Grafana dashboard's metric names, and the sums over ``--workers`` processes."""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from eegfm.serving.api.metrics import METRIC_NAMES
from tests.serving.serve_helpers import AUTH, serving, serving_process

RAW = {"Content-Type": "application/octet-stream"}
DASHBOARD = Path(__file__).resolve().parents[2] / "infra" / "grafana" / "eegfm-serve.json"


@pytest.fixture(scope="module")
def server(finetuned):
    with serving(["--model", str(finetuned), "--no-auth"]) as running:
        yield running


def _samples(server) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of /metrics, parsed by prometheus_client's own parser."""
    status, text, headers = server.request("GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_move_with_requests(server, raw_sites):
    recording = (raw_sites / "hospital0" / "Subject00_2.edf").read_bytes()
    before = _samples(server)
    status, reply, _ = server.request("POST", "/v1/predict?filename=a.edf", recording, RAW)
    assert status == 200 and reply["recordings"][0]["eeg_seconds"] > 60
    assert server.request("POST", "/v1/predict?filename=a.txt", b"x", RAW)[0] == 400
    status, model, _ = server.request("GET", "/v1/model")
    after = _samples(server)

    def moved(name, **labels):
        return _value(after, name, **labels) - _value(before, name, **labels)

    ok, bad = ({"route": "/v1/predict", "method": "POST", "status": s} for s in ("200", "400"))
    assert moved("eegfm_requests_total", **ok) == 1 and moved("eegfm_requests_total", **bad) == 1
    assert moved("eegfm_requests_total", route="/v1/model", method="GET", status="200") == 1
    assert moved("eegfm_request_duration_seconds_count", route="/v1/predict") == 2
    assert moved("eegfm_request_duration_seconds_bucket", route="/v1/predict", le="+Inf") == 2
    assert moved("eegfm_windows_scored_total") == 6
    assert moved("eegfm_eeg_seconds_scored_total") == pytest.approx(reply["recordings"][0]["eeg_seconds"], abs=1e-3)
    assert moved("eegfm_recordings_total", status="processed") == 1
    assert _value(after, "eegfm_requests_in_flight", route="/v1/predict") == 0
    assert _value(after, "eegfm_requests_in_flight", route="/metrics") == 1  # this very scrape
    info = {"model_version": model["model_version"], "backend": "torch", "head": model["head"]}
    assert _value(after, "eegfm_model_info", **info) == 1
    # unknown paths share one label: a path never becomes a series of its own
    server.request("GET", "/patients/Jane_Roe")
    assert not any("Jane" in str(key) for key in _samples(server))


def test_every_metric_the_dashboard_uses_is_served(server):
    served = {name for name, _ in _samples(server)}
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expr in expressions for name in re.findall(r"\beegfm_[a-z_]+", expr)}
    assert used and used <= served, used - served
    # and every metric the server defines has a panel
    families = {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}
    assert set(METRIC_NAMES) <= families, set(METRIC_NAMES) - families
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


@pytest.mark.slow  # two workers each load the model: about 40 s on two busy cores
def test_several_workers_sum_their_metrics_and_stop_on_sigterm(finetuned, raw_sites):
    recording = (raw_sites / "hospital0" / "Subject00_2.edf").read_bytes()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EEGFM_API_KEYS": AUTH["Authorization"].split()[1]}
    with serving_process(["--model", str(finetuned), "--workers", "2"], env=env) as (process, server):
        for _ in range(300):  # each worker loads the model after the banner
            try:
                if server.request("GET", "/ready", timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        for _ in range(4):
            assert server.request("POST", "/v1/predict?filename=a.edf", recording, {**RAW, **AUTH})[0] == 200
        samples = _samples(server)
        ok = {"route": "/v1/predict", "method": "POST", "status": "200"}
        assert _value(samples, "eegfm_requests_total", **ok) == 4  # whichever worker answered each
        assert _value(samples, "eegfm_windows_scored_total") == 24
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        assert not list(Path("/tmp").glob(f"eegfm-metrics-*/*_{process.pid}.db"))


def test_explain_and_traces_are_their_own_routes(server):
    before = _samples(server)
    for route in ("/v1/explain?window=0&filename=a.txt", "/v1/traces?filename=a.txt"):
        assert server.request("POST", route, b"x", RAW)[0] == 400  # not a recording's extension
    after = _samples(server)
    for route in ("/v1/explain", "/v1/traces"):
        labels = {"route": route, "method": "POST", "status": "400"}
        assert _value(after, "eegfm_requests_total", **labels) - _value(before, "eegfm_requests_total", **labels) == 1
    assert _value(after, "eegfm_requests_total", route="other", method="POST", status="400") == _value(
        before, "eegfm_requests_total", route="other", method="POST", status="400"
    )


def _raw_request(server, method: bytes, path: bytes) -> bytes:
    """The status line of one request sent as given (any method token, any path), on its own connection."""
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(method + b" " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = b""
        while b"\r\n" not in reply and (chunk := sock.recv(4096)):
            reply += chunk
    return reply.split(b"\r\n", 1)[0]


def test_made_up_methods_and_paths_add_no_series_and_no_long_log_line(server, caplog):
    """5,000 requests with 8 KB methods grew /metrics from 63 KB to 80.8 MB and the log by 32 MB:
    each method was a series, and the log line carried it whole. Now 1,000 distinct methods and
    paths add at most a few series (the 'other' method and route) and short log lines."""
    for path in ("/", "/nothing"):  # the routes' own series exist before
        server.request("GET", path)
    before = _samples(server)
    with caplog.at_level(logging.INFO, logger="eegfm.serving.api.metrics"):
        for k in range(1000):
            method = f"M{k:04d}".encode() + b"X" * 8000 if k % 2 else f"M{k:04d}".encode()
            path = b"/" if k % 3 else f"/patients/Jane_Roe_{k}".encode() + b"p" * 4000
            assert _raw_request(server, method, path).split()[1] in (b"404", b"405"), k
    after = _samples(server)
    new = {key for key in after if key not in before and key[0] == "eegfm_requests_total"}
    assert {dict(labels)["method"] for _, labels in new} <= {"other"}
    assert len(new) <= 2, new  # (/, other, 405) and (other, other, 404)
    assert len({key for key in after if key not in before}) <= 4, new  # and their _created samples
    _, text, _ = server.request("GET", "/metrics")
    assert len(text) < 64_000 and "M0001" not in text and "Jane" not in text
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) >= 1000 and max(len(line) for line in lines) < 200
    assert not any("M000" in line or "Jane" in line for line in lines)


def test_a_405_names_only_the_start_of_a_long_method(server):
    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    connection.request("X" * 8000, "/v1/predict")
    response = connection.getresponse()
    reply = json.loads(response.read())
    assert response.status == 405 and reply["error"] == f"method {'X' * 16}...: not allowed here (see /openapi.json)"
    connection.close()
