"""core.stopwatch: each second counted once, to the innermost group, and nothing outside a recording."""

from __future__ import annotations

import json
import types

import pytest

from eegfm.core import stopwatch


@pytest.fixture
def clock(monkeypatch):
    """A clock the test moves by hand: ``clock.now`` seconds."""
    state = types.SimpleNamespace(now=0.0)
    monkeypatch.setattr(stopwatch, "time", types.SimpleNamespace(perf_counter=lambda: state.now))
    return state


def test_nested_parts_of_other_groups_are_counted_once(clock):
    with stopwatch.recording() as times:
        clock.now += 1  # the start: no part
        with stopwatch.part("rows", "eegnet"):
            clock.now += 2
            with stopwatch.part("EEGNet", "grid"):
                clock.now += 10
            clock.now += 3
        with stopwatch.part("fine-tuning", "eegfm"):
            clock.now += 4
        with stopwatch.part("fine-tuning", "eegfm"):
            clock.now += 6
    found = times.as_dict()
    assert found["total_s"] == 26
    parts = {p["part"]: p for p in found["parts"]}
    assert [p["part"] for p in found["parts"]] == ["rows", "EEGNet", "fine-tuning"]
    assert parts["rows"]["seconds"] == 5  # 15 s inside, 10 of them EEGNet's
    assert parts["EEGNet"]["seconds"] == 10
    assert parts["fine-tuning"] == {
        "part": "fine-tuning",
        "seconds": 10,
        "calls": 2,
        "items": [{"item": "eegfm", "seconds": 10, "calls": 2}],
    }
    table = times.table()
    assert table.splitlines()[0] == "time per part (26 s in all):"
    assert "eegfm (2 calls)" in table
    assert table.splitlines()[-1].split()[-2:] == ["1", "s"]  # the rest: the start
    json.dumps(found)


def test_a_part_inside_its_own_group_counts_to_the_outer_one(clock):
    with stopwatch.recording() as times:
        with stopwatch.part("fine-tuning", "stack"):
            clock.now += 1
            with stopwatch.part("fine-tuning", "member"):
                clock.now += 2
    assert times.as_dict()["parts"] == [
        {"part": "fine-tuning", "seconds": 3, "calls": 1, "items": [{"item": "stack", "seconds": 3, "calls": 1}]}
    ]


def test_outside_a_recording_parts_record_nothing(clock):
    with stopwatch.part("pipeline"):
        clock.now += 5
    with stopwatch.recording() as times:
        pass
    assert times.as_dict() == {"total_s": 0, "parts": []}


def test_an_exception_still_counts_the_part_and_closes_it(clock):
    with stopwatch.recording() as times:
        with pytest.raises(RuntimeError), stopwatch.part("pretraining"):
            clock.now += 7
            raise RuntimeError("failed")
        with stopwatch.part("pretraining"):
            clock.now += 1
    assert times.as_dict()["parts"][0]["seconds"] == 8


@pytest.mark.parametrize(("seconds", "text"), [(0.4, "0 s"), (42.4, "42 s"), (185, "3 min 05 s"), (3720, "1 h 02 min")])
def test_durations_read_as_people_write_them(seconds, text):
    assert stopwatch.duration(seconds) == text
