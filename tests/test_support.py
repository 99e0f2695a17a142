"""Proof that the real-target harness works: daemons, image, sshd, clean-up."""

from __future__ import annotations

import json
import os
import subprocess
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import paramiko
import pytest
import testinfra

from tests.support import DaemonFactory, DaemonStartError, DockerDaemon, SshServer
from tests.support.daemons import all_pids, descendants, is_alive, mounts_under

pytest_plugins = ["tests.support.fixtures"]

BIP = "10.213.0.1/24"  # deliberately the same on two daemons: only works if isolated


# -- helpers --------------------------------------------------------------------


def live_pids_mentioning(text: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains ``text``."""
    found = []
    for pid in all_pids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError):
            continue
        if text in cmdline and is_alive(pid) and pid != os.getpid():
            found.append(pid)
    return found


def netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def daemon_pids(daemon: DockerDaemon) -> list[int]:
    """dockerd, containerd, shims and container processes belonging to ``daemon``."""
    pids = set(live_pids_mentioning(str(daemon.dir)))
    pids.update(daemon._netns_pids())  # noqa: SLF001 - the test inspects internals on purpose
    pids.update(daemon._container_pids())  # noqa: SLF001
    return sorted(p for p in pids if is_alive(p))


def assert_daemon_gone(daemon: DockerDaemon) -> None:
    """Nothing of ``daemon`` survives: processes, namespace, mounts."""
    assert not daemon.running and daemon.pid is None
    assert live_pids_mentioning(str(daemon.dir)) == []
    assert daemon.netns not in netns_names()
    assert mounts_under(daemon.dir) == []


def bridge_options(daemon: DockerDaemon) -> dict[str, str]:
    out = daemon.docker("network", "inspect", "bridge", "--format", "{{json .Options}}", check=True).stdout
    return json.loads(out)


def write_other_host_key(sshd: SshServer, tmp_path: Path) -> Path:
    """known_hosts naming the server's address with a *different* key."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    other = " ".join((tmp_path / "other.pub").read_text().split()[:2])
    path = tmp_path / "wrong_known_hosts"
    path.write_text(f"[127.0.0.1]:{sshd.port} {other}\n")
    return path


# -- docker daemons -------------------------------------------------------------------


@pytest.mark.dockerd
def test_two_daemons_side_by_side_report_their_own_config(daemon_factory: DaemonFactory) -> None:
    strict = daemon_factory({"icc": False, "labels": ["hl.test=strict"], "bip": BIP})
    loose = daemon_factory({"bip": BIP})
    print(f"\ndaemon start: {strict.start_seconds:.2f}s, {loose.start_seconds:.2f}s")

    for daemon in (strict, loose):  # pid is dockerd itself, not a wrapper
        assert daemon.pidfile.read_text().strip() == str(daemon.pid)
        assert os.readlink(f"/proc/{daemon.pid}/exe").endswith("dockerd")
    strict_info, loose_info = strict.info(), loose.info()
    assert strict_info["ID"] != loose_info["ID"]
    assert strict_info["DockerRootDir"] == str(strict.data_root)
    assert loose_info["DockerRootDir"] == str(loose.data_root)
    assert strict_info["Labels"] == ["hl.test=strict"]
    assert loose_info["Labels"] == []
    assert bridge_options(strict)["com.docker.network.bridge.enable_icc"] == "false"
    assert bridge_options(loose)["com.docker.network.bridge.enable_icc"] == "true"
    # Same bip on both: each docker0 lives in its own namespace, with its own
    # iptables chains, so neither daemon disturbs the other (or the host).
    for daemon in (strict, loose):
        assert "10.213.0.1/24" in daemon.netns_exec("ip", "addr", "show", "docker0").stdout
        assert "-N DOCKER" in daemon.netns_exec("iptables", "-S").stdout
    assert strict.start_seconds is not None and strict.start_seconds < 30


@pytest.mark.dockerd
def test_busybox_container_runs_on_each_daemon(
    daemon_factory: DaemonFactory, busybox_image: Callable[..., str]
) -> None:
    daemons = [daemon_factory({"icc": False}), daemon_factory({})]
    for daemon in daemons:
        tag = busybox_image(daemon)
        image_id = daemon.docker("image", "inspect", "--format", "{{.Id}}", tag, check=True).stdout
        assert busybox_image(daemon) == tag  # idempotent: no second import
        assert daemon.docker("image", "inspect", "--format", "{{.Id}}", tag, check=True).stdout == image_id

        cid = daemon.docker("run", "-d", "--name", "sleeper", tag, "sleep", "3600", check=True).stdout.strip()
        state = daemon.docker("inspect", "--format", "{{.State.Running}}", cid, check=True).stdout.strip()
        assert state == "true"
        assert daemon.docker("exec", "sleeper", "echo", "hello", check=True).stdout.strip() == "hello"
        assert daemon.docker("run", "--rm", "--user", "nobody", tag, "id", "-u", check=True).stdout.strip() == "65534"
    # Each daemon only sees its own container.
    for daemon in daemons:
        assert len(daemon.docker("ps", "-q", check=True).stdout.split()) == 1


@pytest.mark.dockerd
def test_invalid_config_raises_with_log_tail(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory.new()
    with pytest.raises(DaemonStartError) as info:
        daemon.start('{"icc": false, // comments are not JSON\n', wait=30)
    assert str(daemon.config_path) in info.value.log_tail
    assert "invalid character" in info.value.log_tail
    assert "dockerd log" in str(info.value)
    assert_daemon_gone(daemon)


@pytest.mark.dockerd
def test_config_none_passes_no_config_file_and_leaves_etc_docker_alone(daemon_factory: DaemonFactory) -> None:
    etc = Path("/etc/docker")
    before = sorted((p.name, p.stat().st_mtime_ns) for p in etc.iterdir()) if etc.is_dir() else None
    daemon = daemon_factory(None)
    cmdline = Path(f"/proc/{daemon.pid}/cmdline").read_bytes().split(b"\0")
    assert b"--config-file" not in cmdline
    assert not daemon.config_path.exists()
    assert daemon.info()["LiveRestoreEnabled"] is False  # defaults, nothing read from the host
    after = sorted((p.name, p.stat().st_mtime_ns) for p in etc.iterdir()) if etc.is_dir() else None
    assert before == after


@pytest.mark.dockerd
def test_stop_leaves_no_processes_namespace_or_mounts(
    daemon_factory: DaemonFactory, busybox_image: Callable[..., str]
) -> None:
    daemon = daemon_factory({})
    tag = busybox_image(daemon)
    daemon.docker("run", "-d", tag, "sleep", "3600", check=True)
    daemon.docker("run", "-d", "--network", "host", tag, "sleep", "3600", check=True)
    pids = daemon_pids(daemon)
    # dockerd, containerd, 2 shims, 2 sleeps
    assert len(pids) >= 6, pids

    began = time.monotonic()
    daemon.stop()
    print(f"\ndaemon stop: {time.monotonic() - began:.2f}s")
    assert [p for p in pids if is_alive(p)] == []
    assert_daemon_gone(daemon)
    daemon.stop()  # idempotent
    daemon.remove()
    assert not daemon.dir.exists()


@pytest.mark.dockerd
def test_factory_teardown_stops_and_removes_everything() -> None:
    with DaemonFactory() as factory:
        daemons = [factory({}), factory({"live-restore": True})]
        assert daemons[1].info()["LiveRestoreEnabled"] is True
    for daemon in daemons:
        assert_daemon_gone(daemon)
        assert not daemon.dir.exists()


@pytest.mark.dockerd
def test_daemon_reachable_over_real_ssh(daemon_factory: DaemonFactory, sshd: SshServer) -> None:
    daemon = daemon_factory({"labels": ["hl.test=ssh"]})
    host = sshd.testinfra_host()
    out = host.check_output("docker -H %s info --format '{{json .Labels}}'", daemon.host_url)
    assert out == '["hl.test=ssh"]'


# -- sshd -----------------------------------------------------------------------


def test_sshd_ssh_cli(sshd: SshServer) -> None:
    argv = [
        "ssh", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={sshd.known_hosts}",
        "-o", "StrictHostKeyChecking=yes", "-i", str(sshd.client_key), "-p", str(sshd.port),
        "root@127.0.0.1", "id -u",
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"
    assert sshd.ssh("true").returncode == 0  # same via the generated ssh_config
    assert sshd.known_hosts.read_text().startswith(f"[127.0.0.1]:{sshd.port} ssh-ed25519 ")


def test_sshd_testinfra_paramiko(sshd: SshServer) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # paramiko's WarningPolicy: "Unknown host key"
        host = testinfra.get_host(sshd.testinfra_url, ssh_identity_file=str(sshd.client_key))
        assert host.check_output("id -u") == "0"
    assert sshd.testinfra_url == f"paramiko://root@127.0.0.1:{sshd.port}"
    assert sshd.testinfra_host().check_output("id -un") == "root"


def test_testinfra_paramiko_ignores_known_hosts(sshd: SshServer, tmp_path: Path) -> None:
    """Pins the finding in sshd.py: ssh_config host-key settings are ignored."""
    wrong = write_other_host_key(sshd, tmp_path)
    config = tmp_path / "ssh_config"
    config.write_text(sshd.ssh_config.read_text().replace(str(sshd.known_hosts), str(wrong)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        host = testinfra.get_host(sshd.testinfra_url, ssh_config=str(config), ssh_identity_file=str(sshd.client_key))
        assert host.run("true").rc == 0  # a wrong key is accepted


def test_strict_paramiko_rejects_wrong_or_unknown_key(sshd: SshServer, tmp_path: Path) -> None:
    wrong = write_other_host_key(sshd, tmp_path)
    with pytest.raises(paramiko.BadHostKeyException):
        sshd.testinfra_host(known_hosts=wrong).run("true")
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        sshd.testinfra_host(known_hosts=empty).run("true")


def test_testinfra_ssh_backend_is_strict(sshd: SshServer, tmp_path: Path) -> None:
    assert testinfra.get_host("ssh://127.0.0.1", ssh_config=str(sshd.ssh_config)).check_output("echo ok") == "ok"
    config = tmp_path / "ssh_config"
    wrong = write_other_host_key(sshd, tmp_path)
    config.write_text(sshd.ssh_config.read_text().replace(str(sshd.known_hosts), str(wrong)))
    with pytest.raises(RuntimeError, match="REMOTE HOST IDENTIFICATION HAS CHANGED"):
        testinfra.get_host("ssh://127.0.0.1", ssh_config=str(config)).run("true")


def test_pyinfra_data_connects_and_checks_host_key(sshd: SshServer, tmp_path: Path) -> None:
    from pyinfra.api import Config, Inventory, State
    from pyinfra.api.connect import connect_all
    from pyinfra.api.exceptions import PyinfraError

    data = sshd.pyinfra_data("target")
    assert data["ssh_hostname"] == "127.0.0.1" and data["ssh_user"] == "root"
    assert {"ssh_port", "ssh_key", "ssh_known_hosts_file"} <= data.keys()

    inventory = Inventory(([sshd.pyinfra_host("target")], {}))
    connect_all(State(inventory, Config()))
    ok, output = inventory.get_host("target").run_shell_command("id -u")
    assert ok and output.stdout == "0"

    bad = Inventory(([sshd.pyinfra_host("bad", ssh_known_hosts_file=str(write_other_host_key(sshd, tmp_path)))], {}))
    with pytest.raises(PyinfraError):
        connect_all(State(bad, Config()))


def test_sshd_stop_kills_listener_and_open_sessions() -> None:
    server = SshServer().start()
    try:
        host = server.testinfra_host()
        assert host.check_output("echo alive") == "alive"  # keeps a session open
        listener = server.pid
        assert listener is not None
        sessions = descendants(listener)
        assert sessions, "the open paramiko connection should have an sshd child"
    finally:
        server.stop()
    assert [p for p in [listener, *sessions] if is_alive(p)] == []
    assert live_pids_mentioning(str(server.dir)) == []
    server.remove()
    assert not server.dir.exists()
