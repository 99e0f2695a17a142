"""Real targets for deploy tests that need no VM, and what they need around them.

* :func:`local_service` puts a throw-away dockerd (tests/support/daemons.py) behind
  ``systemctl``: a pyinfra ``@local`` deploy then writes the daemon's real config file, and its
  restart really stops and starts that dockerd. SIMULATED: only systemd itself (this machine's
  PID 1 is not systemd); the stand-in ``systemctl`` does what systemd would do to this one
  service (stop, start, is-active, is-failed) and ``journalctl`` shows the daemon's log. The
  deploy runs in a private mount namespace whose /etc/systemd/system is a directory of the test,
  so its drop-in is a real file nobody else sees.
* :data:`CONTAINER_SYSTEMCTL` is the stand-in for a container target whose dockerd is outside
  (its socket mounted in): restart is a no-op, the daemon answers ``docker info`` for real.
* audit keys unique to a test run, removed from the kernel afterwards.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hardline.catalog import defaults

from .daemons import DOCKER_CLI, ETC_DOCKER, NETNS_DIR, DockerDaemon
from .hostimage import HostContainer

# net.* sysctls of the default profile that belong to a network namespace (net.core.* and a few
# others exist only in the initial one): a container can own these, and only these
NET_SYSCTLS = {k: str(v) for k, v in defaults()["sysctl_settings"].items()
               if k.startswith("net.") and not k.startswith("net.core.")}

CONTAINER_SYSTEMCTL = """#!/bin/sh
# SIMULATED systemd (hardline tests): the container's dockerd runs outside it, its socket mounted in
case "$1" in
  is-failed) exit 1 ;;
  show) exit 0 ;;
  *) exit 0 ;;
esac
"""

_LOCAL_SYSTEMCTL = """#!/bin/sh
# SIMULATED systemd (hardline tests) for one throw-away dockerd: stop/start it as systemd would.
pidfile={pidfile}
running() {{ kill -0 "$1" 2>/dev/null && ! grep -q '^State:.*zombie' "/proc/$1/status" 2>/dev/null; }}
alive() {{ [ -s "$pidfile" ] && running "$(cat "$pidfile")"; }}
start() {{
  setsid nsenter --net={netns} unshare --mount --propagation slave \\
    sh -c '[ -d "$0" ] && {{ mount --bind "$1" "$0" || exit 97; }}; shift; exec "$@"' {etc} {etc_docker} {argv} \\
    >>{log} 2>&1 </dev/null &
  i=0; while [ $i -lt 600 ]; do
    {docker} -H unix://{socket} info >/dev/null 2>&1 && return 0
    kill -0 $! 2>/dev/null || return 1
    sleep 0.1; i=$((i + 1))
  done
  return 1
}}
stop() {{
  alive || return 0
  pid=$(cat "$pidfile"); kill "$pid"
  i=0; while running "$pid" && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
}}
case "$1" in
  restart) stop; start ;;
  is-active) shift; alive ;;
  is-failed) shift; ! alive ;;
  reset-failed|daemon-reload) exit 0 ;;
  *) echo "systemctl stand-in: $* not simulated" >&2; exit 1 ;;
esac
"""


def audit_key() -> str:
    """An audit key for this test run's rules only (audit rules are global kernel state)."""
    return f"hld-{os.getpid()}-{secrets.token_hex(3)}"


def remove_audit_rules(*keys: str) -> None:
    for key in keys:
        subprocess.run(["auditctl", "-D", "-k", key], capture_output=True, check=False)


def local_service(daemon: DockerDaemon, workdir: Path) -> tuple[dict[str, str], list[str]]:
    """(environment, command prefix) for a pyinfra @local deploy whose ``docker`` service is
    ``daemon``: stand-in systemctl/journalctl first on PATH, a private /etc/systemd/system."""
    bin_dir = workdir / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    argv = [str(a) for a in daemon._dockerd_argv(True, daemon.flags)]
    script = _LOCAL_SYSTEMCTL.format(
        pidfile=shlex.quote(str(daemon.pidfile)), netns=shlex.quote(f"{NETNS_DIR}/{daemon.netns}"),
        etc=ETC_DOCKER, etc_docker=shlex.quote(str(daemon.etc_docker)), argv=" ".join(shlex.quote(a) for a in argv),
        log=shlex.quote(str(daemon.log_path)), docker=shlex.quote(DOCKER_CLI), socket=shlex.quote(str(daemon.socket)))
    for name, text in (("systemctl", script), ("journalctl", f"#!/bin/sh\ntail -n 15 {shlex.quote(str(daemon.log_path))}\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    units = workdir / "etc-systemd-system"  # the target's /etc/systemd/system, kept across runs
    units.mkdir(exist_ok=True)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
              'mount --bind "$0" /etc/systemd/system && exec "$@"', str(units)]
    return env, prefix


def daemon_pid(daemon: DockerDaemon) -> int | None:
    """The pid of the daemon now (after a restart by the stand-in it is not the one we spawned)."""
    try:
        pid = int(daemon.pidfile.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def stop_restarted(daemon: DockerDaemon) -> None:
    """Stop a daemon the stand-in restarted (the factory only knows the process it spawned)."""
    pid = daemon_pid(daemon)
    if pid and pid != daemon.pid:
        daemon._kill_containers()
        os.kill(pid, 15)


def config_of(daemon: DockerDaemon) -> dict[str, object]:
    return json.loads(daemon.config_path.read_text())


@contextmanager
def whole_host(daemon: DockerDaemon, workdir: Path, packages: tuple[str, ...] = ("telnet",),
               ) -> Iterator[tuple[HostContainer, dict[str, Any]]]:
    """A container target for the whole harden() and the inventory data that fits it: its dockerd
    is ``daemon`` outside (socket mounted in; SIMULATED systemctl: restart is a no-op), its
    network sysctls preset (its /proc/sys is read-only), audit rules under a key of its own
    (removed after), 2.12 waived (no authorization plugin here)."""
    local = workdir / "usr-local"
    (local / "bin").mkdir(parents=True, exist_ok=True)
    (local / "bin" / "systemctl").write_text(CONTAINER_SYSTEMCTL)
    (local / "bin" / "systemctl").chmod(0o755)
    key = audit_key()
    data = {"docker_socket_path": "/run/hld-docker.sock", "sysctl_settings": NET_SYSCTLS, "auditd_key": key,
            "auditd_exec_key": key, "auditd_platform_rules": [f"-w /etc/passwd -p wa -k {key}"],
            "hardline_waivers": [{"id": "2.12", "reason": "no authorization plugin on the test machine",
                                  "approved_by": "tests", "expires": "2099-12-31"}]}
    try:
        with HostContainer(daemon, audit=True, packages=packages, preset=NET_SYSCTLS,
                           mounts=(f"{local}:/usr/local", f"{daemon.socket}:/run/hld-docker.sock")) as container:
            container.sh(f"mkdir -p {daemon.data_root}")  # the data root docker info names
            yield container, data
    finally:
        remove_audit_rules(key)
