"""A fleet of real SSH hosts on this machine: one network namespace, sshd, mount namespace and
cpuacct cgroup per host.

    with Fleet(size=50) as fleet:           # ~9 s to start, ~3 s to stop (2 busy cores)
        fleet.write_inventory(tmp / "fleet.py")
        subprocess.run(["hardline", "verify", str(tmp / "fleet.py")])
        fleet.cpu_seconds("h01")            # CPU the host itself spent (sshd, sessions, its dockerd)

Addressing (team rule: no private-range network in the machine's own namespace)
--------------------------------------------------------------------------------
Every host gets a link-local address 169.254.X.(10+i)/24 (X picked per fleet among 100-199, so
two fleets can run side by side). The hosts' ``eth0`` veths meet on a bridge ``br0`` inside a
hub namespace ``<id>-hub`` of our own; the machine's namespace holds exactly one interface, the
uplink veth ``<id>`` with 169.254.X.1/24, also enslaved to that bridge. No routing and no
ip_forward anywhere: the machine and the hosts are on one layer-2 segment that exists only while
the fleet runs; deleting the hub namespace takes the uplink with it. Nothing in 169.254.X/24
ever leaves the machine: an address nobody holds fails with "No route to host" (ARP) instead of
going to the default gateway.

The jump-host case needs a host the machine cannot reach directly: the ``jump`` host sits on a
veth behind the bastion namespace (``<id>-bastion``, 169.254.X.2 on the bridge, a /32 route to
the inner host), with an address in the same /24, so from the machine it is on-link but absent.

Per-host state
--------------
sshd runs as ``nsenter --net=<host netns> unshare --mount --propagation private sh -c 'mount
...; exec sshd -D'``: in that private mount namespace an overlay puts the host's own
/etc/docker, /etc/passwd, /etc/group, /etc/shadow, /etc/environment, /etc/sysctl.d and
/etc/audit over the machine's /etc, and its own directory is bound on /run (see
:mod:`.fleet_state`); every SSH session inherits them.
net.* sysctls are per network namespace too; kernel.* sysctls and loaded audit rules are the
machine's and the same on every host.

Docker daemons: a real dockerd costs ~110 MB and ~0.3 s of CPU to start (measured here: 5 in
parallel in 1.7 s), so ``own_daemons`` hosts (default 6) run their own dockerd inside their
namespaces (it reads the host's /etc/docker/daemon.json, its socket and pidfile land in the
host's /run, its CPU is the host's), and the others share one real dockerd per daemon.json
profile (:data:`fleet_state.PROFILES`): its socket is bind-mounted onto the host's
/run/docker.sock and its pidfile copied to /run/docker.pid, so hardline finds it at the default
paths. The shared daemons' CPU is in their own cgroups (``cpu_seconds("d-compliant")``).

Unreachable hosts: ``refused`` has an address and no sshd; ``dropped`` runs sshd but blackholes
its replies to the machine (connects time out); ``hang`` answers SSH but its ``docker`` (first
on PATH, /usr/local/bin) sleeps forever, and its inventory data has verify use the docker CLI
(hardline_docker_client: cli) rather than the Engine API client.

Clean-up goes by cgroup: every process of a host (sshd, sessions, dockerd, containerd, a hung
``sleep``) is in ``/sys/fs/cgroup/cpuacct/<id>/<host>``; teardown SIGKILLs them, removes the
cgroups, deletes the namespaces and the directory. :func:`fleet_sys.reap_stale` does the same for fleets
whose owner process died.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .daemons import DOCKERD, set_parent_death_signal, tail
from .fleet_state import PROFILES, SUDO_USER, HostSpec, plan, write_state
from .fleet_sys import (CGROUP_ROOT, NETNS_DIR, PREFIX, banner, docker, in_namespaces, ip, kill_cgroup_tree,
                        kill_containers, mounts_under, write_mounts)
from .sshd import SFTP_SERVER, SSHD, ssh_keygen

BASTION_IP = 2


def fleet_prerequisites() -> str | None:
    """Why a fleet cannot start here (None when it can)."""
    if os.geteuid() != 0:
        return "the test fleet needs root (namespaces, cgroups, sshd)"
    for tool in (SSHD, DOCKERD, "ssh", "ssh-keygen", "sudo", "ip", "nsenter", "unshare", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} not found (scripts/setup.sh installs it)"
    if not (CGROUP_ROOT / "cpuacct.usage").exists():
        return f"no cpuacct cgroup (v1) hierarchy at {CGROUP_ROOT}"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "the kernel has no overlay filesystem"
    return None


@dataclass
class FleetHost:
    spec: HostSpec
    address: str
    netns: str
    dir: Path
    cgroup: Path
    host_key_line: str = ""
    sshd: subprocess.Popen | None = None
    dockerd: subprocess.Popen | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def docker_socket(self) -> Path:
        """The socket of the dockerd this host answers with, as the machine sees it."""
        return self.dir / "run" / "docker.sock"

    def docker(self, *args: str, check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The docker CLI against this host's daemon (same signature as DockerDaemon.docker, so
        :func:`tests.support.images.import_busybox` works on a fleet host)."""
        done = docker(self.docker_socket, *args, timeout=timeout)
        if check and done.returncode:
            raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, done.stderr)
        return done


