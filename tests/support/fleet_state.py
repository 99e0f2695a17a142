"""What each host of the test fleet is (:mod:`tests.support.fleet`), the files that make it so,
and the verdicts hardline must give it.

A host's *spec* fixes how it is reached (plain root SSH, a sudo user, an ssh_config alias, a
jump host, or not at all), which Docker daemon answers on its ``/var/run/docker.sock`` and its
own copies of the files hardline reads. In the host's private mount namespace an overlay puts
them over the machine's /etc, so 50 hosts share one kernel but each has its own
``/etc/docker``, ``/etc/group``, ``/etc/passwd``, ``/etc/environment``, ``/etc/sysctl.d``,
``/etc/audit`` (and its own ``/run``).

The *signature* controls are the ones a spec decides; :func:`expected` gives their verdict per
host. Everything else (kernel sysctls, loaded audit rules, boot parameters) is the machine's
and therefore the same on every host: tests compare those across hosts instead of pinning them.

Example::

    specs = plan(50)
    expected(specs[0])   # {"1.1.2": "PASS", "2.2": "PASS", ...}
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

# daemon.json of the two daemon profiles. "compliant" passes CIS 2.2/2.14/2.15/2.16, "default"
# is a stock daemon (no daemon.json options) that fails them.
PROFILES: dict[str, dict] = {
    "compliant": {"icc": False, "log-level": "info", "live-restore": True, "no-new-privileges": True,
                  "userland-proxy": False, "experimental": False},
    "default": {},
}
DAEMON_CONTROLS = ("2.2", "2.14", "2.15", "2.16")
SIGNATURE = ("1.1.2", *DAEMON_CONTROLS, "3.5", "3.6", "3.17", "3.18", "4.5")
SUDO_USER = "hlfadmin"
SUDO_UID = 1987
UNTRUSTED_MEMBER = "mallory"  # put in the docker group of some hosts (fails 1.1.2)
# how hosts are reached; the last three never answer a verify
REACHES = ("ssh", "sudo", "alias", "jump", "refused", "dropped", "hang")
UNREACHABLE = ("refused", "dropped", "hang")
HANG_SECONDS = 2147483647


@dataclass(frozen=True)
class HostSpec:
    """One fleet host: how it is reached, what runs there, and the state of its files."""

    index: int
    reach: str = "ssh"
    daemon: str = "shared"  # own (a dockerd in its namespaces), shared (a profile's dockerd), none
    profile: str = "compliant"  # daemon.json content, see PROFILES
    etc_docker_mode: int = 0o755
    etc_docker_owner: str = "root"  # or "daemon" (uid 1): fails 3.5
    daemon_json_mode: int = 0o644
    docker_members: tuple[str, ...] = ()
    content_trust: bool = True
    groups: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return f"h{self.index:02d}"

    @property
    def port(self) -> int:
        return 2222 if self.reach == "alias" else 22

    @property
    def runs_sshd(self) -> bool:
        return self.reach != "refused"

    @property
    def answers(self) -> bool:
        """True when a verify can gather this host's facts."""
        return self.reach not in UNREACHABLE

    @property
    def compliant(self) -> bool:
        """Every signature control passes."""
        return self.answers and all(s == "PASS" for s in expected(self).values())


def plan(size: int = 50, own_daemons: int = 6) -> list[HostSpec]:
    """The fleet's hosts: ``own_daemons`` hosts with a dockerd of their own, one host each
    reached through sudo, an ssh_config alias and a jump host, one with no dockerd, and the
    last three unreachable (refused, dropped, hung); the others share a profile's dockerd.
    File states are mixed by index so that every combination of signature verdicts occurs."""
    if size < 10:
        raise ValueError("a fleet needs at least 10 hosts (7 special ones and 3 plain)")
    special = {size - 6: ("jump", "shared"), size - 5: ("alias", "shared"), size - 4: ("sudo", "shared"),
               size - 3: ("ssh", "none"), size - 2: ("refused", "shared"), size - 1: ("dropped", "shared"),
               size: ("hang", "shared")}
    specs = []
    for i in range(1, size + 1):
        reach, daemon = special.get(i, ("ssh", "own" if i <= own_daemons else "shared"))
        specs.append(HostSpec(
            index=i, reach=reach, daemon=daemon,
            profile="compliant" if i % 2 else "default",
            etc_docker_mode=0o777 if i % 3 == 0 else 0o755,
            etc_docker_owner="daemon" if i % 7 == 0 else "root",
            daemon_json_mode=0o666 if i % 11 == 0 else 0o644,
            docker_members=(UNTRUSTED_MEMBER,) if i % 4 == 0 else (),
            content_trust=i % 5 != 0,
        ))
    return [_with_groups(s, size) for s in specs]


