"""Round-1 sections for the platform (HL-) controls: LSM, AppArmor profiles, kernel modules,
boot parameters, cgroups, engine unit limits, packages, services and audit status.

They are appended to the round-1 script of :mod:`benchmarks.facts` (still one command per host)
and parsed into ``facts.values`` under the names the checks of
:mod:`benchmarks.checks.platform` read. A section whose command failed is an error of that
fact only (the checks needing it report ERROR).
"""

from __future__ import annotations

import shlex
from typing import Any

from hardline.benchmarks.facts import HostFacts, _section, _split_files

LSM_SCRIPT = r"""
printf 'lsm=%s\n' "$(cat /sys/kernel/security/lsm 2>/dev/null)"
printf 'apparmor=%s\n' "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)"
printf 'selinux_enforce=%s\n' "$(cat /sys/fs/selinux/enforce 2>/dev/null)"
printf 'selinux_config=%s\n' "$(sed -n 's/^SELINUX=//p' /etc/selinux/config 2>/dev/null)"
printf 'selinux_config_file=%s\n' "$([ -f /etc/selinux/config ] && echo yes)"
printf 'apparmor_parser=%s\n' "$(command -v apparmor_parser)"
"""
GRUB_CFGS = "/boot/grub/grub.cfg /boot/grub2/grub.cfg /boot/efi/EFI/*/grub.cfg"
SYSTEMD_UP = "[ -d /run/systemd/system ] || { echo @@NOSYSTEMD; exit 0; }; "
UNIT_PROPS = ("Id", "LoadState", "ActiveState", "ControlGroup", "CPUQuotaPerSecUSec", "CPUWeight", "MemoryMax",
              "MemoryHigh", "TasksMax", "DropInPaths")


def profile_names(data: dict[str, Any]) -> list[str]:
    """The AppArmor profiles hardline installs for this host's inventory."""
    base = data["apparmor_profile"]
    names = [base] + [f"{base}-{w}" for w in sorted(data["apparmor_workload_profiles"])]
    return names + (["docker-default"] if data["apparmor_default_profile"] else [])


def watch_paths(rules: list[str]) -> list[str]:
    paths = []
    for rule in rules:
        words = rule.split()
        if "-w" in words[:-1]:
            paths.append(words[words.index("-w") + 1])
    return paths


def platform_lines(data: dict[str, Any]) -> list[str]:
    q = shlex.quote
    mods = " ".join(q(m) for m in data["kernel_module_blacklist"])
    profiles = " ".join(q(f"/etc/apparmor.d/{n}") for n in profile_names(data))
    engine_units = " ".join(q(u) for u in data["cgroup_engine_units"])
    masked = " ".join(q(u) for u in data["platform_services_masked"])
    packages = " ".join(q(p) for p in data["platform_packages_absent"])
    watched = " ".join(q(p) for p in watch_paths(data["auditd_platform_rules"]))
    engine = (SYSTEMD_UP + f"systemctl show {' '.join('-p ' + p for p in UNIT_PROPS)} \"$@\"; "
              "[ \"$(stat -fc %T /sys/fs/cgroup)\" = cgroup2fs ] || exit 0; echo '### cgroup files'; "
              "for u in \"$@\"; do cg=$(systemctl show -p ControlGroup --value \"$u\"); [ -n \"$cg\" ] || continue; "
              "for f in cpu.max cpu.weight memory.max memory.high pids.max; do "
              "[ -f \"/sys/fs/cgroup$cg/$f\" ] && printf '%s %s %s\\n' \"$u\" $f \"$(cat /sys/fs/cgroup$cg/$f)\"; done; done")
    return [
        "run lsm sh -c " + q(LSM_SCRIPT),
        # absent when AppArmor is off (the checks see it in the lsm section); unreadable is an error
        "run apparmor_profiles sh -c '[ -e /sys/kernel/security/apparmor/profiles ] || exit 0; "
        "cat /sys/kernel/security/apparmor/profiles'",
        f"run apparmor_files sh -c 'for f in \"$@\"; do [ -f \"$f\" ] && {{ echo \"### $f\"; cat \"$f\"; }}; done; true' _ {profiles}",
        # modprobe's dry run shows what loading each module would do (install command or insmod)
        "run modprobe sh -c 'command -v modprobe >/dev/null || { [ -e /proc/modules ] || exit 0; "
        "echo modprobe is not installed >&2; exit 127; }; "
        f"for m in \"$@\"; do echo \"### $m\"; modprobe -n -v \"$m\" 2>&1; done; true' _ {mods}",
        "run proc_modules cat /proc/modules",
        "run modprobe_config sh -c 'modprobe --showconfig | grep -E \"^(blacklist|install) \"; true'",
        "run cmdline cat /proc/cmdline",
        "run grub sh -c " + q(f"for f in {GRUB_CFGS}; do [ -f \"$f\" ] && {{ echo \"### $f\"; "
                              "grep -E '^[[:space:]]*linux(16|efi)?[[:space:]]' \"$f\"; }; done; "
                              "command -v grubby >/dev/null && { echo '### grubby'; grubby --info=DEFAULT | grep '^args='; }; true"),
        "run cgroup_fs stat -fc %T /sys/fs/cgroup",
        "run engine_units sh -c " + q(engine) + f" _ {engine_units}",
        "run services sh -c " + q(SYSTEMD_UP + "[ $# -gt 0 ] || exit 0; "
                                  "systemctl show -p Id -p LoadState -p UnitFileState -p ActiveState \"$@\"") + f" _ {masked}",
        "run packages sh -c " + q("[ $# -gt 0 ] || exit 0; if command -v dpkg-query >/dev/null; then "
                                  "dpkg-query -W -f='${Package}\\t${Status}\\n' \"$@\" 2>/dev/null; "
                                  "elif command -v rpm >/dev/null; then rpm -q --qf '%{NAME}\\tinstall ok installed\\n' \"$@\" "
                                  "| grep -v 'is not installed'; else echo 'no dpkg-query or rpm' >&2; exit 127; fi; true")
        + f" _ {packages}",
        "run selinux_booleans sh -c 'command -v getsebool >/dev/null || exit 0; getsebool -a'",
        "run audit_status auditctl -s",
        f"run audit_watch_paths sh -c 'for p in \"$@\"; do [ -e \"$p\" ] && echo \"$p\"; done; true' _ {watched}",
    ]


