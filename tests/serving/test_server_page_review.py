"""The review screen in a real browser (headless Chromium, ``tests/serving/cdp.py``) on real recordings
from ``shared/data``: each montage draws its own derivations, a display filter changes the drawn
samples and not the scores, a reviewer's mark round-trips to the server's BIDS ``events.tsv``, the
file's own annotations are listed and drawn, and the keys, the go-to box and a click on an episode
move the page. Screenshots of a 1024 x 768 laptop screen are kept under ``outputs/test-artifacts/page``
(``EEGFM_TEST_ARTIFACTS`` elsewhere). Skipped where chromium is not installed."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest

from eegfm.contract.schema import CHANNELS
from tests.serving.cdp import CHROMIUM, browser_page
from tests.serving.serve_helpers import AUTH, serving
from tests.serving.test_server_page_browser import INK

pytestmark = [pytest.mark.browser, pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")]

LAPTOP = (1024, 768)
LABELS = "Array.from(document.querySelectorAll('#eeg-labels span:not(.extra)')).map((s) => s.dataset.name)"
EXTRA = LABELS.replace(":not(.extra)", ".extra")
DRAWN = "document.getElementById('traces').dataset.drawn"
CHOOSE = "(s => {{ s.value = '{value}'; s.dispatchEvent(new Event('change')); }})(document.getElementById('{id}'))"
FIELD = "document.getElementById('{}').value"
ROWS = "Array.from(document.querySelectorAll('#events tr[data-kind={}]'))"
EVENT_ROWS = (
    "Array.from(document.querySelectorAll('#events tbody tr'))"
    ".map((r) => [r.dataset.kind, r.querySelector('.what').textContent])"
)
CLICK_AN_ANNOTATION_PAST_30_S = (
    f"(() => {{ const r = {ROWS.format('annotation')}.find((r) => Number(r.dataset.onset) >= 30);"
    " r.scrollIntoView(); r.click(); return Number(r.dataset.onset); })()"
)
GO_TO = (
    "(b => {{ b.value = '{}'; b.dispatchEvent(new KeyboardEvent('keydown', {{key: 'Enter'}})); }})"
    "(document.getElementById('eeg-jump'))"
)
EPISODE_ONSETS = ROWS.format("episode") + ".map((r) => Number(r.dataset.onset))"
# Only task windows flagged: episodes the page lists, on a model of two classes (rest, task).
RULES = """labels: [rest, task]
default: routine
flagged: [review]
rules:
  - name: task
    recommendation: review
    predicted: [task]
"""


@pytest.fixture(scope="module")
def artifacts() -> Path:
    root = Path(os.environ.get("EEGFM_TEST_ARTIFACTS", Path(__file__).parents[2] / "outputs" / "test-artifacts"))
    folder = root / "page"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def reviewing(finetuned, tmp_path_factory):
    """``finetuned`` served without keys, task windows flagged, marks kept in a folder of the test's."""
    folder = tmp_path_factory.mktemp("review")
    (folder / "rules.yaml").write_text(RULES)
    argv = ["--model", str(finetuned), "--no-auth", "--recommendation_rules", str(folder / "rules.yaml")]
    with serving([*argv, "--marks_dir", str(folder / "marks")]) as server:
        server.marks = folder / "marks"
        yield server


def opened(page, server, recording: Path) -> None:
    """The page with ``recording`` scored and its first EEG page drawn."""
    page.send("Page.navigate", url=f"{server.url}/")
    page.wait_for("document.readyState === 'complete'")
    page.set_files("#file", [recording])
    page.wait_for("document.body.dataset.state === 'rendered'", timeout=90)
    page.wait_for(f"{DRAWN} === '0@7'", timeout=90)


def redrawn(page, change: str) -> None:
    """``change`` made, then waited for until the traces are drawn again."""
    page.evaluate(f"document.getElementById('traces').dataset.drawn = ''; {change}")
    page.wait_for(f"{DRAWN} !== ''", timeout=90)


