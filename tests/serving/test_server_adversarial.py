"""eegfm-serve against the adversarial uploads (``tests.serving.adversarial_zip``), in a process of
its own whose temporary folder and log the tests watch: every entry answered for, no 500, no name
in a reply or the log, and the temporary folder's and the memory's growth per request measured
against the bounds docs/serving.md states."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.serving.adversarial_zip import IDENTIFIERS, adversarial_zip, gzip_bomb_zip
from tests.serving.serve_helpers import serving_process

RAW = {"Content-Type": "application/octet-stream"}


@pytest.fixture(scope="module")
def served(finetuned, tmp_path_factory):
    """The server process, its temporary folder, and a function giving its log so far."""
    tmp = tmp_path_factory.mktemp("server-tmp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp)}
    argv = ["--model", str(finetuned), "--no-auth", "--max_upload_mb", "64"]
    with serving_process(argv, env=env) as (process, server):
        log: list[str] = []
        reader = threading.Thread(target=lambda: log.extend(process.stderr), daemon=True)
        reader.start()
        yield process, server, tmp, lambda: "".join(log)


def _peak_kb(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in kB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))


class FolderPeak:
    """The largest total size of the files below ``folder`` while it is watched (every 2 ms)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.peak, self._stop = folder, 0, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.002):
            total = 0
            for root, _, files in os.walk(self.folder):
                for name in files:
                    try:
                        total += os.lstat(os.path.join(root, name)).st_size
                    except OSError:  # deleted between the listing and the stat
                        pass
            self.peak = max(self.peak, total)

    def __enter__(self) -> FolderPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _no_identifier(*texts: str) -> None:
    for text in texts:
        for name in IDENTIFIERS:
            assert name not in text, (name, text[max(0, text.find(name) - 200) : text.find(name) + 200])


def test_every_entry_of_a_hostile_zip_is_answered_for_and_none_is_named(served, shared_data):
    process, server, _, log = served
    archive, processed, reasons = adversarial_zip(shared_data)
    status, reply, _ = server.request("POST", "/v1/predict?filename=visit.zip", archive, RAW, timeout=300)
    assert status == 200, reply
    statuses = sorted(r["status"] for r in reply["recordings"])
    assert statuses == ["processed"] * processed + ["quarantined"], reply["recordings"]  # the clashing file
    listed = [entry["reason"] for entry in reply["ignored"]]
    assert len(listed) == len(reasons), listed
    for words in reasons:
        assert sum(words in reason for reason in listed) == 1, (words, listed)
    assert all(e["input"].startswith("file-") for e in [*reply["recordings"], *reply["ignored"]])
    _no_identifier(json.dumps(reply, ensure_ascii=False), log())
    assert "prediction failed" not in log() and server.request("GET", "/health")[0] == 200


@pytest.mark.parametrize(
    ("members", "why"),
    [
        ({"notes.txt": b"no recording here"}, "not a recording"),
        ({"y.edf/": b""}, "a folder, not a recording file"),
        ({}, None),
    ],
)
def test_a_zip_holding_no_recording_is_one_422_whatever_it_holds(served, members, why):
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for name, data in members.items():
            zipped.writestr(name, data)
    status, reply, _ = served[1].request("POST", "/v1/predict?filename=empty.zip", buffer.getvalue(), RAW)
    assert status == 422 and reply["status"] == 422 and reply["recordings"] == [], reply
    assert reply["error"].startswith("the upload holds no recording file")
    assert [why in e["reason"] for e in reply.get("ignored", [])] == ([True] if why else [])


