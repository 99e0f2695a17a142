"""QEMU Machine Protocol over a unix socket: one command per connection, events skipped."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from lab.common import LabError


def qmp_call(path: Path, command: str, arguments: dict[str, Any] | None = None, timeout: float = 5) -> Any:
    """Send ``command`` (after the capabilities handshake) and return its ``return`` value.

    Raises LabError when QEMU refuses it or does not answer (OSError/ValueError are wrapped)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            reader = sock.makefile("r")
            reader.readline()  # greeting
            for execute, args in (("qmp_capabilities", None), (command, arguments)):
                message = {"execute": execute, **({"arguments": args} if args else {})}
                sock.sendall(json.dumps(message).encode() + b"\n")
                while True:  # skip asynchronous events until the reply
                    reply = json.loads(reader.readline() or "{}")
                    if "return" in reply or "error" in reply or not reply:
                        break
                if "return" not in reply:
                    raise LabError(f"QMP {execute} failed: {reply.get('error', 'no answer from QEMU')}")
            return reply["return"]
    except (OSError, ValueError) as exc:
        raise LabError(f"QMP {command}: {exc}") from None
