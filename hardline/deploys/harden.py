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

MODULES = (kernel_deploy, lsm_deploy, platform_deploy)  # every host
DOCKER_MODULES = (users_deploy, runtime_deploy, daemon_deploy, files_deploy, audit_deploy)  # role docker


def harden() -> None:
    """Every hardening deploy, in the order their hand-offs need."""
    config = host_config()  # refuse bad inventory data before anything runs
    modules = MODULES + (DOCKER_MODULES if "docker" in config.roles else ())
    host_facts().prefetch([n for module in modules for n in module.needs(config)])
    sysctls()
    kernel_modules()
    lsm()  # before docker_daemon: SELinux hands selinux-enabled to daemon.json
    if "docker" in config.roles:  # a Kubernetes node without the docker role gets no daemon.json
        docker_users()
        docker_runtime()  # before docker_daemon: hands TLS/seccomp keys to daemon.json
        docker_daemon()
        docker_files()
        docker_audit()
    platform()
    # Kubernetes nodes (roles k8s_control_plane, k8s_etcd, k8s_worker): files (the etcd owner
    # first), the kubelet (static pods keep running while it restarts), then the static pods one
    # at a time, etcd before the API server that needs it
    kubernetes_files()
    kubernetes_kubelet()
    kubernetes_static_pods()
    boot_params()  # last: it may reboot the host (kernel_reboot)
