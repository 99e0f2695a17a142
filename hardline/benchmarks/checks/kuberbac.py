"""RBAC cluster kinds: rbac_role_binding, rbac_access, rbac_wildcard, service_account_token
(docs/kinds-kubernetes.md "Cluster kinds"). Evaluated once per cluster from the one batch of API
reads (hardline.benchmarks.gather.kubeapi); every finding names the object.

Subjects are written ``Kind:name`` (``User:alice``, ``Group:system:masters``) and
``ServiceAccount:namespace/name``; ``*`` in a pattern matches any characters. Objects Kubernetes
creates itself (label kubernetes.io/bootstrapping=rbac-defaults) are never findings unless the
control says ``include_bootstrap``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from hardline.benchmarks.gather.core import HostFacts
from hardline.results import FAIL, PASS, SKIP, Verdict

BOOTSTRAP = ("kubernetes.io/bootstrapping", "rbac-defaults")
MAX_FINDINGS = 300  # evidence lines per verdict; the count is always complete


@lru_cache(maxsize=512)
def _pattern(glob: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(re.escape(p) for p in glob.split("*")) + "$")


def matches(name: str, patterns: Iterable[str]) -> bool:
    return any(_pattern(str(p)).match(name) for p in patterns)


def objects(facts: HostFacts, kind: str) -> list[dict[str, Any]]:
    return facts.need("k8s_api")["objects"].get(kind, [])


def meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def ref(obj: dict[str, Any]) -> str:
    """``Kind/name`` or ``Kind namespace/name``: how findings name an object."""
    m = meta(obj)
    return f"{obj.get('kind')} {m['namespace']}/{m.get('name')}" if m.get("namespace") else f"{obj.get('kind')}/{m.get('name')}"


def bootstrap(obj: dict[str, Any]) -> bool:
    return (meta(obj).get("labels") or {}).get(BOOTSTRAP[0]) == BOOTSTRAP[1]


def subject_name(subject: dict[str, Any], binding: dict[str, Any]) -> str:
    if subject.get("kind") == "ServiceAccount":
        namespace = subject.get("namespace") or meta(binding).get("namespace") or "default"
        return f"ServiceAccount:{namespace}/{subject.get('name')}"
    return f"{subject.get('kind')}:{subject.get('name')}"


def bindings(facts: HostFacts) -> list[dict[str, Any]]:
    return objects(facts, "ClusterRoleBinding") + objects(facts, "RoleBinding")


def role_of(facts: HostFacts, binding: dict[str, Any]) -> dict[str, Any] | None:
    role = binding.get("roleRef") or {}
    if role.get("kind") == "ClusterRole":
        return next((r for r in objects(facts, "ClusterRole") if meta(r).get("name") == role.get("name")), None)
    namespace = meta(binding).get("namespace")
    return next((r for r in objects(facts, "Role") if meta(r).get("name") == role.get("name")
                 and meta(r).get("namespace") == namespace), None)


def verdict(findings: list[str], judged: int, what: str, expected: str, builtin: int = 0) -> Verdict:
    """FAIL naming every finding, PASS when none, SKIP when nothing was there to judge.
    ``builtin``: objects Kubernetes created itself, judged but never findings."""
    if not judged:
        return Verdict(SKIP, expected=expected, found=f"nothing to judge: no {what}")
    evidence = findings[:MAX_FINDINGS]
    if len(findings) > MAX_FINDINGS:
        evidence.append(f"... and {len(findings) - MAX_FINDINGS} more")
    found = f"{len(findings)} finding(s) among {judged} {what}" if findings else f"no finding among {judged} {what}"
    if builtin:
        found += f" ({builtin} created by Kubernetes itself, label {BOOTSTRAP[0]}={BOOTSTRAP[1]}, not findings)"
    return Verdict(FAIL if findings else PASS, expected=expected, found=found, evidence=evidence)


def check_rbac_role_binding(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    """Every binding of ClusterRole ``role`` names only allowed subjects."""
    role, allowed = params["role"], params["allowed_subjects"]
    judged, builtin, findings = 0, 0, []
    for binding in bindings(facts):
        target = binding.get("roleRef") or {}
        if target.get("kind") != "ClusterRole" or target.get("name") != role:
            continue
        judged += 1
        if bootstrap(binding):
            builtin += 1
            continue
        for subject in binding.get("subjects") or ():
            name = subject_name(subject, binding)
            if not matches(name, allowed):
                findings.append(f"{ref(binding)} -> {name}")
    return verdict(findings, judged, f"bindings of ClusterRole {role}", f"{role} bound only to {', '.join(allowed)}", builtin)


def grants(rule: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """"verb resource" pairs of ``want`` (api_groups, resources, verbs) that a role rule grants,
    named by the wanted resource even where the rule says ``*``."""
    groups, resources, verbs = (set(rule.get(k) or ()) for k in ("apiGroups", "resources", "verbs"))
    if not resources or not ("*" in groups or groups & set(want["api_groups"])):
        return []  # nonResourceURLs rules grant no resource
    hit_resources = sorted(r for r in want["resources"] if r in resources or "*" in resources)
    if "*" in want["verbs"]:
        hit_verbs = sorted(verbs)
    else:
        hit_verbs = sorted(v for v in want["verbs"] if v in verbs or "*" in verbs)
    return [f"{v} {r}" for r in hit_resources for v in hit_verbs]


def check_rbac_access(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    """No subject outside ``exempt_subjects`` is bound to a role granting one of the rules."""
    exempt, include = params["exempt_subjects"], bool(params.get("include_bootstrap"))
    judged, builtin, findings = 0, 0, []
    for binding in bindings(facts):
        judged += 1
        if bootstrap(binding) and not include:
            builtin += 1
            continue
        role = role_of(facts, binding)
        subjects = [subject_name(s, binding) for s in binding.get("subjects") or ()]
        if role is None:
            continue
        granted = sorted({g for rule in role.get("rules") or () for want in params["rules"] for g in grants(rule, want)})
        if not granted:
            continue
        for name in subjects:
            if not matches(name, exempt):
                findings.append(f"{ref(binding)} -> {name} via {ref(role)}: {', '.join(granted)}")
    wanted = "; ".join(f"{','.join(w['verbs'])} on {','.join(w['resources'])}" for w in params["rules"])
    return verdict(findings, judged, "bindings", f"only {', '.join(exempt) or 'no one'} may {wanted}", builtin)


def check_rbac_wildcard(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    """No Role or ClusterRole outside ``exempt_roles`` has ``*`` in apiGroups, resources or verbs."""
    exempt, include = params["exempt_roles"], bool(params.get("include_bootstrap"))
    judged, builtin, findings = 0, 0, []
    for role in objects(facts, "ClusterRole") + objects(facts, "Role"):
        m = meta(role)
        name = f"{m['namespace']}/{m.get('name')}" if m.get("namespace") else str(m.get("name"))
        if matches(name, exempt):
            continue
        judged += 1
        if bootstrap(role) and not include:
            builtin += 1
            continue
        fields = sorted({f for rule in role.get("rules") or () for f in ("apiGroups", "resources", "verbs")
                         if "*" in (rule.get(f) or ())})
        if fields:
            findings.append(f"{ref(role)}: * in {', '.join(fields)}")
    return verdict(findings, judged, "roles", "no * in apiGroups, resources or verbs of custom roles", builtin)


def check_service_account_token(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    """Service accounts named ``name`` mount their token only as ``automount`` says, and (with
    ``forbid_bindings``) are no binding's subject."""
    name, exempt = params["name"], params["exempt_namespaces"]
    accounts = [sa for sa in objects(facts, "ServiceAccount")
                if meta(sa).get("name") == name and not matches(str(meta(sa).get("namespace")), exempt)]
    findings = []
    for sa in accounts:
        field = sa.get("automountServiceAccountToken")
        effective = True if field is None else bool(field)
        if effective != bool(params["automount"]):
            shown = "not set (mounts: true)" if field is None else str(field).lower()
            findings.append(f"{ref(sa)}: automountServiceAccountToken {shown}")
    if params["forbid_bindings"]:
        wanted = {f"ServiceAccount:{meta(sa).get('namespace')}/{name}" for sa in accounts}
        for binding in [b for b in bindings(facts) if not bootstrap(b)]:
            for subject in binding.get("subjects") or ():
                if subject_name(subject, binding) in wanted:
                    findings.append(f"{ref(binding)} -> {subject_name(subject, binding)} (roleRef "
                                    f"{(binding.get('roleRef') or {}).get('kind')}/{(binding.get('roleRef') or {}).get('name')})")
    automount = "false" if not params["automount"] else "true"
    return verdict(findings, len(accounts), f"{name} service accounts outside {', '.join(exempt) or 'no namespace'}",
                   f"automountServiceAccountToken {automount}" + (", bound to no role" if params["forbid_bindings"] else ""))
