"""Debian 12 hosts as containers, for deploy tests that need no VM.

A deploy needs the tools of a real distribution (useradd, gpasswd, sysctl, auditctl, augenrules,
dpkg, apt-get, stat...). No registry is reachable here, so the image is this machine's own Debian
userland: a tiny root filesystem of its own (/etc, /var, /tmp, merged-/usr symlinks) into which
the container gets this machine's ``/usr`` mounted read-only. What a deploy writes (/etc, /var)
lands in the container's own layer; the machine's files are never touched.

Flavours of target (:class:`HostContainer`):

* ``audit=True``: the container shares this machine's PID namespace and has CAP_AUDIT_CONTROL,
  because the kernel only takes audit rules from the initial PID namespace. Audit rules are
  global kernel state: tests load them under their own keys only and delete those keys after.
* a container of a userns-remapped daemon with ``/proc/sys`` writable (``systempaths=unconfined``,
  CAP_NET_ADMIN in its own user namespace):
  its root is an unprivileged uid of this machine, so the kernel lets it write only the sysctls
  of the container's own network namespace (``net.*``) and refuses every global one
  (``kernel.*``, ``fs.*``). This machine's kernel settings cannot change.

``/var/lib/dpkg/status`` lists the packages given (``packages=``) as installed, without files,
so that a package removal is a real dpkg/apt run that deletes nothing of this machine.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import shutil
import subprocess
import tarfile
from pathlib import Path
from types import TracebackType

from .daemons import DockerDaemon

__all__ = ["HostContainer", "import_debian_userland"]

_DIRS = (
    "usr", "etc", "etc/audit", "etc/audit/rules.d", "etc/apt", "etc/apt/apt.conf.d", "etc/default",
    "etc/docker", "etc/sysctl.d", "etc/modprobe.d", "etc/systemd", "etc/systemd/system", "root", "proc",
    "sys", "dev", "run", "var", "var/lib", "var/lib/dpkg", "var/lib/dpkg/info", "var/lib/dpkg/updates",
    "var/lib/dpkg/triggers", "var/lib/apt", "var/lib/apt/lists", "var/lib/apt/lists/partial", "var/cache",
    "var/cache/apt", "var/cache/apt/archives", "var/cache/apt/archives/partial", "var/log", "var/log/apt",
    "var/lib/docker",
)  # fmt: skip
_PASSWD = ("root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
           "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
_SHADOW = "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n"
_GROUP = "root:x:0:\ndaemon:x:1:\nshadow:x:42:\ndocker:x:999:\nnogroup:x:65534:\n"
_GSHADOW = "root:*::\ndaemon:*::\nshadow:*::\ndocker:!::\nnogroup:*::\n"
# copied from this machine: what the dynamic loader, useradd and awk (augenrules) need
_COPIED = ("etc/ld.so.cache", "etc/ld.so.conf", "etc/ld.so.conf.d", "etc/alternatives", "etc/login.defs",
           "etc/nsswitch.conf", "etc/default/useradd", "etc/shells", "etc/audit/auditd.conf", "var/lib/dpkg/arch")


def _add(tar: tarfile.TarFile, name: str, *, text: str | None = None, link: str | None = None, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.mode = mode
    if link is not None:
        info.type, info.linkname = tarfile.SYMTYPE, link
        tar.addfile(info)
    elif text is not None:
        data = text.encode()
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        info.type = tarfile.DIRTYPE
        tar.addfile(info)


def _dpkg_status(packages: tuple[str, ...]) -> str:
    return "".join(f"Package: {p}\nStatus: install ok installed\nPriority: optional\nSection: net\n"
                   f"Maintainer: hardline tests\nArchitecture: all\nVersion: 1.0\nDescription: test package\n\n"
                   for p in packages)


def userland_tar(packages: tuple[str, ...] = ()) -> bytes:
    """The image's root filesystem (everything but /usr) as a tar archive."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name in _DIRS:
            _add(tar, name, mode=0o700 if name == "root" else 0o755)
        _add(tar, "tmp", mode=0o1777)
        for name in ("bin", "sbin", "lib", "lib64"):
            _add(tar, name, link=f"usr/{name}", mode=0o777)
        for name, text, mode in (("etc/passwd", _PASSWD, 0o644), ("etc/group", _GROUP, 0o644),
                                 ("etc/shadow", _SHADOW, 0o640), ("etc/gshadow", _GSHADOW, 0o640),
                                 ("etc/subuid", "", 0o644), ("etc/subgid", "", 0o644),
                                 ("etc/environment", "", 0o644), ("etc/hostname", "hld-host\n", 0o644),
                                 ("var/lib/dpkg/status", _dpkg_status(packages), 0o644),
                                 ("var/lib/dpkg/available", "", 0o644)):
            _add(tar, name, text=text, mode=mode)
        for name in _COPIED:
            if os.path.lexists("/" + name):
                tar.add("/" + name, arcname=name)
    return buf.getvalue()


