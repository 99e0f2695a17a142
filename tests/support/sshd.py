"""A throw-away OpenSSH server on 127.0.0.1 so checks run over *real* SSH.

:class:`SshServer` runs ``/usr/sbin/sshd -D -e -f <dir>/sshd_config`` on a free
port with a freshly generated ed25519 host key and a freshly generated client
key authorised for root.  Everything lives in ``/tmp/hl-ssh-<random>/``; the
only shared state is the privilege-separation directory ``/run/sshd``, which
sshd insists on and which we create if missing (and never remove, another
sshd may use it).  Files it writes:

* ``client_key`` (+ ``.pub``) — the identity to log in as root;
* ``known_hosts`` — ``[127.0.0.1]:PORT ssh-ed25519 ...`` for this server;
* ``ssh_config`` — Host 127.0.0.1 with Port/User/IdentityFile,
  ``UserKnownHostsFile`` and ``StrictHostKeyChecking yes`` (for ``ssh -F``,
  pyinfra's ``ssh_config_file`` and testinfra's ``ssh://`` backend).

Host-key finding for testinfra's paramiko backend (pytest-testinfra 10.2.2,
``testinfra/backend/paramiko.py``)
------------------------------------------------------------------------------
``ParamikoBackend.client`` creates a bare ``paramiko.SSHClient``, sets
``paramiko.WarningPolicy()`` and **never loads any known_hosts file** (neither
``~/.ssh/known_hosts`` nor ``load_system_host_keys``).  From an ssh_config it
only honours ``StrictHostKeyChecking no`` (switching to an ignore policy);
``UserKnownHostsFile`` and ``StrictHostKeyChecking yes`` are silently
ignored.  With an empty host-key store every server key is "missing", so the
WarningPolicy logs and *accepts it* — including a key that contradicts our
known_hosts.  So ``paramiko://`` URLs are never host-key checked, and passing
an ssh_config does not change that (``test_support.py`` pins this).

What to use instead:

* :meth:`SshServer.testinfra_host` (default ``strict=True``) builds a testinfra
  ``Host`` on :class:`StrictParamikoBackend`, which loads ``known_hosts`` and
  uses ``RejectPolicy``: an unknown key raises ``SSHException``, a different
  key raises ``BadHostKeyException``.
* testinfra's ``ssh://`` backend shells out to OpenSSH, so
  ``testinfra.get_host("ssh://127.0.0.1", ssh_config=srv.ssh_config)`` is
  strict too.
* pyinfra (3.10) does load ``ssh_known_hosts_file``; its default
  ``ssh_strict_host_key_checking`` is ``accept-new``, so
  :meth:`SshServer.pyinfra_data` sets it to ``"yes"``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import functools

import paramiko
import testinfra
import testinfra.host
from testinfra.backend.paramiko import ParamikoBackend

from .daemons import descendants, kill_and_wait, set_parent_death_signal, tail

__all__ = ["SSHD", "SshServer", "SshStartError", "StrictParamikoBackend", "pyinfra_ssh_data", "strict_testinfra_host"]


class StrictParamikoBackend(ParamikoBackend):
    """testinfra paramiko backend that checks host keys like OpenSSH/pyinfra do (test support:
    hardline itself reaches hosts through pyinfra's connectors)."""

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


SSHD = os.environ.get("HL_SSHD", "/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")
SFTP_SERVER = "/usr/lib/openssh/sftp-server"  # pyinfra uploads files over sftp by default
LOOPBACK = "127.0.0.1"


class SshStartError(RuntimeError):
    """sshd did not come up; the message carries the end of its log."""


def free_port(host: str = LOOPBACK) -> int:
    """A currently unused TCP port (sshd may still lose a race; start() retries)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def ssh_keygen(path: Path, comment: str) -> str:
    """Generate an unencrypted ed25519 key at ``path``; return the public line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path.with_suffix(".pub").read_text().strip()


def _banner_ok(port: int) -> bool:
    """True once something on ``port`` speaks SSH."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1) as sock:
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def pyinfra_ssh_data(port: int, key: Path, known_hosts: Path, **extra: Any) -> dict[str, Any]:
    """pyinfra host data for root on 127.0.0.1:``port``: this key only, host key checked."""
    return {
        "ssh_hostname": LOOPBACK,
        "ssh_port": port,
        "ssh_user": "root",
        "ssh_key": str(key),
        "ssh_known_hosts_file": str(known_hosts),
        "ssh_strict_host_key_checking": "yes",
        "ssh_allow_agent": False,
        "ssh_look_for_keys": False,
        **extra,
    }


def strict_testinfra_host(port: int, key: Path, known_hosts: str | os.PathLike[str]) -> Any:
    """A testinfra Host for root on 127.0.0.1:``port`` over :class:`StrictParamikoBackend`."""
    backend = StrictParamikoBackend(
        f"root@{LOOPBACK}:{port}",  # backends take the spec without "paramiko://"
        known_hosts=str(known_hosts), strict="yes", ssh_identity_file=str(key),
    )
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    return host


class SshServer:
    """sshd on 127.0.0.1:<port> accepting ``client_key`` for root.

    Attributes: dir, port (after start), client_key, known_hosts, ssh_config,
    host_key, host_public_key, config_path, pidfile, log_path, pid.
    """

    def __init__(self, base_dir: str | os.PathLike[str] = "/tmp") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="hl-ssh-", dir=base_dir))
        self.host_key = self.dir / "ssh_host_ed25519_key"
        self.client_key = self.dir / "client_key"
        self.authorized_keys = self.dir / "authorized_keys"
        self.known_hosts = self.dir / "known_hosts"
        self.ssh_config = self.dir / "ssh_config"
        self.config_path = self.dir / "sshd_config"
        self.pidfile = self.dir / "sshd.pid"
        self.log_path = self.dir / "sshd.log"
        self.port: int | None = None
        self.pid: int | None = None
        self.host_public_key = ""
        self._proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<SshServer {LOOPBACK}:{self.port} {'running' if self.running else 'stopped'}>"

    def __enter__(self) -> SshServer:
        return self.start() if not self.running else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        self.remove()

    # -- lifecycle ---------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10, attempts: int = 5) -> SshServer:
        """Generate keys/config and start sshd; retries on a lost port race."""
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        self._make_keys()
        for _ in range(attempts):
            self.port = free_port()
            self._write_files()
            self._spawn()
            if self._wait_ready(timeout):
                return self
            self.stop()
        raise SshStartError(f"sshd did not start on {LOOPBACK}\n--- sshd log ---\n{tail(self.log_path)}")

    def stop(self, timeout: float = 10) -> None:
        """Stop sshd *and* its per-connection children (open sessions survive
        a SIGTERM to the listener otherwise). Idempotent."""
        if self._proc is None:
            return
        # Sessions first, while the listener is alive to reap them (otherwise
        # they linger as zombies of PID 1).
        survivors = kill_and_wait(descendants(self._proc.pid), signal.SIGKILL, timeout)
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout)
        self._proc = None
        self.pid = None
        if survivors:
            raise RuntimeError(f"sshd children survived SIGKILL: {survivors}")

    def remove(self) -> None:
        """Delete the server directory (after stop)."""
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- client side ---------------------------------------------------------------

    @property
    def testinfra_url(self) -> str:
        """Hostspec for ``testinfra.get_host`` (host keys NOT checked, see module doc)."""
        return f"paramiko://root@{LOOPBACK}:{self.port}"

    def testinfra_host(self, strict: bool = True, known_hosts: str | os.PathLike[str] | None = None) -> Any:
        """A testinfra Host over paramiko.

        strict=True: :class:`StrictParamikoBackend` checking ``known_hosts``
        (default: ours).  strict=False: plain ``testinfra.get_host`` (cached
        by testinfra, host key accepted blindly).
        """
        if not strict:
            return testinfra.get_host(self.testinfra_url, ssh_identity_file=str(self.client_key))
        assert self.port is not None
        return strict_testinfra_host(self.port, self.client_key, known_hosts or self.known_hosts)

    def ssh_argv(self, *remote_command: str) -> list[str]:
        """argv for the OpenSSH client, strict host-key checking, no agent/prompts."""
        return ["ssh", "-F", str(self.ssh_config), LOOPBACK, *remote_command]

    def ssh(self, *remote_command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a command over real SSH; text output captured."""
        return subprocess.run(self.ssh_argv(*remote_command), capture_output=True, text=True, timeout=timeout)

    def pyinfra_data(self, name: str | None = None, **extra: Any) -> dict[str, Any]:
        """pyinfra host data connecting to this server as root, host key checked.

        ``name`` is the inventory name the data is meant for; pyinfra keys the
        connection on ``ssh_hostname``, so any name works.  ``extra`` is merged
        in (e.g. per-host data the deploy needs).
        """
        del name  # the data is the same for every inventory name
        assert self.port is not None
        return pyinfra_ssh_data(self.port, self.client_key, self.known_hosts, **extra)

    def pyinfra_host(self, name: str, **extra: Any) -> tuple[str, dict[str, Any]]:
        """An inventory entry ``(name, data)``."""
        return name, self.pyinfra_data(name, **extra)

    # -- internals ---------------------------------------------------------------

    def _make_keys(self) -> None:
        """Host + client keys; authorized_keys holds only the client key."""
        if not self.host_key.exists():
            ssh_keygen(self.host_key, "hardline-test-host")
        # "ssh-ed25519 AAAA..." without the comment, as known_hosts wants it
        self.host_public_key = " ".join(self.host_key.with_suffix(".pub").read_text().split()[:2])
        if not self.client_key.exists():
            self.authorized_keys.write_text(ssh_keygen(self.client_key, "hardline-test-client") + "\n")

    def _write_files(self) -> None:
        """sshd_config, known_hosts and client ssh_config for the chosen port."""
        self.config_path.write_text(self._sshd_config())
        self.known_hosts.write_text(f"[{LOOPBACK}]:{self.port} {self.host_public_key}\n")
        self.ssh_config.write_text(self._client_config())

    def _sshd_config(self) -> str:
        lines = [
            f"Port {self.port}",
            f"ListenAddress {LOOPBACK}",
            f"HostKey {self.host_key}",
            f"PidFile {self.pidfile}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "StrictModes no",  # keys live in a /tmp dir whose perms sshd would reject
            "UsePAM no",
            "UseDNS no",
            "PrintMotd no",
            "LogLevel VERBOSE",
            f"Subsystem sftp {SFTP_SERVER}",
        ]
        return "\n".join(lines) + "\n"

    def _client_config(self) -> str:
        lines = [
            f"Host {LOOPBACK}",
            f"  Port {self.port}",
            "  User root",
            f"  IdentityFile {self.client_key}",
            "  IdentitiesOnly yes",
            f"  UserKnownHostsFile {self.known_hosts}",
            "  StrictHostKeyChecking yes",
            "  GlobalKnownHostsFile /dev/null",
            "  BatchMode yes",
            "  ConnectTimeout 10",
            "  LogLevel ERROR",
        ]
        return "\n".join(lines) + "\n"

    def _spawn(self) -> None:
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=set_parent_death_signal,
            )
        self.pid = self._proc.pid

    def _wait_ready(self, timeout: float) -> bool:
        """True once the banner is served by *our* sshd; False if it exited."""
        assert self._proc is not None and self.port is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            if _banner_ok(self.port):
                return True
            time.sleep(0.05)
        return False
