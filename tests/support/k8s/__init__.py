"""Real Kubernetes nodes for tests: kubeadm, the kubelet, containerd, etcd and the control plane.

``K8sCluster().control_plane()`` gives a node on which the real ``kubeadm init`` wrote the real
files at the real paths and the real kubelet runs etcd, kube-apiserver, kube-controller-manager
and kube-scheduler as static pods in containerd; ``.worker()`` joins a node with ``kubeadm
join``. Each node is reachable over SSH like any host (``node.pyinfra_data()``). Modules:

* ``images``: the built binaries (scripts/build-kubernetes.sh) and the images made from them;
* ``plumbing``: network namespaces, cgroups, clean-up of killed sessions;
* ``node``: one node's namespaces, overlays, sshd, containerd; ``cluster``: kubeadm on top;
* ``nodeinit`` / ``forward``: the node's PID 1 and the loopback forwarder (separate processes);
* ``fixtures``: pytest fixtures (``k8s_cluster`` etc.).
"""

from .cluster import K8sCluster, KubeNode
from .images import ImagesUnavailable
from .node import K8sNode, NodeError

__all__ = ["ImagesUnavailable", "K8sCluster", "K8sNode", "KubeNode", "NodeError"]
