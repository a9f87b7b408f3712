"""eegfm-serve's page over real HTTP: ``/`` and every asset it references are served, local, with
their content types and no key; ``/v1/explain`` explains a window of a real eegmat recording."""

from __future__ import annotations

import re

import numpy as np

from tests.serving.serve_helpers import AUTH, multipart

TYPES = {".js": "text/javascript", ".css": "text/css"}
RECORDING = "eegmat/Subject10_2.edf"  # 62 s of serial subtraction: 6 windows of 10 s


def test_the_page_and_its_assets_are_local_and_need_no_key(server):
    status, html, headers = server.request("GET", "/")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    local = [a for a in assets if not a.startswith("data:")]
    # the review screen: traces.js draws /v1/traces, eeg.js holds its controls, overview.js the
    # whole recording and its events, marks.js the reviewer's marks
    assert sorted(local) == [
        "/static/eeg.js",
        "/static/heatmaps.js",
        "/static/marks.js",
        "/static/overview.js",
        "/static/page.css",
        "/static/page.js",
        "/static/traces.js",
    ]
    for text in [html] + [server.request("GET", asset)[1] for asset in local]:
        # no CDN, no font service: nothing names another host
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), text[:200]
    for asset in local:
        status, body, headers = server.request("GET", asset)
        assert status == 200 and headers["content-type"].startswith(TYPES[asset[asset.rindex(".") :]])
        assert len(body) > 500
    assert server.request("GET", "/static/missing.js")[0] == 404
    # the recording's answer comes first, above its EEG and its class timeline
    assert html.index('id="answer"') < html.index('id="eeg"') < html.index('id="timeline"')


def test_a_window_is_explained_per_class_with_a_verdict(server, shared_data):
    recording = (shared_data / RECORDING).read_bytes()
    body, kind = multipart("file", [("visit.edf", recording)])
    status, predicted, _ = server.request("POST", "/v1/predict", body, {**AUTH, **kind})
    assert status == 200
    [scored] = predicted["recordings"]
    k = 2
    status, reply, _ = server.request("POST", f"/v1/explain?window={k}&steps=2", body, {**AUTH, **kind})
    assert status == 200, reply
    assert reply["window"] == k and reply["windows"] == scored["windows"] == 6
    assert reply["start_s"] == scored["window_predictions"][k]["start_s"]
    assert reply["labels"] == ["rest", "task"] and len(reply["channels"]) == 19
    np.testing.assert_allclose(
        [reply["probabilities"][label] for label in reply["labels"]],
        [scored["window_predictions"][k]["class_probabilities"][label] for label in reply["labels"]],
        atol=1e-4,
    )
    for label in reply["labels"]:
        values = np.asarray(reply["maps"][label])
        assert values.shape == (19, 40) and np.isfinite(values).all() and np.ptp(values) > 0  # 10 s in 0.25 s bins
    # the served model's head is binary: one logit, the task's; rest's map is its negative
    np.testing.assert_allclose(reply["maps"]["rest"], -np.asarray(reply["maps"]["task"]))
    assert reply["predicted"] == scored["window_predictions"][k]["predicted_class"]
    assert isinstance(reply["explanation_reliable"], bool)
    assert reply["explanation_reliable"] == (reply["reasons"] == [])
    assert set(reply["checks"]) == {"class_specificity", "model_randomisation"}
    # a raw body named by ?filename= is explained the same
    raw = {**AUTH, "Content-Type": "application/octet-stream"}
    status, again, _ = server.request("POST", f"/v1/explain?window={k}&steps=2&filename=a.edf", recording, raw)
    assert status == 200 and again["maps"] == reply["maps"]


def test_a_bad_window_or_request_is_refused_with_a_message(server, shared_data):
    body, kind = multipart("file", [("visit.edf", (shared_data / RECORDING).read_bytes())])
    status, reply, _ = server.request("POST", "/v1/explain?window=6", body, {**AUTH, **kind})
    assert status == 422 and "window" in reply["error"] and "from 0 to 5" in reply["error"]
    status, reply, _ = server.request("POST", "/v1/explain?window=-1", body, {**AUTH, **kind})
    assert status == 422 and reply["error"].startswith("query window")
    status, reply, _ = server.request("POST", "/v1/explain", body, {**AUTH, **kind})
    assert status == 422 and "window" in reply["error"]
    status, reply, _ = server.request("POST", "/v1/explain?window=0", body, kind)
    assert status == 401
    notes, notes_kind = multipart("file", [("notes.txt", b"not a recording")])
    status, reply, _ = server.request("POST", "/v1/explain?window=0", notes, {**AUTH, **notes_kind})
    assert status == 400 and reply["error"].startswith("filename: expected a name ending in")


def _policy(headers: dict) -> dict[str, str]:
    directives = (part.strip().split(" ", 1) for part in headers["content-security-policy"].split(";"))
    return {name: value for name, value in directives}


def test_the_page_may_not_be_framed_and_runs_only_its_own_files(server):
    """Any site could frame the page with its key field (no CSP, X-Frame-Options or nosniff)."""
    status, html, headers = server.request("GET", "/")
    assert status == 200
    policy = _policy(headers)
    assert policy["default-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    assert policy["script-src"] == policy["style-src"] == policy["connect-src"] == "'self'"
    assert "unsafe" not in headers["content-security-policy"]  # no inline script or style, no eval
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    # nothing in the page that the policy would refuse: no inline script, style attribute or handler
    assert not re.search(r"<script(?![^>]*\bsrc=)", html) and not re.search(r"<style|\sstyle=|\son[a-z]+=", html)
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
        _, text, asset_headers = server.request("GET", asset)
        assert asset_headers["x-content-type-options"] == "nosniff"
        assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|setAttribute\(\"style|eval\(|new Function", text)


def test_every_other_reply_may_not_be_framed_either(server):
    for path in ("/health", "/v1/model", "/docs", "/nothing"):
        status, _, headers = server.request("GET", path)
        assert _policy(headers) == {"frame-ancestors": "'none'"}, path  # /docs's Swagger UI script is inline
        assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff", path
        assert headers["referrer-policy"] == "no-referrer"
