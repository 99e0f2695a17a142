"""A Kubernetes node as the deploys see it: its layout and the state gathered in one command.

:func:`gather_args` turns a layout and the controls to apply into the arguments of the
:class:`~hardline.deploys.k8s_facts.KubeNodeState` fact; :class:`NodeView` answers the deploys'
questions from the fact's value: which process runs a component and with which flags, which
paths a ``{k8s_file: KEY}`` target names (the running component's flag first, as the layout's
``from`` says), their owner and mode, the files the deploys edit.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from hardline.catalog import Control, kubernetes_layouts
from hardline.deploys.k8s_facts import glob_base
from hardline.deploys.k8s_values import effective, remove_flag

SYSCTL_PERSIST_FILE = "/etc/sysctl.d/90-hardline-kubelet.conf"


def _paths(entry: dict[str, Any] | None) -> list[str]:
    path = (entry or {}).get("path")
    return [] if path is None else [path] if isinstance(path, str) else list(path)


def _flag_sources(layout: dict[str, Any], section: str) -> list[list[str]]:
    return [[e["from"]["component"], e["from"]["flag"]] for e in layout.get(section, {}).values()
            if e.get("from", {}).get("flag")]


def gather_args(layouts: list[dict[str, Any]], controls: list[tuple[Control, dict[str, Any]]], *, detect: list[str],
                users: list[str], groups: list[str]) -> dict[str, Any]:
    """Arguments of KubeNodeState for a node with one of these layouts (several while the layout
    is still to be detected): their processes and editable files, the paths of every file target
    (and of every path a control will write, which must exist), the kubelet's kernel settings,
    the users and groups owners name, and the paths that detect layouts."""
    processes: dict[str, list[str]] = {}
    environ, read, read_flag, stat, stat_flag, globs = [], [], [], [], [], []
    for layout in layouts:
        comps = layout.get("components", {})
        for comp, spec in comps.items():
            processes[comp] = list(dict.fromkeys(processes.get(comp, []) + list(spec.get("processes") or [])))
            if spec.get("env_prefix"):
                environ.append(comp)
            if spec.get("deploy", {}).get("method") == "static_pod":
                read.append(spec["deploy"]["file"])
        kubelet = comps.get("kubelet", {})
        read += [f["path"] for f in kubelet.get("deploy", {}).get("flag_files", [])]
        read += _paths(layout.get("files", {}).get("kubelet_config"))
        if kubelet.get("config_flag"):
            read_flag.append(["kubelet", kubelet["config_flag"]])
        stat += [p for section in ("files", "dirs") for e in layout.get(section, {}).values() for p in _paths(e)]
        stat_flag += _flag_sources(layout, "files") + _flag_sources(layout, "dirs")
        globs += [p for patterns in layout.get("globs", {}).values() for p in patterns]
    read.append(SYSCTL_PERSIST_FILE)
    for _control, params in controls:
        write = params.get("write")
        if params.get("path_exists"):
            stat += [v for v in (write.values() if isinstance(write, dict) else [write]) if isinstance(v, str) and v]

    def unique(items: list[Any]) -> list[Any]:
        return list(dict.fromkeys(tuple(i) if isinstance(i, list) else i for i in items))

    return {
        "processes": {c: names for c, names in processes.items() if names},
        "environ": unique(environ),
        "read": unique(read),
        "read_flag": [list(i) for i in unique(read_flag)],
        "stat": unique(stat),
        "stat_flag": [list(i) for i in unique(stat_flag)],
        "globs": unique(globs),
        "sysctls": sorted({k for c, p in controls for k in (p.get("requires_sysctls") or {})}),
        "users": sorted(set(users)),
        "groups": sorted(set(groups)),
        "exists": detect,
    }


def detect_layout(names: list[str], exists: dict[str, bool]) -> str | None:
    """The first layout (in detection order) one of whose detect paths exists."""
    for name in names:
        if any(exists.get(p) for p in kubernetes_layouts()[name].get("detect", [])):
            return name
    return None


class NodeView:
    """The gathered state of one node read through its layout."""

    def __init__(self, layout: dict[str, Any], state: dict[str, Any]):
        self.layout = layout
        self.state = state

    @property
    def name(self) -> str:
        return self.layout["layout"]

    @property
    def version(self) -> str | None:
        return self.state.get("version")

    def component(self, comp: str) -> dict[str, Any]:
        return self.layout.get("components", {}).get(comp, {})

    def proc(self, comp: str) -> dict[str, Any] | None:
        return self.state["procs"].get(comp)

    def argv(self, comp: str) -> list[str] | None:
        proc = self.proc(comp)
        return proc["argv"] if proc else None

    def flag(self, comp: str, name: str) -> str | None:
        argv = self.argv(comp)
        return effective(argv, name) if argv else None

    def file(self, path: str) -> dict[str, Any] | None:
        return self.state["files"].get(path)

    def stat(self, path: str) -> dict[str, Any] | None:
        """A path's owner/group/mode: from the stats, or from a file that was read."""
        if path in self.state["stats"]:
            return self.state["stats"][path]
        read = self.state["files"].get(path)
        return read["stat"] if read else None

    def known(self, path: str) -> bool:
        return path in self.state["stats"] or path in self.state["files"]

    def kubelet_config_path(self) -> str | None:
        """The config file the running kubelet names, else the layout's."""
        flag = self.component("kubelet").get("config_flag")
        named = self.flag("kubelet", flag) if flag else None
        return named or next(iter(_paths(self.layout.get("files", {}).get("kubelet_config"))), None)

    def target_paths(self, target: dict[str, Any], config_values: dict[str, str] | None = None) -> list[str]:
        """Existing paths a file target names (a file the layout marks optional and that is
        absent is not one of them; a layout ``path: null`` names none)."""
        if "k8s_glob" in target:
            return sorted({e["path"] for pattern in self.layout.get("globs", {}).get(target["k8s_glob"], [])
                           for e in self.state["globs"].get(pattern, []) if _matches(e["path"], pattern)})
        section, keys = ("dirs", target["k8s_dir"]) if "k8s_dir" in target else ("files", target["k8s_file"])
        out = []
        for key in keys if isinstance(keys, list) else [keys]:
            entry = self.layout.get(section, {}).get(key)
            source = (entry or {}).get("from") or {}
            named = None
            if source.get("flag"):
                named = self.flag(source["component"], source["flag"])
            if not named and source.get("config") and config_values:
                named = config_values.get(source["config"])
            for path in [named] if named else _paths(entry):
                if self.stat(path) is not None or not self.known(path):
                    out.append(path)
        return list(dict.fromkeys(out))

    def glob_entry(self, path: str) -> dict[str, Any] | None:
        for entries in self.state["globs"].values():
            for entry in entries:
                if entry["path"] == path:
                    return entry
        return None

    def path_stat(self, path: str) -> dict[str, Any] | None:
        return self.stat(path) if self.known(path) else self.glob_entry(path)


