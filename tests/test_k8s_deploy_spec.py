"""Spec tests of the Kubernetes deploy's decisions, without a node: the files kubeadm 1.20 wrote
(tests/data/kubeadm-1.20) and the CIS Kubernetes 1.20 catalog in, the edits out; nothing when
the node already complies; refusals with their reasons. tests/test_k8s_deploy.py runs the same
code against live nodes."""

from __future__ import annotations

import base64
import hashlib
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from hardline.catalog import catalog_for, defaults, kubernetes_layouts, load_catalog
from hardline.deploys.k8s_facts import KubeNodeState, glob_base, parse_help
from hardline.deploys.k8s_node import NodeView, flag_file_edit, gather_args
from hardline.deploys.k8s_plan import plan_flags, plan_kubelet, version_note
from hardline.deploys.k8s_values import effective, passes, set_flag, set_map_key, typed
from hardline.deploys.operations.kubernetes import kernel_settings, kubelet_files, static_pod_manifest
from hardline.deploys.yamltext import append_items, replace_sequence, rewrite, set_key

DATA = Path(__file__).parent / "data" / "kubeadm-1.20"
CATALOG = load_catalog("cis-kubernetes", "1.20")
DEFAULTS = defaults()


def manifest(name: str) -> tuple[str, list[str]]:
    text = (DATA / f"{name}.yaml").read_text()
    return text, yaml.safe_load(text)["spec"]["containers"][0]["command"]


def items(component: str, data: dict | None = None, kinds=("process_flag", "admission_plugin")):
    """The controls the deploy applies to a component with these inventory values."""
    data = {**DEFAULTS, **(data or {})}
    chosen = [c for c in CATALOG.of_kind(*kinds) if c.automated or c.slug in data["k8s_remediate_manual"]]
    return [(c, c.resolve(data)) for c in chosen
            if c.kind == "kubelet_setting" or c.resolve(data).get("component", "apiserver") == component]


# ------------------------------------------------------------------------------------- values


@pytest.mark.parametrize("raw, kind, expected", [
    ("True", "bool", True), ("0", "bool", False), ("4h0m0s", "duration", 14400), ("0s", "duration", 0),
    ("0m0s", "duration", 0), ("RBAC, Node", "list", ["Node", "RBAC"]), (10, "int", 10),
])
def test_values_are_read_as_the_components_parse_them(raw, kind, expected):
    assert typed(raw, kind) == expected


def test_operators_judge_the_value_in_effect_and_a_default_does_not_count_as_set():
    assert passes("eq", "false", True, False, "bool") and not passes("eq", "true", False, False, "bool")
    assert passes("gte", "30", True, 30, "int") and not passes("gte", "0", False, 30, "int")
    assert passes("nothave", "Node,RBAC", True, ["AlwaysAllow"], "list")
    assert not passes("nothave", "AlwaysAllow", False, ["AlwaysAllow"], "list")
    assert passes("valid_elements", "B,A", True, ["A", "B", "C"], "list") and not passes("valid_elements", "A,D", True,
                                                                                           ["A", "B"], "list")
    assert not passes("set", "/etc/x", False, None, "str") and passes("set", "/etc/x", True, None, "str")
    assert passes("unset", None, False, None, "str") and not passes("unset", "x", True, None, "str")
    assert passes("noteq", "4h0m0s", True, "0", "duration") and not passes("noteq", "0s", True, "0", "duration")


def test_command_line_edits_change_only_the_flag():
    argv = ["etcd", "--a=1", "--client-cert-auth", "false", "--z=2", "--client-cert-auth=false"]
    assert effective(argv, "client-cert-auth") == "false"
    assert effective(["x", "--profiling"], "profiling", boolean=True) == "true"
    assert set_flag(argv, "client-cert-auth", "true") == ["etcd", "--a=1", "--z=2", "--client-cert-auth=true"]
    sorted_argv = ["kube-scheduler", "--bind-address=0.0.0.0", "--port=0"]
    assert set_flag(sorted_argv, "profiling", "false") == [*sorted_argv, "--profiling=false"]
    assert set_flag(sorted_argv, "leader-elect", "true")[2] == "--leader-elect=true"  # where kubeadm would sort it
    assert set_flag(["x", "--b=1", "--a=1"], "c", "1") == ["x", "--b=1", "--a=1", "--c=1"]
    assert set_map_key("A=true,RotateKubeletServerCertificate=false", "RotateKubeletServerCertificate", "true") == \
        "A=true,RotateKubeletServerCertificate=true"


