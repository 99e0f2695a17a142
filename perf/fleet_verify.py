#!/usr/bin/env python3
"""What a verify costs hardline and what it costs the hosts, for 1, 10 and 50 hosts, measured in
one run on the test fleet (tests/support/fleet.py: real sshd hosts in network namespaces of this
machine, each in its own cpuacct cgroup).

    python3 perf/fleet_verify.py                       # 1, 10, 50 hosts, 10 of them with their own dockerd
    python3 perf/fleet_verify.py --containers 20       # 20 running containers behind every host
    python3 perf/fleet_verify.py --hosts 1,5,20 --own-daemons 20 --repeat 3
    git worktree add /tmp/hl-before <commit>
    python3 perf/fleet_verify.py --containers 20 --baseline /tmp/hl-before   # before/after, same fleet

Per run it prints wall time, hardline's CPU (the `hardline verify` process and its children:
user + system) and the targets' CPU: everything in the hosts' cgroups (sshd, the gather
scripts, the docker CLI, a host's own dockerd) plus the shared dockerds that answer for the other
hosts, per verified host, minus what the same cgroups spend idle over as long (dockerd and the
containers' shims tick on their own; measured for --idle seconds before the runs). With
--baseline, another hardline checkout verifies the same hosts right after this one at each size.
The ratios at the end compare the runs with each other; nothing is asserted (the machine is
shared: compare ratios, not seconds). Needs root (scripts/setup.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.fleet import Fleet, fleet_prerequisites  # noqa: E402
from tests.support.fleet_run import Run  # noqa: E402
from tests.support.fleet_state import plain_plan  # noqa: E402
from tests.support.fleet_sys import docker  # noqa: E402
from tests.support.images import busybox_rootfs_tar  # noqa: E402


class SharedDaemon:
    """The docker CLI against a shared daemon of the fleet (what import_busybox needs)."""

    def __init__(self, directory: Path):
        self.dir = directory

    def docker(self, *args: str, check: bool = False, timeout: float = 120):
        done = docker(self.dir / "run" / "docker.sock", *args, timeout=timeout)
        if check and done.returncode:
            raise RuntimeError(f"docker {' '.join(args)}: {done.stderr}")
        return done


def add_containers(fleet: Fleet, count: int, tarball: Path) -> None:
    from tests.support.images import import_busybox

    daemons = [h for h in fleet.hosts.values() if h.spec.daemon == "own"]
    daemons += [SharedDaemon(fleet.dir / f"d-{p}") for p in fleet.daemons]

    def fill(daemon) -> None:
        image = import_busybox(daemon, tarball=tarball)
        for n in range(count):
            daemon.docker("run", "-d", "--name", f"perf-{n}", image, "sleep", "86400", check=True)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(fill, daemons))


def idle_rates(fleet: Fleet, groups: list[str], seconds: float) -> dict[str, float]:
    """CPU seconds per second each cgroup spends with nothing asked of it."""
    before = {g: fleet.cpu_seconds(g) for g in groups}
    time.sleep(seconds)
    return {g: (fleet.cpu_seconds(g) - before[g]) / seconds for g in groups}


def verify_run(root: Path, inventory: Path, out: Path) -> Run:
    """`hardline verify -q` of the checkout at ``root``, as a fresh process tree."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    argv = [sys.executable, "-m", "hardline.cli", "verify", str(inventory), "-q", "--json", str(out)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    run = Run(argv, done.returncode, done.stdout, done.stderr, seconds, cpu)
    if out.exists():
        run.results = {r["host"]: r for r in json.loads(out.read_text())["results"]}
        out.unlink()
    return run


