"""An uploaded recording's pipeline windows, streamed as the predictor cuts them, for the routes
that read the EEG itself (``/v1/explain``, ``/v1/traces``).

The pipeline yields a recording's windows one at a time; nothing here keeps them all: a caller
keeps what it needs (one window, or those over a span), so a request's memory does not grow with
the recording's length.
"""

from __future__ import annotations

import heapq
import secrets
from collections.abc import Iterator
from pathlib import Path

from eegfm.core.config import ConfigError
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

    from eegfm.pipelines.process import process_recording

    config = predictor.preprocess
    key = secrets.token_bytes(32)  # pseudonyms stay inside the records
    # numpy's BLAS threads fight over the pipeline's small matrices, as in Predictor.predict_item
    with threadpool_limits(limits=1, user_api="blas"):
        yield from process_recording(item, key, config, config.config_hash())


def window_in_time_order(predictor, item, k: int) -> tuple[object | None, int]:
    """The ``k``-th of ``item``'s windows in time order (its ``WindowRecord``, None if there are
    fewer) and how many windows the recording has (0 if the pipeline quarantined it). Only the
    ``k + 1`` earliest windows seen so far are kept: the windows may come out of order."""
    from eegfm.pipelines.events import Outcome, Window

    earliest: list[tuple[float, int, object]] = []  # max-heap on (start, arrival) by negation
    count, outcome = 0, None
    for event in pipeline_events(predictor, item):
        if isinstance(event, Window):
            entry = (-float(event.record.window_start_s), -count, event.record)
            count += 1
            if len(earliest) <= k:
                heapq.heappush(earliest, entry)
            elif entry > earliest[0]:  # earlier than the latest kept: it takes that one's place
                heapq.heapreplace(earliest, entry)
        elif isinstance(event, Outcome):
            outcome = event
    if outcome is None or outcome.status != "processed":
        return None, 0  # a recording quarantined part-way: its windows do not count
    return (earliest[0][2] if k < count else None), count
