"""Fixtures shared by the pipeline tests."""

import pytest


@pytest.fixture
def fails_on_second_chunk(monkeypatch) -> list:
    """Makes ``process_recording`` fail on a recording's second batch of windows, after the first
    went out, as a library that breaks part-way through a file would; the list counts the batches."""
    from pipelines import process

    made, calls = process._make_windows, []

    def fails_the_second_time(*args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("a library broke on this chunk")
        yield from made(*args)

    monkeypatch.setattr(process, "_make_windows", fails_the_second_time)
    return calls
