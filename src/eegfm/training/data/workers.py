"""The loader's DataLoader workers: how many (``num_workers="auto"``), what each runs, and how its
batches cross: small fields pickled by value as numpy arrays (a tensor would cross as a segment and
a descriptor of its own), ``eeg``/``ecg`` in one hand-off segment (``fast_ipc``) or shared tensors.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from eegfm.contract.schema import SchemaError
from eegfm.contract.tfrecord import CorruptTFRecordError
from eegfm.core.machine import Cpus
from eegfm.core.threads import pool_threads
from eegfm.training.data.config import LoaderConfig
from eegfm.training.data.handoff import Handoff, resolve_shared
from eegfm.training.data.stream import ShardStream, Storage

SHARED_KEYS = ("eeg", "ecg")  # from workers via shared memory; small fields pickle by value
_SHARED = "_shared"  # the wire batch's key for the hand-off's reference to its shared tensors
FAILED = "failed"  # in place of a batch's position: a worker's data error follows
AUTO_MAX_WORKERS = 16
AUTO_MIN_BATCHES = 4  # per worker and epoch, for num_workers "auto" (see auto_num_workers)


@dataclasses.dataclass(frozen=True)
class Machine:
    """What ``num_workers="auto"`` sizes the loader by: ``cpus`` in the affinity mask,
    ``total_cpus`` (the machine's, or its container's quota), ``local_ranks``, ``memory`` available
    in bytes (None: unknown)."""

    cpus: int
    total_cpus: int
    local_ranks: int = 1
    memory: int | None = None
    cuda: bool = False

    @classmethod
    def here(cls) -> Machine:
        pool = pool_threads()  # EEGFM_THREADS, where set, is this process's whole share
        cpus = Cpus(pool.count, pool.count) if pool.given_by else pool.cpus
        return cls(cpus.usable, cpus.total, cpus.local_ranks, _available_memory(), torch.cuda.is_available())

    @property
    def cpu_share(self) -> Cpus:
        return Cpus(self.cpus, self.total_cpus, self.local_ranks)


def _available_memory() -> int | None:
    """``MemAvailable`` from /proc/meminfo, in bytes (None where there is none)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def auto_num_workers(
    config: LoaderConfig, record_bytes: int, machine: Machine, corpus_windows: int | None = None, world_size: int = 1
) -> tuple[int, str]:
    """The workers ``num_workers="auto"`` runs with, and why.

    On the CPU one where the rank has three cores or more (the step keeps the others), else none:
    one worker delivers thousands of windows/s, many times what a CPU step takes, and the step
    needs the cores; in the training process the batches cost a ``cpu-tiny`` step 2-4 %. On a GPU every CPU
    of this rank's share but one, at most ``AUTO_MAX_WORKERS``, as many as fit in half the
    available memory, and few enough that each gets ``AUTO_MIN_BATCHES`` batches an epoch of a
    small corpus (each shard's epoch ends with a partial batch).
    """
    share = machine.cpu_share
    if not machine.cuda:
        if share.per_rank > 2:
            return 1, "CPU training: one worker overlaps reading with compute"
        return 0, f"CPU training on {share.describe()}: no core to spare for a worker beside two for the step"
    workers = share.per_rank - 1
    why = f"{share.describe()}, less one {'for it' if share.bound else 'each'}"
    if workers > AUTO_MAX_WORKERS:
        workers, why = AUTO_MAX_WORKERS, f"{why}, capped at {AUTO_MAX_WORKERS}"
    batch = config.batch_size or config.max_batch_size
    open_batches = -(-config.shuffle_buffer // batch) * batch if config.shuffle else batch
    held = (open_batches + (config.prefetch_factor + 1) * batch) * max(1, record_bytes)
    if machine.memory is not None:
        fits = machine.memory // 2 // max(1, machine.local_ranks) // held
        if fits < workers:
            workers = fits
            why += (
                f"; memory: each worker holds about {held / 2**20:.0f} MiB and half of "
                f"{machine.memory / 2**30:.1f} GiB available is shared by {machine.local_ranks} rank(s)"
            )
    if corpus_windows is not None:
        enough = corpus_windows // (max(1, world_size) * batch * AUTO_MIN_BATCHES)
        if enough < workers:
            workers = enough
            why += (
                f"; corpus: about {corpus_windows} windows over {world_size} rank(s) give "
                f"each worker at least {AUTO_MIN_BATCHES} batches of {batch} an epoch"
            )
    return max(1, workers), why


def to_wire(batch: dict[str, Any], handoff: Handoff | None) -> dict[str, Any]:
    """A worker's batch for the trip to the main process (see the module docstring)."""
    wire = {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in batch.items() if k not in SHARED_KEYS}
    shared = {k: batch[k] for k in SHARED_KEYS if k in batch}
    if handoff is None:
        return {**wire, **shared}
    wire[_SHARED] = handoff.send(get_worker_info().id, shared)
    return wire


def as_is(batch: Any) -> Any:
    """DataLoader's collate_fn: batches are made by the dataset (the default would turn the wire
    format's numpy arrays back into tensors in the worker)."""
    return batch


def from_wire(batch: dict[str, Any]) -> dict[str, Any]:
    batch = resolve_shared(batch, _SHARED)
    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in batch.items()}