# -------------------------------------------------------------------------------- static pods


def test_apiserver_plan_on_kubeadm_manifest_and_nothing_once_applied():
    _, argv = manifest("kube-apiserver")
    new, out = plan_flags(argv, items("apiserver"))
    assert out.errors == []
    assert {k.split(":")[-1] for k, _ in out.changes} == {"1.2.20", "1.2.21", "1.2.22", "1.2.23", "1.2.24", "1.2.34"}
    assert "--profiling=false" in new and "--audit-log-path=/var/log/kubernetes/audit/audit.log" in new
    assert out.written_dirs == {"audit-log-path": "/var/log/kubernetes/audit"}
    # kubeadm's own flags stay, in their place; the new ones sorted in
    assert [a for a in new if a in argv] == argv and new[1:] == sorted(new[1:])
    # verify-only items say so (kubelet-certificate-authority has no inventory value)
    assert any("1.2.5] verify only" in n and "apiserver_kubelet_certificate_authority" in n for n in out.notes)
    assert any("1.2.15] not changed: apiserver_enable_pod_security_policy is false" in n for n in out.notes)
    again, second = plan_flags(new, items("apiserver"))
    assert again == new and second.changes == [] and second.errors == []


def test_authorization_and_admission_plugins_are_edited_not_replaced():
    base = ["kube-apiserver", "--authorization-mode=AlwaysAllow,RBAC,Webhook",
            "--enable-admission-plugins=AlwaysAdmit,NodeRestriction", "--disable-admission-plugins=ServiceAccount"]
    new, out = plan_flags(base, items("apiserver"))
    assert out.errors == [] and effective(new, "authorization-mode") == "RBAC,Webhook,Node"
    assert effective(new, "enable-admission-plugins") == "NodeRestriction"
    assert effective(new, "disable-admission-plugins") is None
    default_mode, _ = plan_flags(["kube-apiserver"], items("apiserver"))
    assert effective(default_mode, "authorization-mode") == "Node,RBAC"  # the built-in AlwaysAllow is replaced


def test_refusals_name_the_reason():
    # EventRateLimit asked for (a manual item) without its admission configuration
    data = {"k8s_remediate_manual": ["apiserver_event_rate_limit"]}
    _, out = plan_flags(manifest("kube-apiserver")[1], items("apiserver", data))
    assert any("EventRateLimit needs its configuration in --admission-control-config-file" in e for e in out.errors)
    # cipher suites the benchmark does not accept contradict the item they are written for
    _, out = plan_flags(manifest("kube-apiserver")[1], items("apiserver", {"apiserver_tls_cipher_suites": ["TLS_RSA_WITH_RC4_128_SHA"]}))
    assert any("1.2.34] the inventory's --tls-cipher-suites=TLS_RSA_WITH_RC4_128_SHA would not satisfy" in e for e in out.errors)
    # the deprecated whole-list flag is not edited around
    _, out = plan_flags(["kube-apiserver", "--admission-control=AlwaysAdmit"], items("apiserver"))
    assert any("deprecated --admission-control" in e for e in out.errors)


def test_etcd_flag_wins_over_its_environment_and_compliant_etcd_is_left_alone():
    _, argv = manifest("etcd")
    assert plan_flags(argv, items("etcd"), {}, "ETCD_")[1].changes == []
    bare = [a for a in argv if not a.startswith("--client-cert-auth")]
    new, out = plan_flags(bare, items("etcd"), {"ETCD_CLIENT_CERT_AUTH": "false"}, "ETCD_")
    assert out.changes == [("cis-kubernetes:1.20:2.2", "--client-cert-auth=true")] and "--client-cert-auth=true" in new
    assert plan_flags(bare, items("etcd"), {"ETCD_CLIENT_CERT_AUTH": "true"}, "ETCD_")[1].changes == []


