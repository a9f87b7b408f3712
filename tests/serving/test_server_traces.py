"""``POST /v1/traces`` over real HTTP on real eegmat recordings: the double-banana derivations are
the differences of the electrodes the model saw (the pipeline's windows, computed here without the
server), the span is capped and clipped at the recording's end, interpolated electrodes are named
with their reasons and nothing of the file is; and the windows are streamed, never all kept."""

from __future__ import annotations

import base64
import json
import secrets

import numpy as np
import pytest

from tests.serving.serve_helpers import AUTH, multipart

RECORDING = "eegmat/Subject10_2.edf"  # 62 s of serial subtraction: 6 windows of 10 s
SFREQ = 256
# The clinical double banana, written out here rather than read from the code under test.
BANANA = (
    "Fp1-F7 F7-T3 T3-T5 T5-O1 Fp2-F8 F8-T4 T4-T6 T6-O2 Fp1-F3 F3-C3 C3-P3 P3-O1 Fp2-F4 F4-C4 C4-P4 P4-O2 Fz-Cz Cz-Pz"
).split()


@pytest.fixture(scope="module")
def upload(shared_data):
    return multipart("file", [("visit.edf", (shared_data / RECORDING).read_bytes())])


def decoded(reply: dict) -> np.ndarray:
    """(18, n) µV, NaN where the reply says no window holds the sample."""
    encoding = reply["encoding"]
    rows = [np.frombuffer(base64.b64decode(d["samples"]), dtype="<i2") for d in reply["derivations"]]
    steps = np.stack(rows).astype(np.float64)
    return np.where(steps == encoding["missing"], np.nan, steps * encoding["scale_uv"])


def model_windows(finetuned, path) -> tuple[np.ndarray, list[float]]:
    """The 19 channels the model saw over the whole recording (its windows end to end, float32 of
    the stored float16), and the windows' starts: the pipeline run directly, as the predictor runs it."""
    from eegfm.inference.predictor import Predictor
    from eegfm.pipelines.job.process import process_recording
    from eegfm.pipelines.job.process_io import Window

    predictor = Predictor(finetuned)
    [item] = predictor.discover([str(path)])
    config = predictor.preprocess
    events = process_recording(item, secrets.token_bytes(32), config, config.config_hash())
    records = sorted((e.record for e in events if isinstance(e, Window)), key=lambda r: r.window_start_s)
    starts = [float(r.window_start_s) for r in records]
    assert np.diff(starts).tolist() == [10.0] * (len(records) - 1)  # end to end: concatenation is the signal
    return np.concatenate([r.eeg.astype(np.float32) for r in records], axis=1), starts


def channel(name: str) -> int:
    from eegfm.contract.schema import CHANNELS

    return CHANNELS.index(name)


def test_derivations_are_the_model_windows_electrode_differences(server, upload, finetuned, shared_data):
    body, kind = upload
    status, reply, _ = server.request("POST", "/v1/traces?start_s=5&seconds=30", body, {**AUTH, **kind})
    assert status == 200, reply
    assert [d["name"] for d in reply["derivations"]] == BANANA
    assert reply["start_s"] == 5.0 and reply["seconds"] == 30.0 and reply["sfreq"] == SFREQ
    assert reply["duration_s"] == 62.0
    assert reply["windows"] == [{"start_s": s, "end_s": s + 10.0} for s in (0.0, 10.0, 20.0, 30.0)]
    assert reply["rejected"] == [] and all(d["interpolated"] == [] for d in reply["derivations"])
    values = decoded(reply)
    assert values.shape == (18, 30 * SFREQ) and np.isfinite(values).all()
    eeg, _ = model_windows(finetuned, shared_data / RECORDING)
    for row, name in zip(values, BANANA, strict=True):
        first, second = name.split("-")
        expected = eeg[channel(first), 5 * SFREQ : 35 * SFREQ] - eeg[channel(second), 5 * SFREQ : 35 * SFREQ]
        # rounded to the encoding's 0.1 µV step (plus float32 noise)
        np.testing.assert_allclose(row, expected, atol=reply["encoding"]["scale_uv"] / 2 + 1e-3, err_msg=name)
    assert 1 < np.nanstd(values) < 100  # µV of resting-like EEG, not volts or counts
    # a raw body named by ?filename= gets the same traces
    raw = {**AUTH, "Content-Type": "application/octet-stream"}
    recording = (shared_data / RECORDING).read_bytes()
    status, again, _ = server.request("POST", "/v1/traces?start_s=5&seconds=30&filename=a.edf", recording, raw)
    assert status == 200 and again == reply


def test_the_span_is_clipped_at_the_end_and_capped(server, upload):
    body, kind = upload
    status, reply, _ = server.request("POST", "/v1/traces?start_s=50&seconds=60", body, {**AUTH, **kind})
    assert status == 200, reply
    assert reply["start_s"] == 50.0 and reply["seconds"] == 12.0  # the recording ends at 62 s
    values = decoded(reply)
    assert np.isfinite(values[:, : 10 * SFREQ]).all()
    assert np.isnan(values[:, 10 * SFREQ :]).all()  # 60-62 s: in no window (shorter than one)
    # the default span is one 10 s page
    status, reply, _ = server.request("POST", "/v1/traces", body, {**AUTH, **kind})
    assert status == 200 and reply["start_s"] == 0.0 and reply["seconds"] == 10.0
    assert len(base64.b64decode(reply["derivations"][0]["samples"])) == 2 * 10 * SFREQ
    status, reply, _ = server.request("POST", "/v1/traces?seconds=60.5", body, {**AUTH, **kind})
    assert status == 422 and reply["error"].startswith("query seconds") and "60" in reply["error"]


