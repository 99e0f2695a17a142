"""``python3 -m lab``: the test labs' command line (not part of the hardline product).

    python3 -m lab demo                        # the main job on the QEMU lab VM (scripts/lab-run.sh)
    python3 -m lab up [--fresh] | down | status | ssh [CMD] | build [--force]
    python3 -m lab snapshot save|load|list [NAME]
    python3 -m lab box build [VARIANT ...] | list          # local Vagrant boxes (lab/boxes.py)
    python3 -m lab vagrant up|demo|run|down ...             # Vagrant lab in its namespace (lab/vagrant.py)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from lab import qemu
from lab.common import LabError, locked
from lab.image import base_dir, base_is_current, build, lab_dir

ENV_HELP = (
    "environment: HARDLINE_LAB_DIR (cache, default ~/.cache/hardline/lab), HARDLINE_CACHE_DIR (boxes, "
    f"default ~/.cache/hardline), HARDLINE_LAB_SSH_PORT (default {qemu.DEFAULT_SSH_PORT}), "
    "HARDLINE_DEBIAN_MIRROR and HARDLINE_DEBIAN_SECURITY_MIRROR (default: the Debian mirrors in this "
    "machine's apt sources), HARDLINE_LAB_ACCEL (default tcg,thread=multi), HARDLINE_LAB_CPUS, "
    "HARDLINE_LAB_MEMORY (MiB)"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m lab",
        description="Test labs of hardline: a QEMU VM (SSH on 127.0.0.1) and a Vagrant lab (libvirt, in a "
                    "network namespace).",
        epilog=ENV_HELP,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("demo", help="the main job: fresh VM, verify, harden, harden again, verify (reports/)",
                   add_help=False)
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
    p_snap = sub.add_parser("snapshot", help="savevm/loadvm on the running VM (seconds instead of a boot)")
    p_snap.add_argument("action", choices=["save", "load", "list"])
    p_snap.add_argument("name", nargs="?", default="booted")
    sub.add_parser("box", help="build or list the local Vagrant boxes (see `python3 -m lab box -h`)", add_help=False)
    sub.add_parser("vagrant", help="the Vagrant lab in its network namespace (see `python3 -m lab vagrant -h`)",
                   add_help=False)
    return parser


def _print_status(info: dict[str, Any]) -> None:
    if info["running"]:
        print(f"running: pid {info['pid']}, ssh {qemu.SSH_HOST}:{info['ssh_port']}, up {info['uptime_s']:.0f} s")
    else:
        print("not running")
    print(f"base image: {info['base_image']} ({info['lab_dir']})")


def _qemu(args: argparse.Namespace) -> int:
    if args.command == "up":
        qemu.up(fresh=args.fresh, rebuild=args.rebuild)
    elif args.command == "down":
        print("stopped" if qemu.down(graceful=not args.force) else "not running")
    elif args.command == "status":
        _print_status(qemu.status())
    elif args.command == "build":
        with locked(lab_dir()):
            # Replacing root.img under a running VM would corrupt its overlay.
            if qemu.is_running() and (args.force or not base_is_current()):
                raise LabError("the lab VM is running on the current image; run `python3 -m lab down` first")
            elapsed = build(force=args.force)
        if elapsed is None:
            print(f"base image is current ({base_dir()}); use --force to rebuild")
    elif args.command == "snapshot":
        if args.action == "list":
            print("\n".join(qemu.snapshots()))
        elif args.action == "save":
            print(f"saved {args.name} in {qemu.snapshot_save(args.name):.1f} s")
        else:
            print(f"loaded {args.name}; ssh answers after {qemu.snapshot_load(args.name):.1f} s")
    elif args.command == "ssh":
        if not qemu.is_running():
            raise LabError("the lab VM is not running; run `python3 -m lab up` first")
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        return subprocess.call(qemu.ssh_command(cmd, tty=not cmd and sys.stdin.isatty()))
    return 0


def cli(argv: Sequence[str]) -> int:
    """Entry point of ``python3 -m lab``; returns the exit code."""
    argv = list(argv)
    try:
        if argv[:1] == ["demo"]:
            from lab.demo import demo

            return demo(argv[1:])
        if argv[:1] == ["box"]:
            from lab.boxes import cli as box_cli

            return box_cli(argv[1:])
        if argv[:1] == ["vagrant"]:
            from lab.vagrant import cli as vagrant_cli

            return vagrant_cli(argv[1:])
        return _qemu(_parser().parse_args(argv))
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
