"""Host-level remediation for CIS sections 2 and 4-5 items that the inventory can drive:

* 4.5 content trust: DOCKER_CONTENT_TRUST=1 in /etc/environment (docker_content_trust);
* 5.23/5.24 evidence: an audit rule recording every execution of the docker client with its
  arguments (auditd_docker_client_exec, key auditd_exec_key), the trail those checks read;
* 2.7 TLS for a TCP listener when the inventory asks for one (docker_tls_hosts and the CA,
  certificate and key files): the files are installed under docker_config_dir/tls, daemon.json
  gets tlsverify and the paths, and a systemd drop-in adds the -H listeners to dockerd's flags;
* 5.22 default seccomp profile (docker_seccomp_profile: a local JSON file installed as
  docker_config_dir/seccomp.json and named in daemon.json).

Container-level items are not remediated here: a deploy does not recreate workloads; their
verdicts carry the `docker run` / compose fix. Must run before deploys.docker_daemon (harden.py
calls it first), since daemon.json keys are handed over through docker_daemon_extra.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from pyinfra.api import deploy
from pyinfra.facts.files import FileContents
from pyinfra.facts.server import Which
from pyinfra.operations import systemd

from hardline.deploys.common import DEFAULTS, HardlineDataError, controls, host_config, op_name
from hardline.deploys.facts import ExecStart, LoadedAuditRules, PathStat
from hardline.deploys.gather import Need, host_facts, need
from hardline.deploys.operations.converge import audit_rules_loaded, directory, file_needs, line_in_file, managed_file
from hardline.deploys.platform_facts import AuditEnabled
from hardline.inventory import HostConfig

__all__ = ["ExecStart", "docker_runtime", "needs", "without_hosts"]

TLS_FILES = (("docker_tls_ca_file", "ca.pem", "444", "tlscacert"), ("docker_tls_cert_file", "cert.pem", "444", "tlscert"),
             ("docker_tls_key_file", "key.pem", "400", "tlskey"))


def without_hosts(argv: list[str]) -> list[str]:
    """dockerd argv with every -H/--host flag removed (they move to daemon.json's hosts)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("-H", "--host"):
            skip = True
        elif not arg.startswith(("-H=", "--host=")) and not (arg.startswith("-H") and len(arg) > 2):
            out.append(arg)
    return out


def _local(config: HostConfig, var: str) -> Path:
    """A file on the machine running the deploy that the inventory names; refused when absent."""
    path = Path(config.data[var]).absolute()
    if not path.is_file():
        raise HardlineDataError(f"host {config.name}: {var}: {config.data[var]} is not a file on this machine")
    return path


def _exec_rules_file(config: HostConfig) -> str:
    # sorts before hardline-docker.rules: at boot a rule there on a path that does not exist yet
    # (containerd.sock) stops augenrules from loading any rule after it
    return str(Path(config.data["auditd_rules_file"]).parent / "hardline-client-exec.rules")


def _tls_dir(config: HostConfig) -> str:
    return f"{config.data['docker_config_dir'].rstrip('/')}/tls"


def _dropin(config: HostConfig) -> str:
    return f"/etc/systemd/system/{config.data['docker_service_name']}.service.d/hardline-tls.conf"


def _seccomp(config: HostConfig) -> str:
    return f"{config.data['docker_config_dir'].rstrip('/')}/seccomp.json"


def needs(config: HostConfig) -> list[Need]:
    """Every fact the runtime deploy reads, for one batch."""
    data = config.data
    out: list[Need] = []
    if data["docker_content_trust"] and controls(config, "content_trust"):
        out.append(need(FileContents, path="/etc/environment"))
    if data["auditd_docker_client_exec"] and controls(config, "exec_audit"):
        path = _exec_rules_file(config)
        out += [need(Which, command="docker"), *file_needs(path), need(FileContents, path=path),
                need(LoadedAuditRules), need(AuditEnabled)]
    if data["docker_tls_hosts"] and controls(config, "daemon_tls"):
        out += [need(PathStat, path=_tls_dir(config)), *file_needs(*(f"{_tls_dir(config)}/{n}" for _, n, _, _ in TLS_FILES)),
                need(ExecStart, unit=f"{data['docker_service_name']}.service"), *file_needs(_dropin(config))]
    if data["docker_seccomp_profile"]:
        out += file_needs(_seccomp(config))
    return out


def content_trust(config: HostConfig) -> None:
    applied = controls(config, "content_trust")
    if not config.data["docker_content_trust"] or not applied:
        return
    line_in_file(name=op_name(applied[0], "DOCKER_CONTENT_TRUST=1 for every login (/etc/environment)"),
                 path="/etc/environment", line=r"^\s*(export\s+)?DOCKER_CONTENT_TRUST=.*$", replace="DOCKER_CONTENT_TRUST=1")


def exec_audit_rule(config: HostConfig) -> None:
    data = config.data
    applied = controls(config, "exec_audit")
    if not data["auditd_docker_client_exec"] or not applied:
        return
    facts = host_facts()
    cli = facts.get(Which, command="docker")
    if not cli:
        return  # no client on this host: nothing can exec through it
    rule = f"-w {cli} -p x -k {data['auditd_exec_key']}"  # the key is a validated audit_key
    path = _exec_rules_file(config)
    previous = facts.get(FileContents, path=path)
    managed_file(name=op_name(applied[0], "audit rule recording docker client executions (exec_audit)"),
                 dest=path,
                 content=f"# Managed by hardline: docker exec --privileged/--user root evidence (CIS 5.23, 5.24)\n{rule}\n",
                 mode="640", create_remote_dir=True)
    audit_rules_loaded(name="Load the docker client audit rule", rules=[rule], previous=previous)


def daemon_tls(config: HostConfig) -> dict[str, Any]:
    """Install TLS material and return the daemon.json keys; add the TCP listeners as flags."""
    data = config.data
    listeners = list(data["docker_tls_hosts"])
    applied = controls(config, "daemon_tls")
    if not listeners or not applied:  # a waived 2.7 is left alone
        return {}
    control = applied[0]
    missing = [var for var, *_ in TLS_FILES if not data[var]]
    if missing:
        raise HardlineDataError(f"{config.name}: docker_tls_hosts is set but {', '.join(missing)} is empty")
    tls_dir = _tls_dir(config)
    directory(name=op_name(control, "TLS directory"), path=tls_dir, user="root", group="root", mode="755")
    keys: dict[str, Any] = {"tlsverify": True}
    for var, name, mode, key in TLS_FILES:
        managed_file(name=op_name(control, name), content=_local(config, var), dest=f"{tls_dir}/{name}", mode=mode)
        keys[key] = f"{tls_dir}/{name}"
    argv = host_facts().get(ExecStart, unit=f"{data['docker_service_name']}.service")
    if argv:
        flags = [h for listener in ["fd://" if "fd://" in " ".join(argv) else f"unix://{data['docker_socket_path']}"] + listeners
                 for h in ("-H", listener)]
        exec_start = " ".join(shlex.quote(a) for a in without_hosts(argv) + flags)
        dropin = managed_file(
            name=op_name(control, "dockerd listens on " + ", ".join(listeners) + " with TLS"),
            content=("# Managed by hardline (deploys/docker_runtime.py): docker_tls_hosts\n"
                     f"[Service]\nExecStart=\nExecStart={exec_start}\n"),
            dest=_dropin(config), create_remote_dir=True)
        if dropin.will_change:
            systemd.daemon_reload(name="systemd daemon-reload for the TLS drop-in", _if=dropin.did_change)
    return keys


def seccomp_profile(config: HostConfig) -> dict[str, Any]:
    data = config.data
    if not data["docker_seccomp_profile"]:
        return {}
    managed_file(name="[cis-docker:1.6.0:5.22] default seccomp profile", content=_local(config, "docker_seccomp_profile"),
                 dest=_seccomp(config))
    return {"seccomp-profile": _seccomp(config)}


@deploy("Docker runtime defaults", data_defaults=DEFAULTS)
def docker_runtime() -> None:
    config = host_config()
    host_facts().prefetch(needs(config))
    content_trust(config)
    exec_audit_rule(config)
    keys = {**daemon_tls(config), **seccomp_profile(config)}
    if keys:
        # handed to the daemon.json operation of deploys/docker_daemon.py, which runs next
        extra = dict(config.data["docker_daemon_extra"])
        extra.update({k: v for k, v in keys.items() if k not in extra})
        config.data["docker_daemon_extra"] = extra
