"""The host under the engine: resource limits of the engine's units (HL-4.2), unneeded packages
removed (HL-5.1) and services masked (HL-5.2), platform audit rules (HL-6.1) made immutable
only when the inventory asks (HL-6.2).

What would cut the deploying connection or the engine (sshd, the package manager, docker,
containerd) is refused by inventory validation before anything runs; a removal that apt would
extend to such a package (a dependency) is refused on the host before anything is removed.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.command import QuoteString, StringCommand
from pyinfra.facts.files import FileContents
from pyinfra.facts.server import Which
from pyinfra.operations import server, systemd

from hardline.deploys.common import DEFAULTS, controls, host_config, op_name
from hardline.deploys.facts import LoadedAuditRules
from hardline.deploys.gather import Need, host_facts, need
from hardline.deploys.operations.converge import audit_rules_loaded, file_needs, managed_file
from hardline.deploys.platform_facts import AuditEnabled, ExistingPaths, InstalledPackages, UnitStates
from hardline.inventory import HostConfig
from hardline.inventory_rules import PROTECTED_PACKAGES

IMMUTABLE_FILE = "/etc/audit/rules.d/99-hardline-finalize.rules"

# apt's simulation lists every package the removal takes with it ("Remv <pkg> [...]")
_APT_GUARD = r"""
set -u
plan=$(apt-get -s remove "$@") || { echo "$plan" >&2; exit 1; }
bad=$(echo "$plan" | sed -n 's/^Remv \([^ ]*\).*/\1/p' | grep -E "$HL_PROTECTED" || true)
if [ -n "$bad" ]; then
  echo "hardline: refusing to remove $*: apt would also remove $(echo $bad)" >&2; exit 1
fi
DEBIAN_FRONTEND=noninteractive apt-get remove -y "$@"
"""



def _limits_dropin(unit: str) -> str:
    return f"/etc/systemd/system/{unit}.d/hardline-limits.conf"


def _watched(rules: list[str]) -> list[str]:
    """Paths of the -w rules (a watch of a path the host lacks is left out)."""
    return [r.split()[r.split().index("-w") + 1] for r in rules if "-w" in r.split()[:-1]]


def needs(config: HostConfig) -> list[Need]:
    """Every fact the platform deploy reads, for one batch."""
    data = config.data
    out: list[Need] = []
    for control in controls(config, "engine_limits"):
        units = control.resolve(data)["units"]
        out += [need(UnitStates, units=units), *file_needs(*(_limits_dropin(u) for u in units))]
    for control in controls(config, "packages_absent"):
        out += [need(InstalledPackages, packages=control.resolve(data)["packages"]), need(Which, command="apt-get")]
    for control in controls(config, "services_masked"):
        out.append(need(UnitStates, units=control.resolve(data)["units"]))
    if controls(config, "audit_rules"):
        path = data["auditd_platform_rules_file"]
        out += [need(ExistingPaths, paths=_watched(data["auditd_platform_rules"])), *file_needs(path),
                need(FileContents, path=path), need(LoadedAuditRules)]
    if controls(config, "audit_immutable") and data["auditd_immutable"]:
        out += file_needs(IMMUTABLE_FILE)
    return out + [need(AuditEnabled)]


def engine_limits(config: HostConfig) -> None:
    for control in controls(config, "engine_limits"):
        params = control.resolve(config.data)
        limits = params["limits"]
        states = host_facts().get(UnitStates, units=params["units"])
        if not limits or states is None:
            host.noop(f"[{control.key}] no systemd or no limits: nothing to do")
            continue
        settings = " ".join(f"{k}={v}" for k, v in sorted(limits.items()))  # validated: known keys, plain values
        text = ("# Managed by hardline (deploys/platform.py, HL-4.2): edit inventory cgroup_engine_limits instead.\n"
                "[Service]\n" + "".join(f"{k}={v}\n" for k, v in sorted(limits.items())))
        for unit, state in zip(params["units"], states):
            if state.get("LoadState") == "not-found":
                continue
            dropin = managed_file(name=op_name(control, f"{unit} limits {settings}"), content=text,
                                  dest=_limits_dropin(unit), create_remote_dir=True)
            if dropin.will_change:
                systemd.daemon_reload(name=f"systemd daemon-reload for the {unit} limits", _if=dropin.did_change)
            # applies the limits to the running unit's cgroup now, without a restart; also when
            # they were changed at runtime (systemctl set-property) behind the drop-in's back
            drifted = [k for k, v in limits.items() if not _limit_holds(k, v, state)]
            if not drifted and not dropin.will_change:
                continue
            server.shell(name=f"Apply the {unit} limits to its running cgroup"
                         + (f" ({', '.join(sorted(drifted))} differ)" if drifted else ""),
                         commands=[StringCommand("systemctl set-property --runtime", QuoteString(unit),
                                                 *(QuoteString(f"{k}={v}") for k, v in sorted(limits.items()))).get_raw_value()],
                         _if=[] if drifted else [dropin.did_change])  # drifted: a change by itself


def _limit_holds(key: str, want: str, state: dict[str, str]) -> bool:
    """Whether systemd's view of a running unit (systemctl show) has the limit already."""
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    unlimited = ("infinity", "max", "18446744073709551615", "")
    if key == "CPUQuota":
        have = state.get("CPUQuotaPerSecUSec", "")
        seconds = (float(have[:-2]) / 1000 if have.endswith("ms") else float(have[:-1]) if have.endswith("s") and
                   have[:-1].replace(".", "", 1).isdigit() else None)
        return seconds is not None and abs(seconds - int(want.rstrip("%")) / 100) < 1e-3
    have = state.get(key, "")
    if want == "infinity":
        return have in unlimited
    if key.startswith("Memory") and want[-1] in scale:
        want = str(int(want[:-1]) * scale[want[-1]])
    return have == want


