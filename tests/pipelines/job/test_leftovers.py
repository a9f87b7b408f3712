"""What a killed run leaves (spill and Beam temporary folders, progress folders) is cleared by the next run."""

from __future__ import annotations

import os
import signal
import tempfile

import pytest

from eegfm.contract.tfrecord import read_records
from eegfm.pipelines.job.preprocess import run
from eegfm.pipelines.job.progress import PROGRESS_PREFIX, clear_stale_progress, progress_file
from tests.pipelines.interrupted_job import signal_after_first_spill


@pytest.fixture
def private_temp(tmp_path, monkeypatch):
    """A temp folder of the test's own (TMPDIR, and tempfile's cached choice reset)."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", None)
    return temp


def _progress_folders(temp) -> list[str]:
    return sorted(p.name for p in temp.iterdir() if p.name.startswith(PROGRESS_PREFIX))


def test_only_progress_folders_no_run_holds_are_cleared(private_temp, caplog):
    with progress_file() as running:  # this run's own: its lock is held
        # As a killed run leaves it: the owner lock file, no longer held by anyone, and the progress lines.
        killed = private_temp / f"{PROGRESS_PREFIX}k1ll3d"
        killed.mkdir()
        (killed / "owner.lock").touch()
        (killed / "done").write_text("1.000\n" * 500)
        older = private_temp / f"{PROGRESS_PREFIX}0ld3r"  # an older version's: no owner lock, owner unknown
        older.mkdir()
        with caplog.at_level("INFO", logger="eegfm.preprocess"):
            assert clear_stale_progress() == 1
        assert _progress_folders(private_temp) == sorted([os.path.basename(os.path.dirname(running)), older.name])
    assert "removed 1 progress folder(s) (3.0 kB) of killed runs from the temp folder" in caplog.text
    assert _progress_folders(private_temp) == [older.name]  # a finished run removes its own


def test_a_run_clears_what_a_killed_run_left_in_its_output_and_the_temp_folder(
    shared_data, key_file, tmp_path, private_temp, capsys
):
    out, corpus = tmp_path / "out", tmp_path / "corpus"
    corpus.mkdir()
    for name in ("Subject00_1.edf", "Subject01_1.edf"):  # seconds of work: the kill below lands mid-run
        (corpus / name).symlink_to(shared_data / "eegmat" / name)
    argv = ["--input", str(corpus), "--output", str(out), "--pseudonym_key_file", key_file]
    signal_after_first_spill(argv, out, signal.SIGKILL)  # no handler runs: what it wrote stays
    spilled = list(out.glob(".spill-*"))
    assert spilled and len(_progress_folders(private_temp)) == 1
    assert not (out / "manifest.json").exists()
    # Killed a little later, it would also have left its shards not yet renamed.
    (out / "beam-temp-sites-0123abcd").mkdir()
    (out / "beam-temp-sites-0123abcd" / "0123abcd").write_bytes(b"\0" * 1_000_000)

    manifest = run(argv)

    assert sorted(p.name for p in out.iterdir() if p.name.startswith((".spill-", "beam-temp-"))) == []
    assert _progress_folders(private_temp) == []
    err = capsys.readouterr().err
    assert "removed 2 temporary folder(s) (" in err and "that runs killed before the end left" in err
    assert "removed 1 progress folder(s) (" in err
    for name in [p.name for p in spilled] + ["0123abcd", "Subject00", "Subject01"]:
        assert name not in err
    counts = manifest["counts"]
    assert counts["processed"] == counts["inputs"] == 2 and counts["windows"] > 10
    assert sum(len(list(read_records(str(out / shard)))) for shard in manifest["shards"]) == counts["windows"]
