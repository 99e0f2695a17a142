"""Who may use Docker (CIS 1.1.2) and the user namespace remap user (CIS 2.9)."""

from __future__ import annotations

from pyinfra.api import deploy
from pyinfra.facts.files import FileContents

from hardline.deploys.common import DEFAULTS, controls, host_config, op_name
from hardline.deploys.facts import GroupMembers, PasswdEntry
from hardline.deploys.gather import Need, host_facts, need
from hardline.deploys.operations.converge import line_in_file, system_user
from hardline.deploys.operations.hardening import group_members_only
from hardline.inventory import HostConfig

SUBID_FILES = ("/etc/subuid", "/etc/subgid")


def remap_user(config: HostConfig) -> str | None:
    """The user namespace remap user the deploy creates (None: no remapping, or Docker's own)."""
    if not any(c.params["key"] == "userns-remap" for c in controls(config, "daemon_option")):
        return None
    user = config.data["docker_userns_remap"]
    return user if user and user != "default" else None


def needs(config: HostConfig) -> list[Need]:
    """Every fact the users deploy reads, for one batch."""
    out = [need(GroupMembers, group=c.resolve(config.data)["group"]) for c in controls(config, "group_members")]
    if remap_user(config):
        out += [need(PasswdEntry, user=remap_user(config)), *(need(FileContents, path=p) for p in SUBID_FILES)]
    return out


@deploy("Docker users", data_defaults=DEFAULTS)
def docker_users() -> None:
    config = host_config()
    host_facts().prefetch(needs(config))
    for control in controls(config, "group_members"):
        params = control.resolve(config.data)
        group_members_only(name=op_name(control, f"Only trusted users in group {params['group']}"),
                           group=params["group"], allowed=list(params["allowed"]))
    user = remap_user(config)
    if user:
        control = next(c for c in controls(config, "daemon_option") if c.params["key"] == "userns-remap")
        system_user(name=op_name(control, f"Remap user {user}"), user=user)
        subids = f"{user}:{config.data['docker_userns_subid_start']}:{config.data['docker_userns_subid_count']}"
        for path in SUBID_FILES:
            # a user name has letters, digits, _ . - (validated): only the dot needs escaping
            line_in_file(name=op_name(control, f"{path} range for {user}"), path=path,
                         line=f"^{user.replace('.', '[.]')}:.*$", replace=subids)
