"""The loader a training or evaluation loop iterates: one DDP rank's batches, resumable.

Every batch carries its shard position (worker, epoch, index, last of epoch); ``state_dict()``
holds each worker's. On resume each worker skips the batches it had delivered without decoding
them, and the worker after the last to deliver goes first, so DataLoader's round-robin repeats the
uninterrupted sequence bit for bit (same files, seed, world_size and num_workers: checked).
Training iterates forever (``infinite=True``: shards differ by up to a file, so ranks never run
out at different steps); ``infinite=False`` gives one epoch per ``iter()``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader

from eegfm.core.config import check_int
from eegfm.core.logs import get_logger
from eegfm.training.data.catalog import (
    DataPaths,
    estimated_windows,
    file_key,
    first_record_bytes,
    list_shards,
    shard_name,
)
from eegfm.training.data.config import AUTO, LoaderConfig
from eegfm.training.data.handoff import Handoff, handoff_supported
from eegfm.training.data.stream import shard_loads
from eegfm.training.data.workers import FAILED, Machine, ShardDataset, as_is, auto_num_workers, from_wire, open_segments

STATE_VERSION = 1

log = get_logger(__name__)


def _distributed(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Explicit values, else torch.distributed's, else torchrun's RANK/WORLD_SIZE, else (0, 1)."""
    if rank is None or world_size is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            found = torch.distributed.get_rank(), torch.distributed.get_world_size()
        else:
            found = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        rank = found[0] if rank is None else rank
        world_size = found[1] if world_size is None else world_size
    check_int("world_size", world_size, 1)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank: expected an integer in [0, {world_size}); got {rank!r}")
    return rank, world_size


_BATCHING = ("batch_size", "token_budget", "max_batch_size", "patch_size", "drop_last", "shuffle", "shuffle_buffer")


def _batching(config: LoaderConfig) -> dict[str, Any]:
    """What decides which windows make up a shard's n-th batch, as a checkpoint keeps it (JSON types)."""
    batching = {**{name: getattr(config, name) for name in _BATCHING}, "filters": dataclasses.asdict(config.filters)}
    return json.loads(json.dumps(batching))


def _uneven(counts: list[int], n_shards: int, rank: int) -> bool:
    """Whether dealing files of ``counts`` windows to ``n_shards`` shards leaves one with none or
    with under half of another's windows (then every shard reads every file)."""
    loads = shard_loads(counts, n_shards)
    if min(loads) > 0 and min(loads) * 2 >= max(loads):
        return False
    if rank == 0:
        log.info(
            "loader: dealing the %d files that hold the %d windows wanted to %d shards would give them "
            "%d to %d windows each; every shard reads all %d files and keeps its share of each",
            len(counts),
            sum(counts),
            n_shards,
            round(min(loads)),
            round(max(loads)),
            len(counts),
        )
    return True


