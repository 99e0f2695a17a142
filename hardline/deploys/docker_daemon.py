"""Docker daemon: daemon.json from the catalog's daemon options and inventory, the systemd drop-in."""

from __future__ import annotations

from typing import Any

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, systemd

from hardline.deploys.common import DEFAULTS, TEMPLATES, controls, host_config
from hardline.deploys.facts import DaemonJson
from hardline.deploys.operations.hardening import daemon_json
from hardline.inventory import HostConfig

# Keys hardline sets from its own variables besides the daemon_option controls.
VARIABLE_KEYS = ("log-opts", "default-ulimits")


def desired_settings(config: HostConfig, current: dict[str, Any]) -> dict[str, Any]:
    """daemon.json content: keys of applied controls, log options, ulimits, extra keys; any key
    hardline does not manage (or whose control is waived) is kept as found, so that settings
    such as data-root are never dropped."""
    applied = [c for c in controls(config, "daemon_option") if "set" in c.params]
    managed = {c.params["key"] for c in applied} | set(VARIABLE_KEYS)
    settings = {k: v for k, v in current.items() if k not in managed and k != "__invalid__"}
    for control in applied:
        value = control.resolve(config.data)["set"]
        if value not in ("", [], None):  # empty means "leave dockerd's default"
            settings[control.params["key"]] = value
    if config.data["docker_log_opts"]:
        settings["log-opts"] = dict(config.data["docker_log_opts"])
    ulimits = config.data["docker_default_ulimits"]
    if ulimits:
        settings["default-ulimits"] = {n: {"Name": n, "Soft": v["soft"], "Hard": v["hard"]} for n, v in ulimits.items()}
    settings.update(config.data["docker_daemon_extra"])
    return settings


@deploy("Docker daemon", data_defaults=DEFAULTS)
def docker_daemon():
    config = host_config()
    data = config.data
    service = data["docker_service_name"]
    dropin_settings = dict(data["docker_systemd_dropin"])
    if dropin_settings or data["docker_systemd_ignore_default_file"]:
        dropin = files.template(
            name="Docker systemd drop-in (flags only from daemon.json)",
            src=str(TEMPLATES / "etc/systemd/system/docker.service.d/hardline.conf.j2"),
            dest=f"/etc/systemd/system/{service}.service.d/hardline.conf", user="root", group="root", mode="644",
            create_remote_dir=True, ignore_default_file=data["docker_systemd_ignore_default_file"],
            settings=dropin_settings,
        )
        systemd.daemon_reload(name="systemd daemon-reload for the drop-in", _if=dropin.did_change)
    current = host.get_fact(DaemonJson, path=data["docker_daemon_json_path"])
    daemon_json(
        name="[cis-docker:1.6.0:2.x] daemon.json: " + ", ".join(
            f"{c.id} {c.params['key']}" for c in controls(config, "daemon_option") if "set" in c.params),
        path=data["docker_daemon_json_path"], settings=desired_settings(config, current), service=service,
        socket=data["docker_socket_path"], restart_timeout=data["docker_restart_timeout"],
    )
