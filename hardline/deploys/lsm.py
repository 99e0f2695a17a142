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

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.command import QuoteString, StringCommand
from pyinfra.facts.files import FileContents
from pyinfra.operations import server

from hardline.deploys.common import DEFAULTS, HardlineDataError, controls, host_config, op_name, render
from hardline.deploys.gather import Need, host_facts, need
from hardline.deploys.operations.converge import file_needs, line_in_file, managed_file, selinux_boolean
from hardline.deploys.platform_facts import AppArmorProfiles, HostLsm, SelinuxBooleans
from hardline.inventory import HostConfig

PROFILE_TEMPLATE = "etc/apparmor.d/hardline-docker.j2"
SELINUX_CONFIG = "/etc/selinux/config"


def profiles(config: HostConfig) -> dict[str, list[str]]:
    """AppArmor profiles to install: name -> extra rules (the base, each workload, docker-default)."""
    data = config.data
    base = data["apparmor_profile"]
    out = {base: list(data["apparmor_profile_rules"])}
    for workload, rules in sorted(data["apparmor_workload_profiles"].items()):
        out[f"{base}-{workload}"] = list(data["apparmor_profile_rules"]) + list(rules)
    if data["apparmor_default_profile"]:
        out["docker-default"] = list(data["apparmor_profile_rules"])
    return out


def needs(config: HostConfig) -> list[Need]:
    """Every fact the LSM deploy reads, for one batch (both LSMs' facts: the host says which)."""
    out = [need(HostLsm)]
    if controls(config, "apparmor"):
        out += [need(AppArmorProfiles), *file_needs(*(f"/etc/apparmor.d/{name}" for name in profiles(config)))]
    if controls(config, "selinux"):
        out += [need(SelinuxBooleans), need(FileContents, path=SELINUX_CONFIG)]
    return out


def resolve_lsm(config: HostConfig) -> str:
    """The LSM to configure on this host; raises when the inventory asks for one it lacks."""
    asked = config.data["hardline_lsm"]
    lsm = host_facts().get(HostLsm)
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
    return str(asked)


def apparmor(config: HostConfig) -> None:
    facts = host_facts()
    lsm = facts.get(HostLsm)
    applied = [c for c in controls(config, "apparmor") if c.params.get("aspect") == "profiles"]
    if not applied:
        return  # HL-2.2 waived: the profiles are not managed
    control = applied[0]
    loaded = facts.get(AppArmorProfiles) if lsm["apparmor"] else {}
    for name, rules in profiles(config).items():
        path = f"/etc/apparmor.d/{name}"
        written = managed_file(name=op_name(control, f"AppArmor profile {name} ({path})"), dest=path, create_remote_dir=True,
                               content=render(PROFILE_TEMPLATE, profile_name=name, rules=rules))
        if not lsm["apparmor"]:
            host.noop(f"AppArmor is not enabled in this kernel: {name} loads at the next boot with AppArmor on (HL-1.3)")
            continue
        # not loaded, or loaded in complain mode: a change by itself; else only after a new file
        if loaded.get(name) != "enforce" or written.will_change:
            server.shell(name=op_name(control, f"Load {name} in enforce mode (apparmor_parser -r)"),
                         commands=[StringCommand("apparmor_parser -r -W", QuoteString(path)).get_raw_value()],
                         _if=[] if loaded.get(name) != "enforce" else [written.did_change])


def selinux(config: HostConfig) -> None:
    data = config.data
    facts = host_facts()
    applied = {c.params.get("aspect"): c for c in controls(config, "selinux")}
    if "enforcing" in applied:
        control = applied["enforcing"]
        line_in_file(name=op_name(control, f"SELINUX=enforcing in {SELINUX_CONFIG}"), path=SELINUX_CONFIG,
                     line=r"^SELINUX=.*$", replace="SELINUX=enforcing")
        if facts.get(HostLsm)["enforce"] != "1":
            server.shell(name=op_name(control, "setenforce 1"), commands=["setenforce 1"])
    if "booleans" in applied:
        for name, value in sorted(data["selinux_booleans"].items()):
            selinux_boolean(name=op_name(applied["booleans"], f"SELinux boolean {name}={value}"), boolean=name, value=value)
    if "daemon" in applied:
        # handed to the daemon.json operation of deploys/docker_daemon.py, which runs later
        extra = dict(data["docker_daemon_extra"])
        extra.setdefault("selinux-enabled", True)
        data["docker_daemon_extra"] = extra


@deploy("Linux security module", data_defaults=DEFAULTS)
def lsm() -> None:
    config = host_config()
    host_facts().prefetch(needs(config))
    if resolve_lsm(config) == "apparmor":
        apparmor(config)
    else:
        selinux(config)
