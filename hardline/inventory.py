"""Inventory data: load a pyinfra inventory, resolve each host's tunables, validate them.

The same rules serve the deploy (``deploys/harden.py`` validates ``host.data`` before any
operation) and the verifier (``hardline verify`` validates before any check), so a mistake in
inventory stops both with the same message naming the file, the host and the key.

Example::

    from hardline.inventory import load_hosts
    for h in load_hosts("inventories/lab.py"):
        print(h.name, h.data["docker_log_driver"])
"""

from __future__ import annotations

import datetime as dt
import difflib
import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardline import validate
from hardline.catalog import ROLES, Catalog, Control, available, defaults, load_catalog, tunables
from hardline.inventory_k8s import k8s_contradictions
from hardline.inventory_rules import docker_contradictions, platform_contradictions

# Keys in these namespaces belong to hardline: an unknown one is a typo, not someone else's data.
OWN_PREFIXES = ("docker_", "containerd_", "sysctl_", "auditd_", "hardline_", "kernel_", "apparmor_", "selinux_",
                "cgroup_", "platform_", "k8s_", "apiserver_", "controller_manager_", "scheduler_", "etcd_", "kubelet_")
# pyinfra's @docker connector uses these data keys; they are not ours.
FOREIGN_KEYS = {"docker_identifier", "docker_platform", "docker_architecture"}

ULIMIT_NAMES = {"core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
                "nproc", "rss", "rtprio", "rttime", "sigpending", "stack"}
SYSCTL_KEY = re.compile(r"^[a-z0-9_]+(\.[A-Za-z0-9_\-]+)+$")
WAIVER_KEYS = {"id", "reason", "approved_by", "expires"}


@dataclass(frozen=True)
class Problem:
    """One invalid inventory value."""

    source: str  # inventory file or group_data file the value comes from
    host: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: host {self.host}: {self.key}: {self.message}"


class InventoryError(Exception):
    """Inventory data that hardline refuses; str() lists every problem, one per line."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        lines = [f"invalid inventory data ({len(problems)} problem{'s' * (len(problems) != 1)}):"]
        lines += [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))


# Inventory groups that give their hosts a node role (hostdata hardline_roles adds more).
GROUP_ROLES = {"docker_hosts": "docker", "k8s_control_plane": "k8s_control_plane", "k8s_etcd": "k8s_etcd",
               "k8s_workers": "k8s_worker"}


@dataclass(frozen=True)
class Waiver:
    control_key: str  # benchmark:version:id
    reason: str
    approved_by: str = ""
    expires: dt.date | None = None

    def expired(self, today: dt.date | None = None) -> bool:
        return self.expires is not None and self.expires < (today or dt.date.today())


@dataclass
class HostConfig:
    """A host of the inventory with its resolved tunables and connection data."""

    name: str
    groups: list[str]
    data: dict[str, Any]  # every tunable: host > group > defaults
    connection: dict[str, Any] = field(default_factory=dict)  # ssh_* and other non-hardline data
    waivers: dict[str, Waiver] = field(default_factory=dict)  # by control key (benchmark:version:id)
    roles: tuple[str, ...] = ()
    error: InventoryError | None = None  # invalid data: every control of the host is ERROR

    @property
    def valid(self) -> bool:
        return self.error is None


# ---------------------------------------------------------------------------------------- types


def _type_error(kind: str, value: Any) -> str | None:
    """Why ``value`` is not of tunable type ``kind`` (None if it is)."""
    if validate.knows(kind):  # names, paths, units...: hardline/validate.py
        return validate.type_error(kind, value)
    if kind == "bool":
        return None if isinstance(value, bool) else "must be true or false"
    if kind == "int":
        return None if isinstance(value, int) and not isinstance(value, bool) else "must be an integer"
    if kind == "str":
        return None if isinstance(value, str) else "must be a string"
    if kind == "list[str]":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return None if ok else "must be a list of strings"
    if kind == "dict":
        return None if isinstance(value, dict) and all(isinstance(k, str) for k in value) else "must be a mapping"
    if kind == "dict[str,str]":
        ok = isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        return None if ok else "must be a mapping of strings to strings (quote numbers: \"3\")"
    if kind == "ulimits":
        return _ulimits_error(value)
    if kind == "sysctls":
        return _sysctls_error(value)
    if kind == "waivers":
        return None if isinstance(value, list) else "must be a list of {id, reason, approved_by, expires}"
    raise AssertionError(f"unknown tunable type {kind}")


def _ulimits_error(value: Any) -> str | None:
    if not isinstance(value, dict):
        return 'must be a mapping like {"nofile": {"soft": 1024, "hard": 4096}}'
    for name, limits in value.items():
        if name not in ULIMIT_NAMES:
            return f"unknown ulimit {name!r} (known: {', '.join(sorted(ULIMIT_NAMES))})"
        if not isinstance(limits, dict) or set(limits) != {"soft", "hard"}:
            return f"{name}: needs exactly soft and hard"
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in limits.values()):
            return f"{name}: soft and hard must be integers"
        if limits["soft"] > limits["hard"]:
            return f"{name}: soft {limits['soft']} is above hard {limits['hard']}"
    return None


def _sysctls_error(value: Any) -> str | None:
    if not isinstance(value, dict):
        return "must be a mapping of sysctl name to value"
    for key, val in value.items():
        if not isinstance(key, str) or not SYSCTL_KEY.match(key):
            return f"{key!r} is not a sysctl name (like net.ipv4.tcp_syncookies)"
        if isinstance(val, bool) or not isinstance(val, (int, str)):
            return f"{key}: value must be an integer or a string"
        if isinstance(val, str) and validate.scalar_error("sysctl_value", val):
            return f"{key}: {validate.scalar_error('sysctl_value', val)}"
    return None


# ------------------------------------------------------------------------------------ checking


def host_roles(groups: Iterable[str], data: dict[str, Any]) -> tuple[str, ...]:
    """Node roles from the host's inventory groups and its hardline_roles data."""
    roles = {GROUP_ROLES[g] for g in groups if g in GROUP_ROLES}
    extra = data.get("hardline_roles")
    if isinstance(extra, list):
        roles |= {r for r in extra if isinstance(r, str)}
    return tuple(r for r in ROLES if r in roles) + tuple(sorted(roles - set(ROLES)))


