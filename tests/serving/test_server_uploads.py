"""eegfm-serve's uploads: JSON signal arrays, batches, malformed bodies and decompression bombs,
against a real server on a free port."""

from __future__ import annotations

import gzip
import http.client
import json
import threading
import time
import zlib

import numpy as np
import pytest

from tests.serving.serve_helpers import AUTH, multipart, serving

RAW = {**AUTH, "Content-Type": "application/octet-stream"}
JSON = {**AUTH, "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def server(finetuned):
    with serving(["--model", str(finetuned), "--max_upload_mb", "8", "--no-auth", "--upload_timeout", "5"]) as running:
        yield running


@pytest.fixture(scope="module")
def eeg_half_minute(shared_data):
    """eegmat Subject00_1's 19 10-20 channels, first 30 s, to 0.01 µV: (microvolts, sfreq, labels), and
    the same as an MNE Raw."""
    import mne

    raw = mne.io.read_raw_edf(shared_data / "eegmat" / "Subject00_1.edf", preload=True, verbose="error")
    raw.pick([name for name in raw.ch_names if name.startswith("EEG ") and name != "EEG A2-A1"]).crop(0, 30)
    signals = np.round(raw.get_data() * 1e6, 2)
    return signals, raw.info["sfreq"], list(raw.ch_names), mne.io.RawArray(signals * 1e-6, raw.info, verbose="error")


def test_a_recording_of_one_window_gets_its_answer_without_an_interval(server, eeg_half_minute):
    signals, sfreq, names, _ = eeg_half_minute
    status, reply, _ = _post_json(
        server, {"signals": signals[:, : int(12 * sfreq)].tolist(), "sfreq": sfreq, "channel_names": names}
    )
    assert status == 200
    [scored] = reply["recordings"]
    answer = scored["recording"]
    assert scored["windows"] == answer["n_windows"] == 1 and answer["low"] is None and answer["high"] is None
    assert answer["probabilities"] == pytest.approx(scored["window_predictions"][0]["class_probabilities"])


def _post_json(server, document, **dumps):
    return server.request("POST", "/v1/predict", json.dumps(document, **dumps).encode(), JSON)


def test_a_json_signal_array_is_scored_as_the_same_recording_in_a_file(server, eeg_half_minute, tmp_path):
    signals, sfreq, names, raw = eeg_half_minute
    status, reply, _ = _post_json(server, {"signals": signals.tolist(), "sfreq": sfreq, "channel_names": names})
    assert status == 200
    [answer] = reply["recordings"]
    assert answer["status"] == "processed" and answer["windows"] == 3 and answer["input"].startswith("file-")
    raw.save(tmp_path / "same_raw.fif", verbose="error")  # volts, as MNE keeps them: the JSON was microvolts
    same_file = (tmp_path / "same_raw.fif").read_bytes()
    status, same, _ = server.request("POST", "/v1/predict?filename=same.fif", same_file, RAW)
    assert status == 200
    np.testing.assert_allclose(
        [w["outputs"] for w in answer["window_predictions"]],
        [w["outputs"] for w in same["recordings"][0]["window_predictions"]],
        atol=1e-6,
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["signals"][3].__setitem__(7, float("nan")), "signals[3][7]: expected a finite number"),
        (lambda d: d["signals"][0].__setitem__(0, float("inf")), "signals[0][0]: expected a finite number"),
        (lambda d: d["channel_names"].__setitem__(2, "Jane Roe"), "channel_names[2]: expected a 10-20/10-10 electrode"),
        (lambda d: d["channel_names"].__setitem__(1, d["channel_names"][0]), "channel_names[1]: expected unique"),
        (lambda d: d["signals"].pop(), "signals: expected 19 rows, one per entry of channel_names; got 18"),
        (lambda d: d["signals"][5].pop(), "signals: expected rows of one non-zero length"),
        (lambda d: d.update(signals=[[1.0, 2.0]] * 19), None),  # too short for a window: quarantined
        (lambda d: d.update(signals=d["signals"][0]), "signals: expected an array of rows"),
        (lambda d: d["signals"][0].__setitem__(3, "1.5"), "signals[0]: expected numbers"),
        (lambda d: d.update(sfreq=-5), "sfreq: expected a rate in (0, 20000] Hz"),
        (lambda d: d.update(sfreq="fast"), "sfreq: expected the sampling rate in Hz"),
        (lambda d: d.pop("channel_names"), "channel_names: expected a non-empty array"),
        (lambda d: d.update(patient="Jane Roe"), "body: expected only the fields signals, sfreq and channel_names"),
        (lambda d: d.update(channel_names=["ECG"] + d["channel_names"][1:]), None),  # 18 electrodes and an ECG: fine
    ],
)
def test_a_malformed_json_recording_gets_4xx_naming_the_field(server, eeg_half_minute, change, field):
    signals, sfreq, names, _ = eeg_half_minute
    document = {"signals": signals[:, :6000].tolist(), "sfreq": sfreq, "channel_names": list(names)}
    change(document)
    status, reply, _ = _post_json(server, document)
    if field is None:
        assert status in (200, 422) and "recordings" in reply, reply
        return
    assert status == 422 and reply["error"].startswith(field), reply
    assert "Jane" not in reply["error"]


