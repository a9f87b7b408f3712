"""Discovery looks at each local entry's type before anything opens it: a FIFO, a socket, a device (or
a link to one), a folder named like a recording, hidden and AppleDouble files are ignored with why."""

from __future__ import annotations

import os

import pytest

from eegfm.pipelines.datasets import discover, expand_inputs
from eegfm.pipelines.privacy.redact import PathRedactor
from tests.adversarial import LATIN1_NAME, build_adversarial_inputs

# A regression opens a FIFO and waits for ever: fail instead (pytest-timeout's signal interrupts open()).
pytestmark = pytest.mark.timeout(60)


def test_every_adversarial_entry_is_listed_by_its_type_and_none_is_an_input(tmp_path, shared_data):
    # listed in this process: root lists a folder of mode 000 (the jobs' tests list it as another user)
    cases = build_adversarial_inputs(tmp_path / "in", shared_data, unlistable=os.geteuid() != 0)
    items, ignored, _ = discover([str(tmp_path / "in")])
    inputs = {os.path.basename(i.path): i for i in items}
    reasons = {os.path.basename(g.path): g.reason for g in ignored}
    assert set(inputs) == {n for n, c in cases.items() if c.outcome != "ignored"}
    assert set(reasons) == {n for n, c in cases.items() if c.outcome == "ignored"}
    for name, case in cases.items():
        if case.outcome == "ignored":
            assert case.reason in reasons[name], name
        elif case.outcome == "quarantined" and not case.at_read:
            assert case.reason in inputs[name].read_problem, name
        else:
            assert not inputs[name].read_problem, name
    assert reasons["._good.edf"].startswith("macOS AppleDouble metadata of good.edf")
    assert "never opened" in reasons["DOE_JOHN.edf"]
    assert set(map(os.path.basename, expand_inputs([str(tmp_path / "in")]))) == set(cases)


def test_a_fifo_or_a_device_given_as_the_input_itself_is_ignored_not_opened(tmp_path, shared_data):
    build_adversarial_inputs(tmp_path / "in", shared_data, sockets=False, unlistable=False)
    for name, said in (("DOE_JOHN.edf", "(a FIFO)"), ("zero.edf", "(a symbolic link to a character device)")):
        items, ignored, _ = discover([str(tmp_path / "in" / name), str(tmp_path / "in" / "good.edf")])
        assert [os.path.basename(i.path) for i in items] == ["good.edf"]
        assert [(os.path.basename(g.path), said in g.reason) for g in ignored] == [(name, True)]
    # a glob names them as a folder does
    items, ignored, _ = discover([str(tmp_path / "in" / "*.edf")])
    assert {"DOE_JOHN.edf", "zero.edf", "urandom.edf", "y.edf"} <= {os.path.basename(g.path) for g in ignored}


def test_a_folder_named_like_a_recording_is_ignored_but_an_mff_folder_is_a_recording(tmp_path):
    for name in ("site/night.mff/info.xml", "site/night.mff/signal1.bin", "site/a.edf", "site/b.edf/inner.edf"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "site" / "empty.bdf").mkdir()
    items, ignored, _ = discover([str(tmp_path)])
    assert sorted(os.path.relpath(i.path, tmp_path) for i in items) == [
        "site/a.edf",
        "site/b.edf/inner.edf",
        "site/night.mff",
    ]
    folders = {os.path.relpath(g.path, tmp_path): g.reason for g in ignored if "a folder, not a recording" in g.reason}
    assert sorted(folders) == ["site/b.edf", "site/empty.bdf"]


def test_a_name_that_is_not_utf8_gets_a_token_as_its_bytes(tmp_path):
    redactor = PathRedactor(b"k" * 32)
    token = redactor.name(LATIN1_NAME)
    assert token.startswith("file-") and token.endswith(".edf") and token != redactor.name("Müller.edf")
    assert redactor.path(str(tmp_path / LATIN1_NAME)).encode().isascii()
