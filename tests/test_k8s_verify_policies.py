"""CIS Kubernetes policy kinds (section 5) against the real API server of the test cluster, with
real objects created for the test: namespaces, service accounts, RBAC roles and bindings, pods
(kept unscheduled: a nodeSelector no node has), network policies, PodSecurityPolicies, a stray
object in default. One batch of API reads serves every control; each finding names the object.

Each kind has failing findings on the bad objects and passes where the same real objects are
judged with the site's allow-list (or exemptions) covering them.
"""

from __future__ import annotations

import pytest

from hardline.results import FAIL, PASS, SKIP
from tests.support.kubeverify import (
    CONTROL_PLANE_GROUPS,
    apply,
    gather,
    judge,
    node_config,
    wait_control_plane,
    wait_for,
)

pytestmark = pytest.mark.k8s

K20, K12 = "cis-kubernetes:1.20:", "cis-kubernetes:1.12:"
CLUSTER_FACTS = {"k8s_api", "k8s_api_default", "k8s_api_psp"}
NOWHERE = {"hardline.test/nowhere": "true"}  # no node has it: pods stay Pending, nothing runs

NAMESPACES = """
apiVersion: v1
kind: Namespace
metadata: {name: hl-good, labels: {pod-security.kubernetes.io/enforce: restricted}}
---
apiVersion: v1
kind: Namespace
metadata: {name: hl-bad}
---
apiVersion: v1
kind: Namespace
metadata: {name: hl-weak, labels: {pod-security.kubernetes.io/enforce: privileged}}
"""
ACCOUNTS = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: default, namespace: hl-good}
automountServiceAccountToken: false
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: builder, namespace: hl-bad}
---
apiVersion: v1
kind: Secret
metadata: {name: db, namespace: hl-bad}
stringData: {password: not-a-real-one}
"""
RBAC = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: hl-ops-admin}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: hl-team-admin, namespace: hl-bad}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: devs}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: hl-secret-reader}
rules: [{apiGroups: [""], resources: [secrets], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: hl-read-secrets}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: hl-secret-reader}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: hl-wild, namespace: hl-bad}
rules: [{apiGroups: [""], resources: ["*"], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: hl-pod-maker}
rules: [{apiGroups: [""], resources: [pods], verbs: [create]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: hl-make-pods, namespace: hl-bad}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: hl-pod-maker}
subjects: [{kind: ServiceAccount, name: builder}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: hl-impersonator}
rules: [{apiGroups: [""], resources: [users], verbs: [impersonate]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: hl-impersonate}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: hl-impersonator}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: carol}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: hl-default-view, namespace: hl-bad}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{kind: ServiceAccount, name: default, namespace: hl-bad}]
"""
WORKLOADS = f"""
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: default-deny, namespace: hl-good}}
spec: {{podSelector: {{}}, policyTypes: [Ingress, Egress]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: hl-good}}
spec:
  nodeSelector: {NOWHERE}
  securityContext: {{runAsNonRoot: true, runAsUser: 1000, seccompProfile: {{type: RuntimeDefault}}}}
  containers:
  - name: app
    image: k8s.gcr.io/pause:3.2
    securityContext: {{allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: wild, namespace: hl-bad}}
spec:
  nodeSelector: {NOWHERE}
  serviceAccountName: builder
  hostPID: true
  hostIPC: true
  hostNetwork: true
  volumes: [{{name: etc, hostPath: {{path: /etc}}}}]
  initContainers:
  - {{name: setup, image: k8s.gcr.io/pause:3.2, securityContext: {{privileged: true}}}}
  containers:
  - name: app
    image: k8s.gcr.io/pause:3.2
    securityContext: {{privileged: true, capabilities: {{add: [NET_RAW, SYS_ADMIN]}}}}
    ports: [{{containerPort: 18080, hostPort: 18080}}]
    env: [{{name: DB_PASSWORD, valueFrom: {{secretKeyRef: {{name: db, key: password}}}}}}]
    envFrom: [{{secretRef: {{name: db}}}}]
    volumeMounts: [{{name: etc, mountPath: /host-etc, readOnly: true}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: plain, namespace: hl-bad}}
spec:
  nodeSelector: {NOWHERE}
  containers: [{{name: app, image: k8s.gcr.io/pause:3.2}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: hl-stray, namespace: default}}
data: {{a: b}}
"""
PSP = """
apiVersion: policy/v1beta1
kind: PodSecurityPolicy
metadata: {{name: hl-{name}}}
spec:
  privileged: {loose}
  hostPID: {loose}
  hostIPC: {loose}
  hostNetwork: {loose}
  allowPrivilegeEscalation: {loose}
  allowedCapabilities: {caps}
  requiredDropCapabilities: {drop}
  runAsUser: {{rule: {run_as}}}
  seLinux: {{rule: RunAsAny}}
  supplementalGroups: {{rule: RunAsAny}}
  fsGroup: {{rule: RunAsAny}}
  volumes: ['*']
"""
PERMISSIVE = PSP.format(name="permissive", loose="true", caps="['*']", drop="[]", run_as="RunAsAny")
RESTRICTED = PSP.format(name="restricted", loose="false", caps="[]", drop="[ALL]", run_as="MustRunAsNonRoot")
CLUSTER_OBJECTS = ("clusterrolebinding/hl-ops-admin", "clusterrolebinding/hl-read-secrets", "clusterrolebinding/hl-impersonate",
                   "clusterrole/hl-secret-reader", "clusterrole/hl-pod-maker", "clusterrole/hl-impersonator",
                   "podsecuritypolicy/hl-permissive", "podsecuritypolicy/hl-restricted", "configmap/hl-stray")


