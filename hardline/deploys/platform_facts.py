"""pyinfra facts the platform deploys (kernel, LSM, cgroups, services, audit) read."""

from __future__ import annotations

import shlex
from typing import Any

from pyinfra.api import FactBase
from pyinfra.api.command import QuoteString, StringCommand
from typing_extensions import override


def _args(values: list[str]) -> list[QuoteString]:
    return [QuoteString(v) for v in values]


class HostLsm(FactBase):
    """
    Which Linux security modules the running kernel has enabled.

    .. code:: python

        {"apparmor": True, "selinux": False, "selinux_config": False, "lsm": ["lockdown", "apparmor"]}
    """

    @override
    def command(self) -> str:
        return ("printf 'lsm=%s\\n' \"$(cat /sys/kernel/security/lsm 2>/dev/null)\"; "
                "printf 'apparmor=%s\\n' \"$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)\"; "
                "printf 'selinux=%s\\n' \"$(cat /sys/fs/selinux/enforce 2>/dev/null)\"; "
                "printf 'config=%s\\n' \"$([ -f /etc/selinux/config ] && echo yes)\"")

    @override
    def process(self, output: list[str]) -> dict[str, Any]:
        raw = dict(line.split("=", 1) for line in output if "=" in line)
        listed = [m for m in raw.get("lsm", "").split(",") if m]
        return {"apparmor": raw.get("apparmor") == "Y" and (not listed or "apparmor" in listed),
                "selinux": raw.get("selinux") in ("0", "1"), "selinux_config": raw.get("config") == "yes",
                "enforce": raw.get("selinux", ""), "lsm": listed}


class LoadedModules(FactBase):
    """Names of loaded kernel modules (/proc/modules), or None without module support."""

    @override
    def command(self) -> str:
        return "cat /proc/modules 2>/dev/null || echo @@NOMODULES"

    @override
    def process(self, output: list[str]) -> list[str] | None:
        if output and output[0] == "@@NOMODULES":
            return None
        return [line.split()[0] for line in output if line.strip()]


class AppArmorProfiles(FactBase):
    """Loaded AppArmor profiles and their mode: {"docker-default": "enforce"} ({} when none)."""

    @override
    def command(self) -> str:
        return "cat /sys/kernel/security/apparmor/profiles 2>/dev/null || true"

    @override
    def process(self, output: list[str]) -> dict[str, str]:
        loaded = {}
        for line in output:
            name, _, mode = line.rstrip().rpartition(" (")
            if name:
                loaded[name] = mode.rstrip(")")
        return loaded

    default = dict


class BootLoader(FactBase):
    """
    How the host boots: "grub" (grub.cfg and update-grub or grub-mkconfig), "grubby" (RHEL
    family), or None. With the default entry's kernel arguments when readable, and the running
    kernel's (/proc/cmdline: what differs from the default entry waits for a reboot).

    .. code:: python

        {"kind": "grub", "cfg": "/boot/grub/grub.cfg", "mkconfig": "update-grub", "args": ["ro", "quiet"],
         "running": ["BOOT_IMAGE=/boot/vmlinuz-6.1.0-13-amd64", "root=UUID=...", "ro", "quiet"]}
    """

    @override
    def command(self) -> str:
        return ("for f in /boot/grub/grub.cfg /boot/grub2/grub.cfg; do [ -f \"$f\" ] && { echo \"cfg=$f\"; "
                "grep -m1 -E '^[[:space:]]*linux(16|efi)?[[:space:]]' \"$f\" | sed 's/^/args=/'; break; }; done; "
                "for t in grubby update-grub grub-mkconfig grub2-mkconfig; do "
                "command -v $t >/dev/null && echo \"tool=$t\"; done; "
                "echo \"running=$(cat /proc/cmdline)\"; true")

    @override
    def process(self, output: list[str]) -> dict[str, Any] | None:
        raw: dict[str, Any] = {"tools": []}
        for line in output:
            key, _, value = line.partition("=")
            if key == "tool":
                raw["tools"].append(value)
            else:
                raw[key] = value
        if "cfg" not in raw:
            return None
        tools = raw["tools"]
        kind = "grubby" if "grubby" in tools and "/grub2/" in raw["cfg"] else "grub"
        cfg = shlex.quote(raw["cfg"])
        mkconfig = ("update-grub" if "update-grub" in tools else
                    f"grub-mkconfig -o {cfg}" if "grub-mkconfig" in tools else
                    f"grub2-mkconfig -o {cfg}" if "grub2-mkconfig" in tools else None)
        return {"kind": kind, "cfg": raw["cfg"], "mkconfig": mkconfig, "args": raw.get("args", "").split()[2:],
                "running": raw.get("running", "").split()}


