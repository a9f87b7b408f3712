"""One process group for every launcher: torchrun (DDP over gloo or NCCL), horovodrun, or none.

:func:`init_distributed` reads the launcher's environment and returns a :class:`Dist` whose few
collectives work the same on all of them. Gradient synchronisation differs: DDP wraps the model
(:meth:`Dist.wrap_model`, skipped on accumulation micro-steps by :meth:`Dist.no_sync`), Horovod
the optimizer (:meth:`Dist.wrap_optimizer`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import inspect
import itertools
import os
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as torch_dist
from torch import nn

from eegfm.training.run_options import BACKENDS


class DistributedError(RuntimeError):
    """The launcher's environment and the requested backend do not fit together."""


def _horovod() -> Any:
    import horovod.torch as hvd  # optional: built only on machines that run horovodrun

    return hvd


@dataclasses.dataclass
class Dist:
    backend: str  # 'none' | 'gloo' | 'nccl' | 'horovod'
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def uses_ddp(self) -> bool:
        return self.backend in ("gloo", "nccl") and self.is_distributed

    def wrap_model(self, model: nn.Module) -> nn.Module:
        """DDP for torchrun runs; the bare model otherwise (Horovod syncs in the optimizer)."""
        if self.backend == "horovod":
            _horovod().broadcast_parameters(model.state_dict(), root_rank=0)
            return model
        if not self.uses_ddp:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        # Every parameter gets a gradient each step (tests/model pin this): no unused-parameter
        # search. The only buffers are constants: no broadcast before each step (torch 2.13
        # renamed the switch; the GPU image may carry an older torch).
        ddp = nn.parallel.DistributedDataParallel
        renamed = "forward_sync_buffers" in inspect.signature(ddp).parameters
        return ddp(model, device_ids=device_ids, **{"forward_sync_buffers" if renamed else "broadcast_buffers": False})

    def wrap_optimizer(
        self, optimizer: torch.optim.Optimizer, model: nn.Module, accumulation_steps: int
    ) -> torch.optim.Optimizer:
        if self.backend != "horovod":
            return optimizer
        hvd = _horovod()
        wrapped = hvd.DistributedOptimizer(
            optimizer,
            named_parameters=unwrap(model).named_parameters(),
            backward_passes_per_step=accumulation_steps,
            op=hvd.Average,
        )
        hvd.broadcast_optimizer_state(wrapped, root_rank=0)
        return wrapped

    @contextlib.contextmanager
    def no_sync(self, model: nn.Module, skip: bool) -> Iterator[None]:
        """Skip DDP's gradient all-reduce for this backward when ``skip`` (accumulation)."""
        if skip and isinstance(model, nn.parallel.DistributedDataParallel):
            with model.no_sync():
                yield
        else:
            yield

    def mean(self, values: dict[str, float | torch.Tensor]) -> dict[str, float]:
        """Average scalars (numbers or 0-dim tensors, read here) over ranks, as floats (one all-reduce)."""
        return self._reduce(values, "mean")

    def max(self, values: dict[str, float | torch.Tensor]) -> dict[str, float]:
        return self._reduce(values, "max")

    def _reduce(self, values: dict[str, float | torch.Tensor], op: str) -> dict[str, float]:
        if not self.is_distributed or not values:
            return {k: float(v) for k, v in values.items()}
        keys = sorted(values)
        tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
        if self.backend == "horovod":
            hvd = _horovod()
            if op == "mean":
                tensor = hvd.allreduce(tensor, op=hvd.Average, name=f"reduce.{op}.{','.join(keys)}")
            else:
                tensor = hvd.allgather(tensor[None], name=f"reduce.{op}.{','.join(keys)}").max(dim=0).values
        else:
            tensor = tensor.to(self.device)
            torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM if op == "mean" else torch_dist.ReduceOp.MAX)
            if op == "mean":
                tensor = tensor / self.world_size
        return {k: float(v) for k, v in zip(keys, tensor.cpu().tolist())}

    def any(self, flag: bool) -> bool:
        """True on every rank when any rank's ``flag`` is set (e.g. one rank got SIGTERM)."""
        return self.max({"flag": float(flag)})["flag"] > 0.5

    def any_started(self, flag: bool) -> Callable[[], bool]:
        """:meth:`any` in two halves: the reduction starts now, the returned function reads it.
        Meanwhile the host can queue more GPU work (on NCCL, reading at once waits for the GPU)."""
        if not self.is_distributed or self.backend == "horovod":
            value = self.any(flag)  # Horovod reduces host tensors on its own thread: nothing queued
            return lambda: value
        tensor = torch.full((1,), float(flag), device=self.device)  # a fill: no copy from the host
        work = torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.MAX, async_op=True)
        if self.device.type != "cuda":
            return lambda: (work.wait(), bool(tensor.item() > 0.5))[1]
        # Queue the read-back now, before the next step's kernels; NCCL's wait() orders the streams.
        work.wait()
        host = torch.empty(1, pin_memory=True)
        host.copy_(tensor, non_blocking=True)
        copied = torch.cuda.Event()
        copied.record()
        return lambda: (copied.synchronize(), bool(host.item() > 0.5))[1]

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (small, picklable, trusted: our own loader positions), in rank order."""
        if not self.is_distributed:
            return [obj]
        if self.backend == "horovod":
            # Horovod matches collectives by name, by default the object's type: None vs dict hangs.
            return list(_horovod().allgather_object(obj, name="eegfm.gather_objects"))
        out: list[Any] = [None] * self.world_size
        torch_dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.is_distributed:
            return obj
        if self.backend == "horovod":
            return _horovod().broadcast_object(obj, root_rank=0, name="eegfm.broadcast_object")  # see gather_objects
        box = [obj]
        torch_dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.is_distributed and self.backend == "horovod":
            _horovod().barrier()
        elif self.is_distributed:
            torch_dist.barrier()

    def shutdown(self) -> None:
        if self.uses_ddp and torch_dist.is_initialized():
            torch_dist.destroy_process_group()
        elif self.backend == "horovod":
            _horovod().shutdown()


class StopVote:
    """Whether to stop after this step, agreed by all ranks: some rank got a signal, or
    ``--stop_after`` was reached. Call :meth:`vote` once per step on every rank.

    Distributed runs act on the previous step's vote (started by :meth:`Dist.any_started`), so the
    host never waits for the GPU; every rank stops one step after the signal. :meth:`close` waits
    for the reduction in flight (call it before the collectives that follow the loop).
    """

    def __init__(self, dist: Dist) -> None:
        self.dist = dist
        self.reason = ""
        self._pending: Callable[[], bool] | None = None

    def vote(self, signalled: bool, stop_after_reached: bool = False) -> bool:
        """``signalled``: this rank's own request; ``stop_after_reached`` must be the same on every
        rank (a step count), so it needs no vote and acts at once."""
        if self.dist.is_distributed:
            agreed = self.close()
            self._pending = self.dist.any_started(signalled)
        else:
            agreed = bool(signalled)
        if agreed:
            self.reason = "signal" if signalled else "another rank's signal"
        elif stop_after_reached:
            self.reason = "stop_after"
        return agreed or stop_after_reached

    def close(self) -> bool:
        """Wait for the reduction in flight, if any; its result (False if none)."""
        pending, self._pending = self._pending, None
        return pending() if pending is not None else False


def unwrap(model: nn.Module) -> nn.Module:
    """The user's model inside DDP / torch.compile wrappers."""
    while isinstance(model, nn.parallel.DistributedDataParallel) or hasattr(model, "_orig_mod"):
        model = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model._orig_mod
    return model


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"environment variable {name}: expected an integer; got {value!r}") from None