def test_an_item_the_running_version_cannot_express_is_not_applied():
    newer = load_catalog("cis-kubernetes", "1.12").get("1.2.3")  # DenyServiceExternalIPs, Kubernetes >= 1.21
    assert "needs Kubernetes 1.21 or later, the node runs v1.20.2: not applied" in version_note(newer, "v1.20.2")
    assert version_note(newer, "v1.33.1") is None


def test_help_gives_flags_and_admission_plugins():
    help_text = [  # kube-apiserver v1.20.2 --help, two of its lines
        "      --profiling                              Enable profiling via web interface host:port/debug/pprof/ (default true)",
        ("      --enable-admission-plugins strings       admission plugins that should be enabled in addition to default enabled "
        "ones (NamespaceLifecycle, LimitRanger). Comma-delimited list of admission plugins: AlwaysAdmit, AlwaysDeny, "
        "NodeRestriction, PodSecurityPolicy. The order of plugins in this flag does not matter."),
    ]
    parsed = parse_help(help_text)
    assert parsed == {"flags": {"profiling", "enable-admission-plugins"},
                      "admission_plugins": {"AlwaysAdmit", "AlwaysDeny", "NodeRestriction", "PodSecurityPolicy"}}
    assert parse_help(["kube-apiserver: command not found"]) is None


# ------------------------------------------------------------------------------------ kubelet


def test_kubelet_plan_on_kubeadm_config_with_its_kernel_settings():
    config = yaml.safe_load((DATA / "kubelet-config.yaml").read_text())
    argv = ["/usr/bin/kubelet", "--config=/var/lib/kubelet/config.yaml", "--anonymous-auth=true"]
    new, removals, out = plan_kubelet(config, argv, items("kubelet", kinds=("kubelet_setting",)), "v1.20.2")
    assert out.errors == []
    assert new["protectKernelDefaults"] is True and new["eventRecordQPS"] == 0
    # kubeadm's "0s" is the kubelet's default (4h): defaulted, compliant, left alone; a real 0 is not
    assert new["streamingConnectionIdleTimeout"] == "0s"
    zero, _, zero_out = plan_kubelet(config, [*argv[:2], "--streaming-connection-idle-timeout=0"],
                                     items("kubelet", kinds=("kubelet_setting",)), "v1.20.2")
    assert zero["streamingConnectionIdleTimeout"] == "4h0m0s" and ("cis-kubernetes:1.20:4.2.5",
                                                                   "streamingConnectionIdleTimeout: 4h0m0s") in zero_out.changes
    assert new["authentication"]["anonymous"]["enabled"] is False and ("anonymous-auth", True) in removals
    assert out.sysctls["vm.overcommit_memory"] == "1" and out.sysctls["kernel.panic"] == "10"
    again, removals2, out2 = plan_kubelet(new, argv[:2], items("kubelet", kinds=("kubelet_setting",)), "v1.20.2")
    assert again == new and removals2 == [] and out2.changes == []


def test_kubelet_flag_files_lose_only_the_contradicting_flag():
    text = 'KUBELET_KUBEADM_ARGS="--cgroup-root=/x --anonymous-auth=true --container-runtime=remote"\nOTHER=1\n'
    new, removed = flag_file_edit(text, "KUBELET_KUBEADM_ARGS", [("anonymous-auth", True)])
    assert new == 'KUBELET_KUBEADM_ARGS="--cgroup-root=/x --container-runtime=remote"\nOTHER=1\n' and removed == ["anonymous-auth"]
    tricky = "KUBELET_EXTRA_ARGS=--anonymous-auth=true --node-labels='a b'\n"
    assert flag_file_edit(tricky, "KUBELET_EXTRA_ARGS", [("anonymous-auth", True)]) == (tricky, [])


# ---------------------------------------------------------------------------------- YAML text


def test_kubelet_config_edit_touches_only_the_changed_lines():
    text = (DATA / "kubelet-config.yaml").read_text()
    new = set_key(set_key(text, "readOnlyPort", 0), "authentication.x509.clientCAFile", "/etc/kubernetes/pki/ca 2.crt")
    new = set_key(new, "featureGates.RotateKubeletServerCertificate", True)
    removed = [line for line in text.splitlines() if line not in new.splitlines()]
    added = [line for line in new.splitlines() if line not in text.splitlines()]
    assert removed == ["    clientCAFile: /etc/kubernetes/pki/ca.crt"]
    assert added == ["    clientCAFile: /etc/kubernetes/pki/ca 2.crt", "featureGates:", "  RotateKubeletServerCertificate: true",
                     "readOnlyPort: 0"]
    assert set_key("a: '0'\n", "a", "0") == "a: '0'\n"  # a string stays a string