class UnitStates(FactBase):
    """systemd load, unit file and active state of units; None when systemd is not running.

    .. code:: python

        [{"LoadState": "loaded", "UnitFileState": "enabled", "ActiveState": "active"}]  # one per unit, in order
    """

    @override
    def command(self, units: list[str]) -> StringCommand:
        script = ('[ -d /run/systemd/system ] || { echo @@NOSYSTEMD; exit 0; }; [ $# -gt 0 ] || exit 0; '
                  'systemctl show -p LoadState -p UnitFileState -p ActiveState -p CPUQuotaPerSecUSec -p CPUWeight '
                  '-p MemoryMax -p MemoryHigh -p TasksMax "$@"')
        return StringCommand("sh -c", QuoteString(script), "_", *_args(units))

    @override
    def process(self, output: list[str]) -> list[dict[str, str]] | None:
        if output and output[0] == "@@NOSYSTEMD":
            return None
        blocks: list[dict[str, str]] = []
        current: dict[str, str] = {}
        for line in output + [""]:
            if not line.strip():
                if current:
                    blocks.append(current)
                current = {}
            else:
                key, _, value = line.partition("=")
                current[key] = value
        return blocks  # in the order of the units asked for


class ExistingPaths(FactBase):
    """The given paths that exist on the host."""

    @override
    def command(self, paths: list[str]) -> StringCommand:
        return StringCommand("sh -c", QuoteString('for p in "$@"; do [ -e "$p" ] && echo "$p"; done; true'), "_",
                             *_args(paths))

    @override
    def process(self, output: list[str]) -> list[str]:
        return [line for line in output if line]

    default = list


class AuditEnabled(FactBase):
    """auditctl -s "enabled" value: 0, 1 or 2 (immutable); None when auditctl fails."""

    @override
    def command(self) -> str:
        return "auditctl -s 2>/dev/null | sed -n 's/^enabled //p' || true"

    @override
    def process(self, output: list[str]) -> str | None:
        return output[0].strip() if output and output[0].strip() else None


class InstalledPackages(FactBase):
    """Which of the given packages are installed (dpkg or rpm)."""

    @override
    def command(self, packages: list[str]) -> StringCommand:
        script = ('[ $# -gt 0 ] || exit 0; if command -v dpkg-query >/dev/null; then '
                  'dpkg-query -W -f=\'${Package} ${Status}\\n\' "$@" 2>/dev/null | sed -n "s/ install ok installed$//p"; '
                  'elif command -v rpm >/dev/null; then rpm -q --qf "%{NAME}\\n" "$@" | grep -v "is not installed"; fi; true')
        return StringCommand("sh -c", QuoteString(script), "_", *_args(packages))

    @override
    def process(self, output: list[str]) -> list[str]:
        return [line.strip() for line in output if line.strip()]

    default = list


class SelinuxBooleans(FactBase):
    """SELinux booleans and their values: {"container_manage_cgroup": "off"} ({} without SELinux)."""

    @override
    def command(self) -> str:
        return "getsebool -a 2>/dev/null || true"

    @override
    def process(self, output: list[str]) -> dict[str, str]:
        return {k.strip(): v.strip() for k, _, v in (line.partition("-->") for line in output) if v}

    default = dict
