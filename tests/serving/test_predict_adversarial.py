"""``eegfm-predict`` over a folder of adversarial entries beside real recordings (``tests.adversarial``):
the run ends, the good recordings (one named in Latin-1) are predicted, the other entries are listed
in recordings.json with why, and no raw name shows in its outputs or logs."""

from __future__ import annotations

import csv
import json
import logging

from tests.adversarial import UNLISTABLE, build_adversarial_inputs, raw_names_in, run_module
from tests.serving.serve_helpers import AUTH, multipart


def test_fifos_devices_hidden_and_non_utf8_names_beside_recordings(finetuned, shared_data, tmp_path):
    cases = build_adversarial_inputs(tmp_path / "in", shared_data)
    out = tmp_path / "out"
    argv = ["--model", str(finetuned), "--input", str(tmp_path / "in"), "--output", str(out), "--batch_size", "8"]
    done = run_module("eegfm.serving.predict", argv, timeout=300)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    report = json.loads((out / "recordings.json").read_text())
    expected = {o: [c for c in cases.values() if c.outcome == o] for o in ("processed", "quarantined", "ignored")}
    processed = [r for r in report["recordings"] if r["status"] == "processed"]
    # the good EDFs and the HMS parquet with a column named after the patient beside its 20
    assert len(processed) == len(expected["processed"]) == 3 and all(r["windows"] > 0 for r in processed)
    assert report["counts"]["quarantined"] == len(expected["quarantined"])
    quarantined = [r["reason"] for r in report["recordings"] if r["status"] == "quarantined"]
    for case in expected["quarantined"]:  # a link to nothing, a parquet missing Fp1, a folder it may not list
        assert any(case.reason in reason for reason in quarantined), (case.name, quarantined)
    assert not any(UNLISTABLE in reason for reason in quarantined)
    assert report["counts"]["ignored"] == len(report["ignored"]) == len(expected["ignored"])
    reasons = [entry["reason"] for entry in report["ignored"]]
    for case in expected["ignored"]:
        assert any(case.reason in reason for reason in reasons), (case.name, reasons)
    # every input named by its keyed token, the recording an AppleDouble file describes too
    assert all(r["input"].startswith("file-") for r in [*report["recordings"], *report["ignored"]])
    apple = next(r for r in reasons if "AppleDouble" in r)
    assert "good" not in apple and "file-" in apple
    with (out / "predictions.csv").open() as fileobj:
        rows = list(csv.DictReader(fileobj))
    assert {row["input"] for row in rows} == {r["input"] for r in processed}
    assert raw_names_in(out, done.stdout, done.stderr) == []


def test_the_server_names_a_parquet_column_of_the_patient_by_its_token(server, shared_data, tmp_path, caplog):
    """eegfm-serve reads an upload through the same predictor: a column named after the patient is a token in the
    reply's reason and in the server's log, with and beside the 19 EEG columns."""
    cases = build_adversarial_inputs(tmp_path / "in", shared_data, sockets=False, unlistable=False)
    files = [(name, (tmp_path / "in" / name).read_bytes()) for name in ("hms_named.parquet", "hms_extra.parquet")]
    body, headers = multipart("files", files)
    with caplog.at_level(logging.INFO, logger="eegfm"):
        status, reply, _ = server.request("POST", "/v1/predict_batch", body, {**AUTH, **headers})
    assert status == 200, reply
    named, extra = (result["recordings"][0] for result in reply["results"])
    assert named["status"] == "quarantined" and cases["hms_named.parquet"].reason in named["reason"]
    assert extra["status"] == "processed" and extra["windows"] > 0
    (tmp_path / "no files").mkdir()  # only the reply and the log are searched
    assert raw_names_in(tmp_path / "no files", json.dumps(reply), caplog.text) == []
