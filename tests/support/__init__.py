"""Test support for running CIS Docker checks against real targets.

* :mod:`.daemons` — throw-away ``dockerd`` instances, each in its own
  directory and network namespace (:class:`DockerDaemon`, :class:`DaemonFactory`).
* :mod:`.images` — an offline busybox image (:func:`import_busybox`).
* :mod:`.sshd` — a throw-away OpenSSH server on 127.0.0.1 (:class:`SshServer`).
* :mod:`.fleet` — 50 real SSH hosts in network/mount namespaces and cgroups of their own
  (:class:`~tests.support.fleet.Fleet`; :mod:`.fleet_state` says what each host is and the
  verdicts it must get, :mod:`.fleet_run` runs hardline/pyinfra against it).
* :mod:`.fixtures` — pytest fixtures; register with
  ``pytest_plugins = ["tests.support.fixtures"]``.
"""

from .daemons import DOCKER_CLI, DaemonFactory, DaemonStartError, DockerDaemon, missing_prerequisites
from .images import DEFAULT_TAG, BusyboxUnavailable, busybox_rootfs_tar, import_busybox
from .sshd import SshServer, SshStartError, StrictParamikoBackend

__all__ = [
    "DEFAULT_TAG",
    "DOCKER_CLI",
    "BusyboxUnavailable",
    "DaemonFactory",
    "DaemonStartError",
    "DockerDaemon",
    "SshServer",
    "SshStartError",
    "StrictParamikoBackend",
    "busybox_rootfs_tar",
    "import_busybox",
    "missing_prerequisites",
]
