"""One shard's deterministic batch stream: its files' records, filtered, shuffled into open
batches, each window's samples copied into its batch row as it arrives.

Sharding: ``S = world_size * max(1, num_workers)`` shards (``s = rank * W + worker``) share one
file permutation per epoch; with ``m = min(F, S)``, file ``j`` is read by the ``c`` shards with
``s % m == j % m``, each keeping every c-th record. With ``F >= S`` every file goes whole to one shard.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from eegfm.contract.tfrecord import CorruptTFRecordError, read_records
from eegfm.contract.windows import Window
from eegfm.model.batch import Rows, Specs, assemble, signal_specs, stack
from eegfm.training.augment import augment_batch
from eegfm.training.data.catalog import open_source
from eegfm.training.data.config import EEG_DTYPES, LoaderConfig
from eegfm.training.data.handoff import Handoff


def shard_files(n_files: int, n_shards: int, shard: int, every_file: bool = False) -> list[tuple[int, int, int]]:
    """``(file position, stride, offset)`` for each file ``shard`` reads: it keeps the records
    ``r`` with ``r % stride == offset`` of the file at that position (see the module docstring).
    ``every_file``: each shard reads every file and keeps its ``1 / n_shards`` of each."""
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard: expected 0 <= shard < {n_shards}; got {shard}")
    if every_file:
        return [(j, n_shards, shard) for j in range(n_files)]
    m = min(n_files, n_shards)
    if m == 0:
        return []
    readers = [s for s in range(n_shards) if s % m == shard % m]
    stride, offset = len(readers), readers.index(shard)
    return [(j, stride, offset) for j in range(n_files) if j % m == shard % m]


def shard_loads(counts: Sequence[int], n_shards: int, every_file: bool = False) -> list[float]:
    """The windows each shard gets (about: shared files split evenly) when file ``j`` holds
    ``counts[j]`` of the windows wanted."""
    return [
        sum(counts[j] / stride for j, stride, _ in shard_files(len(counts), n_shards, shard, every_file))
        for shard in range(n_shards)
    ]


def seed_sequence(seed: int, epoch: int, purpose: int, *more: int) -> np.random.SeedSequence:
    """Independent streams per purpose (0 files, 1 shuffle, 2 augmentation)."""
    return np.random.SeedSequence([seed, epoch, purpose, *more])


def _flag_last(batches: Iterable[Any]) -> Iterator[tuple[Any, bool]]:
    """Pair each batch with "is the epoch's last", so a resume never replays a finished epoch."""
    iterator = iter(batches)
    previous = next(iterator, None)
    for batch in iterator:
        yield previous, False
        previous = batch
    if previous is not None:
        yield previous, True


class Storage:
    """Where a shard builds its batches' ``eeg``/``ecg``: segments of the worker's hand-off (sent
    in place), else new tensors, in shared memory where a DataLoader worker's pickler sends them."""

    def __init__(self, handoff: Handoff | None = None, shared: bool = False):
        self.handoff, self.shared = handoff, shared

    def acquire(self, specs: Specs) -> dict[str, torch.Tensor]:
        tensors = None if self.handoff is None else self.handoff.buffers(specs)
        if tensors is None:
            tensors = {name: torch.empty(shape, dtype=dtype) for name, (dtype, shape) in specs.items()}
            if self.shared:
                tensors = {name: t.share_memory_() for name, t in tensors.items()}
        return tensors

    def release(self, tensors: dict[str, torch.Tensor]) -> None:
        """``tensors`` are no longer needed here: sent, copied out, or merged away."""
        if self.handoff is not None:
            self.handoff.discard(tensors)  # a no-op unless they lie in a segment not sent


class Open:
    """A batch being filled: its windows in arrival order, and the tensors (once there are any)
    whose rows already hold the samples of the windows placed so far."""

    __slots__ = ("windows", "tensors", "rows", "ecg")

    def __init__(self, windows: list[Window] | None = None):
        self.windows: list[Window] = [] if windows is None else windows
        self.tensors: dict[str, torch.Tensor] | None = None
        self.rows: tuple[Rows, Rows] | None = None  # writers of the eeg and ecg rows
        self.ecg = False  # some window has ECG

    def allocate(self, size: int, n_times: int, dtype: torch.dtype, storage: Storage) -> dict[str, torch.Tensor]:
        self.tensors = storage.acquire(signal_specs(size, n_times, dtype))
        self.rows = Rows(self.tensors["eeg"]), Rows(self.tensors["ecg"])
        return self.tensors

    def place(self, window: Window, row: int, size: int, dtype: torch.dtype, storage: Storage) -> None:
        """Copy ``window``'s samples into row ``row`` now, while its record is in the CPU cache, and
        let the record go; the window remembers where its samples are."""
        if self.tensors is None:
            self.allocate(size, window.n_times, dtype, storage)
        ecg = window.samples("ecg")
        self.rows[0].put(row, window.samples("eeg"))
        self.rows[1].put(row, ecg)
        self.ecg |= ecg is not None
        window.eeg = window.ecg = None
        window.placed = self.tensors, row, ecg is not None


