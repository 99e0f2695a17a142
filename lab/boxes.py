"""Local Vagrant boxes for the lab: Debian 12 booted by GRUB, with everything the tests need
baked in (docker.io, auditd, python3, AppArmor or SELinux), because the guests inside the lab's
network namespace reach no package mirror.

    python3 -m lab box build [apparmor] [selinux] [--force]   # build (cached) and `vagrant box add`
    python3 -m lab box list

Cache (``$HARDLINE_CACHE_DIR``, default ``~/.cache/hardline``)::

    boxes/base-KEY/disk.raw         debootstrap + Vagrant user + GRUB (shared by the variants)
    boxes/VARIANT-KEY/box.tar       the libvirt box (box.img qcow2, metadata.json, Vagrantfile)
    boxes/VARIANT-KEY/build.json    recipe, box version, timings; build.log beside it

KEY hashes the recipe (packages, units, files written, kernel command line, policy modules), so
a changed recipe builds a new box and an unchanged one is never rebuilt. The box is added to
Vagrant as ``hardline/debian12-VARIANT`` with a version of its own (vagrant-libvirt names the
volume it uploads after name and version, so a new build never boots an old volume).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lab.common import ROOT, LabError, cache_root, locked, log, recipe_key, require_root, require_tools, run
from lab.mirrors import DEBIAN_KEYRING, debian_mirror, debian_security_mirror

RECIPE_VERSION = 1
SUITE = "bookworm"
DISK_GB = 8
BASE_PACKAGES = [
    "linux-image-amd64", "grub-pc", "systemd-sysv", "udev", "dbus", "openssh-server", "sudo", "python3",
    "docker.io", "auditd", "apparmor", "apparmor-utils", "iproute2", "iputils-ping", "procps", "kmod",
    "ca-certificates",
]
ENABLED_UNITS = ["systemd-networkd.service", "ssh.service", "auditd.service", "docker.service", "apparmor.service"]
# apt timers would grab the dpkg lock under the tests; e2scrub_reap costs ~35 s of every boot under
# TCG; systemd-firstboot would wait for console input on the first boot (machine-id is empty)
MASKED_UNITS = ["apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_reap.service", "e2scrub_all.timer",
                "systemd-firstboot.service"]
# refpolicy's docker module confines the engine itself (dockerd, containerd and runc all run in
# dockerd_t) so tightly that enforcing mode stops every container start on Debian 12 (runc is
# denied mounton on /proc/kcore and on bind-mount sources); the RHEL family's container-selinux
# runs the engine unconfined (container_runtime_t). The lab box does the same; containers stay
# confined in container_t.
ENGINE_MODULE = """policy_module(hardline_lab_engine, 1.0)
gen_require(`
\ttype dockerd_t;
')
unconfined_domain(dockerd_t)
"""
VARIANTS: dict[str, dict[str, Any]] = {
    "apparmor": {"packages": [], "build_packages": [], "policy_modules": [], "local_modules": {}, "cmdline": "",
                 "selinux": False, "files": {}},
    # what Debian's selinux-activate does (security=selinux, SELINUX=permissive), with the relabel
    # done at build time; enforcing is the deploy's job (HL-3.1)
    "selinux": {"packages": ["selinux-basics", "selinux-policy-default", "policycoreutils", "selinux-utils"],
                "build_packages": ["selinux-policy-dev", "selinux-policy-src", "zstd", "make"],
                "policy_modules": ["container", "docker"], "local_modules": {"hardline_lab_engine": ENGINE_MODULE},
                "cmdline": "security=selinux", "selinux": True,
                "files": {"etc/selinux/config": "SELINUX=permissive\nSELINUXTYPE=default\n"}},
}
# Kubernetes nodes: add a variant here (packages, files) and a machine in vagrant/machines.yml.


def box_name(variant: str) -> str:
    return f"hardline/debian12-{variant}"


def boxes_dir() -> Path:
    return cache_root() / "boxes"


def vagrant_home() -> Path:
    return Path(os.environ.get("VAGRANT_HOME") or Path.home() / ".vagrant.d")


def _files(mirror: str) -> dict[str, str]:
    sources = f"deb {mirror} {SUITE} main\ndeb {mirror} {SUITE}-updates main\n"
    if security := debian_security_mirror():
        sources += f"deb {security} {SUITE}-security main\n"
    return {
        "etc/hostname": "hardline-box\n",
        "etc/hosts": "127.0.0.1\tlocalhost\n127.0.1.1\thardline-box\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        "etc/fstab": "UUID=@ROOT_UUID@  /  ext4  errors=remount-ro  0  1\n",
        "etc/systemd/network/10-dhcp.network": "[Match]\nName=eth* en*\n\n[Network]\nDHCP=yes\n",
        "etc/sudoers.d/vagrant": "vagrant ALL=(ALL) NOPASSWD: ALL\n",
        "etc/ssh/sshd_config.d/10-vagrant.conf": "UseDNS no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n",
        "etc/apt/sources.list": sources,
    }


def base_recipe() -> dict[str, Any]:
    mirror = debian_mirror()
    return {"recipe_version": RECIPE_VERSION, "suite": SUITE, "disk_gb": DISK_GB, "mirror": mirror,
            "packages": BASE_PACKAGES, "enabled_units": ENABLED_UNITS, "masked_units": MASKED_UNITS,
            "cmdline": "", "files": _files(mirror),
            "resolv_conf": "# hardline box: no resolver (the lab network has no route out)\n"}


def recipe(variant: str) -> dict[str, Any]:
    if variant not in VARIANTS:
        raise LabError(f"unknown box variant {variant!r} (known: {', '.join(VARIANTS)})")
    return {"base": base_recipe(), "variant": variant, **VARIANTS[variant]}


def _disk_step(step: str, spec: dict[str, Any], work: Path) -> dict[str, float]:
    """Run a lab/boxdisk.py step in a private mount namespace (niced: the machine is shared)."""
    spec = {**spec, "log": str(work / "build.log"), "mnt": str(work / "mnt"), "times": str(work / f"{step}.times")}
    (work / f"{step}.json").write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run(["nice", "-n", "10", "unshare", "-m", "--propagation", "private", sys.executable, "-m",
                           "lab.boxdisk", step, str(work / f"{step}.json")], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise LabError(f"box {step} step failed: {proc.stderr.strip()[-3000:]}\n(log: {work / 'build.log'})")
    return json.loads((work / f"{step}.times").read_text())


def _current(prefix: str, key: str, artefact: str) -> Path | None:
    folder = boxes_dir() / f"{prefix}-{key}"
    stamp = folder / "build.json"
    return folder if (folder / artefact).is_file() and stamp.is_file() else None


def _prune(prefix: str, keep: Path) -> None:
    for old in boxes_dir().glob(f"{prefix}-*"):
        if old != keep and old.is_dir() and len(old.name) == len(prefix) + 13:
            shutil.rmtree(old, ignore_errors=True)


def ensure_base(base: dict[str, Any]) -> tuple[Path, dict[str, float]]:
    key = recipe_key(base)
    if found := _current("base", key, "disk.raw"):
        return found, {}
    work = boxes_dir() / f".build-base-{key}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.monotonic()
    log(f"box: building the base disk (debootstrap {SUITE}, GRUB; log {work / 'build.log'}) ...")
    times = _disk_step("base", {**base, "disk": str(work / "disk.raw"), "keyring": DEBIAN_KEYRING}, work)
    times["base_total"] = round(time.monotonic() - started, 1)
    (work / "build.json").write_text(json.dumps({"recipe": base, "key": key, "times": times}, indent=2))
    final = boxes_dir() / f"base-{key}"
    shutil.rmtree(final, ignore_errors=True)
    work.rename(final)
    _prune("base", final)
    log(f"box: base disk built in {times['base_total']:.0f} s")
    return final, times


VAGRANTFILE = """# hardline local box: libvirt, disks on virtio
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.disk_bus = "virtio"
  end
end
"""


def build(variant: str, force: bool = False) -> dict[str, Any]:
    """Build the variant's box unless a current one is cached; returns its build.json."""
    require_root("building a box (loop devices, mounts, chroot)")
    require_tools("debootstrap", "sfdisk", "losetup", "partx", "mkfs.ext4", "unshare", "qemu-img", "chroot")
    wanted = recipe(variant)
    key = recipe_key(wanted)
    with locked(boxes_dir()):
        if not force and (found := _current(variant, key, "box.tar")):
            return json.loads((found / "build.json").read_text())
        started = time.monotonic()
        base_folder, base_times = ensure_base(wanted["base"])
        work = boxes_dir() / f".build-{variant}-{key}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        t = time.monotonic()
        run(["cp", "--sparse=always", str(base_folder / "disk.raw"), str(work / "disk.raw")])
        times = {**base_times, "copy_base": round(time.monotonic() - t, 1)}
        log(f"box: {variant}: packages and settings (log {work / 'build.log'}) ...")
        spec = {k: v for k, v in wanted.items() if k != "base"}
        times.update(_disk_step("variant", {**spec, "disk": str(work / "disk.raw")}, work))
        t = time.monotonic()
        run(["qemu-img", "convert", "-O", "qcow2", str(work / "disk.raw"), str(work / "box.img")])
        (work / "disk.raw").unlink()
        (work / "metadata.json").write_text(json.dumps({"provider": "libvirt", "format": "qcow2",
                                                         "virtual_size": DISK_GB}))
        (work / "Vagrantfile").write_text(VAGRANTFILE)
        run(["tar", "-cf", str(work / "box.tar"), "-C", str(work), "metadata.json", "Vagrantfile", "box.img"])
        (work / "box.img").unlink()
        times["package"] = round(time.monotonic() - t, 1)
        times["total"] = round(time.monotonic() - started, 1)
        stamp = {"variant": variant, "box": box_name(variant), "key": key, "version": time.strftime("%Y%m%d.%H%M%S"),
                 "recipe": wanted, "times": times, "built_at": time.time(),
                 "size_bytes": (work / "box.tar").stat().st_size}
        (work / "build.json").write_text(json.dumps(stamp, indent=2))
        final = boxes_dir() / f"{variant}-{key}"
        shutil.rmtree(final, ignore_errors=True)
        work.rename(final)
        _prune(variant, final)
        log(f"box: {variant} built in {times['total']:.0f} s ({stamp['size_bytes'] / 2**20:.0f} MiB)")
        return stamp


def _store_dir(stamp: dict[str, Any]) -> Path:
    return vagrant_home() / "boxes" / stamp["box"].replace("/", "-VAGRANTSLASH-")


def ensure_added(stamp: dict[str, Any]) -> float:
    """`vagrant box add` the built box under its version (once); other versions are removed.
    Returns the seconds spent (0 when it was there)."""
    require_tools("vagrant", hint="bash scripts/setup.sh lab")
    folder = boxes_dir() / f"{stamp['variant']}-{stamp['key']}"
    store = _store_dir(stamp)
    started = time.monotonic()
    if not (store / stamp["version"] / "libvirt" / "box.img").is_file():
        catalog = folder / "catalog.json"
        catalog.write_text(json.dumps({"name": stamp["box"], "versions": [{"version": stamp["version"], "providers": [
            {"name": "libvirt", "url": (folder / "box.tar").as_uri()}]}]}))
        run(["vagrant", "box", "add", "--force", str(catalog)])
    for old in store.glob("*") if store.is_dir() else []:
        if old.is_dir() and old.name != stamp["version"]:
            if (old / "libvirt").is_dir():
                run(["vagrant", "box", "remove", stamp["box"], "--box-version", old.name, "--force"])
            shutil.rmtree(old, ignore_errors=True)  # what `box remove` leaves of a version
    return time.monotonic() - started


def prepare(variants: list[str], force: bool = False) -> dict[str, dict[str, Any]]:
    """Build (if needed) and add each variant's box; returns their build.json by variant."""
    stamps = {}
    for variant in variants:
        stamps[variant] = build(variant, force=force)
        added = ensure_added(stamps[variant])
        if added:
            stamps[variant]["times"] = {**stamps[variant]["times"], "vagrant_box_add": round(added, 1)}
    return stamps


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m lab box", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    p_build = sub.add_parser("build", help="build (if the recipe changed) and add the boxes to Vagrant")
    p_build.add_argument("variants", nargs="*", default=list(VARIANTS), help=f"default: {' '.join(VARIANTS)}")
    p_build.add_argument("--force", action="store_true", help="rebuild even if a current box is cached")
    sub.add_parser("list", help="the boxes in the cache and whether they match the current recipe")
    args = parser.parse_args(argv)
    if args.action == "build":
        for variant, stamp in prepare(args.variants, force=args.force).items():
            print(f"{stamp['box']} {stamp['version']}: " + ", ".join(f"{k} {v:.0f} s" for k, v in stamp["times"].items()))
        return 0
    for variant in VARIANTS:
        key = recipe_key(recipe(variant))
        found = _current(variant, key, "box.tar")
        state = f"current ({found})" if found else "missing or outdated"
        print(f"{box_name(variant)}: {state}")
    return 0
