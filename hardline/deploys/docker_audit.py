"""auditd watches on Docker's files, directories and binaries (CIS 1.1.3-1.1.18)."""

from __future__ import annotations

from typing import Any

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.server import Which
from pyinfra.operations import files, server

from hardline.deploys.common import DEFAULTS, TEMPLATES, controls, host_config
from hardline.deploys.docker_files import target_paths
from hardline.deploys.facts import DockerRootDir, LoadedAuditRules, PathStat


def watch_path(target: dict[str, Any], data: dict[str, Any]) -> str | None:
    if "binary" in target:
        return host.get_fact(Which, command=target["binary"])
    if "docker_root" in target:
        return host.get_fact(DockerRootDir, socket=data["docker_socket_path"]) or "/var/lib/docker"
    paths = target_paths(target, data)
    return paths[0] if paths else None


@deploy("Docker audit rules", data_defaults=DEFAULTS)
def docker_audit():
    config = host_config()
    # facts are read before any operation runs: daemon.json may not exist yet on a fresh host,
    # but the Docker daemon deploy (which runs first) always writes it
    written_by_this_run = {config.data["docker_daemon_json_path"]}
    watches = []
    for control in controls(config, "audit_watch"):
        path = watch_path(control.resolve(config.data)["target"], config.data)
        # auditctl refuses a watch on a path that does not exist; the check reports those as N/A
        if path and (path in written_by_this_run or host.get_fact(PathStat, path=path) is not None):
            watches.append((control.id, path))
    if not watches:
        return
    rules = files.template(
        name=f"auditd rules for {len(watches)} Docker paths ({', '.join(cid for cid, _ in watches)})",
        src=str(TEMPLATES / "etc/audit/rules.d/hardline-docker.rules.j2"),
        dest=config.data["auditd_rules_file"], user="root", group="root", mode="640",
        watches=watches, key=config.data["auditd_key"],
    )
    loaded = host.get_fact(LoadedAuditRules) or []
    missing = [p for _, p in watches if not any(line.startswith(f"-w {p} ") for line in loaded)]
    load = ["augenrules --load || auditctl -R " + config.data["auditd_rules_file"]]
    if missing:  # known now: an unconditional change, so dry runs and drift reports count it
        server.shell(name=f"Load audit rules ({len(missing)} watches not loaded)", commands=load)
    else:
        server.shell(name="Load audit rules", commands=load, _if=rules.did_change)