def test_bad_parameters_and_requests_are_refused_with_a_message(server, upload):
    body, kind = upload
    headers = {**AUTH, **kind}
    status, reply, _ = server.request("POST", "/v1/traces?start_s=62", body, headers)
    assert status == 422 and "start_s" in reply["error"] and "62 s (the recording's duration)" in reply["error"]
    for query, parameter in [("start_s=-1", "start_s"), ("seconds=0", "seconds"), ("start_s=abc", "start_s")]:
        status, reply, _ = server.request("POST", f"/v1/traces?{query}", body, headers)
        assert status == 422 and reply["error"].startswith(f"query {parameter}"), reply
    status, reply, _ = server.request("POST", "/v1/traces?start_s=nan", body, headers)
    assert status == 422 and "start_s" in reply["error"]
    assert server.request("POST", "/v1/traces", body, kind)[0] == 401
    notes, notes_kind = multipart("file", [("notes.txt", b"not a recording")])
    status, reply, _ = server.request("POST", "/v1/traces", notes, {**AUTH, **notes_kind})
    assert status == 400 and reply["error"].startswith("filename: expected a name ending in")
    status, reply, _ = server.request("POST", "/v1/traces", b"x", {**AUTH, "Content-Type": "text/plain"})
    assert status == 415


def test_interpolated_electrodes_are_named_with_why_and_nothing_of_the_file(server, shared_data, tmp_path):
    import mne

    raw = mne.io.read_raw_edf(shared_data / RECORDING, preload=True, verbose="error")
    raw.drop_channels(["EEG F7", "EEG Fz"])
    path = tmp_path / "Subject10_2_visit_raw.fif"
    raw.save(path, verbose="error")
    body, kind = multipart("file", [(path.name, path.read_bytes())])
    status, reply, _ = server.request("POST", "/v1/traces?start_s=10&seconds=20", body, {**AUTH, **kind})
    assert status == 200, reply
    marked = {d["name"]: d["interpolated"] for d in reply["derivations"] if d["interpolated"]}
    assert set(marked) == {"Fp1-F7", "F7-T3", "Fz-Cz"}
    for name, stretches in marked.items():
        [stretch] = stretches  # one stretch over the whole span: every window lacks the electrode
        assert (stretch["start_s"], stretch["end_s"]) == (10.0, 30.0)
        assert stretch["electrodes"] == [e for e in name.split("-") if e in ("F7", "Fz")]
        assert "not in the recording" in stretch["reason"]
    assert np.isfinite(decoded(reply)).all()  # interpolated derivations are drawn, marked as such
    text = json.dumps(reply)
    for leak in ("Subject", "visit", "EEG ", "A2-A1", "ECG ECG"):  # file name, labels as recorded
        assert leak not in text


def test_windows_are_streamed_not_all_kept(monkeypatch):
    """A span keeps only what overlaps it, from windows that come out of order (the k-th window in
    time order keeps one window: tests/serving/test_server_explain_memory.py)."""
    from types import SimpleNamespace

    from eegfm.pipelines.job.process_io import Outcome, Window
    from eegfm.serving.api import traces

    starts = [30.0, 0.0, 50.0, 10.0, 40.0, 20.0]

    def events(_predictor, _item):
        for start in starts:
            eeg = np.full((19, 2560), start, dtype=np.float16)
            record = SimpleNamespace(window_start_s=start, eeg=eeg, n_times=2560, channel_mask=np.ones(19))
            yield Window(record=record, source="x")
        yield Outcome(source="x", status="processed", windows=len(starts), eeg_seconds=60.0)

    monkeypatch.setattr(traces, "pipeline_events", events)
    predictor = SimpleNamespace(preprocess=SimpleNamespace(window_seconds=10.0))
    reply = traces.traces_of(predictor, None, 15.0, 10.0)
    assert [w["start_s"] for w in reply["windows"]] == [10.0, 20.0]
    assert decoded(reply)[0].tolist() == [0.0] * (10 * SFREQ)  # Fp1 - F7 of constant windows


@pytest.mark.parametrize(
    "query",
    [
        "traces?start_s=1.7e308",  # 500 OverflowError before (1e100 got 422)
        "traces?start_s=1e100",
        "traces?start_s=2678401",  # past a month
        "traces?start_s=1e309",  # parsed as inf
        "traces?start_s=inf",
        "traces?start_s=-inf",
        "traces?start_s=nan",
        "traces?seconds=inf",
        "traces?seconds=nan",
        "traces?seconds=1e308",
        "explain?window=10000001",
        "explain?window=99999999999999999999999",
        "explain?window=1e3",
        "explain?window=0&resolution_s=inf",
        "explain?window=0&resolution_s=nan",
        "explain?window=0&steps=1000000000",
    ],
)
def test_every_numeric_parameter_is_finite_and_in_range(server, query):
    parameter = query.rsplit("&", 1)[-1].split("?")[-1].split("=")[0]
    # refused on the query before the body is read: a small body, which the refusal cannot cut off
    raw = {**AUTH, "Content-Type": "application/octet-stream"}
    status, reply, _ = server.request("POST", f"/v1/{query}&filename=a.edf", b"0" * 256, raw)
    assert status == 422 and reply["error"].startswith(f"query {parameter}: "), reply
    assert "got " in reply["error"]  # what was received, a few characters of it


def test_a_start_within_the_range_but_past_the_end_names_the_duration(server, upload):
    body, kind = upload
    status, reply, _ = server.request("POST", "/v1/traces?start_s=2678400", body, {**AUTH, **kind})
    assert status == 422 and "(the recording's duration)" in reply["error"], reply
