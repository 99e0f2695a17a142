"""Ownership and modes of Docker's files, directories and sockets (CIS section 3)."""

from __future__ import annotations

from typing import Any

from pyinfra.api import deploy

from hardline.deploys.common import DEFAULTS, controls, host_config, op_name
from hardline.deploys.facts import DaemonJson, GlobStats, PathStat, UnitFile
from hardline.deploys.gather import Need, host_facts, need
from hardline.deploys.operations.hardening import permissions
from hardline.inventory import HostConfig

TLS_NAMES = {"tlscacert": "ca.pem", "tlscert": "cert.pem", "tlskey": "key.pem"}


def _glob(target: dict[str, Any]) -> tuple[str, str]:
    directory, _, pattern = target["glob"].partition("/certs.d/")
    return f"{directory}/certs.d", pattern


def target_need(target: dict[str, Any], data: dict[str, Any]) -> Need | None:
    """The fact that finds a control's target on the host (None: the target is read from daemon.json)."""
    if "path" in target:
        return need(PathStat, path=target["path"])
    if "unit" in target:
        return need(UnitFile, unit=target["unit"])
    if "daemon_config" in target:
        return need(PathStat, path=data["docker_daemon_json_path"])
    if "docker_socket" in target:
        return need(PathStat, path=data["docker_socket_path"])
    if "glob" in target:
        directory, pattern = _glob(target)
        return need(GlobStats, directory=directory, pattern=pattern)
    if "tls" in target:
        return None
    raise ValueError(f"no deploy-side resolution for target {target}")


def needs(config: HostConfig) -> list[Need]:
    """Every fact the file permission deploy reads, for one batch: the TLS files where hardline
    installs them (docker_runtime.py); a daemon.json naming others costs one command more."""
    data = config.data
    out = [need(DaemonJson, path=data["docker_daemon_json_path"])]
    for control in controls(config, "file_owner", "file_mode"):
        target = control.resolve(data)["target"]
        found = target_need(target, data)
        out.append(found or need(PathStat, path=f"{data['docker_config_dir'].rstrip('/')}/tls/{TLS_NAMES[target['tls']]}"))
    return out


def target_stats(target: dict[str, Any], data: dict[str, Any]) -> list[tuple[str, dict[str, Any] | None]]:
    """(path, gathered stat) of each path a control's target names on this host."""
    facts = host_facts()
    if "tls" in target:
        value = facts.get(DaemonJson, path=data["docker_daemon_json_path"]).get(target["tls"])
        return [(value, facts.get(PathStat, path=value))] if isinstance(value, str) and value else []
    found = target_need(target, data)
    assert found is not None
    value = facts.get(found.fact, **found.kwargs())
    if found.fact is UnitFile:
        return [(value["path"], value)] if value else []
    if found.fact is GlobStats:
        return [(item["path"], item) for item in value]
    return [(found.kwargs()["path"], value)]


@deploy("Docker file permissions", data_defaults=DEFAULTS)
def docker_files() -> None:
    config = host_config()
    host_facts().prefetch(needs(config))
    for control in controls(config, "file_owner", "file_mode"):
        if control.benchmark != "cis-docker":  # CIS Kubernetes names files through layouts: kubernetes.py
            continue
        params = control.resolve(config.data)
        for path, stat in target_stats(params["target"], config.data):
            if control.kind == "file_owner":
                permissions(name=op_name(control, f"{path} owned by {params['owner']}:{params['group']}"),
                            path=path, stat=stat, owner=params["owner"], group=params["group"])
            else:
                permissions(name=op_name(control, f"{path} mode {params['max_mode']} or stricter"),
                            path=path, stat=stat, max_mode=params["max_mode"])
