"""Kernel hardening: sysctl profile from inventory, applied now and persisted."""

from pyinfra.api import deploy
from pyinfra.operations import files, server

from deploys.common import DEFAULTS, TEMPLATES, controls, host_config, op_name


@deploy("Kernel parameters", data_defaults=DEFAULTS)
def sysctls():
    config = host_config()
    for control in controls(config, "sysctl"):
        params = control.resolve(config.data)
        files.template(
            name=op_name(control, f"Persist sysctl profile in {params['persist_file']}"),
            src=str(TEMPLATES / "etc/sysctl.d/hardline.conf.j2"),
            dest=params["persist_file"], user="root", group="root", mode="644",
            settings=params["settings"],
        )
        for key, value in sorted(params["settings"].items()):
            server.sysctl(name=op_name(control, f"sysctl {key}={value}"), key=key, value=value)
