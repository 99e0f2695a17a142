"""Kubernetes inventory values that cannot work, refused with the file, host and key (called by
hardline/inventory.py for hosts with a Kubernetes role, before any deploy or check)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from hardline.catalog import available, load_catalog

K8S_ROLES = {"k8s_control_plane", "k8s_etcd", "k8s_worker"}


@functools.cache
def manual_slugs() -> dict[str, set[str]]:
    """Slug -> the CIS Kubernetes versions in which it is a manual node item with a kind."""
    found: dict[str, set[str]] = {}
    for version in available().get("cis-kubernetes", ()):
        for c in load_catalog("cis-kubernetes", version).controls:
            if not c.automated and c.kind and c.scope == "node":
                found.setdefault(c.slug, set()).add(version)
    return found


def k8s_contradictions(data: dict[str, Any], roles: tuple[str, ...], add: Callable[[str, str], None]) -> None:
    if not set(roles) & K8S_ROLES:
        return
    known = manual_slugs()
    for slug in data["k8s_remediate_manual"]:
        if slug not in known:
            add("k8s_remediate_manual", f"{slug!r} is not a manual CIS Kubernetes node item (see `hardline controls`; "
                "automated items are always remediated, cluster policies never)")
    backup = data["k8s_backup_dir"]
    if not backup.startswith("/") or backup.rstrip("/").startswith("/etc/kubernetes/manifests"):
        add("k8s_backup_dir", f"{backup!r} must be an absolute path outside the manifests directory (the kubelet "
            "would run a copy kept there as a pod)")
    if not 30 <= data["k8s_restart_timeout"] <= 3600:
        add("k8s_restart_timeout", f"{data['k8s_restart_timeout']} must be between 30 and 3600 seconds")
