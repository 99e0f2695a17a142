"""Real, throw-away Docker daemons for tests.

Every :class:`DockerDaemon` is a separate ``dockerd`` (plus the containerd it
manages) with its own config file, data root, exec root, pidfile and unix
socket under a short directory ``/tmp/hl-d<N>-<random>/``.  Several of them
can run side by side; none of them touches the machine's default daemon
(``/var/run/docker.sock``), ``/var/lib/docker`` or ``/etc/docker``.

Why every daemon gets its own network namespace
-----------------------------------------------
Side-by-side daemons in the host network namespace fight: they all want the
``docker0`` bridge and 172.17.0.0/16, and on start-up libnetwork *deletes and
recreates* the global ``DOCKER``/``DOCKER-ISOLATION-*`` iptables chains, so a
second daemon silently wipes the rules of the first one (and of the machine's
real daemon).  Giving each daemon a private bridge via ``--bridge`` does not
help with iptables, and ``--iptables=false`` would change exactly the setting
the CIS checks look at (2.3).

So each daemon runs in its own named network namespace (``ip netns add
hl-d<N>-<random>``).  Inside it the daemon has its own ``docker0``, its own
iptables tables and its own ``ip_forward`` sysctl, with **no extra dockerd flag
and no change to the test's daemon.json**; ``bridge``/``bip``/``iptables``
from the test config simply apply inside the namespace.  The unix socket lives
on the shared filesystem, so the host reaches the daemon as usual with
``docker -H unix://...``.  We enter the namespace with ``nsenter --net`` rather
than ``ip netns exec`` because the latter remounts ``/sys`` and thereby hides
the cgroup mounts (dockerd then dies with "Devices cgroup isn't mounted").

The daemon also gets a private *mount* namespace (``unshare --mount
--propagation slave``), for two reasons:

* ``/etc/docker`` is bind-mounted from ``<dir>/etc-docker`` so the daemon
  writes its ``key.json`` there and never reads the host's
  ``/etc/docker/daemon.json`` (``config=None`` really means "defaults").  If
  the host has no ``/etc/docker`` at all there is nothing to mount over; then
  dockerd creates ``/etc/docker/key.json`` exactly like a first stock start.
* overlay and netns mounts made by the daemon stay in its namespace and vanish
  with it, so a crashed test never leaves mounts behind under ``/tmp``.

Consequences worth knowing: TCP listeners (``-H tcp://...``) and published
ports live inside the namespace and are not reachable from the host; host
tools see the daemon's view of ``/etc/docker`` only via
``/proc/<pid>/root/etc/docker``.

Clean-up never goes by process name: we kill the dockerd we spawned, every
process inside *our* (randomly named) network namespace, and processes in the
cgroups of *our* containers.  Other engineers' daemons are never touched.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

__all__ = [
    "DOCKER_CLI",
    "DOCKERD",
    "DaemonFactory",
    "DaemonStartError",
    "DockerDaemon",
    "missing_prerequisites",
    "reap_stale",
]

DOCKERD = os.environ.get("HL_DOCKERD", "/usr/sbin/dockerd")
# Prefer the CLI shipped with the daemon (docker.io) over any newer one that
# happens to be first on PATH; both work, but matching versions avoid API
# negotiation surprises.
DOCKER_CLI = os.environ.get("HL_DOCKER_CLI") or (
    "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else (shutil.which("docker") or "docker")
)
ETC_DOCKER = "/etc/docker"
NETNS_DIR = "/run/netns"
# Keys that we always pass as flags; dockerd refuses to start when a directive
# is given both as a flag and in the config file.
RESERVED_CONFIG_KEYS = frozenset({"hosts", "data-root", "exec-root", "pidfile"})
LOG_TAIL_LINES = 40

_counter = itertools.count(1)


class DaemonStartError(RuntimeError):
    """dockerd did not become ready; ``log_tail`` holds the end of its log."""

    def __init__(self, message: str, log_tail: str) -> None:
        super().__init__(f"{message}\n--- dockerd log (tail) ---\n{log_tail}")
        self.log_tail = log_tail


# --------------------------------------------------------------------------
# process helpers (also used by sshd.py)
# --------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int = signal.SIGTERM) -> None:
    """preexec_fn: have the child signalled if the spawning test process dies.

    Without this a SIGKILLed pytest would leave daemons running forever.
    SIGTERM (not KILL) so dockerd still shuts its containers/containerd down.
    Linux ties this to the spawning *thread*, not the process.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def process_state(pid: int) -> str | None:
    """Return the one-letter state of ``pid`` (``"Z"`` for zombies) or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm may contain spaces/parentheses; the state follows the last ')'.
    return stat.rsplit(")", 1)[1].split()[0]


def is_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (zombies are already dead)."""
    state = process_state(pid)
    return state is not None and state not in ("Z", "X")


