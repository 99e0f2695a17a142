"""Disk-level steps of a box build; runs as ``unshare -m --propagation private python3 -m lab.boxdisk
STEP SPEC.json`` so that its mounts live in a mount namespace of their own (other processes' mount
namespaces, e.g. dockerd's, would otherwise pin the loop device) and vanish with it.

Steps (lab/boxes.py drives them):

- ``base``: a sparse raw disk with one bootable MBR partition, attached with ``losetup`` and
  ``partx -a`` (the kernel does not scan loop partitions by itself here; nbd is not available),
  ext4, debootstrap, configuration for Vagrant (user ``vagrant`` with its insecure key and
  passwordless sudo, DHCP on eth0 by systemd-networkd), ``grub-install --target=i386-pc`` and
  update-grub in a chroot, then ``root=UUID=`` in grub.cfg (no udev here, so update-grub writes
  the loop device).
- ``variant``: on a copy of the base disk, the variant's packages from Debian's archive, SELinux
  policy modules compiled from the reference policy's sources, the kernel command line and the
  SELinux mode, update-grub again, and with SELinux every file labelled by ``setfiles`` (the
  relabel the first boot would otherwise do: ~10 min under TCG).

The loop device is always detached (``finally``); a build killed outright leaves it attached and
the next build detaches every loop device backed by a file under its work directory.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Iterator

from lab.common import LabError, log, run, write

VAGRANT_PUBKEY_GLOB = "/usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub"
POLICY_SRC = "/usr/src/selinux-policy-src.tar.zst"
POLICY_MODULE_DIR = "selinux-policy-src/policy/modules/services"


def sh(argv: list[str], build_log: Path, **kw: Any) -> subprocess.CompletedProcess[str]:
    return run(argv, log_file=build_log, **kw)


def chroot(mnt: Path, script: str, build_log: Path) -> None:
    """A shell script in the image (no services start: policy-rc.d says no)."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8",
           "HOME": "/root"}
    sh(["chroot", str(mnt), "/bin/sh", "-euc", script], build_log, env=env)


def detach_stale_loops(directory: Path) -> None:
    """Loop devices still attached to files under ``directory`` (a killed build)."""
    out = subprocess.run(["losetup", "-J", "-l"], capture_output=True, text=True).stdout or '{"loopdevices": []}'
    for dev in json.loads(out).get("loopdevices", []):
        backing = (dev.get("back-file") or "").replace(" (deleted)", "")
        if backing.startswith(str(directory) + "/"):
            subprocess.run(["partx", "-d", dev["name"]], capture_output=True)
            subprocess.run(["losetup", "-d", dev["name"]], capture_output=True)


@contextmanager
def attached(disk: Path, build_log: Path) -> Iterator[str]:
    """The disk on a loop device with its partition scanned; yields the partition device."""
    loop = run(["losetup", "-f", "--show", str(disk)]).stdout.strip()
    try:
        sh(["partx", "-a", loop], build_log)
        part = f"{loop}p1"
        for _ in range(50):  # devtmpfs creates the node when the kernel registers the partition
            if os.path.exists(part):
                break
            time.sleep(0.1)
        else:
            raise LabError(f"{part} did not appear after partx -a {loop}")
        yield part
    finally:
        subprocess.run(["sync"])
        subprocess.run(["partx", "-d", loop], capture_output=True)
        subprocess.run(["losetup", "-d", loop], capture_output=True)


@contextmanager
def mounted(part: str, mnt: Path, build_log: Path, chroot_mounts: bool) -> Iterator[Path]:
    """The partition on ``mnt``; with ``chroot_mounts`` also /dev, /dev/pts, /proc and /sys."""
    mnt.mkdir(parents=True, exist_ok=True)
    sh(["mount", part, str(mnt)], build_log)
    points = [mnt]
    try:
        if chroot_mounts:
            for src, dest, args in (("/dev", "dev", ["--bind"]), ("/dev/pts", "dev/pts", ["--bind"]),
                                    ("proc", "proc", ["-t", "proc"]), ("sysfs", "sys", ["-t", "sysfs"])):
                (mnt / dest).mkdir(parents=True, exist_ok=True)
                sh(["mount", *args, src, str(mnt / dest)], build_log)
                points.append(mnt / dest)
        yield mnt
    finally:
        # blocks of deleted files (debootstrap's downloaded .debs) would otherwise be copied into
        # the box: discard them, which punches holes into the sparse disk file
        subprocess.run(["fstrim", str(mnt)], capture_output=True)
        for point in reversed(points):
            if subprocess.run(["umount", str(point)], capture_output=True).returncode:
                subprocess.run(["umount", "-l", str(point)], capture_output=True)
        with suppress(OSError):
            mnt.rmdir()