def _matches(path: str, pattern: str) -> bool:
    """fnmatch with ``**`` for any depth (``*`` stays within one path component)."""
    if glob_base(pattern)[1] is not None:
        return path.count("/") == pattern.count("/") and fnmatch.fnmatchcase(path, pattern)
    prefix = pattern.split("**", 1)[0].rstrip("/")
    tail = pattern.split("**", 1)[1].lstrip("/")
    if not path.startswith(prefix + "/"):
        return False
    rest = path[len(prefix) + 1:]
    return not tail or fnmatch.fnmatchcase(rest.rsplit("/", 1)[-1], tail) or fnmatch.fnmatchcase(rest, tail)


def flag_file_edit(text: str, variable: str, flags: list[tuple[str, bool]]) -> tuple[str, list[str]]:
    """A kubelet flag file (``VAR="--a=1 --b"``) without the named flags; returns the new text
    and the flags removed. A value that cannot be split and joined again safely is left alone."""
    out, removed = [], []
    for line in text.splitlines(keepends=True):
        name, sep, value = line.rstrip("\n").partition("=")
        if not sep or name.strip() != variable:
            out.append(line)
            continue
        quote = '"' if len(value) > 1 and value[0] == value[-1] == '"' else ""
        content = value[1:-1] if quote else value
        if any(ch in content for ch in "\"'\\$`"):
            out.append(line)  # quoting or expansions inside: not rewritten (the flag is reported instead)
            continue
        # systemd puts $VAR on the command line split at whitespace
        argv, here = ["kubelet", *content.split()], []
        for flag, boolean in flags:
            if effective(argv, flag, boolean) is not None:
                argv = remove_flag(argv, flag, boolean)
                here.append(flag)
        if not here:
            out.append(line)
            continue
        out.append(f"{name}={quote}{' '.join(argv[1:])}{quote}\n")
        removed += here
    return "".join(out), removed
