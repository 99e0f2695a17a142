"""CIS Kubernetes node checks against the real control plane of the test cluster (kubeadm 1.20,
etcd, kube-apiserver, controller manager and scheduler as static pods of the real kubelet).

Order matters for time, not for results: the scheduler and controller manager are changed first,
because every API server or etcd restart stops them (they cannot renew their leases) and the
kubelet then holds their original pods in crash-loop back-off, up to 5 minutes.

Every case changes the real component (its manifest, etcd's environment, a file's mode or owner),
waits until the kubelet runs it so, gathers over SSH as `hardline verify` does, and checks the
verdict and its evidence; the shared cluster is put back afterwards. Where it matters, the test
also shows what the component really does (etcd accepting a client without a certificate when
ETCD_CLIENT_CERT_AUTH=false: the environment is what etcd obeys, which kube-bench never reads).
"""

from __future__ import annotations

import base64
import contextlib
import pickle

import pytest
import yaml

from hardline.results import FAIL, PASS, SKIP
from tests.support.kubeverify import (
    CONTROL_PLANE_GROUPS,
    gather,
    judge,
    manifest_changed,
    needs_of,
    node_config,
    wait_control_plane,
    wait_for,
)

pytestmark = pytest.mark.k8s

K = "cis-kubernetes:1.20:"
ENC_KEY = base64.b64encode(b"hardline-test-key-0123456789abcd").decode()  # 32 bytes: aescbc


def with_flags(*, drop: tuple[str, ...] = (), add: tuple[str, ...] = ()):
    """A command edit: remove every --name / --name=... of ``drop`` (and of the flags in ``add``),
    then append ``add`` as given (order kept: repeated flags test last-wins)."""
    names = set(drop) | {a.lstrip("-").partition("=")[0] for a in add}

    def edit(command: list[str]) -> list[str]:
        kept = [c for c in command if c.lstrip("-").partition("=")[0] not in names or not c.startswith("--")]
        return kept + list(add)
    return edit


@pytest.fixture(scope="module")
def cp(k8s_control_plane):
    """The shared control plane, once every component runs its own manifest again (earlier
    tests may have left the controller manager or scheduler in crash-loop back-off)."""
    wait_control_plane(k8s_control_plane)
    return k8s_control_plane


@pytest.fixture(scope="module")
def cp_config(cp, k8s_cluster):
    return node_config(cp, CONTROL_PLANE_GROUPS, k8s_cluster=k8s_cluster.id)


def verdicts(config, *ids: str, **overrides):
    keys = [K + i for i in ids]
    facts = gather(config, needs_of(*keys, data=config.data))
    assert facts.round_trips <= 2
    return {i: judge(K + i, facts, config, **overrides) for i in ids}, facts


@contextlib.contextmanager
def node_file(node, path: str, text: str, mode: int = 0o600):
    """A file on the node (in its own /etc), removed afterwards."""
    target = node.path(path)
    target.write_text(text)
    target.chmod(mode)
    try:
        yield path
    finally:
        target.unlink(missing_ok=True)


def encryption(first: str) -> str:
    providers = [{"identity": {}}, {"aescbc": {"keys": [{"name": "k1", "secret": ENC_KEY}]}}]
    if first == "aescbc":
        providers.reverse()
    return yaml.safe_dump({"apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
                           "resources": [{"resources": ["secrets"], "providers": providers}]})


def test_scheduler_flag_given_twice_last_wins(cp, cp_config):
    with manifest_changed(cp, "kube-scheduler", with_flags(add=("--profiling=false", "--profiling=true"))):
        got, _ = verdicts(cp_config, "1.4.1")
    assert got["1.4.1"].status == FAIL
    with manifest_changed(cp, "kube-scheduler", with_flags(add=("--profiling=true", "--profiling=false"))):
        got, _ = verdicts(cp_config, "1.4.1")
    assert got["1.4.1"].status == PASS


