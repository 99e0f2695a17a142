"""The effective configuration of a running dockerd: command-line flags, daemon.json, defaults,
and what the running daemon reports (docker info), in that order of trust.

Like docker-bench-security, flags are read first: a flag overrides nothing silently in dockerd
(it refuses to start when a key is both a flag and in daemon.json), but /etc/default/docker or a
systemd drop-in can add flags that daemon.json never shows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# Flags that are switches (--icc, --icc=false); every other flag takes a value.
BOOL_FLAGS = {"icc", "iptables", "ip6tables", "ip-forward", "ip-masq", "live-restore", "no-new-privileges",
              "experimental", "userland-proxy", "debug", "tls", "tlsverify", "selinux-enabled", "raw-logs",
              "ipv6", "init", "validate", "rootless", "help", "version"}
# Repeatable flags and the daemon.json key (a list, or a map for k=v flags) they fill.
LIST_FLAGS = {"host": "hosts", "insecure-registry": "insecure-registries", "authorization-plugin": "authorization-plugins",
              "storage-opt": "storage-opts", "exec-opt": "exec-opts", "registry-mirror": "registry-mirrors",
              "label": "labels", "dns": "dns", "dns-opt": "dns-opts", "dns-search": "dns-search",
              "default-address-pool": "default-address-pools", "cluster-store-opt": "cluster-store-opts"}
MAP_FLAGS = {"log-opt": "log-opts", "default-ulimit": "default-ulimits"}
SHORT_FLAGS = {"H": "host", "l": "log-level", "D": "debug", "s": "storage-driver", "g": "data-root",
               "G": "group", "p": "pidfile", "b": "bridge"}
RENAMED = {"graph": "data-root"}
# dockerd's built-in defaults for the keys the checks read.
DEFAULTS: dict[str, Any] = {
    "icc": True, "iptables": True, "log-level": "info", "userland-proxy": True, "live-restore": False,
    "no-new-privileges": False, "experimental": False, "insecure-registries": [], "storage-opts": [],
    "authorization-plugins": [], "cgroup-parent": "", "userns-remap": "", "log-driver": "json-file",
    "storage-driver": "", "tlsverify": False, "tls": False, "hosts": [], "selinux-enabled": False,
}
LOOPBACK_INSECURE = {"127.0.0.0/8", "::1/128"}  # dockerd always trusts these; not a finding


@dataclass
class Effective:
    """Effective value of every key, with where each came from."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    flags: dict[str, Any] = field(default_factory=dict)
    file: dict[str, Any] = field(default_factory=dict)
    config_file: str | None = None
    notes: dict[str, str] = field(default_factory=dict)  # key -> discrepancy between file and runtime

    @property
    def flag_hosts(self) -> list[str]:
        return list(self.flags.get("hosts", []))

    def get(self, key: str) -> Any:
        return self.values.get(key, DEFAULTS.get(key))

    def source(self, key: str) -> str:
        return self.sources.get(key, "dockerd default")


def _coerce_bool(value: str) -> bool | str:
    lowered = value.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    return value


def parse_flags(argv: list[str]) -> tuple[dict[str, Any], str | None]:
    """dockerd argv (argv[0] included) -> (daemon.json-shaped dict, --config-file)."""
    flags: dict[str, Any] = {}
    config_file = None
    args = list(argv[1:])
    while args:
        arg = args.pop(0)
        if not arg.startswith("-") or arg == "-":
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        name = RENAMED.get(SHORT_FLAGS.get(name, name), SHORT_FLAGS.get(name, name))
        if not eq:
            if name in BOOL_FLAGS:
                value = "true"
            elif args:
                value = args.pop(0)
        if name == "config-file":
            config_file = value
        elif name in LIST_FLAGS:
            flags.setdefault(LIST_FLAGS[name], []).append(value)
        elif name in MAP_FLAGS:
            key, _, val = value.partition("=")
            flags.setdefault(MAP_FLAGS[name], {})[key] = val
        else:
            flags[name] = _coerce_bool(value) if name in BOOL_FLAGS else value
    return flags, config_file


def parse_daemon_json(raw: str | None) -> dict[str, Any]:
    """daemon.json text -> dict. Raises ValueError with a reason (dockerd would refuse it too)."""
    if raw is None or not raw.strip():
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("daemon.json is not a JSON object")
    return data


def _runtime(info: dict[str, Any]) -> dict[str, Any]:
    """Keys whose running value docker info reports."""
    runtime: dict[str, Any] = {}
    if "Driver" in info:
        runtime["storage-driver"] = info["Driver"]
    if "LoggingDriver" in info:
        runtime["log-driver"] = info["LoggingDriver"]
    if "LiveRestoreEnabled" in info:
        runtime["live-restore"] = bool(info["LiveRestoreEnabled"])
    if "ExperimentalBuild" in info:
        runtime["experimental"] = bool(info["ExperimentalBuild"])
    registry = info.get("RegistryConfig") or {}
    if registry:
        insecure = [c for c in registry.get("InsecureRegistryCIDRs") or [] if c not in LOOPBACK_INSECURE]
        insecure += [name for name, idx in (registry.get("IndexConfigs") or {}).items()
                     if not idx.get("Secure", True) and name not in ("docker.io",)]
        runtime["insecure-registries"] = sorted(set(insecure))
    return runtime


def effective_config(argv: list[str], daemon_json: dict[str, Any] | None, info: dict[str, Any] | None) -> Effective:
    """Merge flags, daemon.json and docker info into one view of the running daemon."""
    flags, config_file = parse_flags(argv)
    eff = Effective(flags=flags, file=daemon_json or {}, config_file=config_file)
    for key, value in (daemon_json or {}).items():
        eff.values[key], eff.sources[key] = value, "daemon.json"
    for key, value in flags.items():
        eff.values[key], eff.sources[key] = value, "command-line flag"
    for key, value in _runtime(info or {}).items():
        configured = eff.get(key)
        if key == "insecure-registries":
            configured = sorted(set(configured or []) - LOOPBACK_INSECURE)
        if key in eff.values and configured != value and not (key == "storage-driver" and not configured):
            eff.notes[key] = (f"configured {json.dumps(configured)} ({eff.source(key)}) but the running daemon "
                              f"reports {json.dumps(value)}: restart pending or config changed since start")
        eff.values[key], eff.sources[key] = value, "running daemon (docker info)"
    return eff
