"""Entry point: `pyinfra inventories/<env>.py deploys/harden.py` (add --dry to preview).

Inventory data is validated for every host before any operation; then kernel, users, daemon,
file permissions and audit rules are brought to the state the inventory and the CIS catalog
describe. Waived controls are left alone.
"""

from deploys.common import host_config
from deploys.docker_audit import docker_audit
from deploys.docker_daemon import docker_daemon
from deploys.docker_files import docker_files
from deploys.docker_runtime import docker_runtime
from deploys.docker_users import docker_users
from deploys.kernel import sysctls

host_config()  # refuse bad inventory data before anything runs
sysctls()
docker_users()
docker_runtime()  # before docker_daemon: hands TLS/seccomp keys to daemon.json
docker_daemon()
docker_files()
docker_audit()