def server_derivations(server, recording: Path, montage: str) -> list[str]:
    from tests.serving.serve_helpers import multipart

    body, headers = multipart("file", [(recording.name, recording.read_bytes())])
    status, reply, _ = server.request("POST", f"/v1/traces?montage={montage}&seconds=10", body, {**headers, **AUTH})
    assert status == 200, reply
    return [d["name"] for d in reply["derivations"]]


def test_each_montage_draws_its_derivations_and_a_filter_changes_only_the_display(
    reviewing, shared_data, tmp_path, artifacts
):
    recording = shared_data / "eegmat" / "Subject10_2.edf"
    with browser_page(tmp_path / "profile", *LAPTOP) as page:
        opened(page, reviewing, recording)
        answer = page.evaluate("document.getElementById('answer-predicted').textContent")
        assert page.evaluate(EXTRA) == ["ECG"]  # the file's other signal, below the EEG on its own scale
        # every one of the 18 derivations and the ECG is on the laptop's screen, above the fold
        bottom = page.evaluate("document.querySelector('#eeg-labels span:last-child').getBoundingClientRect().bottom")
        assert bottom <= LAPTOP[1], bottom
        for montage in ("double_banana", "transverse", "average", "referential"):
            redrawn(page, CHOOSE.format(value=montage, id="eeg-montage"))
            labels = page.evaluate(LABELS)
            assert labels == server_derivations(reviewing, recording, montage)
            page.screenshot(artifacts / f"montage-{montage}.png")
            note = page.evaluate("document.getElementById('eeg-filters').textContent")
            assert ("the model's own montage" in note) == (montage == "referential"), note
        assert page.evaluate(LABELS) == list(CHANNELS)
        page.evaluate("document.getElementById('eeg-custom').value = 'Fp1-F7, Cz-avg, O1'")
        redrawn(page, CHOOSE.format(value="custom", id="eeg-montage"))
        assert page.evaluate(LABELS) == ["Fp1-F7", "Cz-avg", "O1"]
        page.screenshot(artifacts / "montage-custom.png")
        redrawn(page, CHOOSE.format(value="double_banana", id="eeg-montage"))
        before = page.evaluate(INK)
        redrawn(page, CHOOSE.format(value="15", id="eeg-hff"))
        assert page.evaluate(INK) != before  # other samples drawn
        assert "HFF 15 Hz" in page.evaluate("document.getElementById('eeg-filters').textContent")
        assert page.evaluate("document.getElementById('answer-predicted').textContent") == answer  # not rescored
        page.screenshot(artifacts / "filter-hff-15.png")
        assert page.console_errors() == []


