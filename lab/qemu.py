"""Throwaway Debian 12 (bookworm) lab VM under QEMU, reachable by SSH on loopback.

The lab is what the end-to-end hardening tests run against: a real systemd host with AppArmor
enforcing, auditd, docker.io and a separate ``/var/lib/docker`` file system (CIS Docker 1.1.1),
booted with ``-kernel`` from the image lab/image.py builds (no cloud image, no installer).

``run/`` (under ``$HARDLINE_LAB_DIR``, default ``~/.cache/hardline/lab``) holds one running VM::

    root.qcow2, docker.qcow2   copy-on-write overlays over base/*.img (thrown away with --fresh)
    qemu.pid, console.log, known_hosts, lab.json, qmp.sock

Snapshots: :func:`snapshot_save` / :func:`snapshot_load` run QEMU's savevm / loadvm over QMP
(internal snapshots of the qcow2 overlays, RAM included), so a test session boots the VM once
and puts it back into its booted state between test modules in seconds.

Command line: ``python3 -m lab up|down|status|ssh|build|snapshot|demo`` (lab/__main__.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lab.common import LabError, locked, log, require_tools, run, tail, write
from lab.qmp import qmp_call
from lab.image import HOSTNAME, base_dir, base_is_current, build, lab_dir

SSH_HOST = "127.0.0.1"
SSH_USER = "root"
DEFAULT_SSH_PORT = 2222
KERNEL_CMDLINE = "root=/dev/vda rw console=ttyS0 apparmor=1 security=apparmor"
SSH_TIMEOUT_S = 300.0
DOCKER_TIMEOUT_S = 180.0
SNAPSHOT_TIMEOUT_S = 600.0

__all__ = ["LabError", "build", "base_is_current", "lab_dir", "base_dir"]


def run_dir() -> Path:
    """Directory of the running VM's overlays, pidfile and logs."""
    return lab_dir() / "run"


def ssh_port() -> int:
    """Host loopback port forwarded to the VM's sshd (``$HARDLINE_LAB_SSH_PORT``)."""
    raw = os.environ.get("HARDLINE_LAB_SSH_PORT", str(DEFAULT_SSH_PORT))
    try:
        port = int(raw)
    except ValueError:
        raise LabError(f"HARDLINE_LAB_SSH_PORT={raw!r} is not a port number") from None
    if not 0 < port < 65536:
        raise LabError(f"HARDLINE_LAB_SSH_PORT={port} is out of range")
    return port


def key_path() -> Path:
    """Private key that logs in as root on the VM."""
    return base_dir() / "id_ed25519"


def known_hosts_path() -> Path:
    """known_hosts pinning the VM's host key at ``[127.0.0.1]:PORT``."""
    return run_dir() / "known_hosts"


def _pidfile() -> Path:
    return run_dir() / "qemu.pid"


def _consolelog() -> Path:
    return run_dir() / "console.log"


def _state_file() -> Path:
    return run_dir() / "lab.json"


def _qmp_socket() -> Path:
    return run_dir() / "qmp.sock"


def inventory_data() -> dict[str, Any]:
    """pyinfra host data for the lab VM (valid whether or not the VM is up)."""
    return {
        "ssh_hostname": SSH_HOST,
        "ssh_port": ssh_port(),
        "ssh_user": SSH_USER,
        "ssh_key": str(key_path()),
        "ssh_known_hosts_file": str(known_hosts_path()),
    }

def _read_pid() -> int | None:
    try:
        pid = int(_pidfile().read_text().strip())
    except (OSError, ValueError):
        return None
    # A stale pidfile may point at a recycled pid: check it is really our qemu.
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    if not cmdline or b"qemu" not in cmdline[0] or str(_pidfile()).encode() not in cmdline:
        return None
    return pid


def is_running() -> bool:
    """True when the lab's QEMU runs (its pidfile names a live qemu of this lab)."""
    return _read_pid() is not None


def _read_state() -> dict[str, Any]:
    try:
        return json.loads(_state_file().read_text())
    except (OSError, ValueError):
        return {}


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((SSH_HOST, port))
        except OSError:
            return False
    return True


def _create_overlays() -> None:
    """Fresh copy-on-write disks over the pristine base images."""
    for name in ("root", "docker"):
        overlay = run_dir() / f"{name}.qcow2"
        overlay.unlink(missing_ok=True)
        backing = base_dir() / f"{name}.img"
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(backing), "-F", "raw", str(overlay)])


