"""What every fact module shares: the gathered-facts container, the section protocol of the gather
scripts, and the Fact unit the registry is made of.

A gather script is one shell script per round trip. Each fact contributes lines that print
sections: ``run NAME CMD ARGS...`` prints a header, the command's output, its exit code and its
stderr, so that one round trip carries many commands whose failures stay visible. Every command
runs under ``timeout`` (inventory variable hardline_command_timeout): a hung command becomes exit
code 124 for its own section, and the facts that needed it are errors, not a stalled run.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any, Callable

MARK = "@@HL"
TIMED_OUT = (124, 137)  # timeout(1): TERM sent (124), or KILL after the grace period (128 + 9)

# run NAME CMD...: header, output, exit code, stderr. $HLTO (seconds) bounds each command when
# timeout(1) exists; commands are external programs (sh -c '...' for scripts) so that it can.
RUN_FN = (f"run() {{ n=$1; shift; e=$(mktemp); echo '{MARK} '$n; "
          "if [ -n \"$HLTO\" ]; then timeout -k 5 \"$HLTO\" \"$@\" 2>\"$e\"; else \"$@\" 2>\"$e\"; fi; rc=$?; "
          f"echo; echo '{MARK}-RC '$rc; cat \"$e\"; rm -f \"$e\"; }}")


def preamble(data: dict[str, Any]) -> list[str]:
    """First lines of every gather script: PATH with sbin, C locale, the per-command timeout, a
    temporary directory shared by the sections of this round (exported as $HLT)."""
    timeout = int(data.get("hardline_command_timeout") or 0)
    return [
        "export PATH=\"$PATH:/usr/sbin:/sbin:/usr/local/sbin:/usr/local/bin\" LC_ALL=C",
        f"HLTO={timeout}; command -v timeout >/dev/null 2>&1 || HLTO=; [ \"$HLTO\" != 0 ] || HLTO=",
        "HLT=$(mktemp -d) && export HLT && trap 'rm -rf \"$HLT\"' EXIT",
        RUN_FN,
    ]


class FactError(Exception):
    """A fact could not be gathered; checks that need it are ERROR, never PASS."""


@dataclass(frozen=True)
class Stat:
    path: str
    owner: str
    group: str
    mode: int
    kind: str


@dataclass
class HostFacts:
    sections: dict[str, tuple[int, str, str]] = field(default_factory=dict)  # name -> (rc, out, err)
    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    stats: dict[str, Stat | str | None] = field(default_factory=dict)  # None: absent; str: stat error
    round_trips: int = 0
    gathered: set[str] = field(default_factory=set)  # names of the facts asked for
    wanted_paths: list[str] = field(default_factory=list)  # files the selected controls name

    def need(self, name: str) -> Any:
        """The parsed fact, or FactError saying why it is missing."""
        if name in self.errors:
            raise FactError(f"{name}: {self.errors[name]}")
        if name not in self.values:
            raise FactError(f"{name}: not gathered")
        return self.values[name]

    def stat(self, path: str) -> Stat | None:
        if path not in self.stats:
            raise FactError(f"{path}: not stat'ed")
        stat = self.stats[path]
        if isinstance(stat, str):
            raise FactError(f"cannot stat {path}: {stat}")
        return stat


Lines = Callable[[dict[str, Any], HostFacts], list[str]]
Parse = Callable[[HostFacts, dict[str, Any]], None]


@dataclass(frozen=True)
class Fact:
    """One thing a check can need: the script lines that gather it in round ``round`` (they may
    read facts of earlier rounds) and the parser that turns its sections into ``facts.values``.
    A round is only run when one of its facts has lines to send."""

    name: str
    lines: Lines
    parse: Parse
    round: int = 1
    requires: tuple[str, ...] = ()  # facts that must be gathered too (earlier rounds, or helpers)


def parse_sections(output: str) -> dict[str, tuple[int, str, str]]:
    """Split a script's output into name -> (exit code, stdout, stderr)."""
    sections: dict[str, tuple[int, str, str]] = {}
    if output.startswith(f"{MARK} "):
        chunks = [""] + output[len(MARK) + 1:].split(f"\n{MARK} ")
    else:
        chunks = output.split(f"\n{MARK} ")
    for chunk in chunks[1:]:
        name, _, rest = chunk.partition("\n")
        body, _, tail = rest.rpartition(f"\n{MARK}-RC ")
        rc_text, _, err = tail.partition("\n")
        sections[name.strip()] = (int(rc_text.strip() or 1), body.removesuffix("\n"), err.strip())
    return sections


def section(facts: HostFacts, name: str, allow_rc: tuple[int, ...] = (0,), fact: str | None = None) -> str | None:
    """A section's output, or None after recording why under the fact's name."""
    rc, out, err = facts.sections.get(name, (127, "", "section missing from gather output"))
    if rc not in allow_rc:
        if rc in TIMED_OUT:
            facts.errors[fact or name] = f"{name} timed out (hardline_command_timeout) and was stopped"
        else:
            facts.errors[fact or name] = f"{name} failed with exit code {rc}: {(err or out).strip()[:300]}"
        return None
    return out


def json_section(facts: HostFacts, name: str, complaint: str) -> None:
    """Parse a section's output as JSON into facts.values[name]; a failure is the fact's error."""
    import json

    out = section(facts, name)
    if out is None:
        return
    try:
        facts.values[name] = json.loads(out)
    except ValueError:
        facts.errors[name] = f"{complaint}: {out[:200]}"


def split_blocks(out: str, marker: str = "### ") -> dict[str, str]:
    """Output of `echo "### NAME"; ...` loops: name -> text. Only lines starting with ``marker``
    open a block; text before the first one is dropped."""
    blocks: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines():
        if line.startswith(marker):
            current = line[4:]
            blocks[current] = []
        elif current is not None:
            blocks[current].append(line)
    return {k: "\n".join(v) for k, v in blocks.items()}


def split_files(out: str) -> dict[str, str]:
    """Output of `echo "### $f"; cat "$f"` loops: path -> content (a "### text" line inside a
    file, e.g. a comment, stays content: only "### /path" opens a file)."""
    return split_blocks(out, "### /")


def key_values(out: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


STAT_FN = ("for p in \"$@\"; do if [ -e \"$p\" ] || [ -L \"$p\" ]; then "
           "stat -L -c '%n\t%U\t%G\t%a\t%F' \"$p\" 2>&1 | sed 's/^stat: /ERR\t/'; else printf 'MISSING\t%s\\n' \"$p\"; fi; done")


def stat_line(name: str, paths: list[str]) -> str:
    """A section that stats every path (following symlinks): one process for all of them."""
    return f"run {name} sh -c {shlex.quote(STAT_FN)} _ " + " ".join(shlex.quote(p) for p in paths)


def parse_stats(facts: HostFacts, name: str) -> None:
    out = section(facts, name)
    if out is None:
        return
    for line in out.splitlines():
        parts = line.split("\t")
        if parts[0] == "MISSING":
            facts.stats[parts[1]] = None
        elif parts[0] == "ERR":
            facts.stats[parts[1].split(":")[0].strip("'‘’")] = parts[1]
        elif len(parts) == 5:
            path, owner, group, mode, kind = parts
            facts.stats[path] = Stat(path, owner, group, int(mode, 8), kind)


def shell(name: str, script: str, *args: str) -> str:
    """A section running a small POSIX sh script with quoted arguments ($1, $2...)."""
    return f"run {name} sh -c {shlex.quote(script)} _" + "".join(" " + shlex.quote(a) for a in args)