def test_controller_manager_feature_gate_and_bind_address(cp, cp_config):
    """A key of a key=value flag (--feature-gates) judged key by key, with Go's boolean spellings."""
    bad = with_flags(add=("--feature-gates=RotateKubeletServerCertificate=false,EphemeralContainers=true",
                          "--bind-address=0.0.0.0"))
    with manifest_changed(cp, "kube-controller-manager", bad):
        got, _ = verdicts(cp_config, "1.3.6", "1.3.7")
    assert (got["1.3.6"].status, got["1.3.7"].status) == (FAIL, FAIL)
    assert got["1.3.6"].found.startswith("RotateKubeletServerCertificate=false in flag --feature-gates=")
    good = with_flags(add=("--feature-gates=RotateKubeletServerCertificate=True", "--bind-address=127.0.0.1"))
    with manifest_changed(cp, "kube-controller-manager", good):
        got, _ = verdicts(cp_config, "1.3.6", "1.3.7")
    assert (got["1.3.6"].status, got["1.3.7"].status) == (PASS, PASS)


APISERVER_IDS = ("1.2.2", "1.2.3", "1.2.5", "1.2.6", "1.2.7", "1.2.8", "1.2.10", "1.2.13", "1.2.16", "1.2.20",
                 "1.2.21", "1.2.22", "1.2.26", "1.2.33")


def test_api_server_flags_admission_plugins_and_encryption_fail(cp, cp_config):
    """A non-compliant API server: explicit bad values, a flag given twice (the last wins, as
    pflag takes it), AlwaysAdmit enabled, the default-on ServiceAccount plugin disabled, secrets
    written with identity first."""
    with node_file(cp, "/etc/kubernetes/pki/hl-tokens.csv", "t0k3n,hl-user,hl-uid\n"), \
            node_file(cp, "/etc/kubernetes/pki/hl-enc.yaml", encryption("identity")):
        bad = with_flags(drop=("audit-log-path", "kubelet-certificate-authority"), add=(
            "--profiling=false", "--profiling=true", "--authorization-mode=AlwaysAllow,RBAC",
            "--enable-admission-plugins=NodeRestriction,AlwaysAdmit", "--disable-admission-plugins=ServiceAccount",
            "--token-auth-file=/etc/kubernetes/pki/hl-tokens.csv", "--service-account-lookup=false",
            "--kubelet-https=false", "--audit-log-maxage=7",
            "--encryption-provider-config=/etc/kubernetes/pki/hl-enc.yaml"))
        with manifest_changed(cp, "kube-apiserver", bad):
            got, facts = verdicts(cp_config, *APISERVER_IDS)
    status = {i: v.status for i, v in got.items()}
    assert status == {"1.2.2": FAIL, "1.2.3": FAIL, "1.2.5": FAIL, "1.2.6": FAIL, "1.2.7": FAIL, "1.2.8": PASS,
                      "1.2.10": FAIL, "1.2.13": FAIL, "1.2.16": PASS, "1.2.20": FAIL, "1.2.21": FAIL,
                      "1.2.22": FAIL, "1.2.26": FAIL, "1.2.33": FAIL}, {i: v.found for i, v in got.items()}
    pid = facts.values["k8s_procs"]["apiserver"].pid
    assert got["1.2.20"].found == f"flag --profiling=true (cmdline of pid {pid}): differs"
    assert "flag --token-auth-file=/etc/kubernetes/pki/hl-tokens.csv" in got["1.2.2"].found
    assert got["1.2.13"].found == "ServiceAccount not enabled (on by default, but disabled)"
    assert got["1.2.10"].found == "AlwaysAdmit enabled"
    assert "--audit-log-maxage=7" in got["1.2.22"].found and "7 >= 30 is false" in got["1.2.22"].found
    assert "--kubelet-https=false" in got["1.2.3"].found
    assert got["1.2.33"].found == "secrets: first provider identity"
    # the key never left the node: the host redacted it before answering
    assert ENC_KEY.encode() not in pickle.dumps(facts) and "<redacted>" in str(facts.values["k8s_encryption"])


