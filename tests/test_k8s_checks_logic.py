"""The pieces of the CIS Kubernetes checks that are pure logic, without a cluster: flag parsing
as pflag does it, the typed compare operators, layout globs, the EncryptionConfiguration reading.
Each check also runs against the real components in tests/test_k8s_verify_*.py; this file covers
the corners no lab component produces (Go's other boolean spellings, IPv6 loopback, "*.*").

k3s is **simulated** here (no k3s binary is reachable): its journal line is parsed from text.
"""

from __future__ import annotations

import pytest

from hardline.benchmarks.checks.kubecompare import (
    is_loopback,
    judge,
    parse_duration,
    select_key,
)
from hardline.benchmarks.checks.kubeflags import _first_provider
from hardline.benchmarks.checks.kubelet import unset_in_file
from hardline.benchmarks.gather.core import HostFacts
from hardline.benchmarks.gather.kubefiles import glob_ops
from hardline.benchmarks.gather.kubernetes import (
    Proc,
    _journal_flags,
    _matches,
    parse_flags,
)


def test_flags_parse_as_pflag_does():
    argv = ["--profiling=false", "--v", "2", "--anonymous-auth", "--enable-admission-plugins=A,B", "-data-dir=/x",
            "--profiling=true", "positional"]
    assert parse_flags(argv) == {"profiling": "true", "v": "2", "anonymous-auth": "true",
                                 "enable-admission-plugins": "A,B", "data-dir": "/x"}


def test_process_name_is_comm_or_argv0_when_comm_is_cut():
    assert _matches("kube-controller-manager", {"comm": "kube-controller", "argv": ["/usr/local/bin/kube-controller-manager"]})
    assert not _matches("kube-controller-manager", {"comm": "kube-controller", "argv": ["kube-controller-other"]})
    assert _matches("etcd", {"comm": "etcd", "argv": ["etcd"]}) and not _matches("etcd", {"comm": "etcdctl", "argv": []})


@pytest.mark.parametrize("params, given, value, ok", [
    ({"op": "eq", "value": False, "type": "bool"}, True, "False", True),
    ({"op": "eq", "value": False, "type": "bool"}, True, "0", True),
    ({"op": "eq", "value": True, "type": "bool"}, True, "yes", False),  # not a Go boolean
    ({"op": "eq", "value": True, "type": "bool"}, False, True, True),  # the default stands in
    ({"op": "gte", "value": 30, "type": "int"}, True, "7", False),
    ({"op": "noteq", "value": "0", "type": "duration"}, True, "0m0s", False),
    ({"op": "noteq", "value": "0", "type": "duration"}, True, "1h30m", True),
    ({"op": "set"}, False, "default", False),  # a default does not count
    ({"op": "set"}, True, "", False),
    ({"op": "unset"}, True, "x", False),
    ({"op": "has", "value": ["Node", "RBAC"], "type": "list"}, True, "RBAC, Node", True),
    ({"op": "nothave", "value": ["AlwaysAllow"], "type": "list"}, True, "AlwaysAllow,RBAC", False),
    ({"op": "valid_elements", "value": ["A", "B"], "type": "list"}, True, "A,C", False),
    ({"op": "valid_elements", "value": ["A", "B"], "type": "list"}, True, "", False),
    ({"op": "loopback", "type": "hostport"}, True, "[::1]:10249", True),
    ({"op": "loopback", "type": "hostport"}, True, "0.0.0.0:10249", False),
    ({"op": "eq", "value": 0, "type": "int"}, False, None, False),  # no value and no default: never a pass
])
def test_compare_operators(params, given, value, ok):
    assert judge(params, given, value)[0] is ok


def test_keys_durations_loopback_and_kubelet_defaulting():
    assert select_key("A=true,RotateKubeletServerCertificate=false", "RotateKubeletServerCertificate") == (True, "false")
    assert select_key({"B": True}, "A") == (False, None)
    assert parse_duration("4h0m0s") == 14400 and parse_duration("300ms") == 0.3
    assert is_loopback("localhost:1") and is_loopback("127.0.0.5") and not is_loopback("10.0.0.1")
    assert unset_in_file("0s") and unset_in_file("") and not unset_in_file("5m") and not unset_in_file(0)


def test_layout_globs():
    assert glob_ops("/etc/kubernetes/pki/**") == ("/etc/kubernetes/pki", "all", "*")
    assert glob_ops("/etc/kubernetes/pki/**/*.key") == ("/etc/kubernetes/pki", "any", "*.key")
    assert glob_ops("/etc/cni/net.d/*") == ("/etc/cni/net.d", "one", "*")
    assert glob_ops("/lib/systemd/system/kubelet.service") == ("/lib/systemd/system/kubelet.service", "self", "")
    with pytest.raises(ValueError):
        glob_ops("/a/*/b/*.conf")


def test_encryption_first_provider():
    rules = [{"resources": ["configmaps"], "providers": [{"aescbc": {}}]},
             {"resources": ["*.*"], "providers": [{"identity": {}}, {"kms": {}}]}]
    assert _first_provider(rules, "configmaps") == "aescbc"
    assert _first_provider(rules, "secrets") == "identity"  # the catch-all entry
    assert _first_provider(rules[:1], "secrets") is None


def test_k3s_journal_flags_simulated():
    """Simulated k3s (no binary here): the last "Running kube-apiserver" line of its journal."""
    facts = HostFacts()
    line = ('time="2026-01-01T00:00:00Z" level=info msg="Running kube-apiserver --advertise-port=6443 '
            '--profiling=false --enable-admission-plugins=NodeRestriction"')
    facts.sections["k8s_journal_k3s_apiserver"] = (0, line, "")
    proc = Proc("apiserver", 1, "k3s-server", ["k3s", "server"])
    _journal_flags(facts, "k3s", "apiserver", {"units": ["k3s"], "marker": "Running kube-apiserver"}, proc)
    assert proc.flags["profiling"] == "false" and proc.flags["enable-admission-plugins"] == "NodeRestriction"
    assert proc.source == "journal of k3s ('Running kube-apiserver' line)"
    facts.sections["k8s_journal_k3s_apiserver"] = (0, "", "")
    _journal_flags(facts, "k3s", "apiserver", {"units": ["k3s"], "marker": "Running kube-apiserver"}, proc)
    assert proc.flags == {} and "no 'Running kube-apiserver' line" in proc.source