@pytest.fixture(scope="module")
def cp(k8s_control_plane):
    """The shared control plane, once every component runs its own manifest again (earlier
    tests may have left the controller manager or scheduler in crash-loop back-off)."""
    wait_control_plane(k8s_control_plane)
    return k8s_control_plane


@pytest.fixture(scope="module")
def objects(cp):
    """The test's objects in the real API server (removed afterwards)."""
    apply(cp, NAMESPACES)
    for ns in ("hl-good", "hl-bad", "hl-weak"):  # the controller manager makes each default account
        wait_for(f"default service account in {ns}", lambda ns=ns: cp.kubectl("get", "sa", "default", "-n", ns).returncode == 0)
    apply(cp, ACCOUNTS)
    for sa, ns in (("builder", "hl-bad"), ("default", "hl-bad")):  # 1.20 admits pods once the token exists
        wait_for(f"token of {ns}/{sa}", lambda sa=sa, ns=ns: cp.kubectl(
            "get", "sa", sa, "-n", ns, "-o", "jsonpath={.secrets[0].name}").stdout.strip())
    apply(cp, RBAC)
    apply(cp, WORKLOADS)
    apply(cp, PERMISSIVE)
    yield
    cp.kubectl("delete", "--ignore-not-found", "--wait=false", *CLUSTER_OBJECTS, "-n", "default", timeout=120)
    cp.kubectl("delete", "--ignore-not-found", "--wait=false", "namespace", "hl-good", "hl-bad", "hl-weak", timeout=120)


@pytest.fixture(scope="module")
def cp_config(cp, k8s_cluster):
    return node_config(cp, CONTROL_PLANE_GROUPS, k8s_cluster=k8s_cluster.id)


@pytest.fixture(scope="module")
def facts(objects, cp_config):
    """One batch of API reads, as the cluster's verify makes it."""
    found = gather(cp_config, CLUSTER_FACTS)
    assert found.round_trips == 2  # the layout (where admin.conf is), then every API read at once
    return found


def check(facts, config, key, **params):
    return judge(key, facts, config, **params)


def test_cluster_admin_bindings(facts, cp_config):
    bad = check(facts, cp_config, K20 + "5.1.1")
    assert bad.status == FAIL
    assert {"ClusterRoleBinding/hl-ops-admin -> User:alice", "RoleBinding hl-bad/hl-team-admin -> Group:devs"} <= set(bad.evidence)
    assert "created by Kubernetes itself" in bad.found  # the bootstrap cluster-admin binding: judged, no finding
    allowed = check(facts, cp_config, K20 + "5.1.1",
                    allowed_subjects=["Group:system:masters", "User:alice", "Group:dev*"])
    assert allowed.status == PASS