def all_pids() -> list[int]:
    """All pids currently in /proc."""
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def parent_pid(pid: int) -> int | None:
    """Parent pid of ``pid`` or None if it vanished."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def descendants(pid: int) -> list[int]:
    """All live descendants of ``pid`` (children first, breadth-first)."""
    children: dict[int, list[int]] = {}
    for p in all_pids():
        ppid = parent_pid(p)
        if ppid is not None:
            children.setdefault(ppid, []).append(p)
    found: list[int] = []
    queue = list(children.get(pid, []))
    while queue:
        p = queue.pop(0)
        found.append(p)
        queue.extend(children.get(p, []))
    return found


def kill_and_wait(pids: Iterable[int], sig: int = signal.SIGKILL, timeout: float = 10) -> list[int]:
    """Send ``sig`` to ``pids`` and wait until they are dead; return survivors."""
    pids = [p for p in pids if p > 1]
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if is_alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if is_alive(p)]
    return alive


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """Last ``lines`` lines of a text file ("" if missing)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` visible in our mount namespace."""
    prefix = str(path).rstrip("/")
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return points


def missing_prerequisites() -> str | None:
    """Why real daemons cannot run here (for pytest.skip), or None if they can."""
    if os.geteuid() != 0:
        return "real dockerd tests need root"
    for tool in (DOCKERD, DOCKER_CLI, "ip", "nsenter", "unshare", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    return None


def reap_stale(base_dir: str | os.PathLike[str] = "/tmp", min_age: float = 120) -> list[str]:
    """Delete namespaces + directories left behind by killed test processes.

    A SIGKILLed pytest cannot run teardown; its dockerd exits via the
    parent-death signal but ``hl-d*`` namespaces and directories stay.  Only
    namespaces that are *empty* (no process inside, so no live daemon, ours or
    another session's) and older than ``min_age`` seconds (not a daemon that
    is between ``ip netns add`` and spawning dockerd) are removed.  Returns
    the names reaped.
    """
    reaped = []
    netns_dir = Path(NETNS_DIR)
    for entry in sorted(netns_dir.glob("hl-d*")) if netns_dir.is_dir() else []:
        try:
            age = time.time() - entry.stat().st_mtime
        except FileNotFoundError:
            continue
        if age < min_age or _run(["ip", "netns", "pids", entry.name], check=False).stdout.strip():
            continue
        _run(["ip", "netns", "delete", entry.name], check=False)
        leftover = Path(base_dir) / entry.name
        if leftover.is_dir() and not mounts_under(leftover):
            shutil.rmtree(leftover, ignore_errors=True)
        reaped.append(entry.name)
    return reaped


def _run(cmd: Sequence[str], timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a helper command, capturing text output."""
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=check)


# --------------------------------------------------------------------------
# the daemon
# --------------------------------------------------------------------------


class DockerDaemon:
    """One throw-away dockerd in its own directory and network namespace.

    Attributes (all fixed at construction, before :meth:`start`):
        index: sequence number N of this daemon within the test process.
        name: ``hl-d<N>-<random>``; also the network namespace name.
        dir: the daemon's directory ``/tmp/hl-d<N>-<random>``.
        config_path: ``<dir>/daemon.json`` (only passed when a config is given).
        socket: unix socket path; host_url: ``unix://<socket>``.
        pidfile, data_root, exec_root, log_path: per-daemon paths.
        etc_docker: directory mounted over ``/etc/docker`` for the daemon.
        pid: dockerd's pid while running, else None.
        start_seconds: how long the last successful start took.
    """

    def __init__(self, base_dir: str | os.PathLike[str] = "/tmp") -> None:
        self.index = next(_counter)
        self.dir = Path(tempfile.mkdtemp(prefix=f"hl-d{self.index}-", dir=base_dir))
        # userns-remap needs the remapped root to traverse the path to the data root
        self.dir.chmod(0o711)
        self.name = self.dir.name
        self.netns = self.name
        self.config_path = self.dir / "daemon.json"
        self.socket = self.dir / "docker.sock"
        self.host_url = f"unix://{self.socket}"
        self.pidfile = self.dir / "docker.pid"
        self.data_root = self.dir / "data"
        self.exec_root = self.dir / "exec"
        self.log_path = self.dir / "dockerd.log"
        self.etc_docker = self.dir / "etc-docker"
        self.cli_config = self.dir / "cli"
        self.pid: int | None = None
        self.start_seconds: float | None = None
        self.config: dict | str | None = None
        self.flags: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._netns_created = False
        # sun_path is 108 bytes; containerd's socket sits deeper than ours.
        if len(str(self.exec_root / "containerd" / "containerd.sock")) > 100:
            self.dir.rmdir()
            raise ValueError(f"base_dir too long for unix sockets: {base_dir}")

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<DockerDaemon {self.name} {state}>"

    # -- context manager ------------------------------------------------------

    def __enter__(self) -> DockerDaemon:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        self.remove()

    # -- lifecycle -------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while our dockerd process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, config: dict | str | None = None, flags: Sequence[str] = (), wait: float = 60) -> DockerDaemon:
        """Start dockerd and block until ``docker info`` answers.

        config: dict → written as JSON to ``daemon.json``; str → written raw
        (to test broken/commented files); None → no ``--config-file`` at all
        (dockerd then looks at /etc/docker/daemon.json, which for this daemon
        is the empty ``<dir>/etc-docker``).  flags: extra dockerd arguments.
        Raises DaemonStartError (with the log tail) if not ready in ``wait`` s.
        """
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self.config, self.flags = config, list(flags)
        self._write_config(config)
        self._ensure_netns()
        began = time.monotonic()
        self._spawn(self._dockerd_argv(config is not None, self.flags))
        try:
            self._wait_ready(wait)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self

    def stop(self, timeout: float = 20) -> None:
        """Stop dockerd, its containerd, shims and containers; drop the netns.

        Idempotent.  Running containers are killed first because a graceful
        dockerd shutdown would wait 10 s per container whose PID 1 ignores
        SIGTERM (e.g. ``sleep`` as PID 1).
        """
        if self._proc is not None:
            if self.running:
                self._kill_containers()
                self._proc.terminate()
                try:
                    self._proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(timeout)
            self._proc = None
        self.pid = None
        try:
            self._kill_leftovers()
        finally:
            self._delete_netns()

    def remove(self) -> None:
        """Delete the daemon directory (after stop); refuses while mounts remain."""
        if self.running:
            raise RuntimeError(f"{self.name} is still running")
        if mounts_under(self.dir):
            # Never rm -rf through a live mount (it would delete what is mounted).
            raise RuntimeError(f"mounts remain under {self.dir}: {mounts_under(self.dir)}")
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- talking to the daemon ------------------------------------------------

    def env(self) -> dict[str, str]:
        """Environment for a docker CLI/tool aimed at this daemon (DOCKER_HOST set)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_HOST"] = self.host_url
        # Keep the CLI away from ~/.docker (contexts, credentials).
        env["DOCKER_CONFIG"] = str(self.cli_config)
        return env

    def docker(
        self, *args: str, check: bool = False, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the docker CLI against this daemon; text output captured."""
        return subprocess.run(
            [DOCKER_CLI, *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            input=input,
        )

    def info(self) -> dict:
        """``docker info`` as a dict."""
        return json.loads(self.docker("info", "--format", "{{json .}}", check=True).stdout)

    def netns_exec(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command inside the daemon's network namespace (e.g. ``ip``/``iptables``)."""
        return _run(["nsenter", f"--net={NETNS_DIR}/{self.netns}", *cmd], check=check)

    def log(self) -> str:
        """Whole dockerd log so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- internals -------------------------------------------------------------

    def _write_config(self, config: dict | str | None) -> None:
        """Write daemon.json (or remove a stale one when config is None)."""
        if isinstance(config, dict):
            clash = RESERVED_CONFIG_KEYS & config.keys()
            if clash:
                raise ValueError(f"{sorted(clash)} are set by the harness as flags; dockerd rejects duplicates")
            self.config_path.write_text(json.dumps(config, indent=2) + "\n")
        elif isinstance(config, str):
            self.config_path.write_text(config)
        else:
            self.config_path.unlink(missing_ok=True)
        self.etc_docker.mkdir(exist_ok=True)
        self.cli_config.mkdir(exist_ok=True)

    def _dockerd_argv(self, with_config: bool, flags: Sequence[str]) -> list[str]:
        """dockerd command line; the paths keep the daemon off host state."""
        argv = [DOCKERD]
        if with_config:
            argv += ["--config-file", str(self.config_path)]
        argv += [
            "--data-root", str(self.data_root),
            "--exec-root", str(self.exec_root),
            "--pidfile", str(self.pidfile),
            "-H", self.host_url,
        ]  # fmt: skip
        return argv + list(flags)

    def _ensure_netns(self) -> None:
        """Create our network namespace with loopback up (idempotent)."""
        if self._netns_created:
            return
        _run(["ip", "netns", "add", self.netns])
        self._netns_created = True
        _run(["ip", "-n", self.netns, "link", "set", "lo", "up"])

    def _delete_netns(self) -> None:
        """Drop the namespace; its docker0 and iptables go with it."""
        if self._netns_created:
            _run(["ip", "netns", "delete", self.netns], check=False)
            self._netns_created = False

    def _spawn(self, dockerd_argv: list[str]) -> None:
        """Launch dockerd inside private net + mount namespaces."""
        # The shell runs in the new mount namespace, hides /etc/docker, then
        # exec's dockerd so that Popen.pid *is* dockerd.
        script = '[ -d "$0" ] && { mount --bind "$1" "$0" || exit 97; }; shift; exec "$@"'
        argv = [
            "nsenter", f"--net={NETNS_DIR}/{self.netns}",
            "unshare", "--mount", "--propagation", "slave",
            "sh", "-c", script, ETC_DOCKER, str(self.etc_docker), *dockerd_argv,
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # no terminal ^C; teardown stops it
                preexec_fn=set_parent_death_signal,
            )
        self.pid = self._proc.pid

    def _wait_ready(self, wait: float) -> None:
        """Poll ``docker info`` until rc 0; fail fast if dockerd exits."""
        assert self._proc is not None
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise DaemonStartError(
                    f"dockerd {self.name} exited with rc {self._proc.returncode}", tail(self.log_path)
                )
            if self.socket.exists() and self._info_ok():
                return
            time.sleep(0.1)
        raise DaemonStartError(f"dockerd {self.name} not ready after {wait:g}s", tail(self.log_path))

    def _info_ok(self) -> bool:
        try:
            return self.docker("info", "--format", "{{.ID}}", timeout=10).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def _kill_containers(self) -> None:
        """SIGKILL all running containers via the API (fast, clean shims)."""
        try:
            ids = self.docker("ps", "-q", timeout=10).stdout.split()
            if ids:
                self.docker("kill", *ids, timeout=30)
        except subprocess.TimeoutExpired:
            pass  # the process-level clean-up below still gets them

    def _container_ids(self) -> list[str]:
        """IDs of every container this daemon ever created (from its data root)."""
        containers = self.data_root / "containers"
        return [p.name for p in containers.iterdir()] if containers.is_dir() else []

    def _netns_pids(self) -> list[int]:
        """Processes inside our network namespace (containerd, shims, --net=host)."""
        if not self._netns_created:
            return []
        out = _run(["ip", "netns", "pids", self.netns], check=False).stdout
        return [int(p) for p in out.split()]

    def _container_pids(self) -> list[int]:
        """Processes in the cgroups of our containers (their own netns)."""
        ids = self._container_ids()
        if not ids:
            return []
        found = []
        for pid in all_pids():
            try:
                cgroups = Path(f"/proc/{pid}/cgroup").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if any(cid in cgroups for cid in ids):
                found.append(pid)
        return found

    def _kill_leftovers(self) -> None:
        """SIGKILL whatever of ours survived the graceful shutdown."""
        leftovers = set(self._netns_pids()) | set(self._container_pids())
        survivors = kill_and_wait(leftovers)
        if survivors:
            raise RuntimeError(f"{self.name}: processes survived SIGKILL: {survivors}")


class DaemonFactory:
    """Starts daemons on demand and stops/removes all of them at teardown.

    Set ``HL_KEEP_DAEMON_DIRS=1`` to keep the directories (logs) for debugging.
    Start daemons from a long-lived thread (the pytest main thread): the
    parent-death signal fires when the *spawning thread* exits, so a daemon
    started from a short-lived worker thread would be terminated with it.
    """

    def __init__(self, base_dir: str | os.PathLike[str] = "/tmp", keep_dirs: bool | None = None) -> None:
        self.base_dir = base_dir
        self.keep_dirs = os.environ.get("HL_KEEP_DAEMON_DIRS") == "1" if keep_dirs is None else keep_dirs
        self.daemons: list[DockerDaemon] = []

    def new(self) -> DockerDaemon:
        """A tracked daemon that is not started yet."""
        daemon = DockerDaemon(self.base_dir)
        self.daemons.append(daemon)
        return daemon

    def start(self, config: dict | str | None = None, flags: Sequence[str] = (), wait: float = 60) -> DockerDaemon:
        """Create and start a tracked daemon (see :meth:`DockerDaemon.start`)."""
        return self.new().start(config, flags, wait)

    __call__ = start

    def stop_all(self) -> None:
        """Stop every tracked daemon and remove their directories.

        In parallel: each dockerd needs ~1 s to shut its containerd down.
        """
        daemons, self.daemons = self.daemons, []
        if not daemons:
            return
        with ThreadPoolExecutor(max_workers=len(daemons)) as pool:
            errors = [e for e in pool.map(self._dispose, daemons) if e is not None]
        if errors:
            raise errors[0]

    def _dispose(self, daemon: DockerDaemon) -> Exception | None:
        """Stop (and remove) one daemon; return instead of raise so one bad
        daemon cannot leak the others."""
        try:
            daemon.stop()
            if not self.keep_dirs:
                daemon.remove()
        except Exception as exc:
            return exc
        return None

    def __enter__(self) -> DaemonFactory:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()
