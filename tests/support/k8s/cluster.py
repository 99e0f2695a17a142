"""A real kubeadm cluster of test nodes: ``kubeadm init`` on a control plane, ``kubeadm join`` workers.

Per node (see node.py for the namespaces and overlays) the real software runs:

* containerd + runc from Debian (cgroupfs driver, cgroup v1), with the images of images.py;
* the kubelet built from Debian's kubernetes source, started by kubeadm itself with
  ``systemctl restart kubelet`` (node.py: the systemctl stand-in runs /etc/init.d/kubelet, which
  expands 10-kubeadm.conf + kubeadm-flags.env as systemd would);
* ``kubeadm init --config <file> --skip-phases=preflight,addon/kube-proxy`` or ``kubeadm join``,
  unchanged. kubeadm writes /etc/kubernetes (PKI, kubeconfigs, static pod manifests),
  /var/lib/kubelet/config.yaml and kubeadm-flags.env; the kubelet then runs etcd,
  kube-apiserver, kube-controller-manager and kube-scheduler as static pods from those manifests,
  and kubeadm finishes (upload-config, mark-control-plane, bootstrap tokens, CoreDNS objects).

What differs from a stock kubeadm node, and why:

* preflight is skipped: it pulls images with crictl/docker (neither here, no registry) and checks
  systemd services; kube-proxy is skipped: it would set global conntrack sysctls of the machine.
* the kubelet gets ``--cgroup-root=/<cluster>-<node>`` (nodeRegistration.kubeletExtraArgs, so in
  kubeadm-flags.env): the cgroup tree is the machine's, and two kubelets must not share /kubepods.
* the etcd image holds Debian's etcd 3.4.23 (kubeadm 1.20 names 3.4.13; etcd.local.imageTag).
* the six kernel tunables of node.py are per-node files (simulated), not the machine's.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import shutil
import string
import subprocess
import time
from pathlib import Path
from types import TracebackType

import yaml
from cryptography.hazmat.primitives import serialization

from ..daemons import tail
from . import images, plumbing
from .node import CONTAINERD_SOCKET, K8sNode, NodeError

SUBNET = "10.247.0"  # inside the cluster's own namespaces only
NODE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,11}$")
ADMIN_CONF = "/etc/kubernetes/admin.conf"
ETCD_PKI = "/etc/kubernetes/pki/etcd"
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")

# containerd 1.6's own defaults except: node-private paths come from the node's overlays; the pod
# sandbox image is the one kubeadm 1.20 names; and, where root lacks CAP_SYS_RESOURCE (this
# machine's bounding set drops it, so no process may lower an oom_score_adj), pods' OOM scores
# are clamped to containerd's own instead of the kubelet's -997/-998, which runc could not set.
CONTAINERD_CONFIG = f"""\
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{CONTAINERD_SOCKET}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{images.PAUSE_IMAGE}"
  restrict_oom_score_adj = {{restrict_oom}}
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
"""


def has_cap_sys_resource() -> bool:
    bounding = Path("/proc/self/status").read_text().split("CapBnd:")[1].split()[0]
    return bool(int(bounding, 16) & (1 << 24))


def containerd_config() -> str:
    return CONTAINERD_CONFIG.format(restrict_oom=str(not has_cap_sys_resource()).lower())


class KubeNode(K8sNode):
    """A node running Kubernetes: kubectl, health, component processes and logs."""

    role = "worker"

    def kubectl(self, *args: str, timeout: float = 60, input: str | None = None):
        """kubectl inside the node with the admin kubeconfig (control plane) or kubelet.conf."""
        conf = ADMIN_CONF if self.role == "control-plane" else "/etc/kubernetes/kubelet.conf"
        return self.run("kubectl", f"--kubeconfig={conf}", *args, timeout=timeout, input=input)

    def readyz(self) -> tuple[bool, str]:
        """The API server's /readyz through the admin kubeconfig: (ok, body or error)."""
        done = self.kubectl("get", "--raw", "/readyz", timeout=20)
        return done.returncode == 0 and done.stdout.strip() == "ok", (done.stdout + done.stderr).strip()

    def etcd_health(self, *, with_cert: bool = True):
        """``etcdctl endpoint health`` on 127.0.0.1:2379, with kubeadm's healthcheck client cert or none."""
        args = ["etcdctl", "--endpoints=https://127.0.0.1:2379", f"--cacert={ETCD_PKI}/ca.crt",
                "--dial-timeout=5s", "--command-timeout=10s"]  # fmt: skip
        if with_cert:
            args += [f"--cert={ETCD_PKI}/healthcheck-client.crt", f"--key={ETCD_PKI}/healthcheck-client.key"]
        return self.run(*args, "endpoint", "health", timeout=30)

    def kubelet_healthz(self) -> bool:
        return self.run("curl", "-sf", "--max-time", "5", "http://127.0.0.1:10248/healthz", timeout=15).stdout == "ok"

    def wait_healthy(self, timeout: float = 240) -> None:
        """Until the kubelet answers and, on a control plane, etcd is healthy and /readyz is ok."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            problems = [] if self.kubelet_healthz() else ["kubelet /healthz"]
            if self.role == "control-plane":
                etcd = self.etcd_health()
                if etcd.returncode != 0:
                    problems.append(f"etcd: {etcd.stderr.strip()[-300:]}")
                ok, body = self.readyz()
                if not ok:
                    problems.append(f"apiserver /readyz: {body[-300:]}")
            if not problems:
                return
            last = "; ".join(problems)
            time.sleep(1)
        raise NodeError(f"{self.name} not healthy after {timeout:g}s: {last}\n{self.diagnostics()}")

    def wait_mirror_pods(self, timeout: float = 180) -> set[str]:
        """Until the API lists the control plane's static pods (the kubelet's mirror pods) as
        Running; returns their names. The kubelet creates a mirror pod at a pod sync once the API
        answers, so after (re)start of the API server this takes up to a minute or so."""
        wanted = {f"{c}-{self.name}" for c in CONTROL_PLANE}
        deadline = time.monotonic() + timeout
        running: set[str] = set()
        while time.monotonic() < deadline:
            done = self.kubectl("get", "pods", "-n", "kube-system", "-o", "json", timeout=30)
            pods = json.loads(done.stdout) if done.returncode == 0 else {}
            running = {p["metadata"]["name"] for p in pods.get("items", []) if p["status"].get("phase") == "Running"}
            if wanted <= running:
                return running
            time.sleep(2)
        raise NodeError(f"{self.name}: mirror pods {sorted(wanted - running)} not Running after {timeout:g}s")

    # -- processes and logs ----------------------------------------------------------------------

    def pids(self, comm: str) -> list[int]:
        """Pids (as the node numbers them) of the node's processes named ``comm``: read from the
        node's own /proc, which also lists the pods' processes (their PID namespaces are
        children of the node's), and nothing of other nodes or the machine."""
        if not self.init_pid:
            return []
        found = []
        for entry in self.path("/proc").iterdir():
            try:
                if entry.name.isdigit() and (entry / "comm").read_text().strip() == comm:
                    found.append(int(entry.name))
            except OSError:
                continue
        return sorted(found)

    def argv(self, comm: str) -> list[str] | None:
        """The command line of the node's (single) process ``comm``, or None if none runs."""
        for pid in self.pids(comm):
            try:
                raw = self.path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if raw:
                return raw.rstrip(b"\0").decode().split("\0")
        return None

    def wait_argv(self, comm: str, predicate, timeout: float = 180) -> list[str]:
        """Until ``comm`` runs with a command line ``predicate`` accepts; returns that argv."""
        deadline = time.monotonic() + timeout
        argv = None
        while time.monotonic() < deadline:
            argv = self.argv(comm)
            if argv and predicate(argv):
                return argv
            time.sleep(0.5)
        raise NodeError(f"{self.name}: {comm} not running as expected after {timeout:g}s (argv {argv})\n"
                        f"--- {comm} log ---\n{self.component_log(comm)}")  # fmt: skip

    def component_log(self, component: str, lines: int = 40) -> str:
        """Tail of a component's log: the newest container log of its static pod (CRI format,
        timestamps kept), /var/log/kubelet.log for the kubelet, harness logs otherwise."""
        if component == "kubelet":
            return tail(self.path("/var/log/kubelet.log"), lines)
        pods = self.path("/var/log/pods")
        logs = list(pods.glob(f"kube-system_{component}-{self.name}_*/{component}/*.log")) if pods.is_dir() else []
        if logs:
            return tail(max(logs, key=lambda p: p.stat().st_mtime), lines)
        return self.log_tail(component, lines)

    def diagnostics(self) -> str:
        parts = [f"--- kubeadm ---\n{self.log_tail('kubeadm', 15)}", f"--- kubelet ---\n{self.component_log('kubelet', 15)}"]
        if self.role == "control-plane":
            parts += [f"--- {c} ---\n{self.component_log(c, 10)}" for c in ("etcd", "kube-apiserver")]
        return "\n".join(parts)

    def manifest(self, component: str) -> Path:
        """Host path of a static pod manifest (writes land in the node's /etc/kubernetes)."""
        return self.path(f"/etc/kubernetes/manifests/{component}.yaml")

    def restart_kubelet(self) -> None:
        """``systemctl restart kubelet``, as a deploy does (the node's systemctl stand-in)."""
        self.run("systemctl", "restart", "kubelet", check=True, timeout=60)


class K8sCluster:
    """Nodes sharing one switch; ``control_plane()`` runs kubeadm init, ``worker()`` kubeadm join.

    Use as a context manager or call ``stop()``: it stops every node and removes the namespaces,
    cgroups and the directory /tmp/<id>.
    """

    def __init__(self, base_dir: str = "/tmp") -> None:
        alphabet = string.ascii_lowercase + string.digits
        self.id = plumbing.PREFIX + "".join(secrets.choice(alphabet) for _ in range(6))
        self.dir = Path(base_dir) / self.id
        self.nodes: dict[str, KubeNode] = {}
        self.token = "".join(secrets.choice(alphabet) for _ in range(6)) + "." + \
            "".join(secrets.choice(alphabet) for _ in range(16))  # fmt: skip
        self.bin_dir = images.bin_dir()
        self.tarballs = images.image_tarballs()
        self.control_plane_node: KubeNode | None = None
        self._switch = False
        self.start_seconds: dict[str, float] = {}

    def __enter__(self) -> K8sCluster:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- nodes ---------------------------------------------------------------------------------

    def control_plane(self, name: str = "cp1", timeout: float = 300) -> KubeNode:
        """Boot a node and ``kubeadm init`` it; returns once /readyz is ok and etcd is healthy."""
        if self.control_plane_node is not None:
            raise ValueError(f"cluster {self.id} already has control plane {self.control_plane_node.name}")
        started = time.monotonic()
        node = self._boot(name, "control-plane")
        config = self.dir / name / "kubeadm.yaml"
        config.write_text(self._init_config(node))
        self._kubeadm(node, ["init", f"--config={config}", "--skip-phases=preflight,addon/kube-proxy"], timeout)
        self.control_plane_node = node
        node.wait_healthy()
        self._write_host_kubeconfig(node)
        self.start_seconds[name] = time.monotonic() - started
        return node

    def worker(self, name: str = "w1", timeout: float = 300) -> KubeNode:
        """Boot a node and ``kubeadm join`` it to the control plane (token discovery, CA pinned)."""
        cp = self.control_plane_node
        if cp is None:
            raise ValueError("start the control plane first")
        started = time.monotonic()
        node = self._boot(name, "worker")
        config = self.dir / name / "kubeadm.yaml"
        config.write_text(self._join_config(node, cp))
        self._kubeadm(node, ["join", f"--config={config}", "--skip-phases=preflight"], timeout)
        node.wait_healthy()
        self.start_seconds[name] = time.monotonic() - started
        return node

    def stop_node(self, name: str) -> None:
        node = self.nodes.pop(name)
        if node is self.control_plane_node:
            self.control_plane_node = None
        node.stop()

    def stop(self) -> None:
        errors = []
        for name in list(self.nodes):
            try:
                self.stop_node(name)
            except Exception as exc:  # noqa: BLE001 - stop the others, report all
                errors.append(str(exc))
        plumbing.delete_netns(self.id)
        self._switch = False
        shutil.rmtree(self.dir, ignore_errors=True)
        if errors:
            raise NodeError("; ".join(errors))

    def write_inventory(self, path: Path, **data) -> Path:
        """A pyinfra inventory of the running nodes as hardline reads it: the control plane in
        ``k8s_control_plane`` and ``k8s_etcd`` (kubeadm's stacked etcd), workers in
        ``k8s_workers``; ``data`` is added to every host's data (e.g. hardline_waivers)."""
        hosts = {name: node.pyinfra_data(k8s_cluster=self.id, **data) for name, node in self.nodes.items()}
        planes = [(n, hosts[n]) for n, node in self.nodes.items() if node.role == "control-plane"]
        workers = [(n, hosts[n]) for n, node in self.nodes.items() if node.role != "control-plane"]
        path.write_text(
            f"k8s_control_plane = {planes!r}\n"
            f"k8s_etcd = {[n for n, _ in planes]!r}\n"
            f"k8s_workers = {workers!r}\n"
        )
        return path

    @property
    def host_kubeconfig(self) -> Path:
        """admin.conf for the host: server is the loopback forward, TLS name checked as ``kubernetes``."""
        return self.dir / "admin-host.conf"

    # -- internals -----------------------------------------------------------------------------

    def _boot(self, name: str, role: str) -> KubeNode:
        if not NODE_NAME.match(name) or name in self.nodes:
            raise ValueError(f"node name {name!r} must match {NODE_NAME.pattern} and be new in the cluster")
        if not self._switch:
            self.dir.mkdir(parents=True, exist_ok=True)
            plumbing.create_switch(self.id)
            self._switch = True
        ip = f"{SUBNET}.{len(self.nodes) + 2}"
        node = KubeNode(self.id, self.dir, name, ip, self.bin_dir)
        node.role = role
        self.nodes[name] = node
        hosts = "127.0.0.1 localhost\n" + "".join(f"{n.ip} {n.name}\n" for n in self.nodes.values())
        node.boot(self.id, f"v-{name}", hosts, containerd_config())
        # a worker runs no static pods (kube-proxy is skipped): the pod sandbox image is enough
        wanted = self.tarballs.values() if role == "control-plane" else [self.tarballs[images.PAUSE_IMAGE]]
        node.import_images(list(wanted))
        return node

    def _kubeadm(self, node: KubeNode, args: list[str], timeout: float) -> None:
        """Run kubeadm to its end. Its kubelet-start phase starts the kubelet itself, as on any
        host: ``systemctl restart kubelet`` (the node's systemctl stand-in -> /etc/init.d/kubelet)."""
        proc = node.spawn("kubeadm", "kubeadm", *args)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if proc.returncode != 0:
            raise NodeError(f"kubeadm {args[0]} on {node.name} failed (rc {proc.returncode})\n{node.diagnostics()}")

    def _init_config(self, node: KubeNode) -> str:
        return yaml.safe_dump_all([
            {
                "apiVersion": "kubeadm.k8s.io/v1beta2", "kind": "InitConfiguration",
                "bootstrapTokens": [{"token": self.token, "ttl": "2h0m0s"}],
                "localAPIEndpoint": {"advertiseAddress": node.ip, "bindPort": 6443},
                "nodeRegistration": self._registration(node),
            },
            {
                "apiVersion": "kubeadm.k8s.io/v1beta2", "kind": "ClusterConfiguration",
                "clusterName": self.id, "kubernetesVersion": images.KUBERNETES_VERSION,
                "etcd": {"local": {"imageTag": images.etcd_image_tag()}},
            },
        ], sort_keys=False)  # fmt: skip

    def _join_config(self, node: KubeNode, cp: KubeNode) -> str:
        # kubeadm 1.20 may give its CA a negative serial, which cryptography's x509 parser
        # deprecates: take the public key with openssl, as kubeadm's docs do for this hash
        ca = str(cp.path("/etc/kubernetes/pki/ca.crt"))
        pem = plumbing.run(["openssl", "x509", "-pubkey", "-noout", "-in", ca]).stdout
        spki = serialization.load_pem_public_key(pem.encode()).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return yaml.safe_dump({
            "apiVersion": "kubeadm.k8s.io/v1beta2", "kind": "JoinConfiguration",
            "discovery": {"bootstrapToken": {
                "apiServerEndpoint": f"{cp.ip}:6443", "token": self.token,
                "caCertHashes": ["sha256:" + hashlib.sha256(spki).hexdigest()],
            }},
            "nodeRegistration": self._registration(node),
        }, sort_keys=False)  # fmt: skip

    @staticmethod
    def _registration(node: KubeNode) -> dict:
        return {"name": node.name, "criSocket": CONTAINERD_SOCKET, "kubeletExtraArgs": {"cgroup-root": node.cgroup_root}}

    def _write_host_kubeconfig(self, cp: KubeNode) -> None:
        conf = yaml.safe_load(cp.path(ADMIN_CONF).read_text())
        for cluster in conf["clusters"]:
            cluster["cluster"]["server"] = f"https://127.0.0.1:{cp.api_port}"
            cluster["cluster"]["tls-server-name"] = "kubernetes"  # a SAN of kubeadm's apiserver.crt
        self.host_kubeconfig.write_text(yaml.safe_dump(conf, sort_keys=False))
        self.host_kubeconfig.chmod(0o600)
