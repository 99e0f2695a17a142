"""Facts about a Kubernetes node, round 1: which layout it has, its components' processes (read
from /proc, not ``ps | grep``) and the Kubernetes version it runs.

* ``k8s_layout``: the layout (hardline/catalogs/layouts) named by ``k8s_layout`` in inventory, or
  the first whose ``detect`` paths exist on the host.
* ``k8s_procs``: per component, the process the layout names: pid, argv (``/proc/PID/cmdline``),
  the variables of ``/proc/PID/environ`` that start with a layout's ``env_prefix`` (etcd's
  ``ETCD_*``: only those leave the host) and, for k3s, the component's last ``Running ...``
  journal line. Flags are parsed as pflag does (``--f=v`` and ``--f v``; the last wins).
* ``k8s_version``: ``--version`` of the API server, else the kubelet, else kube-proxy or the
  distribution binary (k3s, rke2), run from ``/proc/PID/exe``: the Kubernetes the node runs,
  which picks the CIS Kubernetes version (hardline.benchmarks.select.COMPONENT_FACTS).

Round 2 (files, configs, API reads) builds on these: hardline.benchmarks.gather.kubenode and
kubeapi.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from hardline.benchmarks.gather.core import Fact, HostFacts, section, shell
from hardline.catalog import kubernetes_layouts

COMM_MAX = 15  # /proc/PID/comm keeps the first 15 bytes of a process name

# grep every process whose comm is a wanted name (15-byte prefix); for each: its argv and the
# environment variables with one of the prefixes. An unreadable environ is reported, not hidden.
PROCS = ('names=$1; prefixes=$2; printf "%s\\n" $names > "$HLT/pn"; '
         'grep -sxHF -f "$HLT/pn" /proc/[0-9]*/comm > "$HLT/pm"; '
         'while IFS=: read -r f c; do p=${f#/proc/}; p=${p%/comm}; '
         'a=$(tr "\\0" "\\n" < /proc/$p/cmdline 2>/dev/null) || continue; [ -n "$a" ] || continue; '
         'echo "### pid $p $c"; printf "%s\\n" "$a"; echo "### env $p"; '
         'if e=$(tr "\\0" "\\n" < /proc/$p/environ 2>&1); then '
         'for x in $prefixes; do printf "%s\\n" "$e" | grep "^$x"; done; '
         'else echo "### envfail $p $e"; fi; done < "$HLT/pm"; true')
# the first wanted process (in the order given) whose binary answers --version
VERSION = ('for n in "$@"; do for f in $(grep -slxF "$n" /proc/[0-9]*/comm); do p=${f#/proc/}; p=${p%/comm}; '
           'v=$(/proc/$p/exe --version 2>/dev/null | head -n1) && [ -n "$v" ] && { echo "$n $p $v"; exit 0; }; '
           'done; done; echo "no running Kubernetes component to ask for its version" >&2; exit 1')
DETECT = 'for p in "$@"; do [ -e "$p" ] && echo "$p"; done; true'
VERSION_NAMES = ("kube-apiserver", "kubelet", "kube-proxy", "k3s-server", "k3s-agent", "k3s", "rke2")
VERSION_RE = re.compile(r"v(\d+\.\d+(?:\.\d+)?)")


@dataclass
class Proc:
    """One running component as the node runs it."""

    component: str
    pid: int
    name: str  # the process name the layout gives
    argv: list[str]
    env: dict[str, str] | None = None  # prefixed variables only; None: environ unreadable
    env_error: str = ""
    others: list[int] = field(default_factory=list)  # further processes of the same name
    flags: dict[str, str] = field(default_factory=dict)
    source: str = ""  # where the flags come from, for evidence
    in_container: bool = False

    def path(self, path: str) -> str:
        """Where ``path`` as the process sees it is reachable from the host: through the
        process's mount namespace (/proc/PID/root), or its cwd for a relative path."""
        if path.startswith("/"):
            return f"/proc/{self.pid}/root{path}"
        return f"/proc/{self.pid}/cwd/{path}"

    def file(self, path: str) -> str:
        """A file the process names: through /proc/PID/root when the layout runs it in a
        container (kube-proxy's DaemonSet pod), else the host path."""
        return self.path(path) if self.in_container or not path.startswith("/") else path


def layouts() -> dict[str, dict[str, Any]]:
    return kubernetes_layouts()


