"""Platform checks (HL- controls): kernel modules, boot parameters, AppArmor, SELinux, cgroups,
unneeded packages and services, platform audit rules. They read the facts gathered by
hardline.benchmarks.gather.platform and never the host directly.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from hardline.benchmarks.checks.containers import per_container
from hardline.benchmarks.gather.core import HostFacts
from hardline.benchmarks.gather.docker import effective
from hardline.results import ERROR, FAIL, PASS, SKIP, Verdict

HARDLINE_MARK = "Managed by hardline"


# ---- LSM: which one the host runs, which one the inventory wants --------------------------------

def host_lsms(facts: HostFacts) -> dict[str, Any]:
    lsm = facts.need("lsm")
    listed = [m for m in lsm.get("lsm", "").split(",") if m]
    return {
        "apparmor": lsm.get("apparmor", "").strip() == "Y" and (not listed or "apparmor" in listed),
        "selinux": lsm.get("selinux_enforce", "").strip() in ("0", "1"),
        "selinux_config": lsm.get("selinux_config_file") == "yes",
        "listed": listed,
    }


def wanted_lsm(asked: str, facts: HostFacts) -> str | None:
    """The LSM whose controls apply: the inventory's choice, or with auto the one the host runs
    (SELinux where it is on or configured, else AppArmor)."""
    if asked != "auto":
        return asked
    lsms = host_lsms(facts)
    if lsms["selinux"] or (lsms["selinux_config"] and not lsms["apparmor"]):
        return "selinux"
    return "apparmor"


def lsm_boot_params(asked: str, facts: HostFacts) -> list[str]:
    """Boot parameters that keep the host's LSM on: for auto only the LSM the host runs now."""
    lsms = host_lsms(facts)
    chosen = asked if asked != "auto" else ("selinux" if lsms["selinux"] else "apparmor" if lsms["apparmor"] else "")
    return {"apparmor": ["apparmor=1", "security=apparmor"], "selinux": ["selinux=1"]}.get(chosen, [])


def _mismatch(params: dict[str, Any], facts: HostFacts, mine: str) -> Verdict | None:
    """A verdict when this LSM's controls do not apply or cannot: SKIP for the other LSM, ERROR
    when the inventory asks for an LSM the host does not have while it runs the other one."""
    lsm = wanted_lsm(params["lsm"], facts)
    lsms = host_lsms(facts)
    other = "selinux" if mine == "apparmor" else "apparmor"
    if lsm != mine:
        return Verdict(SKIP, found=f"{mine} controls do not apply: hardline_lsm {params['lsm']} means {other} on this host "
                                   f"(LSMs enabled: {','.join(lsms['listed']) or 'none readable'})")
    if params["lsm"] == mine and not lsms[mine] and lsms[other]:
        return Verdict(ERROR, expected=f"{mine} (hardline_lsm: {mine})",
                       found=f"hardline_lsm is {mine} but this host runs {other} only "
                             f"(LSMs: {','.join(lsms['listed']) or other}): fix the inventory or the host")
    return None


# ---- kernel modules -----------------------------------------------------------------------------

def _norm(module: str) -> str:
    return module.replace("-", "_")


