"""Run the real verifier (plan, gather by need, evaluate) against this machine or an SSH host."""

from __future__ import annotations

from typing import Any

from hardline.benchmarks.engine import evaluate, gather_host, plan
from hardline.benchmarks.select import Selection, needs, node_controls
from hardline.inventory import HostConfig, check_host
from hardline.results import Result


def daemon_data(daemon, **extra: Any) -> dict[str, Any]:
    """Inventory data that points the verifier at a test daemon."""
    return {"docker_socket_path": str(daemon.socket), "docker_pidfile": str(daemon.pidfile), **extra}


def docker_host(data: dict[str, Any], name: str = "@local", connection: dict[str, Any] | None = None,
                groups: tuple[str, ...] = ("docker_hosts",)) -> HostConfig:
    """A validated Docker host (group docker_hosts) whose inventory data is ``data``."""
    return check_host(name, list(groups), [("test inventory", data)], {**(connection or {}), **data})


def verify_config(config: HostConfig, ids: list[str] | None = None) -> dict[str, list[Result]]:
    """Every result (one per subject) by bare control id, gathering only what those controls need."""
    hp = plan(config, Selection())
    wanted = [(cat, c) for cat in hp.catalogs for c in node_controls(cat, config, Selection())
              if ids is None or c.id in ids]
    facts = gather_host(config, *needs([c for _, c in wanted], config.data))  # only what they need
    return {c.id: evaluate(c, config, facts, cat) for cat, c in wanted}


def verify(data: dict[str, Any], ids: list[str] | None = None, name: str = "@local",
           connection: dict[str, Any] | None = None) -> dict[str, Result]:
    """Results by control id for one Docker host whose inventory data is ``data`` (validated first);
    a control checked per subject gives its first subject's result."""
    return {cid: rs[0] for cid, rs in verify_config(docker_host(data, name, connection), ids).items()}


def verify_subjects(data: dict[str, Any], ids: list[str], name: str = "@local") -> dict[str, list[Result]]:
    """Every result (one per subject, e.g. per container) by control id."""
    return verify_config(docker_host(data, name), ids)


def statuses(results: dict[str, Result]) -> dict[str, str]:
    return {cid: r.status for cid, r in results.items()}


def full_facts(config: HostConfig, selection: Selection | None = None):
    """The facts of a full verify of ``config``: what every control its roles select needs."""
    hp = plan(config, selection or Selection())
    return gather_host(config, hp.needs, hp.paths)


def gather_counted(config: HostConfig, selection: Selection | None = None):
    """The facts of a full verify of ``config`` (every control its roles select) and the number
    of commands that cost the host: the gather counts each command it hands to pyinfra's
    connector (one per round), and a host that could not be verified fails here."""
    facts = full_facts(config, selection)
    assert not isinstance(facts, Exception), facts
    return facts, facts.round_trips
