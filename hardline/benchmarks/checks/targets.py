"""Resolve a control's target (a unit, a binary, the daemon's socket...) to paths on the host.

Returns (paths, reason): an empty list with a reason means the target does not apply on this
host (e.g. no TLS configured), which the checks report as SKIP with that reason.
"""

from __future__ import annotations

from typing import Any

from hardline.benchmarks.checks.kubetargets import resolve_k8s
from hardline.benchmarks.gather.core import FactError, HostFacts
from hardline.benchmarks.gather.docker import UNIT_DIRS, effective


def resolve(target: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> tuple[list[str], str]:
    if {"k8s_file", "k8s_dir", "k8s_glob"} & set(target):
        return resolve_k8s(target, facts)
    if "path" in target:
        return [target["path"]], ""
    if "binary" in target:
        path = facts.need("binaries").get(target["binary"])
        return ([path], "") if path else ([], f"{target['binary']} is not installed (not in PATH)")
    if "unit" in target:
        units = facts.need("units")
        if target["unit"] in units:
            return [units[target["unit"]]], ""
        # without a running systemd, the unit file is where packages install it
        for d in UNIT_DIRS:
            path = f"{d}/{target['unit']}"
            if facts.stats.get(path):
                return [path], ""
        return [], f"no {target['unit']} unit file on this host"
    if "docker_root" in target:
        return [facts.need("docker_root")], ""
    if "daemon_config" in target:
        return [facts.need("daemon_json")["path"]], ""
    if "docker_socket" in target:
        hosts = effective(facts).get("hosts") or []
        unix = [h[len("unix://"):] for h in hosts if h.startswith("unix://")]
        # fd:// (socket activation) and no -H at all both mean the standard socket
        return (unix or [data["docker_socket_path"]]), ""
    if "tls" in target:
        path = effective(facts).get(target["tls"])
        return ([path], "") if path else ([], f"{target['tls']} is not configured (daemon does not use TLS)")
    if "glob" in target:
        certs = facts.need("registry_certs")
        return certs, "" if certs else f"no files match {target['glob']}"
    raise FactError(f"unknown target {target}")
