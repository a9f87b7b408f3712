"""An uploaded recording's pipeline windows, streamed as the predictor cuts them, for the routes
that read the EEG itself (``/v1/explain``, ``/v1/traces``).

The pipeline yields a recording's windows one at a time; nothing here keeps them all: a caller
keeps what it needs (one window, or those over a span), so a request's memory stays about one
window's (or one span's) whatever the recording's length: ``window_in_time_order`` adds 8 bytes a
window, each one's start (tests/serving/test_server_explain_memory.py measures it).
"""

from __future__ import annotations

import contextlib
import secrets
from array import array
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from eegfm.core.config import ConfigError
from eegfm.serving.api.stopping import checkpoint
from eegfm.serving.api.uploads import expand_upload


def recording_item(predictor, path: Path, ext: str, max_bytes: int):
    """The recording an upload saved at ``path`` holds (the first ``predictor.discover`` finds);
    ValueError for an upload holding none."""
    target = expand_upload(path, ext, max_bytes)
    try:
        items = predictor.discover([str(target)])
    except (FileNotFoundError, ConfigError):
        items = []
    if not items:
        raise ValueError("the upload holds no recording file")
    return items[0]


def pipeline_events(predictor, item) -> Iterator:
    """``item``'s pipeline events as the predictor makes them (its preprocessing config): `Window`s
    and `RejectedWindow`s as they are cut, then one `Outcome`."""
    from threadpoolctl import threadpool_limits

    from eegfm.pipelines.job.process import process_recording

    config = predictor.preprocess
    key = secrets.token_bytes(32)  # pseudonyms stay inside the records
    # numpy's BLAS threads fight over the pipeline's small matrices, as in Predictor.predict_item
    with threadpool_limits(limits=1, user_api="blas"):
        for event in process_recording(item, key, config, config.config_hash()):
            checkpoint()  # a request abandoned stops at its next window
            yield event


def window_in_time_order(predictor, item, k: int) -> tuple[object | None, int]:
    """The ``k``-th of ``item``'s windows in time order (its ``WindowRecord``, None if there are
    fewer) and how many windows the recording has (0 if the pipeline quarantined it).

    Memory stays one window whatever ``k`` and the recording's length (an earlier version kept the
    ``k + 1`` earliest, all of a long recording's for its last window: 150 MB for 2 h at 2 Hz).
    One pass keeps each window's start (8 bytes) and the ``k``-th window to arrive; the windows
    come in time order unless labels cut them out of order, and then a second pass of the same
    deterministic pipeline keeps the one asked for."""
    from eegfm.pipelines.job.process_io import Outcome, Window

    starts, arrived_kth, outcome = array("d"), None, None
    for event in pipeline_events(predictor, item):
        if isinstance(event, Window):
            if len(starts) == k:
                arrived_kth = event.record
            starts.append(float(event.record.window_start_s))
        elif isinstance(event, Outcome):
            outcome = event
    if outcome is None or outcome.status != "processed":
        return None, 0  # a recording quarantined part-way: its windows do not count
    if not 0 <= k < len(starts):
        return None, len(starts)
    # time order, ties in order of arrival: a stable sort
    arrival = int(np.argsort(np.frombuffer(starts), kind="stable")[k])
    if arrival == k:
        return arrived_kth, len(starts)
    return _arrived(predictor, item, arrival, starts[arrival]), len(starts)


def _arrived(predictor, item, arrival: int, start_s: float):
    """The record of the ``arrival``-th window ``item``'s pipeline yields, on a pass of its own; it
    must start at ``start_s``, as on the first pass (RuntimeError otherwise)."""
    from eegfm.pipelines.job.process_io import Window

    index = 0
    # closed on leaving: the pipeline stops there and its files close, the later windows never cut
    with contextlib.closing(pipeline_events(predictor, item)) as events:
        for event in events:
            if not isinstance(event, Window):
                continue
            if index == arrival:
                if float(event.record.window_start_s) != start_s:
                    break
                return event.record
            index += 1
    raise RuntimeError(f"the pipeline cut other windows on a second pass: window {arrival} moved")