def check_kernel_module_disabled(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    modules = params["modules"]
    expected = f"modules {', '.join(modules)} cannot load (install /bin/false, blacklisted) and none is loaded"
    if not modules:
        return Verdict(SKIP, found="kernel_module_blacklist is empty")
    loaded_list = facts.need("proc_modules")
    if loaded_list is None:
        return Verdict(PASS, expected=expected, found="the kernel has no loadable module support (no /proc/modules)")
    loaded = {_norm(m) for m in loaded_list}
    dry = facts.need("modprobe")
    config = facts.need("modprobe_config")
    blacklisted = {_norm(w[1]) for w in config if w[0] == "blacklist" and len(w) > 1}
    problems, fine = [], []
    for module in modules:
        out = dry.get(module, "")
        if _norm(module) in loaded:
            problems.append(f"{module}: loaded now")
        if "not found in directory" in out or "Module " + module + " not found" in out:
            fine.append(f"{module}: not in this kernel")
            continue
        if out.startswith("builtin"):
            problems.append(f"{module}: built into the kernel (cannot be disabled by modprobe)")
            continue
        install = re.search(r"^install (\S+)", out, re.M)
        if not install or install.group(1) not in ("/bin/false", "/bin/true", "/usr/bin/false", "/usr/bin/true"):
            problems.append(f"{module}: modprobe would load it ({out.strip().splitlines()[-1] if out.strip() else 'no output'})")
        elif _norm(module) not in blacklisted:
            problems.append(f"{module}: install {install.group(1)} but not blacklisted")
        else:
            fine.append(f"{module}: install {install.group(1)}, blacklisted")
    found = "; ".join(problems) or f"all {len(modules)} disabled"
    return Verdict(FAIL if problems else PASS, expected=expected, found=found, evidence=fine if problems else [])


# ---- boot parameters ----------------------------------------------------------------------------

def wanted_boot_params(params: dict[str, Any], facts: HostFacts) -> list[str]:
    wanted = list(params["params"]) + lsm_boot_params(params["lsm"], facts)
    if params["cgroup_v2"]:
        wanted.append("systemd.unified_cgroup_hierarchy=1")
    return list(dict.fromkeys(wanted))


def check_boot_params(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    wanted = wanted_boot_params(params, facts)
    running = facts.need("cmdline")
    grub = facts.need("grub")
    expected = "the kernel runs with " + " ".join(wanted) + " (persisted in GRUB)"
    missing = [p for p in wanted if p not in running]
    boot_entries = {path: text.splitlines()[0].split() for path, text in grub.items() if text.strip()}
    if not boot_entries:
        if not missing:
            return Verdict(PASS, expected=expected, found=f"all {len(wanted)} parameters on the running kernel's command line "
                                                          "(host does not boot with GRUB: not persisted by hardline)")
        return Verdict(SKIP, expected=expected,
                       found=f"host does not boot with GRUB (no grub.cfg): missing {' '.join(missing)}; hardline sets "
                             "boot parameters through GRUB only, add them to this host's boot loader")
    path, words = next(iter(boot_entries.items()))
    unpersisted = [p for p in wanted if p not in words]
    problems = []
    if missing:
        problems.append(f"running kernel lacks {' '.join(missing)}"
                        + ("; grub.cfg has them: reboot pending" if not unpersisted else ""))
    if unpersisted:
        problems.append(f"default boot entry of {path.lstrip('/') if path == '/grubby' else path} lacks {' '.join(unpersisted)}")
    found = "; ".join(problems) or f"all {len(wanted)} parameters running and in {path}"
    return Verdict(FAIL if problems else PASS, expected=expected, found=found)


# ---- AppArmor -----------------------------------------------------------------------------------

def _profile_names(params: dict[str, Any]) -> list[str]:
    base = params["profile"]
    names = [base] + [f"{base}-{w}" for w in sorted(params.get("workloads") or {})]
    return names + (["docker-default"] if params.get("default") else [])


def check_apparmor(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict | list[Verdict]:
    aspect = params["aspect"]
    verdict = _mismatch(params, facts, "apparmor")
    if verdict:
        return verdict
    lsms = host_lsms(facts)
    if aspect == "enabled":
        expected = "AppArmor enabled in the running kernel"
        if not lsms["apparmor"]:
            why = "not built in or disabled at boot" if facts.need("lsm").get("apparmor") != "N" else "disabled (apparmor=0?)"
            return Verdict(FAIL, expected=expected, found=f"AppArmor is not enabled ({why}; LSMs: "
                                                          f"{','.join(lsms['listed']) or 'none readable'})")
        return Verdict(PASS, expected=expected, found=f"enabled (LSMs: {','.join(lsms['listed']) or 'apparmor'})")
    if not lsms["apparmor"]:
        return Verdict(FAIL, found="AppArmor is not enabled in the kernel: no profile can confine anything (see HL-2.1)")
    names = _profile_names(params)
    if aspect == "profiles":
        loaded = facts.need("apparmor_profiles")
        files = facts.need("apparmor_files")
        problems, found = [], []
        for name in names:
            path = f"/etc/apparmor.d/{name}"
            mode = loaded.get(name)
            if mode is None:
                problems.append(f"{name}: not loaded")
            elif mode != "enforce":
                problems.append(f"{name}: loaded in {mode} mode")
            if path not in files:
                problems.append(f"{name}: no {path} (not loaded again at boot)")
            elif name == "docker-default" and HARDLINE_MARK not in files[path]:
                problems.append(f"{path} is not hardline's hardened profile")
            if mode == "enforce" and path in files:
                found.append(f"{name}: enforce, {path}")
        return Verdict(FAIL if problems else PASS, expected=f"{', '.join(names)} loaded in enforce mode from /etc/apparmor.d",
                       found="; ".join(problems or found))
    allowed = set(names)
    return per_container(
        facts, f"AppArmorProfile one of {', '.join(sorted(allowed))}",
        lambda c: (c.raw.get("AppArmorProfile") in allowed, f"AppArmorProfile = {c.raw.get('AppArmorProfile')!r}"),
        f"docker run --security-opt apparmor={params['profile']} (compose: security_opt: "
        f"[\"apparmor={params['profile']}\"]), or apparmor_default_profile: true")


# ---- SELinux ------------------------------------------------------------------------------------

def check_selinux(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    verdict = _mismatch(params, facts, "selinux")
    if verdict:
        return verdict
    lsm = facts.need("lsm")
    enforce = lsm.get("selinux_enforce", "").strip()
    aspect = params["aspect"]
    if enforce not in ("0", "1"):
        return Verdict(FAIL, expected="SELinux enabled", found="SELinux is not enabled (no /sys/fs/selinux)")
    if aspect == "enforcing":
        config = lsm.get("selinux_config", "").strip()
        problems = ([] if enforce == "1" else ["running in permissive mode"]) + \
                   ([] if config == "enforcing" else [f"/etc/selinux/config has SELINUX={config or '(unset)'}"])
        return Verdict(FAIL if problems else PASS, expected="enforcing now and in /etc/selinux/config",
                       found="; ".join(problems) or "enforcing")
    if aspect == "daemon":
        eff = effective(facts)
        options = facts.need("info").get("SecurityOptions") or []
        ok = eff.get("selinux-enabled") is True and "name=selinux" in options
        return Verdict(PASS if ok else FAIL, expected="selinux-enabled: true, docker info reports name=selinux",
                       found=f"selinux-enabled = {eff.get('selinux-enabled')!r}; SecurityOptions {options}")
    booleans = facts.need("selinux_booleans")
    wanted = params["booleans"]
    if not wanted:
        return Verdict(SKIP, expected="the booleans of selinux_booleans", found="not asked: selinux_booleans is empty")
    problems = [f"{name} is {booleans.get(name, 'unknown')}, want {want}" for name, want in sorted(wanted.items())
                if booleans.get(name) != want]
    return Verdict(FAIL if problems else PASS, expected=", ".join(f"{k}={v}" for k, v in sorted(wanted.items())),
                   found="; ".join(problems) or "all set")


# ---- cgroups ------------------------------------------------------------------------------------

def cgroup_version(facts: HostFacts) -> str:
    fs = facts.need("cgroup_fs")
    return {"cgroup2fs": "v2 (unified)", "tmpfs": "v1 (legacy or hybrid)"}.get(fs, f"unknown ({fs})")


def check_cgroup_version(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    version = cgroup_version(facts)
    info_version = (facts.values.get("info") or {}).get("CgroupVersion")
    evidence = [f"docker info CgroupVersion {info_version}"] if info_version else []
    if not params["v2"]:
        return Verdict(SKIP, expected="any (kernel_cgroup_v2: false)", found=f"not asked (kernel_cgroup_v2: false); "
                       f"the host runs cgroup {version}", evidence=evidence)
    ok = version.startswith("v2")
    return Verdict(PASS if ok else FAIL, expected="cgroup v2 (unified hierarchy)", found=f"cgroup {version}"
                   + ("" if ok else "; boot with systemd.unified_cgroup_hierarchy=1 (HL-1.3)"), evidence=evidence)


UNITS_BYTES = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}
INFINITY = {"infinity", "max", "18446744073709551615", ""}


def _bytes(value: str) -> str:
    if value in INFINITY:
        return "infinity"
    return str(int(value[:-1]) * UNITS_BYTES[value[-1]]) if value[-1] in UNITS_BYTES else value


def _seconds(timespan: str) -> float | None:
    """systemd timespan (CPUQuotaPerSecUSec): "1.500000s", "500ms", "infinity"."""
    if timespan in INFINITY:
        return None
    match = re.fullmatch(r"([0-9.]+)(us|ms|s|min)", timespan)
    if not match:
        return None
    return float(match.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1, "min": 60}[match.group(2)]


def _configured(key: str, want: str, unit: dict[str, str]) -> tuple[bool, str]:
    if key == "CPUQuota":
        have_s = _seconds(unit.get("CPUQuotaPerSecUSec", ""))
        want_s = int(want.rstrip("%")) / 100
        return have_s is not None and abs(have_s - want_s) < 1e-3, f"CPUQuotaPerSecUSec={unit.get('CPUQuotaPerSecUSec')}"
    if key in ("MemoryMax", "MemoryHigh"):
        have = _bytes(unit.get(key, ""))
        return have == _bytes(want), f"{key}={unit.get(key)}"
    if key == "TasksMax":
        have = unit.get(key, "")
        return (have in INFINITY and want == "infinity") or have == want, f"TasksMax={have}"
    have = unit.get(key, "")
    return have == want, f"{key}={have}"


def _runtime(key: str, want: str, files: dict[str, str]) -> tuple[bool, str] | None:
    """The kernel's own value in the unit's cgroup v2 directory, when readable."""
    name = {"CPUQuota": "cpu.max", "CPUWeight": "cpu.weight", "MemoryMax": "memory.max", "MemoryHigh": "memory.high",
            "TasksMax": "pids.max"}[key]
    if name not in files:
        return None
    value = files[name]
    if key == "CPUQuota":
        quota, _, period = value.partition(" ")
        ok = quota != "max" and abs(int(quota) / int(period or 100000) - int(want.rstrip("%")) / 100) < 1e-3
    elif key in ("MemoryMax", "MemoryHigh"):
        ok = _bytes(value) == _bytes(want)
    elif key == "TasksMax":
        ok = value == ("max" if want == "infinity" else want)
    else:
        ok = value == want
    return ok, f"{name}={value}"


def check_engine_limits(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    limits = params["limits"]
    expected = ", ".join(f"{k}={v}" for k, v in sorted(limits.items())) + f" on {', '.join(params['units'])}"
    if not limits:
        return Verdict(SKIP, found="cgroup_engine_limits is empty")
    engine = facts.need("engine_units")
    if engine is None:
        return Verdict(SKIP, expected=expected, found="no systemd running on this host: engine units not managed by systemd")
    cgroup: dict[str, dict[str, str]] = {}
    for unit, name, value in engine["cgroup"]:
        cgroup.setdefault(unit, {})[name] = value
    problems, found = [], []
    for wanted_unit, unit in zip(params["units"], engine["units"]):
        name = unit.get("Id") or wanted_unit
        if unit.get("LoadState") == "not-found":
            found.append(f"{wanted_unit}: not on this host")
            continue
        for key, want in sorted(limits.items()):
            ok, have = _configured(key, want, unit)
            if not ok:
                problems.append(f"{name}: {have}, want {key}={want}")
                continue
            runtime = _runtime(key, want, cgroup.get(wanted_unit, cgroup.get(name, {})))
            if runtime and not runtime[0]:
                problems.append(f"{name}: configured {have} but its cgroup has {runtime[1]}")
            else:
                found.append(f"{name}: {have}" + (f" ({runtime[1]})" if runtime else ""))
    return Verdict(FAIL if problems else PASS, expected=expected, found="; ".join(problems or found))


# ---- packages and services ----------------------------------------------------------------------

def check_packages_absent(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    if not params["packages"]:
        return Verdict(SKIP, found="not asked: platform_packages_absent is empty")
    packages = facts.need("packages")
    installed = sorted(p for p, status in packages.items() if status.split()[-1:] in (["installed"], ["unpacked"],
                                                                                     ["half-configured"]))
    expected = f"none of {len(params['packages'])} unneeded packages installed"
    found = f"installed: {', '.join(installed)}" if installed else "none installed"
    return Verdict(FAIL if installed else PASS, expected=expected, found=found,
                   evidence=[f"fix: apt-get remove {' '.join(installed)}"] if installed else [])


def check_services_masked(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    units = params["units"]
    if not units:
        return Verdict(SKIP, found="platform_services_masked is empty")
    blocks = facts.need("services")
    if blocks is None:
        return Verdict(SKIP, found="no systemd running on this host")
    expected = f"{len(units)} unneeded units masked (or absent) and inactive"
    problems, present = [], []
    for name, block in zip(units, blocks):
        load, state, active = block.get("LoadState"), block.get("UnitFileState", ""), block.get("ActiveState")
        if load == "not-found" and active in ("inactive", None):
            continue
        present.append(name)
        if load != "masked" and state != "masked":
            problems.append(f"{name}: {state or load}, {active}")
        elif active not in ("inactive", "failed"):
            problems.append(f"{name}: masked but still {active}")
    found = "; ".join(problems) or (f"masked: {', '.join(present)}" if present else "none of them on this host")
    return Verdict(FAIL if problems else PASS, expected=expected, found=found)


# ---- audit rules --------------------------------------------------------------------------------

def normalize_rule(rule: str) -> tuple | None:
    """A rule as auditctl -l prints it or as written in a rules file, in a comparable form."""
    try:
        words = shlex.split(rule, comments=True)
    except ValueError:
        return None
    if not words:
        return None
    opts: dict[str, Any] = {"-F": set(), "-S": set()}
    i = 0
    while i < len(words):
        word = words[i]
        value = words[i + 1] if i + 1 < len(words) else ""
        if word in ("-w", "-p", "-k", "-a"):
            opts[word] = value
            i += 2
        elif word == "-F":
            if value.startswith(("key=", "k=")):
                opts["-k"] = value.split("=", 1)[1]
            else:
                opts["-F"].add(value)
            i += 2
        elif word == "-S":
            opts["-S"].update(value.split(","))
            i += 2
        else:
            opts.setdefault("other", []).append(word)
            i += 1
    if "-w" in opts:
        return ("watch", opts["-w"].rstrip("/") or "/", frozenset(opts.get("-p", "rwxa")), opts.get("-k"))
    if "-a" in opts:
        action = ",".join(sorted(opts["-a"].split(",")))
        return ("syscall", action, frozenset(opts["-F"]), frozenset(opts["-S"]), opts.get("-k"))
    return ("other", tuple(words))


def check_audit_rules(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    rules = params["rules"]
    if not rules:
        return Verdict(SKIP, found="auditd_platform_rules is empty")
    loaded = {normalize_rule(r) for r in facts.need("audit_rules")}
    files = facts.need("audit_files")
    persisted = {normalize_rule(line) for text in files.values() for line in text.splitlines()}
    existing = set(facts.need("audit_watch_paths"))
    problems, checked, absent = [], 0, []
    for rule in rules:
        norm = normalize_rule(rule)
        if norm and norm[0] == "watch" and norm[1] not in {p.rstrip("/") for p in existing}:
            absent.append(norm[1])
            continue
        checked += 1
        if norm not in loaded:
            problems.append(f"not loaded: {rule}")
        if norm not in persisted:
            problems.append(f"not in any rules file: {rule}")
    evidence = [f"not on this host, not required: {', '.join(absent)}"] if absent else []
    found = "; ".join(problems) or f"all {checked} rules loaded and persisted"
    return Verdict(FAIL if problems else PASS, expected=f"{len(rules)} platform audit rules loaded and persisted",
                   found=found, evidence=evidence)


def check_audit_immutable(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    if not params["immutable"]:
        return Verdict(SKIP, found="not asked (auditd_immutable: false): the audit rules stay changeable")
    status = facts.need("audit_status")
    files = facts.need("audit_files")
    enabled = status.get("enabled", "?").strip()
    persisted = any(normalize_rule(line) == ("other", ("-e", "2")) for text in files.values() for line in text.splitlines())
    problems = ([] if enabled == "2" else [f"auditctl -s reports enabled {enabled}"]) + \
               ([] if persisted else ["no -e 2 in the rules files (lost at reboot)"])
    return Verdict(FAIL if problems else PASS, expected="audit rules immutable (enabled 2), -e 2 persisted",
                   found="; ".join(problems) or "enabled 2, -e 2 persisted")

