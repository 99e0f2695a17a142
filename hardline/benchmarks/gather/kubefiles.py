"""Facts about a Kubernetes node, round 2: ``k8s_files``, the stat of every file, directory and
glob of the node's layout (a key with ``from:`` resolved from the running component first: flag,
etcd variable or config file, else the layout's path), and of every absolute path the components'
flags, variables and config files name, looked up in the component's mount namespace (the
``path_exists`` of the checks).

One script in the same round as the config files (hardline.benchmarks.gather.kubenode), so the
whole node costs two round trips. Values a config file gives (the kubelet's ``clientCAFile``,
kube-proxy's ``clientConnection.kubeconfig``, etcd's ``data-dir``) are found on the host in that
round by a line match; the checks resolve the same keys from the parsed YAML, and a path the two
readings disagree on was not stat'ed, which is ERROR, never a guess.
"""

from __future__ import annotations

import shlex
from typing import Any

from hardline.benchmarks.gather.core import Fact, HostFacts, Stat, section
from hardline.benchmarks.gather.kubenode import (
    _env,
    config_files,
    etcd_config_path,
    flag_value,
)
from hardline.benchmarks.gather.kubernetes import Proc

# Ops, each followed by its arguments (a FILE that is a directory stands for its *.conf files):
#   P PATH                    stat PATH
#   C LEAF ROOT N FILE...     the last "LEAF: value" line of the files; stat ROOT+value
#   X ROOT N FILE...          stat ROOT+every absolute path the files give as a value
#   G KEY BASE MODE PAT       stat what matches: self (BASE itself, if it exists), all (everything
#                             below BASE), any (names matching PAT at any depth below), one (names
#                             matching PAT directly in BASE); "### G KEY" ... "### E" around them
# Stat lines: path, owner, group, octal mode, type (or MISSING / ERR with the path).
STATS = r"""
IFS='
'
st() { for p in "$@"; do
  if [ -e "$p" ] || [ -L "$p" ]; then
    if s=$(stat -L -c '%n	%U	%G	%a	%F' "$p" 2>&1); then printf '%s\n' "$s"; else printf 'ERR\t%s\t%s\n' "$p" "$s"; fi
  else printf 'MISSING\t%s\n' "$p"; fi; done; }
ex() { if [ -d "$1" ]; then for f in "$1"/*.conf; do [ -f "$f" ] && printf '%s\n' "$f"; done; else printf '%s\n' "$1"; fi; }
val() { sed -n "s/^[[:space:]]*\"\{0,1\}$1\"\{0,1\}[[:space:]]*:[[:space:]]*\"\{0,1\}\
\([^\"]*\)\"\{0,1\}[[:space:]]*,\{0,1\}[[:space:]]*$/\1/p" "$2" 2>/dev/null; }
paths() { grep -o ':[[:space:]]*"\{0,1\}/[^",[:space:]]*' "$1" 2>/dev/null | sed 's/^:[[:space:]]*"\{0,1\}//'; }
while [ $# -gt 0 ]; do
  op=$1; shift
  case $op in
  P) st "$1"; shift;;
  C) leaf=$1; root=$2; n=$3; shift 3; v=
     while [ "$n" -gt 0 ]; do
       for f in $(ex "$1"); do x=$(val "$leaf" "$f" | tail -n 1); [ -n "$x" ] && v=$x; done
       shift; n=$((n-1)); done
     echo "### C $leaf $root $v"
     case $v in /*) st "$root$v";; esac;;
  X) root=$1; n=$2; shift 2
     while [ "$n" -gt 0 ]; do
       for f in $(ex "$1"); do for v in $(paths "$f"); do st "$root$v"; done; done
       shift; n=$((n-1)); done;;
  G) echo "### G $1"; b=$2; m=$3; pat=$4; shift 4
     if [ "$m" = self ]; then { [ -e "$b" ] || [ -L "$b" ]; } && st "$b"; echo "### E"; continue; fi
     [ -d "$b" ] || { echo "### E"; continue; }
     case $m in
       all) find "$b" -mindepth 1;;
       any) find "$b" -mindepth 1 -name "$pat";;
       one) find "$b" -mindepth 1 -maxdepth 1 -name "$pat";;
     esac > "$HLT/g" || echo "### GERR"
     for f in $(cat "$HLT/g"); do st "$f"; done; echo "### E";;
  *) echo "unknown op $op" >&2; exit 2;;
  esac
done
"""


# ----------------------------------------------------------------------- layout files (stat)


def glob_ops(pattern: str) -> tuple[str, str, str]:
    """(base, mode, name pattern) that find what a layout glob matches."""
    parts = pattern.split("/")
    wild = next((i for i, p in enumerate(parts) if any(c in p for c in "*?[")), None)
    if wild is None:
        return pattern, "self", ""
    base, rest = "/".join(parts[:wild]) or "/", parts[wild:]
    if rest == ["**"]:
        return base, "all", "*"
    if len(rest) == 2 and rest[0] == "**" and "**" not in rest[1]:
        return base, "any", rest[1]
    if len(rest) == 1:
        return base, "one", rest[0]
    raise ValueError(f"layout glob {pattern!r}: only DIR/**, DIR/**/NAME and DIR/NAME patterns are supported")


