"""Reviewer marks over real HTTP (``/v1/marks/{recording_id}``): PUT, GET and the BIDS events.tsv
round trip (read back with pandas), ids kept across edits, files for this user only, each bad
field named, a bad recording_id refused, and no mark's text in the log."""

from __future__ import annotations

import io
import json
import logging
import stat

import pandas as pd
import pytest

from tests.serving.serve_helpers import API_KEY, AUTH, serving

GOOD = {"onset_s": 1, "duration_s": 0, "text": "a"}
RECORDING_ID = "0123456789abcdef0123456789abcdef"
JSON = {**AUTH, "Content-Type": "application/json"}
SECRET = "Jane Roe: spike-wave"  # a mark naming a patient, as clinicians' notes may


@pytest.fixture(scope="module")
def marked(finetuned, tmp_path_factory):
    """eegfm-serve with --marks_dir in a fresh folder: (server, that folder)."""
    folder = tmp_path_factory.mktemp("serve")
    keys = folder / "keys.txt"
    keys.write_text(API_KEY + "\n")
    marks = folder / "marks"
    with serving(["--model", str(finetuned), "--api_keys_file", str(keys), "--marks_dir", str(marks)]) as running:
        yield running, marks


def put(server, marks: list, recording_id: str = RECORDING_ID) -> tuple[int, dict]:
    status, reply, _ = server.request("PUT", f"/v1/marks/{recording_id}", json.dumps({"marks": marks}).encode(), JSON)
    return status, reply


def test_marks_round_trip_as_bids_events(marked, caplog):
    server, folder = marked
    status, reply, _ = server.request("GET", f"/v1/marks/{RECORDING_ID}", headers=AUTH)
    assert status == 200 and reply == {"recording_id": RECORDING_ID, "marks": []}
    assert not folder.exists()  # created on the first write only
    sent = [
        {"onset_s": 42.5, "duration_s": 2.0, "text": SECRET, "channel": "Fp1-F7"},
        {"onset_s": 3.0, "duration_s": 0, "text": "eyes closed", "channel": None},
    ]
    with caplog.at_level(logging.DEBUG):
        status, stored = put(server, sent)
    assert status == 200, stored
    marks = stored["marks"]
    assert [(m["onset_s"], m["duration_s"], m["text"], m["channel"]) for m in marks] == [
        (3.0, 0.0, "eyes closed", None),
        (42.5, 2.0, SECRET, "Fp1-F7"),
    ]  # by onset, every mark given an id
    assert all(m["id"] for m in marks) and len({m["id"] for m in marks}) == 2
    assert server.request("GET", f"/v1/marks/{RECORDING_ID}", headers=AUTH)[1] == stored
    status, text, headers = server.request("GET", f"/v1/marks/{RECORDING_ID}/events.tsv", headers=AUTH)
    assert status == 200 and headers["content-type"].startswith("text/tab-separated-values")
    assert headers["content-disposition"] == 'attachment; filename="events.tsv"'
    table = pd.read_csv(io.StringIO(text), sep="\t", keep_default_na=False)
    assert list(table.columns[:4]) == ["onset", "duration", "trial_type", "channel"]
    assert table["onset"].tolist() == [3.0, 42.5] and table["duration"].tolist() == [0.0, 2.0]
    assert table["trial_type"].tolist() == ["eyes closed", SECRET]
    assert table["channel"].tolist() == ["n/a", "Fp1-F7"]  # BIDS's n/a for the whole recording
    stored_folder = folder / RECORDING_ID
    assert (stored_folder / "events.tsv").read_text() == text
    sidecar = json.loads((stored_folder / "events.json").read_text())
    assert set(sidecar) >= {"onset", "duration", "trial_type", "channel"} and sidecar["onset"]["Units"] == "s"
    assert stat.S_IMODE((stored_folder / "events.tsv").stat().st_mode) == 0o600
    assert stat.S_IMODE(stored_folder.stat().st_mode) == 0o700
    assert [p.name for p in stored_folder.iterdir() if p.name.endswith(".tmp")] == []
    # an edit sends the list back with its ids: they stay; a mark left out is gone
    edited = [{**marks[1], "text": "spike-wave"}, {"onset_s": 60, "duration_s": 1, "text": "new", "channel": "EOG 1"}]
    status, again = put(server, edited)
    assert status == 200 and again["marks"][0]["id"] == marks[1]["id"] and len(again["marks"]) == 2
    assert again["marks"][1]["id"] not in {m["id"] for m in marks}
    assert SECRET not in caplog.text  # a mark's text may name the patient: never logged


