"""Entries that cannot be read (dangling links, link loops, no permission) are inputs accounted for."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys

import pytest

from eegfm.pipelines.datasets import discover, expand_inputs
from eegfm.pipelines.job.preprocess import run

# Root reads and lists anything: without the capabilities that let it, it meets file modes as any user does.
_NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search"]


@functools.cache
def _as_a_plain_user() -> list[str]:
    """The command prefix under which file modes apply to this user (none needed but for root)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("root, and no setpriv to drop the capabilities that bypass file modes")
    probe = subprocess.run(
        [*_NO_DAC, sys.executable, "-c", "import os; print(os.access('/root', os.W_OK))"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"setpriv cannot drop capabilities here: {probe.stderr.strip()[:200]}")
    return _NO_DAC


def _tree(root, shared_data):
    """One good recording, and an entry of each kind that cannot be read."""
    (root / "site-a").mkdir(parents=True)
    (root / "site-a" / "good.edf").symlink_to(shared_data / "eegmmi" / "S001R03.edf")
    (root / "site-a" / "x.edf").symlink_to(root / "site-a" / "gone.edf")
    (root / "site-a" / "notes.txt").symlink_to(root / "nowhere.txt")
    (root / "site-a" / "loop.edf").symlink_to(root / "site-a" / "loop.edf")
    locked = root / "site-a" / "locked.edf"
    locked.write_bytes(b"0       " * 32)
    locked.chmod(0)
    closed = root / "site-b"
    closed.mkdir()
    (closed / "inside.edf").write_bytes(b"0       " * 32)
    closed.chmod(0)
    return {
        "x": str(root / "site-a" / "x.edf"),
        "loop": str(root / "site-a" / "loop.edf"),
        "locked": str(locked),
        "closed": str(closed),
        "notes": str(root / "site-a" / "notes.txt"),
        "good": str(root / "site-a" / "good.edf"),
    }


@pytest.fixture
def unreadable_tree(tmp_path, shared_data):
    paths = _tree(tmp_path / "corpus", shared_data)
    yield tmp_path / "corpus", paths
    os.chmod(paths["closed"], 0o700)  # so the test folder can be removed by any user


def test_dangling_and_looping_links_are_listed_with_what_is_wrong(unreadable_tree):
    corpus, paths = unreadable_tree
    assert {paths["x"], paths["loop"], paths["notes"], paths["good"]} <= set(expand_inputs([str(corpus)]))
    items, ignored, _ = discover([str(corpus)])
    problems = {item.path: item.read_problem for item in items}
    assert problems[paths["good"]] == ""
    assert problems[paths["x"]] == "dangling symbolic link: what it points to does not exist"
    assert problems[paths["loop"]] == "symbolic link loop: it leads back to itself"
    assert next(item.site for item in items if item.path == paths["x"]) == "site-a"
    reasons = {entry.path: entry.reason for entry in ignored}
    assert reasons[paths["notes"]].startswith("dangling symbolic link: what it points to does not exist; documentation")
    # Given as it is, a link to nothing is an input too, not "matched no files".
    assert expand_inputs([paths["x"]]) == [paths["x"]]
    # A glob names only the entries it matches.
    assert expand_inputs([f"{corpus}/**/*.txt"]) == [paths["notes"]]


def test_a_dry_run_names_the_inputs_that_cannot_be_read(unreadable_tree, key_file, tmp_path, capsys):
    corpus, paths = unreadable_tree
    argv = ["--input", str(corpus), "--output", str(tmp_path / "out"), "--pseudonym_key_file", key_file, "--keep_paths"]
    assert run([*argv, "--dry_run", "True"]) == {}
    plan = capsys.readouterr().out
    assert "files that cannot be read, to quarantine:" in plan
    assert f"    {paths['x']}: dangling symbolic link: what it points to does not exist" in plan
    assert f"    {paths['loop']}: symbolic link loop: it leads back to itself" in plan


def test_the_job_quarantines_each_unreadable_entry_at_read_and_runs_the_rest(unreadable_tree, key_file, tmp_path):
    corpus, paths = unreadable_tree
    out = tmp_path / "out"
    done = subprocess.run(
        [
            *_as_a_plain_user(),
            sys.executable,
            "-m",
            "eegfm.pipelines.job.preprocess",
            "--input",
            str(corpus),
            "--output",
            str(out),
            "--pseudonym_key_file",
            key_file,
            "--keep_paths",  # the entries are asserted by name; redaction has its own tests
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    inputs = {entry["source"]: entry for entry in manifest["inputs"]}
    assert inputs[paths["good"]]["status"] == "processed"
    expected = {
        "x": "x.edf: dangling symbolic link: what it points to does not exist",
        "loop": "loop.edf: symbolic link loop: it leads back to itself",
        "locked": "locked.edf: permission denied: this user may not read it",
        "closed": "site-b: permission denied: this user may not list this folder, so its recordings cannot be read",
    }
    for name, reason in expected.items():
        entry = inputs[paths[name]]
        assert (entry["status"], entry["stage"], entry["reason"]) == ("quarantined", "read", reason)
    assert inputs[paths["notes"]]["status"] == "ignored"
    assert "dangling symbolic link" in inputs[paths["notes"]]["reason"]
    lines = [json.loads(line) for line in (out / "quarantine.jsonl").read_text().splitlines()]
    quarantined = {line["path"]: line for line in lines if line["kind"] == "input"}
    assert {quarantined[paths[name]]["reason"] for name in expected} == set(expected.values())
    assert {line["path"] for line in lines if line["kind"] == "ignored"} == {paths["notes"]}
    counts = manifest["counts"]
    assert (counts["inputs"], counts["processed"], counts["quarantined"], counts["ignored"]) == (6, 1, 4, 1)
