"""Where a long command's time went: wall seconds per named part, summed over the part's calls.

A command opens one :func:`recording` around its work; code anywhere below it marks its parts with
:func:`part` (``with part("fine-tuning", "eegfm seed 0"):``) without the recorder being passed
down. Outside a recording :func:`part` costs nothing and records nothing, so a library call reused
elsewhere (a fine-tuning run outside the benchmark) is unaffected. Parts nest: an inner part of another
group counts to its own group only, so the groups add up; :meth:`PartTimes.table` shows
each group with its items indented.

Jobs run side by side in worker processes (``core.job_pool``) record their parts there; the command
adds them with :meth:`PartTimes.add_overlapping`. Such a group's seconds overlap each other and the
command's own parts (its wait for them, say), so the table marks it and leaves it out of the sum.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import threading
import time
from collections.abc import Collection, Iterator

_CURRENT: contextvars.ContextVar[PartTimes | None] = contextvars.ContextVar("eegfm_part_times", default=None)


def duration(seconds: float) -> str:
    """``seconds`` as people read a run's length: ``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@dataclasses.dataclass
class Entry:
    """One group or item: its seconds and how many times it ran."""

    seconds: float = 0.0
    calls: int = 0


@dataclasses.dataclass
class PartTimes:
    """Seconds per group and per (group, item), in the order the parts first started."""

    groups: dict[str, Entry] = dataclasses.field(default_factory=dict)
    items: dict[tuple[str, str], Entry] = dataclasses.field(default_factory=dict)
    started: float = dataclasses.field(default_factory=lambda: time.perf_counter())  # read when made
    total: float | None = None
    overlapping: set[str] = dataclasses.field(default_factory=set)  # groups of jobs run side by side
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, group: str, item: str | None, seconds: float, calls: int = 1) -> None:
        with self._lock:  # a job pool's results arrive on a thread of its own
            entry = self.groups.setdefault(group, Entry())
            entry.seconds += seconds
            entry.calls += calls
            if item is not None:
                detail = self.items.setdefault((group, item), Entry())
                detail.seconds += seconds
                detail.calls += calls

    def add_overlapping(self, parts: dict, leave_out: Collection[str] = ()) -> None:
        """The parts a job recorded in a worker process or on another thread (its :meth:`as_dict`),
        side by side with other work: their groups, but those in ``leave_out``, are marked as
        overlapping and added."""
        for found in parts["parts"]:
            if found["part"] in leave_out:
                continue
            self.overlapping.add(found["part"])
            items = found["items"] or [{"item": None, "seconds": found["seconds"], "calls": found["calls"]}]
            for item in items:
                self.add(found["part"], item["item"], item["seconds"], item["calls"])

    def elapsed(self) -> float:
        return self.total if self.total is not None else time.perf_counter() - self.started

    def as_dict(self) -> dict:
        """JSON-ready: the whole run's seconds and each group's, with its items."""
        return {
            "total_s": round(self.elapsed(), 1),
            "parts": [
                {
                    "part": group,
                    "seconds": round(entry.seconds, 1),
                    "calls": entry.calls,
                    **({"side_by_side": True} if group in self.overlapping else {}),
                    "items": [
                        {"item": item, "seconds": round(found.seconds, 1), "calls": found.calls}
                        for (owner, item), found in self.items.items()
                        if owner == group
                    ],
                }
                for group, entry in self.groups.items()
            ],
        }

    def table(self) -> str:
        """A plain-text table: each group, its items indented below it, then what no part covers."""
        lines = [f"time per part ({duration(self.elapsed())} in all):"]
        for group, entry in self.groups.items():
            count = f" ({entry.calls} calls)" if entry.calls > 1 else ""
            if group in self.overlapping:  # its seconds overlap: shown, not summed
                count += ", side by side, each job's own time"
            lines.append(f"  {group + count:<44} {duration(entry.seconds):>14}")
            for (owner, item), found in self.items.items():
                if owner == group:
                    count = f" ({found.calls} calls)" if found.calls > 1 else ""
                    lines.append(f"    {item + count:<42} {duration(found.seconds):>14}")
        covered = sum(entry.seconds for group, entry in self.groups.items() if group not in self.overlapping)
        lines.append(f"  {'the rest (start, reading, writing)':<44} {duration(self.elapsed() - covered):>14}")
        return "\n".join(lines)


@contextlib.contextmanager
def recording() -> Iterator[PartTimes]:
    """Record the parts marked inside the block; the result's ``total`` is set when it ends."""
    times = PartTimes()
    token = _CURRENT.set(times)
    try:
        yield times
    finally:
        times.total = time.perf_counter() - times.started
        _CURRENT.reset(token)


def current() -> PartTimes | None:
    """The open recording of this context, or None."""
    return _CURRENT.get()


@dataclasses.dataclass
class _Open:
    group: str
    nested: float = 0.0  # seconds of parts of other groups inside this one


@contextlib.contextmanager
def part(group: str, item: str | None = None) -> Iterator[None]:
    """Count the block's wall time to ``group`` (and its ``item``) of the open recording, if any.
    A part inside a part of another group is counted to its own group only (each second once, so
    the groups add up to the covered time); inside a part of the same group it counts to the outer."""
    times, stack = _CURRENT.get(), _OPEN.get()
    if times is None or any(frame.group == group for frame in stack):
        yield
        return
    times.add(group, item, 0.0, calls=0)  # listed in the order parts start
    frame = _Open(group)
    token = _OPEN.set((*stack, frame))
    start = time.perf_counter()
    try:
        yield
    finally:
        spent = time.perf_counter() - start
        _OPEN.reset(token)
        times.add(group, item, spent - frame.nested)
        if stack:
            stack[-1].nested += spent


_OPEN: contextvars.ContextVar[tuple[_Open, ...]] = contextvars.ContextVar("eegfm_open_parts", default=())
