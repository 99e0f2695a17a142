"""The Vagrant lab here: vagrant/Vagrantfile with the local boxes, libvirt (TCG) and every command
that talks to the guests inside the network namespace ``hlv`` (lab/netns.py).

    python3 -m lab vagrant up docker-selinux        # boxes built/added if needed, namespace, vagrant up
    python3 -m lab vagrant run -- pyinfra inventories/vagrant.py deploys/harden.py
    python3 -m lab vagrant run -- hardline verify inventories/vagrant.py
    python3 -m lab vagrant ssh docker-selinux [CMD]
    python3 -m lab vagrant destroy [MACHINE]        # machines gone, namespace and libvirtd stay
    python3 -m lab vagrant down                     # everything gone: machines, libvirtd, namespace
    python3 -m lab vagrant demo [MACHINE ...]       # each machine in turn: up, verify, harden, verify

One VM at a time here (2 cores): `up` takes the machines named, in turn; `demo` destroys each
machine before the next one boots.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lab import boxes, netns
from lab.common import ROOT, LabError, cache_root, log, run

VAGRANT_DIR = ROOT / "vagrant"
INVENTORY = ROOT / "inventories" / "vagrant.py"


def machines() -> dict[str, dict[str, Any]]:
    """vagrant/machines.yml: the machines with defaults applied."""
    raw = yaml.safe_load((VAGRANT_DIR / "machines.yml").read_text())
    return {name: {**raw.get("defaults", {}), **m} for name, m in raw["machines"].items()}


def connector_options(defined: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What vagrant/@vagrant.json must hold for `pyinfra @vagrant` (run in vagrant/) to see the
    machines as inventories/vagrant.py does: their groups and data (tests keep the file in step)."""
    common = {"_sudo": True, "ssh_strict_host_key_checking": "no", "ssh_known_hosts_file": "/dev/null"}
    return {"groups": {name: list(m.get("groups") or []) for name, m in defined.items()},
            "data": {name: {**common, **(m.get("data") or {})} for name, m in defined.items()}}


def variant_of(machine: str) -> str:
    """The lab/boxes.py variant behind a machine's local box (hardline/debian12-VARIANT)."""
    box = machines()[machine]["box"]["local"]
    prefix = boxes.box_name("")
    if not box.startswith(prefix) or box[len(prefix):] not in boxes.VARIANTS:
        raise LabError(f"machine {machine}: local box {box} is not one lab/boxes.py builds")
    return box[len(prefix):]


def env() -> dict[str, str]:
    """Environment of every lab vagrant/pyinfra/hardline call: local boxes, libvirt, no network
    look-ups by Vagrant, its machine state kept in the cache (not in vagrant/.vagrant, which is
    the users')."""
    console = cache_root() / "vagrant" / "console"
    console.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "HARDLINE_VAGRANT_BOXES": "local", "VAGRANT_DEFAULT_PROVIDER": "libvirt",
            "VAGRANT_CHECKPOINT_DISABLE": "1", "VAGRANT_BOX_UPDATE_CHECK_DISABLE": "1",
            "VAGRANT_DOTFILE_PATH": str(cache_root() / "vagrant" / "dotfile"),
            "HARDLINE_VAGRANT_CONSOLE_DIR": str(console),
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}


