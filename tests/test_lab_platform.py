"""Platform hardening end to end on the lab VM (Debian 12, AppArmor, auditd, systemd,
cgroup v2, docker.io 20.10): the baseline fails the platform controls (with an unneeded
package, an unneeded running service and a blacklisted module loaded on purpose), SELinux asked
on this AppArmor-only host stops the deploy and is an ERROR in the verify, the deploy makes every
platform control pass (SKIP only where the control cannot apply: no GRUB, no SELinux, immutable
audit rules not asked), a re-deploy changes nothing, a container run with the hardened AppArmor
profile is denied what the profile forbids, runtime tampering fails the checks and the deploy
repairs it, and auditd_immutable makes the rules immutable.

Baseline, deploy, re-deploy and the verify after them are the session's hardening scenario
(``lab_hardened``, tests/support/labs.py: the unneeded things are planted there); this module
restores its snapshot "hardened" and goes on from there.

Set HARDLINE_LAB_DIR / HARDLINE_LAB_SSH_PORT to run it beside another lab VM."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from hardline.benchmarks.engine import verify_hosts
from hardline.inventory import load_hosts
from lab import qemu as lab
from lab.deploy import DeployRun, run_pyinfra
from tests.support.images import busybox_rootfs_tar

ROOT = Path(__file__).resolve().parent.parent
INVENTORY = ROOT / "inventories" / "lab.py"
pytestmark = pytest.mark.lab
# where a platform control cannot apply on the lab VM, and why
SKIPPED = {
    "HL-1.3": "host does not boot with GRUB",  # qemu -kernel/-append
    "HL-3.1": "selinux controls do not apply", "HL-3.2": "selinux controls do not apply",
    "HL-3.3": "selinux controls do not apply",
    "HL-6.2": "not asked (auditd_immutable: false)",
    "HL-2.3": "no running containers",  # the container check has no subject until a container runs
}
TIMES: dict[str, float] = {}


def ssh(command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    proc = lab.run_ssh(command, timeout=timeout)
    assert proc.returncode == 0, f"{command}: {proc.stdout}{proc.stderr}"
    return proc


def pyinfra(*args: str, inventory: Path = INVENTORY, step: str = "") -> DeployRun:
    started = time.monotonic()
    proc = run_pyinfra(inventory, *args, timeout=1200)
    if step:
        TIMES[step] = round(time.monotonic() - started, 1)
    return proc


def results(inventory: Path = INVENTORY, step: str = "") -> dict[str, list]:
    started = time.monotonic()
    out: dict[str, list] = {}
    for r in verify_hosts(load_hosts(str(inventory))):
        if r.control_id.startswith("HL-"):
            out.setdefault(r.control_id, []).append(r)
    if step:
        TIMES[step] = round(time.monotonic() - started, 1)
    return out


def status(res: dict[str, list]) -> dict[str, str]:
    order = ("ERROR", "FAIL", "PASS", "SKIP")
    return {cid: min((r.status for r in rs), key=order.index) for cid, rs in res.items()}


def variant(tmp: Path, name: str, **data) -> Path:
    """The lab inventory with some data changed (same group_data)."""
    folder = tmp / name
    folder.mkdir()
    (folder / "group_data").symlink_to(ROOT / "inventories" / "group_data")
    inv = folder / "lab.py"
    inv.write_text(f"from lab.qemu import inventory_data\ndocker_hosts = [('lab-vm', {{**inventory_data(), **{data!r}}})]\n")
    return inv


def platform(results: list) -> dict[str, list]:
    """The platform (HL-) results by control id."""
    out: dict[str, list] = {}
    for r in results:
        if r.control_id.startswith("HL-"):
            out.setdefault(r.control_id, []).append(r)
    return out


@pytest.fixture(scope="module")
def platform_lab(tmp_path_factory, lab_hardened, qemu_lab):
    tmp = tmp_path_factory.mktemp("platform")
    qemu_lab.restore("hardened")
    try:
        state = {"tmp": tmp, "before": platform(lab_hardened["before_results"]), "deploy": lab_hardened["deploy"],
                 "redeploy": lab_hardened["redeploy"], "after": platform(lab_hardened["after_results"])}
        selinux_inv = variant(tmp, "selinux", hardline_lsm="selinux")
        state["selinux_dry"] = pyinfra("--dry", inventory=selinux_inv)
        state["selinux_verify"] = results(selinux_inv)
        yield state
    finally:
        print("\nlab platform times (s):", TIMES)


def test_baseline_fails_the_platform_controls(platform_lab):
    before = status(platform_lab["before"])
    for cid in ("HL-1.1", "HL-1.2", "HL-2.2", "HL-4.2", "HL-5.1", "HL-5.2", "HL-6.1"):
        assert before[cid] == "FAIL", (cid, before[cid], platform_lab["before"][cid][0].found)
    found = {cid: rs[0].found for cid, rs in platform_lab["before"].items()}
    assert "hfs: loaded now" in found["HL-1.2"] and "cramfs" not in found["HL-1.2"].split(";")[0]
    assert found["HL-5.1"] == "installed: telnet"
    assert found["HL-5.2"] == "cups.service: enabled, active"
    assert "hardline-docker: not loaded" in found["HL-2.2"]
    assert "TasksMax=infinity, want TasksMax=8192" in found["HL-4.2"]
    # what the lab image already has: AppArmor on, cgroup v2; no containers, so HL-2.3 is SKIP
    assert before["HL-2.1"] == before["HL-4.1"] == "PASS"
    assert {cid for cid, s in before.items() if s == "SKIP"} == set(SKIPPED)


def test_selinux_asked_on_the_apparmor_host_is_an_error(platform_lab):
    dry = platform_lab["selinux_dry"]
    assert dry.returncode != 0
    assert "host lab-vm: hardline_lsm: selinux asked, but this host runs apparmor only" in dry.stdout, dry.stdout[-2000:]
    assert "Traceback" not in dry.stdout
    verified = status(platform_lab["selinux_verify"])
    assert verified["HL-3.1"] == verified["HL-3.2"] == verified["HL-3.3"] == "ERROR"
    assert "hardline_lsm is selinux but this host runs apparmor only" in platform_lab["selinux_verify"]["HL-3.1"][0].found
    assert verified["HL-2.1"] == "SKIP"


def test_deploy_makes_every_platform_control_pass(platform_lab):
    deploy = platform_lab["deploy"]
    assert deploy.returncode == 0, deploy.stdout[-4000:]
    after = status(platform_lab["after"])
    assert {cid: s for cid, s in after.items() if s not in ("PASS", "SKIP")} == {}, {
        cid: rs[0].found for cid, rs in platform_lab["after"].items() if rs[0].status != "PASS"}
    for cid, why in SKIPPED.items():
        assert after[cid] == "SKIP" and why in platform_lab["after"][cid][0].found, (cid, platform_lab["after"][cid][0].found)
    assert "cpu.max=150000 100000" in platform_lab["after"]["HL-4.2"][0].found
    assert "install ok installed" not in ssh("dpkg-query -W -f='${Status}' telnet 2>/dev/null || true").stdout
    assert ssh("systemctl is-enabled cups.service || true").stdout.strip() == "masked"
    assert ssh("grep -c '^hfs ' /proc/modules || true").stdout.strip() == "0"
    assert ssh("modprobe hfs 2>&1; echo rc=$?").stdout.strip().endswith("rc=1")


def test_redeploy_changes_nothing(platform_lab):
    redeploy = platform_lab["redeploy"]
    assert redeploy.returncode == 0
    assert redeploy.changed == 0, redeploy.stdout[-4000:]


def test_container_is_confined_by_the_hardened_profile(platform_lab):
    tar = busybox_rootfs_tar(platform_lab["tmp"] / "busybox.tar")
    with tar.open("rb") as fh:
        subprocess.run(lab.ssh_command("docker import - hl-busybox:1"), stdin=fh, check=True, capture_output=True,
                       timeout=300)
    run = "docker run --rm --disable-content-trust"
    confined = lab.run_ssh(f"{run} --security-opt apparmor=hardline-docker hl-busybox:1 ping -c1 -W2 127.0.0.1", timeout=300)
    assert confined.returncode != 0 and "can't create raw socket: Permission denied" in confined.stdout + confined.stderr
    unconfined = lab.run_ssh(f"{run} --security-opt apparmor=unconfined hl-busybox:1 ping -c1 -W2 127.0.0.1", timeout=300)
    assert unconfined.returncode == 0, unconfined.stdout + unconfined.stderr  # the denial is AppArmor's, not docker's
    mount = lab.run_ssh(f"{run} --cap-add SYS_ADMIN --security-opt apparmor=hardline-docker hl-busybox:1 "
                        "mount -t tmpfs none /tmp", timeout=300)
    assert mount.returncode != 0 and "Permission denied" in mount.stdout + mount.stderr
    assert ssh(f"{run} --security-opt apparmor=hardline-docker hl-busybox:1 cat /proc/self/attr/current"
               ).stdout.strip() == "hardline-docker (enforce)"
    # HL-2.3 per running container: the confined one passes, one on Docker's stock profile fails
    ssh("docker run -d --disable-content-trust --name confined --security-opt apparmor=hardline-docker hl-busybox:1 "
        "sleep 600 && docker run -d --disable-content-trust --name stock hl-busybox:1 sleep 600")
    verdicts = {r.subject.split()[1]: r for r in results()["HL-2.3"]}
    assert verdicts["confined"].status == "PASS" and verdicts["stock"].status == "FAIL"
    assert verdicts["stock"].found == "AppArmorProfile = 'docker-default'"
    ssh("docker rm -f confined stock")


def test_runtime_tampering_fails_and_the_deploy_repairs_it(platform_lab):
    ssh("apparmor_parser -r -C /etc/apparmor.d/hardline-docker && systemctl set-property --runtime docker.service "
        "TasksMax=100 && auditctl -W /etc/passwd -p wa -k identity && modprobe -r hfs; insmod "
        "$(modinfo -n hfs) || true")
    tampered = results()
    found = {cid: rs[0].found for cid, rs in tampered.items()}
    assert status(tampered)["HL-2.2"] == "FAIL" and "hardline-docker: loaded in complain mode" in found["HL-2.2"]
    assert status(tampered)["HL-4.2"] == "FAIL" and "docker.service: TasksMax=100, want TasksMax=8192" in found["HL-4.2"]
    assert status(tampered)["HL-6.1"] == "FAIL" and "not loaded: -w /etc/passwd -p wa -k identity" in found["HL-6.1"]
    assert status(tampered)["HL-1.2"] == "FAIL" and "hfs: loaded now" in found["HL-1.2"]
    repair = pyinfra(step="repair_deploy")
    assert repair.returncode == 0 and repair.changed >= 4, repair.stdout[-4000:]
    repaired = status(results())
    assert {cid: s for cid, s in repaired.items() if s not in ("PASS", "SKIP")} == {}


def test_immutable_audit_rules_when_the_inventory_asks(platform_lab):
    inv = variant(platform_lab["tmp"], "immutable", auditd_immutable=True)
    deploy = pyinfra(inventory=inv, step="deploy_immutable")
    assert deploy.returncode == 0, deploy.stdout[-4000:]
    assert ssh("auditctl -s | grep '^enabled'").stdout.strip() == "enabled 2"
    result = results(inv)["HL-6.2"][0]
    assert result.status == "PASS" and result.found == "enabled 2, -e 2 persisted"
    again = pyinfra(inventory=inv)
    assert again.returncode == 0 and again.changed == 0, again.stdout[-4000:]
