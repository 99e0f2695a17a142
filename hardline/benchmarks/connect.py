"""From a pyinfra inventory host to a testinfra host, with the same SSH trust rules as pyinfra.

testinfra's own paramiko backend accepts any host key (it never loads known_hosts and ignores
StrictHostKeyChecking yes), which would let a verifier report on an impostor host. The backend
here loads the inventory's ssh_known_hosts_file (and ~/.ssh/known_hosts), rejects a changed key
always, and an unknown key unless ssh_strict_host_key_checking is "no"/"off" or "accept-new"
(pyinfra's default).
"""

from __future__ import annotations

import functools
from typing import Any

import paramiko
import testinfra
from testinfra.backend.paramiko import ParamikoBackend


class StrictParamikoBackend(ParamikoBackend):
    """testinfra paramiko backend that checks host keys like OpenSSH/pyinfra do."""

    def __init__(self, hostspec: str, *, known_hosts: str | None = None, strict: str = "accept-new", **kwargs: Any):
        super().__init__(hostspec, **kwargs)
        self.known_hosts = known_hosts
        self.strict = strict

    @functools.cached_property
    def client(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        try:
            client.load_system_host_keys()
        except (OSError, paramiko.SSHException):
            pass
        if self.known_hosts:
            client.load_host_keys(self.known_hosts)
        # a changed key is always refused by paramiko (BadHostKeyException); this is for unknown ones
        accept_unknown = self.strict in ("no", "off", "accept-new", "false")
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy() if accept_unknown else paramiko.RejectPolicy())
        client.connect(
            hostname=self.host.name, port=int(self.host.port or 22), username=self.host.user,
            key_filename=self.ssh_identity_file, timeout=self.timeout,
            allow_agent=self.ssh_identity_file is None, look_for_keys=self.ssh_identity_file is None,
        )
        return client


def testinfra_host(name: str, conn: dict[str, Any]):
    """A testinfra host for a pyinfra inventory host (@local, @docker/ID, or SSH)."""
    if name == "@local" or name.startswith("@local/"):
        return testinfra.get_host("local://")
    if name.startswith("@docker/"):
        return testinfra.get_host(f"docker://{name.split('/', 1)[1]}")
    hostname = conn.get("ssh_hostname") or name
    user = conn.get("ssh_user") or "root"
    port = conn.get("ssh_port") or 22
    strict = conn.get("ssh_strict_host_key_checking", "accept-new")
    backend = StrictParamikoBackend(
        f"{user}@{hostname}:{port}",
        known_hosts=str(conn["ssh_known_hosts_file"]) if conn.get("ssh_known_hosts_file") else None,
        strict=str(strict).lower() if not isinstance(strict, bool) else ("yes" if strict else "no"),
        ssh_identity_file=str(conn["ssh_key"]) if conn.get("ssh_key") else None,
        timeout=int(conn.get("ssh_connect_timeout", 10)),
        sudo=bool(conn.get("_sudo")),
    )
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    return host