def test_a_reviewers_mark_is_stored_as_bids_events_and_the_files_annotations_are_listed(
    reviewing, shared_data, tmp_path, artifacts
):
    recording = shared_data / "eegmmi" / "S001R03.edf"  # EDF+ with its T0/T1/T2 annotations
    with browser_page(tmp_path / "profile", *LAPTOP) as page:
        opened(page, reviewing, recording)
        page.wait_for("document.getElementById('events').dataset.events > 0")
        rows = page.evaluate(EVENT_ROWS)
        assert {"T0", "T1", "T2"} <= {text.upper() for kind, text in rows if kind == "annotation"}
        # a click on an annotation past the first page goes there
        row = page.evaluate(CLICK_AN_ANNOTATION_PAST_30_S)
        page.wait_for(f"{DRAWN} === '{int(row // 10 * 10)}@7'", timeout=90)
        # a double click on the traces, 2.5 s into the page, on the third lane: a mark there
        box = page.evaluate(
            "(() => { const c = document.getElementById('traces'); c.scrollIntoView({block: 'center'});"
            " const r = c.getBoundingClientRect(); return [r.left, r.top, r.width]; })()"
        )
        width = page.evaluate("eegfmTraces.pageWidth(document.getElementById('traces').clientWidth).width")
        lane = page.evaluate("[eegfmTraces.state.lanes[2].y, eegfmTraces.state.lanes[2].derivation.name]")
        page.double_click(box[0] + width * 0.25, box[1] + lane[0])
        page.evaluate(f"{FIELD.format('mark-text')} = 'sharp wave'; {FIELD.format('mark-duration')} = '1.5'")
        page.evaluate("document.getElementById('mark-form').requestSubmit()")
        page.wait_for("document.getElementById('marks').dataset.saved === '1'", timeout=30)
        page.screenshot(artifacts / "mark-added.png")
        assert page.console_errors() == []
    start = int(row // 10 * 10)
    (folder,) = [p for p in reviewing.marks.iterdir() if p.is_dir()]
    events = list(csv.DictReader(io.StringIO((folder / "events.tsv").read_text()), delimiter="\t"))
    assert len(events) == 1 and events[0]["trial_type"] == "sharp wave" and events[0]["channel"] == lane[1]
    assert abs(float(events[0]["onset"]) - (start + 2.5)) < 0.1 and float(events[0]["duration"]) == 1.5
    assert json.loads((folder / "events.json").read_text())  # the columns described
    status, served, _ = reviewing.request("GET", f"/v1/marks/{folder.name}/events.tsv")
    assert status == 200 and served == (folder / "events.tsv").read_text()


def test_keys_the_go_to_box_and_an_episode_move_the_page(reviewing, shared_data, tmp_path, artifacts):
    recording = shared_data / "eegmat" / "Subject10_2.edf"
    with browser_page(tmp_path / "profile", *LAPTOP) as page:
        opened(page, reviewing, recording)
        page.evaluate("document.activeElement.blur()")
        for key, code, drawn in [("End", 35, "60@7"), ("Home", 36, "0@7"), ("PageDown", 34, "10@7")]:
            page.press(key, code)
            page.wait_for(f"{DRAWN} === '{drawn}'", timeout=90)
        page.press("-", 189)
        page.wait_for(f"{DRAWN} === '10@10'", timeout=90)  # one step less gain: 10 µV/mm
        page.press("ArrowDown", 40)  # the first channel group selected ...
        selected = page.evaluate(LABELS.replace(":not(.extra)", ".selected"))
        assert selected == ["Fp1-F7", "F7-T3", "T3-T5", "T5-O1"]
        page.press("+", 187)  # ... and its gain alone raised
        assert page.evaluate("eegfmTraces.state.gains.get('Fp1-F7')") > 1
        assert page.evaluate("eegfmTraces.state.gains.get('Fp2-F8') || 1") == 1
        page.evaluate(GO_TO.format("0:41"))
        page.wait_for(f"{DRAWN} === '40@10'", timeout=90)
        redrawn(page, CHOOSE.format(value="30", id="eeg-timebase"))
        assert page.evaluate(DRAWN) == "30@10"
        assert page.evaluate(f"{FIELD.format('eeg-speed').replace('value', 'textContent')}").startswith("30 s page")
        episodes = page.evaluate(EPISODE_ONSETS)
        assert episodes, "the rules flag task windows: expected an episode"
        page.press("End", 35)
        page.wait_for(f"{DRAWN} === '60@10'", timeout=90)
        page.evaluate("document.querySelector('#events tr[data-kind=episode]').click()")
        page.wait_for(f"{DRAWN} === '{int(episodes[0] // 30 * 30)}@10'", timeout=90)
        page.press("?", 191)
        assert page.evaluate("document.getElementById('eeg-keymap').hidden") is False
        page.screenshot(artifacts / "keys-and-episode.png")
        assert page.console_errors() == []
        # a file cut short: the page says the API's reason, not only its status
        cut = tmp_path / "cut.edf"
        cut.write_bytes(recording.read_bytes()[:2000])
        page.set_files("#file", [cut])
        page.wait_for("document.body.dataset.state === 'error'", timeout=90)
        said = page.evaluate("document.getElementById('status').textContent")
        assert said.startswith("422: every recording was quarantined; read: cut.edf: header: "), said
