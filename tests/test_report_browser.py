"""The HTML report in a real browser: Debian's headless Chromium driven over the Chrome DevTools
protocol (a tiny websocket client below; no browser downloads). The report renders, the filters
work when clicked, nothing is fetched from the network and the console stays free of errors.
A screenshot is saved under reports/ (gitignored) and its path printed."""

from __future__ import annotations

import base64
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
from pathlib import Path

import pytest

from hardline.report import write_html
from hardline.results import ERROR, FAIL, MANUAL, PASS, SKIP, WAIVED, Result, RunResults
from tests.support.fixtures import _unavailable

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1800"]


class WebSocket:
    """Just enough RFC 6455 for CDP: client handshake, masked text frames out, frames in."""

    def __init__(self, url: str, timeout: float = 30):
        m = re.match(r"ws://([^/:]+):(\d+)(/.*)", url)
        assert m, url
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
        assert head.startswith(b"HTTP/1.1 101"), head

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
        result = self("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element (scrolled into view first)."""
        box = self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.scrollIntoView({{block: 'center'}});"
                      " const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)


@pytest.fixture(scope="module")
def chromium():
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if not binary:
        _unavailable("Debian's chromium is not installed (scripts/setup.sh installs it)")
    profile = tempfile.mkdtemp(prefix="hardline-chromium-")
    proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                pytest.fail(f"chromium exited with {proc.returncode}")
            m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            port = int(m.group(1)) if m else None
        assert port, "chromium did not announce its DevTools port"
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(t for t in targets if t["type"] == "page")
        yield DevTools(page["webSocketDebuggerUrl"])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


def result(host, cid, status, section="2", level=1, **kw) -> Result:
    return Result(host=host, benchmark="cis-docker", benchmark_version="1.6.0", control_id=cid, slug=f"s{cid}", title=f"Control {cid}",
                  section=section, section_title=f"Section {section}", level=level, automated=status != MANUAL,
                  status=status, **kw)


def sample_runs() -> tuple[RunResults, RunResults]:
    waiver = {"reason": "no authz plugin", "approved_by": "security", "expires": "2099-01-01", "expired": False,
              "underlying_status": FAIL}
    same = [result("web-1", "2.12", WAIVED, waiver=waiver), result("web-1", "1.2.1", MANUAL, "1.2"),
            result("web-1", "3.21", SKIP, "3"), result("db-1", "3.18", FAIL, "3"), result("db-1", "2.2", ERROR)]
    before = RunResults.new([result("web-1", "2.2", FAIL), result("web-1", "2.14", PASS),
                             result("db-1", "1.1.3", FAIL, "1.1", 2)] + same, started="2026-01-01T00:00:00+00:00",
                            label="before")
    after = RunResults.new([
        result("web-1", "2.2", PASS), result("web-1", "2.14", FAIL, expected="no-new-privileges = true",
                                             found="no-new-privileges = false", remediation="Set it in daemon.json"),
        result("web-1", "2.12", WAIVED, waiver=waiver), result("web-1", "1.2.1", MANUAL, "1.2"),
        result("web-1", "3.21", SKIP, "3"), result("db-1", "1.1.3", PASS, "1.1", 2),
        result("db-1", "3.18", FAIL, "3", found="/etc/docker/daemon.json is 666"),
        result("db-1", "2.2", ERROR, found="host could not be verified: timeout"),
    ], started="2026-01-02T00:00:00+00:00", label="after")
    return before, after


def test_report_renders_filters_work_no_console_errors(chromium, tmp_path):
    before, after = sample_runs()
    html = write_html(after, tmp_path / "report.html", previous=before)
    cdp = chromium
    for domain in ("Page", "Runtime", "Log", "Network"):
        cdp(f"{domain}.enable")
    cdp("Page.navigate", url=html.as_uri())
    cdp.wait_for("Page.loadEventFired")

    assert cdp.js("document.title").startswith("hardline report")
    assert cdp.js("document.getElementById('overall-score').textContent") == "40.0"  # 2 PASS of 5 scored controls
    visible = "document.querySelectorAll('#results tr.result:not([hidden])').length"
    total = len(after.results)
    assert cdp.js(visible) == total
    assert cdp.js("document.getElementById('visible-count').textContent") == f"{total} of {total} shown"

    cdp.click('button.status-filter[data-status="FAIL"]')  # hide FAIL
    assert cdp.js("document.querySelector('button.status-filter[data-status=\"FAIL\"]').getAttribute('aria-pressed')") == "false"
    assert cdp.js(visible) == total - 2
    assert cdp.js("[...document.querySelectorAll('#results tr.result[data-status=FAIL]')].every(r => r.hidden)")
    cdp.click('button.status-filter[data-status="PASS"]')  # hide PASS too
    assert cdp.js(visible) == total - 2 - 2
    cdp.click('button.status-filter[data-status="FAIL"]')  # FAIL back
    assert cdp.js(visible) == total - 2

    cdp.js("(() => { const s = document.getElementById('filter-host'); s.value = 'db-1';"
           " s.dispatchEvent(new Event('change')); })()")
    assert cdp.js("[...document.querySelectorAll('#results tr.result:not([hidden])')].map(r => r.dataset.status).sort().join()") \
        == "ERROR,FAIL"
    cdp.js("(() => { const s = document.getElementById('filter-host'); s.value = '';"
           " s.dispatchEvent(new Event('change')); })()")
    cdp.click('button.status-filter[data-status="PASS"]')
    cdp.js("(() => { const s = document.getElementById('filter-level'); s.value = '2'; s.dispatchEvent(new Event('change')); })()")
    assert cdp.js(visible) == 1
    cdp.js("(() => { const s = document.getElementById('filter-level'); s.value = ''; s.dispatchEvent(new Event('change')); })()")
    cdp.js("(() => { const s = document.getElementById('filter-section'); s.value = 'cis-docker 3'; s.dispatchEvent(new Event('change')); })()")
    assert cdp.js(visible) == 2
    cdp.js("(() => { const s = document.getElementById('filter-section'); s.value = ''; s.dispatchEvent(new Event('change')); })()")
    cdp.click("#filter-changed")
    assert cdp.js(visible) == 3  # 2.2 web-1 fixed, 2.14 web-1 newly failing, 1.1.3 db-1 fixed
    cdp.click("#filter-changed")
    assert cdp.js(visible) == total

    # the comparison and the evidence are on the page
    assert cdp.js("document.querySelectorAll('#changes-newly-failing tr').length") == 2  # header + 2.14
    cdp.click("#results tr.result[data-status=FAIL][data-host=web-1] summary")
    assert "found: no-new-privileges = false" in cdp.js("document.body.innerText")

    shot = ROOT / "reports" / "report-browser.png"
    shot.parent.mkdir(exist_ok=True)
    cdp("Page.navigate", url=html.as_uri())  # fresh, unfiltered page for the screenshot
    cdp.wait_for("Page.loadEventFired")
    shot.write_bytes(base64.b64decode(cdp("Page.captureScreenshot", format="png")["data"]))
    print(f"\nscreenshot: {shot}")
    assert shot.stat().st_size > 10_000

    errors = [e for e in cdp.events if (e.get("method") == "Runtime.exceptionThrown")
              or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    assert errors == []
    fetched = [e["params"]["request"]["url"] for e in cdp.events if e.get("method") == "Network.requestWillBeSent"]
    assert all(u.startswith(("file:", "data:")) for u in fetched), fetched
