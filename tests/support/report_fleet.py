"""A realistic 50-host x 20-container result set for the report tests and perf/report_scale.py.

SYNTHESIZED, for rendering tests only (the HTML report's size, load time, filters and
drill-down), never for check tests: no host is verified here. Every Docker and platform result
is a real verify result re-used: ``tests/data/verify-shapes.json`` holds, normalized, what
``hardline verify`` said about real throw-away dockerd hosts of tests/support (a daemon with the
tests' compliant daemon.json, one with Docker's defaults, each running a hardened container
"web", a plain one "api" and a careless one "edge"; and an unreachable host). A synthetic host
takes, control by control, the compliant or the default daemon's real result (its hardening
decides how often), gives each of its 20 containers the real per-container results of web, api
or edge under a new name, image and id, and some hosts are unreachable, waive controls, differ
from their inventory or had other results in the previous run.

CIS Kubernetes results (control plane, etcd and worker nodes, and the cluster-scoped policies
on the pseudo-host ``cluster/prod``) are made from the catalog with invented evidence ("(synth)"
in it): no real capture, because verify with a Kubernetes role fails before gathering on main
today (a check's params target ``k8s_file``/``k8s_glob`` has no fact yet).

Refresh the shapes from real daemons (needs dockerd, about a minute)::

    python3 -m tests.support.report_fleet --capture
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from hardline.catalog import load_catalog
from hardline.drift import Drift, Plan
from hardline.results import ERROR, FAIL, MANUAL, PASS, SKIP, WAIVED, Result, RunResults, merge_runs

ROOT = Path(__file__).resolve().parents[2]
SHAPES = ROOT / "tests" / "data" / "verify-shapes.json"
PROFILES = ("compliant", "default", "unreachable")
TEMPLATES = ("web", "api", "edge")  # the captured containers: hardened, plain, careless
SERVICES = ("nginx:1.25", "postgres:16", "redis:7.2", "registry.example.com/shop/api:4.12.0",
            "registry.example.com/shop/worker:4.12.0", "grafana/grafana:10.4.2", "prom/prometheus:v2.51.0",
            "haproxy:2.9", "rabbitmq:3.13-management", "registry.example.com/ops/backup:2024.05")
STARTED, K8S_STARTED = "2026-11-23T02:00:00+00:00", "2026-11-23T02:30:00+00:00"
PREVIOUS_STARTED = "2026-11-22T02:00:00+00:00"
PATHS = {"daemon.json": "/etc/docker/daemon.json", "data": "/var/lib/docker", "docker.sock": "/run/docker.sock"}


# ------------------------------------------------------------------------ capturing real shapes


def _normalize(text: str) -> str:
    """A test daemon's private paths as a stock host's (/tmp/hl-d1-x/daemon.json -> /etc/docker/...)."""
    return re.sub(r"/tmp/hl-d\d+-\w+/([\w.]+)", lambda m: PATHS.get(m.group(1), f"/var/lib/docker/{m.group(1)}"), text)


def _row(r: dict) -> list:
    subject = r["subject"].split(" ")[1] if r["subject"].startswith("container ") else ("image" if r["subject"] else "")
    return [f"{r['benchmark']}:{r['benchmark_version']}:{r['control_id']}", subject, r["status"],
            _normalize(r["expected"]), _normalize(r["found"]), [_normalize(e) for e in r["evidence"]],
            _normalize(r["differs"])]


def capture(out: Path = SHAPES) -> Path:
    """Verify real test daemons and keep their results (normalized) as the shapes file."""
    from tests.support.daemons import DaemonFactory
    from tests.support.images import import_busybox
    from tests.test_checks_daemon import COMPLIANT

    factory = DaemonFactory()
    runs: dict[str, list] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="hl-shapes-") as tmp:
            hosts: dict[str, dict] = {"unreachable": {"ssh_hostname": "127.0.0.1", "ssh_port": 1,
                                                      "ssh_connect_timeout": 3, "hardline_roles": ["docker"]}}
            for profile, config in (("compliant", COMPLIANT), ("default", {})):
                daemon = factory.start(config)
                image = import_busybox(daemon)
                log = ["--log-driver", "json-file"]  # the test machine has no journald
                daemon.docker("run", "-d", *log, "--name", "web", "--read-only", "--user", "65534:65534",
                              "--restart", "on-failure:3", "--health-cmd", "true", "--security-opt",
                              "no-new-privileges", "--cap-drop", "ALL", image, "sleep", "86400", check=True)
                daemon.docker("run", "-d", *log, "--name", "api", image, "sleep", "86400", check=True)
                daemon.docker("run", "-d", *log, "--name", "edge", "--user", "0:0", "-v", "/run:/host-run:ro",
                              "--cap-add", "SYS_PTRACE", "--restart", "always", image, "sleep", "86400", check=True)
                hosts[profile] = {"docker_socket_path": str(daemon.socket), "docker_pidfile": str(daemon.pidfile),
                                  "hardline_roles": ["docker"]}
                if profile == "compliant":
                    hosts[profile]["docker_userns_remap"] = "default"
            for profile in PROFILES:
                inventory, results = Path(tmp) / f"{profile}.py", Path(tmp) / f"{profile}.json"
                name = "unreachable" if profile == "unreachable" else "@local"
                inventory.write_text(f"hosts = [({name!r}, {hosts[profile]!r})]\n")
                subprocess.run([sys.executable, "-m", "hardline.cli", "verify", str(inventory), "--json", str(results),
                                "-q"], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
                runs[profile] = [_row(r) for r in json.loads(results.read_text())["results"]]
    finally:
        factory.stop_all()
    lines = ",\n".join(f"  {json.dumps(p)}: [\n" + ",\n".join("   " + json.dumps(row) for row in rows) + "\n  ]"
                       for p, rows in runs.items())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text('{"source": "hardline verify of real test daemons: tests/support/report_fleet.py capture()",\n'
                   ' "runs": {\n' + lines + "\n }\n}\n")
    return out


# ---------------------------------------------------------------------------- synthetic fleet


def _load_shapes() -> dict[str, dict[tuple[str, str], list]]:
    """{profile: {(control key, subject template): [status, expected, found, evidence, differs]}}."""
    runs = json.loads(SHAPES.read_text())["runs"]
    return {p: {(row[0], row[1]): row[2:] for row in rows} for p, rows in runs.items()}


def _hex(rnd: random.Random) -> str:
    return "".join(rnd.choice("0123456789abcdef") for _ in range(12))


def _result(host: str, control, catalog, shape: list, subject: str = "") -> Result:
    status, expected, found, evidence, differs = shape
    return Result(host=host, benchmark=catalog.benchmark, benchmark_version=catalog.version, control_id=control.id,
                  slug=control.slug, title=control.title, section=control.section,
                  section_title=catalog.section_title(control.section), level=control.level,
                  automated=control.automated, status=status, expected=expected, found=found, evidence=list(evidence),
                  remediation=control.remediation, duration=0.0004, subject=subject, differs=differs)


def docker_host(name: str, rnd: random.Random, shapes, hardening: float, containers: int,
                profile: str = "") -> list[Result]:
    """CIS Docker and platform results of one host from the real shapes (see the module docstring)."""
    names = {t: [] for t in TEMPLATES}
    for n in range(containers):
        template = rnd.choices(TEMPLATES, weights=(hardening, 1, 1 - hardening + 0.1))[0]
        service = SERVICES[n % len(SERVICES)]
        names[template].append(f"container {service.rsplit('/', 1)[-1].split(':')[0]}-{n // len(SERVICES) + 1} "
                               f"({service}) {_hex(rnd)}")
    images = [f"image {s} {_hex(rnd)}" for s in SERVICES[:max(1, min(containers, len(SERVICES)))]]
    templates: dict[str, set[str]] = {}
    for reached in ("compliant", "default"):
        for key, template in shapes[reached]:
            templates.setdefault(key, set()).add(template)

    # a host's containers run under one daemon (user namespaces remapped or not): their results
    # come from that daemon's capture; the host's own controls are drawn one by one
    daemon = "compliant" if hardening >= 0.8 else "default"

    def draw(key: str, template: str) -> list | None:
        chosen = daemon if template else ("compliant" if rnd.random() < hardening else "default")
        return shapes[chosen].get((key, template)) or shapes["default"].get((key, template))

    results = []
    for benchmark, version in (("cis-docker", "1.6.0"), ("hardline-platform", "1")):
        catalog = load_catalog(benchmark, version)
        for control in catalog.controls:
            key, seen = control.key, templates.get(control.key, set())
            if profile:  # an unreachable host: one result per control, as the real one had
                row = shapes[profile].get((key, ""))
                results += [_result(name, control, catalog, row)] if row else []
            elif "" in seen:
                results.append(_result(name, control, catalog, draw(key, "")))
            elif "image" in seen:
                results += [_result(name, control, catalog, draw(key, "image"), subject) for subject in images]
            else:
                results += [_result(name, control, catalog, row, subject) for template in TEMPLATES
                            for subject in names[template] if (row := draw(key, template)) is not None]
    return results


K8S_SHAPES = {PASS: "as the benchmark requires", FAIL: "not as the benchmark requires"}


def kubernetes_host(name: str, roles: set[str], rnd: random.Random, hardening: float, cluster: bool) -> list[Result]:
    """CIS Kubernetes 1.20 results made from the catalog (see the module docstring)."""
    catalog = load_catalog("cis-kubernetes", "1.20")
    results = []
    for control in catalog.controls:
        if (control.scope == "cluster") != cluster or not (cluster or control.applies_to(roles)):
            continue
        if not control.automated:
            shape = [MANUAL, "", f"(synth) review: {control.title}", [], ""]
        else:
            status = PASS if rnd.random() < hardening else FAIL
            target = json.dumps(control.params.get("target", {}), sort_keys=True)
            shape = [status, f"(synth) {control.kind} {target}", f"(synth) {K8S_SHAPES[status]}", [], ""]
        results.append(_result(name, control, catalog, shape))
    return results


def _waive(r: Result, reason: str, expires: str, expired: bool) -> Result:
    waiver = {"reason": reason, "approved_by": "change board CAB-1042", "expires": expires, "expired": expired,
              "underlying_status": r.status}
    if expired:
        return replace(r, waiver=waiver, evidence=r.evidence + [f"waiver expired on {expires}: the control counts again"])
    return replace(r, status=WAIVED, waiver=waiver, evidence=[f"waived ({reason}); check said {r.status}"] + r.evidence)


def fleet_results(hosts: int = 50, containers: int = 20, seed: int = 12, k8s_nodes: int = 10) -> list[Result]:
    """The results of one synthetic fleet run (the module docstring says what is real in it)."""
    rnd = random.Random(seed)
    shapes = _load_shapes()
    results: list[Result] = []
    for i in range(hosts):
        k8s = i >= hosts - k8s_nodes
        name = (f"k8s-{'cp' if i < hosts - k8s_nodes + 3 else 'node'}-{i + 1:02d}" if k8s
                else f"docker-{['fra', 'ams', 'lon'][i % 3]}-{i + 1:02d}")
        hardening = rnd.choice((0.35, 0.6, 0.8, 0.9, 0.97))
        profile = "unreachable" if i in (7, 31) else ""
        host = docker_host(name, rnd, shapes, hardening, containers, profile)
        if k8s:
            roles = {"k8s_control_plane", "k8s_etcd"} if name.startswith("k8s-cp") else {"k8s_worker"}
            host += kubernetes_host(name, roles, rnd, hardening, cluster=False)
        if i % 4 == 1:  # an accepted deviation, and on some hosts its waiver has run out
            reasons = {"2.12": "no authorization plugin on this platform yet",
                       "5.11": "memory is limited by the host's systemd slice"}
            host = [_waive(r, reasons[r.control_id], "2027-06-30", False)
                    if r.control_id in reasons and r.status == FAIL else r for r in host]
        if i % 9 == 2:
            host = [_waive(r, "legacy app needs inter-container traffic", "2026-01-31", True)
                    if r.control_id == "2.2" and r.status == FAIL else r for r in host]
        if i % 6 == 3:
            host = [replace(r, differs='differs from inventory: log-driver = "syslog", inventory says "journald"')
                    if r.control_id == "2.13" and r.status == PASS else r for r in host]
        results += host
    if k8s_nodes:
        results += kubernetes_host("cluster/prod", set(), rnd, 0.7, cluster=True)
    return results


def previous_of(results: list[Result], seed: int = 13, flips: float = 0.03) -> list[Result]:
    """An earlier run of the same fleet: a few results had another status (fixed since, or
    newly failing since) and one host was not in it."""
    rnd = random.Random(seed)
    other = {PASS: FAIL, FAIL: PASS, ERROR: PASS, SKIP: SKIP, MANUAL: MANUAL, WAIVED: FAIL}
    hosts = sorted({r.host for r in results})
    return [replace(r, status=other[r.status]) if rnd.random() < flips else r
            for r in results if r.host != hosts[-1]]


def drift_plan(results: list[Result]) -> dict:
    """A drift section for the run (as ``hardline drift`` attaches): the unreachable hosts could
    not be planned, every fifth host would get daemon.json and a sysctl back."""
    hosts = sorted({r.host for r in results if not r.host.startswith("cluster/")})
    unreachable = {r.host for r in results if r.status == ERROR and r.found.startswith("host could not be verified")}
    planned = [h for h in hosts if h not in unreachable]
    changes = {h: (["Write /etc/docker/daemon.json", "Set sysctl kernel.kptr_restrict = 2"] if i % 5 == 0 else [])
               for i, h in enumerate(planned)}
    conditional = {h: ["Restart docker after a daemon.json change"] if ops else [] for h, ops in changes.items()}
    diff = ('\n+++ desired\n@@ -1,3 +1,4 @@\n {\n-  "icc": true,\n'
            '+  "icc": false,\n+  "no-new-privileges": true,\n }')
    plan = Plan(hosts, planned, changes, conditional, [f"--- {h}:/etc/docker/daemon.json{diff}" for h, ops in changes.items() if ops][:3],
                returncode=1, output="pyinfra: 2 hosts failed to connect")
    return Drift(plan, [r for r in results if r.host in hosts], hosts).to_dict()


def fleet_runs(hosts: int = 50, containers: int = 20, seed: int = 12) -> tuple[RunResults, RunResults]:
    """(previous run, current run) of the synthetic fleet. The current one is what ``hardline
    report docker.json kubernetes.json`` makes of two nightly runs (so the report has its
    merged-runs table); a drift section is attached as well, so that one report shows every
    part (``hardline drift`` attaches it to a single run)."""
    current = fleet_results(hosts, containers, seed)
    before = RunResults.new(previous_of(current), started=PREVIOUS_STARTED, finished="2026-11-22T02:01:10+00:00",
                            duration=70.2, label="nightly 2026-11-22")
    fingerprint = {"path": "inventories/prod.py", "sha256": "5" * 64,
                   "files": [{"path": "inventories/prod.py", "sha256": "6" * 64}]}
    runs = []
    for label, wanted, started in (("nightly docker", False, STARTED), ("nightly kubernetes", True, K8S_STARTED)):
        run = RunResults.new([r for r in current if (r.benchmark == "cis-kubernetes") == wanted], started=started,
                             duration=67.4, label=label, command=["hardline", "verify", "inventories/prod.py"])
        run.meta["inventory"] = fingerprint
        runs.append(run)
    after = merge_runs(runs)
    after.meta["drift"] = drift_plan(after.results)
    return before, after


if __name__ == "__main__":
    if sys.argv[1:] == ["--capture"]:
        print(capture())
    else:
        sys.exit("usage: python3 -m tests.support.report_fleet --capture")
