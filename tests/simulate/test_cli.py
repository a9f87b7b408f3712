"""The command line, run as a subprocess like a user would."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(*args, cwd=REPO):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}  # this tree's package, not an installed one
    return subprocess.run(
        [sys.executable, "-m", "eegfm.simulate", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("args", "flag", "allowed"),
    [
        (["--sites", "0"], "--sites", "an integer in [1, 1000]; got 0"),
        (["--sites", "2.5"], "--sites", "got '2.5'"),
        (["--minutes", "-1"], "--minutes", "in [1, 1440]"),
        (["--minutes", "0"], "--minutes", "in [1, 1440]"),
        (["--format", "xml"], "--format", "expected one of edf, hms, both; got 'xml'"),
        (["--seed", "x"], "--seed", "an integer >= 0"),
        (["--subjects-per-site", "0"], "--subjects-per-site", "got 0"),
        (["--montage", "tcp"], "--montage", "expected one of site, referential, double_banana, chbmit23; got 'tcp'"),
        (["--episodes", "3"], "--episodes", "needs --pattern-realism"),
        (["--pattern-realism", "--realism"], "--realism", "a command of its own: eegfm-realism"),
    ],
)
def test_bad_arguments_print_one_line_naming_the_flag(tmp_path, args, flag, allowed):
    out = tmp_path / "out"
    result = _run("--output", out, *args)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"eegfm-simulate: error: {flag}: ") and allowed in lines[0]
    assert result.stdout == "" and not out.exists()


def test_unwritable_outputs_are_refused_before_anything_is_written(tmp_path):
    regular = tmp_path / "a_file"
    regular.write_text("not a directory")
    for target in (regular / "corpus", regular):
        result = _run("--output", target, "--minutes", "1", "--sites", "1")
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
        assert result.stderr.startswith("eegfm-simulate: error: --output: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        if os.access(locked, os.W_OK):
            return  # root ignores permission bits; /proc below covers that case for root
        result = _run("--output", locked / "corpus", "--minutes", "1", "--sites", "1")
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
        assert "--output" in result.stderr and not (locked / "corpus").exists()
    finally:
        locked.chmod(0o700)


def test_an_output_on_a_filesystem_that_refuses_writes_is_refused():
    """/proc refuses new directories even to root, unlike permission bits."""
    if not Path("/proc/self").is_dir():
        pytest.skip("needs Linux /proc")
    result = _run("--output", "/proc/eegfm-simulate-test/corpus", "--minutes", "1", "--sites", "1")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("eegfm-simulate: error: --output: cannot create")
    assert not Path("/proc/eegfm-simulate-test").exists()


def test_non_empty_output_needs_overwrite_and_overwrite_replaces_it(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("previous run")
    args = [
        "--output",
        out,
        "--sites",
        "1",
        "--subjects-per-site",
        "1",
        "--recordings-per-subject",
        "1",
        "--minutes",
        "1",
        "--format",
        "edf",
    ]
    refused = _run(*args)
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1
    assert "--output" in refused.stderr and "--overwrite" in refused.stderr
    assert (out / "old.txt").exists()

    done = _run(*args, "--overwrite")
    assert done.returncode == 0, done.stderr
    assert not (out / "old.txt").exists()
    assert (out / "corpus.json").exists() and (out / "edf" / "labels.csv").exists()
    assert not (out / "hms").exists()
    assert str(out) in done.stdout and "1 recordings" in done.stdout and "EEG-hours" in done.stdout
    manifest = json.loads((out / "corpus.json").read_text())
    assert manifest["config"]["format"] == "edf"
    assert not list(tmp_path.glob(".*"))  # no staging directories left behind


def test_help_explains_every_option():
    result = _run("--help")
    assert result.returncode == 0
    for flag in (
        "--output",
        "--sites",
        "--subjects-per-site",
        "--recordings-per-subject",
        "--minutes",
        "--seed",
        "--format",
        "--overwrite",
        "--quiet",
        "--site-config",
        "--chunk-seconds",
        "--montage",
        "--pattern-realism",
        "--episodes",
    ):
        assert flag in result.stdout
    assert result.stdout.count("default") >= 7


def test_site_config_yaml_replaces_the_archetypes(tmp_path):
    config = tmp_path / "sites.yaml"
    config.write_text(
        "- {name: north, channel_style: tuh, sfreq: 512, line_freq: 60.0}\n"
        "- {name: south, channel_style: plain, sfreq: 160, line_freq: 50.0, missing_channels: [Cz]}\n"
    )
    out = tmp_path / "out"
    result = _run(
        "--output",
        out,
        "--site-config",
        config,
        "--sites",
        "2",
        "--subjects-per-site",
        "1",
        "--recordings-per-subject",
        "1",
        "--minutes",
        "1",
        "--format",
        "edf",
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert sorted(p.name for p in (out / "edf").iterdir() if p.is_dir()) == ["north", "south"]

    config.write_text("- {name: north, sfreq: 300}\n")
    bad = _run("--output", tmp_path / "bad", "--site-config", config)
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1
    assert bad.stderr.startswith("eegfm-simulate: error: --site-config: ") and "sfreq" in bad.stderr


def test_montage_choices_mirror_the_corpus_config():
    from eegfm.simulate import cli, corpus

    assert cli.MONTAGE_CHOICES == corpus.MONTAGE_CHOICES


def test_pattern_realism_writes_its_table_and_json(tmp_path):
    result = _run("--pattern-realism", "--output", tmp_path / "report", "--episodes", "2", "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["pattern_realism.json", "pattern_realism.md"]
    report = json.loads((tmp_path / "report" / "pattern_realism.json").read_text())
    assert report["seed"] == 1 and report["episodes_per_class"] == 2
    assert result.stdout.startswith(f"Pattern realism report written to {tmp_path / 'report'}")
