"""Ownership and modes of Docker's files, directories and sockets (CIS section 3)."""

from __future__ import annotations

from typing import Any

from pyinfra import host
from pyinfra.api import deploy

from hardline.deploys.common import DEFAULTS, controls, host_config, op_name
from hardline.deploys.facts import DaemonJson, GlobPaths, UnitFilePath
from hardline.deploys.operations.hardening import permissions


def target_paths(target: dict[str, Any], data: dict[str, Any]) -> list[str]:
    """Paths a control's target names on this host, read through pyinfra facts."""
    if "path" in target:
        return [target["path"]]
    if "unit" in target:
        path = host.get_fact(UnitFilePath, unit=target["unit"])
        return [path] if path else []
    if "daemon_config" in target:
        return [data["docker_daemon_json_path"]]
    if "docker_socket" in target:
        return [data["docker_socket_path"]]
    if "tls" in target:
        value = host.get_fact(DaemonJson, path=data["docker_daemon_json_path"]).get(target["tls"])
        return [value] if isinstance(value, str) and value else []
    if "glob" in target:
        directory, _, pattern = target["glob"].partition("/certs.d/")
        return host.get_fact(GlobPaths, directory=f"{directory}/certs.d", pattern=pattern)
    raise ValueError(f"no deploy-side resolution for target {target}")


@deploy("Docker file permissions", data_defaults=DEFAULTS)
def docker_files():
    config = host_config()
    for control in controls(config, "file_owner", "file_mode"):
        if control.benchmark != "cis-docker":  # CIS Kubernetes names files through layouts: kubernetes.py
            continue
        params = control.resolve(config.data)
        for path in target_paths(params["target"], config.data):
            if control.kind == "file_owner":
                permissions(name=op_name(control, f"{path} owned by {params['owner']}:{params['group']}"),
                            path=path, owner=params["owner"], group=params["group"])
            else:
                permissions(name=op_name(control, f"{path} mode {params['max_mode']} or stricter"),
                            path=path, max_mode=params["max_mode"])
