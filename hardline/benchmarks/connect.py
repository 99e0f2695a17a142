"""Reach inventory hosts through pyinfra's own connectors, from any process.

The gathering runs in a child process (hardline.benchmarks.remote) that uses pyinfra's API with
gevent, as pyinfra itself does; this module is the parent's side: it sends each host's name,
groups, inventory data (connection data included) and the facts to gather, and reads back one
HostFacts (or the error that kept the host from being verified) per host as each finishes.

Example::

    facts = gather_hosts([HostRequest(config, needs={"info"}, paths=set())])["web1"]
"""

from __future__ import annotations

import atexit
import os
import pickle
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hardline.benchmarks.gather.core import HostFacts
from hardline.inventory import HostConfig

Progress = Callable[[str, "HostFacts | Exception", float], None]


@dataclass
class HostRequest:
    config: HostConfig
    needs: set[str] = field(default_factory=set)
    paths: set[str] = field(default_factory=set)


def round_timeout(data: dict[str, Any]) -> int:
    """Seconds one gather round may take before the host is given up: every command of the round
    has hardline_command_timeout on the host; this bounds a host that stops answering at all."""
    return int(data["hardline_command_timeout"]) * 2 + 30


def gather_hosts(requests: list[HostRequest], parallel: int = 16,
                 progress: Progress | None = None) -> dict[str, HostFacts | Exception]:
    """Facts of every requested host, gathered concurrently through pyinfra's connectors."""
    if not requests:
        return {}
    payload = {
        "op": "gather",
        "env": dict(os.environ),  # the connectors see this process's environment (DOCKER_HOST, SSH_AUTH_SOCK...)
        "parallel": parallel,
        "connect_timeout": max(int(r.config.data["hardline_connect_timeout"]) for r in requests),
        "hosts": [{**_host_spec(r.config), "needs": sorted(r.needs), "paths": sorted(r.paths)} for r in requests],
    }
    results: dict[str, HostFacts | Exception] = {}
    with _LOCK:
        proc = _child()
        try:
            pickle.dump(payload, proc.stdin)
            proc.stdin.flush()
            while True:
                message = pickle.load(proc.stdout)
                if message[0] == "done":
                    break
                _, name, seconds, facts = message
                results[name] = facts
                if progress:
                    progress(name, facts, seconds)
        except (EOFError, BrokenPipeError, pickle.UnpicklingError) as err:
            _stop(proc)
            problem = _stderr_tail() or f"{type(err).__name__}"
            for r in requests:  # the child died: every host it did not report is unverified
                if r.config.name not in results:
                    results[r.config.name] = RuntimeError(f"gathering stopped: {problem}")
                    if progress:
                        progress(r.config.name, results[r.config.name], 0.0)
    return results


def _host_spec(config: HostConfig) -> dict[str, Any]:
    return {"name": config.name, "groups": list(config.groups), "data": {**config.connection, **config.data},
            "timeout": round_timeout(config.data)}


def run_command(config: HostConfig, command: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of one shell command on a host, through its pyinfra connector
    (the connection is kept for the next command). Raises ConnectionError when the host cannot
    be reached or does not answer in time."""
    payload = {"op": "run", "env": dict(os.environ), "connect_timeout": int(config.data["hardline_connect_timeout"]),
               "host": _host_spec(config), "command": command}
    with _LOCK:
        proc = _child()
        try:
            pickle.dump(payload, proc.stdin)
            proc.stdin.flush()
            answer = pickle.load(proc.stdout)
        except (EOFError, BrokenPipeError, pickle.UnpicklingError) as err:
            _stop(proc)
            raise ConnectionError(f"{config.name}: {_stderr_tail() or type(err).__name__}") from None
    if answer[0] == "error":
        raise ConnectionError(f"{config.name}: {answer[1]}")
    _, code, stdout, stderr = answer
    return code, stdout, stderr


_LOCK = threading.Lock()
_PROC: subprocess.Popen | None = None
_STDERR: Any = None


def _child() -> subprocess.Popen:
    """The gathering child, started on first use and kept for later requests of this process."""
    global _PROC, _STDERR
    if _PROC is None or _PROC.poll() is not None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")) if p)}
        _STDERR = tempfile.TemporaryFile()
        _PROC = subprocess.Popen([sys.executable, "-m", "hardline.benchmarks.remote"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=_STDERR, env=env)
        atexit.register(_stop, _PROC)
    return _PROC


def _stop(proc: subprocess.Popen) -> None:
    for stream in (proc.stdin, proc.stdout):
        try:
            if stream:
                stream.close()
        except OSError:
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _stderr_tail() -> str:
    if _STDERR is None:
        return ""
    _STDERR.seek(0)
    lines = _STDERR.read().decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else ""