def test_api_server_flags_admission_plugins_and_encryption_pass(cp, cp_config):
    """The same items compliant, plus a "set as appropriate" file that disappears while the
    server runs: set but missing is FAIL (kube-bench accepts any value)."""
    ca = cp.path("/etc/kubernetes/pki/ca.crt").read_text()
    with node_file(cp, "/etc/kubernetes/pki/hl-enc.yaml", encryption("aescbc")), \
            node_file(cp, "/etc/kubernetes/pki/hl-kubelet-ca.crt", ca, 0o644):
        good = with_flags(drop=("token-auth-file", "kubelet-https", "disable-admission-plugins"), add=(
            "--profiling=true", "--profiling=false", "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction", "--service-account-lookup=true", "--audit-log-path=-",
            "--audit-log-maxage=30", "--audit-log-maxbackup=10", "--audit-log-maxsize=100",
            "--kubelet-certificate-authority=/etc/kubernetes/pki/hl-kubelet-ca.crt",
            "--encryption-provider-config=/etc/kubernetes/pki/hl-enc.yaml"))
        with manifest_changed(cp, "kube-apiserver", good):
            got, _ = verdicts(cp_config, *APISERVER_IDS, "1.2.23", "1.2.24")
            assert {i: v.status for i, v in got.items() if v.status != PASS} == {}
            assert got["1.2.5"].found.endswith("(file exists)")
            assert got["1.2.13"].found == "ServiceAccount enabled (on by default)"
            assert got["1.2.3"].found.endswith("built-in default true")
            assert got["1.2.33"].found == "secrets: first provider aescbc"
            cp.path("/etc/kubernetes/pki/hl-kubelet-ca.crt").unlink()
            gone, _ = verdicts(cp_config, "1.2.5")
            assert gone["1.2.5"].status == FAIL
            assert "/etc/kubernetes/pki/hl-kubelet-ca.crt does not exist in pid" in gone["1.2.5"].found


def test_etcd_settings_from_its_environment(cp, cp_config):
    """etcd configured by ETCD_* variables (Debian's /etc/default/etcd style) instead of flags:
    the verdict follows what etcd does. With ETCD_CLIENT_CERT_AUTH=false and no trusted CA it
    really serves a client without a certificate (FAIL); with ETCD_CLIENT_CERT_AUTH=true and
    ETCD_TRUSTED_CA_FILE it refuses one (PASS, the CA file found in etcd's mount namespace).
    (etcd 3.4 refuses to start when a variable and a flag both name a setting, and a trusted CA
    file alone already makes it require client certificates.)"""
    edit = with_flags(drop=("client-cert-auth", "peer-auto-tls", "trusted-ca-file"))
    env_bad = [{"name": "ETCD_CLIENT_CERT_AUTH", "value": "false"}, {"name": "ETCD_PEER_AUTO_TLS", "value": "true"}]
    with manifest_changed(cp, "etcd", edit, env=env_bad):
        got, facts = verdicts(cp_config, "2.2", "2.6", "2.7", "2.1")
        # etcd obeys its environment: a client without a certificate is served
        wait_for("etcd serving a client without a certificate", lambda: cp.etcd_health(with_cert=False).returncode == 0, 90)
    pid = facts.values["k8s_procs"]["etcd"].pid
    assert got["2.2"].status == FAIL and got["2.2"].found == f"ETCD_CLIENT_CERT_AUTH=false (environ of pid {pid}): differs"
    assert got["2.6"].status == FAIL and got["2.6"].found == f"ETCD_PEER_AUTO_TLS=true (environ of pid {pid}): differs"
    assert got["2.7"].status == FAIL and got["2.7"].found.startswith("--trusted-ca-file given nowhere")
    assert got["2.1"].status == PASS  # the flags etcd still has
    env_good = [{"name": "ETCD_CLIENT_CERT_AUTH", "value": "true"},
                {"name": "ETCD_TRUSTED_CA_FILE", "value": "/etc/kubernetes/pki/etcd/ca.crt"}]
    with manifest_changed(cp, "etcd", edit, env=env_good):
        got, facts = verdicts(cp_config, "2.2", "2.6", "2.7")
        assert cp.etcd_health(with_cert=True).returncode == 0
        assert cp.etcd_health(with_cert=False).returncode != 0
        assert "client didn't provide a certificate" in cp.component_log("etcd", 100)
    pid = facts.values["k8s_procs"]["etcd"].pid
    assert got["2.2"].status == PASS and got["2.2"].found == f"ETCD_CLIENT_CERT_AUTH=true (environ of pid {pid})"
    assert got["2.7"].status == PASS
    assert got["2.7"].found == f"ETCD_TRUSTED_CA_FILE=/etc/kubernetes/pki/etcd/ca.crt (environ of pid {pid}) (file exists)"
    assert got["2.6"].status == PASS and got["2.6"].found.startswith("--peer-auto-tls given nowhere (flags, ETCD_PEER_AUTO_TLS")


