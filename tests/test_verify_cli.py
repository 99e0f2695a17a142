"""`hardline verify` and `pytest benchmarks/` over real SSH against several real daemons:
JUnit content, exit codes, unreachable hosts and round trips per host."""

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hardline.benchmarks.connect import testinfra_host as connect_host
from hardline.benchmarks.facts import gather
from hardline.inventory import check_host
from tests.support.daemons import DockerDaemon
from tests.support.verify import CountingHost
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
    run = hardline("verify", str(fleet), "--section", "2", "--junit", str(junit))
    assert run.returncode == 2, run.stdout + run.stderr  # the unreachable host: ERROR wins
    got = cases(junit)
    case, props = got[("compliant", "2.2")]
    assert case.get("name") == "2.2 Containers on the default bridge cannot talk to each other"
    assert props == {"cis_id": "2.2", "slug": "docker_icc_disabled", "level": "1", "automated": "true",
                     "section": "2", "host": "compliant", "status": "PASS"}
    compliant = {cid: p["status"] for (h, cid), (_, p) in got.items() if h == "compliant"}
    assert {s for s in compliant.values()} <= {"PASS", "MANUAL", "WAIVED"}
    assert compliant["2.12"] == "WAIVED"
    failure = got[("default", "2.2")][0].find("failure")
    assert failure is not None and "expected: icc = false" in failure.text and "found: icc = true" in failure.text
    unreachable = [c for (h, _), (c, p) in got.items() if h == "unreachable" and p["automated"] == "true"]
    assert unreachable and all(c.find("error") is not None for c in unreachable)
    assert "unreachable" in run.stdout and "ERROR" in run.stdout


def test_exit_code_one_for_failures_zero_when_clean(fleet):
    assert hardline("verify", str(fleet), "--limit", "default", "--section", "2", "-q").returncode == 1
    clean = hardline("verify", str(fleet), "--limit", "compliant", "--section", "2", "-q")
    assert clean.returncode == 0, clean.stdout


def test_plain_pytest_benchmarks(fleet, tmp_path):
    junit = tmp_path / "pytest.xml"
    run = subprocess.run([sys.executable, "-m", "pytest", "benchmarks", "--inventory", str(fleet), "--section", "2",
                          f"--junitxml={junit}", "-q", "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 1, run.stdout[-2000:]
    root = ET.parse(junit).getroot()
    by_name = {c.get("name"): c for c in root.iter("testcase")}
    assert by_name["test_control[compliant::2.2]"].find("failure") is None
    assert by_name["test_control[default::2.2]"].find("failure") is not None
    assert by_name["test_control[unreachable::2.2]"].find("error") is not None
    props = {p.get("name"): p.get("value") for p in by_name["test_control[default::2.2]"].iter("property")}
    assert props["cis_id"] == "2.2" and props["host"] == "default" and props["status"] == "FAIL"


def test_wrong_host_key_is_error_not_pass(fleet, sshd, session_daemon_factory, tmp_path):
    other = tmp_path / "known_hosts"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    other.write_text(f"[127.0.0.1]:{sshd.port} " + (tmp_path / "k.pub").read_text())
    inv = tmp_path / "inv.py"
    inv.write_text(f"hosts = [('impostor', {{**{sshd.pyinfra_data()!r}, 'ssh_known_hosts_file': {str(other)!r}}})]\n")
    run = hardline("verify", str(inv), "--section", "2")
    assert run.returncode == 2 and "PASS 0" in run.stdout


def test_one_full_verify_costs_two_commands_per_host(session_daemon_factory, sshd):
    daemon = session_daemon_factory(COMPLIANT)
    data = sshd.pyinfra_data(docker_socket_path=str(daemon.socket), docker_pidfile=str(daemon.pidfile),
                             docker_userns_remap="default")
    config = check_host("compliant", [], [("t", data)], data)
    counting = CountingHost(connect_host(config.name, config.connection))
    facts = gather(counting, config.data)
    assert counting.commands == 2 == facts.round_trips
    assert not facts.errors, facts.errors
