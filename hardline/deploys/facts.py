"""pyinfra facts the hardening deploys read before deciding what to change."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from pyinfra.api import FactBase
from pyinfra.api.command import QuoteString, StringCommand
from typing_extensions import override

STAT_FORMAT = "'%U %G %a %F'"
GLOB_PATTERN = re.compile(r"^[A-Za-z0-9_.*?/-]+$")


class PathStat(FactBase):
    """
    Owner, group and permission bits of a path of any type (file, directory, socket), or None.

    .. code:: python

        {"owner": "root", "group": "docker", "mode": 0o660, "type": "socket"}
    """

    @override
    def command(self, path: str) -> StringCommand:
        return StringCommand("stat -L -c", STAT_FORMAT, QuoteString(path), "2>/dev/null || true")

    @override
    def process(self, output: list[str]) -> dict[str, Any] | None:
        if not output or not output[0].strip():
            return None
        return _stat(output[0])


def _stat(line: str) -> dict[str, Any]:
    owner, group, mode, kind = line.split(" ", 3)
    return {"owner": owner, "group": group, "mode": int(mode, 8), "type": kind}


class UnitFile(FactBase):
    """
    Path of a systemd unit's file (systemd's FragmentPath, or the first packaged location) with
    its owner, group and mode; None when the unit has no file.

    .. code:: python

        {"path": "/lib/systemd/system/docker.service", "owner": "root", "group": "root", "mode": 0o644,
         "type": "regular file"}
    """

    @override
    def command(self, unit: str) -> StringCommand:
        script = (
            'p=""; command -v systemctl >/dev/null && [ -d /run/systemd/system ] && '
            'p=$(systemctl show -p FragmentPath --value "$1" 2>/dev/null); '
            '[ -n "$p" ] || for d in /etc/systemd/system /lib/systemd/system /usr/lib/systemd/system; do '
            '[ -e "$d/$1" ] && { p="$d/$1"; break; }; done; '
            f'[ -n "$p" ] && echo "$p" && stat -L -c {STAT_FORMAT} "$p" 2>/dev/null; true'
        )
        return StringCommand("sh -c", QuoteString(script), "_", QuoteString(unit))

    @override
    def process(self, output: list[str]) -> dict[str, Any] | None:
        lines = [line for line in output if line.strip()]
        if len(lines) < 2:
            return None
        return {"path": lines[0].strip(), **_stat(lines[1])}


class GlobStats(FactBase):
    """
    Existing paths matching a shell glob below a directory, with owner, group and mode.

    .. code:: python

        [{"path": "/etc/docker/certs.d/registry:5000/ca.crt", "owner": "root", "group": "root", "mode": 0o444,
          "type": "regular file"}]
    """

    @override
    def command(self, directory: str, pattern: str) -> StringCommand:
        if not GLOB_PATTERN.match(pattern):  # the pattern is the catalog's, never inventory data
            raise ValueError(f"glob pattern {pattern!r} has characters other than letters, digits, _ . * ? / -")
        script = (f'cd "$1" 2>/dev/null || exit 0; for f in {pattern}; do [ -e "$f" ] && '
                  f'echo "$1/$f" && stat -L -c {STAT_FORMAT} "$f"; done; true')
        return StringCommand("sh -c", QuoteString(script), "_", QuoteString(directory))

    @override
    def process(self, output: list[str]) -> list[dict[str, Any]]:
        lines = [line for line in output if line]
        return [{"path": path, **_stat(stat)} for path, stat in zip(lines[::2], lines[1::2])]

    default = list


class GroupMembers(FactBase):
    """Members listed in /etc/group for a group (None if the group does not exist)."""

    @override
    def command(self, group: str) -> StringCommand:
        return StringCommand("getent group", QuoteString(group), "|| true")

    @override
    def process(self, output: list[str]) -> list[str] | None:
        if not output or not output[0].strip():
            return None
        return [m for m in output[0].strip().split(":", 3)[3].split(",") if m]


class PasswdEntry(FactBase):
    """
    A user's passwd entry, or None when there is no such user. (pyinfra's Users fact runs about a
    dozen processes per user of the host: seconds on a small VM, for one user's existence.)

    .. code:: python

        {"uid": 107, "gid": 112, "home": "/nonexistent", "shell": "/usr/sbin/nologin"}
    """

    @override
    def command(self, user: str) -> StringCommand:
        return StringCommand("getent passwd", QuoteString(user), "|| true")

    @override
    def process(self, output: list[str]) -> dict[str, Any] | None:
        fields = output[0].strip().split(":") if output else []
        if len(fields) != 7:
            return None
        return {"uid": int(fields[2]), "gid": int(fields[3]), "home": fields[5], "shell": fields[6]}


class DaemonJson(FactBase):
    """
    Parsed content of a daemon.json: {} when absent, {"__invalid__": text} when not JSON.
    """

    @override
    def command(self, path: str) -> StringCommand:
        return StringCommand("cat", QuoteString(path), "2>/dev/null || true")

    @override
    def process(self, output: list[str]) -> dict[str, Any]:
        text = "\n".join(output)
        if not text.strip():
            return {}
        try:
            data = json.loads(text)
        except ValueError:
            return {"__invalid__": text}
        return data if isinstance(data, dict) else {"__invalid__": text}

    default = dict


class DockerRootDir(FactBase):
    """Configured data root of the running Docker daemon (None when docker does not answer).

    With userns-remap docker info reports <data-root>/<uid>.<gid>; the data root is its parent.
    """

    @override
    def command(self, socket: str) -> StringCommand:
        return StringCommand("docker -H", QuoteString(f"unix://{socket}"),
                             "info --format '{{.DockerRootDir}} {{json .SecurityOptions}}' 2>/dev/null || true")

    @override
    def process(self, output: list[str]) -> str | None:
        if not output or not output[0].startswith("/"):
            return None
        root, _, options = output[0].strip().partition(" ")
        if "name=userns" in options:
            root = re.sub(r"/\d+\.\d+$", "", root)
        return root


class ExecStart(FactBase):
    """argv of a systemd unit's ExecStart (as systemctl show reports it), or None."""

    @override
    def command(self, unit: str) -> StringCommand:
        return StringCommand("sh -c", QuoteString('systemctl show -p ExecStart --value "$1" 2>/dev/null || true'), "_",
                             QuoteString(unit))

    @override
    def process(self, output: list[str]) -> list[str] | None:
        text = " ".join(output)
        if "argv[]=" not in text:
            return None
        return shlex.split(text.split("argv[]=", 1)[1].split(" ;", 1)[0])


class LoadedAuditRules(FactBase):
    """Rules loaded in the kernel (auditctl -l), one per line; None when auditctl fails."""

    @override
    def command(self) -> str:
        return "auditctl -l 2>/dev/null || echo @@FAILED"

    @override
    def process(self, output: list[str]) -> list[str] | None:
        if output and output[-1] == "@@FAILED":
            return None
        return [line for line in output if line and line != "No rules"]

    default = list
