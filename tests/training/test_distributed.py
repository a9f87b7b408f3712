"""training.distributed in one process: launcher detection, errors, collectives that degrade cleanly.

The multi-process behaviour (gloo DDP, Horovod) is exercised by real launches in test_pretrain.py, and
Horovod's object collectives by one here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

from eegfm.training.distributed import BACKENDS, DistributedError, StopVote, init_distributed, unwrap
from tests.conftest import free_port


@pytest.fixture
def no_launcher(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("backend", ["auto", "none", "gloo"])
def test_without_a_launcher_every_backend_runs_one_process(no_launcher, backend):
    dist = init_distributed(backend, device="cpu")
    assert (dist.backend, dist.rank, dist.world_size, dist.is_main) == ("none", 0, 1, True)
    assert not dist.is_distributed and not dist.uses_ddp
    model = torch.nn.Linear(2, 2)
    assert dist.wrap_model(model) is model
    # Collectives are identities for one process, so the loops need no special cases.
    assert dist.mean({"loss": 2.5, "lr": 1e-3}) == {"loss": 2.5, "lr": 1e-3}
    assert dist.max({"rss": 10.0}) == {"rss": 10.0}
    assert dist.any(True) and not dist.any(False)
    assert dist.gather_objects({"pos": 3}) == [{"pos": 3}]
    assert dist.broadcast_object("x") == "x"
    dist.barrier()
    dist.shutdown()


def test_bad_arguments_name_the_parameter_and_the_allowed_values(no_launcher, monkeypatch):
    with pytest.raises(DistributedError, match=r"backend: expected one of auto, none, gloo, nccl, horovod; got 'mpi'"):
        init_distributed("mpi")
    with pytest.raises(DistributedError, match="device: expected one of auto, cpu, cuda; got 'tpu'"):
        init_distributed("auto", device="tpu")
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(DistributedError, match="WORLD_SIZE=4"):
        init_distributed("none", device="cpu")
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(DistributedError, match="WORLD_SIZE: expected an integer; got 'two'"):
        init_distributed("auto", device="cpu")
    assert BACKENDS == ("auto", "none", "gloo", "nccl", "horovod")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_cuda_and_nccl_need_a_gpu(no_launcher, monkeypatch):
    with pytest.raises(DistributedError, match="device: 'cuda' requested"):
        init_distributed("auto", device="cuda")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(DistributedError, match="backend 'nccl': needs CUDA GPUs; use 'gloo' on CPU"):
        init_distributed("nccl", device="cpu")


def test_unwrap_finds_the_model_inside_ddp_and_compile_wrappers():
    model = torch.nn.Linear(2, 2)

    class Compiled(torch.nn.Module):  # what torch.compile's OptimizedModule exposes
        def __init__(self, inner):
            super().__init__()
            self._orig_mod = inner

    assert unwrap(model) is model
    assert unwrap(Compiled(model)) is model


def test_under_torchrun_each_restart_attempt_reads_only_its_own_store_keys(monkeypatch):
    import datetime
    import itertools

    import torch.distributed as torch_dist

    from eegfm.training import distributed
    from eegfm.training.distributed import _attempt_store

    timeout = datetime.timedelta(seconds=10)
    monkeypatch.delenv("TORCHELASTIC_USE_AGENT_STORE", raising=False)
    assert _attempt_store(timeout) is None  # plain env:// rendezvous
    agent = torch_dist.TCPStore("127.0.0.1", 0, 1, is_master=True, timeout=timeout)  # torchrun's store
    agent.set("default_pg/0//rank_1", b"address of the killed round")
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(agent.port))
    monkeypatch.setenv("WORLD_SIZE", "1")
    stores = {}
    for attempt in ("1", "2"):
        monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", attempt)
        monkeypatch.setattr(distributed, "_GROUPS_JOINED", itertools.count())  # each round: new processes
        stores[attempt] = _attempt_store(timeout)
        stores[attempt].set("default_pg/0//rank_1", f"round {attempt}".encode())
    assert stores["2"].get("default_pg/0//rank_1") == b"round 2"
    assert stores["1"].get("default_pg/0//rank_1") == b"round 1"
    assert agent.get("eegfm/attempt_2/group_0/default_pg/0//rank_1") == b"round 2"
    assert agent.get("default_pg/0//rank_1") == b"address of the killed round"
    # the same processes joining again (evaluation.loso's next fold) read none of the first group's keys
    again = _attempt_store(timeout)
    again.set("default_pg/0//rank_1", b"second group")
    assert stores["2"].get("default_pg/0//rank_1") == b"round 2"
    assert agent.get("eegfm/attempt_2/group_1/default_pg/0//rank_1") == b"second group"


def test_one_process_stops_at_once_on_its_signal_or_at_stop_after(no_launcher):
    vote = StopVote(init_distributed("none", device="cpu"))
    assert not vote.vote(False) and not vote.vote(False, stop_after_reached=False)
    assert vote.vote(False, stop_after_reached=True) and vote.reason == "stop_after"
    assert vote.vote(True) and vote.reason == "signal"
    assert vote.close() is False  # nothing in flight


def _vote_on_two_ranks(rank: int, port: int, results) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    dist = init_distributed("gloo", device="cpu")
    vote = StopVote(dist)
    step, stopped = 0, False
    while not stopped and step < 10:
        step += 1
        stopped = vote.vote(signalled=rank == 1 and step >= 3)  # only rank 1 gets the "SIGTERM", at step 3
    vote.close()
    dist.barrier()
    results[rank] = (step, vote.reason)
    dist.shutdown()


def test_two_gloo_ranks_agree_to_stop_one_step_after_either_is_signalled():
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_vote_on_two_ranks, args=(free_port(), results), nprocs=2, join=True)
        outcome = dict(results)
    # the same step on both ranks, one after the signal; each says whose signal it was
    assert outcome == {0: (4, "another rank's signal"), 1: (4, "signal")}


_HOROVOD_OBJECTS = """
from eegfm.training.distributed import init_distributed

dist = init_distributed("horovod", device="cpu")
# Rank-dependent types: Horovod names a collective after its object's type unless told otherwise.
got = dist.broadcast_object({"w": 1} if dist.is_main else None)
gathered = dist.gather_objects(None if dist.rank else [1, 2])
print("rank", dist.rank, got, gathered, flush=True)
dist.shutdown()
"""


@pytest.mark.skipif(
    shutil.which("horovodrun", path=os.path.dirname(sys.executable)) is None, reason="horovod is not installed"
)
def test_horovod_object_collectives_match_when_ranks_hold_different_types(tmp_path):
    # Fine-tuning's best_weights broadcast a dict from rank 0 and None elsewhere: both ranks waited forever.
    horovodrun = shutil.which("horovodrun", path=os.path.dirname(sys.executable))
    script = tmp_path / "objects.py"
    script.write_text(_HOROVOD_OBJECTS)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=repo, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    done = subprocess.run(
        [horovodrun, "-np", "2", "-H", "localhost:2", "--gloo", sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=repo,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for rank in (0, 1):
        assert f"rank {rank} {{'w': 1}} [[1, 2], None]" in done.stdout
