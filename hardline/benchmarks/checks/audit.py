"""audit_watch check: the path is watched by auditd, in the loaded rules and persistently."""

from __future__ import annotations

import functools
import shlex
from typing import Any

from hardline.benchmarks.checks.targets import resolve
from hardline.benchmarks.gather.core import HostFacts
from hardline.results import FAIL, PASS, SKIP, Verdict

REQUIRED_PERMS = set("wa")  # writes and attribute changes are what an auditor must see


def watched(rules: list[str], path: str) -> str | None:
    """The rule (auditctl syntax) that watches path for writes and attribute changes, if any."""
    for rule in rules:
        parsed = _parse_rule(rule)
        if parsed is None:
            continue
        opts, fields = parsed
        if opts.get("-w", "").rstrip("/") == path.rstrip("/"):
            perms = set(opts.get("-p", "rwxa"))  # auditctl's default for a watch is rwxa
        elif (fields.get("path") or fields.get("dir", "")).rstrip("/") == path.rstrip("/"):
            perms = set(fields.get("perm", "rwxa"))
        else:
            continue
        if REQUIRED_PERMS <= perms:
            return rule.strip()
    return None


@functools.lru_cache(maxsize=4096)
def _parse_rule(rule: str) -> tuple[dict[str, str], dict[str, str]] | None:
    """(-w/-p/-k options, -F fields) of one rule; None for a blank or unparseable line. Cached:
    every audit check reads every rule of every host, and most hosts share their rules."""
    try:
        words = shlex.split(rule, comments=True)
    except ValueError:
        return None
    if not words:
        return None
    opts: dict[str, str] = {}
    fields: dict[str, str] = {}
    for flag, value in zip(words, words[1:] + [""]):
        if flag in ("-w", "-p", "-k"):
            opts[flag] = value
        elif flag == "-F" and "=" in value:
            name, _, val = value.partition("=")
            fields[name] = val
    return opts, fields


def check_audit_watch(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    paths, reason = resolve(params["target"], facts, data)
    present = [p for p in paths if facts.stat(p) is not None]
    if not present:
        return Verdict(SKIP, found=reason or f"{', '.join(paths)} does not exist on this host")
    loaded = facts.need("audit_rules")  # auditctl -l failing (no auditd, no permission) is ERROR
    files = facts.need("audit_files")
    persisted_rules = [(f, line) for f, text in files.items() for line in text.splitlines()]
    problems, found = [], []
    for path in present:
        rule = watched(loaded, path)
        persisted = next((f for f, line in persisted_rules if watched([line], path)), None)
        if not rule:
            problems.append(f"{path}: no loaded audit rule watching it for writes (auditctl -l)")
        if not persisted:
            problems.append(f"{path}: not in any rules file (lost at reboot)")
        if rule and persisted:
            found.append(f"{path}: loaded rule '{rule}', persisted in {persisted}")
    expected = f"auditd watches {', '.join(present)} for writes and attribute changes (-p wa)"
    return Verdict(FAIL if problems else PASS, expected=expected, found="; ".join(problems or found))
