"""pyinfra facts of a Kubernetes node, gathered in one command.

:class:`KubeNodeState` reads everything the Kubernetes deploys decide from in one shell script:
the running components (pid, ``/proc/PID/cmdline``, etcd's ``/proc/PID/environ``), the
Kubernetes version they run, the files the deploys may edit (static pod manifests, the kubelet config the
running kubelet names, its flag files) with their owner and mode, the owner and mode of every
path a file control names (files, directories, globs), the kernel settings the kubelet
insists on, and whether users and groups exist. A node with nothing to change costs that one
command. :class:`ComponentHelp` is read only when a change is planned: the flags and admission
plugins the running binary knows, so that a flag it does not know is refused before anything
is written.

Every argument reaches the script through ``shlex.quote``; file contents and command lines come
back base64-encoded, so no byte of them is ever read as a section marker.
"""

from __future__ import annotations

import base64
import re
import shlex
from typing import Any

from pyinfra.api import FactBase
from typing_extensions import override

MARK = "@@hl"
TAG = "hardline kubernetes"  # first line of every command of these facts (found in logs and counts)
END = "@@hl-end"
STAT = "stat -L -c '%U %G %a %F'"

_FUNCTIONS = r"""
b64() { base64 2>/dev/null | tr -d '\n'; echo; }
st() { stat -L -c '%U %G %a %F' -- "$1" 2>/dev/null || echo @@absent; }
flagval() {
  [ -n "$1" ] && [ -r "/proc/$1/cmdline" ] || return 0
  tr '\0' '\n' < "/proc/$1/cmdline" | awk -v f="--$2" '
    BEGIN{n=length(f)} p{if(substr($0,1,1)!="-")v=$0;p=0;next} $0==f{p=1;next}
    substr($0,1,n+1)==f"="{v=substr($0,n+2)} END{if(v!="")print v}'
}
file() { echo "@@hl file $1"; if [ -e "$1" ]; then st "$1"; b64 < "$1"; else echo @@absent; fi; }
findpid() {
  comp=$1; shift
  for n in "$@"; do
    short=$(printf %.15s "$n")
    echo "$procs" | while read -r pid c; do
      [ "$c" = "$short" ] || continue
      a0=$(head -c 4096 "/proc/$pid/cmdline" 2>/dev/null | tr '\0' '\n' | head -n 1)
      if [ "${a0##*/}" = "$n" ] || [ "$c" = "$n" ]; then echo "$pid"; break; fi
    done
  done | head -n 1
}
"""


def _q(value: Any) -> str:
    return shlex.quote(str(value))


