"""Verification side: one function per control kind, and the facts each kind needs.

A check reads gathered facts (never the host directly, never hardline.deploys) and the control's
params resolved against the host's inventory data, and returns a Verdict (or one per subject). A
fact that could not be gathered raises FactError, which the engine turns into ERROR.

``KINDS[kind].needs(params)`` names the facts (hardline.benchmarks.gather) the check reads, so a
host gathers only what its selected controls need; ``paths(params)`` names files to stat.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hardline.benchmarks.checks import (
    audit,
    containers,
    daemon,
    files,
    images,
    kernel,
    kubeflags,
    kubelet,
    kubepods,
    kuberbac,
    platform,
    swarm,
    users,
)

EFFECTIVE = frozenset({"dockerd", "info", "daemon_json"})  # the running daemon's effective config
RUNNING = frozenset({"containers", "container_procs"})
# facts that resolve each kind of file target (hardline.benchmarks.checks.targets)
TARGET_NEEDS = {
    "path": frozenset({"paths"}),
    "binary": frozenset({"binaries", "docker_paths"}),
    "unit": frozenset({"units", "docker_paths"}),
    "docker_root": frozenset({"docker_root", "docker_paths"}),
    "daemon_config": EFFECTIVE | {"docker_paths"},
    "docker_socket": EFFECTIVE | {"docker_paths"},
    "tls": EFFECTIVE | {"tls_stats"},
    "glob": frozenset({"registry_certs", "tls_stats"}),
    "k8s_file": frozenset({"k8s_files"}),  # the layout's files, resolved from the running components
    "k8s_dir": frozenset({"k8s_files"}),
    "k8s_glob": frozenset({"k8s_files"}),
}
K8S_PROCS = frozenset({"k8s_procs"})
K8S_API = frozenset({"k8s_api"})


@dataclass(frozen=True)
class Kind:
    check: Callable[..., Any]
    needs: Callable[[dict[str, Any]], frozenset[str]]
    paths: Callable[[dict[str, Any]], list[str]] = lambda params: []


def _fixed(*names: str | frozenset[str]) -> Callable[[dict[str, Any]], frozenset[str]]:
    wanted = frozenset().union(*({n} if isinstance(n, str) else n for n in names))
    return lambda params: wanted


def _target(*extra: str) -> Callable[[dict[str, Any]], frozenset[str]]:
    def needs(params: dict[str, Any]) -> frozenset[str]:
        kinds = set(params["target"]) & set(TARGET_NEEDS)
        if len(kinds) != 1:  # a target this hardline cannot resolve: the check reports ERROR saying so
            return frozenset(extra)
        return TARGET_NEEDS[kinds.pop()] | set(extra)
    return needs


def _by_aspect(common: frozenset[str], **aspects: frozenset[str]) -> Callable[[dict[str, Any]], frozenset[str]]:
    """Needs of a kind whose controls each judge one aspect (params "aspect")."""
    return lambda params: common | aspects.get(params["aspect"], frozenset())


def _process_flag_needs(params: dict[str, Any]) -> frozenset[str]:
    """Flags of a process; etcd's may come from its config file; path values are stat'ed."""
    extra = {"k8s_configs"} if params["component"] == "etcd" else set()
    if params.get("path_exists"):
        extra.add("k8s_files")
    return K8S_PROCS | extra


def _target_paths(params: dict[str, Any]) -> list[str]:
    return [str(params["target"]["path"])] if "path" in params.get("target", {}) else []


KINDS: dict[str, Kind] = {
    "daemon_option": Kind(daemon.check_daemon_option, _fixed(EFFECTIVE, "bridge")),
    "daemon_tls": Kind(daemon.check_daemon_tls, _fixed(EFFECTIVE)),
    "file_owner": Kind(files.check_file_owner, _target(), _target_paths),
    "file_mode": Kind(files.check_file_mode, _target(), _target_paths),
    "separate_mount": Kind(files.check_separate_mount, _target("mounts"), _target_paths),
    "audit_watch": Kind(audit.check_audit_watch, _target("audit_rules", "audit_files"), _target_paths),
    "group_members": Kind(users.check_group_members, _fixed("docker_group", "passwd")),
    "sysctl": Kind(kernel.check_sysctl, _fixed("sysctl_runtime", "sysctl_files")),
    "kernel_module_disabled": Kind(platform.check_kernel_module_disabled, _fixed("modprobe", "proc_modules",
                                                                                  "modprobe_config")),
    "boot_params": Kind(platform.check_boot_params, _fixed("cmdline", "grub", "lsm")),
    "apparmor": Kind(platform.check_apparmor, _by_aspect(frozenset({"lsm"}), profiles=frozenset(
        {"apparmor_profiles", "apparmor_files"}), containers=RUNNING | {"info"})),
    "selinux": Kind(platform.check_selinux, _by_aspect(frozenset({"lsm"}), daemon=EFFECTIVE,
                                                       booleans=frozenset({"selinux_booleans"}))),
    "cgroup_version": Kind(platform.check_cgroup_version, _fixed("cgroup_fs")),
    "engine_limits": Kind(platform.check_engine_limits, _fixed("engine_units")),
    "packages_absent": Kind(platform.check_packages_absent, _fixed("packages")),
    "services_masked": Kind(platform.check_services_masked, _fixed("services")),
    "audit_rules": Kind(platform.check_audit_rules, _fixed("audit_rules", "audit_files", "audit_watch_paths")),
    "audit_immutable": Kind(platform.check_audit_immutable, _fixed("audit_status", "audit_files")),
    "container_setting": Kind(containers.check_container_setting, _fixed(RUNNING)),
    "container_rule": Kind(containers.check_container_rule, _fixed(RUNNING, EFFECTIVE)),
    "container_info": Kind(containers.check_container_info, _fixed(RUNNING)),
    "exec_audit": Kind(containers.check_exec_audit, _fixed("exec_audit", "audit_rules", "docker_cli")),
    "image_healthcheck": Kind(images.check_image_healthcheck, _fixed("images")),
    "content_trust": Kind(images.check_content_trust, _fixed("content_trust")),
    "sprawl": Kind(images.check_sprawl, _fixed("images", "containers")),
    "swarm_mode": Kind(swarm.check_swarm_mode, _fixed("info")),
    "swarm": Kind(swarm.check_swarm, _fixed("info", "swarm", "overlay_networks", "dockerd")),
    # CIS Kubernetes node kinds (docs/kinds-kubernetes.md)
    "process_flag": Kind(kubeflags.check_process_flag, _process_flag_needs),
    "admission_plugin": Kind(kubeflags.check_admission_plugin, _fixed(K8S_PROCS)),
    "encryption_config": Kind(kubeflags.check_encryption_config, _fixed(K8S_PROCS, "k8s_encryption")),
    "kubelet_setting": Kind(kubelet.check_kubelet_setting, lambda p: K8S_PROCS | {"k8s_configs"} | (
        {"k8s_files"} if p.get("path_exists") else set())),
    "proxy_setting": Kind(kubelet.check_proxy_setting, _fixed(K8S_PROCS, "k8s_configs")),
    # CIS Kubernetes cluster kinds: one batch of API reads on the cluster's first control plane host
    "rbac_role_binding": Kind(kuberbac.check_rbac_role_binding, _fixed(K8S_API)),
    "rbac_access": Kind(kuberbac.check_rbac_access, _fixed(K8S_API)),
    "rbac_wildcard": Kind(kuberbac.check_rbac_wildcard, _fixed(K8S_API)),
    "service_account_token": Kind(kuberbac.check_service_account_token, _fixed(K8S_API)),
    "pod_token_automount": Kind(kubepods.check_pod_token_automount, _fixed(K8S_API)),
    "pod_spec": Kind(kubepods.check_pod_spec, _fixed(K8S_API)),
    "psp_restricts": Kind(kubepods.check_psp_restricts, _fixed("k8s_api_psp")),
    "pod_security_admission": Kind(kubepods.check_pod_security_admission, _fixed(K8S_API)),
    "network_policy": Kind(kubepods.check_network_policy, _fixed(K8S_API)),
    "secret_env": Kind(kubepods.check_secret_env, _fixed(K8S_API)),
    "default_namespace": Kind(kubepods.check_default_namespace, _fixed("k8s_api_default")),
}
CHECKS = {name: kind.check for name, kind in KINDS.items()}
# Kinds of manual items: they report what an auditor needs (counts, listings) as MANUAL, never PASS.
INFO_KINDS = {"container_info", "sprawl"}