def test_access_to_secrets_pods_impersonation(facts, cp_config):
    secrets = check(facts, cp_config, K20 + "5.1.2")
    assert secrets.status == FAIL
    assert "ClusterRoleBinding/hl-read-secrets -> User:bob via ClusterRole/hl-secret-reader: get secrets, list secrets" in secrets.evidence
    assert ("ClusterRoleBinding/hl-ops-admin -> User:alice via ClusterRole/cluster-admin: get secrets, list secrets, "
            "watch secrets" in secrets.evidence)
    pods = check(facts, cp_config, K20 + "5.1.4")
    assert "RoleBinding hl-bad/hl-make-pods -> ServiceAccount:hl-bad/builder via ClusterRole/hl-pod-maker: create pods" in pods.evidence
    impersonate = check(facts, cp_config, K20 + "5.1.8")
    assert "ClusterRoleBinding/hl-impersonate -> User:carol via ClusterRole/hl-impersonator: impersonate users" in impersonate.evidence
    assert not [e for e in impersonate.evidence if "bob" in e]  # reading secrets is not impersonating
    exempt = ["Group:system:masters", "User:alice", "User:bob", "User:carol", "Group:devs", "ServiceAccount:hl-bad/*",
              "Group:system:nodes", "ServiceAccount:kube-system/*"]
    for key in ("5.1.2", "5.1.4", "5.1.8"):
        assert check(facts, cp_config, K20 + key, exempt_subjects=exempt).status == PASS, key
    for key in ("5.1.9", "5.1.10", "5.1.11", "5.1.12", "5.1.13"):  # 1.12's further sensitive permissions
        got = check(facts, cp_config, K12 + key)
        assert got.status == FAIL and any(e.startswith("ClusterRoleBinding/hl-ops-admin -> User:alice") for e in got.evidence), key


def test_wildcard_roles(facts, cp_config):
    bad = check(facts, cp_config, K20 + "5.1.3")
    assert bad.status == FAIL and "Role hl-bad/hl-wild: * in resources" in bad.evidence
    assert check(facts, cp_config, K20 + "5.1.3", exempt_roles=["hl-bad/hl-*"]).status == PASS
    with_builtin = check(facts, cp_config, K20 + "5.1.3", exempt_roles=["hl-bad/hl-*"], include_bootstrap=True)
    assert "ClusterRole/cluster-admin: * in apiGroups, resources, verbs" in with_builtin.evidence


def test_default_service_accounts_and_token_automount(facts, cp_config):
    accounts = check(facts, cp_config, K20 + "5.1.5")
    assert accounts.status == FAIL
    assert "ServiceAccount hl-bad/default: automountServiceAccountToken not set (mounts: true)" in accounts.evidence
    assert "RoleBinding hl-bad/hl-default-view -> ServiceAccount:hl-bad/default (roleRef ClusterRole/view)" in accounts.evidence
    assert not [e for e in accounts.evidence if "hl-good" in e]
    only_good = ["kube-system", "default", "kube-public", "kube-node-lease", "hl-bad", "hl-weak"]
    assert check(facts, cp_config, K20 + "5.1.5", exempt_namespaces=only_good).status == PASS
    mounts = check(facts, cp_config, K20 + "5.1.6")
    assert mounts.status == FAIL
    assert "Pod hl-bad/wild mounts the token of ServiceAccount builder (nothing turns it off)" in mounts.evidence
    assert not [e for e in mounts.evidence if "hl-good/web" in e]  # its service account says false
    assert check(facts, cp_config, K20 + "5.1.6", exempt_namespaces=only_good).status == PASS


POD_RULES = {  # 1.12 item -> a finding on the bad pods (hl-good/web breaks none of them)
    "5.2.2": "Pod hl-bad/wild container app: privileged: true",
    "5.2.3": "Pod hl-bad/wild: hostPID: true",
    "5.2.4": "Pod hl-bad/wild: hostIPC: true",
    "5.2.5": "Pod hl-bad/wild: hostNetwork: true",
    "5.2.6": "Pod hl-bad/plain container app: allowPrivilegeEscalation not false",
    "5.2.7": "Pod hl-bad/wild container app: neither runAsNonRoot: true nor a runAsUser above 0 (the image's user, possibly root)",
    "5.2.8": "Pod hl-bad/wild container app: adds NET_RAW",
    "5.2.9": "Pod hl-bad/wild container app: capabilities.drop lacks ALL",
    "5.2.11": "Pod hl-bad/wild volume etc: hostPath /etc",
    "5.2.12": "Pod hl-bad/wild container app: hostPort 18080",
    "5.6.2": "Pod hl-bad/plain container app: no seccompProfile (runs unconfined)",
    "5.6.3": "Pod hl-bad/plain: no securityContext on the pod or any container",
}