class KubeNodeState(FactBase):
    """
    What a Kubernetes node runs and holds, as the deploys need it (None when the script failed).

    .. code:: python

        {"procs": {"kubelet": {"pid": 812, "argv": ["/usr/bin/kubelet", "--config=..."], "environ": None}},
         "version": "v1.20.2",
         "files": {"/var/lib/kubelet/config.yaml": {"stat": {...}, "text": "apiVersion: ..."}},
         "stats": {"/etc/kubernetes/admin.conf": {"owner": "root", "group": "root", "mode": 0o600, "type": "regular file"}},
         "globs": {"/etc/kubernetes/pki/**": [{"path": ..., "owner": ..., ...}]},
         "sysctls": {"kernel.panic": "10"}, "users": {"etcd": True}, "groups": {"etcd": False},
         "exists": {"/etc/kubernetes/manifests/kube-apiserver.yaml": True}}
    """

    @override
    def command(self, processes: dict[str, list[str]], environ: list[str], read: list[str],
                read_flag: list[list[str]], stat: list[str], stat_flag: list[list[str]], globs: list[str],
                sysctls: list[str], users: list[str], groups: list[str], exists: list[str]) -> str:
        """processes: component -> process names; environ: components whose environment is read;
        read / stat: paths; read_flag / stat_flag: [component, flag] whose value (a path in the
        component's command line) is read / stat'ed too; globs: patterns (** = any depth)."""
        names = sorted({n[:15] for ns in processes.values() for n in ns})
        lines = [f"# {TAG}: node state", _FUNCTIONS,
                 ("procs=$(for d in /proc/[0-9]*; do read -r c 2>/dev/null < \"$d/comm\" || continue; "
                  f"case ' '{_q(' '.join(names) + ' ')} in *\" $c \"*) echo \"${{d#/proc/}} $c\";; esac; done | sort -n)")]
        for comp, procnames in sorted(processes.items()):
            var = f"pid_{comp}"
            lines.append(f"{var}=$(findpid {_q(comp)} {' '.join(_q(n) for n in procnames)})")
            lines.append(f'if [ -n "${var}" ]; then echo "{MARK} proc {comp} ${var}"; b64 < "/proc/${var}/cmdline"; fi')
            if comp in environ:
                lines.append(f'if [ -n "${var}" ]; then echo "{MARK} environ {comp}"; b64 < "/proc/${var}/environ"; fi')
        # the Kubernetes the node runs, asked as verification asks it: the API server, else the
        # kubelet, else kube-proxy (the running binary, /proc/PID/exe)
        lines.append(f'echo "{MARK} version"; for p in "${{pid_apiserver:-}}" "${{pid_kubelet:-}}" "${{pid_proxy:-}}"; do '
                     '[ -n "$p" ] || continue; v=$(timeout 20 "/proc/$p/exe" --version 2>/dev/null | head -n 1); '
                     '[ -n "$v" ] && { echo "$v"; break; }; done')
        for path in read:
            lines.append(f"file {_q(path)}")
        for comp, flag in read_flag:
            lines.append(f'p=$(flagval "${{pid_{comp}:-}}" {_q(flag)}); [ -z "$p" ] || file "$p"')
        for path in stat:
            lines.append(f"echo {_q(f'{MARK} stat {path}')}; st {_q(path)}")
        for comp, flag in stat_flag:
            lines.append(f'p=$(flagval "${{pid_{comp}:-}}" {_q(flag)}); [ -z "$p" ] || {{ echo "{MARK} stat $p"; st "$p"; }}')
        for pattern in globs:
            base, depth = glob_base(pattern)
            limit = "" if depth is None else f" -maxdepth {depth}"
            lines.append(f"echo {_q(f'{MARK} glob {pattern}')}; [ ! -e {_q(base)} ] || find {_q(base)}{limit} "
                         "-exec stat -L --printf '%U %G %a %F\\t%n\\n' {} + 2>/dev/null")
        for key in sysctls:
            lines.append(f"echo {_q(f'{MARK} sysctl {key}')}; v=$(cat {_q('/proc/sys/' + key.replace('.', '/'))} "
                         '2>/dev/null) && echo "$v" || echo @@absent')
        for kind, names_ in (("user", users), ("group", groups)):
            db = "passwd" if kind == "user" else "group"
            for name in names_:
                lines.append(f"echo {_q(f'{MARK} {kind} {name}')}; getent {db} {_q(name)} >/dev/null && echo yes || echo no")
        for path in exists:
            lines.append(f"echo {_q(f'{MARK} exists {path}')}; [ -e {_q(path)} ] && echo yes || echo no")
        lines.append(f"echo {END}")
        return "\n".join(lines)

    @override
    def process(self, output: list[str]) -> dict[str, Any] | None:
        if not output or output[-1].strip() != END:
            return None  # the script did not run to its end: nothing is decided from half a reading
        state: dict[str, Any] = {"procs": {}, "version": None, "files": {}, "stats": {}, "globs": {}, "sysctls": {},
                                 "users": {}, "groups": {}, "exists": {}}
        for head, body in _sections(output[:-1]):
            kind, _, rest = head.partition(" ")
            if kind == "proc":
                comp, _, pid = rest.partition(" ")
                state["procs"][comp] = {"pid": int(pid), "argv": _nul_list(_decode(body)), "environ": None}
            elif kind == "environ" and rest in state["procs"]:
                state["procs"][rest]["environ"] = dict(e.partition("=")[::2] for e in _nul_list(_decode(body)))
            elif kind == "version":
                found = re.search(r"v\d+\.\d+(\.\d+)?\S*", " ".join(body))
                state["version"] = found.group(0) if found else None
            elif kind == "file":
                absent = not body or body[0] == "@@absent"
                state["files"][rest] = None if absent else {"stat": parse_stat(body[0]), "text": _decode(body[1:])}
            elif kind == "stat":
                state["stats"][rest] = None if not body or body[0] == "@@absent" else parse_stat(body[0])
            elif kind == "glob":
                entries = []
                for line in body:
                    left, sep, path = line.partition("\t")
                    if sep:
                        entries.append({"path": path, **parse_stat(left)})
                state["globs"][rest] = entries
            elif kind == "sysctl":
                state["sysctls"][rest] = None if not body or body[0] == "@@absent" else " ".join(body[0].split())
            elif kind in ("user", "group", "exists"):
                state[f"{kind}s" if kind != "exists" else "exists"][rest] = bool(body) and body[0] == "yes"
        return state

    @staticmethod
    def default() -> None:
        return None


