"""Spec tests of operations in pyinfra's own style: given facts, the commands an operation yields.

:func:`spec_host` sets up a real pyinfra State with one host whose facts are the ones given, by
:class:`~hardline.deploys.gather.Need` (what hardline's operations read through host_facts(),
and what pyinfra's built-in operations read through host.get_fact on their change path). A
fact that was not given is an error: an operation may not reach the host for anything.

    with spec_host({need(PathStat, path="/etc/docker"): None}) as host:
        assert commands(permissions._inner(path="/etc/docker", stat=None, max_mode="755")) == []
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from pyinfra.api import Config, Inventory, State
from pyinfra.api.command import FileUploadCommand, StringCommand
from pyinfra.api.host import Host
from pyinfra.context import ctx_host, ctx_state
from pyinfra.facts.server import TmpDir

from hardline.deploys.gather import HostFacts, Need, need


class UngivenFact(AssertionError):
    """An operation read a fact the spec did not give: it would have sent a command."""


@contextmanager
def spec_host(facts: dict[Need, Any], data: dict[str, Any] | None = None) -> Iterator[Host]:
    """The current pyinfra host for the block, with exactly these facts."""
    inventory = Inventory((["spec-host"], dict(data or {})))
    state = State(inventory, Config())
    host = inventory.get_host("spec-host")
    facts = {need(TmpDir): "/tmp", **facts}  # where pyinfra stages uploads: a property of the host, not a decision
    gathered = HostFacts()
    gathered.values.update(facts)
    host.data._hardline_facts = gathered
    asked: list[Need] = []

    def get_fact(fact: Any, *args: Any, **kwargs: Any) -> Any:
        item = need(fact, **kwargs)
        asked.append(item)
        if item not in facts:
            raise UngivenFact(f"operation read {item}, which the spec does not give")
        return facts[item]

    host.get_fact = get_fact  # type: ignore[method-assign,assignment]
    host.asked = asked  # type: ignore[attr-defined]
    with ctx_state.use(state), ctx_host.use(host):
        yield host


def commands(generator: Iterable[Any]) -> list[str]:
    """What an operation's generator yields, as text: shell commands, and uploads as ``upload DEST``."""
    out = []
    for command in generator:
        if isinstance(command, FileUploadCommand):
            if not isinstance(command.src, str):
                command.src.seek(0)
                src = command.src.read()
            else:
                with open(command.src, "rb") as local:
                    src = local.read()
            out.append(f"upload {command.dest} {len(src)} bytes")
        elif isinstance(command, StringCommand):
            out.append(command.get_raw_value())
        else:
            out.append(str(command))
    return out
