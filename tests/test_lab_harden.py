"""End to end on the lab VM (Debian 12 under QEMU, systemd, AppArmor, auditd, docker.io):
baseline verify fails, --dry changes nothing, the deploy makes sections 1-3 pass, a second
deploy changes nothing, and a daemon.json that dockerd refuses is rolled back.

The scenario itself (baseline, dry run, deploy, re-deploy, verify) runs once per session in the
``lab_hardened`` fixture (tests/support/labs.py), which leaves the snapshot "hardened"; this
module restores it before looking at the VM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab import qemu as lab
from lab.deploy import DeployRun, run_pyinfra

ROOT = Path(__file__).resolve().parent.parent
INVENTORY = ROOT / "inventories" / "lab.py"
pytestmark = pytest.mark.lab


def pyinfra(*args: str, inventory: Path = INVENTORY) -> DeployRun:
    """pyinfra's output (it logs to stderr) in .stdout, what it changed read from its state."""
    return run_pyinfra(inventory, *args, timeout=900)


def sections_1_to_3(statuses: dict[str, str]) -> dict[str, str]:
    return {cid: s for cid, s in statuses.items() if cid.split(".")[0] in ("1", "2", "3") or cid.startswith("HL-")}


@pytest.fixture(scope="module")
def hardened(lab_hardened, qemu_lab):
    qemu_lab.restore("hardened")
    return lab_hardened


def test_baseline_fails_the_daemon_and_audit_items(hardened):
    before = sections_1_to_3(hardened["before"])
    for cid in ("1.1.3", "1.1.5", "2.2", "2.9", "2.13", "2.14", "2.15", "2.16", "HL-1.1"):
        assert before[cid] == "FAIL", (cid, before[cid])
    assert before["1.1.11"] == before["3.17"] == "SKIP"  # Debian ships no daemon.json
    assert before["2.12"] == "WAIVED"  # inventories/group_data/all.py
    assert before["1.1.1"] == "PASS"  # the lab image has /var/lib/docker on its own disk


def test_dry_run_shows_diff_and_changes_nothing(hardened):
    out = hardened["dry"].stdout
    assert hardened["dry"].returncode == 0
    assert '+  "icc": false,' in out and "lab-vm:/etc/docker/daemon.json" in out
    assert hardened["after_dry"] == hardened["before"]


def test_deploy_makes_sections_1_to_3_pass(hardened):
    after = sections_1_to_3(hardened["after"])
    not_passing = {cid: s for cid, s in after.items() if s not in ("PASS", "SKIP", "MANUAL", "WAIVED")}
    assert not_passing == {}
    # SKIP only where the thing checked does not exist on Debian 12 or is not configured
    assert {cid for cid, s in after.items() if s == "SKIP"} == {
        "1.1.13", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13", "3.14", "3.21", "3.22",
        # nothing to judge: dockerd listens on no TCP socket (2.7 TLS), no container runs (HL-2.3)
        "2.7", "HL-2.3",
        # platform controls that cannot apply to the lab VM: no GRUB (qemu -kernel), AppArmor not
        # SELinux, immutable audit rules not asked (tests/test_lab_platform.py)
        "HL-1.3", "HL-3.1", "HL-3.2", "HL-3.3", "HL-6.2"}
    assert hardened["deploy"].changed > 10


def test_second_deploy_changes_nothing(hardened):
    assert hardened["redeploy"].returncode == 0
    assert hardened["redeploy"].changed == 0, hardened["redeploy"].stdout[-4000:]


def test_effective_state_on_the_vm(hardened):
    daemon = json.loads(lab.run_ssh("cat /etc/docker/daemon.json").stdout)
    assert daemon["icc"] is False and daemon["userns-remap"] == "dockremap" and daemon["log-driver"] == "journald"
    assert daemon["default-ulimits"]["nofile"] == {"Name": "nofile", "Soft": 65536, "Hard": 65536}
    rules = lab.run_ssh("auditctl -l").stdout
    assert "-w /usr/sbin/dockerd -p rwxa -k docker" in rules and "-w /var/lib/docker -p rwxa -k docker" in rules
    assert lab.run_ssh("docker info --format '{{json .SecurityOptions}}'").stdout.count("name=userns") == 1


def test_bad_daemon_json_is_rolled_back_and_docker_stays_up(hardened, tmp_path):
    good = lab.run_ssh("cat /etc/docker/daemon.json").stdout
    inv = tmp_path / "lab_bad.py"
    inv.write_text("from lab.qemu import inventory_data\n"
                   "docker_hosts = [('lab-vm', {**inventory_data(), 'docker_daemon_extra': {'bip': 'not-an-ip'}})]\n")
    (tmp_path / "group_data").symlink_to(ROOT / "inventories" / "group_data")
    bad = pyinfra(inventory=inv)
    out = bad.stdout
    assert bad.returncode != 0
    assert "rolled back, docker is running with the previous configuration" in out
    assert lab.run_ssh("cat /etc/docker/daemon.json").stdout == good
    assert lab.run_ssh("systemctl is-active docker && docker info --format '{{.ServerVersion}}'").returncode == 0
    assert lab.run_ssh("ls /etc/docker/ | grep -c hardline-bak").stdout.strip() != "0"
