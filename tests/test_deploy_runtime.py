"""deploys/docker_runtime.py by real pyinfra runs into a real container (pyinfra's @docker
connector on a test daemon), then verified by hardline's own check over testinfra's docker
backend: content trust, TLS material and listeners, seccomp profile, and idempotence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hardline.deploys.docker_runtime import ExecStart, without_hosts
from hardline.labrun import changed_operations
from tests.support.tls import make_tls
from tests.support.verify import verify

ROOT = Path(__file__).resolve().parent.parent
UNIT_ARGV = "/usr/sbin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock"
# SIMULATION: the target container has no systemd; this stand-in answers `systemctl show -p
# ExecStart` as systemd does for Debian's docker.service and accepts daemon-reload.
SYSTEMCTL = f"""#!/bin/sh
case "$*" in
  *ExecStart*) echo "{{ path=/usr/sbin/dockerd ; argv[]={UNIT_ARGV} ; ignore_errors=no ; start_time=[n/a] }}" ;;
  *) exit 0 ;;
esac
"""
DEPLOY = """
import json
from io import StringIO
from pyinfra.operations import files
from hardline.deploys.common import host_config
from hardline.deploys.docker_runtime import docker_runtime

docker_runtime()
files.put(name="handover", src=StringIO(json.dumps(host_config().data["docker_daemon_extra"])), dest="/tmp/extra.json")
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


def pyinfra(tmp_path: Path, cid: str, data: dict) -> subprocess.CompletedProcess:
    inventory = tmp_path / "inventory.py"
    inventory.write_text(f"docker_hosts = [('@docker/{cid}', {data!r})]\n")
    deploy = tmp_path / "deploy_runtime.py"
    deploy.write_text(DEPLOY)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pyinfra", "-y", str(inventory), str(deploy)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_runtime_deploy_into_a_container(target, tmp_path):
    daemon, cid = target
    tls = make_tls(tmp_path / "tls")
    profile = tmp_path / "seccomp.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": []}))
    data = {"docker_tls_hosts": ["tcp://10.0.0.5:2376"], "docker_tls_ca_file": tls["tlscacert"],
            "docker_tls_cert_file": tls["tlscert"], "docker_tls_key_file": tls["tlskey"],
            "docker_seccomp_profile": str(profile)}
    first = pyinfra(tmp_path, cid, data)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]

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

    assert changed_operations(first.stdout + first.stderr) >= 6
    second = pyinfra(tmp_path, cid, data)
    assert second.returncode == 0
    assert changed_operations(second.stdout + second.stderr) == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert sh("cat /etc/environment") == "DOCKER_CONTENT_TRUST=1\n"  # not appended twice


def test_tls_without_certificates_is_refused(target, tmp_path):
    _, cid = target
    run = pyinfra(tmp_path, cid, {"docker_tls_hosts": ["tcp://10.0.0.5:2376"]})
    assert run.returncode != 0
    assert "docker_tls_ca_file" in run.stdout + run.stderr and "Traceback" not in run.stdout + run.stderr