def measure(fleet: Fleet, names: list[str], tmp: Path, root: Path, idle: dict[str, float]) -> dict[str, float]:
    inventory = fleet.write_inventory(tmp / f"inv{len(names)}.py", names=names)
    groups = [*names, *(f"d-{p}" for p in fleet.daemons)]
    before = {g: fleet.cpu_seconds(g) for g in groups}
    run = verify_run(root, inventory, tmp / f"out{len(names)}.json")
    after = {g: fleet.cpu_seconds(g) for g in groups}
    if run.returncode not in (0, 1) or set(run.results) != set(names):
        raise SystemExit(f"verify of {len(names)} hosts by {root} did not verify them all:\n{run.output()}")
    spent = {g: after[g] - before[g] - idle.get(g, 0.0) * run.seconds for g in groups}
    hosts_cpu = sum(spent[n] for n in names)
    daemons_cpu = sum(spent[g] for g in groups if g.startswith("d-"))
    return {"hosts": len(names), "wall": run.seconds, "hardline_cpu": run.cpu_seconds,
            "target_cpu": hosts_cpu + daemons_cpu, "shared_daemon_cpu": daemons_cpu}


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def table(title: str, rows: list[dict[str, float]]) -> None:
    print(f"{title}\n{'hosts':>5} {'wall s':>8} {'hardline CPU s':>15} {'per host':>9} {'targets CPU s':>14} "
          f"{'per verify':>11} {'(shared dockerd)':>17}")
    for r in rows:
        n = r["hosts"]
        print(f"{n:>5} {r['wall']:>8.2f} {r['hardline_cpu']:>15.2f} {r['hardline_cpu'] / n:>9.3f} "
              f"{r['target_cpu']:>14.2f} {r['target_cpu'] / n:>11.3f} {r['shared_daemon_cpu']:>17.2f}")
    first, last = rows[0], rows[-1]
    print()
    for r in rows[1:]:
        print(f"{r['hosts']} vs {first['hosts']} host(s): wall x{r['wall'] / first['wall']:.2f}, "
              f"hardline CPU x{r['hardline_cpu'] / first['hardline_cpu']:.2f}, "
              f"targets CPU x{r['target_cpu'] / first['target_cpu']:.2f}")
    if last["hosts"] > first["hosts"]:
        marginal = (last["hardline_cpu"] - first["hardline_cpu"]) / (last["hosts"] - first["hosts"])
        print(f"hardline CPU per additional host (start-up aside): {marginal:.3f}s; "
              f"start-up and first host: {first['hardline_cpu']:.2f}s")
    print(f"targets' CPU per verify at {last['hosts']} hosts: {last['target_cpu'] / last['hosts']:.3f}s; "
          f"hardline's CPU share of all CPU: {last['hardline_cpu'] / (last['hardline_cpu'] + last['target_cpu']):.0%}")
    print(f"wall per host at {last['hosts']} hosts: {last['wall'] / last['hosts']:.2f}s\n")


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", default="1,10,50", help="fleet sizes to verify (default: %(default)s)")
    parser.add_argument("--own-daemons", type=int, default=10,
                        help="hosts with a dockerd of their own (~110 MB each); the rest share one (default: %(default)s)")
    parser.add_argument("--containers", type=int, default=0, help="running containers behind every host")
    parser.add_argument("--repeat", type=int, default=1, help="runs per size; the median is printed")
    parser.add_argument("--idle", type=float, default=10, help="seconds of idle CPU measured first (default: %(default)s)")
    parser.add_argument("--baseline", type=Path, help="another hardline checkout to measure the same way (before/after)")
    args = parser.parse_args(argv)
    sizes = sorted({int(n) for n in args.hosts.split(",")})
    roots = {"this checkout": ROOT, **({f"baseline {args.baseline}": args.baseline.resolve()} if args.baseline else {})}
    reason = fleet_prerequisites()
    if reason:
        raise SystemExit(f"cannot start the fleet: {reason}")
    with tempfile.TemporaryDirectory(prefix="hlf-perf-") as tmp_dir:
        tmp = Path(tmp_dir)
        fleet = Fleet(specs=plain_plan(max(sizes), min(args.own_daemons, max(sizes))))
        with fleet:
            print(f"fleet of {len(fleet.hosts)} hosts ({args.own_daemons} with their own dockerd) started in "
                  f"{fleet.timings['start']:.1f}s", flush=True)
            if args.containers:
                add_containers(fleet, args.containers, busybox_rootfs_tar(tmp / "busybox.tar"))
                print(f"{args.containers} running containers behind every host", flush=True)
            names = list(fleet.hosts)
            idle = idle_rates(fleet, [*names, *(f"d-{p}" for p in fleet.daemons)], args.idle)
            print(f"idle CPU of all targets: {sum(idle.values()):.3f} s per second (subtracted below); {load()}",
                  flush=True)
            rows: dict[str, list] = {label: [] for label in roots}
            for n in sizes:
                runs: dict[str, list] = {label: [] for label in roots}
                for _ in range(args.repeat):
                    for label, root in roots.items():  # alternate, so that both see the same load
                        runs[label].append(measure(fleet, names[:n], tmp, root, idle))
                for label in roots:
                    rows[label].append(median_of(runs[label]))
                print(f"{n} host(s) done; {load()}", flush=True)
        print(f"fleet stopped in {fleet.timings['stop']:.1f}s\n")
    for label, table_rows in rows.items():
        table(f"{label}:", table_rows)
    if args.baseline:
        this, base = rows["this checkout"], rows[f"baseline {args.baseline}"]
        for a, b in zip(this, base):
            print(f"{a['hosts']} host(s), this checkout / baseline: wall x{a['wall'] / b['wall']:.2f}, "
                  f"hardline CPU x{a['hardline_cpu'] / b['hardline_cpu']:.2f}, "
                  f"targets CPU x{a['target_cpu'] / b['target_cpu']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
