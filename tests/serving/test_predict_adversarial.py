"""``eegfm-predict`` over a folder of adversarial entries beside real recordings (``tests.adversarial``):
the run ends, the good recordings (one named in Latin-1) are predicted, the other entries are listed
in recordings.json with why, and no raw name shows in its outputs or logs."""

from __future__ import annotations

import csv
import json

from tests.adversarial import build_adversarial_inputs, raw_names_in, run_module


def test_fifos_devices_hidden_and_non_utf8_names_beside_recordings(finetuned, shared_data, tmp_path):
    cases = build_adversarial_inputs(tmp_path / "in", shared_data)
    out = tmp_path / "out"
    argv = ["--model", str(finetuned), "--input", str(tmp_path / "in"), "--output", str(out), "--batch_size", "8"]
    done = run_module("eegfm.serving.predict", argv, timeout=300)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    report = json.loads((out / "recordings.json").read_text())
    expected = {o: [c for c in cases.values() if c.outcome == o] for o in ("processed", "quarantined", "ignored")}
    processed = [r for r in report["recordings"] if r["status"] == "processed"]
    assert len(processed) == len(expected["processed"]) == 2 and all(r["windows"] > 0 for r in processed)
    assert report["counts"]["quarantined"] == len(expected["quarantined"])
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
