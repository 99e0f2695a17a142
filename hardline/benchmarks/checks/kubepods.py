"""Workload cluster kinds: pod_token_automount, pod_spec, psp_restricts, pod_security_admission,
network_policy, secret_env, default_namespace (docs/kinds-kubernetes.md "Cluster kinds").
One finding per pod/container (or namespace, policy, object), each naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from hardline.benchmarks.checks.kuberbac import matches, meta, objects, verdict
from hardline.benchmarks.gather.core import HostFacts
from hardline.results import FAIL, PASS, SKIP, Verdict

LEVELS = {"privileged": 0, "baseline": 1, "restricted": 2}
ENFORCE = "pod-security.kubernetes.io/enforce"
SECCOMP_POD = "seccomp.security.alpha.kubernetes.io/pod"
SECCOMP_CONTAINER = "container.seccomp.security.alpha.kubernetes.io/"


def pods(facts: HostFacts, exempt: list[str]) -> list[dict[str, Any]]:
    return [p for p in objects(facts, "Pod") if not matches(str(meta(p).get("namespace")), exempt)]


def containers(pod: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(label, container) of every container, init and ephemeral container."""
    spec = pod.get("spec") or {}
    for field, label in (("initContainers", "init container"), ("containers", "container"),
                         ("ephemeralContainers", "ephemeral container")):
        for c in spec.get(field) or ():
            yield f"{label} {c.get('name')}", c