def plain_plan(size: int, own_daemons: int = 0) -> list[HostSpec]:
    """``size`` hosts that all answer root SSH directly (for measurements): the file states and
    daemon profiles of :func:`plan`, no special host."""
    specs = [HostSpec(index=s.index, daemon="own" if s.index <= own_daemons else "shared", profile=s.profile,
                      etc_docker_mode=s.etc_docker_mode, etc_docker_owner=s.etc_docker_owner,
                      daemon_json_mode=s.daemon_json_mode, docker_members=s.docker_members,
                      content_trust=s.content_trust)
             for s in plan(max(size, 10))[:size]]
    return [_with_groups(s, size) for s in specs]


def _with_groups(spec: HostSpec, size: int) -> HostSpec:
    groups = ["docker_hosts", "rack_a" if spec.index <= size // 2 else "rack_b"]
    groups.append("unreachable" if not spec.answers else ("compliant" if spec.compliant else "drifted"))
    groups.append({"own": "own_daemon", "shared": "shared_daemon", "none": "no_daemon"}[spec.daemon])
    if spec.reach != "ssh":
        groups.append(f"via_{spec.reach}")
    return HostSpec(**{**spec.__dict__, "groups": tuple(groups)})


def expected(spec: HostSpec) -> dict[str, str]:
    """Verdict of every signature control on this host."""
    if not spec.answers:
        return {cid: "ERROR" for cid in SIGNATURE}
    out = {
        "1.1.2": "FAIL" if spec.docker_members else "PASS",
        "3.5": "PASS" if spec.etc_docker_owner == "root" else "FAIL",
        "3.6": "FAIL" if spec.etc_docker_mode & ~0o755 else "PASS",
        "4.5": "PASS" if spec.content_trust else "FAIL",
    }
    if spec.daemon == "none":  # no daemon to ask: its settings and its config file are unknown
        out.update({cid: "ERROR" for cid in (*DAEMON_CONTROLS, "3.17", "3.18")})
        return out
    verdict = "PASS" if spec.profile == "compliant" else "FAIL"
    out.update({cid: verdict for cid in DAEMON_CONTROLS})
    out["3.17"] = "PASS"
    out["3.18"] = "FAIL" if spec.daemon_json_mode & ~0o644 else "PASS"
    return out


# --------------------------------------------------------------------------- files of a host


def write_state(spec: HostSpec, hostdir: Path) -> list[list[str]]:
    """Create the host's own files under ``hostdir``; return the ``mount`` argument lists that
    put them in place inside its mount namespace.

    /etc is an overlay: the machine's /etc below, ``etc-upper`` (this host's files) on top.
    Bind-mounting single files (/etc/passwd) does not survive here: package installs by other
    sessions replace /etc/passwd by rename, and the kernel then detaches every mount on the old
    file, in every namespace. Directories of the upper layer are opaque (the host's copy, not a
    merge with the machine's)."""
    upper, work = hostdir / "etc-upper", hostdir / "etc-work"
    upper.mkdir()
    work.mkdir()
    etc_docker = _opaque_dir(upper / "docker")
    daemon_json = etc_docker / "daemon.json"
    daemon_json.write_text(_json(PROFILES[spec.profile]))
    daemon_json.chmod(spec.daemon_json_mode)
    etc_docker.chmod(spec.etc_docker_mode)
    if spec.etc_docker_owner != "root":
        os.chown(etc_docker, 1, 1)  # daemon:daemon on Debian

    for name in ("passwd", "group", "shadow"):
        shutil.copy2(f"/etc/{name}", upper / name)
        st = os.stat(f"/etc/{name}")
        os.chown(upper / name, st.st_uid, st.st_gid)
    _own_root_home(upper / "passwd", hostdir / "root")
    passwd_lines, shadow_lines = [], []
    if spec.reach == "sudo":
        home = hostdir / "home"
        home.mkdir()
        passwd_lines.append(f"{SUDO_USER}:x:{SUDO_UID}:{SUDO_UID}:fleet admin:{home}:/bin/sh")
        shadow_lines.append(f"{SUDO_USER}:*:19000:0:99999:7:::")
        _append(upper / "group", f"{SUDO_USER}:x:{SUDO_UID}:")
        sudoers = _opaque_dir(upper / "sudoers.d")
        (sudoers / SUDO_USER).write_text(f"{SUDO_USER} ALL=(ALL:ALL) NOPASSWD: ALL\n")
        (sudoers / SUDO_USER).chmod(0o440)
    if UNTRUSTED_MEMBER in spec.docker_members:
        passwd_lines.append(f"{UNTRUSTED_MEMBER}:x:{SUDO_UID + 1}:{SUDO_UID + 1}::/nonexistent:/usr/sbin/nologin")
        shadow_lines.append(f"{UNTRUSTED_MEMBER}:*:19000:0:99999:7:::")
    for line in passwd_lines:
        _append(upper / "passwd", line)
    for line in shadow_lines:
        _append(upper / "shadow", line)
    _set_group_members(upper / "group", "docker", list(spec.docker_members))

    (upper / "environment").write_text("DOCKER_CONTENT_TRUST=1\n" if spec.content_trust else "")
    for name in ("sysctl.d", "audit"):
        if Path(f"/etc/{name}").is_dir():
            shutil.copytree(f"/etc/{name}", upper / name, symlinks=True)
            _opaque_dir(upper / name)
    mounts = [["-t", "overlay", "overlay", "-o", f"lowerdir=/etc,upperdir={upper},workdir={work}", "/etc"]]
    run = hostdir / "run"
    (run / "sshd").mkdir(parents=True)  # sshd's privilege separation directory
    mounts.append(["--bind", str(run), "/run"])
    if spec.reach == "hang":  # every docker command on this host blocks forever
        local_bin = hostdir / "local-bin"
        local_bin.mkdir()
        (local_bin / "docker").write_text(f"#!/bin/sh\nexec sleep {HANG_SECONDS}\n")
        (local_bin / "docker").chmod(0o755)
        mounts.append(["--bind", str(local_bin), "/usr/local/bin"])
    return mounts


def _own_root_home(passwd: Path, home: Path) -> None:
    """root's home is the host's own, a stock one (/etc/skel): bash sources ~/.bashrc for every
    SSH command, and this machine's /root/.bashrc (pyenv, cargo) costs ~0.1 s of CPU each time,
    which no production host pays and which would hide what hardline itself costs a host."""
    shutil.copytree("/etc/skel", home, symlinks=True)
    home.chmod(0o700)
    lines = passwd.read_text().splitlines()
    for i, line in enumerate(lines):
        fields = line.split(":")
        if fields[0] == "root" and len(fields) == 7:
            fields[5] = str(home)
            lines[i] = ":".join(fields)
    passwd.write_text("\n".join(lines) + "\n")


def _opaque_dir(path: Path) -> Path:
    """A directory of the overlay's upper layer that hides the machine's one of the same name."""
    path.mkdir(exist_ok=True)
    os.setxattr(path, "trusted.overlay.opaque", b"y")
    return path


def _json(doc: dict) -> str:
    import json

    return json.dumps(doc, indent=2) + "\n"


def _append(path: Path, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")


def _set_group_members(path: Path, group: str, members: list[str]) -> None:
    """Set a group's member list in a group(5) file (the group must exist)."""
    lines = path.read_text().splitlines()
    for n, line in enumerate(lines):
        fields = line.split(":")
        if fields[0] == group and len(fields) == 4:
            fields[3] = ",".join(members)
            lines[n] = ":".join(fields)
            break
    else:
        raise RuntimeError(f"{path}: no {group} group to add members to (install docker.io)")
    path.write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------- drift of a host

# A small deploy whose dry run has a known plan per host (`hardline drift --deploy`): it fixes
# exactly the two file states a spec varies that a deploy can fix without touching dockerd.
DRIFT_DEPLOY = '''\
"""Deploy of the fleet drift tests: /etc/docker root:root 755, content trust for every login."""
from pyinfra.operations import files

files.directory(name="etc_docker root:root 755", path="/etc/docker", user="root", group="root", mode="755")
files.line(name="content trust for every login", path="/etc/environment", line="^DOCKER_CONTENT_TRUST=.*",
           replace="DOCKER_CONTENT_TRUST=1")
'''
DRIFT_SECTION = "3"  # verified along with the dry run: section 3 passes on a host whose files are right


def expected_changes(spec: HostSpec) -> list[str]:
    """Operations of DRIFT_DEPLOY that a dry run must report as changing on this host."""
    changes = []
    if spec.etc_docker_mode != 0o755 or spec.etc_docker_owner != "root":
        changes.append("etc_docker root:root 755")
    if not spec.content_trust:
        changes.append("content trust for every login")
    return changes


def expected_drift_state(spec: HostSpec) -> str:
    """"error", "drift" or "clean" for `hardline drift --deploy DRIFT_DEPLOY --section 3`."""
    if not spec.answers or spec.daemon == "none":  # no daemon: 3.17/3.18 cannot be verified
        return "error"
    section3 = {cid: status for cid, status in expected(spec).items() if cid.startswith("3.")}
    if expected_changes(spec) or "FAIL" in section3.values():
        return "drift"
    return "clean"
