"""Debian's headless Chromium driven over the Chrome DevTools protocol: a tiny websocket client
(no browser downloads, no client library) for the report tests and perf/report_scale.py."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1800"]


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class WebSocket:
    """Just enough RFC 6455 for CDP: client handshake, masked text frames out, frames in."""

    def __init__(self, url: str, timeout: float = 30):
        m = re.match(r"ws://([^/:]+):(\d+)(/.*)", url)
        if not m:
            raise ValueError(f"not a ws:// URL: {url}")
        self.sock = socket.create_connection((m.group(1), int(m.group(2))), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {m.group(3)} HTTP/1.1\r\nHost: {m.group(1)}:{m.group(2)}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("websocket handshake: connection closed")
            head += chunk
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"websocket handshake refused: {head[:200]!r}")

    def _read(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("websocket closed")
            buf += chunk
        return buf

    def send(self, text: str) -> None:
        payload = text.encode()
        header = bytes([0x81])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def recv(self) -> str:
        message = b""
        while True:
            b1, b2 = self._read(2)
            n = b2 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            data = self._read(n)
            opcode = b1 & 0x0F
            if opcode == 0x8:
                raise ConnectionError("websocket closed by the browser")
            if opcode in (0x9, 0xA):  # ping/pong: not sent by Chromium's DevTools server in practice
                continue
            message += data
            if b1 & 0x80:
                return message.decode()


class DevTools:
    """Commands and events over one page target."""

    def __init__(self, ws_url: str):
        self.ws = WebSocket(ws_url)
        self.next_id = 0
        self.events: list[dict] = []

    def __call__(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, event: str, timeout: float = 30) -> dict:
        """The next unconsumed ``event`` (consumed: waiting twice waits for a second one)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for msg in self.events:
                if msg.get("method") == event and not msg.get("_seen"):
                    msg["_seen"] = True
                    return msg
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(event)

    def js(self, expression: str):
        result = self("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def click(self, selector: str, timeout: float = 10) -> None:
        """A real mouse click in the middle of the element (scrolled into view first). The point is
        taken only once the element itself is what the page has there: the report draws hosts'
        rows lazily, and a layout shift between measuring and clicking would click something else."""
        probe = (f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.scrollIntoView({{block: 'center'}});"
                 " const r = e.getBoundingClientRect(); const x = r.x + r.width / 2, y = r.y + r.height / 2;"
                 " const hit = document.elementFromPoint(x, y);"
                 " return [x, y, !!hit && (hit === e || e.contains(hit))]; })()")
        deadline = time.monotonic() + timeout
        while True:
            x, y, on_target = self.js(probe)
            if on_target:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{selector}: another element covers its middle")
            time.sleep(0.05)
        for kind in ("mousePressed", "mouseReleased"):
            self("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self("Page.captureScreenshot", format="png")["data"]))
        return path

    def load(self, url: str, timeout: float = 120) -> float:
        """Navigate and wait for the load event; seconds from navigation start to the end of the
        load event as the page measured it (parsing, the inline script's first drawing, layout)."""
        self("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired", timeout)
        return self.js("performance.getEntriesByType('navigation')[0].loadEventEnd") / 1000

    def problems(self) -> list[dict]:
        """Script exceptions, console errors and error log entries seen so far."""
        return [e for e in self.events if (e.get("method") == "Runtime.exceptionThrown")
                or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
                or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]

    def fetched(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]


class ChromiumError(Exception):
    pass


@contextlib.contextmanager
def chromium(binary: str) -> Iterator[DevTools]:
    """A headless Chromium with a throw-away profile; DevTools on its first page (Page, Runtime,
    Log and Network events enabled)."""
    profile = tempfile.mkdtemp(prefix="hardline-chromium-")
    proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                raise ChromiumError(f"chromium exited with {proc.returncode}")
            m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            port = int(m.group(1)) if m else None
        if not port:
            raise ChromiumError("chromium did not announce its DevTools port")
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(t for t in targets if t["type"] == "page")
        cdp = DevTools(page["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "Log", "Network"):
            cdp(f"{domain}.enable")
        yield cdp
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)