def uuid_of(part: str) -> str:
    return subprocess.run(["blkid", "-s", "UUID", "-o", "value", part], capture_output=True, text=True,
                          check=True).stdout.strip()


def grub_config(mnt: Path, loop_part: str, uuid: str, cmdline: str, build_log: Path) -> None:
    """update-grub in the chroot, then the root device by UUID (no udev: it wrote the loop path)."""
    write(mnt / "etc/default/grub.d/10-hardline-box.cfg",
          "# hardline box: serial console, eth0, no menu wait\n"
          "GRUB_TIMEOUT=0\nGRUB_TIMEOUT_STYLE=hidden\nGRUB_TERMINAL=\"console serial\"\n"
          "GRUB_SERIAL_COMMAND=\"serial --unit=0 --speed=115200\"\nGRUB_CMDLINE_LINUX_DEFAULT=\"\"\n"
          f"GRUB_CMDLINE_LINUX=\"console=tty0 console=ttyS0,115200n8 net.ifnames=0 {cmdline}\"\n".replace(" \"", "\""))
    chroot(mnt, "update-grub", build_log)
    cfg = mnt / "boot/grub/grub.cfg"
    text = cfg.read_text()
    text = text.replace(f"root={loop_part} ", f"root=UUID={uuid} ")
    if loop_part in text or f"root=UUID={uuid}" not in text:
        raise LabError(f"grub.cfg still names {loop_part} or lacks root=UUID={uuid}")
    cfg.write_text(text)


def base(spec: dict[str, Any]) -> None:
    disk, build_log, mnt = Path(spec["disk"]), Path(spec["log"]), Path(spec["mnt"])
    detach_stale_loops(disk.parent)
    sh(["truncate", "-s", f"{spec['disk_gb']}G", str(disk)], build_log)
    sh(["sfdisk", "-q", str(disk)], build_log, input="label: dos\nstart=2048, type=83, bootable\n")
    times = {}
    with attached(disk, build_log) as part:
        loop = part[:-2]
        sh(["mkfs.ext4", "-q", "-L", "hardline-root", part], build_log)
        uuid = uuid_of(part)
        with mounted(part, mnt, build_log, chroot_mounts=False):
            started = time.monotonic()
            cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(spec['packages'])}"]
            if os.path.exists(spec["keyring"]):
                cmd.append(f"--keyring={spec['keyring']}")
            sh([*cmd, spec["suite"], str(mnt), spec["mirror"]], build_log)
            times["debootstrap"] = round(time.monotonic() - started, 1)
            configure_base(mnt, spec, uuid, build_log)
        with mounted(part, mnt, build_log, chroot_mounts=True):
            started = time.monotonic()
            chroot(mnt, f"grub-install --target=i386-pc --boot-directory=/boot {shlex.quote(loop)}", build_log)
            grub_config(mnt, part, uuid, spec["cmdline"], build_log)
            times["grub"] = round(time.monotonic() - started, 1)
    Path(spec["times"]).write_text(json.dumps(times))


def configure_base(mnt: Path, spec: dict[str, Any], uuid: str, build_log: Path) -> None:
    """What makes the debootstrapped tree a Vagrant box (files written from the recipe)."""
    for rel, text in spec["files"].items():
        write(mnt / rel, text.replace("@ROOT_UUID@", uuid), 0o440 if rel.startswith("etc/sudoers.d/") else 0o644)
    write(mnt / "etc/machine-id", "")  # each VM gets its own at first boot (DHCP client id, journal)
    keys = sorted(Path("/").glob(VAGRANT_PUBKEY_GLOB.lstrip("/")))
    if not keys:
        raise LabError(f"no Vagrant insecure public key at {VAGRANT_PUBKEY_GLOB} (apt-get install vagrant)")
    user_script = (
        "useradd -m -s /bin/bash -U vagrant && passwd -l root >/dev/null\n"
        "install -d -m 700 -o vagrant -g vagrant /home/vagrant/.ssh\n"
        f"systemctl enable {' '.join(spec['enabled_units'])}\n"
        f"systemctl mask {' '.join(spec['masked_units'])}\n"
        "[ -f /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -A\n"
        "apt-get clean\n"
    )
    chroot(mnt, user_script, build_log)
    write(mnt / "home/vagrant/.ssh/authorized_keys", keys[-1].read_text(), 0o600)
    os.chown(mnt / "home/vagrant/.ssh/authorized_keys", *_ids(mnt, "vagrant"))
    resolv = mnt / "etc/resolv.conf"
    if resolv.is_symlink() or resolv.exists():
        resolv.unlink()
    write(resolv, spec["resolv_conf"])


