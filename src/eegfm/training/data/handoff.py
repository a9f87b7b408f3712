"""A DataLoader worker's big tensors to the main process in shared memory, one descriptor per batch.

DataLoader sends each tensor over a new connection, in new shared memory the kernel zeroes every
batch. :class:`Handoff` opens one socket pair per worker before they fork; a worker builds a batch
in a pooled memfd segment, sends its descriptor and pickles a small :class:`SharedBatch` reference;
it reuses a segment once the main process has let go of its batch (a shared ``flock`` tells it).
About 3x DataLoader's windows/s (``benchmarks/train_loader.py --mechanisms``).
"""

from __future__ import annotations

import dataclasses
import fcntl
import itertools
import math
import mmap
import multiprocessing
import os
import socket
import struct
from collections.abc import Mapping
from typing import Any

import torch

_ALIGN = 64  # each tensor cache-line aligned in the segment
_SEQ = struct.Struct("<Q")
_OPEN: dict[int, Handoff] = {}  # main process: live hand-offs by token, for unpickled references
_TOKENS = itertools.count(1)
RECEIVE_TIMEOUT_S = 300.0
# Segments a worker keeps, over all batch sizes: enough for the batches in flight (prefetch) and
# those the training step still holds; a batch beyond them gets a segment of its own.
POOL_SEGMENTS = 16
_PROC_FD = os.path.isdir("/proc/self/fd")  # a segment's second description (Handoff.send)


def handoff_supported() -> bool:
    """Whether :class:`Handoff` works here (Linux, forked workers, torch's default sharing)."""
    return (
        hasattr(os, "memfd_create")
        and hasattr(socket, "send_fds")
        and hasattr(torch.UntypedStorage, "_new_shared_fd_cpu")
        and torch.multiprocessing.get_sharing_strategy() == "file_descriptor"
        and (multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]) == "fork"
    )


Specs = Mapping[str, tuple[torch.dtype, tuple[int, ...]]]  # name -> (dtype, shape)


def _specs(tensors: Mapping[str, torch.Tensor]) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    return {name: (tensor.dtype, tuple(tensor.shape)) for name, tensor in tensors.items()}


