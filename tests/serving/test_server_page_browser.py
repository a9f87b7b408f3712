"""The page in a real browser (headless Chromium over the DevTools protocol, ``tests/serving/cdp.py``):
a real eegmat recording chosen in its file input is scored and drawn, its EEG shown in the double
banana page by page, a click on the timeline or on the band under the EEG explains a window, and
the console stays quiet. Skipped where chromium is not installed.

``EEGFM_PAGE_SCREENSHOT=/tmp/page.png`` keeps a screenshot of the page at the end (the EEG at the
default 7 µV/mm, a window explained)."""

from __future__ import annotations

import os
import re

import pytest

from tests.serving.cdp import CHROMIUM, browser_page
from tests.serving.serve_helpers import API_KEY, serving

pytestmark = [pytest.mark.browser, pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")]

# How many pixels of each canvas are painted (not transparent): 0 means nothing was drawn.
PAINTED = """Array.from(document.querySelectorAll("canvas")).map((c) => {
  const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let painted = 0;
  for (let i = 3; i < data.length; i += 4) painted += data[i] > 0;
  return [c.id || c.dataset.label, painted];
})"""
# Dark pixels of the traces canvas: the EEG's ink (its background is white, its grid light grey).
INK = """(() => { const c = document.getElementById("traces");
  const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let ink = 0, sum = 0;
  for (let i = 0; i < data.length; i += 4) if (data[i] + data[i + 1] + data[i + 2] < 200) { ink++; sum += i; }
  return [ink, sum]; })()"""
IMAGES_LOADED = "Array.from(document.images).every((i) => i.complete && i.naturalWidth > 0)"
BANANA = (
    "Fp1-F7 F7-T3 T3-T5 T5-O1 Fp2-F8 F8-T4 T4-T6 T6-O2 Fp1-F3 F3-C3 C3-P3 P3-O1 Fp2-F4 F4-C4 C4-P4 P4-O2 Fz-Cz Cz-Pz"
).split()
DRAWN = "document.getElementById('traces').dataset.drawn === '{}'"
SENSITIVITY = (
    "(s => {{ s.value = '{}'; s.dispatchEvent(new Event('change')); }})(document.getElementById('eeg-sensitivity'))"
)
EXPLAINED = "document.body.dataset.state === 'explained' && document.getElementById('explain-title').textContent"
# Every Content-Security-Policy violation of the page, recorded from its first script on (DevTools'
# own scripts run whatever the policy)
RECORD_VIOLATIONS = """window.cspViolations = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));"""
INLINE_SCRIPT = """(() => { const s = document.createElement("script");
  s.textContent = "window.inlineRan = true"; document.body.append(s); })()"""


def box(page, element_id: str) -> list[float]:
    """The element's box in the viewport, scrolled into view first (a click lands only on screen:
    the EEG above the timeline makes the page taller than the window)."""
    return page.evaluate(
        f"(() => {{ const e = document.getElementById('{element_id}'); e.scrollIntoView({{block: 'center'}});"
        " const r = e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()"
    )


def test_a_recording_is_uploaded_drawn_and_a_window_explained(server, shared_data, tmp_path):
    with browser_page(tmp_path / "profile") as page:
        page.send("Page.addScriptToEvaluateOnNewDocument", source=RECORD_VIOLATIONS)
        page.send("Page.navigate", url=f"{server.url}/")
        page.wait_for("document.readyState === 'complete' && document.body.dataset.state === 'empty'")
        page.evaluate(f"sessionStorage.setItem('eegfm-api-key', '{API_KEY}'); location.reload()")
        page.wait_for(
            "document.readyState === 'complete' && document.getElementById('model').textContent.includes('rest')"
        )
        page.set_files("#file", [shared_data / "eegmat" / "Subject10_2.edf"])  # its change event scores it
        page.wait_for("document.body.dataset.state === 'rendered'", timeout=60)
        assert page.evaluate("document.getElementById('timeline').dataset.windows") == "6"
        assert page.evaluate("document.getElementById('uncertainty').dataset.windows") == "6"
        assert page.evaluate("document.getElementById('minutes').rows.length") == 2  # rest, task
        recommendation = page.evaluate("document.getElementById('answer-recommendation').textContent")
        assert recommendation.startswith("Recommendation: ")
        _the_answer_is_shown_above_the_timeline(page)
        timeline = box(page, "timeline")
        page.click(timeline[0] + timeline[2] * 0.5, timeline[1] + timeline[3] * 0.5)  # mid 62 s: window 2 or 3
        title = page.wait_for(EXPLAINED, timeout=60)
        assert title.startswith(("Window 2 ", "Window 3 ")), title
        assert page.evaluate("document.getElementById('heatmaps').dataset.maps") == "2"
        assert page.evaluate("document.querySelectorAll('#heatmaps canvas').length") == 2
        assert page.evaluate("document.getElementById('verdict').textContent").startswith("Explanation")
        # the EEG follows the explained window: its page is the window's
        page.wait_for(DRAWN.format(f"{10 * int(title.split()[1])}@7"), timeout=60)
        _drive_the_eeg(page)
        painted = dict(page.evaluate(PAINTED))
        assert set(painted) == {"timeline", "uncertainty", "traces", "classband", "overview", "rest", "task"}, painted
        assert min(painted.values()) > 1000, painted
        assert page.evaluate(IMAGES_LOADED)
        if os.environ.get("EEGFM_PAGE_SCREENSHOT"):
            page.screenshot(os.environ["EEGFM_PAGE_SCREENSHOT"])
        assert page.console_errors() == []
        assert page.evaluate("window.cspViolations") == []  # the page's Content-Security-Policy blocked nothing
        assert page.evaluate("sessionStorage.getItem('eegfm-api-key')") == API_KEY
        # and the browser enforces it: a script put inline in the page does not run
        page.evaluate(INLINE_SCRIPT)
        page.wait_for("window.cspViolations.length > 0")
        assert page.evaluate("window.inlineRan === undefined")
        assert page.evaluate("window.cspViolations[0]").startswith("script-src")


def _the_answer_is_shown_above_the_timeline(page) -> None:
    """The recording's answer: its class, probability, interval and windows, then a row per class,
    above the class timeline."""
    assert page.evaluate("document.getElementById('answer').hidden") is False
    predicted = page.evaluate("document.getElementById('answer').dataset.predicted")
    said = page.evaluate("document.getElementById('answer-predicted').textContent")
    assert predicted in ("rest", "task") and re.fullmatch(
        rf"{predicted} [01]\.\d\d \([01]\.\d\d–[01]\.\d\d\), 6 windows", said
    )
    rows = page.evaluate("Array.from(document.getElementById('answer-classes').rows).map((r) => r.textContent)")
    assert len(rows) == 2 and re.match(r"rest[01]\.\d\d", rows[0]) and re.match(r"task[01]\.\d\d", rows[1])
    tops = page.evaluate("['answer', 'timeline'].map((id) => document.getElementById(id).getBoundingClientRect().top)")
    assert tops[0] < tops[1]


def _drive_the_eeg(page) -> None:
    """The EEG's 18 derivations, paged by button and by arrow key, redrawn at another sensitivity,
    and a click on the class band under it explaining the window on view."""
    eeg_rows = "#eeg-labels span:not(.extra)"  # the recording's ECG is drawn below them
    labels = page.evaluate(f"Array.from(document.querySelectorAll('{eeg_rows}')).map((s) => s.textContent)")
    assert labels == BANANA
    assert page.evaluate("document.querySelectorAll('#eeg-labels span.interpolated').length") == 0
    start = int(page.evaluate("document.getElementById('traces').dataset.start"))  # 20 or 30 s
    for button, expected in [("eeg-prev", start - 10), ("eeg-next", start)]:
        page.evaluate(f"document.getElementById('{button}').click()")
        page.wait_for(DRAWN.format(f"{expected}@7"), timeout=60)
    assert page.evaluate("document.getElementById('eeg-page').textContent") == f"0:{start}-0:{start + 10} of 1:02"
    page.evaluate("document.activeElement.blur()")
    keys = [("ArrowLeft", 37, start - 10), ("ArrowRight", 39, start), ("ArrowRight", 39, start + 10)]
    for key, code, expected in keys:
        page.press(key, code)
        page.wait_for(DRAWN.format(f"{expected}@7"), timeout=60)
    start += 10
    ink_at_7 = page.evaluate(INK)
    assert ink_at_7[0] > 2000  # 18 traces drawn
    page.evaluate(SENSITIVITY.format(20))
    page.wait_for(DRAWN.format(f"{start}@20"))
    assert page.evaluate(INK) != ink_at_7  # the same EEG, smaller: other pixels
    page.evaluate(SENSITIVITY.format(7))
    page.wait_for(DRAWN.format(f"{start}@7"))
    assert page.evaluate("document.getElementById('classband').dataset.windows") == "1"  # 10 s windows, 10 s pages
    band = box(page, "classband")
    page.click(band[0] + band[2] * 0.3, band[1] + 8)
    assert page.wait_for(EXPLAINED + f".startsWith('Window {start // 10} ')", timeout=60)


def test_interpolated_derivations_are_drawn_apart_with_why(server, shared_data, tmp_path):
    """A recording without F7 and Fz: the three derivations through them are labelled as
    interpolated, with the reason on hover, and the key to the grey dashed lines is shown."""
    import mne

    raw = mne.io.read_raw_edf(shared_data / "eegmat" / "Subject10_2.edf", preload=True, verbose="error")
    raw.drop_channels(["EEG F7", "EEG Fz"])
    path = tmp_path / "without_f7_fz_raw.fif"
    raw.save(path, verbose="error")
    with browser_page(tmp_path / "profile") as page:
        page.send("Page.navigate", url=f"{server.url}/")
        page.wait_for("document.readyState === 'complete'")
        page.evaluate(f"sessionStorage.setItem('eegfm-api-key', '{API_KEY}'); location.reload()")
        page.wait_for("document.readyState === 'complete' && document.getElementById('key').value !== ''")
        page.set_files("#file", [path])
        page.wait_for("document.body.dataset.state === 'rendered'", timeout=60)
        page.wait_for(DRAWN.format("0@7"), timeout=60)
        marked = page.evaluate(
            "Array.from(document.querySelectorAll('#eeg-labels span.interpolated'))"
            ".map((s) => [s.textContent, s.title])"
        )
        assert [name for name, _ in marked] == ["Fp1-F7", "F7-T3", "Fz-Cz"]
        assert all("not in the recording" in title for _, title in marked)
        assert page.evaluate("document.getElementById('eeg-interpolated').hidden") is False
        if os.environ.get("EEGFM_PAGE_SCREENSHOT"):
            page.screenshot(os.environ["EEGFM_PAGE_SCREENSHOT"].replace(".png", "-interpolated.png"))
        assert page.console_errors() == []


def test_a_benchmark_export_shows_its_answer_and_says_why_it_cannot_explain(fused_export, shared_data, tmp_path):
    """The page on an --export folder (a network fused with a second part): the recording's answer
    above the timeline and the windows drawn as for one network; a click asks for an explanation,
    which a fused model cannot give, and the page says why."""
    keys = tmp_path / "keys.txt"
    keys.write_text(API_KEY + "\n")
    with (
        serving(["--model", str(fused_export), "--api_keys_file", str(keys)]) as server,
        browser_page(tmp_path / "profile") as page,
    ):
        page.send("Page.navigate", url=f"{server.url}/")
        page.wait_for("document.readyState === 'complete'")
        page.evaluate(f"sessionStorage.setItem('eegfm-api-key', '{API_KEY}'); location.reload()")
        page.wait_for(
            "document.readyState === 'complete' && document.getElementById('model').textContent.includes('rest')"
        )
        page.set_files("#file", [shared_data / "eegmat" / "Subject10_2.edf"])
        page.wait_for("document.body.dataset.state === 'rendered'", timeout=60)
        assert page.evaluate("document.getElementById('timeline').dataset.windows") == "6"
        _the_answer_is_shown_above_the_timeline(page)
        timeline = box(page, "timeline")
        page.click(timeline[0] + timeline[2] * 0.5, timeline[1] + timeline[3] * 0.5)
        page.wait_for("document.body.dataset.state === 'error'", timeout=60)
        said = page.evaluate("document.getElementById('status').textContent")
        assert "explanations need one network" in said, said
        page.wait_for(DRAWN.format("20@7"), timeout=60)  # the clicked window's EEG page, drawn all the same
        assert page.console_errors() == [] or all("422" in e for e in page.console_errors())
        if os.environ.get("EEGFM_PAGE_SCREENSHOT"):
            page.screenshot(os.environ["EEGFM_PAGE_SCREENSHOT"].replace(".png", "-fused.png"))