def _ids(mnt: Path, user: str) -> tuple[int, int]:
    for line in (mnt / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise LabError(f"user {user} missing in the image")


def variant(spec: dict[str, Any]) -> None:
    disk, build_log, mnt = Path(spec["disk"]), Path(spec["log"]), Path(spec["mnt"])
    detach_stale_loops(disk.parent)
    times = {}
    with attached(disk, build_log) as part:
        uuid = uuid_of(part)
        with mounted(part, mnt, build_log, chroot_mounts=True):
            resolv = (mnt / "etc/resolv.conf").read_text()
            write(mnt / "etc/resolv.conf", Path("/etc/resolv.conf").read_text())  # apt needs DNS meanwhile
            write(mnt / "usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n", 0o755)
            try:
                started = time.monotonic()
                if spec["packages"]:
                    chroot(mnt, "apt-get update -qq && apt-get install -y -qq --no-install-recommends "
                           + " ".join(spec["packages"] + spec["build_packages"]), build_log)
                times["packages"] = round(time.monotonic() - started, 1)
                if spec["policy_modules"] or spec["local_modules"]:
                    started = time.monotonic()
                    policy_modules(mnt, spec["policy_modules"], spec["local_modules"], build_log)
                    times["policy_modules"] = round(time.monotonic() - started, 1)
                if spec["build_packages"]:
                    chroot(mnt, "apt-get purge -y -qq " + " ".join(spec["build_packages"])
                           + " && apt-get autoremove --purge -y -qq", build_log)
                for rel, text in spec["files"].items():
                    write(mnt / rel, text)
                chroot(mnt, "apt-get clean && rm -rf /var/lib/apt/lists/* /.autorelabel", build_log)
            finally:
                (mnt / "usr/sbin/policy-rc.d").unlink(missing_ok=True)
                write(mnt / "etc/resolv.conf", resolv)
            started = time.monotonic()
            grub_config(mnt, part, uuid, spec["cmdline"], build_log)
            times["grub"] = round(time.monotonic() - started, 1)
            if spec["selinux"]:
                started = time.monotonic()
                relabel(mnt, build_log)
                times["setfiles"] = round(time.monotonic() - started, 1)
    Path(spec["times"]).write_text(json.dumps(times))


def policy_modules(mnt: Path, modules: list[str], local: dict[str, str], build_log: Path) -> None:
    """Debian's selinux-policy-default lacks the reference policy's container and docker modules
    (lxc_contexts names container_t all the same): compile them from selinux-policy-src, and the
    recipe's own modules from their source, with the policy headers of selinux-policy-dev; install
    them into the policy store (semodule -n: no reload, nothing is loaded while building)."""
    work = mnt / "tmp/hlv-policy"
    work.mkdir(parents=True, exist_ok=True)
    for name, source in local.items():
        write(work / f"{name}.te", source)
    # the interfaces (.if) are in selinux-policy-dev's headers already: only .te and .fc are needed
    files = " ".join(f"{POLICY_MODULE_DIR}/{m}.{ext}" for m in modules for ext in ("te", "fc"))
    pps = " ".join(f"{m}.pp" for m in [*modules, *local])
    extract = f"tar --zstd -xf {POLICY_SRC} {files} && cp {POLICY_MODULE_DIR}/* . && " if modules else ""
    chroot(mnt, f"cd /tmp/hlv-policy && {extract}make -s -f /usr/share/selinux/devel/Makefile {pps} && "
                f"semodule -n -i {pps} && cd / && rm -rf /tmp/hlv-policy", build_log)


def relabel(mnt: Path, build_log: Path) -> None:
    """Every file gets its SELinux label from the policy's file_contexts (what the first boot
    with /.autorelabel would do); the kernel file systems mounted for the chroot are left out."""
    contexts = "/etc/selinux/default/contexts/files/file_contexts"
    chroot(mnt, f"setfiles -F -e /proc -e /sys -e /dev {contexts} /", build_log)
    label = os.getxattr(mnt / "etc/shadow", "security.selinux").rstrip(b"\0").decode()
    if not re.fullmatch(r"system_u:object_r:shadow_t:s0", label):
        raise LabError(f"setfiles did not label /etc/shadow as shadow_t (has {label!r})")


def main(argv: list[str]) -> int:
    step, spec_file = argv
    spec = json.loads(Path(spec_file).read_text())
    try:
        {"base": base, "variant": variant}[step](spec)
    except (LabError, subprocess.CalledProcessError, OSError) as exc:
        log(f"box build ({step}) failed: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    with suppress(KeyboardInterrupt):
        sys.exit(main(sys.argv[1:]))
    sys.exit(130)
