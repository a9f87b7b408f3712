"""The report in a real browser (headless Chromium): every figure decodes and is drawn, and the
page logs nothing to the console. Skipped where chromium is not installed."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# After load, each image's decoded width (0: it failed to load) and any error go into the DOM,
# which --dump-dom prints.
PROBE = """<script>
window.addEventListener("error", (e) => document.body.setAttribute("data-errors", String(e.message)));
window.addEventListener("load", () => document.body.setAttribute(
  "data-widths", Array.from(document.images).map((i) => (i.complete ? i.naturalWidth : 0)).join(",")));
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_every_image_loads_and_the_console_stays_quiet(report, tmp_path):
    html = report["html"].read_text(encoding="utf-8")
    page = tmp_path / "probed.html"
    page.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    widths = re.search(r'data-widths="([^"]*)"', result.stdout)
    assert widths, result.stdout[-2000:]
    values = [int(w) for w in widths.group(1).split(",")]
    assert len(values) == html.count("<img") >= 8 and min(values) > 100
    assert not re.search(r"<body[^>]*data-errors=", result.stdout)  # no script error
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console
