"""Spec tests of whole deploy functions where this machine cannot be their real target (GRUB,
systemd units, SELinux, loaded AppArmor profiles): given the gathered facts, the operations the
deploy plans and their commands; none at all on a compliant host. The real-target tests
(tests/test_deploy_*.py) and the lab VM run the same code against real hosts."""

from __future__ import annotations

import hashlib
from typing import Any

from pyinfra.facts.files import Directory, File, FileContents, Sha1File
from pyinfra.facts.selinux import SEBoolean
from pyinfra.facts.server import Which

from hardline.deploys.common import render
from hardline.deploys.facts import LoadedAuditRules
from hardline.deploys.gather import Need, need
from hardline.deploys.kernel import GRUB_FILE, boot_params
from hardline.deploys.lsm import lsm
from hardline.deploys.platform import platform
from hardline.deploys.platform_facts import (
    AppArmorProfiles,
    AuditEnabled,
    BootLoader,
    ExistingPaths,
    HostLsm,
    InstalledPackages,
    SelinuxBooleans,
    UnitStates,
)
from tests.support.spec import planned

APPARMOR = {"apparmor": True, "selinux": False, "selinux_config": False, "enforce": "", "lsm": ["apparmor"]}
SELINUX = {"apparmor": False, "selinux": True, "selinux_config": True, "enforce": "0", "lsm": ["selinux"]}
WANTED = ["audit=1", "audit_backlog_limit=8192", "slab_nomerge", "init_on_alloc=1", "page_alloc.shuffle=1",
          "apparmor=1", "security=apparmor", "systemd.unified_cgroup_hierarchy=1"]


def written(path: str, text: str, mode: int = 644) -> dict[Need, Any]:
    """Facts of a file that already has this content, root-owned."""
    return {need(File, path=path): {"user": "root", "group": "root", "mode": mode},
            need(Sha1File, path=path): hashlib.sha1(text.encode()).hexdigest()}


def absent(path: str) -> dict[Need, Any]:
    parent = path.rsplit("/", 1)[0]
    return {need(File, path=path): None, need(Sha1File, path=path): None, need(Directory, path=path): None,
            need(Directory, path=parent): None}


def names(plan: list[tuple[str, list[str], bool]]) -> list[str]:
    return [name for name, _, _ in plan]


# ---- boot parameters ------------------------------------------------------------------------------

GRUB = render("etc/default/grub.d/60-hardline.cfg.j2", params=WANTED)


def loader(args: list[str], running: list[str]) -> dict[str, Any]:
    return {"kind": "grub", "cfg": "/boot/grub/grub.cfg", "mkconfig": "update-grub", "args": args, "running": running}


def test_boot_params_not_grub_plans_nothing():
    assert planned(boot_params, {need(HostLsm): APPARMOR, need(BootLoader): None}) == []


def test_boot_params_written_and_grub_cfg_regenerated_reboot_only_when_asked():
    facts = {need(HostLsm): APPARMOR, need(BootLoader): loader(["ro", "quiet"], ["ro", "quiet"]), **absent(GRUB_FILE)}
    plan = planned(boot_params, facts)
    assert names(plan) == ["[hardline-platform:1:HL-1.3] GRUB command line: " + " ".join(WANTED) + " (reboot needed)",
                           "[hardline-platform:1:HL-1.3] Regenerate /boot/grub/grub.cfg"]
    assert plan[1][1] == ["update-grub"] and plan[1][2] is False  # grub.cfg lacks them: a change by itself
    rebooting = planned(boot_params, facts, {"kernel_reboot": True})
    assert rebooting[-1][0] == "Reboot for the new boot parameters (kernel_reboot: true)" and rebooting[-1][2]


def test_boot_params_compliant_plans_nothing_and_a_pending_reboot_is_done_when_asked():
    done = {need(HostLsm): APPARMOR, **written(GRUB_FILE, GRUB)}
    assert planned(boot_params, {**done, need(BootLoader): loader(["ro", *WANTED], ["ro", *WANTED])}) == []
    pending = {**done, need(BootLoader): loader(["ro", *WANTED], ["ro"])}
    assert planned(boot_params, pending) == []  # kernel_reboot false: the reboot waits
    plan = planned(boot_params, pending, {"kernel_reboot": True})
    assert names(plan) == ["Reboot for the new boot parameters (kernel_reboot: true)"]


def test_boot_params_grubby_adds_only_what_is_missing():
    facts = {need(HostLsm): SELINUX, **written(GRUB_FILE, GRUB),
             need(BootLoader): {"kind": "grubby", "cfg": "/boot/grub2/grub.cfg", "mkconfig": None,
                                "args": ["ro", "audit=1"], "running": ["ro", "audit=1"]}}
    ((name, commands, _),) = planned(boot_params, facts, {"hardline_lsm": "selinux"})
    assert name.startswith("[hardline-platform:1:HL-1.3] grubby: add audit_backlog_limit=8192")
    assert commands == [("grubby --update-kernel=ALL '--args=audit_backlog_limit=8192 slab_nomerge init_on_alloc=1 "
                        "page_alloc.shuffle=1 selinux=1 systemd.unified_cgroup_hierarchy=1'")]


# ---- LSM ------------------------------------------------------------------------------------------

PROFILE = render("etc/apparmor.d/hardline-docker.j2", profile_name="hardline-docker", rules=[])