def test_manifest_edit_keeps_every_other_line_and_falls_back_to_a_dump():
    text, command = manifest("kube-apiserver")
    new_command = set_flag(command, "profiling", "false")
    mount = {"mountPath": "/var/log/kubernetes/audit", "name": "hardline-audit-log-path"}
    edited = append_items(replace_sequence(text, command, new_command), "volumeMounts", [mount])
    assert [line for line in text.splitlines() if line not in edited.splitlines()] == []
    assert len(edited.splitlines()) == len(text.splitlines()) + 3
    pod = yaml.safe_load(text)
    pod["spec"]["containers"][0]["command"] = new_command
    flow = yaml.safe_dump(yaml.safe_load(text), default_flow_style=True)
    result, in_place = rewrite(flow, pod, lambda t: replace_sequence(t, command, new_command))
    assert not in_place and yaml.safe_load(result) == pod


# ------------------------------------------------------------------------------------- facts


def _section(head: str, *lines: str) -> list[str]:
    return [f"@@hl {head}", *lines]


def test_node_state_is_read_from_its_sections_and_not_from_half_an_output():
    argv = base64.b64encode(b"/usr/bin/kubelet\0--config=/var/lib/kubelet/config.yaml\0").decode()
    text = base64.b64encode(b"@@hl file /etc/shadow\nkind: KubeletConfiguration\n").decode()
    output = [*_section("proc kubelet 812", argv), *_section("version", "Kubernetes v1.20.2"),
              *_section("file /var/lib/kubelet/config.yaml", "root root 644 regular file", text),
              *_section("file /etc/default/kubelet", "@@absent"), *_section("stat /var/lib/etcd", "etcd etcd 700 directory"),
              *_section("glob /etc/kubernetes/pki/**", "root root 644 regular file\t/etc/kubernetes/pki/ca.crt"),
              *_section("sysctl kernel.panic", "10"), *_section("user etcd", "no"), "@@hl-end"]
    state = KubeNodeState().process(output)
    assert state["procs"]["kubelet"]["argv"] == ["/usr/bin/kubelet", "--config=/var/lib/kubelet/config.yaml"]
    assert state["version"] == "v1.20.2" and state["users"] == {"etcd": False}
    assert state["files"]["/var/lib/kubelet/config.yaml"]["text"].startswith("@@hl file /etc/shadow")
    assert state["files"]["/etc/default/kubelet"] is None and state["stats"]["/var/lib/etcd"]["mode"] == 0o700
    view = NodeView(kubernetes_layouts()["kubeadm"], state)
    assert view.target_paths({"k8s_glob": "pki_tree"}) == ["/etc/kubernetes/pki/ca.crt"]
    assert view.kubelet_config_path() == "/var/lib/kubelet/config.yaml"
    assert KubeNodeState().process(output[:-1]) is None  # no end marker: the script did not finish


