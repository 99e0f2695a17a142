"""The Vagrant lab's network namespace (``hlv``) with libvirtd and virtlogd running inside it.

libvirt's management network gives guests private addresses (192.168.121.x); they must never
appear in this machine's own namespace, so libvirtd (which creates the bridge and its dnsmasq),
and every vagrant / pyinfra / hardline command that talks to the guests, run inside the
namespace (``ip netns exec hlv ...``: :func:`prefix`). PID 1 is not systemd here: the daemons
are started with ``-d`` and stopped by their pidfiles. :func:`down` destroys the lab's domains
and network, stops the daemons, kills whatever else still runs in the namespace and deletes it;
:func:`leftovers` says what, if anything, is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from lab.common import LabError, cache_root, log, require_root, require_tools, run

NETNS = "hlv"
PREFIX = "hlv-"  # libvirt domains (vagrant-libvirt default_prefix), network and pool
NETWORK = "hlv-mgmt"
POOL = "hlv"
DAEMONS = {"virtlogd": Path("/run/virtlogd.pid"), "libvirtd": Path("/run/libvirtd.pid")}
SOCKET = Path("/run/libvirt/libvirt-sock")
QEMU_CONF = Path("/etc/libvirt/qemu.conf")


def prefix() -> list[str]:
    """argv prefix running a command inside the lab's namespace."""
    return ["ip", "netns", "exec", NETNS]


def exists() -> bool:
    return Path(f"/run/netns/{NETNS}").exists()


def pool_dir() -> Path:
    """Where libvirt keeps the boxes it was given and the VMs' disks (outside the repository)."""
    return cache_root() / "vagrant" / "pool"


def _pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _in_namespace(pid: int) -> bool:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{NETNS}").st_ino
    except OSError:
        return False


def virsh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = ["virsh", "-q", "-c", "qemu:///system", *args]
    return run(cmd) if check else subprocess.run(cmd, capture_output=True, text=True)


def up() -> None:
    """Create the namespace and start virtlogd and libvirtd in it (idempotent)."""
    require_root("the Vagrant lab (network namespace, libvirtd)")
    require_tools("ip", "libvirtd", "virtlogd", "virsh", "vagrant")
    if "\nuser = \"root\"" not in "\n" + QEMU_CONF.read_text(errors="replace"):
        # without it libvirt re-probes QEMU on every call (~70 s per `vagrant up`)
        raise LabError(f'{QEMU_CONF} lacks user = "root" / group = "root": run `bash scripts/setup.sh lab`')
    if not exists():
        run(["ip", "netns", "add", NETNS])
        run([*prefix(), "ip", "link", "set", "lo", "up"])
    for name, pidfile in DAEMONS.items():
        pid = _pid(pidfile)
        if pid is not None and not _in_namespace(pid):
            raise LabError(f"{name} already runs outside the {NETNS} namespace (pid {pid}); stop it first")
        if pid is None:
            run([*prefix(), name, "-d"])
    deadline = time.monotonic() + 60
    while virsh("version", check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise LabError("libvirtd did not answer on qemu:///system within 60 s")
        time.sleep(0.5)
    _ensure_pool()


def _ensure_pool() -> None:
    """A directory pool in the cache: boxes uploaded by vagrant-libvirt stay between sessions."""
    pool_dir().mkdir(parents=True, exist_ok=True)
    if virsh("pool-info", POOL, check=False).returncode == 0 and \
            f"<path>{pool_dir()}</path>" not in virsh("pool-dumpxml", POOL).stdout:
        virsh("pool-destroy", POOL, check=False)  # defined for another cache directory
        virsh("pool-undefine", POOL)
    if virsh("pool-info", POOL, check=False).returncode != 0:
        virsh("pool-define-as", POOL, "dir", "--target", str(pool_dir()))
        virsh("pool-autostart", POOL)
    if "running" not in virsh("pool-info", POOL).stdout.lower():
        virsh("pool-start", POOL)


def _stop(pid: int, timeout: float = 15) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.2)


def down() -> None:
    """Stop every lab domain, the lab network and the daemons; delete the namespace."""
    if _pid(DAEMONS["libvirtd"]) is not None:
        for name in virsh("list", "--all", "--name", check=False).stdout.split():
            if name.startswith(PREFIX):
                virsh("destroy", name, check=False)
                virsh("undefine", name, "--nvram", check=False)
        if virsh("net-info", NETWORK, check=False).returncode == 0:
            virsh("net-destroy", NETWORK, check=False)
            virsh("net-undefine", NETWORK, check=False)
        virsh("pool-destroy", POOL, check=False)  # inactive; its files (the uploaded boxes) stay
    for name in reversed(DAEMONS):
        pid = _pid(DAEMONS[name])
        if pid is not None and (not exists() or _in_namespace(pid)):
            _stop(pid)
    if exists():
        pids = subprocess.run(["ip", "netns", "pids", NETNS], capture_output=True, text=True).stdout.split()
        for pid in pids:
            log(f"netns: stopping pid {pid} left in {NETNS}: {_cmdline(int(pid))}")
            _stop(int(pid))
        run(["ip", "netns", "del", NETNS])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def leftovers(box_dirs: list[Path] = ()) -> list[str]:
    """What a torn-down lab left behind: the namespace, a lab daemon or guest, a loop device on
    a box build's file. Empty when clean."""
    found = []
    if exists():
        found.append(f"network namespace {NETNS}")
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        cmd = _cmdline(int(pid_dir.name))
        argv0 = os.path.basename(cmd.split(" ", 1)[0])
        if argv0 in DAEMONS or (argv0 == "dnsmasq" and f"/{NETWORK}." in cmd) or \
                (argv0.startswith("qemu-system") and f"guest={PREFIX}" in cmd):
            found.append(f"process {pid_dir.name}: {cmd[:160]}")
    loops = subprocess.run(["losetup", "-l", "-n", "-O", "NAME,BACK-FILE"], capture_output=True, text=True).stdout
    for line in loops.splitlines():
        if any(str(d) in line for d in box_dirs):
            found.append(f"loop device {line.strip()}")
    return found