def _whole_epoch_shuffle(
    config: LoaderConfig, counts: Sequence[int], n_shards: int, every_file: bool, sample_file: str, rank: int
) -> LoaderConfig:
    """``config`` with a shuffle buffer that holds a shard's whole epoch, where it fits in
    ``config.full_shuffle_mb`` (``counts``: the wanted windows of each file)."""
    if not config.shuffle or config.full_shuffle_mb <= 0:
        return config
    if every_file:
        most = sum(-(-n // n_shards) for n in counts)
    elif len(counts) < n_shards:  # a file over at least n_shards // n_files shards, each keeping its share
        most = -(-max(counts) // (n_shards // len(counts)))
    else:  # whole files, dealt in a new order each epoch: at most the largest files a shard gets
        per_shard = -(-len(counts) // n_shards)
        most = sum(sorted(counts)[len(counts) - per_shard :])
    if most <= config.shuffle_buffer:
        return config
    mib = most * first_record_bytes(sample_file) / 2**20
    if mib > config.full_shuffle_mb:
        return config
    if rank == 0:
        log.info(
            "loader: shuffle buffer %d -> %d windows, a shard's whole epoch (%.0f MiB of at most "
            "full_shuffle_mb=%g): each epoch is a uniform shuffle",
            config.shuffle_buffer,
            most,
            mib,
            config.full_shuffle_mb,
        )
    return dataclasses.replace(config, shuffle_buffer=most)


class EEGLoader:
    """Batches of pipeline windows for one DDP rank; iterate it, checkpoint it with ``state_dict``.

    ``rank`` / ``world_size`` default to torch.distributed's or torchrun's. ``windows_per_file``
    (fine-tuning): the wanted windows per file; files without any are not read, and where dealing
    whole files is uneven every shard reads every file and keeps its share. ``num_workers="auto"``
    yields to a checkpoint's count on ``load_state_dict``.
    """

    def __init__(
        self,
        data_dir: DataPaths,
        config: LoaderConfig | None = None,
        *,
        rank: int | None = None,
        world_size: int | None = None,
        infinite: bool = True,
        windows_per_file: Mapping[str, int] | None = None,
    ):
        self.config = LoaderConfig() if config is None else config
        if not isinstance(self.config, LoaderConfig):
            raise TypeError(f"config: expected a LoaderConfig; got {type(self.config).__name__}")
        self.rank, self.world_size = _distributed(rank, world_size)
        filters = self.config.filters
        shards = list_shards(data_dir, sites=filters.sites, exclude_sites=filters.exclude_sites)
        self.files = [path for path, _ in shards]
        if not self.files:
            raise FileNotFoundError(
                f"data_dir: no non-empty TFRecord shards in {data_dir} for sites "
                f"{filters.sites or 'all'} (excluding {filters.exclude_sites or 'none'})"
            )
        key = file_key(self.files)
        if windows_per_file is not None:
            windows_per_file = {key(path): n for path, n in windows_per_file.items()}
            wanted = [path for path in self.files if windows_per_file.get(key(path), 0) > 0]
            if not wanted:
                raise ValueError(
                    f"windows_per_file: expected window counts for files of {data_dir} "
                    f"({', '.join(self.files[:3])}, ...); got none above 0"
                )
            shards = [(path, size) for path, size in shards if path in wanted]
            self.files = wanted
        self.infinite = infinite
        self.auto_workers = self.config.num_workers == AUTO
        if self.auto_workers:
            record_bytes = first_record_bytes(self.files[0])
            workers, why = auto_num_workers(
                self.config, record_bytes, Machine.here(), estimated_windows(shards, record_bytes), self.world_size
            )
            log.info("loader: num_workers auto -> %d (%s)", workers, why)
            self.config = dataclasses.replace(self.config, num_workers=workers)
        self.n_workers = max(1, self.config.num_workers)
        n_shards = self.world_size * self.n_workers
        self.every_file = False
        if windows_per_file is not None:
            counts = [windows_per_file[key(p)] for p in self.files]
            self.every_file = _uneven(counts, n_shards, self.rank)
            self.config = _whole_epoch_shuffle(self.config, counts, n_shards, self.every_file, self.files[0], self.rank)
        # Training loaders only: the remedy (more shards) is for the training data.
        if len(self.files) < n_shards and self.rank == 0 and not self.every_file and infinite:
            log.warning(
                "loader: %d file(s) for %d shards (%d rank(s) x %d worker(s)): each file is read by up to %d "
                "shards, and each of them reads and decompresses all of it to keep its share of the records; "
                "write at least %d files (eegfm-preprocess --max_shard_mb or --num_shards) to read every "
                "record once",
                len(self.files),
                n_shards,
                self.world_size,
                self.n_workers,
                -(-n_shards // len(self.files)),
                n_shards,
            )
        self.set_epoch(0)
        self.batches = 0  # handed out since the start of training

    @property
    def epoch(self) -> int:
        """The pass being run (finite), or the epoch every worker has at least reached (infinite)."""
        return self._epoch if not self.infinite else min(epoch for epoch, _ in self._positions)

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its beginning on the next ``iter()``."""
        check_int("epoch", epoch, 0)
        self._epoch = epoch
        self._positions = [(epoch, 0)] * self.n_workers
        self._next_worker = 0

    def _data_loader(self, handoff: Handoff | None) -> DataLoader:
        config = self.config
        dataset = ShardDataset(
            self.files,
            config,
            self.rank,
            self.world_size,
            list(self._positions),
            self._next_worker,
            None if self.infinite else self._epoch,
            handoff,
            self.every_file,
        )
        pin = torch.cuda.is_available() if config.pin_memory is None else config.pin_memory
        workers = config.num_workers
        prefetch = config.prefetch_factor if workers else None
        return DataLoader(
            dataset, batch_size=None, collate_fn=as_is, num_workers=workers, pin_memory=pin, prefetch_factor=prefetch
        )

    def __iter__(self) -> Iterator[dict[str, Any]]:
        handoff = None  # LoaderConfig.fast_ipc is read here only: without a hand-off, DataLoader's transfer
        if self.config.num_workers and self.config.fast_ipc and handoff_supported():
            handoff = Handoff(self.config.num_workers, extra_segments=open_segments(self.config))
        batches = iter(self._data_loader(handoff))
        try:
            for position, batch in batches:
                if position == FAILED:
                    raise batch
                worker, epoch, index, last = position
                self._positions[worker] = (epoch + 1, 0) if last else (epoch, index + 1)
                self._next_worker = (worker + 1) % self.n_workers
                self.batches += 1
                yield from_wire(batch)
        finally:
            del batches  # shuts the workers down before their sockets close
            if handoff is not None:
                handoff.close()
        if not self.infinite:  # the pass is complete
            self.set_epoch(self._epoch + 1)

    def _fingerprint(self) -> str:
        names = "\n".join(map(shard_name, self.files))
        return hashlib.sha256(names.encode()).hexdigest()[:16]

    def state_dict(self) -> dict[str, Any]:
        """The data position after the batches handed out so far (per rank; save every rank's)."""
        return {
            "version": STATE_VERSION,
            "epoch": self.epoch,
            "batches": self.batches,
            "workers": [list(p) for p in self._positions],
            "next_worker": self._next_worker,
            "pass_epoch": self._epoch,
            "seed": self.config.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            "num_workers": self.n_workers,
            "infinite": self.infinite,
            "files": self._fingerprint(),
            "batching": _batching(self.config),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where ``state`` was taken; the next ``iter()`` resumes there."""
        saved = state.get("num_workers")
        if self.auto_workers and type(saved) is int and saved >= 1 and saved != self.n_workers:
            # The shards are cut per worker: a run continues with the workers it started with.
            log.info("loader: resuming with the checkpoint's %d workers (auto gives %d here)", saved, self.n_workers)
            self.config = dataclasses.replace(self.config, num_workers=saved)
            self.n_workers = saved
        checked = ("version", "seed", "rank", "world_size", "num_workers", "infinite", "files")
        expected = {key: value for key, value in self.state_dict().items() if key in checked}
        for key, value in expected.items():
            if state.get(key) != value:
                if key == "files":
                    raise ValueError(
                        f"load_state_dict: the state was taken reading other TFRecord files (their "
                        f"fingerprint {state.get(key)!r}; these files' {value!r})"
                    )
                hint = f" (num_workers {AUTO!r} takes the checkpoint's)" if key == "num_workers" else ""
                raise ValueError(
                    f"load_state_dict: state[{key!r}] is {state.get(key)!r} but this loader has "
                    f"{value!r}; resuming needs the same files, seed, rank, world_size and "
                    f"num_workers{hint}"
                )
        positions = [tuple(int(v) for v in p) for p in state["workers"]]
        if len(positions) != self.n_workers or not 0 <= int(state["next_worker"]) < self.n_workers:
            raise ValueError(
                f"load_state_dict: state['workers'] must hold {self.n_workers} positions; got {state['workers']!r}"
            )
        self._positions, self._next_worker = positions, int(state["next_worker"])
        self._epoch, self.batches = int(state["pass_epoch"]), int(state["batches"])
        saved, now = state.get("batching"), _batching(self.config)
        if saved is not None and saved != now:  # allowed (a smaller batch for a smaller GPU), but not exact
            changed = ", ".join(f"{k} {saved.get(k)!r} -> {v!r}" for k, v in now.items() if saved.get(k) != v)
            log.warning(
                "loader: resuming with other batching than the checkpoint's (%s): positions count batches, "
                "so the resumed epoch does not continue where the run stopped (some of its windows come "
                "twice or not at all); the epochs after it are whole",
                changed,
            )
