"""Who may use Docker (CIS 1.1.2) and the user namespace remap user (CIS 2.9)."""

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, server

from hardline.deploys.common import DEFAULTS, controls, host_config, op_name
from hardline.deploys.facts import GroupMembers


@deploy("Docker users", data_defaults=DEFAULTS)
def docker_users():
    config = host_config()
    for control in controls(config, "group_members"):
        params = control.resolve(config.data)
        members = host.get_fact(GroupMembers, group=params["group"]) or []
        for user in sorted(set(members) - set(params["allowed"])):
            server.shell(name=op_name(control, f"Remove untrusted {user} from group {params['group']}"),
                         commands=[f"gpasswd -d {user} {params['group']}"])
    remap = [c for c in controls(config, "daemon_option") if c.params["key"] == "userns-remap"]
    user = config.data["docker_userns_remap"]
    if remap and user and user != "default":
        control = remap[0]
        server.user(name=op_name(control, f"Remap user {user}"), user=user, system=True,
                    shell="/usr/sbin/nologin", home="/nonexistent", create_home=False)
        subids = f"{user}:{config.data['docker_userns_subid_start']}:{config.data['docker_userns_subid_count']}"
        for path in ("/etc/subuid", "/etc/subgid"):
            files.line(name=op_name(control, f"{path} range for {user}"), path=path,
                       line=f"^{user}:.*$", replace=subids)
