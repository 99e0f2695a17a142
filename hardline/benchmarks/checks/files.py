"""file_owner, file_mode and separate_mount checks."""

from __future__ import annotations

from typing import Any

from hardline.benchmarks.checks.targets import resolve
from hardline.benchmarks.gather.core import HostFacts
from hardline.results import FAIL, PASS, SKIP, Verdict


def _existing(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]):
    paths, reason = resolve(params["target"], facts, data)
    stats = [(p, facts.stat(p)) for p in paths]
    present = [(p, s) for p, s in stats if s is not None]
    if not present:
        return None, Verdict(SKIP, found=reason or f"{', '.join(paths)} does not exist on this host")
    return present, None


def check_file_owner(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    """Every target path is owned by params owner:group."""
    present, skip = _existing(params, facts, data)
    if skip:
        return skip
    want = f"{params['owner']}:{params['group']}"
    bad = [f"{p} is {s.owner}:{s.group}" for p, s in present if f"{s.owner}:{s.group}" != want]
    found = "; ".join(bad) or ", ".join(f"{p} {want}" for p, _ in present)
    return Verdict(FAIL if bad else PASS, expected=f"owner {want}", found=found)


def check_file_mode(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    """No target path has a permission bit outside params max_mode."""
    present, skip = _existing(params, facts, data)
    if skip:
        return skip
    limit = int(str(params["max_mode"]), 8)
    bad = [f"{p} is {s.mode:o}" for p, s in present if s.mode & ~limit]
    found = "; ".join(bad) or ", ".join(f"{p} {s.mode:o}" for p, s in present)
    return Verdict(FAIL if bad else PASS, expected=f"mode {params['max_mode']} or stricter", found=found)


def check_separate_mount(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    """The target directory is itself a mount point (not a directory of a larger filesystem)."""
    (path,), _ = resolve(params["target"], facts, data)
    mounts = facts.need("mounts")
    # findmnt writes a bind mount of a subdirectory as DEVICE[/subdir]: dockerd bind-mounts its
    # data root onto itself, which makes it a mount point without being a partition.
    own = [m for m in mounts if m[0] == path]
    real = [m for m in own if "[" not in m[1]]
    if real:
        target, source, fstype = real[-1][:3]
        return Verdict(PASS, expected=f"{path} is its own filesystem", found=f"{path} is mounted from {source} ({fstype})")
    if own:
        return Verdict(FAIL, expected=f"{path} is its own filesystem",
                       found=f"{path} is only a bind mount of {own[-1][1]} ({own[-1][2]}), not a separate partition")
    # the filesystem holding it: the longest mount point that is a prefix of the path
    parents = [m for m in mounts if path.startswith(m[0].rstrip("/") + "/")]
    holder = max(parents, key=lambda m: len(m[0]), default=("?", "?", "?"))
    return Verdict(FAIL, expected=f"{path} is its own filesystem",
                   found=f"{path} is on the filesystem mounted at {holder[0]} ({holder[1]}, {holder[2]})")
