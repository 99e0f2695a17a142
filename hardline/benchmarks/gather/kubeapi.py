"""Cluster facts: one batch of API reads through the cluster's admin kubeconfig, made on the
control-plane host that evaluates the cluster's policy controls (hardline.benchmarks.engine
cluster_duties), parsed once and shared by every cluster control.

* ``k8s_api``: ``kubectl get namespaces,pods,serviceaccounts,clusterroles,clusterrolebindings,
  roles,rolebindings,networkpolicies -A -o json``: one call, one List.
* ``k8s_api_default``: the names (``-o name``: no secret data leaves the host) of the objects in
  the ``default`` namespace.
* ``k8s_api_psp``: PodSecurityPolicies (policy/v1beta1), or None on a server that no longer
  serves them (Kubernetes 1.25 and later).

kubectl runs on that host (from PATH, rke2's bin directory, or ``k3s kubectl``) with the
kubeconfig ``k8s_api_kubeconfig`` names, else the layout's ``admin_kubeconfig``: credentials
never leave the host.
"""

from __future__ import annotations

import json
from typing import Any

from hardline.benchmarks.gather.core import Fact, HostFacts, section, shell

OBJECTS = "namespaces,pods,serviceaccounts,clusterroles,clusterrolebindings,roles,rolebindings,networkpolicies"
DEFAULT_NS = ("pods,services,endpoints,endpointslices,configmaps,secrets,serviceaccounts,deployments,daemonsets,"
              "statefulsets,replicasets,jobs,cronjobs")
KUBECTL = r"""
mode=$1; timeout=$2; shift 2
if command -v kubectl >/dev/null 2>&1; then k=kubectl
elif [ -x /var/lib/rancher/rke2/bin/kubectl ]; then k=/var/lib/rancher/rke2/bin/kubectl
elif command -v k3s >/dev/null 2>&1; then k="k3s kubectl"
else echo "kubectl not found on this host (PATH, /var/lib/rancher/rke2/bin, k3s kubectl)" >&2; exit 127; fi
conf=; for c in "$@"; do [ -r "$c" ] && { conf=$c; break; }; done
[ -n "$conf" ] || { echo "no readable admin kubeconfig (tried: $*); set k8s_api_kubeconfig" >&2; exit 1; }
echo "$conf"
case $mode in
  objects) exec $k --kubeconfig="$conf" --request-timeout="$timeout" get "$OBJECTS" -A -o json;;
  default) exec $k --kubeconfig="$conf" --request-timeout="$timeout" get "$DEFAULT_NS" -n default -o name;;
  psp) exec $k --kubeconfig="$conf" --request-timeout="$timeout" get podsecuritypolicies.policy -o json;;
esac
"""
# `kubectl get -o name` prints resource[.group]/name: the Kind each resource is
KINDS = {"pod": "Pod", "service": "Service", "endpoints": "Endpoints", "endpointslice": "EndpointSlice",
         "configmap": "ConfigMap", "secret": "Secret", "serviceaccount": "ServiceAccount", "deployment": "Deployment",
         "daemonset": "DaemonSet", "statefulset": "StatefulSet", "replicaset": "ReplicaSet", "job": "Job",
         "cronjob": "CronJob"}
NOT_SERVED = ("doesn't have a resource type", "the server could not find the requested resource")


def kubeconfigs(data: dict[str, Any], facts: HostFacts) -> list[str]:
    """Where the admin kubeconfig may be: inventory's k8s_api_kubeconfig, else the layout's."""
    if data.get("k8s_api_kubeconfig"):
        return [str(data["k8s_api_kubeconfig"])]
    spec = (facts.values.get("k8s_layout") or {}).get("files", {}).get("admin_kubeconfig") or {}
    path = spec.get("path")
    return [str(p) for p in path] if isinstance(path, list) else [str(path)] if path else []


def _lines(mode: str):
    def lines(data: dict[str, Any], facts: HostFacts) -> list[str]:
        if "k8s_layout" in facts.errors and not data.get("k8s_api_kubeconfig"):
            return []
        timeout = f"{max(5, int(data.get('hardline_command_timeout') or 60) - 5)}s"
        script = KUBECTL.replace('"$OBJECTS"', OBJECTS).replace('"$DEFAULT_NS"', DEFAULT_NS)
        return [shell(f"k8s_api_{mode}", script, mode, timeout, *kubeconfigs(data, facts))]
    return lines


def _split(facts: HostFacts, mode: str, fact: str, allow_rc: tuple[int, ...] = (0,)) -> tuple[str, str] | None:
    if "k8s_layout" in facts.errors and f"k8s_api_{mode}" not in facts.sections:
        facts.errors[fact] = facts.errors["k8s_layout"]
        return None
    out = section(facts, f"k8s_api_{mode}", allow_rc=allow_rc, fact=fact)
    if out is None:
        return None
    conf, _, body = out.partition("\n")
    return conf, body


def _parse_objects(facts: HostFacts, data: dict[str, Any]) -> None:
    got = _split(facts, "objects", "k8s_api")
    if got is None:
        return
    conf, body = got
    try:
        items = json.loads(body).get("items") or []
    except (ValueError, AttributeError):
        facts.errors["k8s_api"] = f"kubectl get {OBJECTS} printed no JSON list: {body[:200]}"
        return
    objects: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        objects.setdefault(item.get("kind", "?"), []).append(item)
    facts.values["k8s_api"] = {"kubeconfig": conf, "objects": objects}


def _parse_default(facts: HostFacts, data: dict[str, Any]) -> None:
    got = _split(facts, "default", "k8s_api_default")
    if got is None:
        return
    conf, body = got
    names = []
    for line in body.splitlines():
        resource, _, name = line.strip().partition("/")
        if name:
            names.append(f"{KINDS.get(resource.split('.')[0], resource)}/{name}")
    facts.values["k8s_api_default"] = {"kubeconfig": conf, "objects": sorted(names)}


def _parse_psp(facts: HostFacts, data: dict[str, Any]) -> None:
    rc, _out, err = facts.sections.get("k8s_api_psp", (127, "", "section missing from gather output"))
    if rc != 0 and any(s in err for s in NOT_SERVED):
        facts.values["k8s_api_psp"] = None
        return
    got = _split(facts, "psp", "k8s_api_psp")
    if got is None:
        return
    try:
        facts.values["k8s_api_psp"] = json.loads(got[1]).get("items") or []
    except (ValueError, AttributeError):
        facts.errors["k8s_api_psp"] = f"kubectl get podsecuritypolicies printed no JSON list: {got[1][:200]}"


FACTS = [
    Fact("k8s_api", _lines("objects"), _parse_objects, round=2, requires=("k8s_layout",)),
    Fact("k8s_api_default", _lines("default"), _parse_default, round=2, requires=("k8s_layout",)),
    Fact("k8s_api_psp", _lines("psp"), _parse_psp, round=2, requires=("k8s_layout",)),
]
