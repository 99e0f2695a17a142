"""Docker and platform inventory values that contradict each other, the benchmark or the host's
safety, refused with the file, host and key (called by hardline/inventory.py before any deploy or
check; the Kubernetes ones are in hardline/inventory_k8s.py). ``add(key, message)`` records one."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from hardline.catalog import load_catalog

# Options each logging driver accepts (dockerd rejects others at start-up).
COMMON_LOG_OPTS = {"tag", "labels", "labels-regex", "env", "env-regex", "mode", "max-buffer-size"}
LOG_DRIVER_OPTS: dict[str, set[str]] = {
    "json-file": {"max-size", "max-file", "compress"},
    "local": {"max-size", "max-file", "compress"},
    "journald": set(),
    "syslog": {"syslog-address", "syslog-facility", "syslog-tls-ca-cert", "syslog-tls-cert",
               "syslog-tls-key", "syslog-tls-skip-verify", "syslog-format"},
    "fluentd": {"fluentd-address", "fluentd-async", "fluentd-buffer-limit", "fluentd-retry-wait",
                "fluentd-max-retries", "fluentd-sub-second-precision", "fluentd-request-ack"},
    "gelf": {"gelf-address", "gelf-compression-type", "gelf-compression-level",
             "gelf-tcp-max-reconnect", "gelf-tcp-reconnect-delay"},
    "awslogs": {"awslogs-region", "awslogs-group", "awslogs-stream", "awslogs-create-group",
                "awslogs-datetime-format", "awslogs-multiline-pattern", "awslogs-credentials-endpoint"},
    "splunk": {"splunk-token", "splunk-url", "splunk-source", "splunk-sourcetype", "splunk-index",
               "splunk-capath", "splunk-caname", "splunk-insecureskipverify", "splunk-format",
               "splunk-verify-connection", "splunk-gzip", "splunk-gzip-level"},
    "none": set(),
}
# ausearch -ts keywords (dates would depend on the host's locale)
AUSEARCH_STARTS = ("", "recent", "this-hour", "boot", "today", "yesterday", "this-week", "week-ago", "this-month",
                   "this-year")
NON_CENTRAL_LOG_DRIVERS = {"json-file", "local", "none"}


def docker_contradictions(data: dict[str, Any], waived: set[str], add: Callable[[str, str], None]) -> None:
    """CIS Docker settings that contradict each other or the benchmark (unless waived)."""
    catalog = load_catalog("cis-docker")
    waived = {c.id for k in waived if k.startswith(catalog.key + ":") and (c := catalog.get(k))}
    driver, opts = data["docker_log_driver"], data["docker_log_opts"]
    if driver not in LOG_DRIVER_OPTS:
        add("docker_log_driver", f"unknown log driver {driver!r} (known: {', '.join(sorted(LOG_DRIVER_OPTS))})")
    else:
        bad = sorted(set(opts) - LOG_DRIVER_OPTS[driver] - COMMON_LOG_OPTS)
        if bad:
            add("docker_log_opts", f"{', '.join(bad)} not accepted by log driver {driver!r}")
        if driver in NON_CENTRAL_LOG_DRIVERS and "2.13" not in waived:
            add("docker_log_driver", f"{driver!r} is not a central logging driver, which CIS 2.13 requires; "
                "choose syslog/journald/fluentd/gelf/... or waive 2.13")
    if not data["docker_userns_remap"] and "2.9" not in waived:
        add("docker_userns_remap", "is empty but CIS 2.9 (user namespace remapping) is not waived")
    if data["docker_userns_remap"] == "root":
        add("docker_userns_remap", "remapping to root defeats user namespaces")
    managed = {c.params["key"] for c in catalog.of_kind("daemon_option") if "set" in c.params and c.id not in waived}
    managed |= {"log-opts", "default-ulimits"}
    for key in sorted(set(data["docker_daemon_extra"]) & managed):
        add("docker_daemon_extra", f"sets {key!r}, which hardline manages from its own variables")
    if str(data["sysctl_settings"].get("net.ipv4.ip_forward", 1)) == "0":
        add("sysctl_settings", "net.ipv4.ip_forward=0 breaks Docker's bridge networking on a Docker host")


# What a deploy must never remove or mask: it would cut the deploying connection (sshd), the
# means to repair the host (the package manager) or the container engine hardline hardens.
PROTECTED_PACKAGES = re.compile(r"^(openssh-server|openssh-sftp-server|ssh|openssh|dropbear.*|apt|apt-utils|dpkg|"
                                r"rpm|yum|dnf|microdnf|libdnf.*|zypper|docker.*|moby.*|containerd.*|runc|crun|"
                                r"podman|systemd|systemd-sysv|init|libc6|glibc|python3|sudo|auditd|audit)$")
PROTECTED_UNITS = re.compile(r"^(ssh|sshd|ssh@|sshd@|ssh\.socket|sshd\.socket|docker|containerd|systemd-.*|auditd|"
                             r"dbus|apparmor)(\.(service|socket))?$")
SYSCTL_NAMESPACES = {"kernel", "net", "fs", "vm", "user", "dev", "abi", "debug", "crypto", "sunrpc"}
LSMS = ("auto", "apparmor", "selinux")
ENGINE_LIMITS = {
    "CPUQuota": re.compile(r"^[1-9][0-9]*%$"),
    "CPUWeight": re.compile(r"^([1-9][0-9]{0,3}|10000)$"),
    "MemoryMax": re.compile(r"^([1-9][0-9]*[KMGT]?|infinity)$"),
    "MemoryHigh": re.compile(r"^([1-9][0-9]*[KMGT]?|infinity)$"),
    "TasksMax": re.compile(r"^([1-9][0-9]*|infinity)$"),
}
PROFILE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


def platform_contradictions(data: dict[str, Any], add: Callable[[str, str], None]) -> None:
    """Platform settings (HL- controls) that are malformed or would cut the host off."""
    for key in data["sysctl_settings"]:
        if key.split(".")[0] not in SYSCTL_NAMESPACES:
            add("sysctl_settings", f"{key!r} is not a sysctl: no /proc/sys/{key.split('.')[0]} "
                f"(namespaces: {', '.join(sorted(SYSCTL_NAMESPACES))})")
    for pkg in data["platform_packages_absent"]:
        if PROTECTED_PACKAGES.match(pkg):
            add("platform_packages_absent", f"refusing to remove {pkg!r}: it is the SSH server, the package manager, "
                "the container engine or the base system the deploy relies on")
    for unit in data["platform_services_masked"]:
        if PROTECTED_UNITS.match(unit):
            add("platform_services_masked", f"refusing to mask {unit!r}: it would cut the deploying SSH connection, "
                "stop the container engine or a core system service")
    if data["auditd_exec_search_start"] not in AUSEARCH_STARTS:
        add("auditd_exec_search_start", f"must be empty or one of {', '.join(AUSEARCH_STARTS[1:])}, "
            f"got {data['auditd_exec_search_start']!r}")
    if data["hardline_docker_client"] not in ("auto", "api", "cli"):
        add("hardline_docker_client", f"must be auto, api or cli, got {data['hardline_docker_client']!r}")
    lsm = data["hardline_lsm"]
    if lsm not in LSMS:
        add("hardline_lsm", f"must be one of {', '.join(LSMS)}, got {lsm!r}")
    if lsm == "apparmor" and data["selinux_booleans"]:
        add("selinux_booleans", "set while hardline_lsm is apparmor: SELinux booleans do not exist on an AppArmor host")
    for name, value in data["selinux_booleans"].items():
        if value not in ("on", "off"):
            add("selinux_booleans", f"{name}: must be on or off, got {value!r}")
    if not PROFILE_NAME.match(data["apparmor_profile"]) or data["apparmor_profile"] == "docker-default":
        add("apparmor_profile", f"{data['apparmor_profile']!r} is not a usable profile name (lowercase, not docker-default)")
    for workload, rules in data["apparmor_workload_profiles"].items():
        if not PROFILE_NAME.match(workload):
            add("apparmor_workload_profiles", f"{workload!r} is not a usable workload name (lowercase letters, digits, -_.)")
        if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
            add("apparmor_workload_profiles", f"{workload}: must be a list of AppArmor rules (strings)")
    for rule in data["apparmor_profile_rules"] + [r for rules in data["apparmor_workload_profiles"].values()
                                                  if isinstance(rules, list) for r in rules if isinstance(r, str)]:
        if not rule.rstrip().endswith((",", "}")) or "\n" in rule:
            add("apparmor_profile_rules", f"{rule!r} is not one AppArmor rule ending with a comma")
    for key, value in data["cgroup_engine_limits"].items():
        if key not in ENGINE_LIMITS:
            add("cgroup_engine_limits", f"unknown limit {key!r} (known: {', '.join(ENGINE_LIMITS)})")
        elif not ENGINE_LIMITS[key].match(value):
            add("cgroup_engine_limits", f"{key}: {value!r} is not a valid value (e.g. CPUQuota 150%, MemoryMax 2G, "
                "TasksMax 4096)")
    params = data["kernel_boot_params"]
    if data["kernel_cgroup_v2"] and any(p.startswith("systemd.unified_cgroup_hierarchy=") and p.endswith(("=0", "=false", "=no"))
                                        for p in params):
        add("kernel_boot_params", "asks for cgroup v1 while kernel_cgroup_v2 is true")
    if lsm == "selinux" and any(p in ("security=apparmor", "apparmor=1", "lsm=apparmor") for p in params):
        add("kernel_boot_params", "enables AppArmor while hardline_lsm is selinux")
    if lsm == "apparmor" and any(p in ("security=selinux", "selinux=1") for p in params):
        add("kernel_boot_params", "enables SELinux while hardline_lsm is apparmor")
    for rule in data["auditd_platform_rules"]:
        if rule.split()[:1] in (["-e"], ["-D"]):
            add("auditd_platform_rules", f"{rule!r}: set auditd_immutable instead of -e, and never delete rules with -D")
