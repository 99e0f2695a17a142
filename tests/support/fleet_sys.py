"""Low-level pieces of the test fleet (:mod:`tests.support.fleet`): ip(8), namespaces, mounts,
cpuacct cgroups, and the clean-up that goes by cgroup rather than by process name.

Every name the fleet creates starts with :data:`PREFIX` ("hlf") followed by four hex digits:
network namespaces ``hlfXXXX-*``, the machine's uplink ``hlfXXXX``, cgroups
``/sys/fs/cgroup/cpuacct/hlfXXXX/*`` and the directory ``/tmp/hlfXXXX``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .daemons import DOCKER_CLI, is_alive

CGROUP_ROOT = Path("/sys/fs/cgroup/cpuacct")
NETNS_DIR = Path("/run/netns")
PREFIX = "hlf"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def in_namespaces(netns: str, mounts_file: Path, command: list[str]) -> list[str]:
    """argv running ``command`` in network namespace ``netns`` and a new private mount
    namespace where each line of ``mounts_file`` (mount arguments joined by "|") is mounted."""
    script = ("set -f; while IFS= read -r line; do (IFS='|'; exec mount $line) || exit 97; done < \"$0\"; "
              'exec "$@"')
    return ["nsenter", f"--net={NETNS_DIR / netns}", "unshare", "--mount", "--propagation", "private",
            "sh", "-c", script, str(mounts_file), *command]



def write_mounts(path: Path, mounts: list[list[str]]) -> None:
    for args in mounts:
        if any("|" in a or "\n" in a for a in args):
            raise ValueError(f"mount argument with | or a newline: {args}")
    path.write_text("".join("|".join(args) + "\n" for args in mounts))


def docker(sock: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_CONFIG"] = "/nonexistent-hlf-docker-config"
    try:
        return subprocess.run([DOCKER_CLI, "-H", f"unix://{sock}", *args], capture_output=True, text=True,
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired as err:
        return subprocess.CompletedProcess(err.cmd, 124, "", "timed out")


def kill_containers(sockets: list[Path]) -> None:
    """Containers leave our cgroups (dockerd moves them to /docker/<id>): remove them through
    their daemon first, which also removes their cgroups."""
    def remove(sock: Path) -> None:
        if sock.exists():
            ids = docker(sock, "ps", "-aq", timeout=10).stdout.split()
            if ids:
                docker(sock, "rm", "-f", *ids, timeout=120)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(remove, sockets))


def banner(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1) as sock:
            return sock.recv(4) == b"SSH-"
    except OSError:
        return False


def mounts_under(path: Path) -> list[str]:
    prefix = str(path).rstrip("/") + "/"
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if (line.split()[4] + "/").startswith(prefix)]


def kill_cgroup_tree(root: Path, timeout: float = 15) -> list[int]:
    """SIGKILL every process in ``root`` and its child cgroups, wait for them, remove the cgroups.
    Returns pids that would not die."""
    if not root.is_dir():
        return []
    groups = sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True) + [root]
    deadline = time.monotonic() + timeout
    while True:
        pids = [int(p) for g in groups for p in (g / "cgroup.procs").read_text().split()]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        alive = [p for p in pids if is_alive(p)]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for group in groups:
        for _ in range(50):  # a killed process leaves the cgroup once reaped
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.05)
    return alive


def reap_stale(min_age: float = 60) -> list[str]:
    """Remove fleets whose owner process is gone (a SIGKILLed test run): processes, cgroups,
    namespaces, directories. Returns the fleet ids reaped."""
    reaped = []
    for group in sorted(CGROUP_ROOT.glob(f"{PREFIX}[0-9a-f][0-9a-f][0-9a-f][0-9a-f]")):
        fleet_dir = Path("/tmp") / group.name
        try:
            owner = int((fleet_dir / "owner.pid").read_text())
        except (FileNotFoundError, ValueError):
            owner = None
        if owner is not None and is_alive(owner):
            continue
        if time.time() - group.stat().st_mtime < min_age:
            continue
        kill_cgroup_tree(group)
        for ns in NETNS_DIR.glob(f"{group.name}-*") if NETNS_DIR.is_dir() else []:
            ip("netns", "delete", ns.name, check=False)
        ip("link", "delete", group.name, check=False)
        if fleet_dir.is_dir() and not mounts_under(fleet_dir):
            shutil.rmtree(fleet_dir, ignore_errors=True)
        reaped.append(group.name)
    return reaped
