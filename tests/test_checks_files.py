"""CIS Docker section 3 (ownership and modes) and 1.1.1 (separate partition) on real files,
sockets and mounts of this machine, including a real daemon's daemon.json, socket and TLS files."""

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.tls import make_tls
from tests.support.verify import daemon_data, statuses, verify

NOBODY = 65534


@contextmanager
def changed(path: Path, mode: int | None = None, uid: int | None = None, gid: int | None = None):
    """Temporarily change a real file's mode/owner, restoring it afterwards."""
    st = path.stat()
    try:
        if mode is not None:
            path.chmod(mode)
        if uid is not None or gid is not None:
            os.chown(path, st.st_uid if uid is None else uid, st.st_gid if gid is None else gid)
        yield
    finally:
        os.chown(path, st.st_uid, st.st_gid)
        path.chmod(st.st_mode & 0o7777)


@pytest.fixture
def config_tree(tmp_path):
    """A docker config dir with a registry certificate, /etc/default/docker and /etc/sysconfig/docker
    stand-ins, all compliant (root-owned, strict modes)."""
    cfg = tmp_path / "etc-docker"
    (cfg / "certs.d" / "registry.example:5000").mkdir(parents=True)
    cert = cfg / "certs.d" / "registry.example:5000" / "ca.crt"
    cert.write_text("cert")
    cert.chmod(0o444)
    cfg.chmod(0o755)
    default = tmp_path / "default-docker"
    default.write_text('DOCKER_OPTS=""\n')
    default.chmod(0o644)
    sysconfig = tmp_path / "sysconfig-docker"
    sysconfig.write_text("OPTIONS=\n")
    sysconfig.chmod(0o600)
    return {"docker_config_dir": str(cfg), "docker_default_file": str(default),
            "docker_sysconfig_file": str(sysconfig), "cert": cert}


def data_for(daemon, tree, **extra):
    files = {k: v for k, v in tree.items() if k != "cert"}
    # the daemon's own containerd socket stands in for /run/containerd/containerd.sock
    containerd = Path(daemon.exec_root) / "containerd" / "containerd.sock"
    return daemon_data(daemon, containerd_socket_path=str(containerd), **files, **extra)


@pytest.fixture(scope="module")
def daemon(session_daemon_factory):
    d = session_daemon_factory({"icc": False})
    os.chmod(d.config_path, 0o644)
    return d


SECTION_3_PRESENT = ["3.1", "3.2", "3.3", "3.4", "3.5", "3.6", "3.7", "3.8", "3.15", "3.16", "3.17", "3.18",
                     "3.19", "3.20", "3.21", "3.22", "3.23", "3.24"]


def test_compliant_files_pass(daemon, config_tree):
    results = verify(data_for(daemon, config_tree), SECTION_3_PRESENT)
    assert statuses(results) == {cid: "PASS" for cid in SECTION_3_PRESENT}, {c: r.found for c, r in results.items()}


def test_tls_files_not_configured_are_skipped_with_reason(daemon, config_tree):
    results = verify(data_for(daemon, config_tree), ["3.9", "3.10", "3.11", "3.12", "3.13", "3.14"])
    assert set(statuses(results).values()) == {"SKIP"}
    assert "tlscacert is not configured" in results["3.9"].found