@pytest.mark.parametrize("item", sorted(POD_RULES))
def test_pod_spec_rules(facts, cp_config, item):
    bad = check(facts, cp_config, K12 + item)
    assert bad.status == FAIL and POD_RULES[item] in bad.evidence, bad.evidence
    assert not [e for e in bad.evidence if "hl-good" in e]
    good = check(facts, cp_config, K12 + item, exempt_namespaces=["kube-system", "hl-bad"])
    assert good.status == PASS and good.found == "no finding among 1 pods outside kube-system, hl-bad"


def test_init_containers_and_windows_rule(facts, cp_config):
    privileged = check(facts, cp_config, K12 + "5.2.2")
    assert "Pod hl-bad/wild init container setup: privileged: true" in privileged.evidence  # kube-bench reads spec.containers only
    assert check(facts, cp_config, K12 + "5.2.10").status == PASS  # the check itself; the engine SKIPs it on 1.20


def test_pod_security_policies(facts, cp_config, cp):
    only_permissive = check(facts, cp_config, K20 + "5.2.1")
    assert only_permissive.status == FAIL and only_permissive.found == "none of 1 policies forbids it"
    assert only_permissive.evidence == ["PodSecurityPolicy/hl-permissive: allows privileged"]
    apply(cp, RESTRICTED)
    both = gather(node_config(cp, CONTROL_PLANE_GROUPS), {"k8s_api_psp"})
    for item in ("5.2.1", "5.2.2", "5.2.3", "5.2.4", "5.2.5", "5.2.6", "5.2.7", "5.2.8", "5.2.9"):
        got = check(both, cp_config, K20 + item)
        assert got.status == PASS and got.found == "forbidden by hl-restricted", (item, got.evidence)
        assert any(e.startswith("PodSecurityPolicy/hl-permissive: allows") for e in got.evidence)


def test_pod_security_labels_network_policies_secret_env_default_namespace(facts, cp_config):
    labels = check(facts, cp_config, K12 + "5.2.1")  # min_version 1.23: the engine SKIPs it here; the check still reads labels
    assert labels.status == FAIL
    assert {"Namespace/hl-bad: no pod-security.kubernetes.io/enforce label",
            "Namespace/hl-weak: pod-security.kubernetes.io/enforce=privileged"} <= set(labels.evidence)
    assert not [e for e in labels.evidence if "hl-good" in e]
    assert check(facts, cp_config, K12 + "5.2.1", min_level="restricted",
                 exempt_namespaces=["kube-*", "default", "hl-bad", "hl-weak"]).status == PASS
    netpol = check(facts, cp_config, K20 + "5.3.2")
    assert "Namespace/hl-bad: no NetworkPolicy" in netpol.evidence and not [e for e in netpol.evidence if "hl-good" in e]
    assert check(facts, cp_config, K20 + "5.3.2", exempt_namespaces=["kube-*", "default", "hl-bad", "hl-weak"]).status == PASS
    env = check(facts, cp_config, K20 + "5.4.1")
    assert set(env.evidence) == {"Pod hl-bad/wild container app: env DB_PASSWORD from Secret db key password",
                                 "Pod hl-bad/wild container app: envFrom Secret db"}
    assert check(facts, cp_config, K20 + "5.4.1", exempt_namespaces=["kube-system", "hl-bad"]).status == PASS
    default = check(facts, cp_config, K20 + "5.7.4")
    assert default.status == FAIL and "ConfigMap/hl-stray in namespace default" in default.evidence
    allowed = find_allowed(K20 + "5.7.4") + [e.split(" in namespace")[0] for e in default.evidence]
    assert check(facts, cp_config, K20 + "5.7.4", allowed=allowed).status == PASS


def find_allowed(key: str) -> list[str]:
    from hardline.catalog import find_control

    return list(find_control(key).params["allowed"])


def test_nothing_to_judge_is_skip(facts, cp_config):
    every = ["*"]
    for key in ("5.1.6", "5.3.2", "5.4.1", "5.7.2"):
        got = check(facts, cp_config, K20 + key, exempt_namespaces=every)
        assert got.status == SKIP and got.found.startswith("nothing to judge"), key
