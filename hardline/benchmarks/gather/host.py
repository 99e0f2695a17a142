"""Facts about the host around the engine: who runs the gather, audit rules and their files,
the docker group and passwd, mounts, and sysctl values at runtime and as boot applies them."""

from __future__ import annotations

from typing import Any

from hardline.benchmarks.gather.core import (
    Fact,
    HostFacts,
    builtin,
    cat_files,
    parse_stats,
    section,
    split_files,
    stat_line,
)

SYSCTL_DIRS = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d")
# pairs of arguments: key, /proc/sys file; builtins only (one line per kernel file)
SYSCTL_RUNTIME = ('while [ $# -gt 1 ]; do if rd "$2"; then printf "%s=%s\\n" "$1" "$v"; '
                  'else printf "%s=@@MISSING\\n" "$1"; fi; shift 2; done; return 0')
# the effective uid (what `id -u` prints), from the shell's own /proc/self/status
UID_SCRIPT = ('while IFS= read -r l; do case $l in Uid:*) set -- $l; echo "$3"; return 0;; esac; '
              'done < /proc/self/status; return 1')


def _sysctl_runtime_lines(data: dict[str, Any], facts: HostFacts) -> list[str]:
    # the key's file, as sysctl(8) maps it: dots become slashes
    pairs = [a for key in map(str, data["sysctl_settings"]) for a in (key, "/proc/sys/" + key.replace(".", "/"))]
    return builtin("sysctl_runtime", SYSCTL_RUNTIME, *pairs)


def _parse_uid(facts: HostFacts, data: dict[str, Any]) -> None:
    uid = section(facts, "uid")
    if uid is not None:
        facts.values["uid"] = int(uid.strip() or -1)


def _parse_audit_rules(facts: HostFacts, data: dict[str, Any]) -> None:
    out = section(facts, "auditctl", fact="audit_rules")
    if out is not None:
        facts.values["audit_rules"] = [] if out.strip() == "No rules" else out.splitlines()


def _audit_files_lines(data: dict[str, Any], facts: HostFacts) -> list[str]:
    # the glob is expanded by the remote shell; the inventory paths are quoted arguments
    return [cat_files("audit_files", "/etc/audit/rules.d/*.rules /etc/audit/audit.rules",
                      *(str(data[k]) for k in ("auditd_rules_file", "auditd_platform_rules_file")))]


def _parse_files(name: str, fact: str):
    def parse(facts: HostFacts, data: dict[str, Any]) -> None:
        out = section(facts, name, fact=fact)
        if out is not None:
            facts.values[fact] = split_files(out)
    return parse


def _parse_group(facts: HostFacts, data: dict[str, Any]) -> None:
    out = section(facts, "group", allow_rc=(0, 2), fact="docker_group")  # 2: no such group
    if out is None:
        return
    if not out.strip():
        facts.values["docker_group"] = None
        return
    name, _, gid, members = out.strip().split(":", 3)
    facts.values["docker_group"] = {"name": name, "gid": gid, "members": [m for m in members.split(",") if m]}


def _parse_passwd(facts: HostFacts, data: dict[str, Any]) -> None:
    out = section(facts, "passwd")
    if out is not None:
        facts.values["passwd"] = [line.split(":") for line in out.splitlines() if line.count(":") >= 6]


def _unescape_mount(parts: list[str]) -> tuple[str, ...]:
    # findmnt -r escapes spaces and other specials as \x20
    return tuple(p.encode().decode("unicode_escape") for p in parts)


def _parse_mounts(facts: HostFacts, data: dict[str, Any]) -> None:
    out = section(facts, "mounts")
    if out is not None:
        facts.values["mounts"] = [_unescape_mount(line.split(" ")) for line in out.splitlines() if line]


def _parse_sysctl_runtime(facts: HostFacts, data: dict[str, Any]) -> None:
    out = section(facts, "sysctl_runtime")
    if out is not None:
        facts.values["sysctl_runtime"] = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _sysctl_files_lines(data: dict[str, Any], facts: HostFacts) -> list[str]:
    globs = " ".join(f"{d}/*.conf" for d in SYSCTL_DIRS)
    return [cat_files("sysctl_files", f"{globs} /etc/sysctl.conf", str(data["sysctl_persist_file"]))]


def _parse_paths(facts: HostFacts, data: dict[str, Any]) -> None:
    if facts.wanted_paths:
        parse_stats(facts, "path_stats", facts.wanted_paths)
    if "path_stats" in facts.errors:
        facts.errors["paths"] = facts.errors["path_stats"]
    else:
        facts.values["paths"] = True


FACTS = [
    # the files named by the selected controls' `path` targets, in one stat call
    Fact("paths", lambda d, f: [stat_line("path_stats", f.wanted_paths)] if f.wanted_paths else [], _parse_paths),
    Fact("uid", lambda d, f: builtin("uid", UID_SCRIPT), _parse_uid),
    Fact("audit_rules", lambda d, f: ["run auditctl auditctl -l"], _parse_audit_rules),
    Fact("audit_files", _audit_files_lines, _parse_files("audit_files", "audit_files")),
    Fact("docker_group", lambda d, f: ["run group getent group docker"], _parse_group),
    Fact("passwd", lambda d, f: ["run passwd getent passwd"], _parse_passwd),
    Fact("mounts", lambda d, f: ["run mounts findmnt -rn -o TARGET,SOURCE,FSTYPE"], _parse_mounts),
    Fact("sysctl_runtime", _sysctl_runtime_lines, _parse_sysctl_runtime),
    Fact("sysctl_files", _sysctl_files_lines, _parse_files("sysctl_files", "sysctl_files")),
]
