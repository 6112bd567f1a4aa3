"""A headless Chromium driven over the DevTools protocol, through a pipe: pages as a person sees them.

Debian's ``chromium`` package (``scripts/system-deps.sh`` installs it), no driver and no
third-party client: Chromium's ``--remote-debugging-pipe`` reads DevTools commands on file
descriptor 3 and writes answers and events on 4, each a JSON object ended by a NUL byte. Used by
the dashboard screenshots (:mod:`inferwatch.stack.screenshots`) and the browser tests::

    with Browser() as browser:
        page = browser.open("http://127.0.0.1:9090/consoles/inferwatch.html", width=1400, height=900)
        page.wait_for("document.querySelectorAll('[data-rendered]').length > 0", timeout=30)
        Path("page.png").write_bytes(page.screenshot())

Chromium runs with a new empty profile, no sandbox (it runs as root here), and every background
connection off (updates, sync, field trials): on a closed network those would only be refused.

Environment:

* ``INFERWATCH_CHROMIUM``: the browser binary, e.g. ``/usr/bin/chromium`` (default: ``chromium``
  or ``chromium-browser`` on PATH).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
    "--disable-dev-shm-usage", "--metrics-recording-only", "--no-default-browser-check",
    "--remote-debugging-pipe",
)
COMMAND_TIMEOUT = 30.0


class BrowserError(RuntimeError):
    """Chromium is missing, died, or answered a command with an error."""


def chromium_binary() -> str:
    configured = os.environ.get("INFERWATCH_CHROMIUM")
    if configured:
        return configured
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    raise BrowserError("chromium not found on PATH: run scripts/system-deps.sh (apt-get install -y chromium)")


def _moved_above_9(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


class Browser:
    """One headless Chromium process; :meth:`open` gives a page (a tab) of its own."""

    def __init__(self, binary: str | None = None):
        self.binary = binary or chromium_binary()
        self._profile = tempfile.TemporaryDirectory(prefix="inferwatch-chromium-")
        self._next_id = 0
        self._answers: dict[int, dict] = {}
        self._events: list[dict] = []
        self._changed = threading.Condition()
        self._process: subprocess.Popen | None = None
        self.stderr: list[str] = []  # chromium's last lines, for error messages

    def __enter__(self) -> Browser:
        commands_read, self._commands = os.pipe()
        self._answers_read, answers_write = os.pipe()
        # Above 9, so that moving them onto 3 and 4 overwrites neither.
        commands_read, answers_write = (_moved_above_9(fd) for fd in (commands_read, answers_write))
        # Chromium wants the pipe on descriptors 3 and 4 exactly; bash puts them there (dash cannot
        # redirect descriptors above 9).
        wrapper = f'exec "$0" "$@" 3<&{commands_read} 4>&{answers_write} {commands_read}<&- {answers_write}>&-'
        self._process = subprocess.Popen(
            ["bash", "-c", wrapper, self.binary, *FLAGS, f"--user-data-dir={self._profile.name}", "about:blank"],
            pass_fds=(commands_read, answers_write), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(commands_read)
        os.close(answers_write)
        self._threads = [threading.Thread(target=self._read_answers, daemon=True),
                         threading.Thread(target=self._drain_stderr, daemon=True)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._process is None:
            return
        try:
            self.send("Browser.close", timeout=5)
        except BrowserError:
            pass
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(10)
        os.close(self._commands)
        for thread in self._threads:
            thread.join(10)
        self._process.stderr.close()
        self._process = None
        self._profile.cleanup()

    def _read_answers(self) -> None:
        buffer = b""
        with os.fdopen(self._answers_read, "rb", buffering=0) as pipe:
            while chunk := pipe.read(1 << 16):
                buffer += chunk
                *messages, buffer = buffer.split(b"\0")
                with self._changed:
                    for raw in messages:
                        message = json.loads(raw)
                        if "id" in message:
                            self._answers[message["id"]] = message
                        else:
                            self._events.append(message)
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def _drain_stderr(self) -> None:
        for line in self._process.stderr:
            self.stderr.append(line.decode(errors="replace").rstrip())
            del self.stderr[:-50]

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = COMMAND_TIMEOUT) -> dict:
        """Send one DevTools command and wait for its answer's ``result``."""
        if self._process is None or self._process.poll() is not None:
            raise BrowserError(f"chromium is not running: {self.stderr[-5:]}")
        with self._changed:
            self._next_id += 1
            command_id = self._next_id
        message = {"id": command_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._changed:
            while command_id not in self._answers:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._process.poll() is not None:
                    raise BrowserError(f"{method}: no answer from chromium within {timeout:.0f} s")
                self._changed.wait(min(remaining, 0.5))
            answer = self._answers.pop(command_id)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error'].get('message')}")
        return answer.get("result", {})

    def open(self, url: str, width: int = 1400, height: int = 900) -> Page:
        """A new tab at ``url``, its viewport ``width`` x ``height`` CSS pixels."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session, width)
        page.send("Page.enable")
        page.send("Runtime.enable")
        page.resize(height)
        page.send("Page.navigate", {"url": url})
        page.wait_for("document.readyState === 'complete'", timeout=COMMAND_TIMEOUT)
        return page

    def events(self, method: str, session: str) -> list[dict]:
        with self._changed:
            return [e for e in self._events if e.get("method") == method and e.get("sessionId") == session]


class Page:
    def __init__(self, browser: Browser, session: str, width: int):
        self.browser = browser
        self.session = session
        self.width = width

    def send(self, method: str, params: dict | None = None, timeout: float = COMMAND_TIMEOUT) -> dict:
        return self.browser.send(method, params, self.session, timeout)

    def resize(self, height: int) -> None:
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (JSON-serialisable values)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(f"{expression[:60]}...: {details.get('exception', {}).get('description', details)}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float, interval: float = 0.25) -> None:
        """Until ``expression`` is true in the page; BrowserError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise BrowserError(f"not true within {timeout:.0f} s: {expression}")
            time.sleep(interval)

    def errors(self) -> list[str]:
        """JavaScript exceptions the page threw so far."""
        return [e["params"]["exceptionDetails"].get("exception", {}).get("description", "exception")
                for e in self.browser.events("Runtime.exceptionThrown", self.session)]

    def screenshot(self, full_page: bool = True) -> bytes:
        """A PNG of the page: the whole page (as tall as its content), or the viewport."""
        if full_page:
            height = int(self.evaluate("Math.ceil(document.documentElement.scrollHeight)"))
            self.resize(height)
        return base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"])

