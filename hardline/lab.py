"""Throwaway Debian 12 (bookworm) lab VM under QEMU, reachable by SSH on loopback.

The lab is what the end-to-end hardening tests run against: a real systemd
host with AppArmor enforcing, auditd, docker.io and a separate
``/var/lib/docker`` file system (CIS Docker 1.1.1), booted without any cloud
image or installer so that it can be rebuilt from scratch on any Debian-ish
machine where we are root.

Layout of the cache directory (``$HARDLINE_LAB_DIR``, default
``~/.cache/hardline/lab``)::

    base/   pristine image, rebuilt only when the recipe changes
        root.img       raw ext4 root file system (/dev/vda)
        docker.img     raw ext4 for /var/lib/docker (/dev/vdb)
        vmlinuz, initrd.img
        id_ed25519(.pub)   root's SSH key
        ssh_host_ed25519_key.pub   the image's host key (for known_hosts)
        build.json     recipe stamp; a different recipe triggers a rebuild
        build.log      debootstrap/mkfs output of the last build
    run/    one running VM; thrown away with ``up --fresh``
        root.qcow2, docker.qcow2   copy-on-write overlays over base/*.img
        qemu.pid, console.log, known_hosts, lab.json

Command line (the ``hardline lab`` subcommand calls :func:`cli`)::

    python -m hardline.lab up [--fresh] [--rebuild]
    python -m hardline.lab ssh [CMD ...]
    python -m hardline.lab status
    python -m hardline.lab down
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import glob
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

# Bump whenever the image recipe below changes in a way that needs a rebuild;
# it is stored in base/build.json and compared on every `up`.
RECIPE_VERSION = 2
SUITE = "bookworm"
HOSTNAME = "hardline-lab"
SSH_HOST = "127.0.0.1"
SSH_USER = "root"
DEFAULT_SSH_PORT = 2222
IMAGE_SIZE = "4G"

# systemd-networkd (part of `systemd`) does DHCP, so no ifupdown; dbus keeps
# systemctl/hostnamectl happy; the rest is what the CIS checks look at.
PACKAGES: tuple[str, ...] = (
    "systemd-sysv",
    "udev",
    "dbus",
    "linux-image-amd64",
    "openssh-server",
    "apparmor",
    "apparmor-utils",
    "auditd",
    "python3",
    "docker.io",
    "sudo",
    "iproute2",
    "iputils-ping",
    "procps",
    "kmod",
    "ca-certificates",
)
# Units that must start at boot.  Their postinsts normally enable them, but we
# enable explicitly so the image does not depend on maintainer-script details.
ENABLED_UNITS: tuple[str, ...] = (
    "systemd-networkd.service",
    "ssh.service",
    "apparmor.service",
    "auditd.service",
    "docker.service",
)
# apt's periodic timers grab the dpkg lock shortly after boot and would make
# the pyinfra apt operations under test fail randomly.
MASKED_UNITS: tuple[str, ...] = ("apt-daily.timer", "apt-daily-upgrade.timer")

KERNEL_CMDLINE = "root=/dev/vda rw console=ttyS0 apparmor=1 security=apparmor"
SSH_TIMEOUT_S = 300.0
DOCKER_TIMEOUT_S = 180.0
# QEMU user networking always serves DNS on this address.
SLIRP_DNS = "10.0.2.3"
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
_DEBIAN_SUITES = {
    "buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid",
    "oldoldstable", "oldstable", "stable", "testing", "unstable",
}  # fmt: skip


class LabError(Exception):
    """A lab failure with a message meant for humans (no traceback)."""


# --------------------------------------------------------------------------
# Paths and settings (all deterministic from the environment)
# --------------------------------------------------------------------------


def lab_dir() -> Path:
    """The lab cache directory: ``$HARDLINE_LAB_DIR`` or ``~/.cache/hardline/lab``."""
    env = os.environ.get("HARDLINE_LAB_DIR")
    return Path(env).expanduser().resolve() if env else Path.home() / ".cache" / "hardline" / "lab"


def base_dir() -> Path:
    """Directory of the pristine image (root.img, kernel, keys)."""
    return lab_dir() / "base"


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


def _console_log() -> Path:
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


def _log(msg: str = "", end: str = "\n") -> None:
    """Progress goes to stderr so that `lab ssh CMD` output stays clean."""
    print(msg, end=end, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Preconditions and small helpers
# --------------------------------------------------------------------------


def _require_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise LabError(
            f"missing tools: {', '.join(missing)} "
            "(apt-get install -y qemu-system-x86 qemu-utils debootstrap e2fsprogs openssh-client)"
        )


def _require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise LabError(f"{what} needs root (debootstrap/chroot); run it as root")


def _run(cmd: Sequence[str], log: Path | None = None, **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise LabError with the tail of its output."""
    if log is not None:
        with log.open("a") as fh:
            fh.write(f"\n$ {shlex.join(cmd)}\n")
            fh.flush()
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, text=True, **kw)
        if proc.returncode != 0:
            raise LabError(f"{cmd[0]} failed (rc {proc.returncode}):\n{_tail(log, 30)}\n(full log: {log})")
        return proc
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        out = (proc.stderr or proc.stdout).strip().splitlines()[-10:]
        raise LabError(f"{shlex.join(cmd)} failed (rc {proc.returncode}): " + "\n".join(out))
    return proc


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path} not readable)"
    # The serial console is full of ANSI colour codes from systemd.
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]|\r", "", text)
    return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """Serialise up/build/down between processes (e.g. pytest-xdist workers)."""
    lab_dir().mkdir(parents=True, exist_ok=True)
    with (lab_dir() / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------
# Debian mirror discovery (never hard-coded)
# --------------------------------------------------------------------------


def _is_debian_archive(suites: Sequence[str], components: Sequence[str], security: bool = False) -> bool:
    """True for a main Debian archive entry (or, with ``security``, a security one).

    Matching on Debian suite names skips Ubuntu archives and third-party
    repositories (docker.com uses Debian codenames but not the ``main`` component).
    """
    if "main" not in components:
        return False
    if security:
        return any(s.endswith("-security") and s.split("-")[0] in _DEBIAN_SUITES for s in suites)
    return any(s in _DEBIAN_SUITES for s in suites)  # "bookworm-security" etc. excluded


def _mirrors_from_deb822(text: str, security: bool = False) -> list[str]:
    uris: list[str] = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if fields.get("enabled", "yes").lower() == "no" or "deb" not in fields.get("types", "").split():
            continue
        if _is_debian_archive(fields.get("suites", "").split(), fields.get("components", "").split(), security):
            uris += fields.get("uris", "").split()
    return uris


def _mirrors_from_list(text: str, security: bool = False) -> list[str]:
    uris: list[str] = []
    for line in text.splitlines():
        line = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()  # drop [options]
        if len(line) >= 4 and line[0] == "deb" and _is_debian_archive([line[2]], line[3:], security):
            uris.append(line[1])
    return uris


def _host_mirrors(security: bool) -> list[str]:
    """http(s) Debian archive URIs configured in this machine's apt sources."""
    candidates: list[str] = []
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        with contextlib.suppress(OSError):
            candidates += _mirrors_from_deb822(Path(path).read_text(errors="replace"), security)
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
        with contextlib.suppress(OSError):
            candidates += _mirrors_from_list(Path(path).read_text(errors="replace"), security)
    return [uri.rstrip("/") for uri in candidates if uri.startswith(("http://", "https://"))]


def debian_security_mirror() -> str | None:
    """Debian security archive URL (``$HARDLINE_DEBIAN_SECURITY_MIRROR`` or apt sources), if any."""
    env = os.environ.get("HARDLINE_DEBIAN_SECURITY_MIRROR")
    if env:
        return env.rstrip("/")
    found = _host_mirrors(security=True)
    return found[0] if found else None


def debian_mirror() -> str:
    """Debian mirror URL: ``$HARDLINE_DEBIAN_MIRROR`` or this machine's apt sources."""
    env = os.environ.get("HARDLINE_DEBIAN_MIRROR")
    if env:
        return env.rstrip("/")
    found = _host_mirrors(security=False)
    if found:
        return found[0]
    raise LabError(
        "no Debian mirror found in /etc/apt/sources.list(.d); set HARDLINE_DEBIAN_MIRROR to a Debian archive URL"
    )


# --------------------------------------------------------------------------
# Image build
# --------------------------------------------------------------------------


def _recipe() -> dict[str, Any]:
    """What the base image is made of; any change forces a rebuild."""
    return {
        "recipe_version": RECIPE_VERSION,
        "suite": SUITE,
        "packages": list(PACKAGES),
        "enabled_units": list(ENABLED_UNITS),
        "masked_units": list(MASKED_UNITS),
        "image_size": IMAGE_SIZE,
    }


_BASE_FILES = ("root.img", "docker.img", "vmlinuz", "initrd.img", "id_ed25519", "ssh_host_ed25519_key.pub")


def base_is_current() -> bool:
    """True if base/ holds a complete image built from the current recipe."""
    stamp = base_dir() / "build.json"
    if not all((base_dir() / f).is_file() for f in _BASE_FILES) or not stamp.is_file():
        return False
    try:
        built = json.loads(stamp.read_text())
    except ValueError:
        return False
    return all(built.get(k) == v for k, v in _recipe().items())


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (deepest first)."""
    prefix = str(path.resolve())
    points = []
    with open("/proc/self/mounts") as fh:
        for line in fh:
            point = line.split()[1].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    return sorted(points, key=len, reverse=True)


def _safe_rmtree(path: Path) -> None:
    """Delete a build tree, never following into mounts a failed debootstrap left.

    rmtree would happily descend into a bind-mounted /dev or /proc and delete
    the host's files, so unmount first and refuse if anything is still mounted.
    """
    if not path.exists():
        return
    for point in _mounts_under(path):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    if left := _mounts_under(path):
        raise LabError(f"refusing to delete {path}: still mounted: {', '.join(left)}")
    shutil.rmtree(path)


def _debootstrap(rootfs: Path, mirror: str, log: Path) -> None:
    cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}"]
    if os.path.exists(DEBIAN_KEYRING):
        # Needed on non-Debian hosts whose debootstrap defaults to another keyring.
        cmd.append(f"--keyring={DEBIAN_KEYRING}")
    _run([*cmd, SUITE, str(rootfs), mirror], log=log)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _configure_rootfs(rootfs: Path, pubkey: str, mirror: str, log: Path) -> None:
    """Turn the debootstrapped tree into a bootable, SSH-reachable lab host."""
    _write(rootfs / "etc/hostname", f"{HOSTNAME}\n")
    hosts = f"127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    _write(rootfs / "etc/hosts", hosts)
    _write(
        rootfs / "etc/fstab",
        "# <device>  <mount point>     <type> <options>          <dump> <pass>\n"
        "/dev/vda    /                 ext4   errors=remount-ro  0      1\n"
        "/dev/vdb    /var/lib/docker   ext4   defaults           0      2\n",
    )
    # systemd-networkd: DHCP on whatever name udev gives the virtio NIC.
    _write(rootfs / "etc/systemd/network/10-lab.network", "[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n")
    # No systemd-resolved in the image; slirp's DNS address never changes.
    resolv = rootfs / "etc/resolv.conf"
    if resolv.is_symlink() or resolv.exists():
        resolv.unlink()
    _write(resolv, f"nameserver {SLIRP_DNS}\n")
    # The VM's apt uses the same mirrors as this machine (hardening installs packages).
    sources = f"deb {mirror} {SUITE} main\ndeb {mirror} {SUITE}-updates main\n"
    if security := debian_security_mirror():
        sources += f"deb {security} {SUITE}-security main\n"
    _write(rootfs / "etc/apt/sources.list", sources)
    # A fixed machine-id: an empty one would make systemd treat every boot as
    # "first boot" (and possibly run interactive systemd-firstboot on ttyS0).
    _write(rootfs / "etc/machine-id", secrets.token_hex(16) + "\n", 0o444)
    # Root: key-only SSH, no password at all.
    _write(rootfs / "root/.ssh/authorized_keys", pubkey, 0o600)
    (rootfs / "root/.ssh").chmod(0o700)
    _write(
        rootfs / "etc/ssh/sshd_config.d/00-hardline-lab.conf",
        "# hardline lab: root logs in with the lab key only\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n",
    )
    _run(["chroot", str(rootfs), "passwd", "--lock", "root"], log=log)
    # Host keys normally come from the openssh-server postinst; make sure.
    if not (rootfs / "etc/ssh/ssh_host_ed25519_key").exists():
        _run(["chroot", str(rootfs), "ssh-keygen", "-A"], log=log)
    # `systemctl` in a chroot works offline on the unit symlinks.
    _run(["chroot", str(rootfs), "systemctl", "enable", *ENABLED_UNITS], log=log)
    _run(["chroot", str(rootfs), "systemctl", "mask", *MASKED_UNITS], log=log)
    # Drop the downloaded .debs: they would only bloat root.img.
    for deb in (rootfs / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()


def _newest(boot: Path, pattern: str) -> Path:
    found = sorted(boot.glob(pattern))
    if not found:
        raise LabError(f"no {pattern} in {boot}: the kernel package did not install")
    return found[-1]


def _make_images(rootfs: Path, out: Path, log: Path) -> None:
    """root.img and docker.img straight from directories (mkfs.ext4 -d, no loop mounts)."""
    docker_src = out / "docker-src"
    docker_lib = rootfs / "var/lib/docker"
    if docker_lib.exists():
        shutil.move(str(docker_lib), docker_src)
    else:
        docker_src.mkdir()
    docker_lib.mkdir(mode=0o710)  # mount point; docker creates it 0710
    for label, src, image in (("lab-root", rootfs, "root.img"), ("lab-docker", docker_src, "docker.img")):
        _run(["mkfs.ext4", "-q", "-F", "-L", label, "-d", str(src), str(out / image), IMAGE_SIZE], log=log)


def build(force: bool = False) -> float | None:
    """Build the base image unless it is current; return seconds spent or None."""
    _require_root("building the lab image")
    _require_tools("debootstrap", "mkfs.ext4", "chroot", "ssh-keygen")
    if not force and base_is_current():
        return None
    mirror = debian_mirror()
    base = base_dir()
    base.mkdir(parents=True, exist_ok=True)
    log = base / "build.log"
    log.write_text("")
    # Build next to base/ (same file system, so the final renames are cheap)
    # and only replace base/ files once everything succeeded.
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=lab_dir()))
    rootfs = work / "rootfs"
    started = time.monotonic()
    try:
        _log(f"lab: debootstrap {SUITE} from {mirror} (log: {log}) ...")
        _debootstrap(rootfs, mirror, log)
        t_debootstrap = time.monotonic() - started
        _log(f"lab: debootstrap done in {t_debootstrap:.0f} s; configuring image")
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hardline-lab"]
        _run([*keygen, "-f", str(work / "id_ed25519")], log=log)
        pubkey = (work / "id_ed25519.pub").read_text()
        _configure_rootfs(rootfs, pubkey, mirror, log)
        shutil.copy(rootfs / "etc/ssh/ssh_host_ed25519_key.pub", work / "ssh_host_ed25519_key.pub")
        shutil.copy(_newest(rootfs / "boot", "vmlinuz-*"), work / "vmlinuz")
        shutil.copy(_newest(rootfs / "boot", "initrd.img-*"), work / "initrd.img")
        kernel = _newest(rootfs / "boot", "vmlinuz-*").name.removeprefix("vmlinuz-")
        _make_images(rootfs, work, log)
        _safe_rmtree(rootfs)  # the tree now lives in root.img; don't keep a second copy
        # No stamp while base/ is half replaced: an interrupted swap must rebuild.
        (base / "build.json").unlink(missing_ok=True)
        for name in _BASE_FILES + ("id_ed25519.pub",):
            os.replace(work / name, base / name)
        stamp = {**_recipe(), "mirror": mirror, "kernel": kernel, "built_at": time.time()}
        stamp["build_seconds"] = round(time.monotonic() - started, 1)
        stamp["debootstrap_seconds"] = round(t_debootstrap, 1)
        (base / "build.json").write_text(json.dumps(stamp, indent=2) + "\n")
    finally:
        _safe_rmtree(work)
    elapsed = time.monotonic() - started
    _log(f"lab: image built in {elapsed:.0f} s (kernel {kernel})")
    return elapsed


# --------------------------------------------------------------------------
# VM lifecycle
# --------------------------------------------------------------------------


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
        _run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(backing), "-F", "raw", str(overlay)])


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
    _write(known_hosts_path(), f"{host} {keytype} {key}\n", 0o600)


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
        "-serial", f"file:{_console_log()}",
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
    _require_tools("qemu-system-x86_64")
    if not _port_free(port):
        raise LabError(f"port {SSH_HOST}:{port} is in use; set HARDLINE_LAB_SSH_PORT to a free port")
    _console_log().unlink(missing_ok=True)
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


def _console_tail() -> str:
    return f"last 30 lines of {_console_log()}:\n{_tail(_console_log(), 30)}"


def _wait_for(what: str, check: Any, pid: int, timeout: float) -> float:
    """Poll ``check()`` until true; print progress; fail fast if QEMU dies."""
    started = time.monotonic()
    _log(f"lab: waiting for {what} ", end="")
    next_mark = 15.0
    while True:
        if check():
            elapsed = time.monotonic() - started
            _log(f" {elapsed:.0f} s")
            return elapsed
        elapsed = time.monotonic() - started
        if _read_pid() != pid:
            _log()
            raise LabError(f"qemu exited while waiting for {what}; {_console_tail()}")
        if elapsed > timeout:
            _log()
            raise LabError(f"timed out after {timeout:.0f} s waiting for {what}; {_console_tail()}")
        if elapsed >= next_mark:
            _log(f" {elapsed:.0f}s ", end="")
            next_mark += 15
        else:
            _log(".", end="")
        time.sleep(2)


def _docker_active() -> bool:
    proc = run_ssh("systemctl is-active docker", timeout=30)
    state = proc.stdout.strip()
    if state == "failed":
        detail = run_ssh("systemctl status --no-pager -n 20 docker", timeout=30).stdout
        raise LabError(f"docker.service failed in the VM:\n{detail}")
    return state == "active"


def _qmp(command: str, timeout: float = 5) -> bool:
    """Send one QMP command to the VM's QEMU; True if it was accepted."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(_qmp_socket()))
            reader = sock.makefile("r")
            reader.readline()  # greeting
            for execute in ("qmp_capabilities", command):
                sock.sendall(json.dumps({"execute": execute}).encode() + b"\n")
                while True:  # skip asynchronous events until the reply
                    reply = json.loads(reader.readline() or "{}")
                    if "return" in reply or "error" in reply or not reply:
                        break
                if "return" not in reply:
                    return False
            return True
    except (OSError, ValueError):
        return False


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
        _log(f"lab: shutting down the VM (pid {pid}) ", end="")
        done = _wait_exit(pid, timeout)
        _log("done" if done else f"no power-off after {timeout:.0f} s; killing it")
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
    _require_tools("qemu-system-x86_64", "qemu-img", "ssh")
    port = ssh_port()
    timings: dict[str, float] = {}
    with _locked():
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
                _log("lab: stopping the running VM to rebuild its image")
                _down_unlocked(graceful=False)  # its disks are thrown away
                running = None
            built = build(force=rebuild)
            if built is not None:
                timings["build"] = round(built, 1)
                fresh = True  # old overlays sit on the old base image
        if fresh and running is not None:
            _log(f"lab: --fresh: stopping VM (pid {running})")
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
            _log(f"lab: qemu started (pid {pid}, ssh {SSH_HOST}:{port}, console {_console_log()})")
        else:
            pid = running
            _log(f"lab: reusing running VM (pid {pid})")
        # Timings count from QEMU's start; for a reused VM that is meaningless.
        boot_start = _read_state().get("started_at", time.time())
        _wait_for("ssh", lambda: run_ssh("true", timeout=10).returncode == 0, pid, SSH_TIMEOUT_S)
        if running is None:
            timings["boot_to_ssh"] = round(time.time() - boot_start, 1)
        _wait_for("docker", _docker_active, pid, DOCKER_TIMEOUT_S)
        if running is None:
            timings["boot_to_docker"] = round(time.time() - boot_start, 1)
    _log("lab: up; " + (", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) or "reused"))
    return {**inventory_data(), "pid": pid, "timings": timings}


def down(graceful: bool = True) -> bool:
    """Stop the VM (ACPI power-off first if ``graceful``); True if one was running."""
    with _locked():
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


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    env_help = (
        "environment: HARDLINE_LAB_DIR (cache, default ~/.cache/hardline/lab), "
        f"HARDLINE_LAB_SSH_PORT (default {DEFAULT_SSH_PORT}), HARDLINE_DEBIAN_MIRROR and "
        "HARDLINE_DEBIAN_SECURITY_MIRROR (default: the Debian mirrors in this machine's apt "
        "sources), HARDLINE_LAB_ACCEL "
        "(default tcg,thread=multi), HARDLINE_LAB_CPUS, HARDLINE_LAB_MEMORY (MiB)"
    )
    parser = argparse.ArgumentParser(
        prog="hardline lab",
        description="Throwaway Debian 12 VM (QEMU, SSH on 127.0.0.1) for end-to-end hardening tests.",
        epilog=env_help,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p_up = sub.add_parser("up", help="build the image if needed, boot the VM, wait for SSH and docker")
    p_up.add_argument("--fresh", action="store_true", help="discard the VM's disks and boot from the pristine image")
    p_up.add_argument("--rebuild", action="store_true", help="rebuild the base image first (implies --fresh)")
    p_down = sub.add_parser("down", help="shut the VM down (its disks are kept for the next `up`)")
    p_down.add_argument("--force", action="store_true", help="kill QEMU at once instead of an ACPI power-off")
    sub.add_parser("status", help="show whether the VM runs, its port and uptime")
    p_ssh = sub.add_parser("ssh", help="ssh into the VM as root (optionally running CMD)")
    p_ssh.add_argument("cmd", nargs=argparse.REMAINDER, metavar="CMD", help="command to run in the VM")
    p_build = sub.add_parser("build", help="debootstrap the base image (only if missing or outdated)")
    p_build.add_argument("--force", action="store_true", help="rebuild even if the image is current")
    return parser


def _print_status(info: dict[str, Any]) -> None:
    if info["running"]:
        print(f"running: pid {info['pid']}, ssh {SSH_HOST}:{info['ssh_port']}, up {info['uptime_s']:.0f} s")
    else:
        print("not running")
    print(f"base image: {info['base_image']} ({info['lab_dir']})")


def cli(argv: Sequence[str]) -> int:
    """Entry point for ``hardline lab ...``; returns the exit code."""
    args = _parser().parse_args(list(argv))
    try:
        if args.command == "up":
            up(fresh=args.fresh, rebuild=args.rebuild)
        elif args.command == "down":
            print("stopped" if down(graceful=not args.force) else "not running")
        elif args.command == "status":
            _print_status(status())
        elif args.command == "build":
            with _locked():
                # Replacing root.img under a running VM would corrupt its overlay.
                if _read_pid() is not None and (args.force or not base_is_current()):
                    raise LabError("the lab VM is running on the current image; run `hardline lab down` first")
                elapsed = build(force=args.force)
            if elapsed is None:
                print(f"base image is current ({base_dir()}); use --force to rebuild")
        elif args.command == "ssh":
            if _read_pid() is None:
                raise LabError("the lab VM is not running; run `hardline lab up` first")
            cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
            return subprocess.call(ssh_command(cmd, tty=not cmd and sys.stdin.isatty()))
    except LabError as exc:
        print(f"hardline lab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hardline lab: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
