"""Facts of the platform (HL-) controls: LSM, AppArmor profiles, kernel modules, boot
parameters, cgroups, engine unit limits, packages, services and audit status.

All are round-1 sections, parsed into ``facts.values`` under the names the checks of
:mod:`hardline.benchmarks.checks.platform` read. A section whose command failed is an error of
that fact only (the checks needing it report ERROR).
"""

from __future__ import annotations

from typing import Any

from hardline.benchmarks.gather.core import (
    Fact,
    HostFacts,
    builtin,
    cat_files,
    key_values,
    program,
    section,
    shell,
    split_blocks,
    split_files,
)

# builtins only: one line of each kernel file, the first SELINUX= of /etc/selinux/config
LSM_SCRIPT = r"""rd /sys/kernel/security/lsm; printf 'lsm=%s\n' "$v"
rd /sys/module/apparmor/parameters/enabled; printf 'apparmor=%s\n' "$v"
rd /sys/fs/selinux/enforce; printf 'selinux_enforce=%s\n' "$v"
c=; f=; if [ -f /etc/selinux/config ]; then f=yes
while IFS= read -r l || [ -n "$l" ]; do case $l in SELINUX=*) c=${l#SELINUX=}; break;; esac; done < /etc/selinux/config; fi
printf 'selinux_config=%s\n' "$c"; printf 'selinux_config_file=%s\n' "$f"
printf 'apparmor_parser='; command -v apparmor_parser || echo; return 0"""
PROFILES = "/sys/kernel/security/apparmor/profiles"
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


# modprobe's dry run shows what loading each module would do (install command or insmod)
MODPROBE = ("command -v modprobe >/dev/null || { [ -e /proc/modules ] || exit 0; "
            "echo modprobe is not installed >&2; exit 127; }; "
            'for m in "$@"; do echo "### $m"; modprobe -n -v "$m" 2>&1; done; true')
GRUB = (f"for f in {GRUB_CFGS}; do [ -f \"$f\" ] && {{ echo \"### $f\"; "
        "grep -E '^[[:space:]]*linux(16|efi)?[[:space:]]' \"$f\"; }; done; "
        "command -v grubby >/dev/null && { echo '### grubby'; grubby --info=DEFAULT | grep '^args='; }; true")
ENGINE = (SYSTEMD_UP + f"systemctl show {' '.join('-p ' + p for p in UNIT_PROPS)} \"$@\"; "
          "[ \"$(stat -fc %T /sys/fs/cgroup)\" = cgroup2fs ] || exit 0; echo '### cgroup files'; "
          "for u in \"$@\"; do cg=$(systemctl show -p ControlGroup --value \"$u\"); [ -n \"$cg\" ] || continue; "
          "for f in cpu.max cpu.weight memory.max memory.high pids.max; do "
          "[ -f \"/sys/fs/cgroup$cg/$f\" ] && printf '%s %s %s\\n' \"$u\" $f \"$(cat /sys/fs/cgroup$cg/$f)\"; done; done")
SERVICES = (SYSTEMD_UP + "[ $# -gt 0 ] || exit 0; "
            "systemctl show -p Id -p LoadState -p UnitFileState -p ActiveState \"$@\"")
PACKAGES = ("[ $# -gt 0 ] || exit 0; if command -v dpkg-query >/dev/null; then "
            "dpkg-query -W -f='${Package}\\t${Status}\\n' \"$@\" 2>/dev/null; "
            "elif command -v rpm >/dev/null; then rpm -q --qf '%{NAME}\\tinstall ok installed\\n' \"$@\" "
            "| grep -v 'is not installed'; else echo 'no dpkg-query or rpm' >&2; exit 127; fi; true")
WATCHED = 'for p in "$@"; do [ -e "$p" ] && echo "$p"; done; true'


