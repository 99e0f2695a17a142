#!/usr/bin/env python3
"""hardline against docker-bench-security on one host with 0, 20 and 100 running containers,
measured in one run: wall time of each tool as a whole process, the tool's own CPU and the CPU
the Docker daemon spent answering it, and the ratios.

    python3 perf/docker_bench_sweep.py DOCKER_BENCH_DIR                    # 0, 20, 100 containers
    python3 perf/docker_bench_sweep.py DOCKER_BENCH_DIR --containers 0,5 --verdicts

DOCKER_BENCH_DIR is a checkout of docker-bench-security (run, never copied or shipped). Each
point uses a throw-away dockerd of tests/support (its own network namespace) with N busybox
containers, as `perf/compare_docker_bench.py --demo N` does; `--verdicts` also prints that
script's verdict comparison per point. Daemon CPU is read from /proc for every process in the
daemon's network namespace (dockerd, containerd, shims), before and after each tool. Nothing is
asserted: the machine may be shared, compare the ratios.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare_docker_bench import demo_daemon, local_inventory, report, run_docker_bench, run_hardline  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def daemon_cpu(daemon) -> float:
    """CPU so far of every process in the daemon's network namespace (with reaped children)."""
    pids = subprocess.run(["ip", "netns", "pids", daemon.netns], capture_output=True, text=True).stdout.split()
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return total / TICK


def point(bench: Path, containers: int, tmp: Path, verdicts: bool) -> dict[str, float]:
    factory, daemon = demo_daemon(containers)
    try:
        inventory = local_inventory(tmp, {"docker_socket_path": str(daemon.socket), "docker_pidfile": str(daemon.pidfile)})
        d0, c0 = daemon_cpu(daemon), children_cpu()
        theirs_s, theirs = run_docker_bench(bench, f"unix://{daemon.socket}", None)
        d1, c1 = daemon_cpu(daemon), children_cpu()
        ours_s, ours = run_hardline(inventory, None, tmp / f"hardline{containers}.json")
        d2, c2 = daemon_cpu(daemon), children_cpu()
        if verdicts:
            report(ours, theirs, ours_s, theirs_s, containers)
    finally:
        factory.stop_all()
    return {"containers": containers, "ours_s": ours_s, "theirs_s": theirs_s, "ours_cpu": c2 - c1,
            "theirs_cpu": c1 - c0, "ours_daemon": d2 - d1, "theirs_daemon": d1 - d0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bench", type=Path, help="docker-bench-security checkout (not shipped)")
    parser.add_argument("--containers", default="0,20,100", help="running containers per point (default: %(default)s)")
    parser.add_argument("--verdicts", action="store_true", help="also print both verdicts per CIS id at each point")
    args = parser.parse_args(argv)
    if not (args.bench / "docker-bench-security.sh").is_file():
        parser.error(f"{args.bench} is not a docker-bench-security checkout")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(c) for c in args.containers.split(",")]:
            rows.append(point(args.bench, n, Path(tmp), args.verdicts))
            r = rows[-1]
            print(f"{n} containers: hardline {r['ours_s']:.2f}s, docker-bench-security {r['theirs_s']:.2f}s", flush=True)
    print(f"\n{'containers':>10} {'hardline s':>10} {'dbs s':>8} {'ratio':>6}   {'hardline CPU':>12} {'+dockerd':>8}"
          f"   {'dbs CPU':>8} {'+dockerd':>8} {'CPU ratio':>9}")
    for r in rows:
        ours, theirs = r["ours_cpu"] + r["ours_daemon"], r["theirs_cpu"] + r["theirs_daemon"]
        print(f"{r['containers']:>10} {r['ours_s']:>10.2f} {r['theirs_s']:>8.2f} {r['ours_s'] / r['theirs_s']:>6.3f}   "
              f"{r['ours_cpu']:>12.2f} {r['ours_daemon']:>8.2f}   {r['theirs_cpu']:>8.2f} {r['theirs_daemon']:>8.2f} "
              f"{ours / theirs if theirs else float('nan'):>9.3f}")
    first, last = rows[0], rows[-1]
    if len(rows) > 1:
        print(f"\nfrom {first['containers']} to {last['containers']} containers: hardline wall "
              f"x{last['ours_s'] / first['ours_s']:.2f}, docker-bench-security wall x{last['theirs_s'] / first['theirs_s']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
