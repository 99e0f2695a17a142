"""Each deploy module by a real pyinfra run into a Debian userland container (pyinfra's @docker
connector; tests/support/hostimage.py): the deploy changes the host, hardline's verifier then
passes the same controls over testinfra's docker backend, and a second deploy changes nothing
and sends one command (the batched facts). Audit rules go into this machine's real kernel under
a key of the test's own and are removed after it."""

from __future__ import annotations

import pytest

from tests.support.deploy_targets import audit_key, remove_audit_rules, whole_host
from tests.support.hostimage import HostContainer
from tests.support.pyinfra_run import DeployRun, deploy
from tests.support.verify import statuses, verify


def entry(module: str, function: str) -> str:
    return f"from hardline.deploys.{module} import {function}\n{function}()\n"


@pytest.fixture(scope="module")
def daemon(session_daemon_factory):
    return session_daemon_factory({})


@pytest.fixture
def target(daemon, monkeypatch):
    """A fresh container (root, this machine's PID namespace for audit) and an audit key."""
    for name, value in daemon.env().items():
        monkeypatch.setenv(name, value)
    key = audit_key()
    with HostContainer(daemon, audit=True, packages=("telnet",)) as container:
        yield container, key
    remove_audit_rules(key)


def deploy_twice(tmp_path, container: HostContainer, data: dict, code: str) -> tuple[DeployRun, DeployRun]:
    """First deploy (must succeed), then the re-deploy, which must change nothing with one command."""
    first = deploy(tmp_path / "first", [(container.host, data)], code, env=container.daemon.env())
    assert first.returncode == 0, first.tail()
    second = deploy(tmp_path / "second", [(container.host, data)], code, env=container.daemon.env())
    assert second.returncode == 0, second.tail()
    assert second.changed[container.host] == [], second.changed
    assert second.commands[container.host] == 1 and not second.uploads, second.command_list
    return first, second


def test_files(target, tmp_path):
    container, _ = target
    container.sh("mkdir -p '/etc/docker/certs.d/registry:5000' && touch '/etc/docker/certs.d/registry:5000/ca.crt' "
                 "/etc/default/docker && echo '{}' > /etc/docker/daemon.json && "
                 "python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind(\"/run/docker.sock\")' && "
                 "chown nobody:nogroup /etc/docker /run/docker.sock /etc/default/docker && "
                 "chmod 777 /etc/docker && chmod 666 /etc/docker/daemon.json /etc/default/docker /run/docker.sock "
                 "'/etc/docker/certs.d/registry:5000/ca.crt'")
    data = {"docker_socket_path": "/run/docker.sock"}
    # 3.15-3.18 (socket, daemon.json) are verified through the running daemon's own flags: the
    # daemon deploy's test and the lab check them; here their files are checked directly
    ids = ["3.5", "3.6", "3.7", "3.8", "3.19", "3.20"]
    before = statuses(verify(data, ids, name=container.host))
    assert before == {"3.5": "FAIL", "3.6": "FAIL", "3.7": "PASS", "3.8": "FAIL", "3.19": "FAIL", "3.20": "FAIL"}, before
    first, _ = deploy_twice(tmp_path, container, data, entry("docker_files", "docker_files"))
    assert len(first.changed[container.host]) == 8, first.changed  # 3.5 3.6 3.8 3.15 3.16 3.18 3.19 3.20
    assert statuses(verify(data, ids, name=container.host)) == {i: "PASS" for i in ids}
    assert container.sh("stat -c '%a %U:%G' /etc/docker /run/docker.sock /etc/docker/daemon.json "
                        "'/etc/docker/certs.d/registry:5000/ca.crt'").stdout \
        == "755 root:root\n660 root:docker\n644 root:root\n444 root:root\n"


def test_users(target, tmp_path):
    container, _ = target
    container.sh("for u in alice mallory; do useradd -M $u && gpasswd -a $u docker; done >/dev/null")
    data = {"docker_trusted_users": ["alice"]}
    assert verify(data, ["1.1.2"], name=container.host)["1.1.2"].status == "FAIL"
    first, _ = deploy_twice(tmp_path, container, data, entry("docker_users", "docker_users"))
    assert first.changed[container.host] == [
        "Docker users | [cis-docker:1.6.0:1.1.2] Only trusted users in group docker", "Docker users | [cis-docker:1.6.0:2.9] Remap user dockremap",
        "Docker users | [cis-docker:1.6.0:2.9] /etc/subuid range for dockremap",
        "Docker users | [cis-docker:1.6.0:2.9] /etc/subgid range for dockremap"]
    assert verify(data, ["1.1.2"], name=container.host)["1.1.2"].status == "PASS"
    assert container.sh("getent group docker").stdout == "docker:x:999:alice\n"
    assert container.sh("getent passwd dockremap").stdout.endswith(":/nonexistent:/usr/sbin/nologin\n")
    for path in ("/etc/subuid", "/etc/subgid"):  # useradd gave alice and mallory their own ranges: kept
        lines = container.read(path).splitlines()
        assert "dockremap:165536:65536" in lines and [x for x in lines if x.startswith(("alice:", "mallory:"))], lines
    assert not container.exists("/nonexistent")


