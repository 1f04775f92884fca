"""Open a page in a real headless Chromium and report what a user would see, for the tests.

Chromium is driven through the DevTools protocol over a pipe (``--remote-debugging-pipe``: it
reads commands on fd 3 and writes replies and events on fd 4, each a JSON object ended by a NUL
byte), so no driver package, no browser download and no port are needed: only a ``chromium``
binary (Debian's ``chromium`` package; ``make setup`` installs it when it can).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fasdl.errors import BrowserError

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = (
    "install Chromium: `sudo apt-get install -y --no-install-recommends chromium` (Debian, "
    "Ubuntu), or set FASDL_CHROMIUM to a Chromium or Chrome binary"
)


def find_chromium() -> str | None:
    """The Chromium binary: ``$FASDL_CHROMIUM``, or the first of ``CHROMIUM_NAMES`` on PATH."""
    named = os.environ.get("FASDL_CHROMIUM")
    if named:
        return named
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass(frozen=True)
class PageCheck:
    """What loading one page gave: the console's errors (and uncaught exceptions), each
    image's natural size, the page's full height and a PNG screenshot of the whole page."""

    console_errors: list[str]
    images: list[tuple[int, int]]
    height: int
    screenshot: bytes
    log: list[str] = field(default_factory=list)  # every console message, for a failure


class _Pipe:
    """One DevTools session over Chromium's pipe: commands with ids, events queued."""

    def __init__(self, proc: subprocess.Popen[bytes], to_browser: int, from_browser: int) -> None:
        self.proc = proc
        self.to_browser = to_browser
        self.from_browser = from_browser
        self.next_id = 0
        self.replies: dict[int, dict[str, Any]] = {}
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.lock = threading.Condition()
        self.reader = threading.Thread(target=self._read, name="cdp-reader", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        buf = b""
        while True:
            chunk = os.read(self.from_browser, 65536)
            if not chunk:
                with self.lock:
                    self.lock.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self.lock:
                        self.replies[msg["id"]] = msg
                        self.lock.notify_all()
                else:
                    self.events.put(msg)

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout_s: float = 30.0,
    ) -> dict[str, Any]:
        self.next_id += 1
        mid = self.next_id
        msg: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout_s
        with self.lock:
            while mid not in self.replies:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise BrowserError(f"no reply to {method} within {timeout_s:.0f} s")
                self.lock.wait(min(left, 0.5))
            reply = self.replies.pop(mid)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result


def check_page(
    path: str | Path, *, chromium: str | None = None, width: int = 1100, timeout_s: float = 60.0
) -> PageCheck:
    """Load ``path`` (a local HTML file) in headless Chromium, ``width`` pixels wide, and
    return its console errors, its images' sizes and a screenshot of the whole page."""
    binary = chromium or find_chromium()
    if binary is None:
        raise BrowserError(f"no Chromium found: {INSTALL_HINT}")
    url = Path(path).resolve().as_uri()
    profile = tempfile.mkdtemp(prefix="fasdl-chromium-")
    to_r, to_w = os.pipe()  # we write commands, Chromium reads them on fd 3
    from_r, from_w = os.pipe()  # Chromium writes on fd 4, we read

    def fds() -> None:  # in the child: the pipe ends on fds 3 and 4 (inheritable by dup2)
        a, b = os.dup(to_r), os.dup(from_w)
        os.dup2(a, 3)
        os.dup2(b, 4)

    proc = subprocess.Popen(
        [
            binary,
            "--headless",
            "--no-sandbox",  # tests run as root in CI containers
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
            f"--window-size={width},900",
            "about:blank",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=fds,
        close_fds=False,
    )
    os.close(to_r)
    os.close(from_w)
    pipe = _Pipe(proc, to_w, from_r)
    try:
        return _check(pipe, url, width, timeout_s)
    finally:
        with contextlib.suppress(BrowserError):
            pipe.call("Browser.close", timeout_s=5)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        os.close(to_w)
        os.close(from_r)
        shutil.rmtree(profile, ignore_errors=True)


def _check(pipe: _Pipe, url: str, width: int, timeout_s: float) -> PageCheck:
    target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Runtime", "Log", "Page"):
        pipe.call(f"{domain}.enable", session=session)
    pipe.call(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        session=session,
    )
    pipe.call("Page.navigate", {"url": url}, session=session)
    errors: list[str] = []
    log: list[str] = []
    deadline = time.monotonic() + timeout_s
    loaded = False
    while not loaded:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BrowserError(f"{url} did not load within {timeout_s:.0f} s")
        try:
            ev = pipe.events.get(timeout=min(left, 0.5))
        except queue.Empty:
            continue
        loaded = _note(ev, session, errors, log)
    # events that arrived with the load (console calls are queued before it)
    while True:
        try:
            _note(pipe.events.get_nowait(), session, errors, log)
        except queue.Empty:
            break
    value = pipe.call(
        "Runtime.evaluate",
        {
            "expression": "JSON.stringify({images: Array.from(document.images).map("
            "i => [i.naturalWidth, i.naturalHeight]), "
            "height: document.documentElement.scrollHeight})",
            "returnByValue": True,
        },
        session=session,
    )["result"]["value"]
    page = json.loads(value)
    shot = pipe.call(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": page["height"], "scale": 1},
        },
        session=session,
    )
    return PageCheck(
        console_errors=errors,
        images=[(int(w), int(h)) for w, h in page["images"]],
        height=int(page["height"]),
        screenshot=base64.b64decode(shot["data"]),
        log=log,
    )


def _note(ev: dict[str, Any], session: str, errors: list[str], log: list[str]) -> bool:
    """Record a console or log event; True for the page's load event."""
    if ev.get("sessionId") != session:
        return False
    method, params = ev.get("method"), ev.get("params", {})
    if method == "Page.loadEventFired":
        return True
    if method == "Runtime.consoleAPICalled":
        text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
        log.append(f"console.{params['type']}: {text}")
        if params["type"] in ("error", "assert"):
            errors.append(text)
    elif method == "Runtime.exceptionThrown":
        d = params["exceptionDetails"]
        errors.append(str(d.get("exception", {}).get("description", d.get("text"))))
    elif method == "Log.entryAdded":
        entry = params["entry"]
        log.append(f"{entry['level']}: {entry['text']}")
        if entry["level"] == "error":
            errors.append(f"{entry.get('url', '')}: {entry['text']}")
    return False
