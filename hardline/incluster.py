"""Verifying Kubernetes nodes from inside the cluster, for clusters whose nodes are not reachable
over SSH: a DaemonSet per node role set whose pods run ``hardline verify`` on their own node.

Each pod mounts the node's root read-only (with a private emptyDir over its /tmp for the gather
scripts' temporary files), runs with hostPID so /proc shows the node's processes, and reaches the
node through pyinfra's @chroot connector: the same gather scripts, checks and JUnit/JSON as over
SSH. The inventory (``INVENTORY``, shipped in the ConfigMap) names the one host and reports it
under the node's name (``hardline_host_name``). Policy controls (section 5) are left out: they
are a cluster's, verified once from a host with the admin kubeconfig.

Example::

    print(render(image="registry.example/hardline:1.0"))   # or: hardline k8s-manifest --image ...
"""

from __future__ import annotations

import re
from typing import Any

import jinja2

from hardline.paths import TEMPLATES

TEMPLATE = "kubernetes/hardline-node-verify.yaml.j2"
NODE_SECTIONS = ("1", "2", "3", "4")  # CIS Kubernetes node sections; 5 (policies) is per cluster
CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")
NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

# The pod's inventory: one host, the node's root through @chroot, named after the node.
INVENTORY = '''\
"""hardline inventory of one Kubernetes node, verified from a pod on it (hardline k8s-manifest)."""
import os

_root = os.environ.get("HARDLINE_HOST_ROOT", "/host")
k8s_nodes = [("@chroot" + _root, {
    "hardline_host_name": os.environ["NODE_NAME"],
    "hardline_roles": [r for r in os.environ.get("HARDLINE_ROLES", "k8s_worker").split(",") if r],
    "k8s_cluster": os.environ.get("K8S_CLUSTER", "kubernetes"),
})]
'''

# One verify per interval (0: once, then exit, as a Job would); results per node name.
COMMAND = ('inv=${HARDLINE_INVENTORY:-/etc/hardline/inventory.py}; '
           'while :; do hardline verify "$inv" --benchmark cis-kubernetes ' + " ".join(f"--section {s}" for s in NODE_SECTIONS)
           + ' --json "$HARDLINE_REPORTS/$NODE_NAME.json" --junit "$HARDLINE_REPORTS/$NODE_NAME.xml" -q; '
           'rc=$?; [ "$HARDLINE_INTERVAL" = 0 ] && exit $rc; sleep "$HARDLINE_INTERVAL"; done')


class ManifestError(ValueError):
    """A value the manifest cannot carry (bad name, path or interval)."""


def daemonsets() -> list[dict[str, Any]]:
    """Control-plane nodes (either label) verify as control plane, etcd and worker; every other
    node as a worker."""
    control_plane_terms = [[{"key": label, "operator": "Exists"}] for label in CONTROL_PLANE_LABELS]
    workers = [[{"key": label, "operator": "DoesNotExist"} for label in CONTROL_PLANE_LABELS]]
    return [
        {"name": "control-plane", "roles": ["k8s_control_plane", "k8s_etcd", "k8s_worker"], "node_terms": control_plane_terms},
        {"name": "workers", "roles": ["k8s_worker"], "node_terms": workers},
    ]


def render(image: str, namespace: str = "hardline", cluster: str = "kubernetes", reports_dir: str = "/var/log/hardline",
           interval: int = 86400, host_root: str = "/host") -> str:
    """The manifest (Namespace, ServiceAccount, ConfigMap, DaemonSets) as YAML text."""
    from hardline import __version__

    if not NAME.match(namespace) or len(namespace) > 63:
        raise ManifestError(f"namespace {namespace!r} is not a Kubernetes name")
    if not image or any(c.isspace() for c in image):
        raise ManifestError(f"image {image!r} is not an image reference")
    for label, path in (("reports directory", reports_dir), ("host root", host_root)):
        if not path.startswith("/") or any(c.isspace() or c in "\"'\\" for c in path):
            raise ManifestError(f"{label} {path!r} must be an absolute path without spaces or quotes")
    if int(interval) < 0:
        raise ManifestError(f"interval {interval} must be 0 (once) or a number of seconds")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.get_template(TEMPLATE).render(
        version=__version__, image=image, namespace=namespace, cluster=cluster, reports_dir=reports_dir,
        interval=int(interval), host_root=host_root.rstrip("/") or "/host", inventory=INVENTORY, command=COMMAND,
        daemonsets=daemonsets())