ETCD_TLS_KEYS = {"cert-file", "key-file", "client-cert-auth", "trusted-ca-file", "auto-tls"}


def etcd_config_file(command: list[str], **overrides) -> str:
    """kubeadm's etcd flags as an etcd --config-file (TLS settings in their nested blocks)."""
    flags = {k: v for k, _, v in (a.lstrip("-").partition("=") for a in command[1:])}
    flags.update(overrides)
    doc: dict = {"client-transport-security": {}, "peer-transport-security": {}}
    for key, value in flags.items():
        value = {"true": True, "false": False}.get(value, value)
        if key.startswith("peer-") and key[5:] in ETCD_TLS_KEYS:
            doc["peer-transport-security"][key[5:]] = value
        elif key in ETCD_TLS_KEYS:
            doc["client-transport-security"][key] = value
        else:
            doc[key] = int(value) if key == "snapshot-count" else value
    return yaml.safe_dump(doc)


def test_etcd_config_file_alone_decides(cp, cp_config):
    """etcd started with --config-file reads that file alone ("other configuration command line
    flags and environment variables will be ignored", its log says): a --client-cert-auth=true flag beside it
    changes nothing, etcd serves a client without a certificate, and the verdict follows the
    file (kube-bench reads the flag and passes)."""
    command = yaml.safe_load(cp.manifest("etcd").read_text())["spec"]["containers"][0]["command"]
    text = etcd_config_file(command, **{"client-cert-auth": "false"})
    text = "\n".join(line for line in text.splitlines() if "trusted-ca-file" not in line or "peer" in line)
    path = "/etc/kubernetes/pki/etcd/hl-etcd.yaml"
    with node_file(cp, path, text + "\n"):
        edit = lambda cmd: ["etcd", f"--config-file={path}", "--client-cert-auth=true"]
        with manifest_changed(cp, "etcd", edit):
            got, facts = verdicts(cp_config, "2.1", "2.2", "2.3", "1.1.11")
            wait_for("etcd serving a client without a certificate", lambda: cp.etcd_health(with_cert=False).returncode == 0, 90)
            assert "Other configuration command line flags and environment variables will be ignored" in cp.component_log("etcd", 2000)
    pid = facts.values["k8s_procs"]["etcd"].pid
    assert got["2.2"].status == FAIL
    assert got["2.2"].found == f"client-transport-security.client-cert-auth: false (etcd config file {path}, pid {pid}): differs"
    assert got["2.1"].status == PASS and "client-transport-security.cert-file: /etc/kubernetes/pki/etcd/server.crt" in got["2.1"].found
    assert got["2.3"].status == PASS and got["2.3"].found.startswith("client-transport-security.auto-tls not in etcd config file")
    assert got["1.1.11"].status == PASS and got["1.1.11"].found == "/var/lib/etcd 700"  # data-dir from the file


