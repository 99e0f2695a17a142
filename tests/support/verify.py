"""Run the real verifier (gather over testinfra + evaluate) against this machine or an SSH host."""

from __future__ import annotations

from typing import Any

from hardline.benchmarks.engine import evaluate, gather_host
from hardline.catalog import load_catalog
from hardline.inventory import check_host
from hardline.results import Result


def daemon_data(daemon, **extra: Any) -> dict[str, Any]:
    """Inventory data that points the verifier at a test daemon."""
    return {"docker_socket_path": str(daemon.socket), "docker_pidfile": str(daemon.pidfile), **extra}


def verify(data: dict[str, Any], ids: list[str] | None = None, name: str = "@local",
           connection: dict[str, Any] | None = None) -> dict[str, Result]:
    """Results by control id for one host whose inventory data is ``data`` (validated first)."""
    catalog = load_catalog()
    config = check_host(name, ["test"], [("test inventory", data)], {**(connection or {}), **data})
    facts = gather_host(config)
    controls = [c for c in catalog.controls if ids is None or c.id in ids]
    return {c.id: evaluate(c, config, facts, catalog)[0] for c in controls}


def verify_subjects(data: dict[str, Any], ids: list[str], name: str = "@local") -> dict[str, list[Result]]:
    """Every result (one per subject, e.g. per container) by control id."""
    catalog = load_catalog()
    config = check_host(name, ["test"], [("test inventory", data)], data)
    facts = gather_host(config)
    return {c.id: evaluate(c, config, facts, catalog) for c in catalog.controls if c.id in ids}


def statuses(results: dict[str, Result]) -> dict[str, str]:
    return {cid: r.status for cid, r in results.items()}


class CountingHost:
    """A testinfra host that counts the commands sent to it."""

    def __init__(self, host):
        self.host, self.commands = host, 0

    def run(self, command):
        self.commands += 1
        return self.host.run(command)
