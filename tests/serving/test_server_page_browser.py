"""The page in a real browser (headless Chromium over the DevTools protocol, ``tests/serving/cdp.py``):
a real eegmat recording chosen in its file input is scored and drawn, a click on the timeline
explains a window, and the console stays quiet. Skipped where chromium is not installed.

``EEGFM_PAGE_SCREENSHOT=/tmp/page.png`` keeps a screenshot of the page after the explanation."""

from __future__ import annotations

import os

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
IMAGES_LOADED = "Array.from(document.images).every((i) => i.complete && i.naturalWidth > 0)"


@pytest.fixture(scope="module")
def server(finetuned, tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys") / "keys.txt"
    keys.write_text(API_KEY + "\n")
    with serving(["--model", str(finetuned), "--api_keys_file", str(keys)]) as running:
        yield running


def test_a_recording_is_uploaded_drawn_and_a_window_explained(server, shared_data, tmp_path):
    with browser_page(tmp_path / "profile") as page:
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
        assert page.evaluate("document.getElementById('recommendation').textContent")
        box = page.evaluate(
            "(() => { const r = document.getElementById('timeline').getBoundingClientRect();"
            " return [r.left, r.top, r.width, r.height]; })()"
        )
        page.click(box[0] + box[2] * 0.5, box[1] + box[3] * 0.5)  # the middle of the 62 s: window 2 or 3
        page.wait_for("document.body.dataset.state === 'explained'", timeout=60)
        assert page.evaluate("document.getElementById('heatmaps').dataset.maps") == "2"
        assert page.evaluate("document.querySelectorAll('#heatmaps canvas').length") == 2
        assert page.evaluate("document.getElementById('verdict').textContent").startswith("Explanation")
        painted = dict(page.evaluate(PAINTED))
        assert set(painted) == {"timeline", "uncertainty", "rest", "task"} and min(painted.values()) > 1000, painted
        assert page.evaluate(IMAGES_LOADED)
        if os.environ.get("EEGFM_PAGE_SCREENSHOT"):
            page.screenshot(os.environ["EEGFM_PAGE_SCREENSHOT"])
        assert page.console_errors() == []
        assert page.evaluate("sessionStorage.getItem('eegfm-api-key')") == API_KEY