def in_lab(argv: list[str], cwd: Path = ROOT, timeout: float | None = None, check: bool = False,
           capture: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside the lab's namespace with the lab's environment."""
    proc = subprocess.run([*netns.prefix(), *argv], cwd=cwd, env=env(), text=True, timeout=timeout,
                          capture_output=capture, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise LabError(f"{shlex.join(argv)} failed (rc {proc.returncode}): {(proc.stderr or '')[-3000:]}"
                       f"{(proc.stdout or '')[-2000:]}")
    return proc


def vagrant(*args: str, timeout: float = 1800, check: bool = True) -> subprocess.CompletedProcess[str]:
    return in_lab(["vagrant", *args], cwd=VAGRANT_DIR, timeout=timeout, check=check)


def _prune_box_volumes(stamp: dict[str, Any]) -> None:
    """Volumes vagrant-libvirt uploaded for other versions of this box (older builds)."""
    stem = stamp["box"].replace("/", "-VAGRANTSLASH-") + "_vagrant_box_image_"
    listing = netns.virsh("vol-list", netns.POOL, check=False).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(stem) and not name.startswith(f"{stem}{stamp['version']}_"):
            netns.virsh("vol-delete", "--pool", netns.POOL, name, check=False)


def up(machine: str) -> dict[str, float]:
    """Build/add the machine's box if needed, start the namespace and libvirtd, `vagrant up`."""
    if machine not in machines():
        raise LabError(f"no machine {machine} in {VAGRANT_DIR / 'machines.yml'} (has: {', '.join(machines())})")
    times: dict[str, float] = {}
    t = time.monotonic()
    stamp = boxes.prepare([variant_of(machine)])[variant_of(machine)]
    times["box (build/add if needed)"] = round(time.monotonic() - t, 1)
    t = time.monotonic()
    netns.up()
    _prune_box_volumes(stamp)
    times["namespace + libvirtd"] = round(time.monotonic() - t, 1)
    t = time.monotonic()
    log(f"vagrant: up {machine} (console: {cache_root() / 'vagrant' / 'console' / (machine + '.log')}) ...")
    vagrant("up", machine, "--provider", "libvirt")
    times["vagrant up"] = round(time.monotonic() - t, 1)
    return times


def destroy(*names: str) -> None:
    if netns.exists():
        vagrant("destroy", "-f", *names, check=False)


def down() -> None:
    """Every machine destroyed, libvirtd and virtlogd stopped, the namespace deleted."""
    if netns.exists():
        destroy()
    netns.down()


@dataclass
class Machine:
    """A running lab machine reached over SSH (from `vagrant ssh-config`) inside the namespace."""

    name: str
    hostname: str
    port: int
    user: str
    key: str

    @classmethod
    def get(cls, name: str) -> "Machine":
        out = vagrant("ssh-config", name).stdout
        fields = {}
        for line in out.splitlines():
            key, _, value = line.strip().partition(" ")
            fields.setdefault(key, value.strip('"'))
        return cls(name, fields["HostName"], int(fields["Port"]), fields["User"], fields["IdentityFile"])

    def ssh_argv(self, command: str | None = None, *, root: bool = True) -> list[str]:
        argv = [*netns.prefix(), "ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
                "-o", "IdentitiesOnly=yes", "-i", self.key, "-p", str(self.port), f"{self.user}@{self.hostname}"]
        if command is not None:
            argv.append(f"sudo sh -c {shlex.quote(command)}" if root else command)
        return argv

    def sh(self, command: str, timeout: float = 300, input: bytes | None = None) -> subprocess.CompletedProcess:
        """Run ``command`` as root in the guest; never raises on its exit code."""
        try:
            return subprocess.run(self.ssh_argv(command), capture_output=True, timeout=timeout, input=input,
                                  text=input is None, stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(command, 255, "", f"ssh timed out after {timeout} s")

    def wait_ssh(self, timeout: float = 600) -> float:
        started = time.monotonic()
        while self.sh("true", timeout=20).returncode != 0:
            if time.monotonic() - started > timeout:
                raise LabError(f"{self.name}: no SSH after {timeout:.0f} s")
            time.sleep(3)
        return time.monotonic() - started


def _verify(name: str) -> int:
    return in_lab([sys.executable, "-m", "hardline.cli", "verify", str(INVENTORY), "-q", "--limit", name],
                  capture=False).returncode


def demo(names: list[str]) -> int:
    """Each machine in turn: up, verify (baseline), harden, harden again, verify, destroy."""
    from lab.deploy import run_pyinfra

    for name in names or list(machines()):
        times = up(name)
        try:
            t = time.monotonic()
            _verify(name)
            times["verify (baseline)"] = round(time.monotonic() - t, 1)
            for step in ("harden", "harden again"):
                t = time.monotonic()
                deployed = run_pyinfra(INVENTORY, "--limit", name, prefix=netns.prefix(), env=env())
                times[step] = round(time.monotonic() - t, 1)
                if deployed.returncode != 0:
                    print(deployed.stdout[-4000:])
                    return 2
                print(f"{name}: {step}: {deployed.changed} operations changed")
            t = time.monotonic()
            final = _verify(name)
            times["verify (after)"] = round(time.monotonic() - t, 1)
        finally:
            destroy(name)
        print(f"{name}: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()) + f"; final verify exit {final}")
    return 0


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m lab vagrant", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    p_up = sub.add_parser("up", help="boot machines (in turn): box, namespace, libvirtd, vagrant up")
    p_up.add_argument("machines", nargs="+")
    p_run = sub.add_parser("run", help="run a command inside the lab's namespace with its environment")
    p_run.add_argument("cmd", nargs=argparse.REMAINDER)
    p_ssh = sub.add_parser("ssh", help="a shell (or CMD, as root) on a machine")
    p_ssh.add_argument("machine")
    p_ssh.add_argument("cmd", nargs=argparse.REMAINDER)
    p_destroy = sub.add_parser("destroy", help="vagrant destroy -f (all machines, or those named)")
    p_destroy.add_argument("machines", nargs="*")
    sub.add_parser("down", help="destroy every machine, stop libvirtd, delete the namespace")
    sub.add_parser("status", help="vagrant status, and anything the lab left behind")
    p_demo = sub.add_parser("demo", help="each machine in turn: up, verify, harden twice, verify, destroy")
    p_demo.add_argument("machines", nargs="*")
    args = parser.parse_args(argv)
    if args.action == "up":
        for name in args.machines:
            print(f"{name}: " + ", ".join(f"{k} {v:.0f} s" for k, v in up(name).items()))
    elif args.action == "run":
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        if not cmd:
            raise LabError("run what? e.g. python3 -m lab vagrant run -- hardline verify inventories/vagrant.py")
        netns.up()
        return in_lab(cmd, capture=False).returncode
    elif args.action == "ssh":
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        machine = Machine.get(args.machine)
        command = None if not cmd else cmd[0] if len(cmd) == 1 else shlex.join(cmd)  # one word: a shell line
        return subprocess.call(machine.ssh_argv(command))
    elif args.action == "destroy":
        destroy(*args.machines)
    elif args.action == "down":
        down()
        left = netns.leftovers([boxes.boxes_dir()])
        print("down; left behind: " + ("; ".join(left) if left else "nothing"))
        return 1 if left else 0
    elif args.action == "status":
        if netns.exists():
            print(vagrant("status", check=False).stdout)
        print("lab namespace, processes, loop devices: " + ("; ".join(netns.leftovers([boxes.boxes_dir()])) or "none"))
    elif args.action == "demo":
        return demo(args.machines)
    return 0
