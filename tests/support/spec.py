"""Spec tests of operations in pyinfra's own style: given facts, the commands an operation yields.

:func:`spec_host` sets up a real pyinfra State with one host whose facts are the ones given, by
:class:`~hardline.deploys.gather.Need` (what hardline's operations read through host_facts(),
and what pyinfra's built-in operations read through host.get_fact on their change path). A
fact that was not given is an error: an operation may not reach the host for anything.

    with spec_host({need(PathStat, path="/etc/docker"): None}) as host:
        assert commands(permissions._inner(path="/etc/docker", stat=None, max_mode="755")) == []
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from pyinfra.api import Config, Inventory, State
from pyinfra.api.command import FileUploadCommand, StringCommand
from pyinfra.api.host import Host
from pyinfra.context import ctx_host, ctx_inventory, ctx_state
from pyinfra.facts.server import TmpDir

from hardline.deploys.gather import HostFacts, Need, need


class UngivenFact(AssertionError):
    """An operation read a fact the spec did not give: it would have sent a command."""


class SpecFacts(HostFacts):
    """Gathered facts that are exactly the given ones: prefetching adds nothing."""

    def prefetch(self, needs: Iterable[Need]) -> None:
        return None

    def get(self, fact: Any, **kwargs: Any) -> Any:
        item = need(fact, **kwargs)
        if item not in self.values:
            raise UngivenFact(f"the deploy read {item}, which the spec does not give")
        return self.values[item]


@contextmanager
def spec_host(facts: dict[Need, Any], data: dict[str, Any] | None = None) -> Iterator[Host]:
    """The current pyinfra host for the block (in group docker_hosts), with exactly these facts."""
    inventory = Inventory((["spec-host"], {}), docker_hosts=(["spec-host"], dict(data or {})))
    state = State(inventory, Config())
    host = inventory.get_host("spec-host")
    facts = {need(TmpDir): "/tmp", **facts}  # where pyinfra stages uploads: a property of the host, not a decision
    gathered = SpecFacts()
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
    with ctx_state.use(state), ctx_inventory.use(inventory), ctx_host.use(host):
        yield host


def planned(deploy: Callable[[], None], facts: dict[Need, Any], data: dict[str, Any] | None = None,
            ) -> list[tuple[str, list[str], bool]]:
    """A whole @deploy function run for the spec host with these facts: (operation name without the
    deploy's prefix, commands, conditional) of every operation it added that has commands, in
    order; conditional ones (``_if``) run only if an earlier one changes. Operations that found
    the host compliant yield nothing and are left out."""
    with spec_host(facts, data) as host:
        deploy()
        state = host.state
        out = []
        for op_hash in state.get_op_order():
            if op_hash not in state.ops[host]:
                continue
            op_data = state.get_op_data_for_host(host, op_hash)
            name = min(state.op_meta[op_hash].names).split(" | ", 1)[-1]
            sent = commands(op_data.command_generator())
            if sent:
                out.append((name, sent, bool(op_data.global_arguments.get("_if"))))
        return out


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
