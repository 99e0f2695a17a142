"""deploys/docker_runtime.py by real pyinfra runs into a real container (pyinfra's @docker
connector on a test daemon), then verified by hardline's own check over testinfra's docker
backend: content trust, TLS material and listeners, seccomp profile, and idempotence (the second
run changes nothing, read from pyinfra's state, and sends one command: the batched facts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hardline.deploys.docker_runtime import ExecStart, without_hosts
from tests.support.pyinfra_run import DeployRun, deploy
from tests.support.tls import make_tls
from tests.support.verify import verify

UNIT_ARGV = "/usr/sbin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock"
# SIMULATION: the target container has no systemd; this stand-in answers `systemctl show -p
# ExecStart` as systemd does for Debian's docker.service and accepts daemon-reload.
SYSTEMCTL = f"""#!/bin/sh
case "$*" in
  *ExecStart*) echo "{{ path=/usr/sbin/dockerd ; argv[]={UNIT_ARGV} ; ignore_errors=no ; start_time=[n/a] }}" ;;
  *) exit 0 ;;
esac
"""
# the keys handed to daemon.json are written to /tmp/extra.json so the test can read them; its
# facts are gathered with the deploy's, as harden() gathers every deploy's at once
DEPLOY = """
import json
from hardline.deploys.common import host_config
from hardline.deploys.docker_runtime import docker_runtime, needs
from hardline.deploys.gather import host_facts
from hardline.deploys.operations.converge import file_needs, managed_file

host_facts().prefetch(needs(host_config()) + file_needs("/tmp/extra.json"))
docker_runtime()
managed_file(name="handover", dest="/tmp/extra.json", content=json.dumps(host_config().data["docker_daemon_extra"]))
"""


def test_exec_start_parsing_and_host_flags():
    fact = ExecStart()
    argv = fact.process([f"{{ path=/usr/sbin/dockerd ; argv[]={UNIT_ARGV} ; ignore_errors=no }}"])
    assert argv == UNIT_ARGV.split()
    assert fact.process([""]) is None
    assert without_hosts(["dockerd", "-H", "fd://", "--host=tcp://x", "-Hunix:///s", "--icc=false"]) == ["dockerd", "--icc=false"]


@pytest.fixture
def target(session_daemon_factory, busybox_image, monkeypatch):
    daemon = session_daemon_factory({})
    cid = daemon.docker("run", "-d", busybox_image(daemon), "sleep", "3600", check=True).stdout.strip()
    daemon.docker("exec", "-i", cid, "sh", "-c", "mkdir -p /usr/local/bin /etc/docker && cat > /usr/local/bin/systemctl "
                  "&& chmod +x /usr/local/bin/systemctl && : > /etc/environment", input=SYSTEMCTL, check=True)
    for key, value in daemon.env().items():
        monkeypatch.setenv(key, value)
    return daemon, cid


def pyinfra(tmp_path: Path, cid: str, data: dict, label: str = "run", expect_state: bool = True) -> DeployRun:
    return deploy(tmp_path / label, [(f"@docker/{cid}", data)], DEPLOY, expect_state=expect_state)


def test_runtime_deploy_into_a_container(target, tmp_path):
    daemon, cid = target
    tls = make_tls(tmp_path / "tls")
    profile = tmp_path / "seccomp.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": []}))
    data = {"docker_tls_hosts": ["tcp://10.0.0.5:2376"], "docker_tls_ca_file": tls["tlscacert"],
            "docker_tls_cert_file": tls["tlscert"], "docker_tls_key_file": tls["tlskey"],
            "docker_seccomp_profile": str(profile)}
    first = pyinfra(tmp_path, cid, data, "first")
    assert first.returncode == 0, first.tail()

    def sh(script: str) -> str:
        return daemon.docker("exec", cid, "sh", "-c", script, check=True).stdout

    assert sh("cat /etc/environment") == "DOCKER_CONTENT_TRUST=1\n"
    assert sh("stat -c '%a %U' /etc/docker/tls/ca.pem /etc/docker/tls/cert.pem /etc/docker/tls/key.pem").split("\n")[:3] \
        == ["444 root", "444 root", "400 root"]
    assert json.loads(sh("cat /tmp/extra.json")) == {
        "tlsverify": True, "tlscacert": "/etc/docker/tls/ca.pem", "tlscert": "/etc/docker/tls/cert.pem",
        "tlskey": "/etc/docker/tls/key.pem", "seccomp-profile": "/etc/docker/seccomp.json"}
    dropin = sh("cat /etc/systemd/system/docker.service.d/hardline-tls.conf")
    assert "ExecStart=\nExecStart=/usr/sbin/dockerd --containerd=/run/containerd/containerd.sock -H fd:// " \
           "-H tcp://10.0.0.5:2376\n" in dropin
    # the verifier's own check reads what the deploy wrote (4.5 over testinfra's docker backend)
    result = verify({"docker_socket_path": "/nonexistent.sock"}, ["4.5"], name=f"@docker/{cid}")["4.5"]
    assert result.status == "PASS", result.message

    host = f"@docker/{cid}"
    assert len(first.changed[host]) >= 6, first.changed
    second = pyinfra(tmp_path, cid, data, "second")
    assert second.returncode == 0
    assert second.changed[host] == [], second.changed
    assert second.commands[host] == 1 and not second.uploads, second.command_list
    assert sh("cat /etc/environment") == "DOCKER_CONTENT_TRUST=1\n"  # not appended twice


def test_tls_without_certificates_is_refused(target, tmp_path):
    _, cid = target
    run = pyinfra(tmp_path, cid, {"docker_tls_hosts": ["tcp://10.0.0.5:2376"]}, expect_state=False)
    assert run.returncode != 0
    assert "docker_tls_ca_file" in run.output and "Traceback" not in run.output
