"""The facts a deploy reads, gathered in one command per host.

pyinfra runs one command per fact asked for, and an operation that asks for a fact inside its
generator asks twice (change detection, then execution). Asked that way, a re-deploy of the
whole profile with nothing to change sent 120 commands to a host. Here each deploy declares the
facts it will read (:func:`need`), ``harden()`` asks for all of them at once, and they come back
from one shell script whose sections are the facts' own commands, each section parsed by its
fact's own ``process()`` (pyinfra's built-in facts such as ``File``, ``Sha1File``, ``Sysctl``
and ``Which`` as well as hardline's). Operations then decide from these values and never ask for
facts themselves; only an operation that changes something sends commands.

A fact asked for that was not gathered in advance is fetched on its own when first read: the
values are always right, prefetching only makes them cheap. A section whose command fails
stops the host (fail closed), like a failing fact does in pyinfra.

    facts = host_facts()
    facts.prefetch([need(File, path="/etc/docker/daemon.json"), need(Sysctl, keys=["kernel.kptr_restrict"])])
    facts.get(File, path="/etc/docker/daemon.json")  # from the batch, no command
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pyinfra import host
from pyinfra.api import FactBase
from pyinfra.api.command import StringCommand
from pyinfra.api.exceptions import PyinfraError
from typing_extensions import override

MARK = "@@hardline-section"
FAILED = "@@hardline-failed"
ERROR = "@@hardline-stderr "
MISSING_COMMAND = "@@hardline-no-command"
_MARKER_TAIL = re.compile(r"^[0-9]+( [0-9]+)?$")  # what follows a marker: index [status]


class FactGatheringError(PyinfraError):
    """A fact's command failed on the host: nothing is decided from a fact that could not be read."""


def _hashable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


@dataclass(frozen=True)
class Need:
    """One fact with its arguments, e.g. ``need(File, path="/etc/docker/daemon.json")``."""

    fact: type[FactBase]
    args: tuple[tuple[str, Any], ...] = ()

    def kwargs(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.args}

    def command(self, fact: FactBase) -> str:
        """The shell command of ``fact`` (an instance of this need's fact), as pyinfra would run it."""
        kwargs = self.kwargs()
        command = fact.command(**kwargs) if callable(fact.command) else fact.command
        text = command.get_raw_value() if isinstance(command, StringCommand) else str(command)
        required = fact.requires_command(**kwargs)
        if required:
            text = f"if command -v {required} >/dev/null 2>&1; then\n{text}\nelse echo '{MISSING_COMMAND}'; fi"
        return text

    @staticmethod
    def value(fact: FactBase, lines: list[str]) -> Any:
        """The value of ``fact`` (the instance that gave the command) from its output lines: its
        default when there are none, as pyinfra does."""
        if lines == [MISSING_COMMAND] or not lines:
            return fact.default()
        return fact.process(lines)

    def __str__(self) -> str:
        return f"{self.fact.__name__}({', '.join(f'{k}={v!r}' for k, v in self.args)})"


def need(fact: type[FactBase], **kwargs: Any) -> Need:
    return Need(fact, tuple(sorted((k, _hashable(v)) for k, v in kwargs.items())))


class Batch(FactBase):
    """
    Output of several shell commands run by one shell, split by command: {index: lines}, and
    {index: (exit status, stderr lines)} under the key "failed" for those that failed.
    """

    @override
    def command(self, commands: list[str]) -> str:
        parts = ['e=$(mktemp 2>/dev/null) || e=/dev/null']
        for i, command in enumerate(commands):
            parts.append(f"echo '{MARK} {i}'\n(\n{command}\n) 2>\"$e\" || {{ echo \"{FAILED} {i} $?\"; "
                         f"sed 's/^/{ERROR}/' \"$e\" | head -n 20; }}")
        parts.append('[ "$e" = /dev/null ] || rm -f "$e"')
        return "\n".join(parts)

    @override
    def process(self, output: list[str]) -> dict[Any, Any]:
        sections: dict[Any, Any] = {"failed": {}}
        current: list[str] | None = None
        index = -1
        for line in output:
            # a command whose output does not end in a newline (a daemon.json written without
            # one) leaves the next marker at the end of its last line: split it off
            for marker in (MARK + " ", FAILED + " "):
                at = line.find(marker)
                if at > 0 and _MARKER_TAIL.match(line[at + len(marker):]):
                    if current is not None:
                        current.append(line[:at])
                    line = line[at:]
                    break
            if line.startswith(MARK + " "):
                index = int(line.split()[1])
                current = sections[index] = []
            elif line.startswith(FAILED + " "):
                _, failed_index, status = line.split()
                sections["failed"][int(failed_index)] = (int(status), [])
            elif line.startswith(ERROR) and index in sections["failed"]:
                sections["failed"][index][1].append(line[len(ERROR):])
            elif current is not None:
                current.append(line)
        return sections

    @staticmethod
    def default() -> dict[Any, Any]:
        return {"failed": {}}


class HostFacts:
    """The facts gathered on the current host during this run, by :class:`Need`."""

    def __init__(self) -> None:
        self.values: dict[Need, Any] = {}
        self.commands = 0  # commands this object sent (one per batch)

    def prefetch(self, needs: Iterable[Need]) -> None:
        """Gather every need not gathered yet, in one command."""
        missing = list(dict.fromkeys(n for n in needs if n not in self.values))
        if not missing:
            return
        self.commands += 1
        if len(missing) == 1:  # one fact: pyinfra's own way, same command and error handling
            (only,) = missing
            self.values[only] = host.get_fact(only.fact, **only.kwargs())
            return
        instances = [n.fact() for n in missing]  # a fact may keep state from command() for process()
        sections = host.get_fact(Batch, commands=[n.command(f) for n, f in zip(missing, instances)])
        for i, (item, fact) in enumerate(zip(missing, instances)):
            if i in sections["failed"]:
                status, stderr = sections["failed"][i]
                raise FactGatheringError(f"host {host.name}: could not read fact {item} (exit {status}): "
                                         + (" / ".join(stderr) or "no error output"))
            if i not in sections:
                raise FactGatheringError(f"host {host.name}: fact {item} gave no output section: the batch did not run")
            self.values[item] = item.value(fact, sections[i])

    def get(self, fact: type[FactBase], **kwargs: Any) -> Any:
        """A fact's value: gathered before, or fetched now on its own."""
        item = need(fact, **kwargs)
        if item not in self.values:
            self.prefetch([item])
        return self.values[item]


def host_facts() -> HostFacts:
    """This host's gathered facts (one object per host for the whole run)."""
    facts = host.data.get("_hardline_facts")
    if facts is None:
        facts = HostFacts()
        host.data._hardline_facts = facts
    return facts