def _unit_blocks(out: str) -> list[dict[str, str]]:
    """systemctl show output for several units: blocks separated by empty lines."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
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


def _parse_with(name: str, convert):
    """A parser storing convert(output) under ``name`` when the section succeeded."""
    def parse(facts: HostFacts, data: dict[str, Any]) -> None:
        out = section(facts, name)
        if out is not None:
            facts.values[name] = convert(out)
    return parse


def _parse_apparmor_profiles(facts: HostFacts, data: dict[str, Any]) -> None:
    rc, out, err = facts.sections.get("apparmor_profiles", (127, "", "section missing"))
    if rc != 0:
        facts.errors["apparmor_profiles"] = f"cannot read /sys/kernel/security/apparmor/profiles: {err[:200] or out[:200]}"
        return
    loaded = {}
    for line in out.splitlines():
        name, _, mode = line.rstrip().rpartition(" (")
        if name:
            loaded[name] = mode.rstrip(")")
    facts.values["apparmor_profiles"] = loaded


def _parse_proc_modules(facts: HostFacts, data: dict[str, Any]) -> None:
    rc, out, err = facts.sections.get("proc_modules", (127, "", "section missing"))
    if rc == 0:
        facts.values["proc_modules"] = [line.split()[0] for line in out.splitlines() if line.strip()]
    elif "No such file" in err:
        facts.values["proc_modules"] = None  # kernel without loadable module support
    else:
        facts.errors["proc_modules"] = f"cannot read /proc/modules: {err[:200]}"


def _engine_units(out: str) -> dict[str, Any] | None:
    if out.strip() == "@@NOSYSTEMD":
        return None
    return {"units": _unit_blocks(out),
            "cgroup": [line.split(" ", 2) for line in out.partition("### cgroup files\n")[2].splitlines()
                       if line.count(" ") >= 2]}


def _systemd(name: str, script: str, *args: str) -> str:
    """A section that asks systemd, or says @@NOSYSTEMD without starting a process."""
    return f"if [ -d /run/systemd/system ]; then {shell(name, script, *args)}; else runb {name} echo @@NOSYSTEMD; fi"


FACTS = [
    Fact("lsm", lambda d, f: builtin("lsm", LSM_SCRIPT), _parse_with("lsm", key_values)),
    # absent when AppArmor is off (the checks see it in the lsm section); unreadable is an error
    Fact("apparmor_profiles", lambda d, f: [f"if [ -e {PROFILES} ]; then {program('apparmor_profiles', 'cat', PROFILES)}; "
                                             "else runb apparmor_profiles true; fi"],
         _parse_apparmor_profiles),
    Fact("apparmor_files", lambda d, f: [cat_files("apparmor_files", "",
                                              *(f"/etc/apparmor.d/{n}" for n in profile_names(d)))],
         _parse_with("apparmor_files", split_files)),
    Fact("modprobe", lambda d, f: [shell("modprobe", MODPROBE, *d["kernel_module_blacklist"])],
         _parse_with("modprobe", lambda out: {k.strip(): v for k, v in split_blocks(out).items()})),
    Fact("proc_modules", lambda d, f: ["run proc_modules cat /proc/modules"], _parse_proc_modules),
    Fact("modprobe_config",
         lambda d, f: [shell("modprobe_config", 'modprobe --showconfig | grep -E "^(blacklist|install) "; true')],
         _parse_with("modprobe_config", lambda out: [line.split(None, 2) for line in out.splitlines() if line.strip()])),
    Fact("cmdline", lambda d, f: builtin("cmdline", 'rd /proc/cmdline || { echo cannot read /proc/cmdline >&2; return 1; }; '
                                          'printf "%s\\n" "$v"'), _parse_with("cmdline", str.split)),
    Fact("grub", lambda d, f: [shell("grub", GRUB)],
         _parse_with("grub", lambda out: split_files(out.replace("### grubby", "### /grubby")))),
    Fact("cgroup_fs", lambda d, f: ["run cgroup_fs stat -fc %T /sys/fs/cgroup"], _parse_with("cgroup_fs", str.strip)),
    Fact("engine_units", lambda d, f: [_systemd("engine_units", ENGINE, *d["cgroup_engine_units"])],
         _parse_with("engine_units", _engine_units)),
    Fact("services", lambda d, f: [_systemd("services", SERVICES, *d["platform_services_masked"])],
         _parse_with("services", lambda out: None if out.strip() == "@@NOSYSTEMD" else _unit_blocks(out))),
    Fact("packages", lambda d, f: [shell("packages", PACKAGES, *d["platform_packages_absent"])],
         _parse_with("packages", lambda out: dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line))),
    Fact("selinux_booleans", lambda d, f: ["if command -v getsebool >/dev/null; then run selinux_booleans getsebool -a; "
                                            "else runb selinux_booleans true; fi"],
         _parse_with("selinux_booleans", lambda out: {k.strip(): v.strip() for k, _, v in
                                                      (line.partition("-->") for line in out.splitlines()) if v})),
    Fact("audit_status", lambda d, f: ["run audit_status auditctl -s"],
         _parse_with("audit_status", lambda out: dict(line.split(" ", 1) for line in out.splitlines() if " " in line))),
    Fact("audit_watch_paths", lambda d, f: [shell("audit_watch_paths", WATCHED, *watch_paths(d["auditd_platform_rules"]))],
         _parse_with("audit_watch_paths", lambda out: [p for p in out.splitlines() if p])),
]
