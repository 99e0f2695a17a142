"""Verification side: one function per control kind, registered in CHECKS.

A check reads gathered facts (never the host directly, never deploys/) and the control's params
resolved against the host's inventory data, and returns a Verdict. A fact that could not be
gathered raises FactError, which the engine turns into ERROR.
"""

from hardline.benchmarks.checks import audit, containers, daemon, files, images, kernel, platform, swarm, users

CHECKS = {
    "daemon_option": daemon.check_daemon_option,
    "daemon_tls": daemon.check_daemon_tls,
    "file_owner": files.check_file_owner,
    "file_mode": files.check_file_mode,
    "separate_mount": files.check_separate_mount,
    "audit_watch": audit.check_audit_watch,
    "group_members": users.check_group_members,
    "sysctl": kernel.check_sysctl,
    "kernel_module_disabled": platform.check_kernel_module_disabled,
    "boot_params": platform.check_boot_params,
    "apparmor": platform.check_apparmor,
    "selinux": platform.check_selinux,
    "cgroup_version": platform.check_cgroup_version,
    "engine_limits": platform.check_engine_limits,
    "packages_absent": platform.check_packages_absent,
    "services_masked": platform.check_services_masked,
    "audit_rules": platform.check_audit_rules,
    "audit_immutable": platform.check_audit_immutable,
    "container_setting": containers.check_container_setting,
    "container_rule": containers.check_container_rule,
    "container_info": containers.check_container_info,
    "exec_audit": containers.check_exec_audit,
    "image_healthcheck": images.check_image_healthcheck,
    "content_trust": images.check_content_trust,
    "sprawl": images.check_sprawl,
    "swarm_mode": swarm.check_swarm_mode,
    "swarm": swarm.check_swarm,
}
# Kinds of manual items: they report what an auditor needs (counts, listings) as MANUAL, never PASS.
INFO_KINDS = {"container_info", "sprawl"}
