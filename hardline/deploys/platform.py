"""The host under the engine: resource limits of the engine's units (HL-4.2), unneeded packages
removed (HL-5.1) and services masked (HL-5.2), platform audit rules (HL-6.1) made immutable
only when the inventory asks (HL-6.2).

What would cut the deploying connection or the engine (sshd, the package manager, docker,
containerd) is refused by inventory validation before anything runs; a removal that apt would
extend to such a package (a dependency) is refused on the host before anything is removed.
"""

from __future__ import annotations

import io
import shlex

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.server import Which
from pyinfra.operations import files, server, systemd

from hardline.deploys.common import DEFAULTS, controls, host_config, op_name
from hardline.deploys.facts import LoadedAuditRules
from hardline.deploys.platform_facts import AuditEnabled, ExistingPaths, InstalledPackages, UnitStates
from hardline.inventory import PROTECTED_PACKAGES

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


def engine_limits(config) -> None:
    for control in controls(config, "engine_limits"):
        params = control.resolve(config.data)
        limits = params["limits"]
        states = host.get_fact(UnitStates, units=params["units"])
        if not limits or states is None:
            host.noop(f"[{control.key}] no systemd or no limits: nothing to do")
            continue
        text = ("# Managed by hardline (deploys/platform.py, HL-4.2): edit inventory cgroup_engine_limits instead.\n"
                "[Service]\n" + "".join(f"{k}={v}\n" for k, v in sorted(limits.items())))
        for unit, state in zip(params["units"], states):
            if state.get("LoadState") == "not-found":
                continue
            dropin = files.put(name=op_name(control, f"{unit} limits " + " ".join(f"{k}={v}" for k, v in sorted(limits.items()))),
                               src=io.StringIO(text), dest=f"/etc/systemd/system/{unit}.d/hardline-limits.conf",
                               user="root", group="root", mode="644", create_remote_dir=True)
            systemd.daemon_reload(name=f"systemd daemon-reload for the {unit} limits", _if=dropin.did_change)
            # applies the limits to the running unit's cgroup now, without a restart; also when
            # they were changed at runtime (systemctl set-property) behind the drop-in's back
            drifted = [k for k, v in limits.items() if not _limit_holds(k, v, state)]
            server.shell(name=f"Apply the {unit} limits to its running cgroup"
                         + (f" ({', '.join(sorted(drifted))} differ)" if drifted else ""),
                         commands=[f"systemctl set-property --runtime {shlex.quote(unit)} "
                                   + " ".join(f"{k}={v}" for k, v in sorted(limits.items()))],
                         **({} if drifted else {"_if": dropin.did_change}))  # drifted: a change by itself


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


def packages_absent(config) -> None:
    for control in controls(config, "packages_absent"):
        wanted = control.resolve(config.data)["packages"]
        installed = host.get_fact(InstalledPackages, packages=wanted) if wanted else []
        if not installed:
            continue
        if host.get_fact(Which, command="apt-get"):
            command = ("HL_PROTECTED=" + shlex.quote(PROTECTED_PACKAGES.pattern) + " sh -c " + shlex.quote(_APT_GUARD)
                       + " hardline " + " ".join(shlex.quote(p) for p in installed))
        else:
            command = "dnf remove -y --noautoremove " + " ".join(shlex.quote(p) for p in installed)
        server.shell(name=op_name(control, f"Remove {', '.join(installed)}"), commands=[command])


def services_masked(config) -> None:
    for control in controls(config, "services_masked"):
        units = control.resolve(config.data)["units"]
        states = host.get_fact(UnitStates, units=units) if units else None
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
                u = shlex.quote(unit)
                server.shell(name=op_name(control, f"Stop and mask {unit}"),
                             commands=[f"systemctl mask --now {u} 2>/dev/null || {{ systemctl disable --now {u}; "
                                       f"echo 'hardline: {unit} stopped and disabled, not masked: its unit file is in "
                                       "/etc/systemd/system' >&2; }"])
            elif active not in ("inactive", "failed"):
                server.shell(name=op_name(control, f"Stop {unit} (masked but running)"),
                             commands=[f"systemctl stop {shlex.quote(unit)}"])


def _rule_key(rule: str) -> tuple:
    """A rule as a comparable value: auditctl -l prints syscall lists in its own order, a key as
    -F key=..., and directories with a trailing slash."""
    words = shlex.split(rule)
    out, i = [], 0
    while i < len(words):
        word, value = words[i], (words[i + 1] if i + 1 < len(words) else "")
        if word == "-S":
            out += [("-S", s) for s in value.split(",")]
        elif word == "-F" and value.startswith("key="):
            out.append(("-k", value[4:]))
        elif word == "-p":
            out.append(("-p", "".join(sorted(value))))
        elif word.startswith("-"):
            out.append((word, value.rstrip("/") if word == "-w" else value))
        else:
            i -= 1
        i += 2
    return tuple(sorted(out))


def audit_rules(config) -> None:
    data = config.data
    rules_controls = controls(config, "audit_rules")
    changed = []
    if rules_controls:
        control = rules_controls[0]
        rules = data["auditd_platform_rules"]
        watched = [r.split()[r.split().index("-w") + 1] for r in rules if "-w" in r.split()[:-1]]
        existing = set(host.get_fact(ExistingPaths, paths=watched)) if watched else set()
        kept = [r for r in rules if "-w" not in r.split()[:-1] or r.split()[r.split().index("-w") + 1] in existing]
        if kept:
            text = ("## Managed by hardline (deploys/platform.py, HL-6.1): edit inventory auditd_platform_rules instead.\n"
                    + "".join(f"{r}\n" for r in kept))
            written = files.put(name=op_name(control, f"{len(kept)} platform audit rules in {data['auditd_platform_rules_file']}"),
                                src=io.StringIO(text), dest=data["auditd_platform_rules_file"], user="root", group="root",
                                mode="640", create_remote_dir=True)
            loaded = {_rule_key(r) for r in host.get_fact(LoadedAuditRules) or []}
            missing = [r for r in kept if _rule_key(r) not in loaded]
            changed.append((written, bool(missing)))
    immutable = [c for c in controls(config, "audit_immutable") if data["auditd_immutable"]]
    if immutable:
        written = files.put(name=op_name(immutable[0], f"audit rules immutable (-e 2) in {IMMUTABLE_FILE}"),
                            src=io.StringIO("## Managed by hardline (HL-6.2): rules are immutable until reboot\n-e 2\n"),
                            dest=IMMUTABLE_FILE, user="root", group="root", mode="640")
        changed.append((written, host.get_fact(AuditEnabled) != "2"))
    if not changed:
        return
    if host.get_fact(AuditEnabled) == "2":
        if any(missing for _, missing in changed):
            host.noop("audit rules are immutable (-e 2) until reboot: the new rules load at the next boot")
        return
    # rules missing from the kernel make the load a change by itself (drift shows it as such)
    condition = {} if any(missing for _, missing in changed) else {"_if": lambda: any(w.did_change() for w, _ in changed)}
    server.shell(name="Load platform audit rules" + (" and make them immutable" if immutable else ""),
                 commands=["augenrules --load"], **condition)


@deploy("Platform: engine limits, services, packages, audit", data_defaults=DEFAULTS)
def platform():
    config = host_config()
    engine_limits(config)
    packages_absent(config)
    services_masked(config)
    audit_rules(config)
