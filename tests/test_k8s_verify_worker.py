"""CIS Kubernetes worker checks against the real kubelet of the test cluster's worker.

The kubelet's setting in effect is flag over config file over built-in default, and the verdict
says which source won; the test proves the model against the kubelet itself: its /configz
(through the real API server) must show every value the checks say is in effect.

Two things cannot run here and are **simulated**, each named so:
* ``--config-dir`` drop-ins: the kubelet 1.20 built here has no such flag (added in 1.28). The
  drop-ins are real files read by the real gather script on the node; only the kubelet's flag
  naming the directory is added to the gathered process.
* kube-proxy: the lab builds no kube-proxy binary and kubeadm's kube-proxy addon is skipped (it
  would set the machine's global conntrack sysctls). A stand-in process named ``kube-proxy`` (the
  built ``pause`` binary, which ignores its arguments) runs with exactly kubeadm's DaemonSet
  command line and kubeadm's KubeProxyConfiguration file.
"""

from __future__ import annotations

import json
import shlex

import pytest

from hardline.benchmarks.checks.kubecompare import typed, value_type
from hardline.benchmarks.checks.kubelet import _kubelet_value, config_sources
from hardline.benchmarks.gather import FACTS, closure, script_for
from hardline.benchmarks.gather.core import parse_sections
from hardline.catalog import load_catalog
from hardline.results import FAIL, PASS, SKIP
from tests.support.kubeverify import (
    gather,
    judge,
    kubelet_changed,
    needs_of,
    node_config,
    wait_for,
)

pytestmark = pytest.mark.k8s

K = "cis-kubernetes:1.20:"
K12 = "cis-kubernetes:1.12:"
KUBELET_IDS = ("4.2.1", "4.2.2", "4.2.3", "4.2.4", "4.2.5", "4.2.6", "4.2.7", "4.2.11", "4.2.12")


@pytest.fixture(scope="module")
def w1(k8s_worker):
    return k8s_worker


@pytest.fixture(scope="module")
def w1_config(w1, k8s_cluster):
    return node_config(w1, ("k8s_workers",), k8s_cluster=k8s_cluster.id)


def verdicts(config, *ids: str, prefix: str = K):
    keys = [prefix + i for i in ids]
    facts = gather(config, needs_of(*keys, data=config.data))
    assert facts.round_trips <= 2
    return {i: judge(prefix + i, facts, config) for i in ids}, facts


