"""group_members check: who can control the Docker daemon."""

from __future__ import annotations

from typing import Any

from hardline.benchmarks.gather.core import HostFacts
from hardline.results import FAIL, PASS, Verdict


def check_group_members(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    """Members of params group (listed, or by primary gid) are all in params allowed."""
    group = facts.need("docker_group")
    allowed = sorted(params["allowed"])
    expected = f"members of {params['group']} within {allowed or 'nobody'}"
    if group is None:
        return Verdict(PASS, expected=expected, found=f"no {params['group']} group: only root can use the daemon socket")
    primary = [e[0] for e in facts.need("passwd") if e[3] == group["gid"]]
    members = sorted(set(group["members"]) | set(primary))
    untrusted = [m for m in members if m not in allowed]
    found = f"{params['group']} members: {', '.join(members) or 'none'}"
    if untrusted:
        found += f"; not trusted: {', '.join(untrusted)}"
    return Verdict(FAIL if untrusted else PASS, expected=expected, found=found)