class ComponentHelp(FactBase):
    """
    Flags and admission plugins a component's binary knows, from its ``--help`` (the running
    process's own executable, ``/proc/PID/exe``, so a static pod's binary is the container's).

    .. code:: python

        {"flags": {"profiling", "audit-log-path", ...}, "admission_plugins": {"NodeRestriction", ...}}
    """

    @override
    def command(self, pid: int | None = None, binary: str | None = None) -> str:
        exe = f"/proc/{int(pid)}/exe" if pid else _q(binary)
        return f"# {TAG}: flags the binary knows\ntimeout 30 {exe} --help 2>&1; echo {END}"

    @override
    def process(self, output: list[str]) -> dict[str, set[str]] | None:
        if not output or output[-1].strip() != END:
            return None
        return parse_help(output[:-1])

    @staticmethod
    def default() -> None:
        return None


def parse_help(lines: list[str]) -> dict[str, set[str]] | None:
    """Flags (``--name``, as pflag prints them) and the admission plugins the help of
    --enable-admission-plugins lists. None when the text is not a flag listing."""
    flags = set()
    for line in lines:
        found = re.match(r"^\s+(?:-\w, )?--([a-z0-9][a-z0-9-]*)", line)
        if found:
            flags.add(found.group(1))
    if not flags:
        return None
    text = " ".join(line.strip() for line in lines)
    plugins: set[str] = set()
    listed = re.search(r"--enable-admission-plugins \S+\s+admission plugins that should be enabled in addition to "
                       r"default enabled ones \([^)]*\)\. Comma-delimited list of admission plugins: ([^.]*)\.", text)
    if listed:
        plugins = {p.strip() for p in listed.group(1).split(",") if p.strip()}
    return {"flags": flags, "admission_plugins": plugins}


def glob_base(pattern: str) -> tuple[str, int | None]:
    """The directory a glob pattern starts in (no wildcard in it) and how deep below it matches
    can be (None: any depth, the pattern has ``**``)."""
    parts = pattern.split("/")
    fixed = []
    for part in parts:
        if any(ch in part for ch in "*?["):
            break
        fixed.append(part)
    base = "/".join(fixed) or "/"
    rest = parts[len(fixed):]
    return base, None if "**" in rest else len(rest)


def parse_stat(line: str) -> dict[str, Any]:
    owner, group, mode, kind = line.split(" ", 3)
    return {"owner": owner, "group": group, "mode": int(mode, 8), "type": kind}


def _sections(lines: list[str]) -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    for line in lines:
        if line.startswith(MARK + " "):
            out.append((line[len(MARK) + 1:], []))
        elif out and line.strip():
            out[-1][1].append(line.strip())
    return out


def _decode(body: list[str]) -> str:
    data = "".join(body)
    return base64.b64decode(data).decode(errors="replace") if data else ""


def _nul_list(text: str) -> list[str]:
    return text.rstrip("\0").split("\0") if text else []
