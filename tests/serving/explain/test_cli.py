"""``eegfm-predict --explain`` end to end on the real HMS recording: files named by token, the
verdict in recordings.json, and the options' help."""

from __future__ import annotations

import json

import pytest

from eegfm.contract.schema import CHANNELS
from eegfm.serving import predict
from eegfm.serving.explain.cli import file_stem


def test_explain_writes_a_figure_and_json_per_confident_window_named_by_token(hms6_run, shared_data, tmp_path):
    ward = tmp_path / "ward"
    ward.mkdir()
    (ward / "1000913311.parquet").symlink_to(shared_data / "hms" / "train_eegs" / "1000913311.parquet")
    out = tmp_path / "out"
    argv = ["--model", str(hms6_run), "--input", str(ward), "--output", str(out), "--no_artifact_model"]
    assert predict.main([*argv, "--explain", "--explain_max_windows", "2", "--explain_steps", "2"]) == 0
    report = json.loads((out / "recordings.json").read_text())
    (recording,) = report["recordings"]
    assert recording["input"].startswith("file-") and recording["windows"] == 5  # 50 s in 10 s windows
    entries = recording["explanations"]
    assert len(entries) == 2 and [e["window"] for e in entries] == sorted(e["window"] for e in entries)
    names = sorted(p.name for p in (out / "explanations").iterdir())
    assert all(name.startswith(f"001_{recording['input'].rsplit('.', 1)[0]}_w") for name in names)
    assert not any("1000913311" in name for name in names) and len(names) == 4
    with (out / "predictions.csv").open() as fileobj:
        rows = fileobj.read().splitlines()[1:]
    for entry in entries:
        assert isinstance(entry["explanation_reliable"], bool)
        assert entry["explanation_reliable"] == (entry["why"] == "")
        assert (out / entry["png"]).read_bytes()[:4] == b"\x89PNG"
        window = json.loads((out / entry["json"]).read_text())
        assert window["window"] == entry["window"] and window["input"] == recording["input"]
        assert window["channels"] == list(CHANNELS) and window["start_s"] == entry["start_s"]
        assert window["explanation_reliable"] == entry["explanation_reliable"]
        top = {t["channel"] for c in window["classes"].values() for t in c["top_channels"]}
        assert top <= set(CHANNELS)
        # window k is the recording's k-th row of predictions.csv, whose probabilities it explains
        row = rows[entry["window"]].split(",")
        assert float(row[2]) == pytest.approx(entry["start_s"])
        assert window["predicted"] == row[4 + len(window["classes"])]
        for k, label in enumerate(window["classes"]):
            assert window["classes"][label]["probability"] == pytest.approx(float(row[4 + k]), abs=1e-4)


def test_the_explain_options_have_help_and_refuse_nonsense(capsys):
    with pytest.raises(SystemExit):
        predict.build_parser().parse_args(["--help"])
    printed = capsys.readouterr().out
    for option in ("--explain ", "--explain_max_windows", "--explain_steps"):
        assert option in printed
    with pytest.raises(SystemExit):
        predict.build_parser().parse_args(["--model", "m", "--input", "i", "--output", "o", "--explain_steps", "0"])
    assert "expected a positive integer; got 0" in capsys.readouterr().err


def test_file_names_carry_the_token_only():
    assert file_stem(7, "file-0a1b2c3d4e5f.edf", 3) == "007_file-0a1b2c3d4e5f_w3"
