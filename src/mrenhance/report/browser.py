"""Drive a headless Chromium over the DevTools protocol: open a report, act, look, screenshot.

Used by the report's browser test and by ``benchmarks/report_screenshot.py``. It talks to
Chromium through ``--remote-debugging-pipe`` (file descriptors 3 and 4, JSON messages ending
in a NUL byte), so it needs nothing beyond the standard library and a ``chromium`` binary.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["Browser", "find_chromium"]

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    """Path of a Chromium-family browser: ``$MRENHANCE_CHROMIUM`` or the first on ``PATH``."""
    env = os.environ.get("MRENHANCE_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    """One headless Chromium with one page; a context manager.

    ``console`` collects every console message and uncaught exception of the page as
    ``(level, text)``; levels are the DevTools ones (``"log"``, ``"warning"``, ``"error"``,
    ``"exception"``).
    """

    def __init__(self, binary: str | None = None, width: int = 1400, height: int = 1000):
        binary = binary or find_chromium()
        if binary is None:
            raise FileNotFoundError("no chromium found (set MRENHANCE_CHROMIUM)")
        self._profile = tempfile.mkdtemp(prefix="mrenhance-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        self._proc = subprocess.Popen(
            [
                binary,
                "--headless=new",
                "--remote-debugging-pipe",
                "--no-sandbox",  # choice: CI containers run as root without user namespaces
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                f"--user-data-dir={self._profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(3, 4),
            preexec_fn=_fds(to_child_r, from_child_w),
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._id = 0
        self.console: list[tuple[str, str]] = []
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self._session = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)[
            "sessionId"
        ]
        self.send("Runtime.enable")
        self.send("Page.enable")
        self.send("Log.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    # ---- protocol ----------------------------------------------------------------------
    def _write(self, message: dict[str, Any]) -> None:
        os.write(self._to_child, json.dumps(message).encode() + b"\0")

    def _read(self, timeout: float) -> dict[str, Any]:
        import select

        deadline = time.monotonic() + timeout
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_child], [], [], left)[0]:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def _event(self, msg: dict[str, Any]) -> None:
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.console.append((params["type"], text))
        elif method == "Runtime.exceptionThrown":
            d = params["exceptionDetails"]
            self.console.append(
                ("exception", d.get("exception", {}).get("description", d.get("text", "")))
            )
        elif method == "Log.entryAdded":
            entry = params["entry"]
            self.console.append((entry["level"], entry["text"]))

    def call(self, method: str, timeout: float = 60.0, session: bool = False, **params: Any):
        """Send one DevTools command and return its result (events are recorded)."""
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        self._write(message)
        while True:
            msg = self._read(timeout)
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._event(msg)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """A command to the page's session."""
        return self.call(method, session=True, **params)

    # ---- page --------------------------------------------------------------------------
    def open(self, path: str | os.PathLike) -> None:
        """Load a local file and wait for its load event."""
        self.send("Page.navigate", url=Path(path).resolve().as_uri())
        self.wait_for("document.readyState === 'complete'")

    def eval(self, expression: str, timeout: float = 60.0) -> Any:
        """The value of a JavaScript expression (promises awaited)."""
        result = self.call(
            "Runtime.evaluate",
            timeout=timeout,
            session=True,
            expression=expression,
            returnByValue=True,
            awaitPromise=True,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.eval(f"Boolean({expression})"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {expression}")
            time.sleep(0.05)

    def mouse(self, kind: str, x: float, y: float, buttons: int = 0) -> None:
        """A real mouse event (``mouseMoved``, ``mousePressed``, ``mouseReleased``)."""
        extra: dict[str, Any] = {"button": "left" if (buttons or kind != "mouseMoved") else "none"}
        if kind != "mouseMoved":
            extra["clickCount"] = 1
        self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, buttons=buttons, **extra)

    def drag(self, x0: float, y0: float, x1: float, y1: float, steps: int = 8) -> None:
        self.mouse("mouseMoved", x0, y0)
        self.mouse("mousePressed", x0, y0, buttons=1)
        for i in range(1, steps + 1):
            self.mouse("mouseMoved", x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * i / steps, 1)
        self.mouse("mouseReleased", x1, y1)

    def key(self, key: str, code: str, keycode: int) -> None:
        for kind in ("keyDown", "keyUp"):
            self.send(
                "Input.dispatchKeyEvent",
                type=kind,
                key=key,
                code=code,
                windowsVirtualKeyCode=keycode,
            )

    def screenshot(
        self, path: str | os.PathLike, full_page: bool = False, selector: str | None = None
    ) -> Path:
        """A PNG of the viewport, the whole page, or the element matching ``selector``."""
        params: dict[str, Any] = {"format": "png"}
        if selector is not None:
            box = self.eval(
                f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
                ".getBoundingClientRect(); return {x: r.x + window.scrollX, "
                "y: r.y + window.scrollY, width: r.width, height: r.height}; })()"
            )
            params["captureBeyondViewport"] = True
            params["clip"] = {**box, "scale": 1}
        elif full_page:
            params["captureBeyondViewport"] = True
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": size["width"],
                              "height": size["height"], "scale": 1}  # fmt: skip
        data = self.send("Page.captureScreenshot", **params)["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _fds(read_end: int, write_end: int):
    """A preexec_fn putting ``read_end`` on fd 3 and ``write_end`` on fd 4 in the child."""

    def move() -> None:
        r, w = os.dup(read_end), os.dup(write_end)  # out of the way of 3 and 4
        os.dup2(r, 3)
        os.dup2(w, 4)
        os.close(r)
        os.close(w)

    return move
