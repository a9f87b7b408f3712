import hashlib
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from eegfm.training.checkpoint import (
    BEST_POINTER,
    LATEST_POINTER,
    MODEL_FILE,
    STATE_FILE,
    TENSORS_FILE,
    CheckpointError,
    best_checkpoint,
    latest_checkpoint,
    load_checkpoint,
    resolve_resume,
    restore_rng_state,
    save_checkpoint,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _tiny_state(value: float = 1.0, **extra):
    return {"model": {"w": torch.full((3,), value), "b": torch.zeros(2)}, **extra}


def _run_python(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _train(model, optimizer, scheduler, steps):
    for _ in range(steps):
        x = torch.randn(8, 4)  # draws from the torch RNG, which the checkpoint restores
        loss = model(x).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()


def _build():
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.2), nn.Linear(8, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 / (1 + s))
    return model, optimizer, scheduler


def test_adamw_resume_is_bitwise_identical(tmp_path):
    torch.manual_seed(0)
    model, optimizer, scheduler = _build()
    _train(model, optimizer, scheduler, 3)
    path = save_checkpoint(
        tmp_path,
        3,
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": 1,
            "loader": {"shard": 2, "offset": 17},
        },
    )
    _train(model, optimizer, scheduler, 2)
    expected = [p.detach().clone() for p in model.parameters()]

    torch.manual_seed(123)  # a different process state, restored from the checkpoint
    model2, optimizer2, scheduler2 = _build()
    state = load_checkpoint(path)
    model2.load_state_dict(state["model"])
    optimizer2.load_state_dict(state["optimizer"])
    scheduler2.load_state_dict(state["scheduler"])
    restore_rng_state(state["rng"])
    assert state["step"] == 3 and state["epoch"] == 1 and state["loader"] == {"shard": 2, "offset": 17}
    _train(model2, optimizer2, scheduler2, 2)
    for got, want in zip(model2.parameters(), expected):
        assert torch.equal(got, want)

    on_disk = sorted(p.name for p in path.iterdir())
    assert on_disk == [MODEL_FILE, TENSORS_FILE, STATE_FILE]
    document = json.loads((path / STATE_FILE).read_text())
    assert document["format_version"] == 1 and set(document["sha256"]) == {MODEL_FILE, TENSORS_FILE}


def test_tied_and_non_contiguous_tensors_are_stored(tmp_path):
    weight = torch.randn(4, 4)
    state = {"model": {"a": weight, "b": weight, "c": weight.t()}}
    loaded = load_checkpoint(save_checkpoint(tmp_path, 0, state))["model"]
    assert torch.equal(loaded["b"], weight) and torch.equal(loaded["c"], weight.t())


def test_rotation_keeps_last_k_and_the_best_and_updates_pointers(tmp_path):
    metrics = {1: 0.9, 2: 0.5, 3: 0.7, 4: 0.8, 5: 0.6}
    for step, metric in metrics.items():
        save_checkpoint(tmp_path, step, _tiny_state(step), keep_last=2, metric=metric)
    names = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("step-"))
    assert names == ["step-00000002", "step-00000004", "step-00000005"]  # 2 is best (0.5)
    assert best_checkpoint(tmp_path).name == "step-00000002"
    assert (tmp_path / LATEST_POINTER).read_text().strip() == "step-00000005"
    assert latest_checkpoint(tmp_path).name == "step-00000005"
    save_checkpoint(tmp_path, 6, _tiny_state(6), keep_last=2, is_best=True)
    assert (tmp_path / BEST_POINTER).read_text().strip() == "step-00000006"
    assert not (tmp_path / "step-00000002").exists()  # no longer protected once superseded
    assert load_checkpoint(tmp_path)["model"]["w"][0] == 6.0  # a directory of checkpoints: newest
    assert not any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())
    # A run rewound to an earlier step: its new checkpoint survives rotation and is the latest.
    rewound = save_checkpoint(tmp_path, 4, _tiny_state(4.5), keep_last=2)
    assert rewound.is_dir() and latest_checkpoint(tmp_path) == rewound


def test_resaving_a_step_replaces_it(tmp_path):
    save_checkpoint(tmp_path, 7, _tiny_state(1.0))
    save_checkpoint(tmp_path, 7, _tiny_state(2.0))
    assert load_checkpoint(tmp_path / "step-00000007")["model"]["w"][0] == 2.0


def test_latest_skips_corrupt_and_temporary_directories(tmp_path, caplog):
    save_checkpoint(tmp_path, 1, _tiny_state(1.0))
    bad = save_checkpoint(tmp_path, 2, _tiny_state(2.0))
    with open(bad / MODEL_FILE, "r+b") as handle:  # truncated by a dying disk
        handle.truncate(20)
    (tmp_path / ".tmp-step-00000003.999").mkdir()
    with caplog.at_level(logging.WARNING):
        assert latest_checkpoint(tmp_path).name == "step-00000001"
    assert "step-00000002" in caplog.text and "sha256 does not match" in caplog.text
    with pytest.raises(CheckpointError, match=r"model.safetensors: sha256 does not match"):
        load_checkpoint(bad)


