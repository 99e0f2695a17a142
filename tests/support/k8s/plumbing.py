"""Host-side plumbing of the Kubernetes test nodes: network namespaces, cgroups, stale clean-up.

Names: a cluster is ``hlk<6 random>``; its switch namespace has that name, a node's namespace is
``<cluster>-<node>``, its directory ``/tmp/<cluster>/<node>`` and its kubelet's cgroup root
``/sys/fs/cgroup/<controller>/<cluster>-<node>``. Nothing else global is created.

Network: the team rule keeps private-range addresses out of the host's own namespace, so the
cluster's layer 2 is a bridge inside the switch namespace and each node gets one veth whose
ends live only in the switch and in the node (``eth0``, a /24 address, a default route so the
kubelet and kubeadm find their node address). The host reaches nodes only through the loopback
forwarder (forward.py).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from ..daemons import mounts_under

NETNS_DIR = Path("/run/netns")
CGROUP_FS = Path("/sys/fs/cgroup")
PREFIX = "hlk"


def run(cmd: Sequence[str], timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a host command; on failure the error names the command and its stderr."""
    done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (rc {done.returncode}): {done.stderr.strip()}")
    return done


# -- network ----------------------------------------------------------------------------------


def create_switch(name: str) -> None:
    """The cluster's namespace with bridge br0 (no address: it only joins the nodes)."""
    run(["ip", "netns", "add", name])
    run(["ip", "-n", name, "link", "add", "br0", "type", "bridge"])
    run(["ip", "-n", name, "link", "set", "br0", "up"])


def create_node_netns(switch: str, node_netns: str, port: str, address: str) -> None:
    """Node namespace with lo and eth0 (``address``, e.g. 10.247.0.2/24) plugged into the switch."""
    run(["ip", "netns", "add", node_netns])
    run(["ip", "-n", switch, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", node_netns])
    run(["ip", "-n", switch, "link", "set", port, "master", "br0", "up"])
    run(["ip", "-n", node_netns, "link", "set", "lo", "up"])
    run(["ip", "-n", node_netns, "addr", "add", address, "dev", "eth0"])
    run(["ip", "-n", node_netns, "link", "set", "eth0", "up"])
    run(["ip", "-n", node_netns, "route", "add", "default", "dev", "eth0"])


def delete_netns(name: str) -> None:
    if (NETNS_DIR / name).exists():
        run(["ip", "netns", "delete", name], check=False)


def netns_pids(name: str) -> list[int]:
    if not (NETNS_DIR / name).exists():
        return []
    return [int(p) for p in run(["ip", "netns", "pids", name], check=False).stdout.split()]


# -- cgroups (v1: one hierarchy per controller) ------------------------------------------------


def cgroup_hierarchies() -> list[Path]:
    """Mount points of the cgroup v1 hierarchies (cpu, memory, ..., name=systemd)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        if post.split()[0] == "cgroup":
            points.append(Path(pre.split()[4]))
    return sorted(set(points))


def create_cgroup_root(name: str) -> None:
    """``/<name>`` in every hierarchy: the kubelet's --cgroup-root must exist before it starts
    (it refuses otherwise); cpuset needs its cpus/mems filled before any task may join."""
    for hierarchy in cgroup_hierarchies():
        group = hierarchy / name
        group.mkdir(exist_ok=True)
        for knob in ("cpuset.cpus", "cpuset.mems"):
            if (hierarchy / knob).exists() and not (group / knob).read_text().strip():
                (group / knob).write_text((hierarchy / knob).read_text())


def remove_cgroup_root(name: str) -> list[str]:
    """rmdir the tree leaves first (the kubelet's kubepods/... below it); return what stayed."""
    stayed = []
    for hierarchy in cgroup_hierarchies():
        root = hierarchy / name
        if not root.is_dir():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(root), key=lambda w: -w[0].count("/")):
            for _ in range(20):  # a group whose last task just died is busy for a moment
                try:
                    os.rmdir(dirpath)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                stayed.append(dirpath)
    return stayed


# -- stale state of killed sessions ------------------------------------------------------------


def reap_stale(base_dir: str | os.PathLike[str] = "/tmp", min_age: float = 120) -> list[str]:
    """Remove clusters a killed test process left behind: namespaces, directories, cgroups.

    A cluster is stale when none of its namespaces holds a process (a node's init, sshd,
    kubelet and pods all live in the node's namespace) and its switch namespace is older than
    ``min_age`` seconds (not a cluster being set up right now by another session)."""
    reaped = []
    names = sorted(p.name for p in NETNS_DIR.glob(f"{PREFIX}*")) if NETNS_DIR.is_dir() else []
    for switch in [n for n in names if "-" not in n]:
        members = [n for n in names if n == switch or n.startswith(switch + "-")]
        try:
            age = time.time() - (NETNS_DIR / switch).stat().st_mtime
        except FileNotFoundError:
            continue
        if age < min_age or any(netns_pids(n) for n in members):
            continue
        for n in members:
            if n != switch:
                remove_cgroup_root(n)
            delete_netns(n)
        leftover = Path(base_dir) / switch
        if leftover.is_dir() and not mounts_under(leftover):
            shutil.rmtree(leftover, ignore_errors=True)
        reaped.append(switch)
    # directories whose namespaces are gone already (killed between mkdir and `ip netns add`)
    for leftover in Path(base_dir).glob(f"{PREFIX}*"):
        name = leftover.name
        if not re.fullmatch(PREFIX + r"[a-z0-9]{6}", name) or (NETNS_DIR / name).exists():
            continue
        if time.time() - leftover.stat().st_mtime >= min_age and not mounts_under(leftover):
            shutil.rmtree(leftover, ignore_errors=True)
            reaped.append(name)
    return reaped
