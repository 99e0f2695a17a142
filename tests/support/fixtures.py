"""pytest fixtures for real daemons, real SSH and the busybox image.

Register in the root conftest with ``pytest_plugins = ["tests.support.fixtures"]``.

* ``daemon_factory`` (function) / ``session_daemon_factory`` (session):
  :class:`~tests.support.daemons.DaemonFactory`; call it
  ``factory({"icc": False})`` to get a started daemon; all are stopped and
  their directories removed at teardown.
* ``sshd`` (session): a started :class:`~tests.support.sshd.SshServer`.
* ``ssh_fleet`` (session): a started 50-host :class:`~tests.support.fleet.Fleet` (about 10 s
  to start, 5 s to stop, ~1.5 GB while it runs).
* ``busybox_image`` (session): callable ``(daemon, tag=DEFAULT_TAG, **kw) ->
  tag`` importing a once-built busybox rootfs into ``daemon`` (idempotent).

Fixtures skip (not fail) when the machine cannot run them (not root, no
dockerd/sshd/busybox-static), so the rest of the suite still runs elsewhere.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .daemons import DaemonFactory, DockerDaemon, missing_prerequisites, reap_stale
from .images import DEFAULT_TAG, BusyboxUnavailable, busybox_rootfs_tar, import_busybox
from .sshd import SSHD, SshServer

__all__ = ["busybox_image", "daemon_factory", "session_daemon_factory", "ssh_fleet", "sshd"]


_reaped = False


def _unavailable(reason: str) -> None:
    """Skip on a developer machine that lacks a prerequisite; in CI (CI=true) a missing
    prerequisite is a broken install step, so fail instead of hiding the tests."""
    if os.environ.get("CI"):
        pytest.fail(f"CI is missing a test prerequisite: {reason}")
    pytest.skip(reason)


def _skip_without_docker() -> None:
    """Skip when daemons cannot run; else once per session tidy up after
    earlier, killed sessions (see :func:`reap_stale`)."""
    global _reaped
    reason = missing_prerequisites()
    if reason:
        _unavailable(reason)
    if not _reaped:
        reap_stale()
        _reaped = True


@pytest.fixture
def daemon_factory() -> Iterator[DaemonFactory]:
    """Daemons that live for one test."""
    _skip_without_docker()
    with DaemonFactory() as factory:
        yield factory


@pytest.fixture(scope="session")
def session_daemon_factory() -> Iterator[DaemonFactory]:
    """Daemons shared by the whole session (start them once, e.g. per profile)."""
    _skip_without_docker()
    with DaemonFactory() as factory:
        yield factory


@pytest.fixture(scope="session")
def sshd() -> Iterator[SshServer]:
    """A real sshd on 127.0.0.1 that lets ``sshd.client_key`` in as root."""
    if os.geteuid() != 0 or not os.path.exists(SSHD) or shutil.which("ssh-keygen") is None:
        _unavailable("needs root, /usr/sbin/sshd and ssh-keygen")
    with SshServer() as server:
        yield server


@pytest.fixture(scope="session")
def ssh_fleet():
    """50 real SSH hosts (tests/support/fleet.py), shared by the fleet and SSH-variant tests."""
    from .fleet import Fleet, fleet_prerequisites
    from .fleet_sys import reap_stale as reap_stale_fleets

    reason = fleet_prerequisites()
    if reason:
        _unavailable(reason)
    reap_stale_fleets()
    # HARDLINE_FLEET_SIZE (>= 10) shrinks it while developing; the tests pick hosts by kind
    with Fleet(size=int(os.environ.get("HARDLINE_FLEET_SIZE", "50"))) as fleet:
        yield fleet


@pytest.fixture(scope="session")
def busybox_image(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., str]:
    """Callable loading the busybox image into a daemon; returns the tag."""
    try:
        tarball = busybox_rootfs_tar(tmp_path_factory.mktemp("busybox") / "rootfs.tar")
    except BusyboxUnavailable as exc:
        _unavailable(str(exc))

    def load(daemon: DockerDaemon, tag: str = DEFAULT_TAG, **kwargs: Any) -> str:
        return import_busybox(daemon, tag, tarball=tarball, **kwargs)

    return load
