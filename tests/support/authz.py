"""A real Docker authorization plugin (legacy plugin protocol over a unix socket) that allows
every request and records what it saw, so CIS 2.12 can be tested against a daemon that really
consults a plugin.

dockerd discovers legacy plugins as /run/docker/plugins/<name>.sock and calls
POST /Plugin.Activate, then /AuthZPlugin.AuthZReq and /AuthZPlugin.AuthZRes per API request.
"""

from __future__ import annotations

import json
import os
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path

PLUGIN_DIR = Path("/run/docker/plugins")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802 (http.server naming)
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.server.calls.append(self.path)
        if self.path == "/Plugin.Activate":
            body = {"Implements": ["authz"]}
        else:
            body = {"Allow": True}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.docker.plugins.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # keep test output clean
        pass

    def address_string(self):
        return "unix"


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class AllowAllAuthzPlugin:
    """Context manager: serves /run/docker/plugins/<name>.sock while active."""

    def __init__(self, name: str = "hl-allow-all"):
        self.name = name
        self.socket = PLUGIN_DIR / f"{name}.sock"
        self.server: _Server | None = None

    def __enter__(self) -> "AllowAllAuthzPlugin":
        PLUGIN_DIR.mkdir(parents=True, exist_ok=True)
        if self.socket.exists():
            self.socket.unlink()
        self.server = _Server(str(self.socket), _Handler)
        self.server.calls = []
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def calls(self) -> list[str]:
        return self.server.calls if self.server else []

    def __exit__(self, *exc) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
        if self.socket.exists():
            os.unlink(self.socket)