def test_gathering_script_never_runs_a_value_as_code(tmp_path):
    canary = tmp_path / "ran"
    hostile = f"x$(touch {canary})'; touch {canary}; '"
    args = gather_args([kubernetes_layouts()["kubeadm"]], [], detect=[hostile], users=[hostile], groups=[hostile])
    args["read"].append(hostile)
    done = subprocess.run(["sh", "-c", KubeNodeState().command(**args)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0 and not canary.exists()
    state = KubeNodeState().process(done.stdout.splitlines())
    assert state["users"] == {hostile: False} and state["exists"] == {hostile: False} and state["files"][hostile] is None


def test_glob_base_and_depth():
    assert glob_base("/etc/kubernetes/pki/**/*.crt") == ("/etc/kubernetes/pki", None)
    assert glob_base("/etc/systemd/system/kubelet.service.d/*.conf") == ("/etc/systemd/system/kubelet.service.d", 1)
    assert glob_base("/etc/kubernetes/pki") == ("/etc/kubernetes/pki", 0)


# -------------------------------------------------------------------------------- operations


@pytest.fixture
def pyinfra_host():
    """The current pyinfra host for an operation's generator (it reads no fact: state is given)."""
    from pyinfra.api import Config, Inventory, State
    from pyinfra.context import ctx_host, ctx_state

    inventory = Inventory((["spec-host"], {}))
    with ctx_state.use(State(inventory, Config())), ctx_host.use(inventory.get_host("spec-host")):
        yield


def _commands(generator) -> list[str]:
    return [c.get_raw_value() for c in generator]


def test_manifest_operation_is_one_checked_command_and_nothing_when_unchanged(pyinfra_host):
    text, command = manifest("kube-scheduler")
    args = {"path": "/etc/kubernetes/manifests/kube-scheduler.yaml", "process": "kube-scheduler", "argv_old": command,
            "health": "curl -sfk https://127.0.0.1:10259/healthz", "timeout": 240,
            "backup_dir": "/var/lib/hardline/backups/kubernetes",
            "log_glob": "/var/log/pods/kube-system_kube-scheduler-*_*/kube-scheduler/*.log"}
    assert _commands(static_pod_manifest._inner(current=text, new=text, argv_new=command, **args)) == []
    hostile = text.replace("--port=0", "--port=0\n    - --x=$(touch /tmp/pwned)'`")
    new_command = yaml.safe_load(hostile)["spec"]["containers"][0]["command"]
    (one,) = _commands(static_pod_manifest._inner(current=text, new=hostile, argv_new=new_command, **args))
    assert "$(touch" not in one and base64.b64encode(hostile.encode()).decode() in one  # content only as base64
    assert hashlib.sha256(text.encode()).hexdigest() in one  # the swap refuses a file changed since it was read
    script = shlex.split(one)[2]
    assert subprocess.run(["sh", "-n", "-c", script], check=False).returncode == 0


def test_kubelet_and_kernel_operations(pyinfra_host):
    config = (DATA / "kubelet-config.yaml").read_text()
    files = [("/var/lib/kubelet/config.yaml", config, config)]
    args = {"service": "kubelet", "health": "curl -sf http://127.0.0.1:10248/healthz", "timeout": 240,
            "backup_dir": "/var/lib/hardline/backups/kubernetes", "log_command": "tail -n 25 /var/log/kubelet.log"}
    assert _commands(kubelet_files._inner(files=files, **args)) == []
    changed = [*files, ("/etc/default/kubelet", 'KUBELET_EXTRA_ARGS="--anonymous-auth=true"\n', 'KUBELET_EXTRA_ARGS=""\n')]
    (one,) = _commands(kubelet_files._inner(files=changed, **args))
    assert subprocess.run(["sh", "-n", "-c", shlex.split(one)[2]], check=False).returncode == 0
    assert "/etc/default/kubelet" in one and "/var/lib/kubelet/config.yaml" not in one  # only what changes
    wanted = {"kernel.panic": "10", "vm.overcommit_memory": "1"}
    persisted = "".join(f"{k} = {v}\n" for k, v in sorted(wanted.items()))
    assert _commands(kernel_settings._inner(path="/etc/sysctl.d/90-hardline-kubelet.conf", current=persisted,
                                            new=persisted, live=wanted, wanted=wanted)) == []
    (fix,) = _commands(kernel_settings._inner(path="/etc/sysctl.d/90-hardline-kubelet.conf", current=persisted,
                                              new=persisted, live={**wanted, "kernel.panic": "0"}, wanted=wanted))
    assert fix == "set -e; sysctl -w kernel.panic=10 >/dev/null; true"


@pytest.mark.parametrize("running, version", [("v1.19.16", "1.20"), ("v1.20.2", "1.20"), ("v1.21.0", "1.20"),
                                              ("v1.25.3", "1.20"), ("v1.32.1", "1.12"), ("v1.34.0", "1.12")])
def test_the_deploy_picks_the_benchmark_version_verification_picks(running, version):
    from hardline.benchmarks.select import pick_version  # the check side's pick, to compare with (test code only)

    versions = [load_catalog("cis-kubernetes", v) for v in ("1.12", "1.20")]
    assert catalog_for(versions, running).version == version == pick_version(versions, running).version
