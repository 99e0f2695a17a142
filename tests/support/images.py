"""A tiny offline container image for test daemons.

No registry is reachable from the test machine, so images are made locally:
the statically linked busybox from Debian's ``busybox-static`` package plus a
symlink per applet, a minimal ``/etc/passwd``/``/etc/group`` (so checks can
run containers as ``nobody``) and a sticky ``/tmp``, imported with
``docker import``.  The binary must be static because the image has no libc.

Usage::

    tag = import_busybox(daemon)            # once per daemon, idempotent
    daemon.docker("run", "-d", tag, "sleep", "3600", check=True)
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path

from .daemons import DockerDaemon

__all__ = ["BUSYBOX", "DEFAULT_TAG", "BusyboxUnavailable", "busybox_rootfs_tar", "import_busybox"]

BUSYBOX = os.environ.get("HL_BUSYBOX", "/bin/busybox")
DEFAULT_TAG = "hl/busybox:latest"

_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = "root:x:0:\nnogroup:x:65534:\n"
# (path, mode) of directories every container expects; docker mounts over
# /proc, /sys and /dev but the mount points must exist in the image.
_DIRS = (
    ("bin", 0o755), ("sbin", 0o755), ("usr", 0o755), ("usr/bin", 0o755), ("usr/sbin", 0o755),
    ("etc", 0o755), ("root", 0o700), ("tmp", 0o1777), ("proc", 0o555), ("sys", 0o555),
    ("dev", 0o755), ("var", 0o755),
)  # fmt: skip


class BusyboxUnavailable(RuntimeError):
    """No static busybox binary on this machine."""


def _has_interpreter(binary: Path) -> bool:
    """True if the ELF file requests a dynamic loader (PT_INTERP), i.e. is not static."""
    data = binary.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:  # only 64-bit ELF is relevant here
        raise BusyboxUnavailable(f"{binary} is not a 64-bit ELF binary")
    endian = "<" if data[5] == 1 else ">"
    phoff, = struct.unpack_from(endian + "Q", data, 0x20)
    phentsize, phnum = struct.unpack_from(endian + "HH", data, 0x36)
    for i in range(phnum):
        p_type, = struct.unpack_from(endian + "I", data, phoff + i * phentsize)
        if p_type == 3:  # PT_INTERP
            return True
    return False


def _check_busybox(binary: Path) -> None:
    """Fail with an actionable message unless ``binary`` is a static busybox."""
    if not binary.is_file():
        raise BusyboxUnavailable(f"{binary} missing: apt-get install -y busybox-static")
    if _has_interpreter(binary):
        raise BusyboxUnavailable(f"{binary} is dynamically linked: apt-get install -y busybox-static")


def _applets(binary: Path) -> list[str]:
    """Applet paths relative to / (e.g. ``bin/sh``, ``usr/bin/env``)."""
    out = subprocess.run([str(binary), "--list-full"], capture_output=True, text=True, check=True).stdout
    return sorted({line.strip().lstrip("/") for line in out.splitlines() if line.strip()})


def _add_dir(tar: tarfile.TarFile, name: str, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, mode
    tar.addfile(info)


def _add_text(tar: tarfile.TarFile, name: str, text: str, mode: int = 0o644) -> None:
    data = text.encode()
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def _add_symlink(tar: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
    tar.addfile(info)


def busybox_rootfs_tar(path: str | os.PathLike[str], busybox: str | os.PathLike[str] = BUSYBOX) -> Path:
    """Write a root filesystem tarball (busybox + applet symlinks) to ``path``.

    Entries are owned by root with mtime 0 so the tarball is reproducible.
    """
    binary = Path(busybox)
    _check_busybox(binary)
    path = Path(path)
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for name, mode in _DIRS:
            _add_dir(tar, name, mode)
        info = tar.gettarinfo(str(binary), arcname="bin/busybox")
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = 0
        with open(binary, "rb") as fh:
            tar.addfile(info, fh)
        for applet in _applets(binary):
            if applet != "bin/busybox":
                _add_symlink(tar, applet, "/bin/busybox")
        _add_text(tar, "etc/passwd", _PASSWD)
        _add_text(tar, "etc/group", _GROUP)
    return path


def image_exists(daemon: DockerDaemon, tag: str) -> bool:
    """True if ``tag`` is present on ``daemon``."""
    return daemon.docker("image", "inspect", "--format", "{{.Id}}", tag).returncode == 0


def import_busybox(
    daemon: DockerDaemon,
    tag: str = DEFAULT_TAG,
    *,
    changes: Sequence[str] = ('CMD ["sh"]',),
    tarball: str | os.PathLike[str] | None = None,
) -> str:
    """Import the busybox rootfs into ``daemon`` as ``tag`` unless already there.

    changes: Dockerfile instructions for ``docker import --change`` (CMD,
    ENTRYPOINT, ENV, EXPOSE, USER, VOLUME, WORKDIR...).  tarball: reuse a
    prebuilt :func:`busybox_rootfs_tar` (the session fixture does); otherwise
    one is built in the daemon's directory.  Returns ``tag``.
    """
    if image_exists(daemon, tag):
        return tag
    if tarball is None:
        tarball = busybox_rootfs_tar(daemon.dir / "busybox-rootfs.tar")
    args = ["import"]
    for change in changes:
        args += ["--change", change]
    daemon.docker(*args, str(tarball), tag, check=True)
    return tag
