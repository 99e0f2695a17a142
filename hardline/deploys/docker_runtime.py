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

from pyinfra import host
from pyinfra.api import FactBase, deploy
from pyinfra.api.command import QuoteString, StringCommand
from pyinfra.facts.server import Which
from pyinfra.operations import files, server, systemd
from typing_extensions import override

from hardline.deploys.common import DEFAULTS, HardlineDataError, controls, host_config
from hardline.deploys.facts import LoadedAuditRules

TLS_FILES = (("docker_tls_ca_file", "ca.pem", "444", "tlscacert"), ("docker_tls_cert_file", "cert.pem", "444", "tlscert"),
             ("docker_tls_key_file", "key.pem", "400", "tlskey"))


class ExecStart(FactBase):
    """argv of a systemd unit's ExecStart (as systemctl show reports it), or None."""

    @override
    def command(self, unit: str) -> StringCommand:
        return StringCommand("sh -c", QuoteString('systemctl show -p ExecStart --value "$1" 2>/dev/null || true'), "_",
                             QuoteString(unit))

    @override
    def process(self, output: list[str]) -> list[str] | None:
        text = " ".join(output)
        if "argv[]=" not in text:
            return None
        return shlex.split(text.split("argv[]=", 1)[1].split(" ;", 1)[0])


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


def content_trust(config) -> None:
    if not config.data["docker_content_trust"] or not controls(config, "content_trust"):
        return
    files.line(name="[cis-docker 4.5] DOCKER_CONTENT_TRUST=1 for every login (/etc/environment)",
               path="/etc/environment", line=r"^\s*(export\s+)?DOCKER_CONTENT_TRUST=.*$", replace="DOCKER_CONTENT_TRUST=1")


def exec_audit_rule(config) -> None:
    data = config.data
    if not data["auditd_docker_client_exec"] or not controls(config, "exec_audit"):
        return
    cli = host.get_fact(Which, command="docker")
    if not cli:
        return  # no client on this host: nothing can exec through it
    rule = f"-w {cli} -p x -k {data['auditd_exec_key']}"
    # sorts before hardline-docker.rules: at boot a rule there on a path that does not exist yet
    # (containerd.sock) stops augenrules from loading any rule after it
    path = str(Path(data["auditd_rules_file"]).parent / "hardline-client-exec.rules")
    written = files.put(name="[cis-docker 5.23] audit rule recording docker client executions (exec_audit)",
                        src=_text(f"# Managed by hardline: docker exec --privileged/--user root evidence (CIS 5.23, 5.24)\n{rule}\n"),
                        dest=path, user="root", group="root", mode="640", create_remote_dir=True)
    loaded = host.get_fact(LoadedAuditRules) or []
    is_loaded = any(line.startswith(f"-w {cli} ") and "-p x" in line for line in loaded)
    # a rule already loaded is reloaded only when the file changed (e.g. a new key)
    server.shell(name="Load the docker client audit rule", commands=[f"augenrules --load || auditctl {rule}"],
                 **({"_if": written.did_change} if is_loaded else {}))


def _text(content: str):
    from io import StringIO

    return StringIO(content)


def daemon_tls(config) -> dict:
    """Install TLS material and return the daemon.json keys; add the TCP listeners as flags."""
    data = config.data
    listeners = list(data["docker_tls_hosts"])
    if not listeners or not controls(config, "daemon_tls"):  # a waived 2.7 is left alone
        return {}
    missing = [var for var, *_ in TLS_FILES if not data[var]]
    if missing:
        raise HardlineDataError(f"{config.name}: docker_tls_hosts is set but {', '.join(missing)} is empty")
    tls_dir = f"{data['docker_config_dir'].rstrip('/')}/tls"
    files.directory(name="[cis-docker 2.7] TLS directory", path=tls_dir, user="root", group="root", mode="755")
    keys = {"tlsverify": True}
    for var, name, mode, key in TLS_FILES:
        files.put(name=f"[cis-docker 2.7] {name}", src=data[var], dest=f"{tls_dir}/{name}", user="root", group="root", mode=mode)
        keys[key] = f"{tls_dir}/{name}"
    argv = host.get_fact(ExecStart, unit=f"{data['docker_service_name']}.service")
    if argv:
        flags = [h for listener in ["fd://" if "fd://" in " ".join(argv) else f"unix://{data['docker_socket_path']}"] + listeners
                 for h in ("-H", listener)]
        exec_start = " ".join(shlex.quote(a) for a in without_hosts(argv) + flags)
        dropin = files.put(
            name="[cis-docker 2.7] dockerd listens on " + ", ".join(listeners) + " with TLS",
            src=_text("# Managed by hardline (deploys/docker_runtime.py): docker_tls_hosts\n"
                      f"[Service]\nExecStart=\nExecStart={exec_start}\n"),
            dest=f"/etc/systemd/system/{data['docker_service_name']}.service.d/hardline-tls.conf",
            user="root", group="root", mode="644", create_remote_dir=True)
        systemd.daemon_reload(name="systemd daemon-reload for the TLS drop-in", _if=dropin.did_change)
    return keys


def seccomp_profile(config) -> dict:
    data = config.data
    if not data["docker_seccomp_profile"]:
        return {}
    dest = f"{data['docker_config_dir'].rstrip('/')}/seccomp.json"
    files.put(name="[cis-docker 5.22] default seccomp profile", src=data["docker_seccomp_profile"], dest=dest,
              user="root", group="root", mode="644")
    return {"seccomp-profile": dest}


@deploy("Docker runtime defaults", data_defaults=DEFAULTS)
def docker_runtime():
    config = host_config()
    content_trust(config)
    exec_audit_rule(config)
    keys = {**daemon_tls(config), **seccomp_profile(config)}
    if keys:
        # handed to the daemon.json operation of deploys/docker_daemon.py, which runs next
        extra = dict(config.data["docker_daemon_extra"])
        extra.update({k: v for k, v in keys.items() if k not in extra})
        config.data["docker_daemon_extra"] = extra
