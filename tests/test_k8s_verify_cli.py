"""`hardline verify` of the real test cluster as an inventory: control plane (also etcd and a
kubelet) plus a worker, over SSH. Every automated item of the benchmark version picked for
Kubernetes 1.20 gets a verdict with evidence; the policy items run once for the cluster; each
node costs at most two round trips; the newer benchmark, forced, says SKIP with the reason for
what 1.20 cannot express. And the in-cluster DaemonSet's command, run as its pod would: in the
node's mount and PID namespaces, with the node's root mounted read-only, through @chroot.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hardline.benchmarks.select import Selection
from hardline.catalog import load_catalog
from hardline.incluster import COMMAND, INVENTORY
from hardline.results import ERROR, FAIL, PASS, SKIP
from tests.support.kubeverify import (
    CONTROL_PLANE_GROUPS,
    gather,
    node_config,
    wait_control_plane,
)

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parent.parent
CIS_1_20 = load_catalog("cis-kubernetes", "1.20")
ROLE_OF_GROUP = {"k8s_control_plane": "k8s_control_plane", "k8s_etcd": "k8s_etcd", "k8s_workers": "k8s_worker"}


def hardline(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hardline.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.fixture(scope="module")
def inventory(k8s_cluster, k8s_control_plane, k8s_worker, tmp_path_factory) -> Path:
    """cp1 in k8s_control_plane, k8s_etcd and k8s_workers; w1 in k8s_workers; and cp1 once more
    under a second name as another control plane host: the cluster's policies must still be
    evaluated once (by the first control plane host by name)."""
    wait_control_plane(k8s_control_plane)  # earlier tests may have left it in crash-loop back-off
    tmp = tmp_path_factory.mktemp("k8s-inventory")
    cp, w1 = k8s_control_plane.pyinfra_data(), k8s_worker.pyinfra_data()
    (tmp / "cluster.py").write_text(
        f"CP = {cp!r}\nW1 = {w1!r}\n"
        "k8s_control_plane = [('cp1', CP), ('cp1-again', CP)]\n"
        "k8s_etcd = [('cp1', CP)]\n"
        "k8s_workers = [('cp1', CP), ('w1', W1)]\n")
    (tmp / "group_data").mkdir()
    (tmp / "group_data" / "all.py").write_text(f"k8s_cluster = {k8s_cluster.id!r}\n")
    return tmp / "cluster.py"


@pytest.fixture(scope="module")
def verified(inventory):
    out = inventory.parent / "out"
    run = hardline("verify", str(inventory), "--benchmark", "cis-kubernetes", "--json", f"{out}.json", "--junit", f"{out}.xml")
    assert run.returncode == 1, run.stdout + run.stderr  # failures (kubeadm's defaults), no error
    assert run.stderr.count(" 2 round trips ") == 3, run.stderr  # every node, the cluster's duty host too
    return json.loads(Path(f"{out}.json").read_text())


def test_every_automated_item_has_a_verdict_with_evidence(verified, k8s_cluster):
    results = [r for r in verified["results"] if r["benchmark"] == "cis-kubernetes"]
    assert {r["benchmark_version"] for r in results} == {"1.20"}  # picked for Kubernetes 1.20.2
    roles = {"cp1": {"k8s_control_plane", "k8s_etcd", "k8s_worker"}, "cp1-again": {"k8s_control_plane"},
             "w1": {"k8s_worker"}}
    for host, host_roles in roles.items():
        got = {r["control_id"]: r for r in results if r["host"] == host}
        wanted = {c.id for c in CIS_1_20.controls if c.scope == "node" and set(c.roles) & host_roles}
        assert set(got) == wanted, host
        automated = {i: got[i] for i in wanted if CIS_1_20.get(i).automated}
        assert {i: r["status"] for i, r in automated.items() if r["status"] not in (PASS, FAIL)} == {}, host
        assert [i for i, r in automated.items() if not r["found"]] == [], host
    cluster = [r for r in results if r["host"] == f"cluster/{k8s_cluster.id}"]
    cluster_ids = [r["control_id"] for r in cluster]
    assert sorted(cluster_ids) == sorted(c.id for c in CIS_1_20.controls if c.scope == "cluster")  # once each
    assert {r["status"] for r in cluster if CIS_1_20.get(r["control_id"]).automated} <= {PASS, FAIL}
    assert not [r for r in results if r["host"] in roles and CIS_1_20.get(r["control_id"]).scope == "cluster"]
    statuses = {r["status"] for r in results}
    assert ERROR not in statuses and FAIL in statuses and PASS in statuses


def test_evidence_names_sources(verified):
    by = {(r["host"], r["control_id"]): r for r in verified["results"] if r["benchmark"] == "cis-kubernetes"}
    assert by[("cp1", "1.2.6")]["found"].startswith("flag --authorization-mode=Node,RBAC (cmdline of pid ")
    assert by[("w1", "4.2.1")]["found"] == "authentication.anonymous.enabled: false (/var/lib/kubelet/config.yaml)"
    assert by[("cp1", "1.1.1")]["found"] == "/etc/kubernetes/manifests/kube-apiserver.yaml 600"


def test_round_trips_per_node(k8s_control_plane, k8s_worker, k8s_cluster):
    cp = node_config(k8s_control_plane, CONTROL_PLANE_GROUPS, k8s_cluster=k8s_cluster.id)
    w1 = node_config(k8s_worker, ("k8s_workers",), k8s_cluster=k8s_cluster.id)
    full = Selection()  # every benchmark of the roles: CIS Kubernetes (all versions until picked) + platform
    assert gather(cp, cluster_duty=True, selection=full).round_trips == 2  # node facts and the cluster's API reads
    assert gather(w1, selection=full).round_trips == 2
    assert "k8s_api" not in gather(w1, selection=full).gathered  # only the cluster's duty host reads the API


def test_newer_benchmark_forced_skips_what_1_20_cannot_express(inventory, k8s_cluster):
    out = inventory.parent / "v112.json"
    run = hardline("verify", str(inventory), "--benchmark", "cis-kubernetes:1.12", "--json", str(out), "-q")
    assert run.returncode == 1, run.stdout + run.stderr
    results = json.loads(out.read_text())["results"]
    assert {r["benchmark_version"] for r in results} == {"1.12"}
    skipped = {(r["host"], r["control_id"]): r["found"] for r in results if r["status"] == SKIP}
    cluster = f"cluster/{k8s_cluster.id}"
    assert skipped == {
        ("cp1", "1.2.3"): "not applicable: the host runs v1.20.2, the item needs 1.21 or newer",
        ("cp1-again", "1.2.3"): "not applicable: the host runs v1.20.2, the item needs 1.21 or newer",
        ("cp1", "4.2.14"): "not applicable: the host runs v1.20.2, the item needs 1.22 or newer",
        ("w1", "4.2.14"): "not applicable: the host runs v1.20.2, the item needs 1.22 or newer",
        (cluster, "5.2.1"): "not applicable: the host runs v1.20.2, the item needs 1.23 or newer",
        (cluster, "5.2.10"): "not applicable: the host runs v1.20.2, the item needs 1.22 or newer",
    }
    assert ERROR not in {r["status"] for r in results}


def test_inventory_pin_wins_over_the_detected_version(k8s_control_plane, k8s_cluster):
    from hardline.benchmarks.engine import verify_hosts

    pinned = node_config(k8s_control_plane, ("k8s_workers",), k8s_cluster=k8s_cluster.id,
                         hardline_benchmark_versions={"cis-kubernetes": "1.12"})
    results = verify_hosts([pinned], Selection(benchmarks=("cis-kubernetes",), sections=("4",)))
    assert {r.benchmark_version for r in results} == {"1.12"}


def _tree(node, *paths: str) -> str:
    return node.run("find", *paths, "-printf", "%p %m %U:%G %s %T@\n", timeout=60).stdout


def test_in_cluster_command_path_on_a_node(k8s_worker, k8s_cluster, tmp_path):
    """The DaemonSet's container command and inventory, run as the pod runs them: in the node's
    mount and PID namespaces (hostPID), the node's root bind-mounted read-only at the host root
    path with a private tmpfs over its /tmp (the emptyDir), through pyinfra's @chroot connector.
    The node's results are written under its name and the node is left unchanged."""
    node = k8s_worker
    inventory = tmp_path / "inventory.py"
    inventory.write_text(INVENTORY)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "hardline").write_text(f"#!/bin/sh\nexec {sys.executable} -m hardline.cli \"$@\"\n")
    (bin_dir / "hardline").chmod(0o755)
    host_root = f"/tmp/{k8s_cluster.id}-hostroot"
    pod = (f"mkdir -p {host_root} && mount --rbind / {host_root} && mount -o remount,bind,ro {host_root} && "
           f"mount -t tmpfs -o size=64m tmpfs {host_root}/tmp && exec sh -c \"$HL_COMMAND\"")
    env = {"PATH": f"{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
           "PYTHONPATH": str(ROOT), "NODE_NAME": node.name, "HARDLINE_ROLES": "k8s_worker",
           "HARDLINE_HOST_ROOT": host_root, "HARDLINE_REPORTS": str(tmp_path), "HARDLINE_INTERVAL": "0",
           "K8S_CLUSTER": k8s_cluster.id, "HARDLINE_INVENTORY": str(inventory), "HL_COMMAND": COMMAND}
    before = _tree(node, "/etc/kubernetes", "/var/lib/kubelet/config.yaml", "/etc/systemd/system")
    run = subprocess.run(["nsenter", f"--target={node.init_pid}", "--mount", "--pid", "--",
                          "unshare", "--mount", "--propagation", "private", "sh", "-c", pod],
                         capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode in (0, 1), run.stdout + run.stderr
    assert _tree(node, "/etc/kubernetes", "/var/lib/kubelet/config.yaml", "/etc/systemd/system") == before
    results = json.loads((tmp_path / f"{node.name}.json").read_text())["results"]
    assert {r["host"] for r in results} == {node.name}  # reported under the node's name, not @chroot/...
    assert {(r["benchmark"], r["benchmark_version"]) for r in results} == {("cis-kubernetes", "1.20")}
    assert {r["control_id"].split(".")[0] for r in results} == {"4"}
    automated = [r for r in results if r["automated"]]
    assert automated and {r["status"] for r in automated} <= {PASS, FAIL}, [(r["control_id"], r["found"]) for r in automated]
    by = {r["control_id"]: r for r in results}
    assert by["4.2.1"]["found"] == "authentication.anonymous.enabled: false (/var/lib/kubelet/config.yaml)"
    assert by["4.1.5"]["found"] == "/etc/kubernetes/kubelet.conf 600"
    assert (tmp_path / f"{node.name}.xml").is_file()