def test_resolve_resume_semantics(tmp_path, caplog):
    # Only warnings count: an earlier test in the process may have set the eegfm loggers to INFO.
    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]

    assert resolve_resume("auto", tmp_path / "nothing-yet") is None
    with caplog.at_level(logging.WARNING, logger="eegfm.training.checkpoint"):
        assert resolve_resume("none", tmp_path) is None
    assert warnings() == []
    path = save_checkpoint(tmp_path, 5, _tiny_state())
    assert resolve_resume("auto", tmp_path) == path
    with caplog.at_level(logging.WARNING, logger="eegfm.training.checkpoint"):
        assert resolve_resume("none", tmp_path) is None  # fresh, beside an earlier run's checkpoints: said so
    assert warnings() == [
        f"resume none: {tmp_path} already holds 1 checkpoint(s) up to step-00000005; this "
        "run starts fresh and writes its own beside them (the 'latest' pointer follows this "
        "run; a new --output keeps runs apart)"
    ]
    assert resolve_resume(str(path), tmp_path / "elsewhere") == path
    assert resolve_resume(tmp_path, tmp_path / "elsewhere") == path
    with pytest.raises(
        CheckpointError,
        match=r"resume: expected 'auto', 'none' or the path of a "
        r"checkpoint directory; got 'latest' \(no such file or directory\)",
    ):
        resolve_resume("latest", tmp_path)


class _Malicious:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickles_are_refused_and_never_executed(tmp_path):
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(_Malicious(proof)))
    assert proof.exists()  # the payload is real: unpickling it runs code

    marker = tmp_path / "pwned"
    path = save_checkpoint(tmp_path / "ckpt", 1, _tiny_state())
    (path / MODEL_FILE).write_bytes(pickle.dumps(_Malicious(marker)))
    with pytest.raises(CheckpointError, match=r"model.safetensors: holds a pickle.*pickled checkpoints are refused"):
        load_checkpoint(path)
    assert latest_checkpoint(tmp_path / "ckpt") is None

    other = save_checkpoint(tmp_path / "ckpt2", 1, _tiny_state())
    torch.save({"payload": _Malicious(marker)}, other / "model.pt")  # a torch.save zip
    with pytest.raises(CheckpointError, match=r"model.pt: pickled checkpoints are refused"):
        load_checkpoint(other)
    with pytest.raises(CheckpointError, match=r"model.pt: pickled checkpoints are refused"):
        load_checkpoint(other / "model.pt")
    assert not marker.exists()


def test_invalid_safetensors_with_a_matching_hash_is_refused(tmp_path):
    path = save_checkpoint(tmp_path, 1, _tiny_state())
    (path / TENSORS_FILE).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json")
    document = json.loads((path / STATE_FILE).read_text())
    document["sha256"][TENSORS_FILE] = hashlib.sha256((path / TENSORS_FILE).read_bytes()).hexdigest()
    (path / STATE_FILE).write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match=r"optimizer.safetensors: not a valid safetensors file"):
        load_checkpoint(path)


_KILLED_WRITER = """
import os, sys, time, torch
from pathlib import Path
from eegfm.training import checkpoint as ck

directory = Path(sys.argv[1])
ck.save_checkpoint(directory, 1, {"model": {"w": torch.full((4,), 1.0)}, "epoch": 0})
write = ck._write_safetensors

def stall_after_first_file(path, tensors):
    digest = write(path, tensors)
    (directory.parent / "flag.tmp").write_text(str(path))
    os.replace(directory.parent / "flag.tmp", directory.parent / "writing-b")  # appears complete
    time.sleep(120)  # SIGKILLed here, half-way through checkpoint B
    return digest

ck._write_safetensors = stall_after_first_file
ck.save_checkpoint(directory, 2, {"model": {"w": torch.zeros(2_000_000)}, "epoch": 1})
"""


def test_sigkill_during_a_write_leaves_the_previous_checkpoint(tmp_path):
    directory = tmp_path / "ckpt"
    process = _run_python(_KILLED_WRITER, str(directory))
    flag = tmp_path / "writing-b"
    deadline = time.monotonic() + 60
    while not flag.exists():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "writer never reached checkpoint B"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert Path(flag.read_text()).parent.name.startswith(".tmp-step-00000002")

    found = latest_checkpoint(directory)
    assert found is not None and found.name == "step-00000001"
    assert resolve_resume("auto", directory) == found
    state = load_checkpoint(found)
    assert state["epoch"] == 0 and torch.equal(state["model"]["w"], torch.ones(4))
    save_checkpoint(directory, 2, _tiny_state())  # the next save clears the leftover
    assert sorted(p.name for p in directory.iterdir() if p.is_dir()) == ["step-00000001", "step-00000002"]


def test_a_safetensors_file_whose_header_length_starts_with_0x80_is_not_taken_for_a_pickle(tmp_path):
    # The first byte of a safetensors file is the low byte of its header length; 0x80 is also
    # pickle's PROTO opcode. Real optimizer states hit this (it broke --resume auto once).
    from safetensors.torch import save_file

    from eegfm.training.checkpoint import _looks_like_pickle

    path = tmp_path / "x.safetensors"
    for pad in range(512):
        save_file({"w": torch.zeros(3)}, str(path), metadata={"pad": "x" * pad})
        if path.read_bytes()[:1] == b"\x80":
            break
    else:
        pytest.fail("no padding gave a header length with low byte 0x80")
    assert not _looks_like_pickle(path)
    pickled = tmp_path / "p.safetensors"
    pickled.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    assert _looks_like_pickle(pickled)