@pytest.mark.parametrize(
    "marks, field",
    [
        (
            [{"onset_s": 1, "duration_s": 0, "text": "a"}, {"onset_s": -1, "duration_s": 0, "text": "b"}],
            "marks[1].onset_s",
        ),
        ([{"onset_s": 1, "duration_s": "2", "text": "a"}], "marks[0].duration_s"),
        ([{"onset_s": 1, "duration_s": 0, "text": "tab\there"}], "marks[0].text"),
        ([{"onset_s": 1, "duration_s": 0, "text": ""}], "marks[0].text"),
        ([{"onset_s": 1, "duration_s": 0, "text": "x" * 201}], "marks[0].text"),
        ([{"onset_s": 1, "duration_s": 0, "text": "a", "channel": "F" * 21}], "marks[0].channel"),
        ([{"onset_s": 1, "duration_s": 0, "text": "a", "colour": "red"}], "marks[0].colour"),
        ([{"onset_s": 1, "duration_s": 0, "text": "a", "id": "m1"}] * 2, "marks[1].id"),
        ([{"onset_s": 1, "duration_s": 0, "text": "a"}] * 5001, "marks: expected at most 5000"),
    ],
)
def test_a_bad_mark_is_refused_naming_its_field(marked, marks, field):
    server, _ = marked
    status, reply = put(server, marks, "f" * 32)
    assert status == 422 and reply["error"].startswith(field), reply
    assert server.request("GET", f"/v1/marks/{'f' * 32}", headers=AUTH)[1]["marks"] == []  # nothing stored


def test_a_bad_recording_id_or_body_is_refused(marked):
    server, folder = marked
    assert server.request("GET", "/v1/marks/..%2F..%2Fetc", headers=AUTH)[0] == 404  # a path of no route
    for bad in ("0123", "0123456789ABCDEF0123456789ABCDEF", "x" * 32, ".." + "0" * 30):
        for method, path in [("GET", f"/v1/marks/{bad}"), ("GET", f"/v1/marks/{bad}/events.tsv")]:
            status, reply, _ = server.request(method, path, headers=AUTH)
            assert status == 422 and reply["error"].startswith("path parameter recording_id"), (path, reply)
        status, reply = put(server, [], bad)
        assert status == 422 and reply["error"].startswith("path parameter recording_id"), reply
    status, reply, _ = server.request("PUT", f"/v1/marks/{RECORDING_ID}", b"[1, 2]", JSON)
    assert status == 422 and reply["error"].startswith("body: expected a JSON object")
    status, reply, _ = server.request("PUT", f"/v1/marks/{RECORDING_ID}", b"{not json", JSON)
    assert status == 422 and reply["error"].startswith("body: expected JSON")
    assert server.request("GET", f"/v1/marks/{RECORDING_ID}")[0] == 401
    assert (
        server.request("PUT", f"/v1/marks/{RECORDING_ID}", b'{"marks": []}', {"Content-Type": "application/json"})[0]
        == 401
    )


def test_marks_as_an_edf_plus_annotations_file_read_back_by_mne(marked, tmp_path):
    import mne

    server, _ = marked
    recording_id = "a" * 32
    status, reply, _ = server.request("GET", f"/v1/marks/{recording_id}/annotations.edf", headers=AUTH)
    assert status == 404 and reply["error"].startswith("marks: none stored")
    sent = [
        {"onset_s": 42.5, "duration_s": 2.0, "text": "spike-wave", "channel": "Fp1-F7"},
        {"onset_s": 3.0, "duration_s": 0, "text": "yeux fermés", "channel": None},
    ]
    assert put(server, sent, recording_id)[0] == 200
    status, _, headers = server.request("GET", f"/v1/marks/{recording_id}/annotations.edf", headers=AUTH)
    assert status == 200 and headers["content-disposition"] == 'attachment; filename="annotations.edf"'
    # the body as bytes (the helper decodes non-JSON replies as text): fetched again raw
    import http.client

    connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
    connection.request("GET", f"/v1/marks/{recording_id}/annotations.edf", headers=AUTH)
    path = tmp_path / "annotations.edf"
    path.write_bytes(connection.getresponse().read())
    connection.close()
    assert path.read_bytes()[192:197] == b"EDF+C" and path.read_bytes()[8:16] == b"X X X X "  # anonymous
    notes = mne.read_annotations(path)
    assert notes.onset.tolist() == [3.0, 42.5] and notes.duration.tolist() == [0.0, 2.0]
    assert list(notes.description) == ["yeux fermés", "spike-wave [Fp1-F7]"]
