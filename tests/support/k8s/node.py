"""One Kubernetes test node: its own namespaces, its own view of the real paths, sshd, containerd.

A node is a set of Linux namespaces on this machine (network, mount, PID, UTS) whose PID 1 is
``nodeinit.py``. Inside, the node sees the machine's filesystem with per-node layers on top:

* ``/etc``, ``/var/lib``, ``/var/log``, ``/opt``, ``/usr/libexec``, ``/root``: overlays whose upper
  layers are ``<dir>/upper/<name>``: kubeadm, the kubelet, containerd, etcd and any pyinfra
  deploy write their real files at the real paths (``/etc/kubernetes``, ``/var/lib/kubelet``,
  ``/var/lib/etcd``, ``/etc/systemd/system/kubelet.service.d``, ...) and the host sees none of
  it. Those paths start absent (whited out), as on a machine that never ran Kubernetes.
* ``/usr/bin``: read-only union of the built kubeadm/kubelet/kubectl/... and the machine's
  /usr/bin, i.e. where Debian/kubeadm packages install them.
* ``/run``: a private tmpfs (containerd's socket and state, shim sockets, pid files).
* ``/var/lib/containerd``: a plain directory ``<dir>/containerd`` (overlayfs snapshots cannot
  live on an overlay).
* six kernel tunables the kubelet reads and (unless protectKernelDefaults) writes
  (vm.overcommit_memory, vm.panic_on_oom, kernel.panic, kernel.panic_on_oops,
  kernel.keys.root_maxkeys/root_maxbytes): **simulated** per node by files bind-mounted over
  their /proc/sys entries, initialised from the machine's values. They are global (not
  namespaced) and a kubelet would otherwise set kernel.panic_on_oops=1 on the shared machine.

There is no systemd (PID 1 of the machine is not systemd), so the node has the package's
``kubelet.service`` + ``10-kubeadm.conf`` drop-in, a SysV ``/etc/init.d/kubelet`` that runs the
drop-in's ExecStart as systemd would, and a **systemctl stand-in** (files/systemctl) mapping
start/stop/restart/is-active/show onto that script, so kubeadm and deploys start and restart the
kubelet with the usual ``systemctl restart kubelet``. The harness starts sshd and containerd.
Everything else is the real software: Debian's containerd/runc, the built kubelet, and the
static pods it runs.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..daemons import kill_and_wait, set_parent_death_signal, tail
from ..sshd import SFTP_SERVER, SSHD, pyinfra_ssh_data, ssh_keygen, strict_testinfra_host
from . import plumbing
from .images import BINARIES

HERE = Path(__file__).resolve().parent
FILES = HERE / "files"
OVERLAID = ("/etc", "/var/lib", "/var/log", "/opt", "/usr/libexec", "/root")
FRESH = (
    "/etc/kubernetes", "/var/lib/kubelet", "/var/lib/etcd", "/etc/systemd/system/kubelet.service.d",
    "/etc/systemd/system/kubelet.service", "/etc/containerd", "/etc/cni", "/var/lib/containerd",
    "/opt/containerd", "/opt/cni", "/var/log/pods", "/var/log/containers", "/etc/default/kubelet",
)  # fmt: skip
KERNEL_TUNABLES = (
    "vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
)  # fmt: skip
NODE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"


class NodeError(RuntimeError):
    """A node step failed; the message carries the relevant log tail."""


class K8sNode:
    """Namespaces, overlays, sshd and containerd of one node (Kubernetes itself: cluster.py).

    Attributes: name, cluster (id), netns, ip, dir, init_pid, ssh_port (loopback forward to the
    node's sshd), api_port (loopback forward to the node's :6443), client_key, known_hosts.
    """

    def __init__(self, cluster_id: str, cluster_dir: Path, name: str, ip: str, bin_dir: Path) -> None:
        self.cluster = cluster_id
        self.name = name
        self.ip = ip
        self.netns = f"{cluster_id}-{name}"
        self.cgroup_root = f"/{self.netns}"
        self.dir = cluster_dir / name
        self.bin_dir = bin_dir
        self.logs = self.dir / "logs"
        self.ssh_dir = self.dir / "ssh"
        self.client_key = self.ssh_dir / "client_key"
        self.known_hosts = self.ssh_dir / "known_hosts"
        self.ssh_config = self.ssh_dir / "ssh_config"
        self.init_pid: int | None = None
        self.ssh_port: int | None = None
        self.api_port: int | None = None
        self._init: subprocess.Popen[str] | None = None
        self._forward: subprocess.Popen[str] | None = None
        self._daemons: dict[str, subprocess.Popen[bytes]] = {}
        self.machine_tunables: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"<K8sNode {self.name} {self.ip} {'running' if self.running else 'stopped'}>"

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._init is not None and self._init.poll() is None

    def boot(self, switch: str, port: str, hosts: str, containerd_config: str) -> None:
        """Namespaces, overlays, sshd, the loopback forward and containerd (no Kubernetes yet)."""
        for sub in ("upper", "work", "containerd", "sysctl", "bin", "ssh", "logs"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self._link_binaries()
        self.machine_tunables = {t: Path("/proc/sys", t).read_text() for t in KERNEL_TUNABLES}
        for tunable, value in self.machine_tunables.items():
            (self.dir / "sysctl" / tunable.replace("/", ".")).write_text(value)
        (self.dir / "hosts").write_text(hosts)
        (self.dir / "containerd.toml").write_text(containerd_config)
        (self.dir / "setup.sh").write_text(self._setup_script())
        plumbing.create_node_netns(switch, self.netns, port, f"{self.ip}/24")
        plumbing.create_cgroup_root(self.cgroup_root.lstrip("/"))
        self._start_init()
        self._start_sshd()
        self._start_forward()
        self._start_containerd()

    def stop(self) -> None:
        """Stop everything of the node and remove its namespace and cgroups (dir stays: remove())."""
        if self._init is not None:
            if self._init.poll() is None and self.init_pid:
                try:
                    os.kill(self.init_pid, signal.SIGTERM)  # nodeinit: SIGTERM to all, then exit
                except ProcessLookupError:
                    pass
                try:
                    self._init.wait(20)
                except subprocess.TimeoutExpired:
                    self._init.kill()  # unshare --kill-child: SIGKILL to init, so to the whole node
                    self._init.wait(10)
            self._init = None
        for proc in [self._forward, *self._daemons.values()]:
            if proc is not None and proc.poll() is None:
                proc.kill()
            if proc is not None:
                proc.wait(10)
        self._forward = None
        self._daemons.clear()
        survivors = kill_and_wait(plumbing.netns_pids(self.netns))
        stayed = plumbing.remove_cgroup_root(self.cgroup_root.lstrip("/"))
        plumbing.delete_netns(self.netns)
        self.init_pid = None
        if survivors or stayed:
            raise NodeError(f"node {self.name}: processes {survivors} / cgroups {stayed} survived the stop")

    # -- running things inside -----------------------------------------------------------------

    def nsenter(self, *cmd: str) -> list[str]:
        """argv running ``cmd`` inside the node (all its namespaces; root and cwd are its /)."""
        assert self.init_pid, f"node {self.name} is not running"
        return ["nsenter", f"--target={self.init_pid}", "--mount", "--uts", "--net", "--pid", "--", *cmd]

    def run(self, *cmd: str, timeout: float = 60, check: bool = False,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command inside the node; text output captured."""
        done = subprocess.run(self.nsenter(*cmd), capture_output=True, text=True, timeout=timeout,
                              env=NODE_ENV, input=input)  # fmt: skip
        if check and done.returncode != 0:
            raise NodeError(f"{self.name}: {shlex.join(cmd)} failed (rc {done.returncode}): {done.stderr.strip()}")
        return done

    def spawn(self, name: str, *cmd: str) -> subprocess.Popen[bytes]:
        """Start a long-running command inside the node, output to ``logs/<name>.log``."""
        with open(self.logs / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(self.nsenter(*cmd), stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, env=NODE_ENV, start_new_session=True,
                                    preexec_fn=set_parent_death_signal)  # fmt: skip
        self._daemons[name] = proc
        return proc

    def path(self, path: str) -> Path:
        """The host's view of ``path`` as the node sees it (through /proc/<init>/root)."""
        assert self.init_pid, f"node {self.name} is not running"
        return Path(f"/proc/{self.init_pid}/root") / path.lstrip("/")

    def log_tail(self, name: str, lines: int = 40) -> str:
        """Tail of a harness log (``logs/<name>.log``: init, sshd, containerd, kubeadm, ...)."""
        return tail(self.logs / f"{name}.log", lines)

    # -- SSH -----------------------------------------------------------------------------------

    @property
    def forward_pid(self) -> int | None:
        """Pid of the loopback forwarder (host side) while the node runs."""
        return self._forward.pid if self._forward is not None else None

    def pyinfra_data(self, **extra: Any) -> dict[str, Any]:
        """pyinfra host data for this node as a normal SSH host (host key checked)."""
        assert self.ssh_port is not None, f"node {self.name} is not running"
        return pyinfra_ssh_data(self.ssh_port, self.client_key, self.known_hosts, **extra)

    def ssh(self, *remote: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A command over real SSH (OpenSSH client, strict host key): one argument is a shell
        command line, several are an argv (quoted for the remote shell)."""
        command = remote[0] if len(remote) == 1 else shlex.join(remote)
        argv = ["ssh", "-F", str(self.ssh_config), "node", command]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)

    def testinfra_host(self) -> Any:
        """A testinfra host over paramiko that checks the node's host key."""
        assert self.ssh_port is not None, f"node {self.name} is not running"
        return strict_testinfra_host(self.ssh_port, self.client_key, self.known_hosts)

    # -- internals -----------------------------------------------------------------------------

    def _link_binaries(self) -> None:
        """Hard links (same file system) or symlinks of the built binaries for the /usr/bin union,
        plus the systemctl stand-in."""
        for name in BINARIES:
            target = self.dir / "bin" / name
            if target.exists() or target.is_symlink():
                continue
            try:
                os.link(self.bin_dir / name, target)
            except OSError:
                target.symlink_to(self.bin_dir / name)
        shutil.copy(FILES / "systemctl", self.dir / "bin" / "systemctl")  # the stand-in, see its header
        (self.dir / "bin" / "systemctl").chmod(0o755)

    def _setup_script(self) -> str:
        d = shlex.quote(str(self.dir))
        q = shlex.quote
        lines = [f"hostname {q(self.name)}"]
        for path in OVERLAID:
            if not os.path.isdir(path):
                continue
            tag = path.strip("/").replace("/", "-")
            lines.append(f"mkdir -p {d}/upper/{tag} {d}/work/{tag}")
            options = f"lowerdir={path},upperdir={d}/upper/{tag},workdir={d}/work/{tag}"
            lines.append(f"mount -t overlay overlay -o {options} {path}")
        lines.append(f"mount -t overlay overlay -o ro,lowerdir={d}/bin:/usr/bin /usr/bin")
        lines.append("mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run")
        lines.append("mkdir -p /run/sshd /run/lock")
        lines.append("rm -rf " + " ".join(FRESH))
        lines.append(f"mkdir -p /var/lib/containerd && mount --bind {d}/containerd /var/lib/containerd")
        for tunable in KERNEL_TUNABLES:
            lines.append(f"mount --bind {d}/sysctl/{tunable.replace('/', '.')} /proc/sys/{tunable}")
        f = shlex.quote(str(FILES))
        lines += [
            "mkdir -p /etc/systemd/system/kubelet.service.d /etc/containerd",
            f"install -m 0644 {f}/kubelet.service /etc/systemd/system/kubelet.service",
            f"install -m 0644 {f}/10-kubeadm.conf /etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
            f"install -m 0755 {f}/kubelet.init /etc/init.d/kubelet",
            f"install -m 0644 {d}/containerd.toml /etc/containerd/config.toml",
            f"cat {d}/hosts > /etc/hosts",
            # root's shell files as a fresh Debian has them (the machine's run pyenv, which can
            # wait a minute for a lock another session holds: every SSH command would)
            "rm -f /root/.bash_profile /root/.bash_login",
            "cp /usr/share/base-files/dot.bashrc /root/.bashrc",
            "cp /usr/share/base-files/dot.profile /root/.profile",
            "echo 'nameserver 127.0.0.1' > /etc/resolv.conf",  # no DNS here: fail fast, not time out
        ]
        return "\n".join(lines) + "\n"

    def _start_init(self) -> None:
        argv = [
            "nsenter", f"--net={plumbing.NETNS_DIR / self.netns}",
            "unshare", "--mount", "--uts", "--pid", "--fork", "--mount-proc", "--propagation", "private",
            "--kill-child", sys.executable, str(HERE / "nodeinit.py"), str(self.dir / "setup.sh"),
        ]  # fmt: skip
        # unshare --fork ignores SIGTERM while it waits for its child, so the test process's death
        # must SIGKILL it; --kill-child then SIGKILLs the node's init and with it the whole node.
        with open(self.logs / "init.log", "ab") as log:
            self._init = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                                          text=True, start_new_session=True,
                                          preexec_fn=lambda: set_parent_death_signal(signal.SIGKILL))  # fmt: skip
        line = self._init.stdout.readline().strip() if self._init.stdout else ""
        if line != "ready":
            self._init.wait(10)
            raise NodeError(f"node {self.name} did not start: {line}\n{self.log_tail('init')}")
        children = Path(f"/proc/{self._init.pid}/task/{self._init.pid}/children").read_text().split()
        self.init_pid = int(children[0])

    def _start_sshd(self) -> None:
        host_key = self.ssh_dir / "ssh_host_ed25519_key"
        if not host_key.exists():
            ssh_keygen(host_key, f"hardline-k8s-node-{self.name}")
            (self.ssh_dir / "authorized_keys").write_text(ssh_keygen(self.client_key, "hardline-test-client") + "\n")
        config = [
            "ListenAddress 0.0.0.0:22", f"HostKey {host_key}", "PidFile /run/sshd.pid",
            f"AuthorizedKeysFile {self.ssh_dir / 'authorized_keys'}", "PermitRootLogin prohibit-password",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "StrictModes no", "UsePAM no",
            "UseDNS no", "PrintMotd no", "LogLevel VERBOSE", f"Subsystem sftp {SFTP_SERVER}",
        ]  # fmt: skip
        (self.ssh_dir / "sshd_config").write_text("\n".join(config) + "\n")
        self.spawn("sshd", SSHD, "-D", "-e", "-f", str(self.ssh_dir / "sshd_config"))

    def _start_forward(self) -> None:
        argv = [sys.executable, str(HERE / "forward.py"), str(plumbing.NETNS_DIR / self.netns),
                f"{self.ip}:22", f"{self.ip}:6443"]  # fmt: skip
        with open(self.logs / "forward.log", "ab") as log:
            self._forward = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                                             text=True, start_new_session=True)  # fmt: skip
        ports = self._forward.stdout.readline().split() if self._forward.stdout else []
        if len(ports) != 2:
            raise NodeError(f"forwarder for {self.name} did not start\n{self.log_tail('forward')}")
        self.ssh_port, self.api_port = int(ports[0]), int(ports[1])
        public = " ".join((self.ssh_dir / "ssh_host_ed25519_key.pub").read_text().split()[:2])
        self.known_hosts.write_text(f"[127.0.0.1]:{self.ssh_port} {public}\n{self.ip} {public}\n")
        self.ssh_config.write_text(
            f"Host node\n  HostName 127.0.0.1\n  Port {self.ssh_port}\n  User root\n  IdentityFile {self.client_key}\n"
            f"  IdentitiesOnly yes\n  UserKnownHostsFile {self.known_hosts}\n  GlobalKnownHostsFile /dev/null\n"
            "  StrictHostKeyChecking yes\n  BatchMode yes\n  ConnectTimeout 10\n  LogLevel ERROR\n"
        )
        self._wait(lambda: self.ssh("true", timeout=15).returncode == 0, 30, "sshd over the forward", "sshd")

    def _start_containerd(self) -> None:
        self.spawn("containerd", "containerd", "--config", "/etc/containerd/config.toml")
        self._wait(lambda: self.run("ctr", "--address", CONTAINERD_SOCKET, "version", timeout=10).returncode == 0,
                   60, "containerd", "containerd")  # fmt: skip

    def import_images(self, tarballs: list[Path]) -> None:
        """``ctr images import`` into the k8s.io namespace the kubelet's CRI uses."""
        for tarball in tarballs:
            self.run("ctr", "--address", CONTAINERD_SOCKET, "-n", "k8s.io", "images", "import", str(tarball),
                     timeout=300, check=True)  # fmt: skip

    def _wait(self, ready, timeout: float, what: str, log: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise NodeError(f"node {self.name} died while waiting for {what}\n{self.log_tail('init')}")
            if ready():
                return
            time.sleep(0.3)
        raise NodeError(f"node {self.name}: {what} not ready after {timeout:g}s\n--- {log} ---\n{self.log_tail(log)}")