def test_apparmor_profile_loaded_in_enforce_mode_unless_it_already_is():
    base = {need(HostLsm): APPARMOR, **written("/etc/apparmor.d/hardline-docker", PROFILE)}
    assert planned(lsm, {**base, need(AppArmorProfiles): {"hardline-docker": "enforce"}}) == []
    ((name, commands, conditional),) = planned(lsm, {**base, need(AppArmorProfiles): {"hardline-docker": "complain"}})
    assert name.endswith("Load hardline-docker in enforce mode (apparmor_parser -r)")
    assert commands == ["apparmor_parser -r -W /etc/apparmor.d/hardline-docker"] and not conditional


def test_selinux_enforcing_booleans_and_daemon_json_hand_over():
    facts = {need(HostLsm): SELINUX, need(SelinuxBooleans): {"container_manage_cgroup": "on"},
             need(FileContents, path="/etc/selinux/config"): ["SELINUX=enforcing", "SELINUXTYPE=targeted"],
             need(SEBoolean, boolean="container_manage_cgroup"): "on"}
    plan = planned(lsm, facts, {"selinux_booleans": {"container_manage_cgroup": "off"}})
    assert [(n.split("] ")[1], c) for n, c, _ in plan] == [
        ("setenforce 1", ["setenforce 1"]),
        ("SELinux boolean container_manage_cgroup=off", ["setsebool -P container_manage_cgroup off"])]


# ---- platform: engine limits, services, packages, audit ---------------------------------------------

LIMITS = ("# Managed by hardline (deploys/platform.py, HL-4.2): edit inventory cgroup_engine_limits instead.\n"
          "[Service]\nTasksMax=32768\n")
QUIET = {"LoadState": "not-found", "ActiveState": "inactive"}
SERVICES = ["avahi-daemon.service", "cups.service"]
RULES = ["-w /etc/passwd -p wa -k identity"]
RULES_TEXT = ("## Managed by hardline (deploys/platform.py, HL-6.1): edit inventory auditd_platform_rules instead.\n"
              "-w /etc/passwd -p wa -k identity\n")


def platform_facts(docker: dict[str, str], services: list[dict[str, str]]) -> dict[Need, Any]:
    return {need(UnitStates, units=["docker.service"]): [docker], need(UnitStates, units=SERVICES): services,
            **written("/etc/systemd/system/docker.service.d/hardline-limits.conf", LIMITS),
            need(InstalledPackages, packages=["telnet"]): [], need(Which, command="apt-get"): "/usr/bin/apt-get",
            need(ExistingPaths, paths=["/etc/passwd"]): ["/etc/passwd"],
            **written("/etc/audit/rules.d/hardline-platform.rules", RULES_TEXT, 640),
            need(FileContents, path="/etc/audit/rules.d/hardline-platform.rules"): RULES_TEXT.splitlines(),
            need(LoadedAuditRules): RULES, need(AuditEnabled): "1"}


DATA = {"cgroup_engine_units": ["docker.service"], "platform_services_masked": SERVICES,
        "platform_packages_absent": ["telnet"], "auditd_platform_rules": RULES}


def test_platform_compliant_host_plans_nothing():
    docker = {"LoadState": "loaded", "ActiveState": "active", "TasksMax": "32768"}
    masked = {"LoadState": "masked", "UnitFileState": "masked", "ActiveState": "inactive"}
    assert planned(platform, platform_facts(docker, [masked, QUIET]), DATA) == []


def test_platform_limits_changed_at_runtime_services_running_and_packages_installed():
    docker = {"LoadState": "loaded", "ActiveState": "active", "TasksMax": "4096"}  # set-property behind our back
    cups = {"LoadState": "loaded", "UnitFileState": "enabled", "ActiveState": "active"}
    facts = {**platform_facts(docker, [QUIET, cups]), need(InstalledPackages, packages=["telnet"]): ["telnet"],
             need(LoadedAuditRules): []}
    plan = planned(platform, facts, DATA)
    assert [n for n, _, _ in plan] == [
        "Apply the docker.service limits to its running cgroup (TasksMax differ)",
        "[hardline-platform:1:HL-5.1] Remove telnet", "[hardline-platform:1:HL-5.2] Stop and mask cups.service",
        "Load the 1 platform audit rules"]
    assert plan[0][1] == ["systemctl set-property --runtime docker.service TasksMax=32768"]
    assert plan[1][1][0].startswith("HL_PROTECTED='^(openssh-server|") and plan[1][1][0].endswith("' hardline telnet")
    assert plan[2][1] == [("systemctl mask --now cups.service 2>/dev/null || { systemctl disable --now cups.service ; "
                          "echo 'hardline: cups.service stopped and disabled, not masked: its unit file is in "
                          "/etc/systemd/system' >&2; }")]
    assert plan[3][1] == [('rc=0; if [ -e /etc/passwd ]; then auditctl -w /etc/passwd -p wa -k identity || rc=1; else echo '
                          "'hardline: /etc/passwd does not exist, watch not loaded' >&2; fi; test \"$rc\" = 0")]


def test_platform_immutable_rules_are_made_immutable_once():
    docker = {"LoadState": "loaded", "ActiveState": "active", "TasksMax": "32768"}
    masked = {"LoadState": "masked", "UnitFileState": "masked", "ActiveState": "inactive"}
    final = "## Managed by hardline (HL-6.2): rules are immutable until reboot\n-e 2\n"
    facts = {**platform_facts(docker, [masked, QUIET]), **written("/etc/audit/rules.d/99-hardline-finalize.rules", final, 640)}
    ((name, commands, _),) = planned(platform, facts, {**DATA, "auditd_immutable": True})
    assert name.endswith("Make the loaded audit rules immutable (auditctl -e 2)") and commands == ["auditctl -e 2"]
    assert planned(platform, {**facts, need(AuditEnabled): "2"}, {**DATA, "auditd_immutable": True}) == []
