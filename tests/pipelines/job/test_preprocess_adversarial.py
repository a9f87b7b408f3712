"""``eegfm-preprocess`` end to end over a folder of adversarial entries beside real recordings
(``tests.adversarial``): the run ends, the good recordings are processed, every other entry is in
the manifest with why, and no raw name shows in the manifest, quarantine.jsonl or the logs."""

from __future__ import annotations

import json
import re

from tests.adversarial import UNLISTABLE, build_adversarial_inputs, raw_names_in, run_module


def test_fifos_devices_hidden_and_non_utf8_names_beside_recordings(tmp_path, shared_data, key_file):
    cases = build_adversarial_inputs(tmp_path / "in", shared_data)
    out = tmp_path / "out"
    argv = ["--input", str(tmp_path / "in"), "--output", str(out), "--pseudonym_key_file", key_file]
    done = run_module("eegfm.pipelines.job.preprocess", [*argv, "--no_artifact_model"], timeout=300)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    by_status: dict[str, list[dict]] = {}
    for entry in manifest["inputs"]:
        by_status.setdefault(entry.get("status", "ignored"), []).append(entry)
    expected = {
        outcome: [c for c in cases.values() if c.outcome == outcome]
        for outcome in ("processed", "quarantined", "ignored")
    }
    # the good EDFs and the HMS parquet with a column named after the patient beside its 20
    assert len(by_status.get("processed", [])) == len(expected["processed"]) == 3
    assert all(e["windows"] > 0 for e in by_status["processed"])
    quarantined = by_status.get("quarantined", [])
    assert len(quarantined) == len(expected["quarantined"])
    for case in expected["quarantined"]:  # a link to nothing, a parquet missing Fp1, a folder it may not list
        assert any(case.reason in e["reason"] for e in quarantined), (case.name, quarantined)
    unlisted = next(e for e in quarantined if "may not list this folder" in e["reason"])
    token = unlisted["source"].rsplit("/", 1)[1]  # the folder's name in the reason is its token in the path
    assert re.fullmatch(r"dir-[0-9a-f]{12}", token) and unlisted["reason"].startswith(f"{token}: permission denied")
    assert UNLISTABLE not in unlisted["reason"]
    ignored = by_status.get("ignored", [])
    assert len(ignored) == len(expected["ignored"]), ignored
    reasons = sorted(e["reason"] for e in ignored)
    for case in expected["ignored"]:  # each reason once per case (a socket's and the FIFO's differ from the links')
        assert any(case.reason in reason for reason in reasons), (case.name, reasons)
    # under the default redaction every name below the input folder is a keyed token
    assert all("/in/" not in e.get("source", e.get("path", "")) for e in manifest["inputs"])
    quarantine = (out / "quarantine.jsonl").read_text().splitlines()
    assert len(quarantine) == len(expected["quarantined"]) + len(expected["ignored"])
    assert raw_names_in(out, done.stdout, done.stderr) == []