def packages_absent(config: HostConfig) -> None:
    facts = host_facts()
    for control in controls(config, "packages_absent"):
        wanted = control.resolve(config.data)["packages"]
        installed = facts.get(InstalledPackages, packages=wanted) if wanted else []
        if not installed:
            continue
        names = [QuoteString(p) for p in installed]
        if facts.get(Which, command="apt-get"):
            protected = StringCommand("HL_PROTECTED=", QuoteString(PROTECTED_PACKAGES.pattern), _separator="")
            command = StringCommand(protected, "sh -c", QuoteString(_APT_GUARD), "hardline", *names)
        else:
            command = StringCommand("dnf remove -y --noautoremove", *names)
        server.shell(name=op_name(control, f"Remove {', '.join(installed)}"), commands=[command.get_raw_value()])


def services_masked(config: HostConfig) -> None:
    for control in controls(config, "services_masked"):
        units = control.resolve(config.data)["units"]
        states = host_facts().get(UnitStates, units=units) if units else None
        if not states:
            continue
        for unit, state in zip(units, states):
            load, active = state.get("LoadState"), state.get("ActiveState")
            masked = "masked" in (load, state.get("UnitFileState"))
            if load == "not-found" and active == "inactive":
                continue
            if not masked:
                # a unit file of the administrator's own in /etc/systemd/system cannot be masked:
                # it is stopped and disabled, and the check keeps failing until it is removed
                u = QuoteString(unit)
                note = QuoteString(f"hardline: {unit} stopped and disabled, not masked: its unit file is in /etc/systemd/system")
                server.shell(name=op_name(control, f"Stop and mask {unit}"),
                             commands=[StringCommand("systemctl mask --now", u, "2>/dev/null || { systemctl disable --now",
                                                     u, "; echo", note, ">&2; }").get_raw_value()])
            elif active not in ("inactive", "failed"):
                server.shell(name=op_name(control, f"Stop {unit} (masked but running)"),
                             commands=[StringCommand("systemctl stop", QuoteString(unit)).get_raw_value()])


def audit_rules(config: HostConfig) -> None:
    data = config.data
    facts = host_facts()
    wanted: list[str] = []
    if controls(config, "audit_rules"):
        control = controls(config, "audit_rules")[0]
        path = data["auditd_platform_rules_file"]
        rules = data["auditd_platform_rules"]  # validated audit_rule: one line, no shell characters
        existing = set(facts.get(ExistingPaths, paths=_watched(rules)))
        wanted = [r for r in rules if "-w" not in r.split()[:-1] or r.split()[r.split().index("-w") + 1] in existing]
        if wanted:
            text = ("## Managed by hardline (deploys/platform.py, HL-6.1): edit inventory auditd_platform_rules instead.\n"
                    + "".join(f"{r}\n" for r in wanted))
            managed_file(name=op_name(control, f"{len(wanted)} platform audit rules in {path}"), content=text, dest=path,
                         mode="640", create_remote_dir=True)
            audit_rules_loaded(name=f"Load the {len(wanted)} platform audit rules", rules=wanted,
                               previous=facts.get(FileContents, path=path))
    immutable = [c for c in controls(config, "audit_immutable") if data["auditd_immutable"]]
    if immutable:
        managed_file(name=op_name(immutable[0], f"audit rules immutable (-e 2) in {IMMUTABLE_FILE}"), dest=IMMUTABLE_FILE,
                     content="## Managed by hardline (HL-6.2): rules are immutable until reboot\n-e 2\n", mode="640")
        if facts.get(AuditEnabled) != "2":
            # after every rule above is loaded: from now on no rule can change until reboot
            server.shell(name=op_name(immutable[0], "Make the loaded audit rules immutable (auditctl -e 2)"),
                         commands=["auditctl -e 2"])


@deploy("Platform: engine limits, services, packages, audit", data_defaults=DEFAULTS)
def platform() -> None:
    config = host_config()
    host_facts().prefetch(needs(config))
    engine_limits(config)
    packages_absent(config)
    services_masked(config)
    audit_rules(config)
