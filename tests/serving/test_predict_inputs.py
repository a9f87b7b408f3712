"""``eegfm-predict --input`` mistakes are said with the path as the user typed it, once, and tell a
missing path from a folder without recordings (serving.predict_inputs)."""

from __future__ import annotations

import re

import pytest

from eegfm.serving import predict
from eegfm.serving.predict_inputs import LOOKED_FOR


def _usage_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        predict.main(argv)
    assert stop.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "typed, said",
    [
        ("Doe_John/eeg", "no such file or folder"),
        ("Doe_John/*.edf", "matches no file or folder"),
        ("empty", f"holds no recording file (looked for {LOOKED_FOR}): it is empty"),
        ("notes", f"holds no recording file (looked for {LOOKED_FOR}) (1 other entry, none a recording)"),
        ("notes/readme.txt", f"is no recording file (expected one of {LOOKED_FOR}) (1 other entry, none a recording)"),
    ],
)
def test_an_input_that_names_no_recording_is_quoted_as_typed_once(hms6_run, tmp_path, monkeypatch, capsys, typed, said):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not a recording\n")
    err = _usage_error(["--model", str(hms6_run), "--input", typed, "--output", "out"], capsys)
    assert f"error: --input {typed}: {said}\n" in err
    assert err.count(f"--input {typed}") == 1 and not re.search(r"(dir|file)-[0-9a-f]{12}", err)
    assert ".edf, .bdf" in LOOKED_FOR and ".gz" not in LOOKED_FOR


def test_a_missing_input_among_good_ones_is_named_alone(hms6_run, shared_data, tmp_path, capsys):
    good = str(shared_data / "eegmat" / "Subject00_2.edf")
    missing = str(tmp_path / "Smith Jane.edf")
    err = _usage_error(["--model", str(hms6_run), "--input", good, missing, "--output", str(tmp_path / "o")], capsys)
    assert f"--input {missing}: no such file or folder" in err and good not in err
