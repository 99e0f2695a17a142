"""The QEMU lab's Debian 12 image: debootstrap into a directory, then ext4 images straight from
directories (mkfs.ext4 -d), booted by QEMU with -kernel (lab/qemu.py). Rebuilt only when the
recipe changes (base/build.json holds the recipe it was built from).

Layout of ``base/`` (under ``$HARDLINE_LAB_DIR``, default ``~/.cache/hardline/lab``)::

    root.img       raw ext4 root file system (/dev/vda)
    docker.img     raw ext4 for /var/lib/docker (/dev/vdb)
    vmlinuz, initrd.img
    id_ed25519(.pub)   root's SSH key
    ssh_host_ed25519_key.pub   the image's host key (for known_hosts)
    build.json     recipe stamp; a different recipe triggers a rebuild
    build.log      debootstrap/mkfs output of the last build
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from lab.common import LabError, cache_root, log, require_root, require_tools, run, safe_rmtree, write
from lab.mirrors import DEBIAN_KEYRING, debian_mirror, debian_security_mirror

# Bump whenever the image recipe below changes in a way that needs a rebuild;
# it is stored in base/build.json and compared on every `up`.
RECIPE_VERSION = 2
SUITE = "bookworm"
HOSTNAME = "hardline-lab"
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

# QEMU user networking always serves DNS on this address.
SLIRP_DNS = "10.0.2.3"


def lab_dir() -> Path:
    """The lab cache directory: ``$HARDLINE_LAB_DIR`` or ``~/.cache/hardline/lab``."""
    env = os.environ.get("HARDLINE_LAB_DIR")
    return Path(env).expanduser().resolve() if env else cache_root() / "lab"


def base_dir() -> Path:
    """Directory of the pristine image (root.img, kernel, keys)."""
    return lab_dir() / "base"


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


def _debootstrap(rootfs: Path, mirror: str, build_log: Path) -> None:
    cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}"]
    if os.path.exists(DEBIAN_KEYRING):
        # Needed on non-Debian hosts whose debootstrap defaults to another keyring.
        cmd.append(f"--keyring={DEBIAN_KEYRING}")
    run([*cmd, SUITE, str(rootfs), mirror], log_file=build_log)


def _configure_rootfs(rootfs: Path, pubkey: str, mirror: str, build_log: Path) -> None:
    """Turn the debootstrapped tree into a bootable, SSH-reachable lab host."""
    write(rootfs / "etc/hostname", f"{HOSTNAME}\n")
    hosts = f"127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    write(rootfs / "etc/hosts", hosts)
    write(
        rootfs / "etc/fstab",
        "# <device>  <mount point>     <type> <options>          <dump> <pass>\n"
        "/dev/vda    /                 ext4   errors=remount-ro  0      1\n"
        "/dev/vdb    /var/lib/docker   ext4   defaults           0      2\n",
    )
    # systemd-networkd: DHCP on whatever name udev gives the virtio NIC.
    write(rootfs / "etc/systemd/network/10-lab.network", "[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n")
    # No systemd-resolved in the image; slirp's DNS address never changes.
    resolv = rootfs / "etc/resolv.conf"
    if resolv.is_symlink() or resolv.exists():
        resolv.unlink()
    write(resolv, f"nameserver {SLIRP_DNS}\n")
    # The VM's apt uses the same mirrors as this machine (hardening installs packages).
    sources = f"deb {mirror} {SUITE} main\ndeb {mirror} {SUITE}-updates main\n"
    if security := debian_security_mirror():
        sources += f"deb {security} {SUITE}-security main\n"
    write(rootfs / "etc/apt/sources.list", sources)
    # A fixed machine-id: an empty one would make systemd treat every boot as
    # "first boot" (and possibly run interactive systemd-firstboot on ttyS0).
    write(rootfs / "etc/machine-id", secrets.token_hex(16) + "\n", 0o444)
    # Root: key-only SSH, no password at all.
    write(rootfs / "root/.ssh/authorized_keys", pubkey, 0o600)
    (rootfs / "root/.ssh").chmod(0o700)
    write(
        rootfs / "etc/ssh/sshd_config.d/00-hardline-lab.conf",
        "# hardline lab: root logs in with the lab key only\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n",
    )
    run(["chroot", str(rootfs), "passwd", "--lock", "root"], log_file=build_log)
    # Host keys normally come from the openssh-server postinst; make sure.
    if not (rootfs / "etc/ssh/ssh_host_ed25519_key").exists():
        run(["chroot", str(rootfs), "ssh-keygen", "-A"], log_file=build_log)
    # `systemctl` in a chroot works offline on the unit symlinks.
    run(["chroot", str(rootfs), "systemctl", "enable", *ENABLED_UNITS], log_file=build_log)
    run(["chroot", str(rootfs), "systemctl", "mask", *MASKED_UNITS], log_file=build_log)
    # Drop the downloaded .debs: they would only bloat root.img.
    for deb in (rootfs / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()


def _newest(boot: Path, pattern: str) -> Path:
    found = sorted(boot.glob(pattern))
    if not found:
        raise LabError(f"no {pattern} in {boot}: the kernel package did not install")
    return found[-1]


def _make_images(rootfs: Path, out: Path, build_log: Path) -> None:
    """root.img and docker.img straight from directories (mkfs.ext4 -d, no loop mounts)."""
    docker_src = out / "docker-src"
    docker_lib = rootfs / "var/lib/docker"
    if docker_lib.exists():
        shutil.move(str(docker_lib), docker_src)
    else:
        docker_src.mkdir()
    docker_lib.mkdir(mode=0o710)  # mount point; docker creates it 0710
    for label, src, image in (("lab-root", rootfs, "root.img"), ("lab-docker", docker_src, "docker.img")):
        run(["mkfs.ext4", "-q", "-F", "-L", label, "-d", str(src), str(out / image), IMAGE_SIZE], log_file=build_log)


def build(force: bool = False) -> float | None:
    """Build the base image unless it is current; return seconds spent or None."""
    require_root("building the lab image")
    require_tools("debootstrap", "mkfs.ext4", "chroot", "ssh-keygen")
    if not force and base_is_current():
        return None
    mirror = debian_mirror()
    base = base_dir()
    base.mkdir(parents=True, exist_ok=True)
    build_log = base / "build.log"
    build_log.write_text("")
    # Build next to base/ (same file system, so the final renames are cheap)
    # and only replace base/ files once everything succeeded.
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=lab_dir()))
    rootfs = work / "rootfs"
    started = time.monotonic()
    try:
        log(f"lab: debootstrap {SUITE} from {mirror} (log: {build_log}) ...")
        _debootstrap(rootfs, mirror, build_log)
        t_debootstrap = time.monotonic() - started
        log(f"lab: debootstrap done in {t_debootstrap:.0f} s; configuring image")
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hardline-lab"]
        run([*keygen, "-f", str(work / "id_ed25519")], log_file=build_log)
        pubkey = (work / "id_ed25519.pub").read_text()
        _configure_rootfs(rootfs, pubkey, mirror, build_log)
        shutil.copy(rootfs / "etc/ssh/ssh_host_ed25519_key.pub", work / "ssh_host_ed25519_key.pub")
        shutil.copy(_newest(rootfs / "boot", "vmlinuz-*"), work / "vmlinuz")
        shutil.copy(_newest(rootfs / "boot", "initrd.img-*"), work / "initrd.img")
        kernel = _newest(rootfs / "boot", "vmlinuz-*").name.removeprefix("vmlinuz-")
        _make_images(rootfs, work, build_log)
        safe_rmtree(rootfs)  # the tree now lives in root.img; don't keep a second copy
        # No stamp while base/ is half replaced: an interrupted swap must rebuild.
        (base / "build.json").unlink(missing_ok=True)
        for name in _BASE_FILES + ("id_ed25519.pub",):
            os.replace(work / name, base / name)
        stamp = {**_recipe(), "mirror": mirror, "kernel": kernel, "built_at": time.time()}
        stamp["build_seconds"] = round(time.monotonic() - started, 1)
        stamp["debootstrap_seconds"] = round(t_debootstrap, 1)
        (base / "build.json").write_text(json.dumps(stamp, indent=2) + "\n")
    finally:
        safe_rmtree(work)
    elapsed = time.monotonic() - started
    log(f"lab: image built in {elapsed:.0f} s (kernel {kernel})")
    return elapsed