def anonymous_status(node) -> str:
    """What the kubelet answers an anonymous request: 401 when anonymous auth is off, 403 when
    anonymous requests are authenticated (as system:anonymous) and then denied."""
    done = node.run("curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                    "https://127.0.0.1:10250/pods")
    return done.stdout.strip()


def configz(control_plane, node_name: str) -> dict:
    done = control_plane.kubectl("get", "--raw", f"/api/v1/nodes/{node_name}/proxy/configz")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["kubeletconfig"]


def effective(facts) -> dict[str, object]:
    """The value in effect of every single-setting kubelet_setting item of 1.20, as the checks
    find it (flag, config file, default): config key -> typed value."""
    proc = facts.values["k8s_procs"]["kubelet"]
    files, with_config = config_sources(facts, "kubelet")
    found = {}
    for control in load_catalog("cis-kubernetes", "1.20").of_kind("kubelet_setting"):
        p = control.params
        if not isinstance(p.get("config"), str) or p.get("key") or p["op"] in ("set", "unset", "valid_elements"):
            continue
        given, value, _, _ = _kubelet_value(proc, files, p.get("flag"), p["config"], None)
        if not given:
            value = (p.get("defaults") or {}).get("config_file" if with_config else "flags_only")
        found[p["config"]] = typed(value, value_type(p))
    return found


def lookup(doc: dict, dotted: str, zero):
    """A /configz value; the kubelet's JSON leaves out false, 0 and "" (omitempty)."""
    for part in dotted.split("."):
        if part not in doc:
            return zero
        doc = doc[part]
    return doc


ZERO = {bool: False, int: 0, str: "", float: 0.0}


def assert_kubelet_agrees(facts, live: dict) -> None:
    """Every value the checks find in effect is the one the kubelet reports in /configz."""
    for key, value in effective(facts).items():
        kind = "duration" if isinstance(value, float) else type(value).__name__
        assert typed(lookup(live, key, ZERO[type(value)]), kind) == value, (key, value, live)


def test_kubelet_flag_over_config_file_and_the_kubelet_agrees(w1, w1_config, k8s_control_plane):
    """A flag that contradicts a compliant config file wins (and is named as the cause); zero
    durations in the file are the kubelet's defaults; protectKernelDefaults: true runs."""
    bad = {"authentication.anonymous.enabled": False, "rotateCertificates": False, "makeIPTablesUtilChains": False,
           "protectKernelDefaults": True, "streamingConnectionIdleTimeout": "0s", "readOnlyPort": 10255}
    with kubelet_changed(w1, bad, extra_args="--anonymous-auth=true"):
        got, facts = verdicts(w1_config, *KUBELET_IDS)
        assert anonymous_status(w1) == "403"  # anonymous requests are authenticated: the flag won
        live = configz(k8s_control_plane, w1.name)
    status = {i: v.status for i, v in got.items()}
    assert status == {"4.2.1": FAIL, "4.2.2": PASS, "4.2.3": PASS, "4.2.4": FAIL, "4.2.5": PASS, "4.2.6": PASS,
                      "4.2.7": FAIL, "4.2.11": FAIL, "4.2.12": PASS}, {i: v.found for i, v in got.items()}
    pid = facts.values["k8s_procs"]["kubelet"].pid
    assert got["4.2.1"].found == (f"flag --anonymous-auth=true (cmdline of pid {pid}) (it overrides "
                                  "authentication.anonymous.enabled: false (/var/lib/kubelet/config.yaml)): differs")
    assert got["4.2.1"].evidence == ["the flag --anonymous-auth is the cause: remove it from the kubelet's flags"]
    assert got["4.2.11"].found == "rotateCertificates: false (/var/lib/kubelet/config.yaml): differs"
    assert "streamingConnectionIdleTimeout: 0s in /var/lib/kubelet/config.yaml counts as unset" in got["4.2.5"].found
    assert_kubelet_agrees(facts, live)


def test_kubelet_compliant_config_and_the_client_ca_it_names(w1, w1_config, k8s_control_plane):
    ca = w1.path("/etc/kubernetes/pki/ca.crt").read_text()
    copy = w1.path("/etc/kubernetes/pki/hl-client-ca.crt")
    copy.write_text(ca)
    copy.chmod(0o600)
    good = {"authentication.anonymous.enabled": False, "authorization.mode": "Webhook", "rotateCertificates": True,
            "makeIPTablesUtilChains": True, "protectKernelDefaults": True, "readOnlyPort": 0,
            "streamingConnectionIdleTimeout": "5m", "authentication.x509.clientCAFile": "/etc/kubernetes/pki/hl-client-ca.crt"}
    try:
        with kubelet_changed(w1, good):
            got, facts = verdicts(w1_config, *KUBELET_IDS, "4.1.7", "4.1.8")
            assert anonymous_status(w1) == "401"
            live = configz(k8s_control_plane, w1.name)
            w1.run("chmod", "666", "/etc/kubernetes/pki/hl-client-ca.crt", check=True)
            loose, _ = verdicts(w1_config, "4.1.7")
    finally:
        copy.unlink(missing_ok=True)
    assert {i: v.status for i, v in got.items() if v.status != PASS} == {}, {i: v.found for i, v in got.items()}
    assert got["4.2.3"].found.endswith("(/var/lib/kubelet/config.yaml) (file exists)")
    assert got["4.1.7"].found == "/etc/kubernetes/pki/hl-client-ca.crt 600"  # the CA the kubelet names
    assert loose["4.1.7"].status == FAIL and loose["4.1.7"].found == "/etc/kubernetes/pki/hl-client-ca.crt is 666"
    assert live["streamingConnectionIdleTimeout"] == "5m0s" and "readOnlyPort" not in live  # 0 (omitempty)
    assert_kubelet_agrees(facts, live)


def run_round2(node, config, facts, wanted):
    """Round 2 of the real gather, run on the node over SSH and parsed as the verifier does."""
    script = script_for(2, wanted, config.data, facts)
    done = node.ssh(f"sh -c {shlex.quote(script)}", timeout=120)
    assert done.returncode == 0, done.stderr
    facts.sections.update(parse_sections(done.stdout + "\n"))
    for name, fact in FACTS.items():
        if name in wanted and fact.round == 2:
            fact.parse(facts, config.data)


def test_kubelet_config_dir_dropins_simulated(w1, w1_config):
    """Simulated: --config-dir (kubelet >= 1.28; the 1.20 kubelet here refuses the flag). Real
    drop-in files on the node, read by the real round-2 script; the last file in lexical order
    that sets a key wins over the config file, and the evidence names it."""
    d = w1.path("/etc/kubernetes/kubelet.conf.d")
    d.mkdir(exist_ok=True)
    (d / "10-first.conf").write_text("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
                                     "rotateCertificates: false\nreadOnlyPort: 10255\n")
    (d / "20-second.conf").write_text("rotateCertificates: true\n")
    (d / "ignored.yaml").write_text("readOnlyPort: 0\n")  # not *.conf: not a drop-in
    try:
        wanted = closure({"k8s_configs", "k8s_files", "k8s_procs"})
        facts = gather(w1_config, {"k8s_procs"})
        facts.gathered = wanted
        facts.values["k8s_procs"]["kubelet"].flags["config-dir"] = "/etc/kubernetes/kubelet.conf.d"  # the simulated flag
        run_round2(w1, w1_config, facts, wanted)
    finally:
        for f in d.iterdir():
            f.unlink()
        d.rmdir()
    rotate = judge(K + "4.2.11", facts, w1_config)
    port = judge(K + "4.2.4", facts, w1_config)
    assert rotate.status == PASS and rotate.found == "rotateCertificates: true (/etc/kubernetes/kubelet.conf.d/20-second.conf)"
    assert port.status == FAIL and port.found == "readOnlyPort: 10255 (/etc/kubernetes/kubelet.conf.d/10-first.conf): differs"


KUBE_PROXY_CONFIG = """apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
bindAddress: 0.0.0.0
clientConnection:
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
clusterCIDR: ""
metricsBindAddress: {metrics}
mode: ""
"""


def test_proxy_setting_simulated_kube_proxy(w1, w1_config):
    """Simulated kube-proxy (see the module docstring): its --config file decides, a flag that the
    file covers is named as ignored, and its kubeconfig is found through its mount namespace."""
    root = w1.path("/var/lib/kube-proxy")
    root.mkdir(exist_ok=True)
    (root / "kubeconfig.conf").write_text("apiVersion: v1\nkind: Config\n")
    (root / "kubeconfig.conf").chmod(0o600)  # 1.12 asks 600 or stricter
    stand_in = w1.path("/var/lib/kube-proxy/bin/kube-proxy")
    stand_in.parent.mkdir(exist_ok=True)
    stand_in.write_bytes(w1.path("/usr/bin/pause").read_bytes() if w1.path("/usr/bin/pause").exists()
                         else (w1.bin_dir / "pause").read_bytes())
    stand_in.chmod(0o755)
    results = {}
    try:
        for metrics in ("0.0.0.0:10249", "127.0.0.1:10249"):
            (root / "config.conf").write_text(KUBE_PROXY_CONFIG.format(metrics=metrics))
            proc = w1.spawn("hl-kube-proxy", "/var/lib/kube-proxy/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf",
                            "--hostname-override=w1", "--metrics-bind-address=127.0.0.1:10249")
            try:
                wait_for("stand-in kube-proxy", lambda: w1.pids("kube-proxy"), timeout=20)
                got, _ = verdicts(w1_config, "4.3.1", "4.1.3", "4.1.4", prefix=K12)
                results[metrics] = got
            finally:
                for pid in w1.pids("kube-proxy"):  # the stand-in runs in the node's PID namespace
                    w1.run("kill", "-9", str(pid))
                proc.wait(10)
            wait_for("stand-in gone", lambda: not w1.pids("kube-proxy"), timeout=20)
    finally:
        for p in (stand_in, root / "config.conf", root / "kubeconfig.conf"):
            p.unlink(missing_ok=True)
        stand_in.parent.rmdir()
        root.rmdir()
    loose, tight = results["0.0.0.0:10249"], results["127.0.0.1:10249"]
    assert loose["4.3.1"].status == FAIL and "metricsBindAddress: 0.0.0.0:10249 (/var/lib/kube-proxy/config.conf)" in loose["4.3.1"].found
    assert loose["4.3.1"].evidence == [("--metrics-bind-address=127.0.0.1:10249 is on the command line but ignored: "
                                        "kube-proxy takes its settings from --config /var/lib/kube-proxy/config.conf")]
    assert tight["4.3.1"].status == PASS
    assert tight["4.1.3"].status == PASS and tight["4.1.3"].found.endswith("/var/lib/kube-proxy/kubeconfig.conf 600")
    assert tight["4.1.3"].found.startswith("/proc/")  # read through the process's mount namespace
    assert tight["4.1.4"].status == PASS


def test_components_not_running_are_skip(w1, w1_config):
    """A worker runs no API server or etcd: their items have nothing to judge there."""
    got, _ = verdicts(w1_config, "1.2.20", "2.2", "1.2.10")
    assert {v.status for v in got.values()} == {SKIP}
    assert got["2.2"].found == "etcd is not running on this host (layout kubeadm: process etcd not found in /proc)"