def _layout(specs: Specs) -> tuple[list[tuple[str, torch.dtype, tuple[int, ...], int]], int]:
    """Where each tensor of ``specs`` lies in a segment, and the segment's size."""
    entries, total = [], 0
    for name, (dtype, shape) in specs.items():
        entries.append((name, dtype, tuple(shape), total))
        total += -(-math.prod(shape) * dtype.itemsize // _ALIGN) * _ALIGN
    return entries, total


def _fill(fd: int, tensors: Mapping[str, torch.Tensor], layout: list) -> None:
    for name, _, _, offset in layout:
        data, written = memoryview(tensors[name].contiguous().numpy()).cast("B"), 0
        while written < len(data):
            written += os.pwrite(fd, data[written:], offset + written)


def _new_memfd(total: int, tensors: Mapping[str, torch.Tensor] | None = None, layout: list = ()) -> int:
    """A new memfd of ``total`` bytes, holding ``tensors`` at their layout offsets if given."""
    fd = os.memfd_create("eegfm-batch", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, total)
        if tensors is not None:
            _fill(fd, tensors, layout)
    except BaseException:
        os.close(fd)
        raise
    return fd


class _Pooled:
    """A worker's reusable segment, mapped once: building a batch in it again touches pages that
    are already there."""

    __slots__ = ("fd", "total", "mapping")

    def __init__(self, total: int):
        self.fd, self.total, self.mapping = _new_memfd(total), total, None

    def views(self, layout: list) -> dict[str, torch.Tensor]:
        if self.mapping is None:
            self.mapping = torch.frombuffer(mmap.mmap(self.fd, self.total), dtype=torch.uint8)
        return {
            name: self.mapping[offset : offset + math.prod(shape) * dtype.itemsize].view(dtype).view(shape)
            for name, dtype, shape, offset in layout
        }

    def close(self) -> None:
        self.mapping = None  # the mmap closes once no tensor refers to it
        os.close(self.fd)


def _in_use(fd: int) -> bool:
    """Whether another open file description of the segment ``fd`` still holds its shared lock."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def _locked_description(fd: int) -> int | None:
    """A second open file description of the memfd ``fd``, holding a shared lock; None where
    /proc is missing. Its last descriptor closes when the receiver's storage is freed."""
    try:
        other = os.open(f"/proc/self/fd/{fd}", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(other, fcntl.LOCK_SH)
    except OSError:
        os.close(other)
        return None
    return other


def _views(fd: int, layout: list, total: int) -> dict[str, torch.Tensor]:
    storage = torch.UntypedStorage._new_shared_fd_cpu(fd, total)  # maps it; keeps its own dup
    return {
        name: torch.empty(0, dtype=dtype).set_(storage, offset // dtype.itemsize, shape)
        for name, dtype, shape, offset in layout
    }


@dataclasses.dataclass(frozen=True)
class SharedBatch:
    """What a worker pickles in place of its big tensors: which hand-off, worker and message."""

    token: int
    worker: int
    seq: int
    layout: tuple
    total: int

    def resolve(self) -> dict[str, torch.Tensor]:
        handoff = _OPEN.get(self.token)
        if handoff is None:
            raise RuntimeError(
                "SharedBatch: its loader iteration has ended; batches can only be "
                "resolved while the DataLoader that made them runs"
            )
        return handoff.receive(self)

    def pin_memory(self) -> dict[str, torch.Tensor]:  # DataLoader's pin-memory thread calls this
        return {name: tensor.pin_memory() for name, tensor in self.resolve().items()}


class Handoff:
    """Socket pairs for ``n_workers`` DataLoader workers, made before they fork: :meth:`send` in a
    worker, :meth:`receive` (``SharedBatch.resolve``) in the main process, then :meth:`close`.
    ``extra_segments``: segments a worker may keep beyond ``POOL_SEGMENTS`` (open batches)."""

    def __init__(self, n_workers: int, extra_segments: int = 0):
        if not handoff_supported():
            raise RuntimeError(
                "Handoff: needs Linux memfd, socket.send_fds, forked DataLoader workers "
                "and torch's file_descriptor sharing strategy"
            )
        self.token = next(_TOKENS)
        self._pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) for _ in range(n_workers)]
        for receiver, _ in self._pairs:
            receiver.settimeout(RECEIVE_TIMEOUT_S)
        self._sent = 0  # in a worker: its own messages so far
        self._pool: dict[int, list[_Pooled]] = {}  # in a worker: its segments by size, for reuse
        # in a worker: segments handed out by buffers() and neither sent nor discarded yet
        self._built: list[tuple[_Pooled, list, dict[str, torch.Tensor]]] = []
        self.extra_segments = extra_segments
        self.segments_made = 0  # in a worker: new segments created (the rest were reused)
        self._received = [0] * n_workers
        self._owner = os.getpid()
        _OPEN[self.token] = self

    def _free_segment(self, total: int) -> _Pooled | None:
        """A pooled segment of ``total`` bytes that no batch in the main process uses, a new one
        while the pool has room, else None. Reuse needs /proc (see :meth:`send`)."""
        if not _PROC_FD:
            return None
        pool = self._pool.setdefault(total, [])
        built = {id(entry[0]) for entry in self._built}
        segment = next((s for s in pool if id(s) not in built and not _in_use(s.fd)), None)
        if segment is None and self._make_room():
            segment = _Pooled(total)
            pool.append(segment)
            self.segments_made += 1
        return segment

    def _make_room(self) -> bool:
        """Whether one more segment fits in ``POOL_SEGMENTS`` over all sizes, after closing free
        ones: a batch shape not seen again (token budgets, an epoch's last batch) would keep its
        segments for good."""
        limit = POOL_SEGMENTS + self.extra_segments
        pooled = sum(len(pool) for pool in self._pool.values())
        built = {id(entry[0]) for entry in self._built}
        for pool in self._pool.values():
            for segment in list(pool):
                if pooled < limit:
                    return True
                if id(segment) not in built and not _in_use(segment.fd):
                    pool.remove(segment)
                    segment.close()
                    pooled -= 1
        return pooled < limit

    def buffers(self, specs: Specs) -> dict[str, torch.Tensor] | None:
        """In a worker: empty tensors of ``specs`` in a free segment to build a batch in, which
        :meth:`send` then copies nothing of; the segment stays out of the pool until sent or
        :meth:`discard` ed. None when every pooled segment is in use, or without /proc."""
        layout, total = _layout(specs)
        segment = self._free_segment(max(total, 1))
        if segment is None:
            return None
        views = segment.views(layout)
        self._built.append((segment, layout, views))
        return dict(views)

    def _built_with(self, tensors: Mapping[str, torch.Tensor]) -> list[int]:
        """Indices in ``_built`` of the segments any of ``tensors`` lies in."""
        pointers = {t.untyped_storage().data_ptr() for t in tensors.values()}
        return [
            i
            for i, (segment, _, _) in enumerate(self._built)
            if segment.mapping is not None and segment.mapping.untyped_storage().data_ptr() in pointers
        ]

    def discard(self, tensors: Mapping[str, torch.Tensor]) -> bool:
        """In a worker: give back, unsent, the segment that :meth:`buffers` made ``tensors`` in
        (False if they are in none: sent already, or made elsewhere)."""
        found = self._built_with(tensors)
        for i in reversed(found):
            del self._built[i]
        return bool(found)

    def send(self, worker: int, tensors: Mapping[str, torch.Tensor]) -> SharedBatch:
        """In worker ``worker``: one segment holding ``tensors`` (those of one :meth:`buffers` call in
        place, others copied into a free one). The receiver keeps a second file description with a
        shared ``flock`` open while the batch lives; the worker reuses a segment only when it can
        take the exclusive lock."""
        found = self._built_with(tensors)
        built = self._built[found[0]] if len(found) == 1 else None
        if built is not None and tensors and all(built[2].get(name) is t for name, t in tensors.items()):
            del self._built[found[0]]
            segment, total = built[0], built[0].total
            layout = [entry for entry in built[1] if entry[0] in tensors]
        else:
            # Tensors replaced after the build (augmentation): copied, with any still lying in a
            # built segment cloned first, since that segment goes back to the pool for the fill.
            if found:
                pointers = {self._built[i][0].mapping.untyped_storage().data_ptr() for i in found}
                tensors = {
                    name: t.clone() if t.untyped_storage().data_ptr() in pointers else t for name, t in tensors.items()
                }
                for i in reversed(found):
                    del self._built[i]
            layout, total = _layout(_specs(tensors))
            total = max(total, 1)
            segment = self._free_segment(total)
            if segment is not None:
                _fill(segment.fd, tensors, layout)
        if segment is None:
            self.segments_made += 1
        fd = segment.fd if segment is not None else _new_memfd(total, tensors, layout)
        shared = _locked_description(fd) if segment is not None else None
        try:
            socket.send_fds(self._pairs[worker][1], [_SEQ.pack(self._sent)], [fd if shared is None else shared])
        finally:
            if shared is not None:
                os.close(shared)  # the message in flight keeps the description (and its lock)
            elif segment is not None:  # no lock to tell when the batch is let go of: never reuse it
                self._pool[segment.total].remove(segment)
                segment.close()
            else:
                os.close(fd)
        self._sent += 1
        return SharedBatch(self.token, worker, self._sent - 1, tuple(layout), total)

    def receive(self, ref: SharedBatch) -> dict[str, torch.Tensor]:
        """In the main process: the tensors of ``ref``, mapped from the segment its worker sent."""
        expected = self._received[ref.worker]
        if ref.seq != expected:
            raise RuntimeError(f"Handoff: worker {ref.worker} batch {ref.seq} arrived, expected batch {expected}")
        try:
            message, fds, _, _ = socket.recv_fds(self._pairs[ref.worker][0], _SEQ.size, 1)
        except TimeoutError:
            raise RuntimeError(
                f"Handoff: no shared-memory segment from worker {ref.worker} in "
                f"{RECEIVE_TIMEOUT_S:.0f} s for its batch {ref.seq}"
            ) from None
        try:
            if len(fds) != 1 or len(message) != _SEQ.size or _SEQ.unpack(message)[0] != ref.seq:
                raise RuntimeError(
                    f"Handoff: worker {ref.worker} sent {message!r} with {len(fds)} descriptors for its batch {ref.seq}"
                )
            self._received[ref.worker] += 1
            return _views(fds[0], list(ref.layout), ref.total)
        finally:
            for fd in fds:
                os.close(fd)

    def close(self) -> None:
        """Close the sockets (descriptors still in flight close with them)."""
        if os.getpid() == self._owner:
            _OPEN.pop(self.token, None)
        for pair in self._pairs:
            for end in pair:
                end.close()

    def __getstate__(self) -> Any:
        raise TypeError("Handoff: cannot be pickled; DataLoader workers must be forked")


def resolve_shared(batch: dict[str, Any], key: str) -> dict[str, Any]:
    """``batch`` with the reference (or the pinned tensors) at ``key`` replaced by its tensors."""
    value = batch.pop(key, None)
    if isinstance(value, SharedBatch):
        value = value.resolve()
    if value:
        batch.update(value)
    return batch