def test_audit(target, tmp_path):
    container, key = target
    data = {"auditd_key": key, "docker_socket_path": "/nonexistent/docker.sock"}
    ids = [f"1.1.{n}" for n in range(3, 19) if n != 11]  # 1.1.11 watches the daemon's own config file
    first, _ = deploy_twice(tmp_path, container, data, entry("docker_audit", "docker_audit"))
    assert len(first.changed[container.host]) == 2  # the rules file and loading it
    results = verify(data, ids, name=container.host)
    passed = {cid for cid, r in results.items() if r.status == "PASS"}
    # what exists in this container: dockerd, containerd and its shims, runc (this machine's /usr),
    # /etc/docker, docker.service and docker.socket unit files, daemon.json (written by the daemon deploy)
    assert {"1.1.3", "1.1.6", "1.1.14", "1.1.18"} <= passed, statuses(results)
    assert {r.status for r in results.values()} <= {"PASS", "SKIP"}, {c: (r.status, r.found) for c, r in results.items()}
    # a watch deleted behind the deploy's back is loaded again, and only it
    container.sh(f"auditctl -W /etc/docker -p rwxa -k {key}")
    repair = deploy(tmp_path / "repair", [(container.host, data)], entry("docker_audit", "docker_audit"),
                    env=container.daemon.env())
    assert repair.changed[container.host] == ["Docker audit rules | Load the 1 Docker audit watches"] or \
        repair.changed[container.host][0].startswith("Docker audit rules | Load the"), repair.changed
    assert verify(data, ["1.1.6"], name=container.host)["1.1.6"].status == "PASS"


def test_platform(target, tmp_path):
    container, key = target
    rules = [f"-w /etc/passwd -p wa -k {key}", f"-a always,exit -F arch=b64 -S init_module,finit_module -k {key}",
             f"-w /etc/hld-absent -p wa -k {key}"]
    data = {"auditd_platform_rules": rules}
    before = statuses(verify(data, ["HL-5.1", "HL-6.1"], name=container.host))
    assert before == {"HL-5.1": "FAIL", "HL-6.1": "FAIL"}
    first, _ = deploy_twice(tmp_path, container, data, entry("platform", "platform"))
    assert "Platform: engine limits, services, packages, audit | [hardline-platform:1:HL-5.1] Remove telnet" in first.changed[container.host]
    after = verify(data, ["HL-4.2", "HL-5.1", "HL-5.2", "HL-6.1"], name=container.host)
    assert statuses(after) == {"HL-4.2": "SKIP", "HL-5.1": "PASS", "HL-5.2": "SKIP", "HL-6.1": "PASS"}, \
        {c: r.found for c, r in after.items()}
    assert "install ok installed" not in container.sh("dpkg-query -W -f='${Status}' telnet 2>&1 || true").stdout


def test_lsm_apparmor_profiles(target, tmp_path):
    container, _ = target
    data = {"apparmor_workload_profiles": {"web": ["deny /srv/** w,"]}, "apparmor_default_profile": True}
    first, _ = deploy_twice(tmp_path, container, data, entry("lsm", "lsm"))
    assert len(first.changed[container.host]) == 3
    assert "deny /srv/** w," in container.read("/etc/apparmor.d/hardline-docker-web")
    assert "profile docker-default flags=" in container.read("/etc/apparmor.d/docker-default")
    # this kernel has no AppArmor: the profiles wait for it, and the verifier says why they fail
    result = verify(data, ["HL-2.2"], name=container.host)["HL-2.2"]
    assert result.status == "FAIL" and "AppArmor is not enabled" in result.found


def test_whole_harden_then_nothing_to_change_with_one_command(daemon, monkeypatch, tmp_path):
    """harden() as `pyinfra INVENTORY deploys/harden.py` runs it. The container's dockerd is the
    test daemon outside (socket mounted in; SIMULATED systemctl: restart is a no-op) and its
    network sysctls are preset (its /proc/sys is read-only)."""
    for name, value in daemon.env().items():
        monkeypatch.setenv(name, value)
    with whole_host(daemon, tmp_path) as (container, data):
        first, _ = deploy_twice(tmp_path, container, data, entry("harden", "harden"))
        assert len(first.changed[container.host]) >= 15, first.changed
        ids = ["1.1.2", "1.1.3", "1.1.6", "3.5", "3.6", "4.5", "5.23", "HL-1.1", "HL-1.2", "HL-5.1", "HL-6.1"]
        after = verify(data, ids, name=container.host)
        assert statuses(after) == {i: "PASS" for i in ids}, {c: r.found for c, r in after.items() if r.status != "PASS"}
        dry = deploy(tmp_path / "dry", [(container.host, data)], entry("harden", "harden"), dry=True, env=daemon.env())
        assert dry.changed[container.host] == [] and dry.conditional[container.host] == []
        assert dry.commands[container.host] == 1
