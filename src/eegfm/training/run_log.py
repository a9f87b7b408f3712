"""What a training run records, the same for pretraining and fine-tuning: ``metrics.jsonl`` and
W&B (rank 0), the progress bar, each log interval's rates (samples/s, tokens/s, the share of the
wall time spent waiting for data, peak memory), and ``curves.png`` drawn from the metrics at the end.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from eegfm.contract import layout
from eegfm.core.logs import get_logger
from eegfm.training.curves import write_curves
from eegfm.training.distributed import Dist
from eegfm.training.steps import TimedBatches
from eegfm.training.tracking import Tracker, memory_stats

log = get_logger(__name__)


class RunLog:
    """A run's metrics file, tracker and progress bar (a context manager: the tracker finishes and
    ``curves.png`` titled ``title`` is drawn on a clean exit)."""

    def __init__(self, cfg: Any, dist: Dist, output: Path, title: str = "", logger: logging.Logger = log):
        self.dist, self.output, self.title, self.log = dist, output, title, logger
        self.tracker = Tracker(
            cfg.wandb.project, output, cfg.to_dict(), mode=cfg.wandb.mode, rank=dist.rank, run_name=cfg.wandb.run_name
        )
        self._file = open(output / layout.METRICS, "a", encoding="utf-8") if dist.is_main else None
        self._exits = contextlib.ExitStack()
        self.progress: tqdm | None = None
        self.batches: TimedBatches | None = None
        self._counts: dict[str, float] = {}
        self._tic = time.perf_counter()

    def __enter__(self) -> RunLog:
        self._exits.enter_context(self.tracker)
        self._exits.enter_context(logging_redirect_tqdm())  # log lines above the bar
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self.close_bar()
        self._exits.__exit__(exc_type, *rest)
        if self._file is not None:
            self._file.close()
            if exc_type is None:
                write_curves(self.output, self.title)

    def bar(self, total: int, initial: int, desc: str) -> None:
        self.close_bar()
        self.progress = tqdm(
            total=total,
            initial=initial,
            desc=desc,
            unit="step",
            disable=not self.dist.is_main,
            dynamic_ncols=True,
            file=sys.stderr,
        )

    def close_bar(self) -> None:
        if self.progress is not None:
            self.progress.close()
            self.progress = None

    def timed(self, loader: Any) -> TimedBatches:
        """The loader's batches, timed; a new log interval starts."""
        self.batches = TimedBatches(iter(loader))
        self._counts, self._tic = {}, time.perf_counter()
        return self.batches

    def count(self, **counts: float) -> None:
        """Add a step's windows (``samples``) or tokens to the interval's."""
        for key, value in counts.items():
            self._counts[key] = self._counts.get(key, 0) + value

    @contextlib.contextmanager
    def paused(self):
        """Time spent inside (validation) is left out of the interval's rates."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self._tic += time.perf_counter() - started

    def rates(self) -> dict[str, float]:
        """Collective: the interval's ``<count>_per_s`` over all ranks, and the slowest rank's
        ``data_wait_fraction`` and peak memory."""
        elapsed = time.perf_counter() - self._tic
        counts = self.dist.mean({k: float(v) for k, v in self._counts.items()})
        rates = {f"{k}_per_s": v * self.dist.world_size / elapsed for k, v in counts.items()}
        rates.update(
            self.dist.max({**memory_stats(self.dist.device), "data_wait_fraction": self.batches.waited() / elapsed})
        )
        return rates

    def record(self, line: dict[str, Any], step: int) -> None:
        """A metrics.jsonl line (rank 0) and its numbers to the tracker."""
        if self._file is not None:
            self.tracker.log(
                {k: v for k, v in line.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}, step=step
            )
            self._file.write(json.dumps({"step": step, **line}, sort_keys=True) + "\n")
            self._file.flush()

    def end_interval(self, metrics: dict[str, float], num_workers: int, **shown: str) -> None:
        """Show an interval's loss, lr and data wait on the bar (rank 0 warns once if the loader
        starves the step), then start the next interval."""
        if self.dist.is_main:
            self.progress.set_postfix(
                loss=f"{metrics['loss']:.4f}",
                lr=f"{metrics['lr']:.2e}",
                data=f"{metrics['data_wait_fraction']:.0%}",
                **shown,
            )
            if starved := self.batches.starved(metrics["data_wait_fraction"], num_workers):
                self.log.warning(starved)
        self._counts, self._tic = dict.fromkeys(self._counts, 0), time.perf_counter()

    def curves(self) -> None:
        """curves.png now (a long run's so far, without W&B's server)."""
        if self._file is not None:
            write_curves(self.output, self.title)
