"""The hardening deploy: `pyinfra inventories/<env>.py deploys/harden.py` (add --dry to preview).

Inventory data is validated for every host before any operation; the facts every deploy below
reads are gathered in one command per host (hardline/deploys/gather.py); then kernel, LSM, users,
daemon, file permissions, audit rules, engine limits, services and packages, and boot
parameters are brought to the state the inventory and the CIS catalog describe. Waived
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
from hardline.deploys.lsm import lsm
from hardline.deploys.platform import platform

MODULES = (kernel_deploy, lsm_deploy, users_deploy, runtime_deploy, daemon_deploy, files_deploy, audit_deploy,
           platform_deploy)


def harden() -> None:
    """Every hardening deploy, in the order their hand-offs need."""
    config = host_config()  # refuse bad inventory data before anything runs
    host_facts().prefetch([n for module in MODULES for n in module.needs(config)])
    sysctls()
    kernel_modules()
    lsm()  # before docker_daemon: SELinux hands selinux-enabled to daemon.json
    docker_users()
    docker_runtime()  # before docker_daemon: hands TLS/seccomp keys to daemon.json
    docker_daemon()
    docker_files()
    docker_audit()
    platform()
    boot_params()  # last: it may reboot the host (kernel_reboot)
