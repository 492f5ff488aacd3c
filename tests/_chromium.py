"""A tiny Chrome DevTools Protocol client for the OS's headless Chromium, over a pipe.

``chromium --remote-debugging-pipe`` reads CDP commands from file descriptor 3 and
writes answers and events to descriptor 4, each message JSON followed by a NUL byte
(the transport Puppeteer calls "pipe"). That needs no websocket library, no open
debugging port and no browser download: only the ``chromium`` Debian package.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

_TRAMPOLINE = (
    "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4);"
    " os.execv(sys.argv[3], sys.argv[3:])"
)
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The browser to use: ``$GBTRACK_CHROMIUM``, else the first candidate on ``PATH``."""
    chosen = os.environ.get("GBTRACK_CHROMIUM")
    if chosen:
        return shutil.which(chosen)
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class CDPError(RuntimeError):
    """A CDP command answered an error, or the browser did not answer in time."""


class Browser:
    """One headless Chromium driven through CDP on a pipe; a context manager.

    Args:
        executable: The Chromium binary.
        profile: An empty directory for the throwaway profile.
        width: The viewport width in CSS pixels.
        height: The viewport height in CSS pixels.
    """

    def __init__(self, executable: str, profile: Path, width: int = 1280, height: int = 900):
        self.width = width
        self.height = height
        self.events: list[dict[str, Any]] = []  # every CDP event received, in order
        self._targets: list[str] = []  # the tabs open() opened, for close_pages()
        self._answers: dict[int, dict[str, Any]] = {}
        self._arrived = threading.Condition()
        self._next_id = 0
        commands_read, self._commands = os.pipe()
        self._answers_fd, answers_write = os.pipe()
        args = [
            "--headless=new",
            "--remote-debugging-pipe",
            # The test browser only opens a loopback page we serve; Chromium's sandbox
            # needs user namespaces that CI containers running as root do not have.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        # Map our pipe ends onto descriptors 3 and 4 in the child, as Chromium expects
        # (a Python trampoline: /bin/sh redirects single-digit descriptors only).
        trampoline = [sys.executable, "-c", _TRAMPOLINE, str(commands_read), str(answers_write)]
        self._process = subprocess.Popen(
            [*trampoline, executable, *args],
            pass_fds=(commands_read, answers_write),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(commands_read)
        os.close(answers_write)
        self._reader = threading.Thread(target=self._read, name="cdp-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._answers_fd, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._arrived:
                    self._arrived.notify_all()
                return
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            with self._arrived:
                for raw in messages:
                    message = json.loads(raw)
                    if "id" in message:
                        self._answers[message["id"]] = message
                    else:
                        self.events.append(message)
                self._arrived.notify_all()

    def send(
        self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None
    ) -> dict[str, Any]:
        """Send one command and wait for its result.

        Raises:
            CDPError: If it answers an error, or nothing within 30 seconds.
        """
        with self._arrived:
            self._next_id += 1
            command_id = self._next_id
        message: dict[str, Any] = {"id": command_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        with self._arrived:
            if not self._arrived.wait_for(lambda: command_id in self._answers, 30.0):
                raise CDPError(f"{method}: no answer within 30 s")
            answer = self._answers.pop(command_id)
        if "error" in answer:
            raise CDPError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    def open(self, url: str) -> Page:
        """Open ``url`` in a new tab and attach to it."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._targets.append(target)
        attached = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        page = Page(self, attached["sessionId"])
        for domain in ("Runtime", "Log", "Page"):
            page.send(f"{domain}.enable")
        page.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
        )
        seen = len(self.events)
        page.send("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired", page.session, after=seen)
        return page

    def wait_event(self, method: str, session: str, *, after: int = 0) -> dict[str, Any]:
        """Wait up to 30 seconds for the first ``method`` event of ``session`` past ``after``.

        Raises:
            CDPError: If none arrives in time.
        """

        def find() -> dict[str, Any] | None:
            for event in self.events[after:]:
                if event["method"] == method and event.get("sessionId") == session:
                    return event
            return None

        with self._arrived:
            if not self._arrived.wait_for(lambda: find() is not None, 30.0):
                raise CDPError(f"no {method} within 30 s")
            event = find()
        assert event is not None
        return event

    def close_pages(self) -> None:
        """Close every tab :meth:`open` opened: the browser stays, for the next test."""
        targets, self._targets = self._targets, []
        for target in targets:
            with contextlib.suppress(CDPError):
                self.send("Target.closeTarget", {"targetId": target})

    def close(self) -> None:
        """Ask the browser to quit, kill it if it does not, and close the pipes."""
        if self._process.poll() is None:
            with contextlib.suppress(CDPError, OSError):
                self.send("Browser.close")
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
        os.close(self._commands)
        self._reader.join(10)
        os.close(self._answers_fd)

    def __enter__(self) -> Browser:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Page:
    """One attached tab (a flattened CDP session)."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a command to this tab."""
        return self.browser.send(method, params, session=self.session)

    def evaluate(self, expression: str) -> Any:
        """Evaluate JavaScript in the page and return its JSON value.

        Raises:
            CDPError: If the expression throws.
        """
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise CDPError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 15.0) -> Any:
        """Evaluate ``expression`` until it is truthy; return that value.

        Raises:
            AssertionError: If it stays falsy for ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"still falsy after {timeout} s: {expression}")
            time.sleep(0.05)

    def screenshot(self, path: Path, *, full_page: bool = True) -> Path:
        """Save a PNG of the whole page (or only the viewport) at ``path``."""
        data = self.send(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": full_page}
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data["data"]))
        return path

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors (CSP, network) so far."""
        found: list[str] = []
        for event in list(self.browser.events):
            if event.get("sessionId") != self.session:
                continue
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(json.dumps(params["exceptionDetails"]))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(json.dumps(params.get("args")))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(params["entry"].get("text", ""))
        return found