@contextlib.contextmanager
def changed(node, path: str, mode: str | None = None, owner: str | None = None):
    """chmod/chown a node path (no -R), restored afterwards."""
    target = node.path(path)
    st = target.stat()
    try:
        if mode:
            node.run("chmod", mode, path, check=True)
        if owner:
            node.run("chown", owner, path, check=True)
        yield
    finally:
        node.run("chmod", f"{st.st_mode & 0o7777:o}", path, check=True)
        node.run("chown", f"{st.st_uid}:{st.st_gid}", path, check=True)


def test_file_modes_and_owners_through_the_layout(cp, cp_config):
    ids = ("1.1.12", "1.1.13", "1.1.14", "1.1.19", "1.1.21", "4.1.1")
    with changed(cp, "/etc/kubernetes/admin.conf", mode="644"), changed(cp, "/var/lib/etcd", owner="etcd:etcd"):
        good, _ = verdicts(cp_config, *ids)
    assert {i: v.status for i, v in good.items()} == {i: PASS for i in ids}, {i: v.found for i, v in good.items()}
    assert good["1.1.13"].found == "/etc/kubernetes/admin.conf 644"  # 644 meets "644 or stricter"
    assert "/etc/kubernetes/pki/etcd/peer.key root:root" in good["1.1.19"].found  # every file below pki/
    assert good["1.1.12"].found == "/var/lib/etcd etcd:etcd"  # the data dir etcd's --data-dir names
    with changed(cp, "/etc/kubernetes/admin.conf", mode="666"), \
            changed(cp, "/etc/kubernetes/pki/front-proxy-ca.crt", owner="nobody"), \
            changed(cp, "/etc/kubernetes/pki/etcd/peer.key", mode="640"), \
            changed(cp, "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf", mode="664"), \
            changed(cp, "/var/lib/etcd", owner="root:root"):
        bad, _ = verdicts(cp_config, *ids)
    assert {i: v.status for i, v in bad.items()} == {"1.1.12": FAIL, "1.1.13": FAIL, "1.1.14": PASS, "1.1.19": FAIL,
                                                     "1.1.21": FAIL, "4.1.1": FAIL}
    assert bad["1.1.13"].found == "/etc/kubernetes/admin.conf is 666"
    assert bad["1.1.19"].found == "/etc/kubernetes/pki/front-proxy-ca.crt is nobody:root"
    assert bad["1.1.21"].found == "/etc/kubernetes/pki/etcd/peer.key is 640"
    assert bad["4.1.1"].found == "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf is 664"
    assert bad["1.1.12"].found == "/var/lib/etcd is root:root"


def test_layout_detected_or_named_and_what_a_layout_lacks_is_skip(cp, cp_config, k8s_cluster):
    facts = gather(cp_config, {"k8s_layout"})
    assert (facts.values["k8s_layout"]["name"], facts.round_trips) == ("kubeadm", 1)
    assert facts.values["k8s_layout"]["why"] == "detected: /etc/kubernetes/manifests/kube-apiserver.yaml exists"
    k3s = node_config(cp, CONTROL_PLANE_GROUPS, k8s_cluster=k8s_cluster.id, k8s_layout="k3s")
    got, _ = verdicts(k3s, "1.1.1", "1.2.20", "1.1.13")
    assert got["1.1.1"].status == SKIP and got["1.1.1"].found == "layout k3s has no apiserver manifest"
    assert got["1.2.20"].status == SKIP and "not running on this host (layout k3s" in got["1.2.20"].found
    assert got["1.1.13"].status == SKIP  # neither of k3s's admin kubeconfigs exists on a kubeadm node
    unknown = node_config(cp, CONTROL_PLANE_GROUPS, k8s_layout="kubespray")
    facts = gather(unknown, {"k8s_procs"})
    assert facts.errors["k8s_layout"] == "k8s_layout 'kubespray' is not one of kubeadm, k3s, rke2"
    wait_for("control plane still healthy", lambda: cp.readyz()[0], timeout=30)