def test_json_nested_a_hundred_thousand_deep_is_a_422_not_a_500(server):
    status, reply, _ = server.request("POST", "/v1/predict", b"[" * 100_000 + b"]" * 100_000, JSON)
    assert status == 422 and reply["error"].startswith("body: expected a JSON object"), reply
    deep = b'{"signals": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    status, reply, _ = server.request("POST", "/v1/predict", deep, JSON)
    assert status == 422 and reply["error"].startswith("signals[0]: expected numbers"), reply
    assert server.request("GET", "/health")[0] == 200


def test_json_that_is_no_object_or_too_big_is_refused(server):
    status, reply, _ = server.request("POST", "/v1/predict", b"[1, 2", JSON)
    assert status == 422 and reply["error"].startswith("body: expected a JSON object")
    status, reply, _ = server.request("POST", "/v1/predict", b"[1, 2]", JSON)
    assert status == 422 and "got list" in reply["error"]
    status, reply, _ = server.request("POST", "/v1/predict", b" " * (9 << 20), JSON)
    assert status == 413 and "JSON body limit" in reply["error"]


def test_a_body_past_the_limit_is_refused_before_or_while_it_is_read(server):
    connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
    connection.putrequest("POST", "/v1/predict?filename=big.edf")
    connection.putheader("Content-Length", str(9 << 20))
    connection.putheader("Content-Type", "application/octet-stream")
    connection.endheaders()  # refused on its Content-Length: the body is never sent
    response = connection.getresponse()
    assert response.status == 413 and "--max_upload_mb" in json.loads(response.read())["error"]
    assert response.getheader("Connection") == "close"
    connection.close()
    # a chunked multipart body declares no length: refused once it passes the limit (just past it
    # here: a body the server leaves unread would reset the connection before the client reads)
    boundary = "b0undary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.edf"\r\n\r\n'.encode()
    chunks = iter([head] + [b"\0" * (1 << 20)] * 8 + [b"\0" * 1000])
    connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
    connection.request(
        "POST",
        "/v1/predict",
        body=chunks,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}", "Transfer-Encoding": "chunked"},
        encode_chunked=True,
    )
    response = connection.getresponse()
    assert response.status == 413 and "upload of over" in json.loads(response.read())["error"]
    connection.close()


def test_a_batch_answers_each_file_on_its_own(server, raw_sites):
    good = (raw_sites / "hospital1" / "Subject02_1.edf").read_bytes()
    files = [("a.edf", good), ("notes.txt", b"hello"), ("cut.edf", good[:2000]), ("b.edf.gz", gzip.compress(good))]
    body, headers = multipart("files", files)
    status, reply, _ = server.request("POST", "/v1/predict_batch?echo_name=true", body, headers)
    assert status == 200
    results = reply["results"]
    assert [r["index"] for r in results] == [1, 2, 3, 4] and [r["filename"] for r in results] == [n for n, _ in files]
    assert [r["status"] for r in results] == [200, 400, 422, 200]
    assert results[1]["error"].startswith("filename: expected a name ending in one of")
    assert results[2]["recordings"][0]["stage"] == "read"
    assert results[0]["recordings"][0]["window_predictions"] == results[3]["recordings"][0]["window_predictions"]
    assert results[3]["recordings"][0]["input"] == "b.edf.gz"
    status, reply, _ = server.request("POST", "/v1/predict_batch", b"x", {"Content-Type": "application/octet-stream"})
    assert status == 415 and "multipart/form-data" in reply["error"]


def _gzip_bomb(compressed_mb: float) -> bytes:
    """A gzip file of about ``compressed_mb`` MB that expands ~1000x: concatenated members of zeros
    (gzip readers read every member), after an EDF-looking start."""
    member = gzip.compress(b"0       " + b"\0" * ((64 << 20) - 8), compresslevel=9)
    return member * max(1, int(compressed_mb * 2**20 / len(member)))