def init_distributed(backend: str = "auto", *, device: str = "auto", timeout_s: float = 1800.0) -> Dist:
    """Join the process group the launcher set up; a single process when there is none.
    ``backend`` auto: NCCL on GPU, gloo on CPU under torchrun; ``device`` auto: this rank's GPU if any."""
    if backend not in BACKENDS:
        raise DistributedError(f"backend: expected one of {', '.join(BACKENDS)}; got {backend!r}")
    if device not in ("auto", "cpu", "cuda"):
        raise DistributedError(f"device: expected one of auto, cpu, cuda; got {device!r}")
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise DistributedError("device: 'cuda' requested but torch.cuda.is_available() is False")

    if backend == "horovod":
        try:
            hvd = _horovod()
        except ImportError as err:
            raise DistributedError(
                "backend 'horovod': horovod.torch cannot be imported (scripts/install_horovod.sh builds it)"
            ) from err
        hvd.init()
        return Dist("horovod", hvd.rank(), hvd.size(), hvd.local_rank(), _device(use_cuda, hvd.local_rank()))

    world_size = _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0)
    # Without a launcher (no RANK in the environment) gloo/nccl/auto mean "one process".
    if backend == "none" or "RANK" not in os.environ:
        if world_size > 1:
            raise DistributedError(
                f"backend {backend!r}: WORLD_SIZE={world_size} says this is one of several processes; "
                "use backend auto, gloo or nccl under torchrun"
            )
        return Dist("none", 0, 1, 0, _device(use_cuda, 0))
    if backend == "auto":
        backend = "nccl" if use_cuda else "gloo"
    if backend == "nccl" and not use_cuda:
        raise DistributedError("backend 'nccl': needs CUDA GPUs; use 'gloo' on CPU")
    dev = _device(use_cuda, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not torch_dist.is_initialized():
        timeout = datetime.timedelta(seconds=timeout_s)
        torch_dist.init_process_group(
            backend=backend,
            timeout=timeout,
            store=_attempt_store(timeout),
            rank=_env_int("RANK", 0),
            world_size=world_size,
            device_id=dev if dev.type == "cuda" else None,
        )
    return Dist(backend, torch_dist.get_rank(), torch_dist.get_world_size(), local_rank, dev)


_GROUPS_JOINED = itertools.count()


def _attempt_store(timeout: datetime.timedelta) -> torch_dist.Store | None:
    """Under torchrun, the agent's store with keys of this restart attempt only; else None.

    torchrun hands every restart round the same store without a per-attempt prefix: a new round
    could read the addresses the killed round published and wait for a gloo pair until the timeout.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    store = torch_dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        _env_int("WORLD_SIZE", 1),
        is_master=False,
        timeout=timeout,
    )
    # Nor its earlier group's keys where a process joins again (evaluation.loso: one run per fold).
    group = next(_GROUPS_JOINED)
    return torch_dist.PrefixStore(
        f"eegfm/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/group_{group}", store
    )


def _device(use_cuda: bool, local_rank: int) -> torch.device:
    if not use_cuda:
        return torch.device("cpu")
    return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
