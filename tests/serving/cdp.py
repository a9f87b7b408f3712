"""Headless Chromium for the tests, driven over the Chrome DevTools Protocol (a websocket): open a
page, set a file input, click, press keys, read the page's state, catch its console errors, take screenshots.

The protocol's messages are JSON: a command ``{"id", "method", "params"}`` gets a reply with the
same id; events (``{"method", "params"}`` without id) arrive in between and are kept in ``events``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


# Runtime.evaluate's errors when the page navigates while it runs: the context it ran in is gone.
NAVIGATION_CUTS = ("Inspected target navigated or closed", "Cannot find context with specified id")


class DevToolsError(RuntimeError):
    """A command the browser refused, or a wait that ran out."""


class Page:
    """One browser tab over its DevTools websocket."""

    def __init__(self, url: str) -> None:
        from websockets.sync.client import connect  # the dev extra's client: only the browser tests

        self._socket = connect(url, max_size=64 * 2**20, open_timeout=20)
        self._next_id = 0
        self.events: list[dict] = []

    def close(self) -> None:
        self._socket.close()

    def send(self, method: str, timeout: float = 60, **params) -> dict:
        """The result of one command; DevToolsError with the browser's message if it fails."""
        self._next_id += 1
        self._socket.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self._socket.recv(timeout=max(0.01, deadline - time.monotonic())))
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise DevToolsError(f"{method}: {message['error'].get('message')}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (awaited if it is a promise)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise DevToolsError(f"{expression[:80]}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60, every: float = 0.1):
        """The first truthy value of ``expression``, polled; DevToolsError after ``timeout`` seconds.
        A poll the page's own navigation cut short (a reload under way) counts as not yet true."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except DevToolsError as err:
                if not any(cut in str(err) for cut in NAVIGATION_CUTS):
                    raise
                value = None
            if value:
                return value
            time.sleep(every)
        raise DevToolsError(f"{expression[:80]}: still false after {timeout:g} s")

    def set_files(self, selector: str, paths: list[Path]) -> None:
        """A file input's files, as if the user chose them (its input and change events fire)."""
        root = self.send("DOM.getDocument")["root"]["nodeId"]
        node = self.send("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        self.send("DOM.setFileInputFiles", nodeId=node, files=[str(p) for p in paths])

    def click(self, x: float, y: float) -> None:
        """A left mouse click at the page's CSS pixel (x, y)."""
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def double_click(self, x: float, y: float) -> None:
        """Two left clicks at (x, y), as a double click: the page gets click, click, dblclick."""
        for count in (1, 2):
            for kind in ("mousePressed", "mouseReleased"):
                self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=count)

    def press(self, key: str, code: int) -> None:
        """A key pressed and released, as the user types it (``key`` as KeyboardEvent.key names it,
        ``code`` its Windows virtual key code: 37 left, 39 right)."""
        for kind in ("keyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=code)

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        Path(path).write_bytes(base64.b64decode(data))

    def console_errors(self) -> list[str]:
        """Errors the page logged: console.error, uncaught exceptions, failed loads (Log entries)."""
        errors = []
        for event in self.events:
            params = event["params"]
            if event["method"] == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif event["method"] == "Runtime.exceptionThrown":
                errors.append(params["exceptionDetails"].get("text", "exception"))
            elif event["method"] == "Log.entryAdded" and params["entry"]["level"] == "error":
                errors.append(params["entry"].get("text", ""))
        return errors


def _devtools_url(process: subprocess.Popen, timeout: float) -> str:
    """The browser's websocket address, from the line Chromium prints on stderr once it listens."""
    deadline, seen = time.monotonic() + timeout, ""
    while time.monotonic() < deadline and process.poll() is None:
        ready, _, _ = select.select([process.stderr], [], [], 0.2)
        if ready:
            line = process.stderr.readline()
            seen += line
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            if found:
                return found.group(1)
    raise DevToolsError(f"chromium did not start its DevTools server: {seen[-1500:]}")


@contextlib.contextmanager
def browser_page(user_data: Path, width: int = 1200, height: int = 900) -> Iterator[Page]:
    """A new tab of a headless Chromium of its own (profile in ``user_data``), its page, runtime and
    log events on; the browser is stopped on leaving."""
    process = subprocess.Popen(
        [CHROMIUM, "--headless=new", "--remote-debugging-port=0", f"--user-data-dir={user_data}", "--no-sandbox"]
        + ["--disable-gpu", "--no-first-run", "--disable-extensions", "--disable-background-networking"]
        + [f"--window-size={width},{height}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    page = None
    try:
        address = _devtools_url(process, timeout=30)
        # drained from now on: a full pipe would stall the browser
        threading.Thread(target=process.stderr.read, daemon=True).start()
        port = re.search(r"ws://[^/]+:(\d+)/", address).group(1)
        browser = Page(address)
        target = browser.send("Target.createTarget", url="about:blank")["targetId"]
        browser.close()
        page = Page(f"ws://127.0.0.1:{port}/devtools/page/{target}")
        for domain in ("Page", "Runtime", "Log"):
            page.send(f"{domain}.enable")
        page.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        yield page
    finally:
        if page is not None:
            page.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