def _parquet_bomb(path, rows: int) -> None:
    """An HMS-layout parquet of ``rows`` constant rows: kilobytes stored, ``rows`` x 20 floats decoded."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from eegfm.contract.channels import CANONICAL_CHANNELS

    names = [*CANONICAL_CHANNELS, "EKG"]
    block = pa.array(np.zeros(1 << 20, dtype=np.float32))
    table = pa.table(dict.fromkeys(names, block))
    with pq.ParquetWriter(path, table.schema, compression="zstd") as writer:
        for _ in range(rows >> 20):
            writer.write_table(table)


def test_reading_and_decompression_never_wait_for_the_model(server, raw_sites):
    service = server.server.config.app.state.service
    cut = (raw_sites / "hospital0" / "Subject00_2.edf").read_bytes()[:2000]
    with service.model_lock:  # the model busy for as long as this block lasts
        status, reply, _ = server.request("POST", "/v1/predict?filename=r.edf.gz", _gzip_bomb(6), RAW, timeout=30)
        assert status == 413  # decompressed up to its cap and refused, the model never asked
        status, reply, _ = server.request("POST", "/v1/predict?filename=cut.edf", cut, RAW, timeout=30)
        assert status == 422 and reply["recordings"][0]["stage"] == "read"  # read and quarantined


def test_bombs_are_refused_within_caps_while_a_valid_request_is_answered(server, raw_sites, tmp_path):
    valid = (raw_sites / "hospital1" / "Subject03_2.edf").read_bytes()
    started = time.perf_counter()
    assert server.request("POST", "/v1/predict?filename=v.edf", valid, RAW)[0] == 200
    alone = time.perf_counter() - started
    bomb = _gzip_bomb(6)
    assert 5 << 20 < len(bomb) < 7 << 20 and len(zlib.decompressobj(31).decompress(bomb[:200_000])) > 50 << 20
    _parquet_bomb(tmp_path / "bomb.parquet", 12 << 20)
    parquet = (tmp_path / "bomb.parquet").read_bytes()
    assert len(parquet) < 2 << 20
    answers = {}

    def send(name, path, body):
        answers[name] = server.request("POST", path, body, RAW)

    bombs = [
        threading.Thread(target=send, args=("gz", "/v1/predict?filename=r.edf.gz", bomb)),
        threading.Thread(target=send, args=("parquet", "/v1/predict?filename=1234.parquet", parquet)),
    ]
    for thread in bombs:
        thread.start()
    started = time.perf_counter()
    status, reply, _ = server.request("POST", "/v1/predict?filename=v.edf", valid, RAW)
    during = time.perf_counter() - started
    for thread in bombs:
        thread.join(timeout=120)
    assert status == 200 and reply["recordings"][0]["status"] == "processed"
    assert during < 3 * alone + 2.0, (alone, during)
    status, reply, _ = answers["gz"]
    assert status == 413 and reply["error"].startswith("a gzip file expands past this upload's budget of 67108864")
    status, reply, _ = answers["parquet"]
    assert status == 413 and "declares 12582912 rows of 20 columns" in reply["error"]
    assert "ratio cap" in reply["error"] or "--max_upload_mb" in reply["error"]


def test_a_fault_of_the_server_is_a_json_500_and_the_server_goes_on(server, raw_sites, monkeypatch, caplog):
    service = server.server.config.app.state.service
    good = (raw_sites / "hospital1" / "Subject02_1.edf").read_bytes()
    real_predict = service.predictor.predict_items

    def failing_on_the_second(inputs, **kwargs):
        if failing_on_the_second.calls == 1:
            raise RuntimeError("a fault that may quote /uploads/Jane_Roe.edf")
        failing_on_the_second.calls += 1
        return real_predict(inputs, **kwargs)

    failing_on_the_second.calls = 1
    monkeypatch.setattr(service.predictor, "predict_items", failing_on_the_second)
    status, reply, headers = server.request("POST", "/v1/predict?filename=a.edf", good, RAW)
    assert (status, reply) == (500, {"error": "prediction failed: RuntimeError", "status": 500})
    assert headers["connection"] == "close" and "prediction failed: RuntimeError at " in caplog.text
    assert "Jane_Roe" not in caplog.text  # the fault's type and code are logged, never its message
    failing_on_the_second.calls = 0  # the batch's first file is scored, its second fails
    body, headers = multipart("files", [("first.edf", good), ("second.edf", good)])
    status, reply, _ = server.request("POST", "/v1/predict_batch", body, headers)
    assert status == 200 and [r["status"] for r in reply["results"]] == [200, 500]
    assert reply["results"][1]["error"] == "prediction failed: RuntimeError"
