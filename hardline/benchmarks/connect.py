"""Reach inventory hosts through pyinfra's own connectors, from any process.

The gathering runs in the pyinfra child process (hardline.worker, serving
hardline.benchmarks.remote) that uses pyinfra's API with gevent, as pyinfra itself does; this
module is the parent's side: it sends each host's name,
groups, inventory data (connection data included) and the facts to gather, and reads back one
HostFacts (or the error that kept the host from being verified) per host as each finishes.

Example::

    facts = gather_hosts([HostRequest(config, needs={"info"}, paths=set())])["web1"]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hardline import worker
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
    payload = {  # the connectors see this process's environment (DOCKER_HOST, SSH_AUTH_SOCK...)
        "op": "gather",
        "parallel": parallel,
        "connect_timeout": max(int(r.config.data["hardline_connect_timeout"]) for r in requests),
        "hosts": [{**_host_spec(r.config), "needs": sorted(r.needs), "paths": sorted(r.paths)} for r in requests],
    }
    results: dict[str, HostFacts | Exception] = {}
    try:
        with worker.conversation(payload) as receive:
            while True:
                message = receive()
                if message[0] == "done":
                    break
                _, name, seconds, facts = message
                results[name] = facts
                if progress:
                    progress(name, facts, seconds)
    except worker.WorkerDied as died:
        for r in requests:  # the child died: every host it did not report is unverified
            if r.config.name not in results:
                results[r.config.name] = RuntimeError(f"gathering stopped: {died}")
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
    payload = {"op": "run", "connect_timeout": int(config.data["hardline_connect_timeout"]),
               "host": _host_spec(config), "command": command}
    try:
        with worker.conversation(payload) as receive:
            answer = receive()
    except worker.WorkerDied as died:
        raise ConnectionError(f"{config.name}: {died}") from None
    if answer[0] == "error":
        raise ConnectionError(f"{config.name}: {answer[1]}")
    _, code, stdout, stderr = answer
    return code, stdout, stderr