def _key_values(out: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _unit_blocks(out: str) -> list[dict[str, str]]:
    """systemctl show output for several units: blocks separated by empty lines."""
    blocks, current = [], {}
    for line in out.splitlines():
        if line.startswith("### "):
            break
        if not line.strip():
            if current:
                blocks.append(current)
            current = {}
            continue
        key, _, value = line.partition("=")
        current[key] = value
    if current:
        blocks.append(current)
    return blocks


def parse_platform(facts: HostFacts) -> None:
    out = _section(facts, "lsm")
    if out is not None:
        facts.values["lsm"] = _key_values(out)
    rc, out, err = facts.sections.get("apparmor_profiles", (127, "", "section missing"))
    if rc == 0:
        loaded = {}
        for line in out.splitlines():
            name, _, mode = line.rstrip().rpartition(" (")
            if name:
                loaded[name] = mode.rstrip(")")
        facts.values["apparmor_profiles"] = loaded
    else:
        facts.errors["apparmor_profiles"] = f"cannot read /sys/kernel/security/apparmor/profiles: {err[:200] or out[:200]}"
    out = _section(facts, "apparmor_files")
    if out is not None:
        facts.values["apparmor_files"] = _split_files(out)
    rc, out, err = facts.sections.get("proc_modules", (127, "", "section missing"))
    if rc == 0:
        facts.values["proc_modules"] = [line.split()[0] for line in out.splitlines() if line.strip()]
    elif "No such file" in err:
        facts.values["proc_modules"] = None  # kernel without loadable module support
    else:
        facts.errors["proc_modules"] = f"cannot read /proc/modules: {err[:200]}"
    out = _section(facts, "modprobe")
    if out is not None:
        facts.values["modprobe"] = {name.strip(): text for name, text in _split_modules(out).items()}
    out = _section(facts, "modprobe_config")
    if out is not None:
        facts.values["modprobe_config"] = [line.split(None, 2) for line in out.splitlines() if line.strip()]
    out = _section(facts, "cmdline")
    if out is not None:
        facts.values["cmdline"] = out.split()
    out = _section(facts, "grub")
    if out is not None:
        facts.values["grub"] = _split_files(out.replace("### grubby", "### /grubby"))
    out = _section(facts, "cgroup_fs")
    if out is not None:
        facts.values["cgroup_fs"] = out.strip()
    out = _section(facts, "engine_units")
    if out is not None:
        facts.values["engine_units"] = None if out.strip() == "@@NOSYSTEMD" else {
            "units": _unit_blocks(out),
            "cgroup": [line.split(" ", 2) for line in out.partition("### cgroup files\n")[2].splitlines()
                       if line.count(" ") >= 2]}
    out = _section(facts, "services")
    if out is not None:
        facts.values["services"] = None if out.strip() == "@@NOSYSTEMD" else _unit_blocks(out)
    out = _section(facts, "packages")
    if out is not None:
        facts.values["packages"] = dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)
    out = _section(facts, "selinux_booleans")
    if out is not None:
        facts.values["selinux_booleans"] = {k.strip(): v.strip() for k, _, v in
                                            (line.partition("-->") for line in out.splitlines()) if v}
    out = _section(facts, "audit_status")
    if out is not None:
        facts.values["audit_status"] = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    out = _section(facts, "audit_watch_paths")
    if out is not None:
        facts.values["audit_watch_paths"] = [p for p in out.splitlines() if p]


def _split_modules(out: str) -> dict[str, str]:
    blocks: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines():
        if line.startswith("### "):
            current = line[4:]
            blocks[current] = []
        elif current is not None:
            blocks[current].append(line)
    return {k: "\n".join(v) for k, v in blocks.items()}