class Fleet:
    """Start ``size`` hosts (see :func:`fleet_state.plan`) and stop them without a trace.

    Start it from a long-lived thread (pytest's main thread): processes get a parent-death
    signal that fires when the *starting thread* exits."""

    def __init__(self, size: int = 50, own_daemons: int = 6, base_dir: str = "/tmp",
                 specs: list[HostSpec] | None = None):
        self.id = f"{PREFIX}{secrets.token_hex(2)}"
        self.dir = Path(base_dir) / self.id
        self.specs = specs or plan(size, own_daemons)
        self.subnet: int | None = None
        self.hub = f"{self.id}-hub"
        self.bastion_ns = f"{self.id}-bastion"
        self.cgroup = CGROUP_ROOT / self.id
        self.hosts: dict[str, FleetHost] = {}
        self.daemons: dict[str, subprocess.Popen] = {}  # profile -> shared dockerd
        self.bastion: FleetHost | None = None
        self.client_key = self.dir / "client_key"
        self.known_hosts = self.dir / "known_hosts"
        self.ssh_config = self.dir / "ssh_config"
        self.timings: dict[str, float] = {}
        self._netns: list[str] = []

    def __enter__(self) -> Fleet:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---------------------------------------------------------------------------- start

    def start(self) -> Fleet:
        began = time.monotonic()
        self.dir.mkdir(mode=0o755)
        (self.dir / "owner.pid").write_text(str(os.getpid()))
        self.cgroup.mkdir()
        self._network_hub()
        with ThreadPoolExecutor(max_workers=8) as pool:  # short-lived helper commands only
            keygen = pool.submit(ssh_keygen, self.client_key, "hardline-fleet-admin")
            self.bastion = self._new_host(HostSpec(index=0, reach="bastion", daemon="none"), f"169.254.{self.subnet}.{BASTION_IP}",
                                          "bastion")
            for spec in self.specs:
                self.hosts[spec.name] = self._new_host(spec, self.address(spec.index), spec.name)
            everyone = [self.bastion, *self.hosts.values()]
            list(pool.map(self._prepare, everyone))
            keygen.result()
        self.timings["prepare"] = time.monotonic() - began
        (self.dir / "authorized_keys").write_text(self.client_key.with_suffix(".pub").read_text())
        self._start_shared_daemons()
        for host in everyone:  # spawned from this thread (parent-death signal), waited on below
            if host.spec.runs_sshd:
                self._spawn_sshd(host)
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(self._wait_sshd, [h for h in everyone if h.spec.runs_sshd]))
        for host in self.hosts.values():
            if host.spec.daemon == "own":
                self._spawn_own_dockerd(host)
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(self._wait_dockerd, [h for h in self.hosts.values() if h.spec.daemon == "own"]))
        self._write_client_files()
        self.timings["start"] = time.monotonic() - began
        return self

    @property
    def namespaces(self) -> list[str]:
        """Network namespaces of this fleet (hub, bastion, hosts, shared daemons)."""
        return list(self._netns)

    def address(self, index: int) -> str:
        return f"169.254.{self.subnet}.{10 + index}"

    def _network_hub(self) -> None:
        """Hub namespace with br0, and the machine's single uplink on it (subnet claimed by trying)."""
        self._add_netns(self.hub)
        ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        ip("-n", self.hub, "link", "set", "br0", "up")
        ip("link", "add", self.id, "type", "veth", "peer", "name", "uplink", "netns", self.hub)
        ip("link", "set", "dev", self.id, "addrgenmode", "none")  # no IPv6 link-local address either
        ip("-n", self.hub, "link", "set", "dev", "uplink", "master", "br0", "up")
        candidates = random.sample(range(100, 200), 100)
        for x in candidates:
            if ip("-4", "route", "show", "to", "match", f"169.254.{x}.1").stdout.strip().startswith(("169.254", "blackhole")):
                continue  # someone already routes (part of) this /24
            ip("addr", "add", f"169.254.{x}.1/24", "dev", self.id)
            others = [line for line in ip("-4", "-o", "addr", "show", "to", f"169.254.{x}.0/24").stdout.splitlines()
                      if f" {self.id} " not in f" {line.split()[1]} "]
            if not others:
                self.subnet = x
                break
            ip("addr", "del", f"169.254.{x}.1/24", "dev", self.id)
        else:
            raise RuntimeError("no free 169.254.X.0/24 (X in 100-199) for the fleet")
        ip("link", "set", self.id, "up")

    def _add_netns(self, name: str) -> None:
        ip("netns", "add", name)
        self._netns.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def _new_host(self, spec: HostSpec, address: str, name: str) -> FleetHost:
        host = FleetHost(spec, address, f"{self.id}-{name}", self.dir / name, self.cgroup / name)
        self._add_netns(host.netns)
        return host

    def _prepare(self, host: FleetHost) -> None:
        """Keys, files, veth and address of one host (runs in a worker thread)."""
        host.dir.mkdir()
        host.cgroup.mkdir()
        key = host.dir / "ssh_host_ed25519_key"
        host.host_key_line = " ".join(ssh_keygen(key, f"{host.name}.{self.id}").split()[:2])
        if host.spec.reach == "bastion":
            mounts = [["--bind", str(host.dir / "run"), "/run"]]
            (host.dir / "run" / "sshd").mkdir(parents=True)
        else:
            mounts = write_state(host.spec, host.dir)
        if host.spec.daemon == "shared":
            (host.dir / "run" / "docker.sock").touch()  # mount point of the shared daemon's socket
            mounts.append(["--bind", str(self.dir / f"d-{host.spec.profile}" / "run" / "docker.sock"),
                           "/run/docker.sock"])
        write_mounts(host.dir / "mounts", mounts)
        (host.dir / "sshd_config").write_text(self._sshd_config(host))
        if host.spec.reach == "jump":  # behind the bastion, not on the bridge
            ip("-n", self.bastion_ns, "link", "add", "in0", "type", "veth", "peer", "name", "eth0", "netns", host.netns)
            ip("-n", self.bastion_ns, "link", "set", "in0", "up")
            ip("-n", self.bastion_ns, "route", "add", f"{host.address}/32", "dev", "in0")
        else:
            veth = "bastion" if host.spec.reach == "bastion" else host.name
            ip("-n", self.hub, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
            ip("-n", self.hub, "link", "set", "dev", veth, "master", "br0", "up")
        ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
        ip("-n", host.netns, "link", "set", "eth0", "up")
        if host.spec.reach == "dropped":  # SYNs arrive, every answer to the machine is dropped
            ip("-n", host.netns, "route", "add", "blackhole", f"169.254.{self.subnet}.1/32")

    def _sshd_config(self, host: FleetHost) -> str:
        root_login = "no" if host.spec.reach == "sudo" else "prohibit-password"
        return "\n".join([
            f"ListenAddress {host.address}:{host.spec.port}",
            f"HostKey {host.dir / 'ssh_host_ed25519_key'}",
            "PidFile none",
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
            f"PermitRootLogin {root_login}",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "StrictModes no",
            "UsePAM no", "UseDNS no", "PrintMotd no", "PrintLastLog no", "MaxStartups 100:30:200",
            "LogLevel INFO", f"Subsystem sftp {SFTP_SERVER}",
        ]) + "\n"

    # ------------------------------------------------------------------------- processes

    def _popen(self, argv: list[str], cgroup: Path, log: Path) -> subprocess.Popen:
        procs = cgroup / "cgroup.procs"

        def preexec() -> None:
            set_parent_death_signal()
            procs.write_text(str(os.getpid()))

        with open(log, "ab") as out:
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=preexec)

    def _start_shared_daemons(self) -> None:
        """One real dockerd per profile used by a shared host, in a namespace of its own."""
        profiles = sorted({s.profile for s in self.specs if s.daemon == "shared"})
        for profile in profiles:
            ddir = self.dir / f"d-{profile}"
            (ddir / "etc-docker").mkdir(parents=True)
            (ddir / "run").mkdir()
            (ddir / "etc-docker" / "daemon.json").write_text(json.dumps(PROFILES[profile]))
            write_mounts(ddir / "mounts", [["--bind", str(ddir / "run"), "/run"],
                                            ["--bind", str(ddir / "etc-docker"), "/etc/docker"]])
            (self.cgroup / f"d-{profile}").mkdir()
            self._add_netns(f"{self.id}-d-{profile}")
            argv = in_namespaces(f"{self.id}-d-{profile}", ddir / "mounts",
                                       [DOCKERD, "--data-root", str(ddir / "data")])
            self.daemons[profile] = self._popen(argv, self.cgroup / f"d-{profile}", ddir / "dockerd.log")
        for profile in profiles:
            ddir = self.dir / f"d-{profile}"
            self._wait_docker(ddir / "run" / "docker.sock", self.daemons[profile], ddir / "dockerd.log")
            pid = (ddir / "run" / "docker.pid").read_text()
            for spec in self.specs:
                if spec.daemon == "shared" and spec.profile == profile:
                    (self.dir / spec.name / "run" / "docker.pid").write_text(pid)

    def _spawn_sshd(self, host: FleetHost) -> None:
        argv = in_namespaces(host.netns, host.dir / "mounts",
                                   [SSHD, "-D", "-e", "-f", str(host.dir / "sshd_config")])
        host.sshd = self._popen(argv, host.cgroup, host.dir / "sshd.log")

    def _wait_sshd(self, host: FleetHost, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        probe = ["nsenter", f"--net={NETNS_DIR / host.netns}", "python3", "-c",
                 "import socket,sys; s=socket.create_connection((sys.argv[1], int(sys.argv[2])), 2); "
                 "sys.exit(0 if s.recv(4) == b'SSH-' else 1)", host.address, str(host.spec.port)]
        while time.monotonic() < deadline:
            if host.sshd.poll() is not None:
                raise RuntimeError(f"sshd of {host.name} exited ({host.sshd.returncode}):\n{tail(host.dir / 'sshd.log')}")
            if host.spec.reach in ("dropped", "jump"):  # not reachable from here: ask inside its namespace
                if subprocess.run(probe, capture_output=True).returncode == 0:
                    return
            elif banner(host.address, host.spec.port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"sshd of {host.name} not answering after {timeout}s:\n{tail(host.dir / 'sshd.log')}")

    def _spawn_own_dockerd(self, host: FleetHost) -> None:
        """dockerd in the host's own network and mount namespaces (those of its sshd)."""
        argv = ["nsenter", f"--target={host.sshd.pid}", "--mount", "--net", DOCKERD,
                "--data-root", str(host.dir / "docker")]
        host.dockerd = self._popen(argv, host.cgroup, host.dir / "dockerd.log")

    def _wait_dockerd(self, host: FleetHost) -> None:
        self._wait_docker(host.docker_socket, host.dockerd, host.dir / "dockerd.log")

    def _wait_docker(self, sock: Path, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"dockerd exited ({proc.returncode}):\n{tail(log)}")
            if sock.exists() and docker(sock, "version", "--format", "{{.Server.Version}}").returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"dockerd at {sock} not ready after {timeout}s:\n{tail(log)}")

    # ------------------------------------------------------------------------- client side

    def _write_client_files(self) -> None:
        lines = []
        for host in [self.bastion, *self.hosts.values()]:
            where = host.address if host.spec.port == 22 else f"[{host.address}]:{host.spec.port}"
            lines.append(f"{where} {host.host_key_line}")
        self.known_hosts.write_text("\n".join(lines) + "\n")
        common = [f"  IdentityFile {self.client_key}", "  IdentitiesOnly yes", f"  UserKnownHostsFile {self.known_hosts}",
                  "  GlobalKnownHostsFile /dev/null", "  StrictHostKeyChecking yes", "  BatchMode yes",
                  "  ConnectTimeout 10", "  LogLevel ERROR"]
        blocks = [["Host bastion", f"  HostName {self.bastion.address}", "  User root", *common]]
        for host in self.hosts.values():
            if host.spec.reach in ("alias", "jump"):
                block = [f"Host {host.name}", f"  HostName {host.address}", f"  Port {host.spec.port}", "  User root", *common]
                if host.spec.reach == "jump":
                    block.append("  ProxyJump bastion")
                    blocks.append([f"Host {host.name}-proxycommand", f"  HostName {host.address}", "  User root", *common,
                                   f"  ProxyCommand ssh -F {self.ssh_config} -W %h:%p bastion"])
                blocks.append(block)
        self.ssh_config.write_text("\n".join("\n".join(b) for b in blocks) + "\n")

    def connection(self, name: str) -> dict[str, Any]:
        """pyinfra host data that reaches host ``name`` the way its spec says."""
        host = self.hosts[name]
        if host.spec.reach in ("alias", "jump"):  # everything comes from the ssh_config entry
            return {"ssh_config_file": str(self.ssh_config), "ssh_strict_host_key_checking": "yes"}
        data = {"ssh_hostname": host.address, "ssh_user": "root", "ssh_key": str(self.client_key),
                "ssh_known_hosts_file": str(self.known_hosts), "ssh_strict_host_key_checking": "yes",
                "ssh_allow_agent": False, "ssh_look_for_keys": False}
        if host.spec.reach == "sudo":
            data.update(ssh_user=SUDO_USER, _sudo=True)
        if host.spec.reach == "hang":  # its docker CLI hangs: ask the daemon through it, not the API client
            data["hardline_docker_client"] = "cli"
        return data

    def host_key_variants(self, name: str) -> dict[str, dict[str, Any]]:
        """Inventory entries for host ``name`` whose known_hosts file does not match it:
        ``<name>-unknown-key`` (empty file, strict checking) and ``<name>-changed-key`` (another
        key for its address, pyinfra's default policy accept-new). Both must be refused."""
        host = self.hosts[name]
        unknown, changed = self.dir / f"known_hosts-{name}-empty", self.dir / f"known_hosts-{name}-changed"
        if not changed.exists():
            unknown.write_text("")
            other = " ".join(ssh_keygen(self.dir / f"impostor-{name}", "impostor").split()[:2])
            changed.write_text(f"{host.address} {other}\n")
        return {f"{name}-unknown-key": {**self.connection(name), "ssh_known_hosts_file": str(unknown)},
                f"{name}-changed-key": {**self.connection(name), "ssh_known_hosts_file": str(changed),
                                        "ssh_strict_host_key_checking": "accept-new"}}

    def inventory_text(self, names: list[str] | None = None, extra: dict[str, dict] | None = None,
                       more: dict[str, dict] | None = None) -> str:
        """A pyinfra inventory: ``docker_hosts`` carries each host's data (plus ``extra[name]``,
        plus the ``more`` entries); the other groups of :attr:`HostSpec.groups` list names only."""
        chosen = [self.hosts[n] for n in (self.hosts if names is None else names)]
        entries = [(h.name, {**self.connection(h.name), **(extra or {}).get(h.name, {})}) for h in chosen]
        entries += list((more or {}).items())
        groups: dict[str, list[str]] = {}
        for h in chosen:
            for g in h.spec.groups:
                if g != "docker_hosts":
                    groups.setdefault(g, []).append(h.name)
        lines = [f'"""Test fleet {self.id}: {len(chosen)} hosts (tests/support/fleet.py)."""', "",
                 "docker_hosts = ["] + [f"    ({n!r}, {d!r})," for n, d in entries] + ["]"]
        lines += [f"{g} = {names_!r}" for g, names_ in sorted(groups.items())]
        return "\n".join(lines) + "\n"

    def write_inventory(self, path: str | os.PathLike, names: list[str] | None = None, **kw: Any) -> Path:
        path = Path(path)
        path.write_text(self.inventory_text(names, **kw))
        return path

    def cpu_seconds(self, name: str) -> float:
        """CPU (user+system) spent so far by everything in a host's cgroup (or a shared
        daemon's: ``d-compliant``, ``d-default``; or ``bastion``)."""
        return int((self.cgroup / name / "cpuacct.usage").read_text()) / 1e9

    # ------------------------------------------------------------------------------ stop

    def stop(self) -> None:
        began = time.monotonic()
        kill_containers([h.docker_socket for h in self.hosts.values() if h.spec.daemon == "own"]
                         + [self.dir / f"d-{p}" / "run" / "docker.sock" for p in self.daemons])
        survivors = kill_cgroup_tree(self.cgroup)
        for proc in [*self.daemons.values(), *(p for h in self.hosts.values() for p in (h.sshd, h.dockerd) if p)]:
            proc.poll()  # reap our direct children
        if self.bastion and self.bastion.sshd:
            self.bastion.sshd.poll()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda ns: ip("netns", "delete", ns, check=False), reversed(self._netns)))
        self._netns.clear()
        ip("link", "delete", self.id, check=False)  # gone with the hub already; just in case
        if self.dir.exists() and not mounts_under(self.dir):
            shutil.rmtree(self.dir, ignore_errors=True)
        self.timings["stop"] = time.monotonic() - began
        if survivors:
            raise RuntimeError(f"fleet {self.id}: processes survived SIGKILL: {survivors}")