def _sc(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("securityContext") or {}


def _caps(c: dict[str, Any]) -> tuple[set[str], set[str]]:
    caps = _sc(c).get("capabilities") or {}
    return set(caps.get("add") or ()), set(caps.get("drop") or ())


def _runs_as_root(pod: dict[str, Any], c: dict[str, Any]) -> str:
    psc, csc = _sc(pod.get("spec") or {}), _sc(c)
    user = csc.get("runAsUser", psc.get("runAsUser"))
    non_root = csc.get("runAsNonRoot", psc.get("runAsNonRoot"))
    if user == 0:
        return "runAsUser 0"
    if non_root is True or (isinstance(user, int) and user > 0):
        return ""
    return "neither runAsNonRoot: true nor a runAsUser above 0 (the image's user, possibly root)"


def _seccomp(pod: dict[str, Any], c: dict[str, Any]) -> str:
    confined = ("RuntimeDefault", "Localhost")
    own = (_sc(c).get("seccompProfile") or {}).get("type")
    pod_level = (_sc(pod.get("spec") or {}).get("seccompProfile") or {}).get("type")
    annotations = meta(pod).get("annotations") or {}
    old = annotations.get(SECCOMP_CONTAINER + str(c.get("name"))) or annotations.get(SECCOMP_POD)
    effective = own or pod_level
    if effective in confined:
        return ""
    if effective is None and old and old != "unconfined":
        return ""  # the pre-1.19 annotation (runtime/default, docker/default, localhost/...)
    return f"seccompProfile {effective}" if effective else "no seccompProfile (runs unconfined)"


# rule -> (pod-level test, container-level test); each returns a reason or ""
CONTAINER_RULES: dict[str, Callable[[dict[str, Any], dict[str, Any]], str]] = {
    "privileged": lambda p, c: "privileged: true" if _sc(c).get("privileged") is True else "",
    "allow_privilege_escalation": lambda p, c: "" if _sc(c).get("allowPrivilegeEscalation") is False
    else "allowPrivilegeEscalation not false",
    "run_as_root": _runs_as_root,
    "net_raw": lambda p, c: ("adds " + ",".join(sorted(_caps(c)[0] & {"NET_RAW", "ALL"})) if _caps(c)[0] & {"NET_RAW", "ALL"}
                             else "" if _caps(c)[1] & {"NET_RAW", "ALL"} else "NET_RAW not dropped"),
    "added_capabilities": lambda p, c: "adds " + ",".join(sorted(_caps(c)[0])) if _caps(c)[0] else "",
    "capabilities_not_dropped": lambda p, c: "" if "ALL" in _caps(c)[1] else "capabilities.drop lacks ALL",
    "windows_host_process": lambda p, c: "windowsOptions.hostProcess: true"
    if (_sc(c).get("windowsOptions") or _sc(p.get("spec") or {}).get("windowsOptions") or {}).get("hostProcess") is True else "",
    "host_ports": lambda p, c: ", ".join(f"hostPort {port['hostPort']}" for port in c.get("ports") or () if port.get("hostPort")),
    "seccomp_unconfined": _seccomp,
}
POD_FIELDS = {"host_pid": "hostPID", "host_ipc": "hostIPC", "host_network": "hostNetwork"}


def _pod_findings(rule: str, pod: dict[str, Any]) -> list[str]:
    spec = pod.get("spec") or {}
    if rule in POD_FIELDS:
        return [f"Pod {meta(pod).get('namespace')}/{meta(pod).get('name')}: {POD_FIELDS[rule]}: true"] \
            if spec.get(POD_FIELDS[rule]) is True else []
    if rule == "host_path_volumes":
        return [f"Pod {meta(pod).get('namespace')}/{meta(pod).get('name')} volume {v.get('name')}: hostPath "
                f"{(v.get('hostPath') or {}).get('path')}" for v in spec.get("volumes") or () if "hostPath" in v]
    if rule == "no_security_context":
        if _sc(spec) or any(_sc(c) for _, c in containers(pod)):
            return []
        return [f"Pod {meta(pod).get('namespace')}/{meta(pod).get('name')}: no securityContext on the pod or any container"]
    test = CONTAINER_RULES[rule]
    found = []
    for label, c in containers(pod):
        why = test(pod, c)
        if why:
            found.append(f"Pod {meta(pod).get('namespace')}/{meta(pod).get('name')} {label}: {why}")
    return found


def check_pod_spec(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    """No pod outside the exempt namespaces breaks ``rule``."""
    judged = pods(facts, params["exempt_namespaces"])
    findings = [f for pod in judged for f in _pod_findings(params["rule"], pod)]
    return verdict(findings, len(judged), f"pods outside {', '.join(params['exempt_namespaces']) or 'no namespace'}",
                   f"no pod breaks {params['rule']}")


def check_pod_token_automount(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    """Pods whose token is mounted: the pod's field, else its service account's, else true."""
    accounts = {(meta(sa).get("namespace"), meta(sa).get("name")): sa for sa in objects(facts, "ServiceAccount")}
    judged = pods(facts, params["exempt_namespaces"])
    findings = []
    for pod in judged:
        spec, namespace = pod.get("spec") or {}, meta(pod).get("namespace")
        account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        if spec.get("automountServiceAccountToken") is not None:
            mounts, why = bool(spec["automountServiceAccountToken"]), "the pod's automountServiceAccountToken"
        else:
            field = (accounts.get((namespace, account)) or {}).get("automountServiceAccountToken")
            mounts = True if field is None else bool(field)
            why = f"ServiceAccount {account}'s automountServiceAccountToken" if field is not None else "nothing turns it off"
        if mounts:
            findings.append(f"Pod {namespace}/{meta(pod).get('name')} mounts the token of ServiceAccount {account} ({why})")
    return verdict(findings, len(judged), "pods outside " + (", ".join(params["exempt_namespaces"]) or "no namespace"),
                   "pods mount a service account token only when they need it")


def _psp_forbids(rule: str, spec: dict[str, Any]) -> bool:
    drop = set(spec.get("requiredDropCapabilities") or ())
    if rule == "privileged":
        return spec.get("privileged") is not True
    if rule in POD_FIELDS:
        return spec.get(POD_FIELDS[rule]) is not True
    if rule == "allow_privilege_escalation":
        return spec.get("allowPrivilegeEscalation") is False
    if rule == "run_as_root":
        run_as = spec.get("runAsUser") or {}
        if run_as.get("rule") == "MustRunAsNonRoot":
            return True
        ranges = run_as.get("ranges") or []
        return run_as.get("rule") == "MustRunAs" and bool(ranges) and all((r.get("min") or 0) > 0 for r in ranges)
    if rule == "net_raw":
        return bool(drop & {"NET_RAW", "ALL"})
    if rule == "added_capabilities":
        return not spec.get("allowedCapabilities") and not spec.get("defaultAddCapabilities")
    if rule == "capabilities_not_dropped":
        return "ALL" in drop
    raise ValueError(f"psp_restricts has no rule {rule!r}")


def check_psp_restricts(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    """At least one PodSecurityPolicy forbids ``rule``; the evidence gives each policy's stance."""
    policies = facts.need("k8s_api_psp")
    expected = f"a PodSecurityPolicy forbids {params['rule']}"
    if policies is None:
        return Verdict(SKIP, expected=expected, found="the API server serves no PodSecurityPolicy "
                       "(policy/v1beta1, removed in Kubernetes 1.25): see Pod Security admission")
    if not policies:
        return Verdict(FAIL, expected=expected, found="no PodSecurityPolicy exists")
    stance = {str(meta(p).get("name")): _psp_forbids(params["rule"], p.get("spec") or {}) for p in policies}
    evidence = [f"PodSecurityPolicy/{name}: {'forbids' if ok else 'allows'} {params['rule']}"
                for name, ok in sorted(stance.items())]
    forbidding = sorted(n for n, ok in stance.items() if ok)
    found = f"forbidden by {', '.join(forbidding)}" if forbidding else f"none of {len(stance)} policies forbids it"
    return Verdict(PASS if forbidding else FAIL, expected=expected, found=found, evidence=evidence)


def namespaces(facts: HostFacts, exempt: list[str]) -> list[dict[str, Any]]:
    return [n for n in objects(facts, "Namespace") if not matches(str(meta(n).get("name")), exempt)]


def check_pod_security_admission(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    """Every namespace enforces Pod Security at ``min_level`` or stricter."""
    minimum = str(params["min_level"])
    if minimum not in LEVELS:
        return Verdict(FAIL, found=f"k8s_pod_security_level {minimum!r} is not one of {', '.join(LEVELS)}")
    judged = namespaces(facts, params["exempt_namespaces"])
    findings = []
    for ns in judged:
        level = (meta(ns).get("labels") or {}).get(ENFORCE)
        if level is None:
            findings.append(f"Namespace/{meta(ns).get('name')}: no {ENFORCE} label")
        elif LEVELS.get(level, -1) < LEVELS[minimum]:
            findings.append(f"Namespace/{meta(ns).get('name')}: {ENFORCE}={level}")
    return verdict(findings, len(judged), "namespaces outside " + (", ".join(params["exempt_namespaces"]) or "no namespace"),
                   f"{ENFORCE} {minimum} or stricter")


def check_network_policy(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    """Every namespace has at least one NetworkPolicy."""
    covered = {meta(p).get("namespace") for p in objects(facts, "NetworkPolicy")}
    judged = namespaces(facts, params["exempt_namespaces"])
    findings = [f"Namespace/{meta(ns).get('name')}: no NetworkPolicy" for ns in judged if meta(ns).get("name") not in covered]
    return verdict(findings, len(judged), "namespaces outside " + (", ".join(params["exempt_namespaces"]) or "no namespace"),
                   "a NetworkPolicy in every namespace")


def check_secret_env(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    """No container takes a secret into its environment."""
    judged = pods(facts, params["exempt_namespaces"])
    findings = []
    for pod in judged:
        for label, c in containers(pod):
            where = f"Pod {meta(pod).get('namespace')}/{meta(pod).get('name')} {label}"
            for env in c.get("env") or ():
                secret = ((env.get("valueFrom") or {}).get("secretKeyRef") or {})
                if secret:
                    findings.append(f"{where}: env {env.get('name')} from Secret {secret.get('name')} key {secret.get('key')}")
            for source in c.get("envFrom") or ():
                if source.get("secretRef"):
                    findings.append(f"{where}: envFrom Secret {source['secretRef'].get('name')}")
    return verdict(findings, len(judged), "pods outside " + (", ".join(params["exempt_namespaces"]) or "no namespace"),
                   "secrets mounted as files, not environment variables")


def check_default_namespace(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    """Nothing in the default namespace but what Kubernetes puts there (``allowed``)."""
    found = facts.need("k8s_api_default")["objects"]
    findings = [f"{name} in namespace default" for name in found if not matches(name, params["allowed"])]
    return verdict(findings, len(found), "objects in namespace default", "only " + ", ".join(params["allowed"]))

