"""`hardline verify` and `pytest benchmarks/` over real SSH against several real daemons:
JUnit content, exit codes, unreachable hosts and round trips per host."""

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hardline.results import fold
from tests.support.daemons import DockerDaemon
from tests.support.verify import docker_host, gather_counted
from tests.test_checks_daemon import COMPLIANT

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def fleet(session_daemon_factory, sshd, tmp_path_factory):
    """Three inventory hosts reached over SSH: a compliant daemon, a default one, and a host
    whose SSH port is closed."""
    good = session_daemon_factory(COMPLIANT)
    bad = session_daemon_factory({})
    tmp = tmp_path_factory.mktemp("fleet")

    def host(daemon: DockerDaemon, **extra):
        return sshd.pyinfra_data(docker_socket_path=str(daemon.socket), docker_pidfile=str(daemon.pidfile), **extra)

    hosts = {
        "compliant": host(good, docker_userns_remap="default"),
        "default": host(bad),
        "unreachable": {**sshd.pyinfra_data(), "ssh_port": 1, "ssh_connect_timeout": 3},
    }
    inventory = tmp / "fleet.py"
    inventory.write_text(f"docker_hosts = {list(hosts.items())!r}\n")
    (tmp / "group_data").mkdir()
    (tmp / "group_data" / "all.py").write_text(
        'hardline_waivers = [{"id": "2.12", "reason": "no authz plugin in tests", "approved_by": "qa", "expires": "2099-01-01"}]\n')
    return inventory


