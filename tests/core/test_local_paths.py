"""A local path is looked up without Beam (``core.stores.exists``, ``match_path``) and answered
exactly as Beam's local file system answers it: the same files, sizes and times."""

from __future__ import annotations

import os

import pytest
from apache_beam.io.filesystems import FileSystems

from eegfm.core import stores


@pytest.fixture
def entries(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a+b(1).edf").write_bytes(b"x" * 10)
    (tmp_path / "f.edf").write_bytes(b"y" * 3)
    (tmp_path / "folder").mkdir()
    os.symlink("nothing", tmp_path / "dangling.edf")
    os.symlink("f.edf", tmp_path / "link.edf")
    return ["a+b(1).edf", "f.edf", "folder", "missing.edf", "dangling.edf", "link.edf", "./f.edf", "folder/../f.edf"]


def _fields(found: list) -> list[tuple]:
    return [(m.path, m.size_in_bytes, m.last_updated_in_seconds) for m in found]


def test_local_paths_are_answered_as_beam_answers_them(entries, tmp_path):
    for path in [*entries, str(tmp_path / "f.edf")]:
        beam = [m for m in FileSystems.match([path])[0].metadata_list if m.path == path]
        assert _fields(stores.match_path(path)) == _fields(beam), path
        assert stores.exists(path) == FileSystems.exists(path), path
