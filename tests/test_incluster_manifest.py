"""The in-cluster node verification manifest (hardline k8s-manifest): what it asks of the cluster
and of each node, what its inventory gives `hardline verify`, and the errors for bad values. Its
command path runs on a real test node in tests/test_k8s_verify_cli.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hardline.incluster import COMMAND, INVENTORY, ManifestError, render
from hardline.inventory import load_hosts

ROOT = Path(__file__).resolve().parent.parent


def documents(text: str) -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(text) if d}


def test_rendered_manifest_is_read_only_and_least_privilege():
    docs = documents(render("registry.example/hardline:0.1", namespace="audit", cluster="prod", interval=3600))
    assert set(docs) == {("Namespace", "audit"), ("ServiceAccount", "hardline-node-verify"),
                         ("ConfigMap", "hardline-node-verify"), ("DaemonSet", "hardline-verify-control-plane"),
                         ("DaemonSet", "hardline-verify-workers")}
    assert docs[("ServiceAccount", "hardline-node-verify")]["automountServiceAccountToken"] is False
    assert docs[("ConfigMap", "hardline-node-verify")]["data"]["inventory.py"] == INVENTORY
    for name, roles in (("control-plane", "k8s_control_plane,k8s_etcd,k8s_worker"), ("workers", "k8s_worker")):
        spec = docs[("DaemonSet", f"hardline-verify-{name}")]["spec"]["template"]["spec"]
        assert spec["hostPID"] is True and spec["automountServiceAccountToken"] is False
        assert "hostNetwork" not in spec and spec["tolerations"] == [{"operator": "Exists"}]
        (container,) = spec["containers"]
        assert container["image"] == "registry.example/hardline:0.1"
        assert container["command"] == ["sh", "-c"] and container["args"] == [COMMAND]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["HARDLINE_ROLES"] == roles and env["K8S_CLUSTER"] == "prod" and env["HARDLINE_INTERVAL"] == "3600"
        sc = container["securityContext"]
        assert sc["privileged"] is False and sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"], "add": ["SYS_CHROOT", "DAC_READ_SEARCH", "SYS_PTRACE"]}
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert mounts["/host"]["readOnly"] is True and mounts["/etc/hardline"]["readOnly"] is True
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["host"]["hostPath"]["path"] == "/" and "emptyDir" in volumes["host-tmp"]
        assert mounts["/host/tmp"]["name"] == "host-tmp"  # the gather's temporary files never touch the node
    control_plane = docs[("DaemonSet", "hardline-verify-control-plane")]["spec"]["template"]["spec"]
    terms = control_plane["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert [t["matchExpressions"][0]["key"] for t in terms] == ["node-role.kubernetes.io/control-plane",
                                                              "node-role.kubernetes.io/master"]


def test_command_verifies_node_sections_once_per_interval():
    assert "--benchmark cis-kubernetes --section 1 --section 2 --section 3 --section 4" in COMMAND  # no policies
    assert '--json "$HARDLINE_REPORTS/$NODE_NAME.json"' in COMMAND and '[ "$HARDLINE_INTERVAL" = 0 ] && exit $rc' in COMMAND
    once = subprocess.run(["sh", "-c", COMMAND], env={"PATH": "/usr/bin:/bin", "HARDLINE_INTERVAL": "0",
                                                     "HARDLINE_REPORTS": "/nonexistent", "NODE_NAME": "n1",
                                                     "HARDLINE_INVENTORY": "/nonexistent/inventory.py"},
                          capture_output=True, text=True, timeout=30)
    assert once.returncode == 127  # `hardline` is not on this PATH: the exit status is the verify's, once


def test_inventory_names_the_node_and_its_roles(tmp_path, monkeypatch):
    path = tmp_path / "inventory.py"
    path.write_text(INVENTORY)
    monkeypatch.setenv("NODE_NAME", "worker-7")
    monkeypatch.setenv("HARDLINE_ROLES", "k8s_control_plane,k8s_worker")
    monkeypatch.setenv("HARDLINE_HOST_ROOT", "/host")
    monkeypatch.setenv("K8S_CLUSTER", "prod")
    (host,) = load_hosts(str(path))
    assert host.valid, host.error
    assert host.name == "@chroot/host" and host.data["hardline_host_name"] == "worker-7"
    assert set(host.roles) == {"k8s_control_plane", "k8s_worker"} and host.data["k8s_cluster"] == "prod"


@pytest.mark.parametrize("kwargs, message", [
    ({"namespace": "Bad_NS"}, "namespace 'Bad_NS' is not a Kubernetes name"),
    ({"image": "a b"}, "is not an image reference"),
    ({"reports_dir": "relative"}, "must be an absolute path"),
    ({"interval": -1}, "must be 0 (once) or a number of seconds"),
])
def test_bad_values_are_refused(kwargs, message):
    with pytest.raises(ManifestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        render(**{"image": "img:1", **kwargs})


def test_cli_prints_or_writes_the_manifest(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = tmp_path / "ds.yaml"
    run = subprocess.run([sys.executable, "-m", "hardline.cli", "k8s-manifest", "--image", "img:1", "-o", str(out),
                          "--interval", "0"], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    assert ("DaemonSet", "hardline-verify-workers") in documents(out.read_text())
    bad = subprocess.run([sys.executable, "-m", "hardline.cli", "k8s-manifest", "--image", "img:1", "--namespace", "X"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 4 and "hardline: namespace 'X' is not a Kubernetes name" in bad.stderr
