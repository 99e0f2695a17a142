"""pytest fixtures for real Kubernetes nodes (registered in tests/conftest.py).

* ``k8s_cluster`` (session): a :class:`~tests.support.k8s.K8sCluster` with a control plane
  ``cp1`` (kubeadm init) and a worker ``w1`` (kubeadm join), shared by the session. Tests that
  change a node must put it back (and wait for health) before they return.
* ``k8s_control_plane`` / ``k8s_worker`` (session): those two nodes.
* ``k8s_cluster_factory`` (function): a callable returning fresh, empty clusters (add nodes with
  ``.control_plane()`` / ``.worker()``), all stopped at teardown: for tests that break things.

Missing prerequisites skip on a developer machine and fail under CI=true (``_unavailable``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator

import pytest

from ..fixtures import _unavailable
from . import plumbing
from .cluster import K8sCluster, KubeNode
from .images import ImagesUnavailable, bin_dir, etcd_version

__all__ = ["k8s_cluster", "k8s_cluster_factory", "k8s_control_plane", "k8s_worker"]

TOOLS = ("nsenter", "unshare", "ip", "mount", "containerd", "containerd-shim-runc-v2", "runc", "ctr", "curl",
         "etcdctl", "/usr/sbin/sshd", "start-stop-daemon", "service")  # fmt: skip

_reaped = False


def _require() -> None:
    """Skip (fail in CI) without root, the tools or the built binaries; once per session tidy
    up namespaces/cgroups/directories of killed sessions."""
    global _reaped
    if os.geteuid() != 0:
        _unavailable("Kubernetes nodes need root (namespaces, mounts, cgroups)")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        _unavailable(f"missing {', '.join(missing)}: run `bash scripts/setup.sh`")
    try:
        bin_dir()
        etcd_version()
    except ImagesUnavailable as exc:
        _unavailable(str(exc))
    if not _reaped:
        plumbing.reap_stale()
        _reaped = True


@pytest.fixture(scope="session")
def k8s_cluster() -> Iterator[K8sCluster]:
    """Control plane cp1 + worker w1, real kubeadm/kubelet/containerd/etcd/apiserver."""
    _require()
    with K8sCluster() as cluster:
        cluster.control_plane("cp1")
        cluster.worker("w1")
        yield cluster


@pytest.fixture(scope="session")
def k8s_control_plane(k8s_cluster: K8sCluster) -> KubeNode:
    return k8s_cluster.nodes["cp1"]


@pytest.fixture(scope="session")
def k8s_worker(k8s_cluster: K8sCluster) -> KubeNode:
    return k8s_cluster.nodes["w1"]


@pytest.fixture
def k8s_cluster_factory() -> Iterator[Callable[[], K8sCluster]]:
    """Fresh clusters for one test, all stopped afterwards."""
    _require()
    clusters: list[K8sCluster] = []

    def make() -> K8sCluster:
        cluster = K8sCluster()
        clusters.append(cluster)
        return cluster

    yield make
    errors = []
    for cluster in clusters:
        try:
            cluster.stop()
        except Exception as exc:  # noqa: BLE001 - stop all, then report
            errors.append(str(exc))
    if errors:
        raise RuntimeError("; ".join(errors))