_PLAN_MAX_WINDOWS = 1 << 16  # a larger epoch waits for its first shuffle_buffer windows only (see _plan)


class _Arrival:
    """A stand-in for a window in ``ShardStream._plan``: its number in the arrival order."""

    __slots__ = ("index", "n_times", "placed")

    def __init__(self, index: int, n_times: int):
        self.index, self.n_times, self.placed = index, n_times, None


class ShardStream:
    """The deterministic batch stream of one shard: everything but the DataLoader plumbing.

    Each window joins one of ``ceil(shuffle_buffer / batch size)`` open batches of its length by a
    seeded draw; a full batch is emitted and replaced, so a batch mixes about the last
    ``shuffle_buffer`` records. Samples are copied into their row on arrival, while the record is
    in the CPU cache (1.09-1.115x the windows/s of a shuffle buffer).
    """

    def __init__(self, files: Sequence[str], config: LoaderConfig, shard: int, n_shards: int, every_file: bool = False):
        self.files, self.config, self.shard, self.n_shards = list(files), config, shard, n_shards
        self.every_file = every_file
        self.dtype = EEG_DTYPES[config.eeg_dtype]
        # (path, stride, offset) -> its kept windows' lengths as (n_times, count) runs, for _plan
        self._lengths: dict[tuple[str, int, int], tuple[tuple[int, int], ...]] = {}
        self._epoch_shares: tuple[int, list[tuple[str, int, int]]] = (-1, [])

    def file_order(self, epoch: int) -> list[str]:
        if not self.config.shuffle:
            return self.files
        order = np.random.default_rng(seed_sequence(self.config.seed, epoch, 0)).permutation(len(self.files))
        return [self.files[i] for i in order]

    def _shares(self, epoch: int) -> list[tuple[str, int, int]]:
        """``(path, stride, offset)`` of each file share the shard reads in ``epoch``, in order."""
        if self._epoch_shares[0] != epoch:  # asked twice an epoch (plan, read)
            files = self.file_order(epoch)
            shares = shard_files(len(files), self.n_shards, self.shard, self.every_file)
            self._epoch_shares = (epoch, [(files[position], stride, offset) for position, stride, offset in shares])
        return self._epoch_shares[1]

    def windows(self, epoch: int) -> Iterator[Window]:
        keep = self.config.filters.accepts
        for path, stride, offset in self._shares(epoch):
            lengths: list[int] = []
            with open_source(path) as source:
                try:
                    records = read_records(source, "SNAPPY", self.config.verify_crc, stride=stride, offset=offset)
                    for index, raw in zip(itertools.count(offset, stride), records):
                        window = Window(raw, path, index, self.config.split_samples)
                        if keep(window):
                            lengths.append(window.n_times)
                            yield window
                    self._lengths[path, stride, offset] = tuple(
                        (n_times, sum(1 for _ in run)) for n_times, run in itertools.groupby(lengths)
                    )
                except CorruptTFRecordError as err:
                    if err.path == path:
                        raise
                    # A remote file object may not know its name: put the path in the message.
                    raise CorruptTFRecordError(path, err.offset, err.reason, block_offset=err.block_offset) from None

    def open_batches(self, n_times: int) -> int:
        """How many batches of windows of ``n_times`` samples are filled at once."""
        config = self.config
        if not config.shuffle or config.shuffle_buffer <= 1:
            return 1
        return max(1, -(-config.shuffle_buffer // config.batch_size_for(n_times)))

    def batches(
        self, epoch: int, skip: int = 0, storage: Storage | None = None
    ) -> Iterator[tuple[int, bool, dict[str, Any] | None]]:
        """``(index, last of the epoch, batch)`` for each batch of ``epoch``; the first ``skip``
        batches come as None, and no sample of theirs is copied (fast-forward on resume)."""
        storage = Storage() if storage is None else storage
        for index, ((windows, filled), last) in enumerate(_flag_last(self._grouped(epoch, skip, storage))):
            if index < skip:
                yield index, last, None
                continue
            yield index, last, self.finish(windows, epoch, index, filled)
            storage.release(filled.tensors)  # sent or copied out by now

    def _grouped(
        self, epoch: int, skip: int, storage: Storage, arrivals: Iterable[Any] | None = None
    ) -> Iterator[tuple[list[Window], Open | None]]:
        """The epoch's batches as windows and, from ``skip`` on, their filled tensors; given
        ``arrivals`` (``_plan``'s stand-ins), those batched and never filled."""
        config, dtype = self.config, self.dtype
        # Copying each window as it arrives needs a row copy or a one-thread conversion; with
        # more threads a float32 batch converts in one call when it is complete (see batch.stack).
        eager = arrivals is None and (dtype == torch.float16 or torch.get_num_threads() == 1)
        if eager:
            plan = self._plan(epoch)
            if plan is not None:
                yield from self._placed(epoch, skip, storage, *plan)
                return
        rng = np.random.default_rng(seed_sequence(config.seed, epoch, 1, self.shard))
        draws: list[float] = []
        groups: dict[int, list[Open]] = {}
        emitted = 0
        # An epoch of fewer windows than the shuffle buffer ends with all of them in open batches,
        # which the end merges: nothing is placed before that many windows have arrived.
        defer = config.shuffle_buffer if config.shuffle else 0
        sizes: dict[int, int] = {}
        for arrived, window in enumerate(self._mixed(epoch, rng, arrivals)):
            group = groups.get(window.n_times)
            if group is None:
                group = groups[window.n_times] = [Open() for _ in range(self.open_batches(window.n_times))]
                sizes[window.n_times] = config.batch_size_for(window.n_times)
            size = sizes[window.n_times]
            slot = 0
            if len(group) > 1:
                if not draws:  # one numpy call per 256 draws, not per window (~2 us each)
                    draws = rng.random(256).tolist()
                slot = int(draws.pop() * len(group))
            batch = group[slot]
            batch.windows.append(window)
            if eager and emitted >= skip and arrived >= defer:
                batch.place(window, len(batch.windows) - 1, size, dtype, storage)
            if len(batch.windows) == size:
                group[slot] = Open()
                yield batch.windows, self._filled(batch, arrivals is None and emitted >= skip, storage)
                emitted += 1
        for n_times in sorted(groups):
            # The epoch's last batches: the fullest open batch is topped up from the emptiest,
            # so only the windows that move are copied again.
            size = config.batch_size_for(n_times)
            group = sorted((b for b in groups[n_times] if b.windows), key=lambda b: len(b.windows), reverse=True)
            drained = []
            while group:
                base = group.pop(0)
                while len(base.windows) < size and group:
                    donor = group[-1]
                    take = min(size - len(base.windows), len(donor.windows))
                    base.windows += donor.windows[len(donor.windows) - take :]
                    del donor.windows[len(donor.windows) - take :]
                    if not donor.windows:
                        drained.append(group.pop())
                if len(base.windows) < size and config.drop_last:
                    drained.append(base)
                    break
                yield base.windows, self._filled(base, arrivals is None and emitted >= skip, storage)
                emitted += 1
            for batch in drained + group:
                if batch.tensors is not None:
                    storage.release(batch.tensors)

    def _mixed(self, epoch: int, rng: np.random.Generator, arrivals: Iterable[Any] | None = None) -> Iterator[Any]:
        """The epoch's windows with the first ``shuffle_buffer`` permuted: on data stored in label
        order the first open batches would otherwise all be of one class."""
        windows = iter(self.windows(epoch) if arrivals is None else arrivals)
        if self.config.shuffle and self.config.shuffle_buffer > 1:
            first = list(itertools.islice(windows, self.config.shuffle_buffer))
            yield from (first[i] for i in rng.permutation(len(first)).tolist())
            del first
        yield from windows

    def _plan(self, epoch: int) -> tuple[list[list[int]], list[int]] | None:
        """The batches of ``epoch`` (each as its rows' arrival numbers) and the windows' lengths, from
        the stream's own algorithm run on stand-ins, once the shard has read its file shares through
        (at most ``_PLAN_MAX_WINDOWS`` windows); else None. Lets every window be copied on arrival."""
        runs = [self._lengths.get(share) for share in self._shares(epoch)]
        if None in runs or sum(count for share in runs for _, count in share) > _PLAN_MAX_WINDOWS:
            return None
        lengths = [n_times for share in runs for n_times, count in share for _ in range(count)]
        arrivals = [_Arrival(index, n_times) for index, n_times in enumerate(lengths)]
        batches = [
            [arrival.index for arrival in windows] for windows, _ in self._grouped(epoch, 0, Storage(), arrivals)
        ]
        return batches, lengths

    def _placed(
        self, epoch: int, skip: int, storage: Storage, plan: list[list[int]], lengths: list[int]
    ) -> Iterator[tuple[list[Window], Open | None]]:
        """``_grouped``'s batches by ``plan``: each window placed on arrival, each batch emitted
        once it and all before it are complete; batches before ``skip`` are counted, not filled."""
        batch_of, row_of = [-1] * len(lengths), [0] * len(lengths)  # -1: in no batch (drop_last)
        for number, members in enumerate(plan):
            for row, arrival in enumerate(members):
                batch_of[arrival], row_of[arrival] = number, row
        missing = [len(members) for members in plan]
        opened: list[Open | None] = [None] * len(plan)
        emitted, arrived = 0, 0
        for arrived, window in enumerate(self.windows(epoch), 1):
            if arrived > len(lengths) or window.n_times != lengths[arrived - 1]:
                raise RuntimeError(
                    f"{window.path}: record {window.index}: expected the windows an earlier pass "
                    f"read from it ({len(lengths)} this epoch); window {arrived} differs (length "
                    f"{window.n_times}): the file changed during training"
                )
            number = batch_of[arrived - 1]
            if number < 0:
                continue
            if number >= skip:
                batch = opened[number]
                if batch is None:
                    batch = opened[number] = Open([None] * len(plan[number]))
                row = row_of[arrived - 1]
                batch.windows[row] = window
                batch.place(window, row, self.config.batch_size_for(window.n_times), self.dtype, storage)
            missing[number] -= 1
            while emitted < len(plan) and not missing[emitted]:
                batch, opened[emitted] = opened[emitted], None
                yield ([], None) if batch is None else (batch.windows, batch)
                emitted += 1
        if arrived != len(lengths):
            raise RuntimeError(
                f"shard {self.shard}: epoch {epoch}: expected the {len(lengths)} windows of an earlier "
                f"pass over its files; got {arrived}: a file changed during training"
            )

    def _filled(self, batch: Open, live: bool, storage: Storage) -> Open | None:
        """``batch`` with every window's samples in its tensors (None for a skipped batch); windows
        placed elsewhere (an epoch's last batches) or not yet are copied in now."""
        if not live:
            return None
        windows = batch.windows
        tensors = batch.tensors
        if tensors is not None and all(
            w.placed is not None and w.placed[0] is tensors and w.placed[1] == row for row, w in enumerate(windows)
        ):
            return batch
        ecgs = [w.samples("ecg") if w.placed is None else None for w in windows]
        batch.ecg = any(
            ecg is not None if w.placed is None else w.placed[2] for w, ecg in zip(windows, ecgs, strict=True)
        )
        if tensors is None:
            tensors = batch.allocate(len(windows), windows[0].n_times, self.dtype, storage)
        if all(w.placed is None for w in windows):
            stack([w.samples("eeg") for w in windows], tensors["eeg"])
            stack(ecgs, tensors["ecg"])
            return batch
        eeg_rows, ecg_rows = batch.rows
        for row, (window, ecg) in enumerate(zip(windows, ecgs, strict=True)):
            if window.placed is None:
                eeg_rows.put(row, window.samples("eeg"))
                ecg_rows.put(row, ecg)
            elif window.placed[0] is not tensors or window.placed[1] != row:
                source, at, _ = window.placed
                eeg_rows.put(row, source["eeg"][at])
                ecg_rows.put(row, source["ecg"][at])
        return batch

    def finish(self, windows: list[Window], epoch: int, index: int, batch: Open) -> dict[str, Any]:
        """The batch dict of ``windows`` around ``batch``'s tensors, augmented by a generator
        seeded by epoch, shard and batch index."""
        n = len(windows)  # an epoch's last batch may fill only the first rows
        signals = {
            name: tensor if tensor.shape[0] == n else tensor[:n]
            for name, tensor in batch.tensors.items()
            if name == "eeg" or batch.ecg
        }
        out = assemble(windows, signals)
        if self.config.augment.enabled:
            state = seed_sequence(self.config.seed, epoch, 2, self.shard, index).generate_state(1, np.uint64)
            generator = torch.Generator().manual_seed(int(state[0]))
            out = augment_batch(out, self.config.augment, generator)
        return out
