"""Docker daemon: daemon.json from the catalog's daemon options and inventory, the systemd drop-in."""

from __future__ import annotations

from typing import Any

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import systemd

from hardline.deploys.common import DEFAULTS, controls, host_config, render
from hardline.deploys.facts import DaemonJson
from hardline.deploys.gather import Need, host_facts, need
from hardline.deploys.operations.converge import file_needs, managed_file
from hardline.deploys.operations.hardening import daemon_json
from hardline.inventory import HostConfig

# host data key: the daemon.json path this run writes (read by the audit deploy, which runs later)
DAEMON_JSON_PLANNED = "_hardline_daemon_json_planned"

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


def _dropin(config: HostConfig) -> str:
    return f"/etc/systemd/system/{config.data['docker_service_name']}.service.d/hardline.conf"


def needs(config: HostConfig) -> list[Need]:
    """Every fact the daemon deploy reads, for one batch."""
    return [need(DaemonJson, path=config.data["docker_daemon_json_path"]), *file_needs(_dropin(config))]


@deploy("Docker daemon", data_defaults=DEFAULTS)
def docker_daemon() -> None:
    config = host_config()
    facts = host_facts()
    facts.prefetch(needs(config))
    data = config.data
    service = data["docker_service_name"]
    dropin_settings = dict(data["docker_systemd_dropin"])  # validated systemd_settings: one line each
    if dropin_settings or data["docker_systemd_ignore_default_file"]:
        dropin = managed_file(
            name="Docker systemd drop-in (flags only from daemon.json)", dest=_dropin(config), create_remote_dir=True,
            content=render("etc/systemd/system/docker.service.d/hardline.conf.j2",
                           ignore_default_file=data["docker_systemd_ignore_default_file"], settings=dropin_settings))
        if dropin.will_change:  # known from the gathered facts: no conditional operation on a compliant host
            systemd.daemon_reload(name="systemd daemon-reload for the drop-in", _if=dropin.did_change)
    current = facts.get(DaemonJson, path=data["docker_daemon_json_path"])
    setattr(host.data, DAEMON_JSON_PLANNED, data["docker_daemon_json_path"])
    daemon_json(
        name="[cis-docker:1.6.0:2.x] daemon.json: " + ", ".join(
            f"{c.id} {c.params['key']}" for c in controls(config, "daemon_option") if "set" in c.params),
        path=data["docker_daemon_json_path"], settings=desired_settings(config, current), service=service,
        socket=data["docker_socket_path"], restart_timeout=data["docker_restart_timeout"],
    )