def _as_list(path: Any) -> list[str]:
    if path is None:
        return []
    return [str(p) for p in path] if isinstance(path, list) else [str(path)]


def source_config(facts: HostFacts, proc: Proc) -> list[tuple[str, str]]:
    """(tag, path as the process names it) of the config files that may give ``frm['config']``,
    lowest precedence first (config file, then drop-ins)."""
    spec = facts.need("k8s_layout")["components"].get(proc.component) or {}
    files = []
    config_flag = proc.flags.get(spec.get("config_flag") or "config")
    if config_flag:
        files.append((f"{proc.component}.config", config_flag))
    if spec.get("config_dir_flag") and proc.flags.get(spec["config_dir_flag"]):
        files.append((f"{proc.component}.dropin", proc.flags[spec["config_dir_flag"]]))
    return files


def _key_ops(facts: HostFacts, spec: dict[str, Any]) -> list[str]:
    """Stat ops for one layout file/dir key: the path the running component names (flag, etcd
    variable; a config key found on the host in the same round) and the layout's own paths."""
    ops: list[str] = []
    frm: dict[str, Any] = spec.get("from") or {}
    proc = facts.need("k8s_procs").get(frm["component"]) if frm else None
    if proc is not None and proc.component == "etcd":
        ops += _etcd_key_ops(facts, proc, frm["flag"])
    elif proc is not None:
        given, value, _ = flag_value(facts, proc, frm["flag"])
        if given and value:
            ops += ["P", proc.file(str(value))]
        elif frm.get("config"):
            files = [proc.path(p) for _, p in source_config(facts, proc)]
            if files:
                root = f"/proc/{proc.pid}/root" if proc.in_container else ""
                ops += ["C", frm["config"].split(".")[-1], root, str(len(files)), *files]
    for path in _as_list(spec.get("path")):
        ops += ["P", path]
    return ops


def _etcd_key_ops(facts: HostFacts, proc: Proc, flag: str) -> list[str]:
    spec = facts.need("k8s_layout")["components"]["etcd"]
    path = etcd_config_path(proc, spec)
    if path:
        return ["C", flag, "", "1", proc.path(path)]
    value = proc.flags.get(flag) or _env(proc, spec, flag)
    return ["P", str(value)] if value else []


def _exists_ops(facts: HostFacts) -> list[str]:
    """Stat ops for every absolute path a component's flags, variables and config files name,
    in the component's mount namespace."""
    ops: list[str] = []
    for proc in facts.need("k8s_procs").values():
        values = list(proc.flags.values()) + list((proc.env or {}).values())
        for value in values:
            for part in str(value).split(","):
                if part.startswith("/"):
                    ops += ["P", proc.path(part)]
    for tag, path, _kind, _named in config_files(facts):
        owner = facts.need("k8s_procs")[tag.split(".")[0]]
        ops += ["X", f"/proc/{owner.pid}/root", "1", path]
    return ops


def _files_lines(data: dict[str, Any], facts: HostFacts) -> list[str]:
    if "k8s_procs" in facts.errors:
        return []
    layout = facts.need("k8s_layout")
    ops: list[str] = []
    for kind in ("files", "dirs"):
        for spec in (layout.get(kind) or {}).values():
            ops += _key_ops(facts, spec)
    for key, patterns in (layout.get("globs") or {}).items():
        for pattern in patterns:
            ops += ["G", key, *glob_ops(pattern)]
    ops += _exists_ops(facts)
    return [f"run k8s_files sh -c {shlex.quote(STATS)} _ " + " ".join(shlex.quote(o) for o in ops)]


def _parse_files(facts: HostFacts, data: dict[str, Any]) -> None:
    if "k8s_procs" in facts.errors:
        facts.errors["k8s_files"] = facts.errors["k8s_procs"]
        return
    out = section(facts, "k8s_files")
    if out is None:
        return
    globs: dict[str, list[str]] = {}
    glob_errors: dict[str, str] = {}
    extracted: dict[tuple[str, str], str] = {}
    key = None
    for line in out.splitlines():
        if line.startswith("### G "):
            key = line[6:]
            globs.setdefault(key, [])
            continue
        if line == "### GERR" and key:
            glob_errors[key] = f"cannot list the files of layout glob {key}"
            continue
        if line == "### E":
            key = None
            continue
        if line.startswith("### C "):
            leaf, _, rest = line[6:].partition(" ")
            root, _, value = rest.partition(" ")
            extracted[(leaf, root)] = value
            key = None
            continue
        parts = line.split("\t")
        if parts[0] == "MISSING" and len(parts) == 2:
            facts.stats[parts[1]] = None
        elif parts[0] == "ERR" and len(parts) >= 3:
            facts.stats[parts[1]] = parts[2]
        elif len(parts) == 5:
            path, owner, group, mode, kind = parts
            facts.stats[path] = Stat(path, owner, group, int(mode, 8), kind)
            if key is not None:
                globs[key].append(path)
    facts.values["k8s_files"] = {"globs": globs, "glob_errors": glob_errors, "extracted": extracted}


FACTS = [
    Fact("k8s_files", _files_lines, _parse_files, round=2, requires=("k8s_procs", "k8s_configs")),
]
