"""The Dataflow Flex Template: its parameters are the preprocessing job's own options, and its
launcher turns what Dataflow passes into a command line the job's parser accepts."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from eegfm.pipelines.job.preprocess import build_parser

DATAFLOW = Path(__file__).resolve().parents[2] / "infra" / "dataflow"


def _launch():
    spec = importlib.util.spec_from_file_location("eegfm_flex_launch", DATAFLOW / "launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _options() -> dict:
    return {
        opt[2:]: action for action in build_parser()._actions for opt in action.option_strings if opt.startswith("--")
    }


def test_every_parameter_is_an_option_of_the_job_with_its_choices():
    metadata = json.loads((DATAFLOW / "metadata.json").read_text())
    options = _options()
    names = [p["name"] for p in metadata["parameters"]]
    assert len(names) == len(set(names)) and {"input", "output", "pseudonym_key_file"} <= set(names)
    for parameter in metadata["parameters"]:
        action = options[parameter["name"]]  # KeyError: the job has no such option
        assert parameter["helpText"] and parameter["label"]
        if action.required:
            assert parameter["isOptional"] is False, parameter["name"]
        for regex in parameter.get("regexes", []):
            pattern = re.compile(regex)
            if action.choices:  # the regex accepts exactly the job's choices
                assert all(pattern.fullmatch(str(c)) for c in action.choices), parameter["name"]
                assert not pattern.fullmatch("nonsense"), parameter["name"]
            if action.nargs == 0:
                assert pattern.fullmatch("true") and pattern.fullmatch("false"), parameter["name"]
    assert re.fullmatch(metadata["parameters"][0]["regexes"][0], "gs://a/raw/,gs://b/x/**/*.edf")


def test_the_launcher_turns_template_parameters_into_the_jobs_command_line():
    launch = _launch()
    argv = launch.translate(
        [
            "--input=gs://a/raw/, gs://b/more",
            "--output=gs://a/out",
            "--report=true",
            "--ica=false",
            "--features=",
            "--window_seconds=5",
            "--runner=DataflowRunner",
            "--project=p",
        ]
    )
    assert argv == [
        "--input=gs://a/raw/",
        "--input=gs://b/more",
        "--output=gs://a/out",
        "--report",
        "--window_seconds=5",
        "--runner=DataflowRunner",
        "--project=p",
    ]
    args, beam = build_parser().parse_known_args(argv)
    assert args.input == ["gs://a/raw/", "gs://b/more"] and args.report and not args.ica and args.window_seconds == 5
    assert beam == ["--runner=DataflowRunner", "--project=p"]
    with pytest.raises(SystemExit, match="--report: expected true or false"):
        launch.translate(["--report=maybe"])


def test_the_launcher_image_copies_what_exists_and_runs_the_launcher():
    dockerfile = (DATAFLOW / "Dockerfile").read_text()
    repo = DATAFLOW.parents[1]
    for source in re.findall(r"^COPY (\S+) ", dockerfile, re.M):
        assert (repo / source).exists(), source
    py_file = re.search(r"FLEX_TEMPLATE_PYTHON_PY_FILE=/template/(\S+)", dockerfile).group(1)
    assert (repo / py_file).is_file() and py_file == "infra/dataflow/launch.py"


def test_the_launcher_builds_the_dataflow_graph_as_the_template_would(shared_data, tmp_path):
    import subprocess
    import sys

    key = tmp_path / "pseudonym.key"
    key.write_bytes(b"0123456789abcdef" * 4)
    key.chmod(0o600)
    result = subprocess.run(
        [
            sys.executable,
            str(DATAFLOW / "launch.py"),
            f"--input={shared_data / 'eegmmi'}",
            "--output=gs://eegfm-test-bucket/out",
            f"--pseudonym_key_file={key}",
            "--report=false",
            "--features=true",
            "--runner=DataflowRunner",
            "--dry_run=True",
            "--project=eegfm-test",
            "--region=europe-west4",
            "--temp_location=gs://eegfm-test-bucket/tmp",
            "--setup_file=./setup.py",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=DATAFLOW.parents[1],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Building sdist" in result.stderr
