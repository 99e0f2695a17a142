"""CIS Kubernetes remediation on real nodes (issue 10): a kubeadm control plane (etcd, API server,
controller manager, scheduler as static pods of the real kubelet) and a worker, made
non-compliant, hardened with ``harden()`` over SSH, then judged by ``hardline verify``.

One cluster for the module (tests/support/k8s, names ``hlkd*``); the tests run in order on it:
reading the node, the dry run, the deploy and the re-deploy, refusals, the roll-back, drift,
waivers and the score gate. Changes and commands are read from pyinfra's state
(tests/support/pyinfra_run.py), never from its printed table. Cost: about 8 minutes on 2 busy
cores (cluster ~2, making it non-compliant ~1, deploys, the roll-back's waits ~2, verifies).
The test nodes share this machine's kernel and services, so the hardline-platform controls are
waived in the inventory (harden() then changes only Kubernetes on them).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import string
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hardline.catalog import defaults, kubernetes_layouts, load_catalog
from hardline.deploys.k8s_facts import TAG, ComponentHelp, KubeNodeState
from hardline.deploys.k8s_node import gather_args
from hardline.deploys.k8s_plan import plan_flags
from tests.support.k8s import K8sCluster
from tests.support.k8s.fixtures import _require
from tests.support.pyinfra_run import deploy

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parent.parent
HARDEN = "from hardline.deploys.harden import harden\nharden()\n"
COMPONENTS = {"etcd": "etcd", "apiserver": "kube-apiserver", "controller_manager": "kube-controller-manager",
              "scheduler": "kube-scheduler", "kubelet": "kubelet"}
WAIVE_PLATFORM = [{"id": c.key, "reason": "test nodes share this machine's kernel, boot loader and services"}
                  for c in load_catalog("hardline-platform").controls]
WAIVE_PSP = {"id": "cis-kubernetes:1.20:1.2.15", "reason": "no PodSecurityPolicies in this cluster: every new pod would be refused"}
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def cluster():
    _require()
    cluster = K8sCluster()
    cluster.id = "hlkd" + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(5))
    cluster.dir = Path("/tmp") / cluster.id
    with cluster:
        cluster.control_plane("cp1")
        cluster.worker("w1")
        yield cluster
    print("\nKubernetes deploy timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in TIMINGS.items()))


def inventory(cluster, workdir: Path, cp1: dict | None = None, every: dict | None = None) -> Path:
    """cp1: control plane, etcd and worker (it runs a kubelet); w1: worker. ``every``: data of
    both hosts; ``cp1``: cp1's besides."""
    base = {"hardline_waivers": [*WAIVE_PLATFORM, WAIVE_PSP], "k8s_restart_timeout": 180,
            "apiserver_kubelet_certificate_authority": "/etc/kubernetes/pki/ca.crt",
            # an owner the node does not have yet: the deploy creates it as a system user
            "etcd_data_dir_owner": "hlkd-etcd", "etcd_data_dir_group": "hlkd-etcd", **(every or {})}
    cp, w1 = cluster.nodes["cp1"], cluster.nodes["w1"]
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "inventory.py"
    path.write_text(f"k8s_control_plane = [('cp1', {cp.pyinfra_data(**{**base, **(cp1 or {})})!r})]\n"
                    "k8s_etcd = ['cp1']\n"
                    f"k8s_workers = ['cp1', ('w1', {w1.pyinfra_data(**base)!r})]\n")
    return path


