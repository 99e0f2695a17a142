"""HL-1.3 through GRUB on the Vagrant lab's AppArmor machine (Debian 12 from the local box, booted
by GRUB: BOOT_IMAGE= in /proc/cmdline). The boot-parameter deploy (hardline.deploys.kernel's
boot_params, lab/deploys/boot_params.py, on inventories/vagrant.py with the same group data as
every inventory) writes /etc/default/grub.d/60-hardline.cfg and regenerates grub.cfg; without
kernel_reboot it reboots nothing (same boot id, same command line) and the check says "reboot
pending"; with kernel_reboot: true the deploy reboots the machine, the running kernel then has
every parameter and HL-1.3 passes. Everything talks to the guest inside the lab's namespace."""

from __future__ import annotations

import pytest

from tests.support.labs import vagrant_deploy, vagrant_variant, vagrant_verify, worst

MACHINE = "docker-apparmor"
DEPLOY = "lab/deploys/boot_params.py"
pytestmark = [pytest.mark.lab, pytest.mark.vagrant]


def boot_id(machine) -> str:
    proc = machine.sh("cat /proc/sys/kernel/random/boot_id")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def wanted(result) -> list[str]:
    """The parameters HL-1.3 expects (its expected text: "the kernel runs with P1 P2 ... (persisted in GRUB)")."""
    return result.expected.removeprefix("the kernel runs with ").removesuffix(" (persisted in GRUB)").split()


@pytest.fixture(scope="module")
def grub(vagrant_lab, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grub")
    machine = vagrant_lab.machine(MACHINE)
    s = {"machine": machine, "cmdline_before": machine.sh("cat /proc/cmdline").stdout, "boot_before": boot_id(machine)}
    s["before"] = vagrant_verify(tmp, MACHINE, step="verify (baseline)")
    s["deploy"] = vagrant_deploy(MACHINE, deploy=DEPLOY, step="boot-parameter deploy (kernel_reboot false)")
    s["boot_after_deploy"] = boot_id(machine)
    s["cmdline_after_deploy"] = machine.sh("cat /proc/cmdline").stdout
    s["persisted"] = machine.sh("cat /etc/default/grub.d/60-hardline.cfg; grep -m1 -E '^[[:space:]]*linux[[:space:]]' "
                                "/boot/grub/grub.cfg").stdout
    s["pending"] = vagrant_verify(tmp, MACHINE, step="verify (reboot pending)")
    s["reboot_deploy"] = vagrant_deploy(MACHINE, inventory=vagrant_variant(tmp, "reboot", kernel_reboot=True),
                                        deploy=DEPLOY, step="boot-parameter deploy (kernel_reboot true, reboots)")
    machine.wait_ssh()
    s["boot_after_reboot"] = boot_id(machine)
    s["cmdline_after_reboot"] = machine.sh("cat /proc/cmdline").stdout
    s["after"] = vagrant_verify(tmp, MACHINE, step="verify (after reboot)")
    return s


def test_the_machine_boots_through_grub_and_lacks_the_parameters(grub):
    assert "BOOT_IMAGE=/boot/vmlinuz-" in grub["cmdline_before"] and "root=UUID=" in grub["cmdline_before"]
    result = grub["before"]["HL-1.3"][0]
    assert result.status == "FAIL", result.found
    assert "running kernel lacks" in result.found and "default boot entry of /boot/grub/grub.cfg lacks" in result.found
    assert {"audit=1", "slab_nomerge", "apparmor=1", "security=apparmor",
            "systemd.unified_cgroup_hierarchy=1"} <= set(wanted(result))
    # the inventory put the machine in docker_hosts and sudo works: the Docker controls ran, none is ERROR
    assert worst(grub["before"])["2.2"] == "FAIL" and "ERROR" not in worst(grub["before"]).values()


def test_without_the_switch_grub_is_written_and_nothing_reboots(grub):
    deploy = grub["deploy"]
    assert deploy.returncode == 0, deploy.stdout[-6000:]
    changed = deploy.changed_on(MACHINE)
    assert any("GRUB command line" in op for op in changed) and any("Regenerate /boot/grub/grub.cfg" in op for op in changed)
    assert not any("Reboot" in op for op in changed)
    assert grub["boot_after_deploy"] == grub["boot_before"]
    assert grub["cmdline_after_deploy"] == grub["cmdline_before"]
    params = wanted(grub["pending"]["HL-1.3"][0])
    cfg, linux_line = grub["persisted"].split("GRUB_CMDLINE_LINUX=", 1)[1], grub["persisted"].splitlines()[-1]
    assert all(p in cfg for p in params) and all(p in linux_line.split() for p in params), grub["persisted"]
    pending = grub["pending"]["HL-1.3"][0]
    assert pending.status == "FAIL" and "reboot pending" in pending.found, pending.found


def test_kernel_reboot_true_reboots_and_the_kernel_runs_with_them(grub):
    deploy = grub["reboot_deploy"]
    assert deploy.returncode == 0, deploy.stdout[-6000:]
    assert any("Reboot for the new boot parameters" in op for op in deploy.changed_on(MACHINE)), deploy.changed_on(MACHINE)
    assert grub["boot_after_reboot"] != grub["boot_before"]
    running = grub["cmdline_after_reboot"].split()
    result = grub["after"]["HL-1.3"][0]
    assert result.status == "PASS", result.found
    assert all(p in running for p in wanted(result)), (wanted(result), running)
    # the host came back whole: AppArmor and cgroup v2 (HL-2.1, HL-4.1), dockerd answering, no ERROR
    after = worst(grub["after"])
    assert after["HL-2.1"] == after["HL-4.1"] == "PASS"
    assert after["2.2"] == "FAIL" and "ERROR" not in after.values()  # only the boot parameters were deployed
