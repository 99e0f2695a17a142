"""The whole SELinux path on the Vagrant lab's SELinux machine (Debian 12 from the local box:
refpolicy with its container and docker modules, labelled at build time, booted by GRUB with
security=selinux in permissive mode, as Debian's selinux-activate leaves a host).

The baseline fails HL-3.1 (permissive), HL-3.2 (no selinux-enabled) and HL-3.3 (a boolean the
inventory turns off is on); the deploy makes the host enforcing now and at boot, sets the
boolean, hands "selinux-enabled": true to daemon.json (dockerd then reports name=selinux); a
re-deploy changes nothing; CIS 5.3 passes for containers that run with an SELinux label and fails
for one started with --security-opt label=disable; and SELinux really confines a container: a
write to a host directory bind-mounted without relabelling is denied to the labelled container
(root inside, so not by file modes), seen as an AVC denial in the audit log, while the same
write with :z relabelling, or from the unconfined container, succeeds."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.support.images import busybox_rootfs_tar
from tests.support.labs import vagrant_deploy, vagrant_verify, worst

MACHINE = "docker-selinux"
IMAGE = "hl-busybox:1"
pytestmark = [pytest.mark.lab, pytest.mark.vagrant]


def ok(machine, command: str, timeout: float = 300) -> str:
    proc = machine.sh(command, timeout=timeout)
    assert proc.returncode == 0, f"{command}: {proc.stdout}{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def selinux(vagrant_lab, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("selinux")
    machine = vagrant_lab.machine(MACHINE)
    s = {"machine": machine, "tmp": tmp}
    s["mode_before"] = ok(machine, "getenforce").strip()
    s["labels"] = ok(machine, "ls -Z /etc/shadow /usr/sbin/dockerd; ps -eZ | grep -w dockerd")
    s["before"] = vagrant_verify(tmp, MACHINE, step="verify (baseline)")
    s["deploy"] = vagrant_deploy(MACHINE, step="SELinux deploy (harden.py)")
    s["redeploy"] = vagrant_deploy(MACHINE, step="SELinux re-deploy")
    s["mode_after"] = ok(machine, "getenforce; grep '^SELINUX=' /etc/selinux/config; getsebool console_login")
    s["daemon_json"] = json.loads(ok(machine, "cat /etc/docker/daemon.json"))
    with busybox_rootfs_tar(tmp / "busybox.tar").open("rb") as fh:
        imported = subprocess.run(machine.ssh_argv(f"docker import - {IMAGE}"), stdin=fh, capture_output=True,
                                  timeout=600)
    assert imported.returncode == 0, imported.stderr
    run = "docker run -d --disable-content-trust"
    ok(machine, f"{run} --name labelled --security-opt label=level:s0:c100,c200 {IMAGE} sleep 3600 && "
                f"{run} --name default {IMAGE} sleep 3600 && "
                f"{run} --name unlabelled --security-opt label=disable {IMAGE} sleep 3600")
    s["process_labels"] = ok(machine, "for c in labelled default unlabelled; do "
                                      "echo $c $(docker inspect -f '{{.ProcessLabel}}' $c); done")
    s["after"] = vagrant_verify(tmp, MACHINE, step="verify (after deploy, with containers)")
    return s


def test_baseline_fails_the_selinux_controls(selinux):
    assert selinux["mode_before"] == "Permissive"
    # labelled at build time (setfiles), not by a relabel at first boot; dockerd in its own domain
    assert "system_u:object_r:shadow_t:s0 /etc/shadow" in selinux["labels"]
    assert "dockerd_exec_t" in selinux["labels"] and "dockerd_t" in selinux["labels"]
    before, found = worst(selinux["before"]), {cid: rs[0].found for cid, rs in selinux["before"].items()}
    assert before["HL-3.1"] == before["HL-3.2"] == before["HL-3.3"] == "FAIL", found
    assert "running in permissive mode" in found["HL-3.1"] and "SELINUX=permissive" in found["HL-3.1"]
    assert "console_login is on, want off" in found["HL-3.3"]
    assert before["HL-2.1"] == "SKIP"  # AppArmor controls do not apply to an SELinux host
    assert "ERROR" not in before.values(), {cid: found[cid] for cid, s in before.items() if s == "ERROR"}


def test_deploy_makes_the_host_enforcing_with_docker_labelling(selinux):
    deploy = selinux["deploy"]
    assert deploy.returncode == 0, deploy.stdout[-6000:]
    changed = deploy.changed_on(MACHINE)
    for op in ("SELINUX=enforcing in /etc/selinux/config", "setenforce 1", "SELinux boolean console_login=off"):
        assert any(op in name for name in changed), (op, changed)
    assert selinux["mode_after"].split("\n")[:3] == ["Enforcing", "SELINUX=enforcing", "console_login --> off"]
    assert selinux["daemon_json"]["selinux-enabled"] is True
    after, found = worst(selinux["after"]), {cid: rs[0].found for cid, rs in selinux["after"].items()}
    assert after["HL-3.1"] == after["HL-3.2"] == after["HL-3.3"] == "PASS", found
    assert "name=selinux" in found["HL-3.2"]


def test_redeploy_changes_nothing(selinux):
    redeploy = selinux["redeploy"]
    assert redeploy.returncode == 0, redeploy.stdout[-6000:]
    assert redeploy.changed == 0, redeploy.changed_on(MACHINE)


def test_cis_5_3_passes_for_labelled_containers_and_fails_for_label_disable(selinux):
    labels = dict(line.split(" ", 1) if " " in line else (line, "") for line in selinux["process_labels"].splitlines())
    assert labels["labelled"] == "system_u:system_r:container_t:s0:c100,c200"
    assert labels["default"].startswith("system_u:system_r:container_t:s0:c")
    assert labels["unlabelled"] == ""
    verdicts = {r.subject.split()[1]: r for r in selinux["after"]["5.3"]}
    assert verdicts["labelled"].status == verdicts["default"].status == "PASS", verdicts
    assert verdicts["unlabelled"].status == "FAIL" and "label=disable" in verdicts["unlabelled"].found


def test_selinux_denies_a_container_what_the_policy_forbids(selinux):
    machine = selinux["machine"]
    ok(machine, "mkdir -p /srv/hlv-data && chmod 777 /srv/hlv-data && rm -f /srv/hlv-data/*")
    write = "docker run --rm --disable-content-trust {opts} -v /srv/hlv-data:/data{z} " + IMAGE + " sh -c 'echo x > /data/{name}'"
    denied = machine.sh(write.format(opts="", z="", name="denied"))
    assert denied.returncode != 0 and "Permission denied" in denied.stdout + denied.stderr, denied
    avc = ok(machine, "grep '^type=AVC' /var/log/audit/audit.log")
    denial = [line for line in avc.splitlines() if 'comm="sh" name="hlv-data"' in line]
    assert denial, avc[-3000:]
    assert "avc:  denied  { write }" in denial[-1] and "scontext=system_u:system_r:container_t:s0:c" in denial[-1] \
        and "tcontext=unconfined_u:object_r:var_t:s0 tclass=dir permissive=0" in denial[-1], denial
    # the same write succeeds when SELinux does not confine the container, or after docker relabels
    # the directory for it (:z): the denial above is SELinux's
    unconfined = machine.sh(write.format(opts="--security-opt label=disable", z="", name="unconfined"))
    assert unconfined.returncode == 0, unconfined
    relabelled = machine.sh(write.format(opts="", z=":z", name="relabelled"))
    assert relabelled.returncode == 0, relabelled
    assert sorted(ok(machine, "ls /srv/hlv-data").split()) == ["relabelled", "unconfined"]
