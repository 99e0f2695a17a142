"""Platform (HL-) checks on this machine's real kernel, audit subsystem, dpkg database and files,
and the inventory refusals. This machine has no AppArmor, no SELinux, no systemd running, no
loadable module support, no GRUB and cgroup v1: the paths these give (FAIL, SKIP, ERROR) are
tested here; the passing side of AppArmor, modules, cgroup v2, engine limits and services is
tested on the lab VM (tests/test_lab_platform.py). GRUB files and the absence of systemd are
tested in a Debian userland container (tests/support/hostimage.py), so that neither depends on
(nor touches) this machine's /boot or init system."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from hardline.inventory import InventoryError, check_host
from tests.support.hostimage import HostContainer
from tests.support.verify import docker_host, verify

ROOT = Path(__file__).resolve().parent.parent
KEY = "hardline-platform-test"


def auditctl(*args):
    return subprocess.run(["auditctl", *args], capture_output=True, text=True)


def refused(**data) -> list[str]:
    with pytest.raises(InventoryError) as err:
        check_host("h1", ["docker_hosts"], [("inv.py", data)], data)
    return [str(p) for p in err.value.problems]


# ---- inventory refusals ---------------------------------------------------------------------------

def test_removing_sshd_package_manager_or_engine_is_refused():
    msgs = refused(platform_packages_absent=["telnet", "openssh-server", "apt", "docker.io", "containerd"])
    assert len(msgs) == 4
    assert msgs[0] == ("inv.py: host h1: platform_packages_absent: refusing to remove 'openssh-server': it is the SSH "
                       "server, the package manager, the container engine or the base system the deploy relies on")
    msgs = refused(platform_services_masked=["cups.service", "ssh.service", "sshd", "docker.socket", "containerd.service"])
    assert len(msgs) == 4 and all("refusing to mask" in m for m in msgs)


def test_lsm_and_selinux_mistakes_are_refused():
    (msg,) = refused(hardline_lsm="tomoyo")
    assert msg.endswith("hardline_lsm: must be one of auto, apparmor, selinux, got 'tomoyo'")
    (msg,) = refused(hardline_lsm="apparmor", selinux_booleans={"container_manage_cgroup": "on"})
    assert "selinux_booleans: set while hardline_lsm is apparmor" in msg
    (msg,) = refused(selinux_booleans={"container_manage_cgroup": "yes"})
    assert msg.endswith("container_manage_cgroup: must be on or off, got 'yes'")
    (msg,) = refused(hardline_lsm="selinux", kernel_boot_params=["security=apparmor"])
    assert "enables AppArmor while hardline_lsm is selinux" in msg


def test_unknown_sysctl_limits_rules_and_profiles_are_refused():
    (msg,) = refused(sysctl_settings={"kernal.dmesg_restrict": 1})
    assert "sysctl_settings: 'kernal.dmesg_restrict' is not a sysctl: no /proc/sys/kernal" in msg
    msgs = refused(cgroup_engine_limits={"TasksMax": "lots", "CPUShares": "10"})
    assert any("TasksMax: 'lots' is not a valid value" in m for m in msgs)
    assert any("unknown limit 'CPUShares'" in m for m in msgs)
    (msg,) = refused(auditd_platform_rules=["-e 2"])
    assert "set auditd_immutable instead of -e" in msg
    (msg,) = refused(apparmor_workload_profiles={"web": "deny /srv/** w,"})
    assert "web: must be a list of AppArmor rules" in msg
    (msg,) = refused(apparmor_profile_rules=["deny /srv/** w"])
    assert "is not one AppArmor rule ending with a comma" in msg


# ---- LSM ------------------------------------------------------------------------------------------

def test_apparmor_checks_fail_without_apparmor():
    results = verify({}, ["HL-2.1", "HL-2.2", "HL-2.3"])
    assert {r.status for r in results.values()} == {"FAIL"}
    assert results["HL-2.1"].found.startswith("AppArmor is not enabled")
    assert "no profile can confine anything" in results["HL-2.2"].found


def test_selinux_checks_skip_on_auto_and_fail_when_asked_without_selinux():
    auto = verify({}, ["HL-3.1", "HL-3.2", "HL-3.3"])
    assert {r.status for r in auto.values()} == {"SKIP"}
    assert "selinux controls do not apply: hardline_lsm auto means apparmor" in auto["HL-3.1"].found
    asked = verify({"hardline_lsm": "selinux"}, ["HL-3.1", "HL-2.1"])
    assert asked["HL-3.1"].status == "FAIL" and "SELinux is not enabled" in asked["HL-3.1"].found
    assert asked["HL-2.1"].status == "SKIP"  # the inventory chose SELinux: AppArmor does not apply


def test_selinux_asked_on_a_host_without_it_stops_the_deploy(tmp_path):
    """The deploy reads the host's LSM (here: none) and refuses before any operation."""
    inv = tmp_path / "inv.py"
    inv.write_text('docker_hosts = [("@local", {"hardline_lsm": "selinux"})]\n')
    entry = tmp_path / "lsm_only.py"
    entry.write_text("from hardline.deploys.lsm import lsm\nlsm()\n")
    proc = subprocess.run([sys.executable, "-m", "pyinfra", str(inv), str(entry), "--dry"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "host @local: hardline_lsm: selinux asked, but this host has no SELinux enabled" in out, out[-2000:]
    assert "Traceback" not in out


# ---- kernel -------------------------------------------------------------------------------------

def test_modules_on_this_kernel():
    result = verify({}, ["HL-1.2"])["HL-1.2"]
    if not Path("/proc/modules").exists():  # this machine: no loadable module support
        assert result.status == "PASS" and "no loadable module support" in result.found
    else:  # a kernel with modules: judged on the blacklist and what is loaded (both sides on the lab VM)
        assert result.status in ("PASS", "FAIL") and "no loadable module support" not in result.found, result.found


@pytest.fixture(scope="module")
def container(session_daemon_factory):
    """A Debian userland container: no systemd running in it, and a /boot of its own."""
    daemon = session_daemon_factory({})
    with HostContainer(daemon) as host:
        env = daemon.env()
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield host
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def test_boot_params_running_grub_and_not_grub(container):
    running = Path("/proc/cmdline").read_text().split()  # the container's kernel is this machine's

    def write_cfg(args: str) -> None:
        container.sh(f"mkdir -p /boot/grub && printf %s {shlex.quote(chr(10).join(['menuentry Debian {', args, '}']))} "
                     "> /boot/grub/grub.cfg")

    def hl13(data: dict) -> Any:
        return verify(data, ["HL-1.3"], name=container.host)["HL-1.3"]

    data = {"kernel_boot_params": ["audit=1", "slab_nomerge"], "kernel_cgroup_v2": False}
    container.sh("rm -rf /boot/grub")
    result = hl13(data)
    assert result.status == "SKIP" and result.found.startswith("host does not boot with GRUB (no grub.cfg): missing audit=1")
    ok = hl13({"kernel_boot_params": running[:2], "kernel_cgroup_v2": False})
    assert ok.status == "PASS" and "not persisted by hardline" in ok.found
    write_cfg("\tlinux\t/boot/vmlinuz root=/dev/vda ro quiet")
    result = hl13(data)
    assert result.status == "FAIL" and "/boot/grub/grub.cfg lacks audit=1 slab_nomerge" in result.found
    write_cfg("\tlinux\t/boot/vmlinuz root=/dev/vda ro audit=1 slab_nomerge")
    result = hl13(data)
    assert result.status == "FAIL" and "grub.cfg has them: reboot pending" in result.found
    write_cfg("\tlinux\t/boot/vmlinuz " + " ".join(running[:2]))
    assert hl13({"kernel_boot_params": running[:2], "kernel_cgroup_v2": False}).status == "PASS"


def test_cgroup_version_reported():
    version = subprocess.run(["stat", "-fc", "%T", "/sys/fs/cgroup"], capture_output=True, text=True).stdout.strip()
    result = verify({}, ["HL-4.1"])["HL-4.1"]
    if version == "cgroup2fs":
        assert result.status == "PASS" and result.found == "cgroup v2 (unified)"
    else:
        assert result.status == "FAIL" and result.found.startswith("cgroup v1")
    info = verify({"kernel_cgroup_v2": False}, ["HL-4.1"])["HL-4.1"]  # not asked: nothing to judge
    assert info.status == "SKIP" and info.found.startswith("not asked (kernel_cgroup_v2: false); the host runs cgroup v")


def test_engine_limits_and_services_skip_without_systemd(container):
    results = verify({}, ["HL-4.2", "HL-5.2"], name=container.host)
    assert [r.status for r in results.values()] == ["SKIP", "SKIP"]
    assert all("no systemd" in r.found for r in results.values())


# ---- packages -------------------------------------------------------------------------------------

def test_packages_absent_on_the_real_dpkg_database():
    assert verify({}, ["HL-5.1"])["HL-5.1"].status == "PASS"  # no telnet, rsh, avahi, cups... here
    result = verify({"platform_packages_absent": ["telnet", "coreutils"]}, ["HL-5.1"])["HL-5.1"]
    assert result.status == "FAIL" and result.found == "installed: coreutils"
    assert result.evidence == ["fix: apt-get remove coreutils"]


# ---- audit ----------------------------------------------------------------------------------------

@pytest.fixture
def audit_rules(tmp_path):
    watched = tmp_path / "identity"
    watched.write_text("")
    rules = [f"-w {watched} -p wa -k {KEY}",
             f"-a always,exit -F arch=b64 -S init_module,finit_module,delete_module -k {KEY}",
             f"-w {tmp_path / 'absent'} -p wa -k {KEY}"]
    data = {"auditd_platform_rules": rules, "auditd_platform_rules_file": str(tmp_path / "hardline-platform.rules")}
    yield data
    auditctl("-D", "-k", KEY)


def test_platform_audit_rules_loaded_and_persisted(audit_rules):
    rules = audit_rules["auditd_platform_rules"]
    before = verify(audit_rules, ["HL-6.1"])["HL-6.1"]
    assert before.status == "FAIL" and f"not loaded: {rules[0]}" in before.found
    assert before.evidence == [f"not on this host, not required: {rules[2].split()[1]}"]
    for rule in rules[:2]:
        assert auditctl(*rule.split()).returncode == 0, rule
    loaded_only = verify(audit_rules, ["HL-6.1"])["HL-6.1"]
    assert loaded_only.status == "FAIL" and "not loaded" not in loaded_only.found
    assert f"not in any rules file: {rules[1]}" in loaded_only.found
    # auditctl -l prints the syscalls in its own order and the key as -F key=: still the same rule
    Path(audit_rules["auditd_platform_rules_file"]).write_text("\n".join(rules[:2]) + "\n")
    after = verify(audit_rules, ["HL-6.1"])["HL-6.1"]
    assert after.status == "PASS" and after.found == "all 2 rules loaded and persisted", after.found


def test_immutable_audit_rules_only_when_asked():
    assert verify({}, ["HL-6.2"])["HL-6.2"].status == "SKIP"
    result = verify({"auditd_immutable": True}, ["HL-6.2"])["HL-6.2"]  # never made immutable on this machine
    assert result.status == "FAIL" and "auditctl -s reports enabled" in result.found


def test_validation_messages_name_the_group_data_file(tmp_path):
    from hardline.inventory import load_hosts

    (tmp_path / "group_data").mkdir()
    (tmp_path / "group_data" / "all.py").write_text(textwrap.dedent('platform_packages_absent = ["openssh-server"]\n'))
    inv = tmp_path / "inv.py"
    inv.write_text('docker_hosts = ["a"]\n')
    (host,) = load_hosts(str(inv))  # the host is returned invalid: verify reports it ERROR
    assert "group_data/all.py: host a: platform_packages_absent: refusing to remove 'openssh-server'" in str(host.error)


def test_sysctl_check_knows_docker_needs_ip_forward():
    result = verify({}, ["HL-1.1"])["HL-1.1"]
    assert result.status in ("PASS", "FAIL")  # this machine is not hardened; what matters is the note
    assert any("net.ipv4.ip_forward=1 on purpose" in e for e in result.evidence)