def hardline(*args):
    return subprocess.run([sys.executable, "-m", "hardline.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def cases(junit: Path):
    tree = ET.parse(junit)
    out = {}
    for case in tree.iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        out[(props["host"], props["cis_id"])] = (case, props)
    return out


def test_verify_fleet_junit_and_exit_code(fleet, tmp_path):
    junit = tmp_path / "out.xml"
    run = hardline("verify", str(fleet), "--benchmark", "cis-docker", "--section", "2", "--junit", str(junit))
    assert run.returncode == 2, run.stdout + run.stderr  # the unreachable host: ERROR wins
    got = cases(junit)
    case, props = got[("compliant", "2.2")]
    assert case.get("name") == "2.2 Containers on the default bridge cannot talk to each other"
    assert props == {"benchmark": "cis-docker", "benchmark_version": "1.6.0", "cis_id": "2.2",
                     "control": "cis-docker:1.6.0:2.2", "slug": "docker_icc_disabled", "level": "1",
                     "automated": "true", "section": "2", "host": "compliant", "status": "PASS"}
    compliant = {cid: p["status"] for (h, cid), (_, p) in got.items() if h == "compliant"}
    assert {s for s in compliant.values()} <= {"PASS", "MANUAL", "WAIVED", "SKIP"}
    assert compliant["2.7"] == "SKIP"  # no TCP listener: nothing to judge
    assert compliant["2.12"] == "WAIVED"
    failure = got[("default", "2.2")][0].find("failure")
    assert failure is not None and "expected: icc = false" in failure.text and "found: icc = true" in failure.text
    unreachable = [c for (h, _), (c, p) in got.items() if h == "unreachable" and p["automated"] == "true"]
    assert unreachable and all(c.find("error") is not None for c in unreachable)
    assert "unreachable" in run.stdout and "ERROR" in run.stdout


def test_exit_code_one_for_failures_zero_when_clean(fleet):
    assert hardline("verify", str(fleet), "--limit", "default", "--benchmark", "cis-docker", "--section", "2", "-q").returncode == 1
    clean = hardline("verify", str(fleet), "--limit", "compliant", "--benchmark", "cis-docker", "--section", "2", "-q")
    assert clean.returncode == 0, clean.stdout


def pytest_benchmarks(*args):
    return subprocess.run([sys.executable, "-m", "pytest", "benchmarks", *args, "-q", "-p", "no:cacheprovider"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_plain_pytest_benchmarks_agree_with_hardline_verify(fleet, tmp_path):
    junit, out = tmp_path / "pytest.xml", tmp_path / "verify.json"
    run = pytest_benchmarks("--inventory", str(fleet), "--section", "2", f"--junitxml={junit}")
    assert run.returncode == 1, run.stdout[-2000:]
    root = ET.parse(junit).getroot()
    by_name = {c.get("name"): c for c in root.iter("testcase")}
    icc = "cis-docker:1.6.0:2.2::docker_icc_disabled"
    assert by_name[f"test_control[compliant::{icc}]"].find("failure") is None
    assert by_name[f"test_control[default::{icc}]"].find("failure") is not None
    assert by_name[f"test_control[unreachable::{icc}]"].find("error") is not None
    props = {p.get("name"): p.get("value") for p in by_name[f"test_control[default::{icc}]"].iter("property")}
    assert props["cis_id"] == "2.2" and props["host"] == "default" and props["status"] == "FAIL"
    assert props["benchmark"] == "cis-docker" and props["benchmark_version"] == "1.6.0"
    # the same hosts through `hardline verify`: one verdict per (host, control, subject), the same
    hardline("verify", str(fleet), "--section", "2", "--json", str(out), "-q")
    verify = {}
    for r in json.loads(out.read_text())["results"]:
        key = f"test_control[{r['host']}::{r['benchmark']}:{r['benchmark_version']}:{r['control_id']}::{r['slug']}" + \
              (f"[{r['subject']}]" if r["subject"] else "") + "]"
        verify.setdefault(key, set()).add(r["status"])
    pytest_status = {name: next(p.get("value") for p in case.iter("property") if p.get("name") == "status")
                     for name, case in by_name.items()}
    assert set(pytest_status) == set(verify)
    assert {k: fold(v) for k, v in verify.items()} == pytest_status
    assert {s for s in pytest_status.values()} >= {"PASS", "FAIL", "ERROR", "MANUAL", "WAIVED"}


def test_pytest_markers_and_keywords_select_controls(fleet):
    level2 = pytest_benchmarks("--inventory", str(fleet), "--limit", "compliant", "-m", "level2 and cis_docker",
                               "--collect-only")
    ids = [line for line in level2.stdout.splitlines() if "::" in line]
    assert ids and all("cis-docker:1.6.0:" in i for i in ids)
    assert any(":2.9::" in i for i in ids) and not any(":2.2::" in i for i in ids)  # 2.9 is L2, 2.2 L1
    by_slug = pytest_benchmarks("--inventory", str(fleet), "-k", "docker_icc_disabled", "--collect-only")
    assert len([line for line in by_slug.stdout.splitlines() if "docker_icc_disabled" in line]) == 3


def test_wrong_host_key_is_error_not_pass(fleet, sshd, session_daemon_factory, tmp_path):
    other = tmp_path / "known_hosts"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    other.write_text(f"[127.0.0.1]:{sshd.port} " + (tmp_path / "k.pub").read_text())
    inv = tmp_path / "inv.py"
    inv.write_text(f"hosts = [('impostor', {{**{sshd.pyinfra_data()!r}, 'ssh_known_hosts_file': {str(other)!r}}})]\n")
    run = hardline("verify", str(inv), "--benchmark", "cis-docker", "--section", "2")
    assert run.returncode == 2 and "PASS 0" in run.stdout


def test_one_full_verify_costs_two_commands_per_host(session_daemon_factory, sshd):
    daemon = session_daemon_factory(COMPLIANT)
    data = sshd.pyinfra_data(docker_socket_path=str(daemon.socket), docker_pidfile=str(daemon.pidfile),
                             docker_userns_remap="default")
    facts, commands = gather_counted(docker_host(data, "compliant"))
    assert commands == 2 == facts.round_trips
    assert not facts.errors, facts.errors


def test_gathering_by_need_round_trips_and_sections(session_daemon_factory, sshd):
    """A host gathers only what its selected controls need: a Docker host's full verify (CIS Docker
    and the platform controls) costs 2 commands; the platform controls alone on a Docker host 2
    (HL-3.2 reads daemon.json, found in round 1); a Kubernetes worker (platform controls only)
    1 command that never calls docker."""
    from hardline.benchmarks.select import Selection

    daemon = session_daemon_factory(COMPLIANT)
    data = sshd.pyinfra_data(docker_socket_path=str(daemon.socket), docker_pidfile=str(daemon.pidfile),
                             docker_userns_remap="default")
    full, commands = gather_counted(docker_host(data, "compliant"))
    assert commands == 2 and {"info", "containers", "images", "exec_audit", "lsm"} <= set(full.sections)
    docker_only, commands = gather_counted(docker_host(data, "compliant"), Selection(benchmarks=("cis-docker",)))
    assert commands == 2 and "lsm" not in docker_only.sections and "modprobe" not in docker_only.sections
    kernel, commands = gather_counted(docker_host(data, "compliant"), Selection(("hardline-platform",), None, ("1",)))
    assert commands == 1 and set(kernel.sections) <= {"sysctl_runtime", "sysctl_files", "modprobe", "proc_modules",
                                                     "modprobe_config", "cmdline", "grub", "lsm"}
    worker, commands = gather_counted(docker_host({**data, "hardline_roles": ["k8s_worker"]}, "worker", groups=()),
                                      Selection(benchmarks=("hardline-platform",)))
    assert commands == 1 and not {"info", "dockerd", "containers", "images", "exec_audit"} & set(worker.sections)