@pytest.mark.parametrize("control, target, change", [
    ("3.18", "daemon.json", {"mode": 0o666}),
    ("3.17", "daemon.json", {"uid": NOBODY}),
    ("3.16", "socket", {"mode": 0o666}),
    ("3.15", "socket", {"gid": 0}),
    ("3.6", "config_dir", {"mode": 0o777}),
    ("3.5", "config_dir", {"uid": NOBODY}),
    ("3.8", "cert", {"mode": 0o644}),
    ("3.7", "cert", {"gid": NOBODY}),
    ("3.20", "default", {"mode": 0o664}),
    ("3.19", "default", {"uid": NOBODY}),
    ("3.21", "sysconfig", {"mode": 0o646}),
    ("3.22", "sysconfig", {"gid": NOBODY}),
    ("3.24", "containerd", {"mode": 0o666}),
    ("3.23", "containerd", {"uid": NOBODY}),
])
def test_loosened_file_fails(daemon, config_tree, control, target, change):
    data = data_for(daemon, config_tree)
    path = {"daemon.json": daemon.config_path, "socket": Path(daemon.socket), "config_dir": Path(data["docker_config_dir"]),
            "cert": config_tree["cert"], "default": Path(data["docker_default_file"]),
            "sysconfig": Path(data["docker_sysconfig_file"]), "containerd": Path(data["containerd_socket_path"])}[target]
    assert verify(data, [control])[control].status == "PASS"
    with changed(path, **change):
        result = verify(data, [control])[control]
    assert result.status == "FAIL", result.found
    assert str(path) in result.found


@pytest.mark.parametrize("control, change", [("3.2", {"mode": 0o666}), ("3.1", {"uid": NOBODY}),
                                             ("3.4", {"mode": 0o664}), ("3.3", {"gid": NOBODY})])
def test_packaged_unit_files(daemon, config_tree, control, change):
    # the real unit files installed by the docker.io package on this machine
    unit = Path("/lib/systemd/system") / ("docker.service" if control in ("3.1", "3.2") else "docker.socket")
    data = data_for(daemon, config_tree)
    assert verify(data, [control])[control].status == "PASS"
    with changed(unit, **change):
        result = verify(data, [control])[control]
    assert result.status == "FAIL" and str(unit) in result.found


def test_tls_files(session_daemon_factory, config_tree, tmp_path):
    tls = make_tls(tmp_path / "tls")
    daemon = session_daemon_factory({"tlsverify": True, **tls}, flags=["-H", "tcp://127.0.0.1:2376"])
    os.chmod(daemon.config_path, 0o644)
    data = data_for(daemon, config_tree)
    ids = ["3.9", "3.10", "3.11", "3.12", "3.13", "3.14"]
    assert statuses(verify(data, ids)) == {cid: "PASS" for cid in ids}
    with changed(Path(tls["tlskey"]), mode=0o440), changed(Path(tls["tlscacert"]), uid=NOBODY):
        results = statuses(verify(data, ids))
    assert results == {"3.9": "FAIL", "3.10": "PASS", "3.11": "PASS", "3.12": "PASS", "3.13": "PASS", "3.14": "FAIL"}


def _mounted(target: Path, *mount_args: str):
    target.mkdir()
    subprocess.run(["mount", *mount_args, str(target)], check=True)


def test_data_root_on_its_own_filesystem(session_daemon_factory, tmp_path):
    plain = session_daemon_factory({})
    result = verify(daemon_data(plain), ["1.1.1"])["1.1.1"]
    assert result.status == "FAIL" and "is on the filesystem mounted at /" in result.found
    # dockerd bind-mounts its data root onto itself when it runs in the host's mount namespace:
    # a mount point, but not a partition (docker-bench's `mountpoint -q` calls that a PASS)
    bound, separate = tmp_path / "bound-root", tmp_path / "separate-root"
    _mounted(bound, "--bind", str(tmp_path / "bound-root"))  # created by _mounted before mounting
    _mounted(separate, "-t", "tmpfs", "-o", "size=512m", "hl-test-tmpfs")
    try:
        for root, status, text in ((bound, "FAIL", "bind mount"), (separate, "PASS", "hl-test-tmpfs")):
            daemon = session_daemon_factory({}, flags=["--data-root", str(root)])  # last --data-root wins
            result = verify(daemon_data(daemon), ["1.1.1"])["1.1.1"]
            assert (result.status, text in result.found) == (status, True), result.found
            daemon.stop()
    finally:
        for root in (bound, separate):
            subprocess.run(["umount", "-l", str(root)], check=False)
