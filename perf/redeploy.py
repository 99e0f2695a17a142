#!/usr/bin/env python3
"""Deploy, then deploy again with nothing to change: time and commands sent to each host, and
their ratios, measured in one run. Commands are counted where pyinfra hands them to its
connector (tests/support/pyinfra_run.py), so that figure does not depend on the machine.

    python3 perf/redeploy.py                                   # a Debian container (throw-away dockerd)
    python3 perf/redeploy.py --inventory inventories/lab.py    # real hosts (e.g. the lab VM: hardline lab up)
    python3 perf/redeploy.py --inventory inventories/lab.py --redeploy-only
    python3 perf/redeploy.py --inventory inv.py --checkout /path/to/other/checkout   # another version's deploys

The container target is this machine's Debian userland in a container of a throw-away dockerd
(tests/support/hostimage.py), its dockerd the test daemon outside (SIMULATED systemctl: restart
is a no-op) and its network sysctls preset; audit rules go into this machine's kernel under a
key of the run's own and are removed after it.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.pyinfra_run import DeployRun, deploy


def row(label: str, seconds: float, run: DeployRun) -> str:
    hosts = sorted(run.commands) or ["-"]
    commands = sum(run.commands.values())
    changed = sum(len(v) for v in run.changed.values())
    waiting = sum(run.host_seconds(h) for h in hosts)
    return (f"{label:<10} {seconds:6.1f} s  {commands:4d} commands  {sum(run.uploads.values()):3d} uploads  "
            f"{changed:3d} operations changed  {waiting:6.1f} s on the host{'s' * (len(hosts) != 1)}, "
            f"{run.seconds - waiting:5.1f} s in pyinfra  (exit {run.returncode})")


def slowest(run: DeployRun, n: int = 5) -> list[str]:
    """The commands or transfers that took longest, for finding where a deploy's time goes."""
    items = sorted((t for ts in run.timings.values() for t in ts), key=lambda t: -t[1])[:n]
    return [f"    {seconds:6.1f} s  {kind.replace('run_shell_command', 'command')}: {what[:90]!r}"
            for kind, seconds, what in items]


def measure(work: Path, inventory: Path, entry: Path, env: dict[str, str], args: argparse.Namespace) -> int:
    extra = ["--limit", args.limit] if args.limit else []
    pythonpath = [str(Path(args.checkout).resolve())] if args.checkout else None
    cwd = Path(args.checkout).resolve() if args.checkout else ROOT
    runs: list[tuple[str, float, DeployRun]] = []
    steps = (["re-deploy"] if args.redeploy_only else ["deploy", "re-deploy"]) + ["dry run"]
    for label in steps:
        began = time.monotonic()
        run = deploy(work / label.replace(" ", "-"), inventory, entry, dry=label == "dry run", env=env,
                     extra_args=extra, pythonpath=pythonpath, cwd=cwd, expect_state=False, timeout=3600)
        runs.append((label, time.monotonic() - began, run))
        print(row(label, runs[-1][1], run), flush=True)
        if args.slowest:
            print("\n".join(slowest(run, args.slowest)), flush=True)
        if run.returncode != 0:
            print(run.tail(3000), file=sys.stderr)
            return 1
    if not args.redeploy_only:
        (_, t_first, first), (_, t_again, again) = runs[0], runs[1]
        c_first, c_again = sum(first.commands.values()), sum(again.commands.values())
        print(f"re-deploy / deploy: {t_again / t_first:.2f}x time, {c_again / max(c_first, 1):.3f}x commands")
    redeploy = next(r for label, _, r in runs if label == "re-deploy")
    for host, names in redeploy.changed.items():
        for name in names:
            print(f"  re-deploy changed on {host}: {name}")
    return 0


def container_target(work: Path, args: argparse.Namespace) -> int:
    from tests.support.daemons import DaemonFactory
    from tests.support.deploy_targets import whole_host
    from tests.support.pyinfra_run import inventory_text

    with DaemonFactory() as factory:
        daemon = factory.start({})
        with whole_host(daemon, work) as (container, data):
            data.update(dict(args.set or []))
            inventory = work / "inventory.py"
            inventory.write_text(inventory_text([(container.host, data)]))
            print(f"target: Debian userland container {container.name} (throw-away dockerd), deploy {entry_file(args)}")
            return measure(work, inventory, entry_file(args), daemon.env(), args)


def setting(text: str) -> tuple[str, object]:
    name, _, value = text.partition("=")
    return name, ast.literal_eval(value)


def entry_file(args: argparse.Namespace) -> Path:
    if args.entry:
        return Path(args.entry).resolve()
    if args.checkout:
        return Path(args.checkout).resolve() / "deploys" / "harden.py"
    return ROOT / "hardline" / "deploys" / "entry.py"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inventory", help="pyinfra inventory of real hosts (default: a throw-away container)")
    parser.add_argument("--limit", help="pyinfra --limit")
    parser.add_argument("--entry", help="deploy file (default: the packaged hardline/deploys/entry.py)")
    parser.add_argument("--checkout", help="run this other checkout's deploys (its hardline first on PYTHONPATH)")
    parser.add_argument("--redeploy-only", action="store_true", help="the hosts are deployed already: re-deploy and dry run")
    parser.add_argument("--slowest", type=int, default=0, metavar="N", help="also list the N slowest commands of each run")
    parser.add_argument("--set", action="append", type=setting, metavar="NAME=VALUE",
                        help="inventory data of the container target (a Python literal), e.g. auditd_immutable=False")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hld-perf-") as tmp:
        work = Path(tmp)
        if args.inventory:
            print(f"target: {args.inventory}{' --limit ' + args.limit if args.limit else ''}, deploy {entry_file(args)}")
            return measure(work, Path(args.inventory).resolve(), entry_file(args), dict(os.environ), args)
        return container_target(work, args)


if __name__ == "__main__":
    sys.exit(main())
