"""Kernel hardening: sysctl profile (HL-1.1), module blacklist (HL-1.2), boot parameters through
GRUB (HL-1.3, with cgroup v2 and the LSM), and the reboot they need when the inventory allows it."""

from __future__ import annotations

from typing import Any

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.command import QuoteString, StringCommand
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.server import Sysctl
from pyinfra.operations import server

from hardline.deploys.common import DEFAULTS, HardlineDataError, controls, host_config, op_name, render
from hardline.deploys.gather import Need, host_facts, need
from hardline.deploys.operations.converge import file_needs, managed_file, module_unloaded, sysctl_value
from hardline.deploys.platform_facts import BootLoader, HostLsm, LoadedModules
from hardline.inventory import HostConfig

GRUB_FILE = "/etc/default/grub.d/60-hardline.cfg"


def needs(config: HostConfig) -> list[Need]:
    """Every fact the kernel deploys read, for one batch."""
    out: list[Need] = []
    for control in controls(config, "sysctl"):
        params = control.resolve(config.data)
        out += [need(Sysctl, keys=sorted(params["settings"])), *file_needs(params["persist_file"])]
    for control in controls(config, "kernel_module_disabled"):
        out += [need(LoadedModules), *file_needs(control.resolve(config.data)["file"])]
    if controls(config, "boot_params"):
        out += [need(HostLsm), need(BootLoader), *file_needs(GRUB_FILE)]
    return out


@deploy("Kernel parameters", data_defaults=DEFAULTS)
def sysctls() -> None:
    config = host_config()
    facts = host_facts()
    facts.prefetch(needs(config))
    for control in controls(config, "sysctl"):
        params = control.resolve(config.data)
        keys = sorted(params["settings"])
        current = facts.get(Sysctl, keys=keys)
        missing = [k for k in keys if k not in current]
        if missing:
            raise HardlineDataError(
                f"host {config.name}: sysctl_settings: {', '.join(missing)} not known to this host's kernel "
                f"(no /proc/sys/{missing[0].replace('.', '/')}); remove it from the inventory or load its module")
        managed_file(name=op_name(control, f"Persist sysctl profile in {params['persist_file']}"),
                     dest=params["persist_file"], content=render("etc/sysctl.d/hardline.conf.j2", settings=params["settings"]))
        for key in keys:
            value = params["settings"][key]
            sysctl_value(name=op_name(control, f"sysctl {key}={value}"), key=key, value=value, keys=keys)


@deploy("Kernel modules", data_defaults=DEFAULTS)
def kernel_modules() -> None:
    config = host_config()
    host_facts().prefetch(needs(config))
    for control in controls(config, "kernel_module_disabled"):
        params = control.resolve(config.data)
        if not params["modules"]:
            continue
        managed_file(name=op_name(control, f"Module blacklist in {params['file']}"), dest=params["file"],
                     content=render("etc/modprobe.d/hardline-blacklist.conf.j2", modules=params["modules"]),
                     create_remote_dir=True)
        for module in params["modules"]:
            module_unloaded(name=op_name(control, f"Unload {module}"), module=module)


def lsm_boot_params(asked: str, lsm: dict[str, Any]) -> list[str]:
    """Boot parameters keeping the LSM on: the inventory's, or with auto the one running now."""
    chosen = asked if asked != "auto" else ("selinux" if lsm["selinux"] else "apparmor" if lsm["apparmor"] else None)
    return {"apparmor": ["apparmor=1", "security=apparmor"], "selinux": ["selinux=1"]}.get(chosen or "", [])


@deploy("Boot parameters", data_defaults=DEFAULTS)
def boot_params() -> None:
    """GRUB hosts: /etc/default/grub.d/60-hardline.cfg and update-grub (grubby on the RHEL
    family). The change needs a reboot: done at the end of the deploy only when kernel_reboot."""
    config = host_config()
    facts = host_facts()
    facts.prefetch(needs(config))
    for control in controls(config, "boot_params"):
        params = control.resolve(config.data)
        wanted = list(params["params"]) + lsm_boot_params(params["lsm"], facts.get(HostLsm))
        if params["cgroup_v2"]:  # remediates HL-4.1 (kind "cgroup_version") as well
            wanted.append("systemd.unified_cgroup_hierarchy=1")
        wanted = list(dict.fromkeys(wanted))
        loader = facts.get(BootLoader)
        if loader is None:
            host.noop(f"[{control.key}] host does not boot with GRUB (no grub.cfg): boot "
                      f"parameters {' '.join(wanted)} are not managed; set them in its boot loader")
            continue
        # persisted by an earlier deploy (without kernel_reboot) but not running yet: a reboot is pending
        pending = all(p in loader["args"] for p in wanted) and any(p not in loader["running"] for p in wanted)
        if loader["kind"] == "grubby":
            missing = [p for p in wanted if p not in loader["args"]]
            changed = None
            if missing:
                changed = server.shell(name=op_name(control, f"grubby: add {' '.join(missing)} (reboot needed)"),
                                       commands=[StringCommand("grubby --update-kernel=ALL",
                                                               QuoteString("--args=" + " ".join(missing))).get_raw_value()])
            if changed is not None or pending:
                _reboot_if(config, changed, pending)
            continue
        if loader["mkconfig"] is None:
            raise HardlineDataError(f"host {config.name}: {loader['cfg']} exists but neither update-grub nor "
                                    "grub-mkconfig is installed: cannot regenerate it")
        # update-grub sources this file as shell: every parameter is a validated boot_param
        cfg = managed_file(name=op_name(control, f"GRUB command line: {' '.join(wanted)} (reboot needed)"),
                           dest=GRUB_FILE, content=render("etc/default/grub.d/60-hardline.cfg.j2", params=wanted),
                           create_remote_dir=True)
        stale = any(p not in loader["args"] for p in wanted)
        regenerated = None
        if stale:  # grub.cfg lacks some: regenerate it now
            regenerated = server.shell(name=op_name(control, f"Regenerate {loader['cfg']}"), commands=[loader["mkconfig"]])
        elif cfg.will_change:
            regenerated = server.shell(name=op_name(control, f"Regenerate {loader['cfg']}"), commands=[loader["mkconfig"]],
                                       _if=cfg.did_change)
        if regenerated is not None or pending:
            _reboot_if(config, regenerated, pending)


def _reboot_if(config: HostConfig, changed: OperationMeta | None, pending: bool = False) -> None:
    """Reboot (kernel_reboot) when this run changed the boot configuration, or when an earlier run
    persisted parameters the running kernel still lacks: switching kernel_reboot on after a deploy
    without it performs the pending reboot."""
    if config.data["kernel_reboot"]:
        def needed() -> bool:
            return pending or (changed is not None and changed.did_change())

        server.reboot(name="Reboot for the new boot parameters (kernel_reboot: true)", _if=needed)
    else:
        host.noop("boot parameters take effect at the next reboot (kernel_reboot: false)")
