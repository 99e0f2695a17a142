"""Gathering by need: a host gathers only the facts its selected controls' kinds need, in as few
round trips as the facts' rounds require (one shell script per round).

Fact modules (``docker``, ``host``, ``platform``, ``kubernetes``, ...) each export FACTS; this module joins them
into one registry and runs the rounds. Nothing here knows any benchmark.

Example::

    facts = gather(runner, host_config.data, {"info", "daemon_json"})
    facts.need("info")["LoggingDriver"]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from hardline.benchmarks.gather import docker, host, kubeapi, kubefiles, kubenode, kubernetes, platform
from hardline.benchmarks.gather.core import FactError, HostFacts, Stat, parse_sections, preamble

__all__ = ["FACTS", "FactError", "HostFacts", "Stat", "gather", "closure", "script_for"]

MODULES = (docker, host, platform, kubernetes, kubenode, kubefiles, kubeapi)
FACTS = {f.name: f for module in MODULES for f in module.FACTS}
assert len(FACTS) == sum(len(m.FACTS) for m in MODULES), "duplicate fact names"

# runner(script) -> stdout of `sh -c script` on the host; raises when the host cannot run it
Runner = Callable[[str], str]


def closure(names: Iterable[str]) -> set[str]:
    """The facts asked for and every fact they require, transitively."""
    wanted: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        if name not in FACTS:
            raise KeyError(f"unknown fact {name!r}")
        wanted.add(name)
        todo += FACTS[name].requires
    return wanted


def script_for(round_no: int, wanted: set[str], data: dict[str, Any], facts: HostFacts) -> str | None:
    """The script of one round, or None when no wanted fact of that round has lines to send."""
    facts.gathered = facts.gathered or set(wanted)  # facts that serve several others read it
    # registry order: a fact's lines come after those of the facts it reads from the same round
    lines = [line for name, fact in FACTS.items() if name in wanted and fact.round == round_no
             for line in fact.lines(data, facts)]
    return "\n".join(preamble(data) + lines) + "\n" if lines else None


def gather(runner: Runner, data: dict[str, Any], needs: Iterable[str], paths: Iterable[str] = ()) -> HostFacts:
    """The facts ``needs`` names (and what they require) from one host, and the stat of
    ``paths``. Raises on an unreachable host (every check of the host is then ERROR); a failing
    command is an error of its fact only."""
    facts = HostFacts(wanted_paths=sorted(set(paths)))
    wanted = closure(needs)
    facts.gathered = wanted
    for round_no in sorted({FACTS[n].round for n in wanted}):
        script = script_for(round_no, wanted, data, facts)
        if script is not None:
            facts.sections.update(parse_sections(runner(script)))
            facts.round_trips += 1
        for name, fact in FACTS.items():
            if name in wanted and fact.round == round_no:
                fact.parse(facts, data)
    return facts