def _overlays_current() -> bool:
    """Overlays exist and are newer than the base images they sit on."""
    for name in ("root", "docker"):
        overlay, backing = run_dir() / f"{name}.qcow2", base_dir() / f"{name}.img"
        if not overlay.is_file() or overlay.stat().st_mtime < backing.stat().st_mtime:
            return False
    return True


def _write_known_hosts(port: int) -> None:
    host = SSH_HOST if port == 22 else f"[{SSH_HOST}]:{port}"
    keytype, key = (base_dir() / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    write(known_hosts_path(), f"{host} {keytype} {key}\n", 0o600)


def qemu_command(port: int) -> list[str]:
    """The QEMU command line for the lab VM (TCG: nested KVM is unreliable in CI)."""
    run = run_dir()
    cmd = [
        "qemu-system-x86_64",
        "-name", HOSTNAME,
        "-accel", os.environ.get("HARDLINE_LAB_ACCEL", "tcg,thread=multi"),
        "-cpu", "max",
        "-smp", os.environ.get("HARDLINE_LAB_CPUS", "2"),
        "-m", os.environ.get("HARDLINE_LAB_MEMORY", "2048"),
        "-kernel", str(base_dir() / "vmlinuz"),
        "-initrd", str(base_dir() / "initrd.img"),
        "-append", KERNEL_CMDLINE,
        "-drive", f"file={run / 'root.qcow2'},if=virtio,format=qcow2",
        "-drive", f"file={run / 'docker.qcow2'},if=virtio,format=qcow2",
        "-netdev", f"user,id=n0,hostfwd=tcp:{SSH_HOST}:{port}-:22",
        "-device", "virtio-net-pci,netdev=n0",
        "-device", "virtio-rng-pci",  # sshd/docker want entropy early; TCG has little
        "-display", "none",
        "-monitor", "none",
        "-serial", f"file:{_consolelog()}",
        "-pidfile", str(_pidfile()),
        "-daemonize",
    ]  # fmt: skip
    # QMP lets `down` press the ACPI power button, so the guest flushes its
    # page cache and a reused overlay keeps what was written.  Unix socket
    # paths are limited to 107 bytes; without QMP, `down` just kills QEMU.
    if len(str(_qmp_socket())) < 100:
        cmd += ["-qmp", f"unix:{_qmp_socket()},server=on,wait=off"]
    return cmd


def _boot(port: int) -> int:
    """Start QEMU in the background and return its pid."""
    require_tools("qemu-system-x86_64")
    if not _port_free(port):
        raise LabError(f"port {SSH_HOST}:{port} is in use; set HARDLINE_LAB_SSH_PORT to a free port")
    _consolelog().unlink(missing_ok=True)
    _pidfile().unlink(missing_ok=True)
    _qmp_socket().unlink(missing_ok=True)
    # -daemonize returns once the VM is set up, so a bad option or disk
    # fails here with QEMU's own message rather than as an SSH timeout.
    proc = subprocess.run(qemu_command(port), capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise LabError(f"qemu failed to start: {proc.stderr.strip() or proc.stdout.strip()}")
    pid = _read_pid()
    if pid is None:
        raise LabError(f"qemu started but {_pidfile()} has no live qemu pid")
    return pid


def ssh_command(command: Sequence[str] | str | None = None, *, tty: bool = False) -> list[str]:
    """ssh argv into the VM with strict host key checking against the lab known_hosts."""
    argv = [
        "ssh",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={known_hosts_path()}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "IdentitiesOnly=yes",
        "-o", "ConnectTimeout=10",
        "-o", "LogLevel=ERROR",
        "-i", str(key_path()),
        "-p", str(ssh_port()),
    ]  # fmt: skip
    if tty:
        argv.append("-t")
    argv.append(f"{SSH_USER}@{SSH_HOST}")
    if command:
        argv += [command] if isinstance(command, str) else list(command)
    return argv


def run_ssh(command: Sequence[str] | str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a command in the VM over SSH and capture its output (never raises on rc)."""
    try:
        return subprocess.run(
            ssh_command(command), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(exc.cmd, 255, "", f"ssh timed out after {timeout} s")


def _consoletail() -> str:
    return f"last 30 lines of {_consolelog()}:\n{tail(_consolelog(), 30)}"


def _wait_for(what: str, check: Any, pid: int, timeout: float) -> float:
    """Poll ``check()`` until true; print progress; fail fast if QEMU dies."""
    started = time.monotonic()
    log(f"lab: waiting for {what} ", end="")
    next_mark = 15.0
    while True:
        if check():
            elapsed = time.monotonic() - started
            log(f" {elapsed:.0f} s")
            return elapsed
        elapsed = time.monotonic() - started
        if _read_pid() != pid:
            log()
            raise LabError(f"qemu exited while waiting for {what}; {_consoletail()}")
        if elapsed > timeout:
            log()
            raise LabError(f"timed out after {timeout:.0f} s waiting for {what}; {_consoletail()}")
        if elapsed >= next_mark:
            log(f" {elapsed:.0f}s ", end="")
            next_mark += 15
        else:
            log(".", end="")
        time.sleep(2)


def _docker_active() -> bool:
    proc = run_ssh("systemctl is-active docker", timeout=30)
    state = proc.stdout.strip()
    if state == "failed":
        detail = run_ssh("systemctl status --no-pager -n 20 docker", timeout=30).stdout
        raise LabError(f"docker.service failed in the VM:\n{detail}")
    return state == "active"


def qmp(command: str, arguments: dict[str, Any] | None = None, timeout: float = 5) -> Any:
    """One QMP command to the lab VM's QEMU (lab/qmp.py); LabError when refused or unanswered."""
    return qmp_call(_qmp_socket(), command, arguments, timeout)


def _qmp(command: str, timeout: float = 5) -> bool:
    """Send one QMP command; True if it was accepted (for best-effort power-off)."""
    try:
        qmp(command, timeout=timeout)
    except LabError:
        return False
    return True


def _hmp(command_line: str, timeout: float) -> str:
    """A human-monitor command through QMP; savevm/loadvm report failures as text, not as errors."""
    out = str(qmp("human-monitor-command", {"command-line": command_line}, timeout=timeout))
    if out.strip():
        raise LabError(f"{command_line}: {out.strip()}")
    return out


def _check_snapshot_name(name: str) -> None:
    if not name.replace("-", "").replace("_", "").isalnum():
        raise LabError(f"snapshot name {name!r}: use letters, digits, - and _ only")


def snapshot_save(name: str) -> float:
    """savevm: an internal snapshot of both qcow2 overlays plus RAM and device state (the VM
    pauses meanwhile, then runs on). Returns the seconds it took."""
    _check_snapshot_name(name)
    if _read_pid() is None:
        raise LabError("the lab VM is not running; nothing to snapshot")
    started = time.monotonic()
    _hmp(f"savevm {name}", SNAPSHOT_TIMEOUT_S)
    return time.monotonic() - started


def snapshot_load(name: str) -> float:
    """loadvm: the running VM jumps back to the snapshot (disks, RAM, devices) and runs on.

    The guest's clock jumps back too; it is set to this machine's time again (audit records,
    reports and waiver dates then read right). Returns the seconds until SSH answers."""
    _check_snapshot_name(name)
    pid = _read_pid()
    if pid is None:
        raise LabError("the lab VM is not running; boot it first")
    if name not in snapshots():
        raise LabError(f"the lab VM has no snapshot {name!r} (has: {', '.join(snapshots()) or 'none'})")
    started = time.monotonic()
    _hmp(f"loadvm {name}", SNAPSHOT_TIMEOUT_S)
    _wait_for("ssh after loadvm", lambda: run_ssh("true", timeout=10).returncode == 0, pid, SSH_TIMEOUT_S)
    synced = run_ssh(f"date -u -s @{int(time.time())} >/dev/null", timeout=30)
    if synced.returncode != 0:
        raise LabError(f"could not set the guest clock after loadvm: {synced.stderr.strip()}")
    return time.monotonic() - started


def snapshots() -> list[str]:
    """Names of the running VM's internal snapshots (HMP `info snapshots`)."""
    out = str(qmp("human-monitor-command", {"command-line": "info snapshots"}, timeout=30))
    names = []
    for line in out.splitlines():
        fields = line.split()
        # "ID  TAG  VM SIZE  DATE  VM CLOCK  ICOUNT" header, then one row per snapshot
        if len(fields) >= 2 and fields[0].isdigit() or (len(fields) >= 2 and fields[0] == "--"):
            names.append(fields[1])
    return names


def _wait_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return True
        time.sleep(0.2)
    return False


def _stop_pid(pid: int, graceful: bool, timeout: float = 60) -> None:
    """ACPI power-off (if graceful), then SIGTERM (QEMU flushes its disks), then SIGKILL."""
    if graceful and _qmp("system_powerdown"):
        log(f"lab: shutting down the VM (pid {pid}) ", end="")
        done = _wait_exit(pid, timeout)
        log("done" if done else f"no power-off after {timeout:.0f} s; killing it")
        if done:
            return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_exit(pid, 10):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_exit(pid, 5)


def _down_unlocked(graceful: bool) -> bool:
    pid = _read_pid()
    if pid is not None:
        _stop_pid(pid, graceful)
    _pidfile().unlink(missing_ok=True)
    _qmp_socket().unlink(missing_ok=True)
    return pid is not None


def up(fresh: bool = False, rebuild: bool = False) -> dict[str, Any]:
    """Build the image if needed, boot (or reuse) the VM, wait for SSH and docker.

    Returns the :func:`inventory_data` plus ``pid`` and ``timings`` (seconds).
    """
    require_tools("qemu-system-x86_64", "qemu-img", "ssh")
    port = ssh_port()
    timings: dict[str, float] = {}
    with locked(lab_dir()):
        running = _read_pid()
        if running is not None and _read_state().get("ssh_port", port) != port:
            raise LabError(
                f"the lab VM is running on port {_read_state().get('ssh_port')}, not {port}; run `down` first"
            )
        if running is None and not _port_free(port):
            # Fail before a possibly long image build, not after it.
            raise LabError(f"port {SSH_HOST}:{port} is in use; set HARDLINE_LAB_SSH_PORT to a free port")
        if rebuild or not base_is_current():
            if running is not None:
                log("lab: stopping the running VM to rebuild its image")
                _down_unlocked(graceful=False)  # its disks are thrown away
                running = None
            built = build(force=rebuild)
            if built is not None:
                timings["build"] = round(built, 1)
                fresh = True  # old overlays sit on the old base image
        if fresh and running is not None:
            log(f"lab: --fresh: stopping VM (pid {running})")
            _down_unlocked(graceful=False)  # its disks are thrown away
            running = None
        run_dir().mkdir(parents=True, exist_ok=True)
        _write_known_hosts(port)
        if running is None:
            if fresh or not _overlays_current():
                _create_overlays()
            pid = _boot(port)
            state = {**inventory_data(), "pid": pid, "started_at": time.time()}
            _state_file().write_text(json.dumps(state, indent=2) + "\n")
            log(f"lab: qemu started (pid {pid}, ssh {SSH_HOST}:{port}, console {_consolelog()})")
        else:
            pid = running
            log(f"lab: reusing running VM (pid {pid})")
        # Timings count from QEMU's start; for a reused VM that is meaningless.
        boot_start = _read_state().get("started_at", time.time())
        _wait_for("ssh", lambda: run_ssh("true", timeout=10).returncode == 0, pid, SSH_TIMEOUT_S)
        if running is None:
            timings["boot_to_ssh"] = round(time.time() - boot_start, 1)
        _wait_for("docker", _docker_active, pid, DOCKER_TIMEOUT_S)
        if running is None:
            timings["boot_to_docker"] = round(time.time() - boot_start, 1)
    log("lab: up; " + (", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) or "reused"))
    return {**inventory_data(), "pid": pid, "timings": timings}


def down(graceful: bool = True) -> bool:
    """Stop the VM (ACPI power-off first if ``graceful``); True if one was running."""
    with locked(lab_dir()):
        return _down_unlocked(graceful)


def status() -> dict[str, Any]:
    """Whether the VM runs, and its pid, port and uptime in seconds."""
    pid = _read_pid()
    state = _read_state()
    info: dict[str, Any] = {"running": pid is not None, "ssh_port": state.get("ssh_port", ssh_port())}
    if pid is not None:
        info["pid"] = pid
        info["uptime_s"] = round(time.time() - state.get("started_at", time.time()), 1)
    info["base_image"] = "current" if base_is_current() else "missing or outdated"
    info["lab_dir"] = str(lab_dir())
    return info

