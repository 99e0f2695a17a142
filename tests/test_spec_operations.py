"""Spec tests of every hardline operation (hardline/deploys/operations/), pyinfra's style: given
facts, the commands yielded; nothing at all (no command, no fact read) when already compliant."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import pytest
from pyinfra.facts.files import Directory, File, FileContents, FindInFile, Sha1File
from pyinfra.facts.selinux import SEBoolean
from pyinfra.facts.server import Sysctl

from hardline.deploys.facts import DaemonJson, GroupMembers, LoadedAuditRules, PasswdEntry, PathStat
from hardline.deploys.gather import need
from hardline.deploys.operations.converge import (
    audit_rules_loaded,
    directory,
    line_in_file,
    managed_file,
    module_unloaded,
    rule_key,
    selinux_boolean,
    sysctl_value,
    system_user,
)
from hardline.deploys.operations.hardening import daemon_json, group_members_only, permissions, render_daemon_json
from hardline.deploys.platform_facts import AuditEnabled, LoadedModules, SelinuxBooleans
from tests.support.spec import UngivenFact, commands, spec_host

CONTENT = "net.ipv4.tcp_syncookies = 1\n"
SHA1 = hashlib.sha1(CONTENT.encode()).hexdigest()


def file_fact(user: str = "root", group: str = "root", mode: int = 644) -> dict[str, Any]:
    return {"user": user, "group": group, "mode": mode, "size": 10, "mtime": None, "atime": None, "ctime": None}


# ---- permissions ----------------------------------------------------------------------------------

def test_permissions_tightens_owner_and_mode_and_never_loosens():
    stat = {"owner": "alice", "group": "staff", "mode": 0o666, "type": "regular file"}
    with spec_host({}):
        assert commands(permissions._inner(path="/etc/docker/daemon.json", stat=stat, owner="root", group="root")) \
            == ["chown root:root /etc/docker/daemon.json"]
        assert commands(permissions._inner(path="/etc/docker/daemon.json", stat=stat, max_mode="644")) \
            == ["chmod 644 /etc/docker/daemon.json"]
        tight = {**stat, "mode": 0o600}
        assert commands(permissions._inner(path="/etc/docker/daemon.json", stat=tight, max_mode="644")) == []


def test_permissions_keeps_the_other_owner_part_and_leaves_absent_paths_alone():
    stat = {"owner": "root", "group": "staff", "mode": 0o660, "type": "socket"}
    with spec_host({}) as host:
        assert commands(permissions._inner(path="/run/docker.sock", stat=stat, group="docker")) \
            == ["chown root:docker /run/docker.sock"]
        assert commands(permissions._inner(path="/run/docker.sock", stat=None, owner="root", max_mode="660")) == []
        assert commands(permissions._inner(path="/run/docker.sock", stat={**stat, "group": "docker"}, owner="root",
                                           group="docker", max_mode="660")) == []
        assert host.asked == []


def test_permissions_quotes_the_path():
    stat = {"owner": "bob", "group": "root", "mode": 0o644, "type": "regular file"}
    with spec_host({}):
        assert commands(permissions._inner(path="/etc/x; touch /tmp/y", stat=stat, owner="root")) \
            == ["chown root:root '/etc/x; touch /tmp/y'"]


# ---- group_members_only ---------------------------------------------------------------------------

def test_group_members_only_removes_the_untrusted():
    with spec_host({need(GroupMembers, group="docker"): ["alice", "bob", "mallory"]}):
        assert commands(group_members_only._inner(group="docker", allowed=["alice"])) \
            == ["gpasswd -d bob docker", "gpasswd -d mallory docker"]


@pytest.mark.parametrize("members", [["alice"], [], None])
def test_group_members_only_compliant_or_absent_group(members):
    with spec_host({need(GroupMembers, group="docker"): members}):
        assert commands(group_members_only._inner(group="docker", allowed=["alice"])) == []


# ---- daemon_json ----------------------------------------------------------------------------------

def test_daemon_json_unchanged_json_is_no_change_whatever_its_formatting():
    with spec_host({need(DaemonJson, path="/etc/docker/daemon.json"): {"live-restore": True, "icc": False}}) as host:
        assert commands(daemon_json._inner(path="/etc/docker/daemon.json", settings={"icc": False, "live-restore": True})) == []
        assert host.asked == []


def test_daemon_json_change_stages_validates_swaps_and_restarts(capsys):
    facts = {need(DaemonJson, path="/etc/docker/daemon.json"): {"icc": True},
             need(File, path="/etc/docker/daemon.json.hardline-new"): None,
             need(Directory, path="/etc/docker/daemon.json.hardline-new"): None,
             need(Directory, path="/etc/docker"): {"user": "root", "group": "root", "mode": 755}}
    with spec_host(facts):
        out = commands(daemon_json._inner(path="/etc/docker/daemon.json", settings={"icc": False}, service="docker",
                                          socket="/run/docker.sock", restart_timeout=30))
    text = render_daemon_json({"icc": False})
    assert out[0] == f"upload /etc/docker/daemon.json.hardline-new {len(text)} bytes"
    assert out[1:3] == ["chown root:root /etc/docker/daemon.json.hardline-new",
                        "chmod 644 /etc/docker/daemon.json.hardline-new"]
    assert out[3].startswith("sh -c '") and out[3].endswith(
        "' hardline /etc/docker/daemon.json.hardline-new /etc/docker/daemon.json docker 30 /run/docker.sock")
    assert "dockerd --validate" in out[3] and "rolled back" in out[3]
    diff = capsys.readouterr().err
    assert '-  "icc": true' in diff and '+  "icc": false' in diff


# ---- managed_file ---------------------------------------------------------------------------------

def test_managed_file_same_content_owner_and_mode_is_no_change():
    facts = {need(File, path="/etc/sysctl.d/h.conf"): file_fact(), need(Sha1File, path="/etc/sysctl.d/h.conf"): SHA1}
    with spec_host(facts) as host:
        assert commands(managed_file._inner(dest="/etc/sysctl.d/h.conf", content=CONTENT)) == []
        assert len(host.asked) == 0


def test_managed_file_new_file_is_uploaded_with_owner_and_mode():
    facts = {need(File, path="/etc/sysctl.d/h.conf"): None, need(Sha1File, path="/etc/sysctl.d/h.conf"): None}
    with spec_host(facts) as host:
        assert commands(managed_file._inner(dest="/etc/sysctl.d/h.conf", content=CONTENT, mode="640",
                                            create_remote_dir=True)) \
            == ["mkdir -p /etc/sysctl.d", f"upload /etc/sysctl.d/h.conf {len(CONTENT)} bytes",
                "chown root:root /etc/sysctl.d/h.conf && chmod 640 /etc/sysctl.d/h.conf"]
        assert host.asked == []  # decided from the gathered facts: nothing read again


def test_managed_file_other_content_or_mode_is_a_change():
    other = {need(File, path="/etc/h.conf"): file_fact(), need(Sha1File, path="/etc/h.conf"): "0" * 40}
    with spec_host(other):
        assert commands(managed_file._inner(dest="/etc/h.conf", content=CONTENT)) \
            == [f"upload /etc/h.conf {len(CONTENT)} bytes", "chown root:root /etc/h.conf && chmod 644 /etc/h.conf"]
    loose = {need(File, path="/etc/h.conf"): file_fact(mode=666), need(Sha1File, path="/etc/h.conf"): SHA1}
    with spec_host(loose):
        assert commands(managed_file._inner(dest="/etc/h.conf", content=CONTENT)) == ["chmod 644 /etc/h.conf"]


def test_managed_file_from_a_local_file(tmp_path):
    local = tmp_path / "seccomp.json"
    local.write_text(CONTENT)
    facts = {need(File, path="/etc/docker/seccomp.json"): file_fact(), need(Sha1File, path="/etc/docker/seccomp.json"): SHA1}
    with spec_host(facts):
        assert commands(managed_file._inner(dest="/etc/docker/seccomp.json", content=local)) == []


# ---- directory ------------------------------------------------------------------------------------

def test_directory_compliant_and_created():
    ok = {"owner": "root", "group": "root", "mode": 0o755, "type": "directory"}
    with spec_host({need(PathStat, path="/etc/docker/tls"): ok}):
        assert commands(directory._inner(path="/etc/docker/tls")) == []
    facts = {need(PathStat, path="/etc/docker/tls"): None, need(Directory, path="/etc/docker/tls"): None}
    with spec_host(facts):
        assert commands(directory._inner(path="/etc/docker/tls")) \
            == ["mkdir -p /etc/docker/tls", "chmod 755 /etc/docker/tls", "chown root:root /etc/docker/tls"]


# ---- line_in_file ---------------------------------------------------------------------------------

@pytest.mark.parametrize("lines", [["a=1", "DOCKER_CONTENT_TRUST=1"], ["DOCKER_CONTENT_TRUST=1"]])
def test_line_in_file_present_is_no_change(lines):
    with spec_host({need(FileContents, path="/etc/environment"): lines}):
        assert commands(line_in_file._inner(path="/etc/environment", line=r"^\s*(export\s+)?DOCKER_CONTENT_TRUST=.*$",
                                            replace="DOCKER_CONTENT_TRUST=1")) == []


def test_line_in_file_replaces_a_different_line_with_extended_regex():
    pattern = r"^\s*(export\s+)?DOCKER_CONTENT_TRUST=.*$"
    facts = {need(FileContents, path="/etc/environment"): ["export DOCKER_CONTENT_TRUST=0"],
             need(FindInFile, path="/etc/environment", pattern=pattern, interpolate_variables=False,
                  extended_regex=True): ["export DOCKER_CONTENT_TRUST=0"]}
    with spec_host(facts):
        (sed,) = commands(line_in_file._inner(path="/etc/environment", line=pattern, replace="DOCKER_CONTENT_TRUST=1"))
    assert sed.startswith("sed -E -i") and "/DOCKER_CONTENT_TRUST=1/' /etc/environment" in sed


def test_line_in_file_appends_a_missing_line():
    facts = {need(FileContents, path="/etc/subuid"): ["other:100000:65536"],
             need(FindInFile, path="/etc/subuid", pattern="^dockremap:.*$", interpolate_variables=False,
                  extended_regex=True): [],
             need(FindInFile, path="/etc/subuid", pattern="^dockremap:165536:65536$", interpolate_variables=False,
                  extended_regex=True): []}
    with spec_host(facts):
        (append,) = commands(line_in_file._inner(path="/etc/subuid", line="^dockremap:.*$", replace="dockremap:165536:65536"))
    assert "dockremap:165536:65536" in append and append.endswith(">> /etc/subuid")


# ---- sysctl_value ---------------------------------------------------------------------------------

def test_sysctl_value_compliant_and_changed():
    keys = ["kernel.kptr_restrict", "net.ipv4.tcp_rmem"]
    current = {"kernel.kptr_restrict": 1, "net.ipv4.tcp_rmem": [4096, 131072, 6291456]}
    with spec_host({need(Sysctl, keys=keys): current}) as host:
        assert commands(sysctl_value._inner(key="kernel.kptr_restrict", value=1, keys=keys)) == []
        assert commands(sysctl_value._inner(key="net.ipv4.tcp_rmem", value="4096 131072 6291456", keys=keys)) == []
        assert host.asked == []
    with spec_host({need(Sysctl, keys=keys): {**current, "kernel.kptr_restrict": 0}}) as host:
        assert commands(sysctl_value._inner(key="kernel.kptr_restrict", value=1, keys=keys)) == ["sysctl kernel.kptr_restrict=1"]
        assert commands(sysctl_value._inner(key="net.ipv4.tcp_rmem", value="4096 87380 6291456", keys=keys)) \
            == ["sysctl net.ipv4.tcp_rmem='4096 87380 6291456'"]
        assert host.asked == []


# ---- system_user ----------------------------------------------------------------------------------

def test_system_user_exists_or_is_created():
    present = {"uid": 107, "gid": 112, "home": "/nonexistent", "shell": "/usr/sbin/nologin"}
    with spec_host({need(PasswdEntry, user="dockremap"): present}) as host:
        assert commands(system_user._inner(user="dockremap")) == []
        assert host.asked == []
    with spec_host({need(PasswdEntry, user="dockremap"): None}):  # and no mkdir of /nonexistent
        assert commands(system_user._inner(user="dockremap")) == [
            "useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin dockremap"]
    with spec_host({need(PasswdEntry, user="dockremap"): {**present, "shell": "/bin/bash"}}):
        assert commands(system_user._inner(user="dockremap")) == [
            "usermod --home /nonexistent --shell /usr/sbin/nologin dockremap"]


# ---- selinux_boolean ------------------------------------------------------------------------------

def test_selinux_boolean():
    with spec_host({need(SelinuxBooleans): {"container_manage_cgroup": "off"}}):
        assert commands(selinux_boolean._inner(boolean="container_manage_cgroup", value="off")) == []
    facts = {need(SelinuxBooleans): {"container_manage_cgroup": "on"},
             need(SEBoolean, boolean="container_manage_cgroup"): "on"}
    with spec_host(facts):
        assert commands(selinux_boolean._inner(boolean="container_manage_cgroup", value="off")) \
            == ["setsebool -P container_manage_cgroup off"]


# ---- module_unloaded ------------------------------------------------------------------------------

@pytest.mark.parametrize("loaded", [None, [], ["ext4", "overlay"]])
def test_module_unloaded_nothing_to_do(loaded):
    with spec_host({need(LoadedModules): loaded}):
        assert commands(module_unloaded._inner(module="usb-storage")) == []


def test_module_unloaded_unloads_and_tolerates_a_module_in_use():
    with spec_host({need(LoadedModules): ["usb_storage"]}):
        assert commands(module_unloaded._inner(module="usb-storage")) \
            == ["modprobe -r usb-storage || echo 'hardline: usb-storage is in use, not unloaded' >&2"]


# ---- audit_rules_loaded ---------------------------------------------------------------------------

RULES = ["-w /etc/docker -p rwxa -k docker", "-a always,exit -F arch=b64 -S init_module,finit_module -k modules"]
LOADED = ["-w /etc/docker/ -p rwxa -k docker", "-a always,exit -F arch=b64 -S finit_module,init_module -F key=modules"]


def test_audit_rules_loaded_compares_rules_as_auditctl_prints_them():
    assert rule_key(RULES[0]) == rule_key(LOADED[0]) and rule_key(RULES[1]) == rule_key(LOADED[1])
    with spec_host({need(LoadedAuditRules): LOADED}) as host:
        assert commands(audit_rules_loaded._inner(rules=RULES, previous=RULES)) == []
        assert host.asked == []


def test_audit_rules_loaded_adds_missing_and_deletes_stale_rules_only():
    facts = {need(LoadedAuditRules): [LOADED[1], "-w /etc/old -p wa -k docker", "-w /etc/passwd -p wa -k admin"],
             need(AuditEnabled): "1"}
    with spec_host(facts):
        (load,) = commands(audit_rules_loaded._inner(rules=RULES, previous=["-i", "-w /etc/old -p wa -k docker", RULES[1]]))
    assert load == ("rc=0; auditctl -W /etc/old -p wa -k docker || rc=1; if [ -e /etc/docker ]; then auditctl -w /etc/docker "
                    "-p rwxa -k docker || rc=1; else echo 'hardline: /etc/docker does not exist, watch not loaded' >&2; "
                    'fi; test "$rc" = 0')


def test_audit_rules_loaded_waits_for_reboot_when_immutable_and_tries_when_auditctl_l_failed():
    with spec_host({need(LoadedAuditRules): [], need(AuditEnabled): "2"}):
        assert commands(audit_rules_loaded._inner(rules=RULES)) == []
    # auditctl -l failed: loading is tried, and auditctl's own error fails the operation
    with spec_host({need(LoadedAuditRules): None, need(AuditEnabled): None}):
        (load,) = commands(audit_rules_loaded._inner(rules=RULES[1:]))
    assert load == "rc=0; auditctl -a always,exit -F arch=b64 -S init_module,finit_module -k modules || rc=1; test \"$rc\" = 0"


def test_an_operation_reading_an_ungiven_fact_is_caught():
    with spec_host({}), pytest.raises(UngivenFact):
        commands(group_members_only._inner(group="docker", allowed=[]))
    assert io.StringIO  # the harness itself is what this test checks
