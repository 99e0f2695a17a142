#!/usr/bin/env python3
"""Run hardline and docker-bench-security on the same host, print both verdicts per CIS id,
where they differ, and both wall times with their ratio, measured in one run.

    python3 perf/compare_docker_bench.py DOCKER_BENCH_DIR local [--socket S --pidfile P]
    python3 perf/compare_docker_bench.py DOCKER_BENCH_DIR --demo 20        # throw-away daemon, 20 busybox containers
    python3 perf/compare_docker_bench.py DOCKER_BENCH_DIR --demo 20 --edge --swarm   # + known edge cases, a swarm
    python3 perf/compare_docker_bench.py DOCKER_BENCH_DIR --inventory inventories/lab.py --limit lab

DOCKER_BENCH_DIR is a checkout of docker-bench-security; it is run, never copied or shipped.
`local` and `--demo` run both tools on this machine (docker-bench with DOCKER_HOST pointing at
the daemon under test); `--inventory` runs hardline over the inventory's connection and
docker-bench on that host over ssh (the checkout is streamed to a temporary directory there).
docker-bench verdicts map as WARN -> FAIL, PASS -> PASS, INFO/NOTE -> informational.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

THEIRS = {"WARN": "FAIL", "PASS": "PASS", "INFO": "INFO", "NOTE": "INFO"}
SEVERITY = ("ERROR", "FAIL", "PASS", "WAIVED", "SKIP", "MANUAL")


def cis_key(cid: str) -> list:
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in cid.split(".")]


# ---- hardline ---------------------------------------------------------------------------------

def run_hardline(inventory: Path, limit: str | None, out: Path) -> tuple[float, dict[str, dict]]:
    """Wall time of `hardline verify` (a fresh process, like docker-bench) and per id: the
    aggregated status and the subjects that failed."""
    cmd = [sys.executable, "-m", "hardline.cli", "verify", str(inventory), "--json", str(out), "-q"]
    if limit:
        cmd += ["--limit", limit]
    started = time.monotonic()
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if run.returncode not in (0, 1, 2) or not out.exists():
        raise SystemExit(f"hardline verify failed ({run.returncode}): {run.stdout[-2000:]}{run.stderr[-2000:]}")
    by_id: dict[str, list] = defaultdict(list)
    for r in json.loads(out.read_text())["results"]:
        by_id[r["control_id"]].append(r)
    verdicts = {}
    for cid, results in by_id.items():
        statuses = {r["status"] for r in results}
        status = next((s for s in SEVERITY if s in statuses), "SKIP")
        if status == "PASS" and statuses - {"PASS"}:
            status = "PASS"
        failing = sorted(_name(r["subject"]) for r in results if r["status"] == "FAIL" and r["subject"])
        why = next((r["found"] for r in results if r["status"] == status), "")
        verdicts[cid] = {"status": status, "failing": failing, "found": why}
    return elapsed, verdicts


def _name(subject: str) -> str:
    """container web (nginx:1) 3f2a1c -> web; image a:b 3f2a -> the image id's 12 characters."""
    words = subject.split(" ")
    if words[0] in ("image", "network"):
        return " ".join(words[1:-1])
    return words[1] if len(words) > 1 else subject


# ---- docker-bench-security -----------------------------------------------------------------