def open_segments(config: LoaderConfig) -> int:
    """Segments a worker may hold beyond the hand-off's pool: its open batches for two window
    lengths and the batch held back to flag an epoch's last."""
    if not config.shuffle or config.shuffle_buffer <= 1:
        return 3
    return min(64, 2 * -(-config.shuffle_buffer // (config.batch_size or config.max_batch_size)) + 1)


@dataclasses.dataclass(eq=False)
class ShardDataset(IterableDataset):
    """What each DataLoader worker runs: its shard's batches from a start position, with positions.
    ``starts[w]`` is logical worker ``w``'s (epoch, batches delivered); DataLoader slot ``k`` plays
    logical worker ``(k + first) % n_workers``. ``pass_epoch``: the one epoch to run (None: all)."""

    files: Sequence[str]
    config: LoaderConfig
    rank: int
    world_size: int
    starts: Sequence[tuple[int, int]]
    first: int
    pass_epoch: int | None
    handoff: Handoff | None = None
    every_file: bool = False

    def __iter__(self) -> Iterator[tuple[tuple[int, int, int, bool], dict[str, Any]]]:
        n_workers = len(self.starts)
        info = get_worker_info()
        worker = ((0 if info is None else info.id) + self.first) % n_workers
        shard = self.rank * n_workers + worker
        stream = ShardStream(self.files, self.config, shard, self.world_size * n_workers, self.every_file)
        epoch, skip = self.starts[worker]
        if self.pass_epoch is not None:
            if epoch > self.pass_epoch:
                return
            epoch, skip = (epoch, skip) if epoch == self.pass_epoch else (self.pass_epoch, 0)
        epochs = itertools.count(epoch) if self.pass_epoch is None else [epoch]
        # In a worker, batches are built in the shared memory they are sent in.
        storage = Storage(self.handoff, shared=self.handoff is None) if info is not None else Storage()
        empty = 0
        for current in epochs:
            delivered = False
            try:
                for index, last, batch in stream.batches(current, skip if current == epoch else 0, storage):
                    delivered = True
                    if batch is not None:  # None: fast-forward, never decoded
                        yield (worker, current, index, last), batch if info is None else to_wire(batch, self.handoff)
            except (CorruptTFRecordError, SchemaError) as err:
                if info is None:
                    raise
                # Sent as a value, it is raised in the main process as itself (not a RuntimeError).
                yield FAILED, err
                return
            empty = 0 if delivered else empty + 1
            if empty > max(2, len(self.files)):
                dropped = ""
                if self.config.drop_last:
                    batch_size = self.config.batch_size or self.config.max_batch_size
                    dropped = f" and drop_last (an epoch's incomplete batch is dropped; batch size {batch_size})"
                raise RuntimeError(
                    f"shard {shard} of {stream.n_shards} (rank {self.rank}, worker {worker}) got no windows "
                    f"in {empty} epochs in a row: too few windows after filters{dropped} for world_size "
                    f"{self.world_size} x {n_workers} workers ({len(self.files)} files)"
                )
