"""eegfm-predict's progress on stderr: a clinic's 64 files take minutes, which must not pass in silence.

On a terminal, a bar of recordings and, inside a recording past ``LONG_RECORDING_S`` of EEG, a bar of its
windows; elsewhere (a log file, a pipe, a scheduler's capture) one log line per recording: its index,
name (its token unless --keep_paths), status, windows and seconds. A bar never names a recording by
more than a log line does: the same token or path, its control characters escaped.
"""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

from eegfm.core.logs import get_logger
from eegfm.core.text_safety import escape_controls

log = get_logger("eegfm.serving.predict")
LONG_RECORDING_S = 600.0  # past this much EEG a recording shows its windows' bar (a terminal only)


class RecordingProgress:
    """Progress over ``total`` recordings; ``terminal`` None: whether stderr is one."""

    def __init__(self, total: int, terminal: bool | None = None) -> None:
        self.total = total
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self._bar = tqdm(total=total, desc="recordings", unit="rec", disable=not self.terminal)
        self._windows_bar = None
        self._started = time.perf_counter()

    def __enter__(self) -> RecordingProgress:
        return self

    def __exit__(self, *exc) -> None:
        self._close_windows()
        self._bar.close()

    def windows(self, scored: int, reached_s: float) -> None:
        """The predictor's ``on_batch``: ``scored`` windows of the current recording reach ``reached_s``."""
        if not self.terminal:
            return
        if self._windows_bar is None:
            if reached_s < LONG_RECORDING_S:
                return
            self._windows_bar = tqdm(desc="windows", unit="win", leave=False, position=1)
        self._windows_bar.update(scored - self._windows_bar.n)

    def scored(self, prediction) -> None:
        """A recording's prediction is in: its line (or the bar's step), the seconds since the last one."""
        self._close_windows()
        seconds = time.perf_counter() - self._started
        name = escape_controls(prediction.input)
        if self.terminal:
            self._bar.set_postfix_str(f"{name}: {len(prediction.windows)} windows", refresh=False)
        if prediction.status == "processed":
            if not self.terminal:
                log.info(
                    "recording %d/%d %s: processed, %d windows, %.1f s",
                    prediction.index,
                    self.total,
                    name,
                    len(prediction.windows),
                    seconds,
                )
        else:  # said on a terminal too: a bar does not keep why
            log.warning(
                "recording %d/%d %s: quarantined at %s (%s), 0 windows, %.1f s",
                prediction.index,
                self.total,
                name,
                prediction.stage,
                prediction.reason,
                seconds,
            )

    def next(self) -> None:
        """The recording's outputs are written: the bar steps, the next recording's clock starts."""
        self._bar.update(1)
        self._started = time.perf_counter()

    def _close_windows(self) -> None:
        if self._windows_bar is not None:
            self._windows_bar.close()
            self._windows_bar = None