def hardline(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hardline.cli", *args], cwd=cwd, capture_output=True, text=True, check=False,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})


def kube_commands(run) -> dict[str, int]:
    """Commands the Kubernetes deploy sent per host (its gathered reading, --help of components),
    apart from those of harden()'s other deploys."""
    return {h: sum(c.lstrip().startswith(f"# {TAG}") for c in commands) for h, commands in run.command_list.items()}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def node_files(cluster) -> dict[str, str]:
    """sha256 of every file the deploy may edit, on both nodes."""
    out = {}
    for name, node in cluster.nodes.items():
        paths = ["/var/lib/kubelet/config.yaml", "/etc/default/kubelet"]
        if name == "cp1":
            paths += [f"/etc/kubernetes/manifests/{c}.yaml" for c in COMPONENTS.values() if c != "kubelet"]
        out.update({f"{name}:{p}": sha(node.path(p)) for p in paths if node.path(p).exists()})
    return out


# ------------------------------------------------------------------------------- the node read


def test_node_state_is_read_from_the_live_node_in_one_command(cluster):
    cp = cluster.nodes["cp1"]
    layout = kubernetes_layouts()["kubeadm"]
    catalog = load_catalog("cis-kubernetes", "1.20")
    every = [(c, c.resolve(defaults())) for c in catalog.controls
             if c.kind in ("file_mode", "file_owner", "process_flag", "admission_plugin", "kubelet_setting")]
    fact = KubeNodeState()
    done = cp.ssh(fact.command(**gather_args([layout], every, detect=layout["detect"], users=["etcd"], groups=["etcd"])))
    state = fact.process(done.stdout.splitlines())
    assert state is not None, done.stderr
    for component, comm in COMPONENTS.items():
        assert state["procs"][component]["argv"] == cp.argv(comm[:15]), component  # /proc/PID/comm: 15 bytes
    assert state["version"] == "v1.20.2"
    manifest = "/etc/kubernetes/manifests/kube-apiserver.yaml"
    assert state["files"][manifest]["text"] == cp.path(manifest).read_text()
    assert state["stats"]["/etc/kubernetes/admin.conf"]["mode"] == 0o600 and state["users"] == {"etcd": True}
    assert {e["path"] for e in state["globs"]["/etc/kubernetes/pki/**"]} >= {"/etc/kubernetes/pki/ca.key",
                                                                               "/etc/kubernetes/pki/etcd/server.key"}
    assert state["sysctls"]["kernel.panic"] == cp.run("cat", "/proc/sys/kernel/panic").stdout.strip()
    # what the running API server knows, from its own --help: an admission plugin of a newer
    # Kubernetes (CIS 1.12's DenyServiceExternalIPs, 1.21+) is not among them, so the deploy refuses it
    helped = ComponentHelp()
    known = helped.process(cp.ssh(helped.command(pid=state["procs"]["apiserver"]["pid"])).stdout.splitlines())
    assert {"profiling", "audit-log-path", "tls-cipher-suites"} <= known["flags"]
    assert {"NodeRestriction", "PodSecurityPolicy", "EventRateLimit"} <= known["admission_plugins"]
    newer = load_catalog("cis-kubernetes", "1.12").get("1.2.3")
    _, out = plan_flags(cp.argv("kube-apiserver"), [(newer, newer.params)])
    assert out.plugins - known["admission_plugins"] == {"DenyServiceExternalIPs"}


# ------------------------------------------------------------------- a non-compliant kubeadm node


def _edit_command(node, component: str, change) -> None:
    path = node.manifest(component)
    pod = yaml.safe_load(path.read_text())
    pod["spec"]["containers"][0]["command"] = change(pod["spec"]["containers"][0]["command"])
    path.write_text(yaml.safe_dump(pod, sort_keys=False))


def _with(flags: dict[str, str]):
    def change(command: list[str]) -> list[str]:
        kept = [a for a in command if a.split("=", 1)[0].lstrip("-") not in flags]
        return kept + [f"--{k}={v}" for k, v in flags.items()]
    return change


def make_non_compliant(cluster) -> None:
    """Flags, kubelet settings and file modes a careless operator could leave, every component
    still running (the deploy must find and fix each)."""
    cp, w1 = cluster.nodes["cp1"], cluster.nodes["w1"]
    _edit_command(cp, "kube-apiserver", _with({"profiling": "true", "authorization-mode": "RBAC,AlwaysAllow",
                                               "enable-admission-plugins": "NodeRestriction,AlwaysAdmit",
                                               "kubelet-https": "false"}))
    _edit_command(cp, "kube-controller-manager", _with({"bind-address": "0.0.0.0", "use-service-account-credentials": "false",
                                                        "feature-gates": "RotateKubeletServerCertificate=false"}))
    _edit_command(cp, "kube-scheduler", _with({"bind-address": "0.0.0.0"}))
    _edit_command(cp, "etcd", _with({"auto-tls": "true", "peer-auto-tls": "true"}))
    for node in (cp, w1):
        config = yaml.safe_load(node.path("/var/lib/kubelet/config.yaml").read_text())
        config["authentication"]["anonymous"]["enabled"] = True
        config["authorization"]["mode"] = "AlwaysAllow"
        config.update(readOnlyPort=10255, rotateCertificates=False, makeIPTablesUtilChains=False)
        node.path("/var/lib/kubelet/config.yaml").write_text(yaml.safe_dump(config))
        node.path("/etc/default/kubelet").write_text('KUBELET_EXTRA_ARGS="--anonymous-auth=true --v=2"\n')
        node.path("/etc/kubernetes/kubelet.conf").chmod(0o666)
        node.path("/etc/systemd/system/kubelet.service.d/10-kubeadm.conf").chmod(0o666)
        node.restart_kubelet()
    cp.path("/etc/kubernetes/manifests/kube-scheduler.yaml").chmod(0o666)
    cp.path("/etc/kubernetes/admin.conf").chmod(0o666)
    cp.path("/var/lib/etcd").chmod(0o755)
    cp.run("chown", "nobody:nogroup", "/etc/kubernetes/pki/front-proxy-ca.crt", check=True)
    for comm, flag in (("kube-apiserver", "--kubelet-https=false"), ("kube-controller", "--bind-address=0.0.0.0"),
                       ("kube-scheduler", "--bind-address=0.0.0.0"), ("etcd", "--auto-tls=true")):
        cp.wait_argv(comm, lambda argv, f=flag: f in argv)
    for node in (cp, w1):
        node.wait_argv("kubelet", lambda argv: "--anonymous-auth=true" in argv, timeout=90)
        node.wait_healthy()


def test_dry_run_shows_every_edit_and_changes_nothing(cluster, tmp_path):
    started = time.monotonic()
    make_non_compliant(cluster)
    TIMINGS["make non-compliant"] = time.monotonic() - started
    before = node_files(cluster)
    run = deploy(tmp_path, inventory(cluster, tmp_path), HARDEN, dry=True, timeout=600)
    assert run.returncode == 0, run.tail()
    assert node_files(cluster) == before  # nothing written
    for path in ("kube-apiserver.yaml", "kube-controller-manager.yaml", "kube-scheduler.yaml", "etcd.yaml"):
        assert f"--- cp1:/etc/kubernetes/manifests/{path}" in run.output
    assert "--- w1:/var/lib/kubelet/config.yaml" in run.output and "--- w1:/etc/default/kubelet" in run.output
    assert '-KUBELET_EXTRA_ARGS="--anonymous-auth=true --v=2"\n+KUBELET_EXTRA_ARGS="--v=2"' in run.output
    planned = " ".join(run.changed["cp1"])
    for key in ("1.1.5]", "1.1.11]", "1.1.12]", "1.1.13]", "1.1.19]", "1.2.3,", "1.2.5,", "1.2.6,", "1.2.10,", "1.2.20",
                "1.3.3,", "1.3.6,", "1.3.7", "1.4.2", "2.3,2.6]", "4.2.1,"):
        assert key in planned, (key, run.changed["cp1"])
    assert not any("cis-kubernetes" not in name for name in run.changed["cp1"] + run.changed["w1"])
    # what it leaves, it says (at pyinfra's default verbosity)
    assert ("[cp1] [cis-kubernetes:1.20:1.2.32] verify only: --encryption-provider-config is not set by the deploy "
            "until apiserver_encryption_provider_config is set in inventory") in run.output
    # one gathered reading per node, plus the --help of each component whose flags change
    assert kube_commands(run) == {"cp1": 6, "w1": 2}, run.command_list


# --------------------------------------------------------------------------------- the deploy


def test_deploy_makes_every_automated_item_pass_and_a_second_deploy_changes_nothing(cluster, tmp_path):
    inv = inventory(cluster, tmp_path)
    started = time.monotonic()
    run = deploy(tmp_path / "first", inv, HARDEN, timeout=1800)
    TIMINGS["first deploy"] = time.monotonic() - started
    assert run.returncode == 0, run.tail()
    assert run.changed["cp1"] and run.changed["w1"]
    verified = hardline("verify", str(inv), "--benchmark", "cis-kubernetes", "--json", str(tmp_path / "v.json"), "-q",
                        cwd=tmp_path)
    results = json.loads((tmp_path / "v.json").read_text())["results"]
    nodes = [r for r in results if r["host"] in ("cp1", "w1")]
    assert {r["host"] for r in nodes} == {"cp1", "w1"}, verified.stdout + verified.stderr
    not_passing = [(r["host"], r["control_id"], r["status"], r["found"]) for r in nodes
                   if r["automated"] and r["status"] not in ("PASS", "WAIVED")]
    assert not_passing == []
    assert {(r["control_id"], r["status"]) for r in nodes if r["status"] == "WAIVED"} == {("1.2.15", "WAIVED")}
    started = time.monotonic()
    again = deploy(tmp_path / "second", inv, HARDEN, timeout=600)
    TIMINGS["re-deploy, nothing to change"] = time.monotonic() - started
    assert again.returncode == 0, again.tail()
    assert again.changed == {"cp1": [], "w1": []}
    assert kube_commands(again) == {"cp1": 1, "w1": 1}, again.command_list  # the one gathered reading
    TIMINGS["Kubernetes commands per node on re-deploy"] = kube_commands(again)["cp1"]
    TIMINGS["all commands per node on re-deploy (with harden()'s platform facts)"] = again.commands["cp1"]
    assert cluster.nodes["cp1"].readyz()[0]
    assert "hlkd-etcd:x:" in cluster.nodes["cp1"].path("/etc/passwd").read_text()
    assert cluster.nodes["cp1"].run("stat", "-c", "%U:%G %a", "/var/lib/etcd").stdout.strip() == "hlkd-etcd:hlkd-etcd 700"
    assert "hlkd-etcd" not in Path("/etc/passwd").read_text()  # the node's /etc, not this machine's
    backups = cluster.nodes["cp1"].path("/var/lib/hardline/backups/kubernetes")
    kept = {p.name.rsplit(".", 1)[0] for p in backups.iterdir()}
    assert kept >= {"kube-apiserver.yaml", "etcd.yaml", "config.yaml", "kubelet"}, (kept, run.changed["cp1"])
    assert oct(backups.stat().st_mode & 0o777) == "0o700"


# --------------------------------------------------------------------- refusals and roll-back


def test_a_deploy_that_cannot_work_is_refused_before_anything_is_written(cluster, tmp_path):
    before = node_files(cluster)
    missing = inventory(cluster, tmp_path / "a", cp1={"apiserver_client_ca_file": "/etc/kubernetes/pki/no-such-ca.crt"})
    run = deploy(tmp_path / "a", missing, HARDEN, expect_state=False)
    assert run.returncode != 0
    assert "host cp1: refused, nothing changed on this host" in run.output
    assert "--client-ca-file=/etc/kubernetes/pki/no-such-ca.crt does not exist on the node" in run.output
    rate = inventory(cluster, tmp_path / "b", every={"k8s_remediate_manual": ["apiserver_event_rate_limit"]})
    run = deploy(tmp_path / "b", rate, HARDEN, expect_state=False)
    assert run.returncode != 0 and "EventRateLimit needs its configuration in --admission-control-config-file" in run.output
    assert node_files(cluster) == before and cluster.nodes["cp1"].readyz()[0]


def test_an_api_server_that_does_not_come_back_is_rolled_back_with_its_log(cluster, tmp_path):
    cp = cluster.nodes["cp1"]
    before, argv = cp.manifest("kube-apiserver").read_text(), cp.argv("kube-apiserver")
    # a key and a public key where the serving certificate belongs: both files exist, every flag
    # is known, and the API server exits at start
    bad = inventory(cluster, tmp_path, cp1={"apiserver_tls_cert_file": "/etc/kubernetes/pki/sa.pub",
                                            "apiserver_tls_private_key_file": "/etc/kubernetes/pki/sa.key",
                                            "k8s_restart_timeout": 60})
    started = time.monotonic()
    run = deploy(tmp_path, bad, HARDEN, timeout=900)
    TIMINGS["failed deploy with roll-back"] = time.monotonic() - started
    assert run.returncode != 0
    assert "kube-apiserver did not run healthy with the new /etc/kubernetes/manifests/kube-apiserver.yaml within 60s" in run.output
    assert "kube-apiserver is healthy again with the previous manifest" in run.output
    assert 'failed to find "CERTIFICATE" PEM block' in run.output  # the component's own log line
    assert cp.manifest("kube-apiserver").read_text() == before and cp.argv("kube-apiserver") == argv
    assert cp.readyz()[0]


# ------------------------------------------------------------------- drift, waivers, the gate


def test_drift_waivers_and_score_gate_work_for_kubernetes(cluster, tmp_path):
    cp = cluster.nodes["cp1"]
    inv = inventory(cluster, tmp_path)
    gate = ["verify", str(inv), "--benchmark", "cis-kubernetes", "--section", "1", "--section", "2", "--section", "4",
            "--fail-under", "100", "-q"]
    assert hardline("drift", str(inv), "--benchmark", "cis-kubernetes", cwd=tmp_path).returncode == 0
    assert hardline(*gate, cwd=tmp_path).returncode == 0
    cp.path("/etc/kubernetes/admin.conf").chmod(0o666)
    drift = hardline("drift", str(inv), "--benchmark", "cis-kubernetes", cwd=tmp_path)
    assert drift.returncode == 1, drift.stdout + drift.stderr
    cp1_part = drift.stdout.split("cp1:", 1)[1].split("w1:", 1)[0]
    assert "would change: Kubernetes file permissions | [cis-kubernetes:1.20:1.1.13] /etc/kubernetes/admin.conf mode 644" in cp1_part
    assert "fail  cis-kubernetes:1.20:1.1.13" in cp1_part and "w1: no drift" in drift.stdout
    assert hardline(*gate, cwd=tmp_path).returncode == 3
    # waived: the deploy leaves it, verify reports WAIVED, the gate is met
    waived = inventory(cluster, tmp_path / "w", every={"hardline_waivers": [
        *WAIVE_PLATFORM, WAIVE_PSP, {"id": "cis-kubernetes:1.20:1.1.13", "reason": "admin.conf shared with the ops group (ticket 42)"}]})
    run = deploy(tmp_path / "w", waived, HARDEN)
    assert run.returncode == 0 and run.changed == {"cp1": [], "w1": []}, run.tail()
    assert oct(cp.path("/etc/kubernetes/admin.conf").stat().st_mode & 0o777) == "0o666"
    assert hardline(*[str(waived) if a == str(inv) else a for a in gate], cwd=tmp_path).returncode == 0
    # not waived any more: the deploy fixes exactly that file
    run = deploy(tmp_path / "fix", inv, HARDEN)
    assert run.returncode == 0 and run.changed == {
        "cp1": ["Kubernetes file permissions | [cis-kubernetes:1.20:1.1.13] /etc/kubernetes/admin.conf mode 644 or stricter"],
        "w1": []}, run.tail()
    assert oct(cp.path("/etc/kubernetes/admin.conf").stat().st_mode & 0o777) == "0o644"
    assert hardline(*gate, cwd=tmp_path).returncode == 0