def test_gzip_members_share_one_expansion_budget_per_request(served):
    """40 gzip members of 16 MiB of zeros in a 657 KB zip wrote 641 MiB before; now the members
    together stay within max(16 MiB, 50x the upload) and the request gets 413."""
    process, server, tmp, log = served
    bomb = gzip_bomb_zip()
    budget = max(16 << 20, 50 * len(bomb))
    before = _peak_kb(process.pid)
    with FolderPeak(tmp) as disk:
        status, reply, _ = server.request("POST", "/v1/predict?filename=bomb.zip", bomb, RAW, timeout=120)
    assert status == 413 and "expands past this upload's budget" in reply["error"], reply
    assert disk.peak <= len(bomb) + budget + (1 << 20), disk.peak
    assert _peak_kb(process.pid) - before < 64 << 10  # kB: decompression streams in 1 MiB blocks
    assert list(tmp.glob("eegfm-upload-*")) == []  # the temporary folder is gone with the request
    assert "prediction failed" not in log()


def _four_at_once(server, body: bytes, path: str, headers: dict) -> list[int]:
    answers: list[int] = []
    threads = [
        threading.Thread(target=lambda: answers.append(server.request("POST", path, body, headers, timeout=300)[0]))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return answers


def _rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))


def _json_beside_files(served, shared_data, tmp_path, repeats: int) -> tuple[int, int, int]:
    """Four JSON recordings (eegmat Subject00_1's 19 channels, its first 120 s ``repeats`` times) at
    once, after the same four as FIF files: the JSON's peak memory beyond the files', how much larger
    the server stays once idle (after the files' own), and the body's size; bytes."""
    import mne

    process, server, _, _ = served
    raw = mne.io.read_raw_edf(shared_data / "eegmat" / "Subject00_1.edf", preload=True, verbose="error")
    raw.pick([name for name in raw.ch_names if name.startswith("EEG ") and name != "EEG A2-A1"]).crop(0, 120)
    signals = np.tile(np.round(raw.get_data() * 1e6, 2), repeats)
    body = json.dumps({"signals": signals.tolist(), "sfreq": raw.info["sfreq"], "channel_names": raw.ch_names})
    mne.io.RawArray(signals * 1e-6, raw.info, verbose="error").save(tmp_path / "same_raw.fif", verbose="error")
    fif = (tmp_path / "same_raw.fif").read_bytes()
    as_json, as_file = {"Content-Type": "application/json"}, RAW
    assert server.request("POST", "/v1/predict?filename=a.fif", fif, as_file, timeout=300)[0] == 200  # warm
    assert _four_at_once(server, fif, "/v1/predict?filename=a.fif", as_file) == [200] * 4
    files, idle = _peak_kb(process.pid), _rss_kb(process.pid)
    assert _four_at_once(server, body.encode(), "/v1/predict", as_json) == [200] * 4
    extra = (_peak_kb(process.pid) - files) << 10
    time.sleep(1.0)  # the last request's folder removed and its memory trimmed, in a worker thread
    return extra, (_rss_kb(process.pid) - idle) << 10, len(body)


def test_concurrent_json_bodies_cost_at_most_the_documented_4x_beyond_the_same_files(served, shared_data, tmp_path):
    """Four 7.7 MB JSON recordings at once raise the server's peak memory by at most 4x their bodies
    beyond the same four recordings uploaded as FIF files, the bound docs/serving.md states (the
    parsed samples were kept beside the pipeline's working set: 1.9x measured, 5.6x each body over
    idle in the adversarial pass; json.loads held ~12x before that)."""
    extra, _, body = _json_beside_files(served, shared_data, tmp_path, repeats=1)
    # measured 2026-11-28: +0.7x their 31 MB (1.9x before the samples were freed first)
    assert extra < 4 * 4 * body, (extra, body)


def test_the_memory_of_large_json_bodies_goes_back_once_idle(served, shared_data, tmp_path):
    """Four 30 MB JSON recordings at once (20 s): the server stays less than half their size larger
    once idle (1.3x before, glibc keeping the freed heaps: the adversarial pass saw 1.1 GB idle;
    0.3x measured now), and their peak stays within the documented 4x beyond the same files."""
    extra, kept, body = _json_beside_files(served, shared_data, tmp_path, repeats=4)
    assert extra < 4 * 4 * body, (extra, body)
    assert kept < 0.5 * 4 * body, (kept, body)
