"""The hardening deploy: `pyinfra inventories/<env>.py deploys/harden.py` (add --dry to preview).

Inventory data is validated for every host before any operation; the facts every deploy below
reads are gathered in one command per host (hardline/deploys/gather.py); then kernel, LSM, users,
daemon, file permissions, audit rules, engine limits, services and packages, a Kubernetes node's
files, kubelet and static pods (which read their own node state in one command), and boot
parameters are brought to the state the inventory and the CIS catalogs describe. Waived
controls are left alone. A host with nothing to change gets that one command.
"""

from hardline.deploys import docker_audit as audit_deploy
from hardline.deploys import docker_daemon as daemon_deploy
from hardline.deploys import docker_files as files_deploy
from hardline.deploys import docker_runtime as runtime_deploy
from hardline.deploys import docker_users as users_deploy
from hardline.deploys import kernel as kernel_deploy
from hardline.deploys import lsm as lsm_deploy
from hardline.deploys import platform as platform_deploy
from hardline.deploys.common import host_config
from hardline.deploys.docker_audit import docker_audit
from hardline.deploys.docker_daemon import docker_daemon
from hardline.deploys.docker_files import docker_files
from hardline.deploys.docker_runtime import docker_runtime
from hardline.deploys.docker_users import docker_users
from hardline.deploys.gather import host_facts
from hardline.deploys.kernel import boot_params, kernel_modules, sysctls
from hardline.deploys.kubernetes import kubernetes_files
from hardline.deploys.kubernetes_kubelet import kubernetes_kubelet
from hardline.deploys.kubernetes_pods import kubernetes_static_pods
from hardline.deploys.lsm import lsm
from hardline.deploys.platform import platform

# (role the step needs or None for every host, module whose facts it reads or None, deploys), in
# the order their hand-offs need: one table for what is prefetched and what runs
STEPS = (
    (None, kernel_deploy, (sysctls, kernel_modules)),
    (None, lsm_deploy, (lsm,)),  # before docker_daemon: SELinux hands selinux-enabled to daemon.json
    # a Kubernetes node without the docker role gets no daemon.json
    ("docker", users_deploy, (docker_users,)),
    ("docker", runtime_deploy, (docker_runtime,)),  # before docker_daemon: hands TLS/seccomp keys to it
    ("docker", daemon_deploy, (docker_daemon,)),
    ("docker", files_deploy, (docker_files,)),
    ("docker", audit_deploy, (docker_audit,)),
    (None, platform_deploy, (platform,)),
    # Kubernetes nodes (each deploy acts on its own roles and reads its own node state in one
    # command): files (the etcd owner first), the kubelet (static pods keep running while it
    # restarts), then the static pods one at a time, etcd before the API server that needs it
    (None, None, (kubernetes_files, kubernetes_kubelet, kubernetes_static_pods)),
    (None, None, (boot_params,)),  # last: it may reboot the host (kernel_reboot); facts: kernel's
)


def harden() -> None:
    """Every hardening deploy of the host's roles, in the order of STEPS."""
    config = host_config()  # refuse bad inventory data before anything runs
    steps = [(module, deploys) for role, module, deploys in STEPS if role is None or role in config.roles]
    host_facts().prefetch([n for module, _ in steps if module for n in module.needs(config)])
    for _, deploys in steps:
        for deploy in deploys:
            deploy()
