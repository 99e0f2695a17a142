"""Verification never changes a host: /etc, the Docker configuration and the data root's metadata
are hashed before and after a full verify (every benchmark that applies to a Docker host) of this
machine through pyinfra's @local connector, with a real dockerd running containers."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from tests.support.verify import daemon_data, docker_host, verify_config

# files a verify must never touch; logs and the daemon's own runtime state change by themselves
SKIP_SUFFIXES = (".log", "-json.log", ".sock", ".pid", "/mtab")


def snapshot(*roots: Path) -> dict[str, tuple]:
    """(type, mode, owner, size, mtime, sha256) of every file, link and directory below roots."""
    found: dict[str, tuple] = {}
    for root in roots:
        walked = ([(str(root.parent), [], [root.name])] if root.is_file()
                  else os.walk(root, followlinks=False))
        for dirpath, dirnames, filenames in walked:
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                if path.endswith(SKIP_SUFFIXES):
                    continue
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue
                digest = ""
                if stat.S_ISREG(st.st_mode):
                    try:
                        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
                    except OSError as err:
                        digest = f"unreadable: {err.errno}"
                elif stat.S_ISLNK(st.st_mode):
                    digest = os.readlink(path)
                mtime = st.st_mtime_ns if not stat.S_ISDIR(st.st_mode) else 0  # dir atime/mtime: listing only
                found[path] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size,
                               mtime, digest)
    return found


def test_a_full_verify_changes_nothing(session_daemon_factory, busybox_image):
    daemon = session_daemon_factory({"icc": False, "live-restore": True})
    image = busybox_image(daemon)
    for n in range(3):
        daemon.docker("run", "-d", "--name", f"ro-{n}", image, "sleep", "600", check=True)
    metadata = [Path(daemon.data_root) / d for d in ("containers", "image", "network", "volumes")]
    roots = [Path("/etc"), Path(daemon.config_path), *[p for p in metadata if p.exists()]]
    for container in (Path(daemon.data_root) / "containers").iterdir():  # logs grow by themselves
        for log in container.glob("*-json.log"):
            log.unlink(missing_ok=True)
    before = snapshot(*roots)
    assert len(before) > 100
    results = verify_config(docker_host(daemon_data(daemon)))
    assert sum(len(rs) for rs in results.values()) > 150  # the whole Docker benchmark and the platform
    after = snapshot(*roots)
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    assert changed == [], changed[:20]
