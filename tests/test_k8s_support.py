"""The Kubernetes test nodes are the real thing (tests/support/k8s).

A control plane made by the real ``kubeadm init`` and a worker by ``kubeadm join``; the real
kubelet runs etcd, kube-apiserver, kube-controller-manager and kube-scheduler as static pods in
containerd. These tests prove what the CIS Kubernetes checks and deploys build on: the API is
ready through admin.conf, etcd refuses clients without a certificate, kubeadm 1.20's file
modes, the kubelet reacts to manifest edits (new flags, a flag the API server does not know and
its recovery), nodes are plain SSH hosts for pyinfra, and a stopped cluster leaves nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hardline.inventory import load_hosts
from tests.support.daemons import mounts_under
from tests.support.k8s import plumbing
from tests.support.k8s.images import bin_dir

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parent.parent


def edit_manifest(node, component: str, change) -> str:
    """Apply ``change(command list)`` to a static pod manifest; return the original text."""
    path = node.manifest(component)
    original = path.read_text()
    pod = yaml.safe_load(original)
    change(pod["spec"]["containers"][0]["command"])
    path.write_text(yaml.safe_dump(pod, sort_keys=False))
    return original


def test_apiserver_ready_through_admin_conf(k8s_cluster, k8s_control_plane):
    ok, body = k8s_control_plane.readyz()
    assert ok, body
    # from the host too: the built kubectl, the loopback forward, TLS checked against kubeadm's CA
    kubectl = [str(bin_dir() / "kubectl"), f"--kubeconfig={k8s_cluster.host_kubeconfig}"]
    verbose = subprocess.run([*kubectl, "get", "--raw", "/readyz?verbose"], capture_output=True, text=True, timeout=60)
    assert verbose.returncode == 0, verbose.stderr
    assert "[+]etcd ok" in verbose.stdout and verbose.stdout.strip().endswith("readyz check passed")
    nodes = json.loads(subprocess.run([*kubectl, "get", "nodes", "-o", "json"], capture_output=True, text=True,
                                      timeout=60, check=True).stdout)  # fmt: skip
    assert {n["metadata"]["name"] for n in nodes["items"]} == {"cp1", "w1"}
    # kubectl config set-credentials panicked with the vendored reflect2 1.0.1 under Go >= 1.18
    conf = k8s_cluster.dir / "scratch.conf"
    done = subprocess.run([*kubectl[:1], f"--kubeconfig={conf}", "config", "set-credentials", "u", "--token=t"],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_etcd_refuses_a_client_without_certificate(k8s_control_plane):
    assert k8s_control_plane.etcd_health(with_cert=True).returncode == 0
    refused = k8s_control_plane.etcd_health(with_cert=False)
    assert refused.returncode != 0
    assert "is unhealthy" in refused.stderr or "deadline" in refused.stderr, refused.stderr
    assert "client didn't provide a certificate" in k8s_control_plane.component_log("etcd", 200)


KUBEADM_MODES = {
    "/etc/kubernetes/manifests/kube-apiserver.yaml": "600",
    "/etc/kubernetes/manifests/kube-controller-manager.yaml": "600",
    "/etc/kubernetes/manifests/kube-scheduler.yaml": "600",
    "/etc/kubernetes/manifests/etcd.yaml": "600",
    "/etc/kubernetes/admin.conf": "600",
    "/etc/kubernetes/controller-manager.conf": "600",
    "/etc/kubernetes/scheduler.conf": "600",
    "/etc/kubernetes/kubelet.conf": "600",
    "/etc/kubernetes/pki/ca.crt": "644",
    "/etc/kubernetes/pki/ca.key": "600",
    "/etc/kubernetes/pki/apiserver.crt": "644",
    "/etc/kubernetes/pki/apiserver.key": "600",
    "/etc/kubernetes/pki/sa.key": "600",
    "/etc/kubernetes/pki/sa.pub": "600",
    "/etc/kubernetes/pki/etcd": "755",
    "/etc/kubernetes/pki/etcd/ca.crt": "644",
    "/etc/kubernetes/pki/etcd/server.key": "600",
    "/var/lib/kubelet/config.yaml": "644",
    "/var/lib/kubelet/kubeadm-flags.env": "644",
    "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf": "644",
}
WORKER_MODES = {
    "/etc/kubernetes/kubelet.conf": "600",
    "/etc/kubernetes/pki/ca.crt": "644",
    "/var/lib/kubelet/config.yaml": "644",
    "/var/lib/kubelet/kubeadm-flags.env": "644",
}


def stat_over_ssh(node, paths) -> dict[str, str]:
    done = node.ssh("stat", "-c", "%n %a %U:%G", *paths)
    assert done.returncode == 0, done.stderr
    return {line.split()[0]: line.split()[1] for line in done.stdout.splitlines()}


def test_file_modes_kubeadm_wrote(k8s_control_plane, k8s_worker):
    assert stat_over_ssh(k8s_control_plane, KUBEADM_MODES) == KUBEADM_MODES
    assert stat_over_ssh(k8s_worker, WORKER_MODES) == WORKER_MODES
    pki = k8s_control_plane.ssh("find", "/etc/kubernetes/pki", "-type", "f", "-printf", "%f %m\n").stdout.split("\n")
    modes = dict(line.split() for line in pki if line)
    assert {m for f, m in modes.items() if f.endswith(".crt")} == {"644"}
    assert {m for f, m in modes.items() if f.endswith(".key")} == {"600"}
    # the worker has no control-plane files, the control plane's were never written on the host
    assert k8s_worker.ssh("test", "-e", "/etc/kubernetes/admin.conf").returncode == 1
    assert not Path("/etc/kubernetes/admin.conf").exists()


def test_kubelet_runs_the_static_pods(k8s_control_plane, k8s_worker):
    for node in (k8s_control_plane, k8s_worker):
        argv = node.argv("kubelet")
        assert argv and argv[0] == "/usr/bin/kubelet", argv
        assert "--config=/var/lib/kubelet/config.yaml" in argv and "--kubeconfig=/etc/kubernetes/kubelet.conf" in argv
        assert "--container-runtime=remote" in argv and node.kubelet_healthz()
    # the kubelet reports its static pods to the API as mirror pods
    assert {f"{c}-cp1" for c in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")} <= \
        k8s_control_plane.wait_mirror_pods()
    # the API server's process is the container's, with the manifest's command exactly
    manifest = yaml.safe_load(k8s_control_plane.manifest("kube-apiserver").read_text())
    assert k8s_control_plane.argv("kube-apiserver") == manifest["spec"]["containers"][0]["command"]
    # the kubelet set its kernel tunables (protectKernelDefaults is off) in the node's simulated
    # /proc/sys files, not in the machine's kernel
    assert k8s_worker.run("cat", "/proc/sys/kernel/panic_on_oops").stdout.strip() == "1"
    assert k8s_worker.path("/proc/sys/vm/overcommit_memory").read_text().strip() == "1"
    assert Path("/proc/sys/kernel/panic_on_oops").read_text() == k8s_worker.machine_tunables["kernel/panic_on_oops"]


def test_manifest_change_restarts_component_with_new_flags(k8s_control_plane):
    node = k8s_control_plane
    before = node.wait_argv("kube-scheduler", lambda a: "--profiling=false" not in a)
    old_pids = node.pids("kube-scheduler")
    original = edit_manifest(node, "kube-scheduler", lambda cmd: cmd.append("--profiling=false"))
    try:
        after = node.wait_argv("kube-scheduler", lambda a: "--profiling=false" in a)
        assert after == [*before, "--profiling=false"]
        assert not set(node.pids("kube-scheduler")) & set(old_pids)
    finally:
        node.manifest("kube-scheduler").write_text(original)
    node.wait_argv("kube-scheduler", lambda a: a == before)


def test_unknown_apiserver_flag_fails_and_restoring_recovers(k8s_control_plane):
    node = k8s_control_plane
    original = edit_manifest(node, "kube-apiserver", lambda cmd: cmd.append("--hardline-no-such-flag=1"))
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if "unknown flag: --hardline-no-such-flag" in node.component_log("kube-apiserver", 20):
                break
            time.sleep(1)
        assert "unknown flag: --hardline-no-such-flag" in node.component_log("kube-apiserver", 20)
        assert not node.readyz()[0]
    finally:
        node.manifest("kube-apiserver").write_text(original)
    node.wait_healthy()
    assert "--hardline-no-such-flag=1" not in node.argv("kube-apiserver")


def test_systemctl_restart_kubelet_rereads_its_flags(k8s_worker):
    """Deploys restart the kubelet with `systemctl restart kubelet`; on the node that is the
    stand-in over /etc/init.d/kubelet, which re-reads the drop-in and /etc/default/kubelet."""
    node = k8s_worker
    old = node.pids("kubelet")
    node.path("/etc/default/kubelet").write_text("KUBELET_EXTRA_ARGS=--v=3\n")
    try:
        node.restart_kubelet()
        argv = node.wait_argv("kubelet", lambda a: "--v=3" in a, timeout=60)
        assert argv[-1] == "--v=3" and not set(node.pids("kubelet")) & set(old)
        assert node.run("systemctl", "is-active", "kubelet").stdout.strip() == "active"
    finally:
        node.path("/etc/default/kubelet").unlink()
        node.restart_kubelet()
    node.wait_argv("kubelet", lambda a: "--v=3" not in a, timeout=60)
    node.wait_healthy()


def test_pyinfra_deploys_to_the_node_over_ssh(k8s_cluster, k8s_control_plane, tmp_path):
    inventory = k8s_cluster.write_inventory(tmp_path / "inventory.py")
    roles = {h.name: h.roles for h in load_hosts(str(inventory))}
    assert roles == {"cp1": ("k8s_control_plane", "k8s_etcd"), "w1": ("k8s_worker",)}
    deploy = tmp_path / "deploy.py"
    deploy.write_text(
        "from pyinfra.operations import files\n"
        "files.line(name='kubelet extra args', path='/etc/default/kubelet', line='KUBELET_EXTRA_ARGS=',"
        " replace='KUBELET_EXTRA_ARGS=')\n"
    )
    run = subprocess.run([sys.executable, "-m", "pyinfra", "-y", "--limit", "cp1", str(inventory), str(deploy)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=180)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert k8s_control_plane.path("/etc/default/kubelet").read_text() == "KUBELET_EXTRA_ARGS=\n"
    assert not Path("/etc/default/kubelet").exists()  # the node's /etc, not the machine's
    k8s_control_plane.run("rm", "-f", "/etc/default/kubelet", check=True)
    # the forwarder closes what it relays: many connections leave no descriptors behind
    fds = Path(f"/proc/{k8s_control_plane.forward_pid}/fd")
    before = len(list(fds.iterdir()))
    assert all(k8s_control_plane.ssh("true").returncode == 0 for _ in range(5))
    deadline = time.monotonic() + 10  # the relay closes a moment after the client has gone
    while len(list(fds.iterdir())) > before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(list(fds.iterdir())) <= before
    # testinfra over paramiko, host key checked, as `hardline verify` connects
    host = k8s_control_plane.testinfra_host()
    assert host.file("/etc/kubernetes/admin.conf").mode == 0o600
    assert host.process.get(comm="kube-apiserver").args.startswith("kube-apiserver --advertise-address=")


def test_a_stopped_cluster_leaves_nothing(k8s_cluster_factory):
    cluster = k8s_cluster_factory()
    node = cluster.control_plane("solo")
    assert node.readyz()[0]
    pid_ns = Path(f"/proc/{node.init_pid}/ns/pid").readlink()
    netns, cgroup, directory = node.netns, node.cgroup_root.lstrip("/"), cluster.dir
    cluster.stop()
    leftover = [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and _in_ns(p, pid_ns)]
    assert leftover == []
    assert not (plumbing.NETNS_DIR / netns).exists() and not (plumbing.NETNS_DIR / cluster.id).exists()
    assert not [h for h in plumbing.cgroup_hierarchies() if (h / cgroup).exists()]
    assert not directory.exists() and not mounts_under(directory)


def _in_ns(proc: Path, pid_ns) -> bool:
    try:
        return (proc / "ns/pid").readlink() == pid_ns
    except OSError:
        return False