def import_debian_userland(daemon: DockerDaemon, packages: tuple[str, ...] = ()) -> str:
    """Import the userland image into ``daemon`` (once per content); returns its tag."""
    data = userland_tar(packages)
    tag = f"hld/debian-userland:{hashlib.sha256(data).hexdigest()[:12]}"
    if daemon.docker("image", "inspect", tag).returncode != 0:
        proc = subprocess.run([shutil.which("docker") or "docker", "import", "-", tag], input=data,
                              env=daemon.env(), capture_output=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"docker import failed: {proc.stderr.decode(errors='replace')}")
    return tag


class HostContainer:
    """A running Debian userland container on a test daemon, reached by pyinfra as ``@docker/<id>``."""

    def __init__(self, daemon: DockerDaemon, *, audit: bool = False, sysctls: bool = False,
                 packages: tuple[str, ...] = (), mounts: tuple[str, ...] = (), preset: dict[str, str] | None = None,
                 name: str | None = None) -> None:
        self.daemon = daemon
        self.name = name or f"hld-host-{secrets.token_hex(4)}"
        image = import_debian_userland(daemon, packages)
        args = ["run", "-d", "--name", self.name, "--hostname", "hld-host", "-v", "/usr:/usr:ro"]
        if audit:
            args += ["--pid", "host", "--cap-add", "AUDIT_CONTROL"]
        if sysctls:  # CAP_NET_ADMIN of a userns container covers only its own network namespace
            args += ["--security-opt", "systempaths=unconfined", "--cap-add", "NET_ADMIN"]
        for mount in mounts:
            args += ["-v", mount]
        for key, value in (preset or {}).items():  # net.* values of the container's own network namespace
            args += ["--sysctl", f"{key}={value}"]
        proc = daemon.docker(*args, image, "sleep", "infinity")
        if proc.returncode != 0:
            raise RuntimeError(f"cannot start the target container: {proc.stderr}")
        self.id = proc.stdout.strip()
        self.host = f"@docker/{self.id}"

    def sh(self, script: str, check: bool = True, user: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a shell script in the container; text output captured."""
        args = ["exec", "-i"] + (["--user", user] if user else []) + [self.id, "sh", "-c", script]
        proc = self.daemon.docker(*args)
        if check and proc.returncode != 0:
            raise AssertionError(f"{script!r} failed in {self.name}: {proc.stdout}{proc.stderr}")
        return proc

    def read(self, path: str) -> str:
        return self.sh(f"cat {path}").stdout

    def exists(self, path: str) -> bool:
        return self.sh(f"test -e {path}", check=False).returncode == 0

    def remove(self) -> None:
        self.daemon.docker("rm", "-f", self.id)

    def __enter__(self) -> HostContainer:  # noqa: PYI034 (not subclassed)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.remove()


def path_in(container: HostContainer, path: str) -> Path:
    """Where a container path lives on this machine (its merged root under /proc/<pid>/root)."""
    pid = container.daemon.docker("inspect", "-f", "{{.State.Pid}}", container.id, check=True).stdout.strip()
    return Path(f"/proc/{pid}/root") / path.lstrip("/")