def applicable_catalogs(roles: Iterable[str], versions: dict[str, str] | None = None) -> list[Catalog]:
    """Every benchmark version with a control for one of these roles; a version pinned in
    hardline_benchmark_versions leaves the others of that benchmark out."""
    roles = set(roles)
    pinned = {b: v for b, v in (versions or {}).items() if v and v != "auto"}
    return [cat for b, vs in available().items() for v in vs
            if (b not in pinned or pinned[b] == v)
            for cat in [load_catalog(b, v)] if any(c.applies_to(roles) for c in cat.controls)]


def resolve_control(ref: str, catalogs: list[Catalog]) -> tuple[Control | None, list[str]]:
    """A control by qualified key, or by bare id or slug when exactly one of ``catalogs`` has
    it; else (None, the candidate keys)."""
    found = {c.key: c for cat in catalogs for c in [cat.get(ref)] if c is not None}
    if len(found) == 1:
        return next(iter(found.values())), []
    return None, sorted(found)


def _parse_waivers(value: list, catalogs: list[Catalog], add) -> dict[str, Waiver]:
    waivers: dict[str, Waiver] = {}
    for i, entry in enumerate(value):
        key = f"hardline_waivers[{i}]"
        if not isinstance(entry, dict):
            add(key, "must be a mapping with id, reason, approved_by, expires")
            continue
        unknown = set(entry) - WAIVER_KEYS
        if unknown:
            add(key, f"unknown field(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(WAIVER_KEYS))}")
        ref = str(entry.get("id", ""))
        control, candidates = resolve_control(ref, catalogs)
        if control is None:
            if candidates:
                add(key, f"id {ref!r} is ambiguous for this host: it names {', '.join(candidates)}; write the full key")
            else:
                known = ", ".join(c.key for c in catalogs) or "none (the host has no role)"
                add(key, f"unknown control id {ref!r} in the benchmarks that apply to this host ({known})")
            continue
        if not isinstance(entry.get("reason"), str) or not entry["reason"].strip():
            add(key, f"waiver of {control.key} needs a reason")
            continue
        expires = entry.get("expires")
        if expires is not None and not isinstance(expires, dt.date):
            try:
                expires = dt.date.fromisoformat(str(expires))
            except ValueError:
                add(key, f"expires {expires!r} is not a date (YYYY-MM-DD)")
                continue
        if control.key in waivers:
            add(key, f"{control.key} is waived twice")
        waivers[control.key] = Waiver(control.key, entry["reason"].strip(), str(entry.get("approved_by", "")), expires)
    return waivers


def _contradictions(data: dict[str, Any], waived: set[str], roles: tuple[str, ...], add) -> None:
    """Settings that cannot all hold: refuse them rather than deploy a broken or failing state."""
    if "docker" in roles:
        docker_contradictions(data, waived, add)
    platform_contradictions(data, add)
    k8s_contradictions(data, roles, add)