def run_docker_bench(bench: Path, docker_host: str | None, ssh: list[str] | None) -> tuple[float, dict[str, dict]]:
    """Wall time of docker-bench-security (all CIS sections 1-7, JSON log) and its verdicts."""
    if ssh:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            tar.add(bench, arcname="dbs", filter=lambda t: None if "/.git" in t.name else t)
        remote = ("d=$(mktemp -d) && cd $d && tar xzf - && cd dbs && "
                  f"{'DOCKER_HOST=' + shlex.quote(docker_host) + ' ' if docker_host else ''}"
                  "bash docker-bench-security.sh -b -l $d/bench.log >/dev/null 2>&1; cat $d/bench.log.json; rm -rf $d")
        started = time.monotonic()
        run = subprocess.run(ssh + [remote], input=buffer.getvalue(), capture_output=True)
        elapsed = time.monotonic() - started
        text = run.stdout.decode(errors="replace")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, **({"DOCKER_HOST": docker_host} if docker_host else {})}
            started = time.monotonic()
            subprocess.run(["bash", "docker-bench-security.sh", "-b", "-l", f"{tmp}/bench.log"], cwd=bench, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            elapsed = time.monotonic() - started
            text = Path(f"{tmp}/bench.log.json").read_text()
    return elapsed, parse_docker_bench(text)


def parse_docker_bench(text: str) -> dict[str, dict]:
    doc = json.loads(text)
    verdicts = {}
    for section in doc.get("tests", []):
        for r in section.get("results", []):
            items = r.get("items") or []
            if isinstance(items, str):
                items = items.split()
            verdicts[r["id"]] = {"status": THEIRS.get(r.get("result", ""), r.get("result", "?")),
                                 # items are names; "(swarm)" after a network name is its scope
                                 "failing": sorted(n for i in items if (n := str(i).strip("[] "))
                                                   and not (n.startswith("(") and n.endswith(")"))),
                                 "found": r.get("details", "")}
    return verdicts


def agree(ours: str, theirs: str) -> bool:
    if theirs == "INFO":
        return ours in ("SKIP", "MANUAL", "WAIVED")
    return ours == theirs


# ---- targets ----------------------------------------------------------------------------------

def local_inventory(directory: Path, data: dict) -> Path:
    path = directory / "compare_inventory.py"
    path.write_text(f"hosts = [('@local', {data!r})]\n")
    return path


# Containers where the two tools are known to judge differently (docs/docker-bench-differences.md).
EDGE = {
    "edge-root00": ["--user", "0:0"],
    "edge-rundir": ["-v", "/run:/host-run:ro"],
    "edge-etcsub": ["-v", "/etc/ssl:/host-ssl"],
    "edge-capsys": ["--cap-add", "SYS_PTRACE"],
    "edge-unlimited": ["--restart", "on-failure"],
    "edge-always": ["--restart", "always"],
    "edge-sshd": ["--entrypoint", "sh"],
}
SSHD = "printf '#!/bin/sh\\nwhile :; do sleep 1; done\\n' > /tmp/sshd && chmod +x /tmp/sshd && exec /tmp/sshd"


def demo_daemon(containers: int, edge: bool = False, swarm: bool = False):
    """A throw-away dockerd (tests/support) with N running busybox containers; with ``edge``,
    daemon.json sets no-new-privileges and the EDGE containers run as well."""
    from tests.support.daemons import DaemonFactory
    from tests.support.images import import_busybox

    factory = DaemonFactory()
    daemon = factory.start({"no-new-privileges": True} if edge else {})
    image = import_busybox(daemon)
    for n in range(containers):
        daemon.docker("run", "-d", "--name", f"bench-{n}", image, "sleep", "86400", check=True)
    for name, flags in (EDGE.items() if edge else ()):
        command = ["-c", SSHD] if name == "edge-sshd" else ["sleep", "86400"]
        daemon.docker("run", "-d", "--name", name, *flags, image, *command, check=True)
    if swarm:  # a one-manager swarm with docker's defaults (listens on every interface)
        daemon.docker("swarm", "init", "--advertise-addr", "127.0.0.1", check=True)
    return factory, daemon


def ssh_command(inventory: str, limit: str | None) -> tuple[list[str], dict]:
    from hardline.inventory import load_hosts

    hosts = load_hosts(inventory, [limit] if limit else None)
    if len(hosts) != 1:
        raise SystemExit("--inventory needs exactly one host (use --limit)")
    conn = hosts[0].connection
    cmd = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-p", str(conn.get("ssh_port", 22))]
    if conn.get("ssh_key"):
        cmd += ["-i", str(conn["ssh_key"])]
    if conn.get("ssh_known_hosts_file"):
        cmd += ["-o", f"UserKnownHostsFile={conn['ssh_known_hosts_file']}"]
    cmd.append(f"{conn.get('ssh_user', 'root')}@{conn.get('ssh_hostname', hosts[0].name)}")
    return cmd, hosts[0].data


# ---- report -----------------------------------------------------------------------------------

def report(ours: dict, theirs: dict, ours_s: float, theirs_s: float, containers: int | None) -> list[dict]:
    ids = sorted(set(ours) | set(theirs), key=cis_key)
    ids = [i for i in ids if i.split(".")[0].isdigit() and int(i.split(".")[0]) <= 7]
    differ = []
    print(f"{'CIS id':<8} {'hardline':<8} {'docker-bench':<12} ")
    for cid in ids:
        o = ours.get(cid, {"status": "-", "failing": [], "found": ""})
        t = theirs.get(cid, {"status": "-", "failing": [], "found": ""})
        same = agree(o["status"], t["status"])
        detail = ""
        if same and o["status"] == "FAIL" and t["failing"] and set(o["failing"]) != set(t["failing"]):
            same = False
            o = {**o, "status": "FAIL"}
            detail = (f"  only hardline fails: {sorted(set(o['failing']) - set(t['failing']))}; "
                      f"only docker-bench fails: {sorted(set(t['failing']) - set(o['failing']))}")
        kind = "" if same else ("VERDICT" if {o["status"], t["status"]} <= {"PASS", "FAIL"} else "scope")
        print(f"{cid:<8} {o['status']:<8} {t['status']:<12} {kind}{detail}")
        if not same:
            differ.append({"id": cid, "kind": kind, "hardline": o, "docker_bench": t})
    verdicts = sum(d["kind"] == "VERDICT" for d in differ)
    print(f"\n{len(differ)} of {len(ids)} items differ: {verdicts} verdicts (PASS against FAIL, or other "
          f"containers failing), {len(differ) - verdicts} of scope (one tool reports INFO/SKIP/MANUAL)")
    for d in differ:
        print(f"  {d['id']} [{d['kind']}]: hardline {d['hardline']['status']} ({d['hardline']['found'][:110]})")
        print(f"  {'':<{len(d['id'])}}  docker-bench {d['docker_bench']['status']} ({d['docker_bench']['found'][:100]})")
    print(f"\nwall time: hardline {ours_s:.2f} s, docker-bench-security {theirs_s:.2f} s, "
          f"ratio {ours_s / theirs_s:.3f}" + (f" ({containers} running containers)" if containers is not None else ""))
    return differ


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bench", type=Path, help="docker-bench-security checkout (not shipped)")
    parser.add_argument("target", nargs="?", choices=["local"], help="this machine's daemon")
    parser.add_argument("--socket", default="/var/run/docker.sock")
    parser.add_argument("--pidfile", default="/var/run/docker.pid")
    parser.add_argument("--demo", type=int, metavar="N", help="throw-away test daemon with N busybox containers")
    parser.add_argument("--edge", action="store_true", help="with --demo: add the EDGE containers and no-new-privileges")
    parser.add_argument("--swarm", action="store_true", help="with --demo: the daemon initialises a swarm")
    parser.add_argument("--inventory", help="pyinfra inventory of the host to compare on")
    parser.add_argument("--limit", help="host of the inventory")
    parser.add_argument("--json", type=Path, help="write both verdicts, the differences and the times here")
    args = parser.parse_args(argv)
    if not (args.bench / "docker-bench-security.sh").is_file():
        parser.error(f"{args.bench} is not a docker-bench-security checkout")
    if sum(bool(x) for x in (args.target, args.demo is not None, args.inventory)) != 1:
        parser.error("give exactly one of: local, --demo N, --inventory FILE")
    factory = None
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        try:
            ssh, limit = None, None
            if args.inventory:
                ssh, data = ssh_command(args.inventory, args.limit)
                inventory, limit = Path(args.inventory), args.limit
                docker_host = f"unix://{data['docker_socket_path']}"
            else:
                socket, pidfile = args.socket, args.pidfile
                if args.demo is not None:
                    factory, daemon = demo_daemon(args.demo, args.edge, args.swarm)
                    socket, pidfile = str(daemon.socket), str(daemon.pidfile)
                inventory = local_inventory(tmp_path, {"docker_socket_path": socket, "docker_pidfile": pidfile})
                docker_host = f"unix://{socket}"
            theirs_s, theirs = run_docker_bench(args.bench, docker_host, ssh)
            ours_s, ours = run_hardline(inventory, limit, tmp_path / "hardline.json")
            differ = report(ours, theirs, ours_s, theirs_s, args.demo)
            if args.json:
                args.json.write_text(json.dumps({"hardline_seconds": ours_s, "docker_bench_seconds": theirs_s,
                                                 "ratio": ours_s / theirs_s, "hardline": ours, "docker_bench": theirs,
                                                 "differences": differ}, indent=1))
        finally:
            if factory:
                factory.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
