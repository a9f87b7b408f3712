"""``eegfm-predict`` as a clinic runs it: a persistent key (the same token for the same file in every
run, mapped back by eegfm-redact), the same windows as eegfm-serve's page, a --help that loads nothing
heavy."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from eegfm.inference.predictor import PredictConfig, Predictor
from eegfm.pipelines.privacy import redact
from eegfm.serving import predict
from eegfm.serving.api.service import PredictionService, ServeLimits

SRC = Path(__file__).resolve().parents[2] / "src"


def _starts(recording: dict) -> list[float]:
    return [w["start_s"] for w in recording["window_predictions"]]


def test_the_cli_windows_an_eegmmi_file_as_the_server_page_does(hms6_run, shared_data, tmp_path):
    """S001R03 is EDF+ with T0/T1/T2 annotations in a folder that looks like PhysioNet's EEGMMI: the CLI
    used to cut 15 event windows (60 of its 125 s) where the page cut fixed windows over all of it."""
    edf = shared_data / "eegmmi" / "S001R03.edf"
    key = tmp_path / "key"
    common = ["--model", str(hms6_run), "--input", str(edf), "--no_artifact_model", "--no_plots"]
    common += ["--pseudonym_key_file", str(key), "--create_key_file"]
    assert predict.main([*common, "--output", str(tmp_path / "cli")]) == 0
    cli = json.loads((tmp_path / "cli" / "recordings.json").read_text())["recordings"][0]

    predictor = Predictor(hms6_run, PredictConfig(artifact_model=False))
    service = PredictionService(predictor, ServeLimits())
    (tmp_path / "upload").mkdir()
    with edf.open("rb") as upload:  # as the page's POST /v1/predict saves and reads it
        status, reply = service.predict_stream(upload, tmp_path / "upload", ".edf", edf.name, False)
    assert status == 200
    page = reply["recordings"][0]
    assert _starts(cli) == _starts(page) == [10.0 * k for k in range(12)]
    assert cli["eeg_seconds"] == page["eeg_seconds"]

    # the event windows stay one option away: T1/T2's 4 s trials, not the whole recording
    assert predict.main([*common, "--output", str(tmp_path / "events"), "--event_windows"]) == 0
    events = json.loads((tmp_path / "events" / "recordings.json").read_text())["recordings"][0]
    assert 0 < len(events["window_predictions"]) < 30 and _starts(events) != _starts(cli)
    assert {w["duration_s"] for w in events["window_predictions"]} == {4.0}


def test_a_file_keeps_its_token_across_runs_and_eegfm_redact_names_it(hms6_run, shared_data, tmp_path, capsys):
    ward = tmp_path / "ward"
    ward.mkdir()
    for name in ("Subject07_1.edf", "Subject07_2.edf"):
        shutil.copy(shared_data / "eegmat" / name, ward / name)
    key = tmp_path / "keys" / "pseudonym.key"
    common = ["--model", str(hms6_run), "--input", str(ward), "--no_artifact_model", "--no_plots"]
    keyed = [*common, "--pseudonym_key_file", str(key)]

    # a mistyped key path is refused rather than made into a new key that matches no earlier run
    with pytest.raises(SystemExit) as stop:
        predict.main([*keyed, "--output", str(tmp_path / "o")])
    assert stop.value.code == 2 and f"--pseudonym_key_file {key}: no such file" in capsys.readouterr().err
    assert predict.main([*keyed, "--create_key_file", "--output", str(tmp_path / "first")]) == 0
    assert f"eegfm-redact --input <the same inputs> --pseudonym_key_file {key} --find" in capsys.readouterr().out
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert predict.main([*keyed, "--output", str(tmp_path / "second")]) == 0
    tokens = [
        sorted(r["input"] for r in json.loads((tmp_path / run / "recordings.json").read_text())["recordings"])
        for run in ("first", "second")
    ]
    assert tokens[0] == tokens[1] and all(t.startswith("file-") for t in tokens[0])
    capsys.readouterr()
    for token in tokens[0]:
        assert redact.main(["--input", str(ward), "--pseudonym_key_file", str(key), "--find", token]) == 0
        named = capsys.readouterr().out.split("\t")[-1].strip()
        assert Path(named).parent == ward and Path(named).name.startswith("Subject07_")


def test_without_a_key_file_the_default_one_is_made_once_and_reused(hms6_run, shared_data, tmp_path):
    """In a fresh process with its own home: the default key (eegfm-preprocess's) is created 0600
    outside the output folder on first use, and a second run gives the same token."""
    env = {**os.environ, "HOME": str(tmp_path / "home"), "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    edf = shared_data / "eegmat" / "Subject08_2.edf"
    runs = []
    for run in ("a", "b"):
        result = subprocess.run(
            [sys.executable, "-m", "eegfm.serving.predict", "--model", str(hms6_run), "--input", str(edf)]
            + ["--no_artifact_model", "--no_plots", "--output", str(tmp_path / run)],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        runs.append(json.loads((tmp_path / run / "recordings.json").read_text())["recordings"][0]["input"])
    key = tmp_path / "home" / ".config" / "eegfm" / "pseudonym.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert runs[0] == runs[1] == redact.PathRedactor(key.read_bytes().strip()).name(edf.name)
    assert not any(p.name.endswith("key") for p in (tmp_path / "a").rglob("*"))


def test_help_imports_no_heavy_library(tmp_path):
    probe = (
        "import sys\nfrom eegfm.serving import predict\ntry:\n    predict.main(['--help'])\nexcept SystemExit:\n"
        "    pass\nprint(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'torch', 'apache_beam', 'mne', 'numpy', 'scipy', 'matplotlib', 'onnxruntime', 'pandas'}), file=sys.stderr)"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0 and "--event_windows" in result.stdout
    assert result.stderr.strip().splitlines()[-1] == "[]"
