"""What every fact module shares: the gathered-facts container, the section protocol of the gather
scripts, and the Fact unit the registry is made of.

A gather script is one shell script per round trip. Each fact contributes lines that print
sections: ``run NAME CMD ARGS...`` prints a header, the command's output, its exit code and its
stderr, so that one round trip carries many commands whose failures stay visible. Every command
runs under ``timeout`` (inventory variable hardline_command_timeout): a hung command becomes exit
code 124 for its own section, and the facts that needed it are errors, not a stalled run.

What a section costs the host is counted in processes: ``run`` itself starts none (stderr goes
to one file per round, read back with the shell's ``read``), a plain program runs as
``timeout PROGRAM`` (two processes), a script as ``timeout sh -c`` (three and what it runs).
Sections made only of shell builtins that read kernel files (/proc, /sys) or ask ``command
-v`` (``runb``, :func:`builtin`) start no process at all and so have no timeout(1) of their
own; the round's time limit (connect.round_timeout) bounds them.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MARK = "@@HL"
TIMED_OUT = (124, 137)  # timeout(1): TERM sent (124), or KILL after the grace period (128 + 9)
INCOMPLETE = -1  # exit code of a section whose output stops before its exit code line

# run NAME CMD...: header, output, exit code, stderr. $HLTO (seconds) bounds each command when
# timeout(1) exists; commands are external programs (sh -c '...' for scripts) so that it can.
# Stderr goes to $HLE (one file for the round) and is copied back with builtins: no process.
RUN_FN = (f"run() {{ n=$1; shift; echo '{MARK} '$n; "
          "if [ -n \"$HLTO\" ]; then timeout -k 5 \"$HLTO\" \"$@\" 2>\"$HLE\"; else \"$@\" 2>\"$HLE\"; fi; rc=$?; "
          f"echo; echo '{MARK}-RC '$rc; hle; }}")
# runb NAME FUNCTION ARGS...: the same frame around a shell function of builtins (no process,
# no timeout(1): only for kernel files and `command -v`, see the module docstring)
RUNB_FN = f"runb() {{ n=$1; shift; echo '{MARK} '$n; \"$@\" 2>\"$HLE\"; rc=$?; echo; echo '{MARK}-RC '$rc; hle; }}"
# runs NAME CMD...: a command that prints sections of its own (framed as run does); its exit code
# and stderr follow as section NAME. The command bounds itself by $HLTO; timeout(1) gives it 5 s
# more to say so before stopping it.
RUNS_FN = ("runs() { n=$1; shift; if [ -n \"$HLTO\" ]; then timeout -k 5 $((HLTO + 5)) \"$@\" 2>\"$HLE\"; "
           f"else \"$@\" 2>\"$HLE\"; fi; rc=$?; echo; echo '{MARK} '$n; echo '{MARK}-RC '$rc; hle; }}")
# hle: copy the last command's stderr. rd FILE: the first line of a kernel file into $v (with or
# without a final newline); fails, $v empty, when the file cannot be opened.
HLE_FN = "hle() { while IFS= read -r l || [ -n \"$l\" ]; do printf '%s\\n' \"$l\"; done < \"$HLE\"; }"
RD_FN = "rd() { v=; { IFS= read -r v || :; } 2>/dev/null < \"$1\"; }"


def preamble(data: dict[str, Any]) -> list[str]:
    """First lines of every gather script: PATH with sbin, C locale, the per-command timeout, a
    temporary directory shared by the sections of this round (exported as $HLT; $HLE in it
    holds the current command's stderr)."""
    timeout = int(data.get("hardline_command_timeout") or 0)
    return [
        "export PATH=\"$PATH:/usr/sbin:/sbin:/usr/local/sbin:/usr/local/bin\" LC_ALL=C",
        f"HLTO={timeout}; command -v timeout >/dev/null 2>&1 || HLTO=; [ \"$HLTO\" != 0 ] || HLTO=",
        "HLT=$(mktemp -d) && export HLT && HLE=$HLT/e && trap 'rm -rf \"$HLT\"' EXIT",
        RUN_FN, RUNB_FN, RUNS_FN, HLE_FN, RD_FN,
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
    """Split a script's output into name -> (exit code, stdout, stderr). A section cut short
    (its command killed before the exit code line) gets INCOMPLETE."""
    sections: dict[str, tuple[int, str, str]] = {}
    if output.startswith(f"{MARK} "):
        chunks = [""] + output[len(MARK) + 1:].split(f"\n{MARK} ")
    else:
        chunks = output.split(f"\n{MARK} ")
    for chunk in chunks[1:]:
        name, _, rest = chunk.partition("\n")
        if rest.startswith(f"{MARK}-RC "):
            rest = "\n" + rest
        body, marker, tail = rest.rpartition(f"\n{MARK}-RC ")
        rc_text, _, err = tail.partition("\n")
        if not marker or not rc_text.strip().isdigit():
            sections[name.strip()] = (INCOMPLETE, rest, "output ended before the exit code: the command was stopped")
            continue
        sections[name.strip()] = (int(rc_text.strip()), body.removesuffix("\n"), err.strip())
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


# the regular files among the arguments, each opened by "### PATH" (empty ones too: awk names
# every file first, then again before its first line), in one process for all of them
CAT_FILES = ("for f do shift; [ -f \"$f\" ] && set -- \"$@\" \"$f\"; done; [ $# -gt 0 ] || exit 0; exec awk "
             "'BEGIN { for (i = 1; i < ARGC; i++) print \"### \" ARGV[i] } FNR == 1 { print \"### \" FILENAME } "
             "{ print }' \"$@\"")


def cat_files(name: str, globs: str, *paths: str) -> str:
    """A section printing files for split_files: ``globs`` expanded by the host's shell (trusted
    text, never inventory data), ``paths`` quoted."""
    return f"run {name} sh -c {shlex.quote(CAT_FILES)} _ {globs}" + "".join(" " + shlex.quote(p) for p in paths)


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


# one stat(1) for every path that exists (MISSING for the others, told apart from a dangling
# symlink, which is an error); stat's complaints stay on stderr, parse_stats reads them
STAT_FN = ("for p do shift; if [ -e \"$p\" ] || [ -L \"$p\" ]; then set -- \"$@\" \"$p\"; "
           "else printf 'MISSING\\t%s\\n' \"$p\"; fi; done; "
           "[ $# -eq 0 ] || stat -L -c '%n\t%U\t%G\t%a\t%F' -- \"$@\" || [ $? -eq 1 ]")


def stat_line(name: str, paths: list[str]) -> str:
    """A section that stats every path (following symlinks): sh and one stat for all of them."""
    return f"run {name} sh -c {shlex.quote(STAT_FN)} _ " + " ".join(shlex.quote(p) for p in paths)


def parse_stats(facts: HostFacts, name: str, paths: list[str] | None = None) -> None:
    """Stats of a stat_line section. A path stat(1) could not read gets its complaint (with
    ``paths``, the requested paths: also one that stat(1) did not report at all)."""
    out = section(facts, name)
    if out is None:
        return
    seen = set()
    for line in out.splitlines():
        parts = line.split("\t")
        if parts[0] == "MISSING" and len(parts) == 2:
            facts.stats[parts[1]] = None
            seen.add(parts[1])
        elif len(parts) == 5:
            path, owner, group, mode, kind = parts
            facts.stats[path] = Stat(path, owner, group, int(mode, 8), kind)
            seen.add(path)
    complaints = [c for c in facts.sections[name][2].splitlines() if c.strip()]
    for complaint in complaints:  # stat: cannot statx '/path': Permission denied
        quoted = re.search(r"'(.*)'", complaint)
        if quoted and quoted.group(1) not in seen:
            facts.stats[quoted.group(1)] = complaint.removeprefix("stat: ")
            seen.add(quoted.group(1))
    for path in paths or ():
        if path not in seen:
            problem = next((c for c in complaints if path in c), "; ".join(complaints) or "not reported by stat")
            facts.stats[path] = problem.removeprefix("stat: ")


def shell(name: str, script: str, *args: str) -> str:
    """A section running a small POSIX sh script with quoted arguments ($1, $2...)."""
    return f"run {name} sh -c {shlex.quote(script)} _" + "".join(" " + shlex.quote(a) for a in args)


def program(name: str, *argv: str) -> str:
    """A section running one program with quoted arguments: no sh -c in between."""
    return f"run {name} " + " ".join(shlex.quote(a) for a in argv)


def builtin(name: str, body: str, *args: str) -> list[str]:
    """A section whose body is made of shell builtins only (``rd``, ``read``, ``printf``,
    ``command -v``, ``[``), run in the script's own shell: no process, so no timeout(1) either;
    only for kernel files (/proc, /sys), /etc/selinux/config and PATH lookups. The body ends
    with ``return``, never ``exit``."""
    return [f"hl_{name}() {{ {body}\n}}",
            f"runb {name} hl_{name}" + "".join(" " + shlex.quote(a) for a in args)]
