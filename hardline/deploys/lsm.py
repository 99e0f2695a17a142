"""Linux security module for containers: AppArmor (HL-2.x) or SELinux (HL-3.x), whichever the
host runs (hardline_lsm: auto) or the inventory names. Asking for one the host does not have
stops the deploy with the host named, never a silent no-op.

AppArmor: the hardened profile (templates/etc/apparmor.d/hardline-docker.j2) and one variant
per workload of apparmor_workload_profiles are installed in /etc/apparmor.d (loaded at boot
by apparmor.service) and loaded now in enforce mode with apparmor_parser -r. Docker 20.10 has
no daemon.json key for a default AppArmor profile; with apparmor_default_profile the same
profile is also installed under the name docker-default, which dockerd uses for every
container started without --security-opt apparmor=... (it only generates its own
docker-default when none is loaded).

SELinux: enforcing now (setenforce 1) and at boot (/etc/selinux/config), the inventory's
booleans (setsebool -P), and "selinux-enabled": true handed to daemon.json. Must run before
deploys.docker_daemon (harden.py calls it first).
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, server

from hardline.deploys.common import DEFAULTS, TEMPLATES, HardlineDataError, controls, host_config, op_name
from hardline.deploys.platform_facts import AppArmorProfiles, HostLsm, SelinuxBooleans

PROFILE_TEMPLATE = TEMPLATES / "etc/apparmor.d/hardline-docker.j2"


def resolve_lsm(config) -> str:
    """The LSM to configure on this host; raises when the inventory asks for one it lacks."""
    asked = config.data["hardline_lsm"]
    lsm = host.get_fact(HostLsm)
    running = [name for name in ("apparmor", "selinux") if lsm[name]]
    if asked == "auto":
        return "selinux" if lsm["selinux"] or (lsm["selinux_config"] and not lsm["apparmor"]) else "apparmor"
    other = "selinux" if asked == "apparmor" else "apparmor"
    if not lsm[asked] and (lsm[other] or asked == "selinux"):
        # AppArmor can be switched on by boot parameters (HL-1.3); SELinux needs a policy and a
        # relabel first, which is not a deploy's business
        has = f"runs {other} only" if lsm[other] else "has no SELinux enabled (no /sys/fs/selinux)"
        raise HardlineDataError(
            f"host {config.name}: hardline_lsm: {asked} asked, but this host {has} "
            f"(LSMs: {','.join(lsm['lsm']) or ','.join(running) or 'none'}); "
            f"set hardline_lsm to {'auto' if not lsm[other] else other + ' or auto'}")
    return asked


def apparmor(config) -> None:
    data = config.data
    lsm = host.get_fact(HostLsm)
    applied = controls(config, "apparmor")
    if not any(c.params.get("aspect") == "profiles" for c in applied):
        return  # HL-2.2 waived: the profiles are not managed
    control = next(c for c in applied if c.params.get("aspect") == "profiles")
    base = data["apparmor_profile"]
    profiles = {base: list(data["apparmor_profile_rules"])}
    for workload, rules in sorted(data["apparmor_workload_profiles"].items()):
        profiles[f"{base}-{workload}"] = list(data["apparmor_profile_rules"]) + list(rules)
    if data["apparmor_default_profile"]:
        profiles["docker-default"] = list(data["apparmor_profile_rules"])
    loaded = host.get_fact(AppArmorProfiles) if lsm["apparmor"] else {}
    for name, rules in profiles.items():
        path = f"/etc/apparmor.d/{name}"
        written = files.template(name=op_name(control, f"AppArmor profile {name} ({path})"), src=str(PROFILE_TEMPLATE),
                                 dest=path, user="root", group="root", mode="644", profile_name=name, rules=rules)
        if not lsm["apparmor"]:
            host.noop(f"AppArmor is not enabled in this kernel: {name} loads at the next boot with AppArmor on (HL-1.3)")
            continue
        # not loaded, or loaded in complain mode: a change by itself; else only after a new file
        condition = {} if loaded.get(name) != "enforce" else {"_if": written.did_change}
        server.shell(name=op_name(control, f"Load {name} in enforce mode (apparmor_parser -r)"),
                     commands=[f"apparmor_parser -r -W {shlex.quote(path)}"], **condition)


def selinux(config) -> None:
    data = config.data
    applied = {c.params.get("aspect"): c for c in controls(config, "selinux")}
    if "enforcing" in applied:
        control = applied["enforcing"]
        files.line(name=op_name(control, "SELINUX=enforcing in /etc/selinux/config"), path="/etc/selinux/config",
                   line=r"^SELINUX=.*$", replace="SELINUX=enforcing")
        if host.get_fact(HostLsm)["enforce"] != "1":
            server.shell(name=op_name(control, "setenforce 1"), commands=["setenforce 1"])
    if "booleans" in applied and data["selinux_booleans"]:
        control = applied["booleans"]
        current = host.get_fact(SelinuxBooleans)
        for name, value in sorted(data["selinux_booleans"].items()):
            if current.get(name) != value:
                server.shell(name=op_name(control, f"SELinux boolean {name}={value}"),
                             commands=[f"setsebool -P {shlex.quote(name)} {value}"])
    if "daemon" in applied:
        # handed to the daemon.json operation of deploys/docker_daemon.py, which runs later
        extra = dict(data["docker_daemon_extra"])
        extra.setdefault("selinux-enabled", True)
        data["docker_daemon_extra"] = extra


@deploy("Linux security module", data_defaults=DEFAULTS)
def lsm():
    config = host_config()
    chosen = resolve_lsm(config)
    if chosen == "apparmor":
        apparmor(config)
    else:
        selinux(config)
