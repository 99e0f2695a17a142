"""auditd watches on Docker's files, directories and binaries (CIS 1.1.3-1.1.18)."""

from __future__ import annotations

from typing import Any

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import FileContents
from pyinfra.facts.server import Which

from hardline.deploys.common import DEFAULTS, controls, host_config, render
from hardline.deploys.docker_daemon import DAEMON_JSON_PLANNED
from hardline.deploys.docker_files import target_need
from hardline.deploys.facts import DockerRootDir, LoadedAuditRules, PathStat, UnitFile
from hardline.deploys.gather import Need, host_facts, need
from hardline.deploys.operations.converge import audit_rules_loaded, file_needs, managed_file
from hardline.deploys.platform_facts import AuditEnabled
from hardline.inventory import HostConfig

DEFAULT_DOCKER_ROOT = "/var/lib/docker"


def watch_need(target: dict[str, Any], data: dict[str, Any]) -> Need:
    """The fact that finds a watch's path on the host (and whether it exists)."""
    if "binary" in target:
        return need(Which, command=target["binary"])
    if "docker_root" in target:
        return need(DockerRootDir, socket=data["docker_socket_path"])
    found = target_need(target, data)
    assert found is not None, target
    return found


def needs(config: HostConfig) -> list[Need]:
    """Every fact the audit deploy reads, for one batch."""
    path = config.data["auditd_rules_file"]
    out = [watch_need(c.resolve(config.data)["target"], config.data) for c in controls(config, "audit_watch")]
    return out + [need(PathStat, path=DEFAULT_DOCKER_ROOT), *file_needs(path), need(FileContents, path=path),
                  need(LoadedAuditRules), need(AuditEnabled)]


def watch_path(target: dict[str, Any], config: HostConfig) -> str | None:
    """The existing path a watch is on (None: not on this host). auditctl refuses a watch on a
    path that does not exist; the check reports those as not applicable. A daemon.json the
    daemon deploy writes in this run (it runs first in harden()) counts as existing: facts are
    read before any operation runs."""
    data = config.data
    found = watch_need(target, data)
    value = host_facts().get(found.fact, **found.kwargs())
    if "daemon_config" in target and host.data.get(DAEMON_JSON_PLANNED) == data["docker_daemon_json_path"]:
        return str(data["docker_daemon_json_path"])
    if "docker_root" in target:  # docker does not answer: its default data root, if there is one
        return value or (DEFAULT_DOCKER_ROOT if host_facts().get(PathStat, path=DEFAULT_DOCKER_ROOT) else None)
    if found.fact is UnitFile:
        return value["path"] if value else None
    if "binary" in target:
        return value or None
    return found.kwargs()["path"] if value is not None else None


@deploy("Docker audit rules", data_defaults=DEFAULTS)
def docker_audit() -> None:
    config = host_config()
    facts = host_facts()
    facts.prefetch(needs(config))
    watches = []
    for control in controls(config, "audit_watch"):
        path = watch_path(control.resolve(config.data)["target"], config)
        if path:
            watches.append((control.id, path))
    if not watches:
        return
    key, path = config.data["auditd_key"], config.data["auditd_rules_file"]
    managed_file(name=f"auditd rules for {len(watches)} Docker paths ({', '.join(cid for cid, _ in watches)})",
                 dest=path, mode="640", content=render("etc/audit/rules.d/hardline-docker.rules.j2", watches=watches, key=key))
    audit_rules_loaded(name=f"Load the {len(watches)} Docker audit watches", previous=facts.get(FileContents, path=path),
                       rules=[f"-w {p} -p rwxa -k {key}" for _, p in watches])