def check_host(
    name: str,
    groups: Iterable[str],
    sources: list[tuple[str, dict[str, Any]]],
    merged: dict[str, Any],
) -> HostConfig:
    """Validate one host's inventory data and resolve its tunables and roles.

    ``sources`` are (file, raw data) pairs in the order pyinfra layers them (lowest first) and
    ``merged`` is the host's data after pyinfra's precedence. Raises InventoryError.
    """
    specs = tunables()
    problems: list[Problem] = []
    origin: dict[str, str] = {}

    for source, raw in sources:
        for key, value in raw.items():
            if key.startswith(OWN_PREFIXES) and key not in specs and key not in FOREIGN_KEYS:
                hint = difflib.get_close_matches(key, specs, n=1, cutoff=0.8)
                problems.append(Problem(source, name, key, "unknown key" + (f" (did you mean {hint[0]}?)" if hint else "")))
                continue
            origin[key] = source
            if key in specs and value is not None:
                why = _type_error(specs[key].type, value)
                if why:
                    problems.append(Problem(source, name, key, f"{why}, got {value!r}"))

    def add(key: str, message: str) -> None:
        base = key.split("[")[0]
        problems.append(Problem(origin.get(base, "defaults"), name, key, message))

    if problems:  # type errors make the semantic checks below meaningless
        raise InventoryError(problems)

    data = defaults()
    data.update({k: merged[k] for k in specs if merged.get(k) is not None})
    roles = host_roles(groups, data)
    unknown_roles = sorted(set(roles) - set(ROLES))
    if unknown_roles:
        add("hardline_roles", f"unknown role(s) {', '.join(unknown_roles)} (known: {', '.join(ROLES)})")
    elif not roles:  # named where the host is defined: the inventory file
        where = next((s for s, _ in reversed(sources) if s != "--data override"), "inventory")
        problems.append(Problem(origin.get("hardline_roles", where), name, "hardline_roles",
                                f"the host has no role: put it in one of the groups {', '.join(GROUP_ROLES)}, "
                                "or set hardline_roles"))
    for benchmark, version in data["hardline_benchmark_versions"].items():
        if benchmark not in available():
            add("hardline_benchmark_versions", f"unknown benchmark {benchmark!r} (known: {', '.join(available())})")
        elif version != "auto" and version not in available()[benchmark]:
            add("hardline_benchmark_versions", f"{benchmark} has no version {version!r} "
                f"(known: {', '.join(available()[benchmark])}, or auto)")
    if problems:
        raise InventoryError(problems)
    waivers = _parse_waivers(data["hardline_waivers"], applicable_catalogs(roles, data["hardline_benchmark_versions"]), add)
    active_waivers = {key for key, w in waivers.items() if not w.expired()}
    _contradictions(data, active_waivers, roles, add)
    if problems:
        raise InventoryError(problems)
    connection = {k: v for k, v in merged.items() if k not in specs}
    return HostConfig(name, sorted(groups), data, connection, waivers, roles)


# ----------------------------------------------------------------------------- pyinfra adapter


def _read_inventory_isolated(inventory_file: str) -> list:
    """read_inventory in the pyinfra child process (hardline.worker), which the gathering then
    reuses: pyinfra is imported once per hardline process, never in the caller."""
    from hardline import worker

    request = {"op": "inventory", "file": inventory_file, "cwd": str(Path.cwd())}
    try:
        with worker.conversation(request) as receive:
            kind, answer = receive()
    except worker.WorkerDied as died:
        kind, answer = "error", str(died)
    if kind == "error":
        raise InventoryError([Problem(inventory_file, "-", "inventory", f"pyinfra could not load it: {answer}")])
    return answer


def load_hosts(inventory_file: str, limit: Iterable[str] | None = None) -> list[HostConfig]:
    """Load a pyinfra inventory file (with its group_data) and validate every host.

    ``limit`` keeps hosts in one of the listed groups or whose name matches one of them, as a
    glob (like pyinfra --limit: ``web-*``). A
    host whose data is invalid is returned with ``error`` set (its controls are ERROR, the other
    hosts are verified). Raises InventoryError when the inventory itself cannot be used, or
    FileNotFoundError.
    """
    if not Path(inventory_file).is_file():
        raise FileNotFoundError(f"inventory file not found: {inventory_file}")
    wanted = set(limit or ())
    hosts = []
    for name, groups, sources, merged in _read_inventory_isolated(inventory_file):
        if wanted and not wanted & set(groups) and not any(fnmatch.fnmatch(name, w) for w in wanted):
            continue
        try:
            hosts.append(check_host(name, groups, sources, merged))
        except InventoryError as err:
            data = {k: v for k, v in merged.items() if k in tunables()}
            hosts.append(HostConfig(name, sorted(groups), {**defaults(), **data},
                                    {k: v for k, v in merged.items() if k not in tunables()},
                                    roles=tuple(r for r in host_roles(groups, data) if r in ROLES), error=err))
    if not hosts and not wanted:
        raise InventoryError([Problem(inventory_file, "-", "hosts", "the inventory defines no host")])
    if wanted and not hosts:
        raise InventoryError([Problem(inventory_file, ",".join(sorted(wanted)), "--limit", "matches no host or group")])
    return hosts
