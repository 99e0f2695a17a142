"""Kernel hardening: sysctl profile (HL-1.1), module blacklist (HL-1.2), boot parameters through
GRUB (HL-1.3, with cgroup v2 and the LSM), and the reboot they need when the inventory allows it."""

import shlex

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, server

from hardline.deploys.common import DEFAULTS, TEMPLATES, HardlineDataError, controls, host_config, op_name
from hardline.deploys.platform_facts import BootLoader, HostLsm, LoadedModules, MissingSysctls


@deploy("Kernel parameters", data_defaults=DEFAULTS)
def sysctls():
    config = host_config()
    for control in controls(config, "sysctl"):
        params = control.resolve(config.data)
        missing = host.get_fact(MissingSysctls, keys=sorted(params["settings"]))
        if missing:
            raise HardlineDataError(
                f"host {config.name}: sysctl_settings: {', '.join(missing)} not known to this host's kernel "
                f"(no /proc/sys/{missing[0].replace('.', '/')}); remove it from the inventory or load its module")
        files.template(
            name=op_name(control, f"Persist sysctl profile in {params['persist_file']}"),
            src=str(TEMPLATES / "etc/sysctl.d/hardline.conf.j2"),
            dest=params["persist_file"], user="root", group="root", mode="644",
            settings=params["settings"],
        )
        for key, value in sorted(params["settings"].items()):
            server.sysctl(name=op_name(control, f"sysctl {key}={value}"), key=key, value=value)


@deploy("Kernel modules", data_defaults=DEFAULTS)
def kernel_modules():
    config = host_config()
    for control in controls(config, "kernel_module_disabled"):
        params = control.resolve(config.data)
        if not params["modules"]:
            continue
        files.template(
            name=op_name(control, f"Module blacklist in {params['file']}"),
            src=str(TEMPLATES / "etc/modprobe.d/hardline-blacklist.conf.j2"),
            dest=params["file"], user="root", group="root", mode="644", create_remote_dir=True,
            modules=params["modules"],
        )
        loaded = {m.replace("-", "_") for m in host.get_fact(LoadedModules) or []}
        for module in params["modules"]:
            if module.replace("-", "_") in loaded:
                # a module in use (a mounted udf disc...) stays: the check keeps failing and says so
                server.shell(name=op_name(control, f"Unload {module}"),
                             commands=[f"modprobe -r {shlex.quote(module)} || "
                                       f"echo 'hardline: {module} is in use, not unloaded' >&2"])


def lsm_boot_params(asked: str, lsm: dict) -> list[str]:
    """Boot parameters keeping the LSM on: the inventory's, or with auto the one running now."""
    chosen = asked if asked != "auto" else ("selinux" if lsm["selinux"] else "apparmor" if lsm["apparmor"] else None)
    return {"apparmor": ["apparmor=1", "security=apparmor"], "selinux": ["selinux=1"]}.get(chosen, [])


@deploy("Boot parameters", data_defaults=DEFAULTS)
def boot_params():
    """GRUB hosts: /etc/default/grub.d/60-hardline.cfg and update-grub (grubby on the RHEL
    family). The change needs a reboot: done at the end of the deploy only when kernel_reboot."""
    config = host_config()
    for control in controls(config, "boot_params"):
        params = control.resolve(config.data)
        wanted = list(params["params"]) + lsm_boot_params(params["lsm"], host.get_fact(HostLsm))
        if params["cgroup_v2"]:  # remediates HL-4.1 (kind "cgroup_version") as well
            wanted.append("systemd.unified_cgroup_hierarchy=1")
        wanted = list(dict.fromkeys(wanted))
        loader = host.get_fact(BootLoader)
        if loader is None:
            host.noop(f"[{control.key}] host does not boot with GRUB (no grub.cfg): boot "
                      f"parameters {' '.join(wanted)} are not managed; set them in its boot loader")
            continue
        if loader["kind"] == "grubby":
            missing = [p for p in wanted if p not in loader["args"]]
            if missing:
                changed = server.shell(name=op_name(control, f"grubby: add {' '.join(missing)} (reboot needed)"),
                                       commands=[f"grubby --update-kernel=ALL --args={shlex.quote(' '.join(missing))}"])
                _reboot_if(config, changed)
            continue
        if loader["mkconfig"] is None:
            raise HardlineDataError(f"host {config.name}: {loader['cfg']} exists but neither update-grub nor "
                                    "grub-mkconfig is installed: cannot regenerate it")
        cfg = files.template(
            name=op_name(control, f"GRUB command line: {' '.join(wanted)} (reboot needed)"),
            src=str(TEMPLATES / "etc/default/grub.d/60-hardline.cfg.j2"),
            dest="/etc/default/grub.d/60-hardline.cfg", user="root", group="root", mode="644",
            create_remote_dir=True, params=wanted,
        )
        stale = any(p not in loader["args"] for p in wanted)
        regenerated = server.shell(name=op_name(control, f"Regenerate {loader['cfg']}"), commands=[loader["mkconfig"]],
                                   _if=lambda: cfg.did_change() or stale)
        _reboot_if(config, regenerated)


def _reboot_if(config, changed) -> None:
    if config.data["kernel_reboot"]:
        server.reboot(name="Reboot for the new boot parameters (kernel_reboot: true)", _if=changed.did_change)
    else:
        host.noop("boot parameters take effect at the next reboot (kernel_reboot: false)")