def candidate_layouts(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The layout inventory names, or every layout while detection is pending (round 1)."""
    name = str(data.get("k8s_layout") or "auto")
    if name == "auto":
        return layouts()
    if name not in layouts():
        return {}
    return {name: layouts()[name]}


def parse_flags(args: list[str]) -> dict[str, str]:
    """Flags of a Go command line as pflag (and Go's flag package, for etcd) parse them:
    ``--name=value``, ``--name value``, a bare ``--name`` is ``true``; one or two dashes; the last
    occurrence wins."""
    flags: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("-") or arg in ("-", "--"):
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        if not eq:
            if i < len(args) and not args[i].startswith("-"):
                value = args[i]
                i += 1
            else:
                value = "true"
        flags[name] = value
    return flags


def _layout_lines(data: dict[str, Any], facts: HostFacts) -> list[str]:
    if str(data.get("k8s_layout") or "auto") != "auto":
        return []
    paths = [p for layout in layouts().values() for p in layout.get("detect") or ()]
    return [shell("k8s_detect", DETECT, *paths)]


def _parse_layout(facts: HostFacts, data: dict[str, Any]) -> None:
    name = str(data.get("k8s_layout") or "auto")
    if name != "auto":
        if name not in layouts():
            facts.errors["k8s_layout"] = f"k8s_layout {name!r} is not one of {', '.join(layouts())}"
            return
        facts.values["k8s_layout"] = {"name": name, "why": "k8s_layout in inventory", **layouts()[name]}
        return
    out = section(facts, "k8s_detect", fact="k8s_layout")
    if out is None:
        return
    present = set(out.splitlines())
    for layout_name, layout in layouts().items():
        hits = [p for p in layout.get("detect") or () if p in present]
        if hits:
            facts.values["k8s_layout"] = {"name": layout_name, "why": f"detected: {hits[0]} exists", **layout}
            return
    tried = ", ".join(f"{n} ({', '.join(lay.get('detect') or ())})" for n, lay in layouts().items())
    facts.errors["k8s_layout"] = f"no Kubernetes layout detected on this host (none of: {tried}); set k8s_layout"


def _process_names(candidates: dict[str, dict[str, Any]]) -> list[str]:
    names = {n for lay in candidates.values() for comp in lay["components"].values() for n in comp.get("processes") or ()}
    return sorted(names)


def _env_prefixes(candidates: dict[str, dict[str, Any]]) -> list[str]:
    return sorted({c["env_prefix"] for lay in candidates.values() for c in lay["components"].values() if c.get("env_prefix")})


def _journal_specs(candidates: dict[str, dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    """(layout, component, journal spec) of every component whose flags are in a journal."""
    return [(lname, comp, c["flags_from"]["journal"]) for lname, lay in candidates.items()
            for comp, c in lay["components"].items() if isinstance(c.get("flags_from"), dict) and "journal" in c["flags_from"]]


JOURNAL = ('detect=$1; marker=$2; shift 2; found=; for p in $detect; do [ -e "$p" ] && found=1; done; '
           '[ -n "$found" ] || exit 0; u=; for x in "$@"; do u="$u -u $x"; done; '
           'journalctl $u -b --no-pager -o cat | grep -F -- "$marker" | tail -n 1')


def _procs_lines(data: dict[str, Any], facts: HostFacts) -> list[str]:
    candidates = candidate_layouts(data)
    if not candidates:
        return []
    names = sorted({n[:COMM_MAX] for n in _process_names(candidates)})
    lines = [shell("k8s_procs", PROCS, " ".join(names), " ".join(_env_prefixes(candidates)))]
    for lname, comp, spec in _journal_specs(candidates):
        detect = " ".join(candidates[lname].get("detect") or ())
        lines.append(shell(f"k8s_journal_{lname}_{comp}", JOURNAL, detect, spec["marker"], *spec["units"]))
    return lines


def _parse_procs_section(out: str) -> dict[int, dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    part = ""
    for line in out.splitlines():
        if line.startswith("### pid "):
            _, _, pid, comm = line.split(" ", 3)
            current = found.setdefault(int(pid), {"comm": comm, "argv": [], "env": {}, "env_error": ""})
            part = "argv"
        elif line.startswith("### env ") and current is not None:
            part = "env"
        elif line.startswith("### envfail ") and current is not None:
            current["env"] = None
            current["env_error"] = line.split(" ", 3)[-1]
        elif current is not None and part == "argv":
            current["argv"].append(line)
        elif current is not None and part == "env" and current["env"] is not None and "=" in line:
            key, _, value = line.partition("=")
            current["env"][key] = value
    for proc in found.values():
        while proc["argv"] and proc["argv"][-1] == "":
            proc["argv"].pop()
    return found


def _matches(name: str, proc: dict[str, Any]) -> bool:
    """A process is ``name`` when its comm is (comm is cut at 15 bytes: then argv[0]'s basename)."""
    if proc["comm"] == name:
        return True
    return len(name) > COMM_MAX and proc["comm"] == name[:COMM_MAX] and bool(proc["argv"]) \
        and os.path.basename(proc["argv"][0]) == name


def _parse_procs(facts: HostFacts, data: dict[str, Any]) -> None:
    if "k8s_layout" in facts.errors:
        facts.errors["k8s_procs"] = facts.errors["k8s_layout"]
        return
    layout = facts.values["k8s_layout"]
    out = section(facts, "k8s_procs")
    if out is None:
        return
    running = _parse_procs_section(out)
    procs: dict[str, Proc] = {}
    for component, spec in layout["components"].items():
        for name in spec.get("processes") or ():
            pids = sorted(pid for pid, p in running.items() if _matches(name, p))
            if not pids:
                continue
            raw = running[pids[0]]
            proc = Proc(component=component, pid=pids[0], name=name, argv=raw["argv"], env=raw["env"],
                        env_error=raw["env_error"], others=pids[1:], in_container=bool(spec.get("in_container")))
            flags_from = spec.get("flags_from") or "cmdline"
            if isinstance(flags_from, dict) and "journal" in flags_from:
                _journal_flags(facts, layout["name"], component, flags_from["journal"], proc)
            elif isinstance(flags_from, dict) and "config_file" in flags_from:
                proc.source = f"config file {flags_from['config_file']}"
            else:
                proc.flags = parse_flags(proc.argv[1:])
                proc.source = f"cmdline of pid {proc.pid}"
            procs[component] = proc
            break
    facts.values["k8s_procs"] = procs


def _journal_flags(facts: HostFacts, layout: str, component: str, spec: dict[str, Any], proc: Proc) -> None:
    """k3s runs every component in its own process and logs each one's flags once per start:
    ``Running kube-apiserver --a=b ...``; the last such line of the units' journal counts."""
    name = f"k8s_journal_{layout}_{component}"
    out = section(facts, name, fact=name)
    if out is None:
        proc.source = f"journal of {', '.join(spec['units'])} (unreadable: {facts.errors.get(name)})"
        proc.flags = {}
        return
    line = out.strip().splitlines()[-1] if out.strip() else ""
    _, marker, rest = line.partition(spec["marker"])
    # logrus quotes the message: msg="Running kube-apiserver --a=b ..." (k3s's flags hold no spaces)
    proc.flags = parse_flags(rest.strip().removesuffix('"').split()) if marker else {}
    proc.source = (f"journal of {', '.join(spec['units'])} ('{spec['marker']}' line)" if marker
                   else f"journal of {', '.join(spec['units'])} (no '{spec['marker']}' line this boot)")


def component(facts: HostFacts, name: str) -> Proc | None:
    """The running process of a component (layout name), None when it does not run here."""
    return facts.need("k8s_procs").get(name)


def _version_lines(data: dict[str, Any], facts: HostFacts) -> list[str]:
    return [shell("k8s_version", VERSION, *VERSION_NAMES)]


def _parse_version(facts: HostFacts, data: dict[str, Any]) -> None:
    out = section(facts, "k8s_version")
    if out is None:
        facts.errors["k8s_version"] += ("; set hardline_benchmark_versions (e.g. {'cis-kubernetes': '1.20'})"
                                        " to choose the benchmark version")
        return
    name, _, rest = out.strip().partition(" ")
    pid, _, text = rest.partition(" ")
    match = VERSION_RE.search(text)
    if not match:
        facts.errors["k8s_version"] = f"{name} (pid {pid}) --version said {text!r}: no Kubernetes version in it"
        return
    facts.values["k8s_version"] = "v" + match.group(1)
    facts.values["k8s_version_source"] = f"{name} --version (pid {pid}): {text.strip()}"


FACTS = [
    Fact("k8s_layout", _layout_lines, _parse_layout),
    Fact("k8s_procs", _procs_lines, _parse_procs, requires=("k8s_layout",)),
    Fact("k8s_version", _version_lines, _parse_version),
]
