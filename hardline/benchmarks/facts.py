"""Gather, once per host, everything the checks read: two shell round trips, parsed here.

Round 1 runs one script that prints every fact in a section of its own, each with the exit
code of the command that produced it. Round 2 stats and reads the paths that round 1 revealed
(daemon.json the daemon really uses, TLS files, sockets, unit files, binaries, data root).
A section whose command failed is kept as an error: a check that needs it reports ERROR.

Example::

    facts = gather(testinfra_host, host_config.data)
    facts.need("info")["LoggingDriver"]
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from hardline.benchmarks.dockerd import effective_config, parse_daemon_json

MARK = "@@HL"
BINARIES = ("dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v1", "containerd-shim-runc-v2", "runc")
UNITS = ("docker.service", "docker.socket")
UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")
SYSCTL_DIRS = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d")


# Every gather script defines run(): print a section header, the command's output, its exit code
# and its stderr, so that one round trip carries many commands whose failures stay visible.
RUN_FN = (f"run() {{ n=$1; shift; e=$(mktemp); echo '{MARK} '$n; \"$@\" 2>\"$e\"; rc=$?; "
          f"echo; echo '{MARK}-RC '$rc; cat \"$e\"; rm -f \"$e\"; }}")


class FactError(Exception):
    """A fact could not be gathered; checks that need it are ERROR, never PASS."""


@dataclass(frozen=True)
class Stat:
    path: str
    owner: str
    group: str
    mode: int
    kind: str


@dataclass
class HostFacts:
    sections: dict[str, tuple[int, str, str]] = field(default_factory=dict)  # name -> (rc, out, err)
    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    stats: dict[str, Stat | None] = field(default_factory=dict)  # None: path does not exist
    round_trips: int = 0

    def need(self, name: str) -> Any:
        """The parsed fact, or FactError saying why it is missing."""
        if name in self.errors:
            raise FactError(f"{name}: {self.errors[name]}")
        if name not in self.values:
            raise FactError(f"{name}: not gathered")
        return self.values[name]

    def stat(self, path: str) -> Stat | None:
        if path not in self.stats:
            raise FactError(f"{path}: not stat'ed")
        stat = self.stats[path]
        if isinstance(stat, str):
            raise FactError(f"cannot stat {path}: {stat}")
        return stat


def _script_round1(data: dict[str, Any]) -> str:
    sock = shlex.quote(data["docker_socket_path"])
    q = shlex.quote
    lines = [
        "export PATH=\"$PATH:/usr/sbin:/sbin:/usr/local/sbin:/usr/local/bin\" LC_ALL=C",
        RUN_FN,
        "run uid id -u",
        f"pid() {{ p=$(cat {q(data['docker_pidfile'])} 2>/dev/null) || p=$(pidof dockerd) || return 1; "
        "set -- $p; [ $# -eq 1 ] || { echo \"several dockerd processes, set docker_pidfile\" >&2; return 1; }; "
        "[ -r /proc/$1/cmdline ] || { echo \"dockerd pid $1 not running\" >&2; return 1; }; "
        "echo $1; readlink /proc/$1/cwd; tr '\\0' '\\n' < /proc/$1/cmdline; }",
        "run dockerd pid",
        f"run info docker -H unix://{sock} info --format '{{{{json .}}}}'",
        f"run bridge docker -H unix://{sock} network inspect bridge --format '{{{{json .Options}}}}'",
        "run units sh -c 'command -v systemctl >/dev/null && [ -d /run/systemd/system ] && "
        f"systemctl show -p Id -p FragmentPath {' '.join(UNITS)} || true'",
        "run binaries sh -c '" + "; ".join(f"command -v {b} || echo MISSING" for b in BINARIES) + "'",
        "run auditctl auditctl -l",
        f"run audit_files sh -c 'for f in /etc/audit/rules.d/*.rules /etc/audit/audit.rules {q(data['auditd_rules_file'])} "
        f"{q(data['auditd_platform_rules_file'])}; "
        "do [ -f \"$f\" ] && { echo \"### $f\"; cat \"$f\"; }; done; true'",
        "run group getent group docker",
        "run passwd getent passwd",
        "run mounts findmnt -rn -o TARGET,SOURCE,FSTYPE",
        "run sysctl_runtime sh -c '" + "; ".join(
            f"printf \"%s=%s\\n\" {k} \"$(cat /proc/sys/{k.replace('.', '/')} 2>/dev/null || echo @@MISSING)\""
            for k in data["sysctl_settings"]) + "; true'",
        "run sysctl_files sh -c 'for f in " + " ".join(f"{d}/*.conf" for d in SYSCTL_DIRS)
        + f" /etc/sysctl.conf {q(data['sysctl_persist_file'])}; do [ -f \"$f\" ] && {{ echo \"### $f\"; cat \"$f\"; }}; done; true'",
    ] + _workload_lines(data) + _platform_lines(data)
    return "\n".join(lines) + "\n"


def _platform_lines(data: dict[str, Any]) -> list[str]:
    """Round-1 sections of the platform (HL-) controls: benchmarks/platform_facts.py."""
    from hardline.benchmarks.platform_facts import platform_lines

    return platform_lines(data)


def _workload_lines(data: dict[str, Any]) -> list[str]:
    """Round-1 sections for CIS sections 4-7: every container and image (one inspect call each),
    the processes of running containers read from /proc, overlay networks, the content trust
    environment, and the audit trail of docker client executions."""
    dk = f"docker -H unix://{shlex.quote(data['docker_socket_path'])}"
    logs = f"-if {shlex.quote(data['auditd_log_file'])}" if data.get("auditd_log_file") else "--input-logs"
    return [
        'HLT=$(mktemp -d) && trap \'rm -rf "$HLT"\' EXIT',
        # State.Pid leads each line so that the shell can read the /proc of running containers
        f"containers() {{ ids=$({dk} ps -aq --no-trunc) || return; [ -n \"$ids\" ] || return 0; "
        f"{dk} inspect --format '{{{{.State.Pid}}}} {{{{json .}}}}' $ids > \"$HLT/c\"; rc=$?; cat \"$HLT/c\"; return $rc; }}",
        "run containers containers",
        # each container's init: ids, capabilities, no_new_privs, seccomp mode and uid map; then every
        # process whose cgroup names a container id (pid id), and the command names of all of them
        "cprocs() { pids=$(cut -d' ' -f1 \"$HLT/c\" 2>/dev/null | grep -x '[1-9][0-9]*'); [ -n \"$pids\" ] || return 0; "
        "grep -sH -E '^(Uid|CapEff|NoNewPrivs|Seccomp):|^ *[0-9]+ +[0-9]+ +[0-9]+ *$' "
        "$(for p in $pids; do echo /proc/$p/status /proc/$p/uid_map; done); echo '### cgroups'; "
        "grep -sHm1 -E '[0-9a-f]{64}' /proc/[0-9]*/cgroup | "
        "sed -n 's#^/proc/\\([0-9]*\\)/cgroup:.*\\([0-9a-f]\\{64\\}\\).*#\\1 \\2#p' > \"$HLT/p\"; cat \"$HLT/p\"; "
        "echo '### comms'; grep -sH '' $(for p in $pids $(cut -d' ' -f1 \"$HLT/p\"); do echo /proc/$p/comm; done); true; }",
        "run container_procs cprocs",
        f"images() {{ ids=$({dk} image ls -q --no-trunc | sort -u) || return; [ -n \"$ids\" ] || return 0; "
        f"{dk} image inspect --format '{{{{json .}}}}' $ids; }}",
        "run images images",
        f"overlays() {{ ids=$({dk} network ls -q --no-trunc --filter driver=overlay) || return; [ -n \"$ids\" ] || return 0; "
        f"{dk} network inspect --format '{{{{json .}}}}' $ids; }}",
        "run overlay_networks overlays",
        "run content_trust sh -c 'grep -sH DOCKER_CONTENT_TRUST /etc/environment /etc/profile /etc/profile.d/*.sh "
        "/etc/bash.bashrc /etc/zsh/zshenv; true'",
        "run docker_cli sh -c 'command -v docker'",
        "run exec_audit sh -c 'command -v ausearch >/dev/null || { echo ausearch is not installed >&2; exit 127; }; "
        f"exec ausearch {logs} --raw -m EXECVE -k \"$1\"' _ {shlex.quote(data['auditd_exec_key'])}",
    ]


def parse_sections(output: str) -> dict[str, tuple[int, str, str]]:
    """Split the script's output into name -> (exit code, stdout, stderr)."""
    sections: dict[str, tuple[int, str, str]] = {}
    chunks = output.split(f"\n{MARK} ") if not output.startswith(f"{MARK} ") else [""] + output[len(MARK) + 1:].split(f"\n{MARK} ")
    for chunk in chunks[1:] if chunks else []:
        name, _, rest = chunk.partition("\n")
        body, _, tail = rest.rpartition(f"\n{MARK}-RC ")
        rc_text, _, err = tail.partition("\n")
        sections[name.strip()] = (int(rc_text.strip() or 1), body.removesuffix("\n"), err.strip())
    return sections


def _section(facts: HostFacts, name: str, allow_rc: tuple[int, ...] = (0,), fact: str | None = None) -> str | None:
    """A section's output, or None after recording why under the fact's name."""
    rc, out, err = facts.sections.get(name, (127, "", "section missing from gather output"))
    if rc not in allow_rc:
        facts.errors[fact or name] = f"{name} failed with exit code {rc}: {(err or out).strip()[:300]}"
        return None
    return out


def _parse_round1(facts: HostFacts, data: dict[str, Any]) -> None:
    uid = _section(facts, "uid")
    if uid is not None:
        facts.values["uid"] = int(uid.strip() or -1)
    out = _section(facts, "dockerd")
    if out is not None:
        pid, cwd, *argv = out.splitlines()
        facts.values["dockerd"] = {"pid": int(pid), "cwd": cwd, "argv": [a for a in argv if a]}
    _json_section(facts, "info", "docker info printed no JSON")
    _json_section(facts, "bridge", "unparseable")
    if "bridge" in facts.values:  # a bridge without options prints null
        facts.values["bridge"] = facts.values["bridge"] or {}
    out = _section(facts, "units")
    if out is not None:
        facts.values["units"] = _parse_units(out)
    out = _section(facts, "binaries")
    if out is not None:
        facts.values["binaries"] = {b: (p if p.startswith("/") else None) for b, p in zip(BINARIES, out.splitlines())}
    out = _section(facts, "auditctl", fact="audit_rules")
    if out is not None:
        facts.values["audit_rules"] = [] if out.strip() == "No rules" else out.splitlines()
    out = _section(facts, "audit_files")
    if out is not None:
        facts.values["audit_files"] = _split_files(out)
    out = _section(facts, "group", allow_rc=(0, 2), fact="docker_group")  # 2: no such group
    if out is not None:
        facts.values["docker_group"] = _parse_group(out)
    out = _section(facts, "passwd")
    if out is not None:
        facts.values["passwd"] = [line.split(":") for line in out.splitlines() if line.count(":") >= 6]
    out = _section(facts, "mounts")
    if out is not None:
        facts.values["mounts"] = [_unescape_mount(line.split(" ")) for line in out.splitlines() if line]
    out = _section(facts, "sysctl_runtime")
    if out is not None:
        facts.values["sysctl_runtime"] = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    out = _section(facts, "sysctl_files")
    if out is not None:
        facts.values["sysctl_files"] = _split_files(out)
    _parse_workloads(facts)
    from hardline.benchmarks.platform_facts import parse_platform

    parse_platform(facts)


NO_SUCH = re.compile(r"no such (object|image|container|network)", re.I)


def _json_lines(facts: HostFacts, name: str, pid_prefix: bool = False) -> None:
    """A section of one JSON document per line (docker inspect --format '{{json .}}'). An object
    removed between `ls` and `inspect` (exit 1, "No such object") is not an error."""
    rc, out, err = facts.sections.get(name, (127, "", "section missing from gather output"))
    if rc != 0 and not (rc == 1 and err and all(NO_SUCH.search(e) for e in err.splitlines() if e.strip())):
        _section(facts, name)
        return
    items = []
    for line in out.splitlines():
        if not line.strip():
            continue
        try:
            if pid_prefix:
                pid, _, doc = line.partition(" ")
                items.append({**json.loads(doc), "_pid": int(pid)})
            else:
                items.append(json.loads(line))
        except ValueError:
            facts.errors[name] = f"{name}: unparseable docker inspect output: {line[:200]}"
            return
    facts.values[name] = items


def _parse_workloads(facts: HostFacts) -> None:
    _json_lines(facts, "containers", pid_prefix=True)
    _json_lines(facts, "images")
    _json_lines(facts, "overlay_networks")
    out = _section(facts, "container_procs")
    if out is not None:
        facts.values["container_procs"] = _parse_procs(out)
    out = _section(facts, "content_trust")
    if out is not None:
        facts.values["content_trust"] = [tuple(line.split(":", 1)) for line in out.splitlines() if ":" in line]
    rc, out, _ = facts.sections.get("docker_cli", (1, "", ""))
    facts.values["docker_cli"] = out.strip() if rc == 0 and out.strip() else None
    rc, out, err = facts.sections.get("exec_audit", (127, "", "section missing"))
    # ausearch: 0 found, 1 nothing found (or no log), anything else an error; the check decides
    facts.values["exec_audit"] = {"rc": rc, "out": out, "err": err.strip()}


def _parse_procs(out: str) -> dict[str, Any]:
    """/proc facts of container processes: init pid -> status fields and uid map; container id ->
    [(pid, command name)] of every process in its cgroup."""
    init: dict[int, dict[str, Any]] = {}
    members: dict[int, str] = {}
    comms: dict[int, str] = {}
    part = "status"
    for line in out.splitlines():
        if line.startswith("### "):
            part = line[4:].strip()
            continue
        if part == "cgroups":
            pid, _, cid = line.partition(" ")
            if pid.isdigit():
                members[int(pid)] = cid
            continue
        path, _, value = line.partition(":")
        bits = path.split("/")
        if len(bits) != 4 or not bits[2].isdigit():
            continue
        pid = int(bits[2])
        if part == "comms":
            comms[pid] = value
        elif bits[3] == "uid_map":
            init.setdefault(pid, {}).setdefault("uid_map", []).append(tuple(int(v) for v in value.split()))
        elif bits[3] == "status":
            key, _, field_value = value.partition(":")
            init.setdefault(pid, {})[key] = field_value.split()
    processes: dict[str, list[tuple[int, str]]] = {}
    for pid, cid in members.items():
        processes.setdefault(cid, []).append((pid, comms.get(pid, "?")))
    for pid, status in init.items():
        status["comm"] = comms.get(pid)
    return {"init": init, "processes": processes}


def _json_section(facts: HostFacts, name: str, complaint: str) -> None:
    """Parse a section's output as JSON into facts.values[name]; a failure is recorded as the
    fact's error (its checks become ERROR)."""
    out = _section(facts, name)
    if out is None:
        return
    try:
        facts.values[name] = json.loads(out)
    except ValueError:
        facts.errors[name] = f"{complaint}: {out[:200]}"


def _parse_units(out: str) -> dict[str, str]:
    units, unit_id = {}, None
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key == "Id":
            unit_id = value
        elif key == "FragmentPath" and unit_id and value:
            units[unit_id] = value
    return units


def _split_files(out: str) -> dict[str, str]:
    files: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines():
        if line.startswith("### /"):
            current = line[4:]
            files[current] = []
        elif current:
            files[current].append(line)
    return {k: "\n".join(v) for k, v in files.items()}


def _parse_group(out: str) -> dict[str, Any] | None:
    if not out.strip():
        return None
    name, _, gid, members = out.strip().split(":", 3)
    return {"name": name, "gid": gid, "members": [m for m in members.split(",") if m]}


def _unescape_mount(parts: list[str]) -> tuple[str, ...]:
    # findmnt -r escapes spaces and other specials as \x20
    return tuple(p.encode().decode("unicode_escape") for p in parts)


def _paths_round2(facts: HostFacts, data: dict[str, Any]) -> tuple[list[str], str | None]:
    """Paths to stat, and the daemon config file to read, now that round 1 is known."""
    paths = {data["docker_config_dir"], data["docker_default_file"], data["docker_sysconfig_file"],
             data["containerd_socket_path"], "/run/containerd", "/etc/containerd/config.toml"}
    units = facts.values.get("units", {})
    for unit in UNITS:
        if unit in units:
            paths.add(units[unit])
        else:  # no systemd running (or unit unknown to it): look where packages put unit files
            paths.update(f"{d}/{unit}" for d in UNIT_DIRS)
    paths.update(p for p in facts.values.get("binaries", {}).values() if p)
    config_path = None
    if "dockerd" in facts.values:
        eff = effective_config(facts.values["dockerd"]["argv"], None, facts.values.get("info"))
        config_path = _absolute(eff.config_file or "/etc/docker/daemon.json", facts.values["dockerd"]["cwd"])
        paths.add(config_path)
        paths.update(h[len("unix://"):] for h in eff.flag_hosts if h.startswith("unix://"))
    paths.add(data["docker_socket_path"])
    paths.add(configured_root(facts.values.get("info") or {}))
    return sorted(paths), config_path


def configured_root(info: dict[str, Any]) -> str:
    """The data root as configured: with userns-remap, docker info reports a per-mapping
    subdirectory (<data-root>/<uid>.<gid>) that is not what CIS 1.1.1 and 1.1.5 mean."""
    root = info.get("DockerRootDir") or "/var/lib/docker"
    if "name=userns" in (info.get("SecurityOptions") or []):
        root = re.sub(r"/\d+\.\d+$", "", root)
    return root


def _absolute(path: str, cwd: str) -> str:
    return path if path.startswith("/") else str(PurePosixPath(cwd) / path)


def _script_round2(paths: list[str], config_path: str | None, data: dict[str, Any], extra_globs: list[str]) -> str:
    q = " ".join(shlex.quote(p) for p in paths)
    lines = [
        RUN_FN,
        "st() { for p in \"$@\"; do if [ -e \"$p\" ] || [ -L \"$p\" ]; then "
        "stat -L -c '%n\t%U\t%G\t%a\t%F' \"$p\" 2>&1 | sed 's/^stat: /ERR\t/'; else printf 'MISSING\t%s\\n' \"$p\"; fi; done; }",
        f"run stats st {q}",
        "run certs sh -c 'for f in " + " ".join(extra_globs) + "; do [ -e \"$f\" ] && printf \"%s\\n\" \"$f\"; done; true'",
        "run realroot sh -c " + shlex.quote("readlink -f \"$1\" || true") + " _ " + shlex.quote(
            data.get("_docker_root", "/var/lib/docker")),
    ]
    if config_path:
        lines.append(f"run daemon_json sh -c 'if [ -e \"$1\" ]; then cat \"$1\"; else echo @@ABSENT; fi' _ {shlex.quote(config_path)}")
    return "\n".join(lines) + "\n"


def _parse_stats(facts: HostFacts, out: str) -> None:
    for line in out.splitlines():
        parts = line.split("\t")
        if parts[0] == "MISSING":
            facts.stats[parts[1]] = None
        elif parts[0] == "ERR":
            facts.stats[parts[1].split(":")[0].strip("'‘’")] = parts[1]
        elif len(parts) == 5:
            path, owner, group, mode, kind = parts
            facts.stats[path] = Stat(path, owner, group, int(mode, 8), kind)


def run_script(host, script: str) -> str:
    """Run a gather script on a testinfra host; the whole script is one command (one round trip)."""
    cmd = host.run("sh -c " + shlex.quote(script))
    if not cmd.stdout and cmd.rc != 0:
        raise FactError(f"gather script failed (exit {cmd.rc}): {cmd.stderr.strip()[:300]}")
    return cmd.stdout


def gather(host, data: dict[str, Any]) -> HostFacts:
    """All facts the checks need from one host. Raises on an unreachable host."""
    facts = HostFacts()
    facts.sections = parse_sections(run_script(host, _script_round1(data)))
    facts.round_trips = 1
    _parse_round1(facts, data)
    paths, config_path = _paths_round2(facts, data)
    data = {**data, "_docker_root": configured_root(facts.values.get("info") or {})}
    cert_glob = shlex.quote(data["docker_config_dir"] + "/certs.d/") + "*/*"
    facts.sections.update(parse_sections(run_script(host, _script_round2(paths, config_path, data, [cert_glob])
                                                    + _swarm_round2(facts))))
    facts.round_trips += 1
    _parse_round2(facts, data, config_path)
    _parse_swarm(facts)
    # TLS files named in daemon.json and registry certificates are only known now: stat them in
    # one more round trip, which only hosts that have such files pay.
    extra = [p for p in _tls_paths(facts) + facts.values.get("registry_certs", []) if p not in facts.stats]
    if extra:
        facts.sections.update(parse_sections(run_script(host, _script_round2(extra, None, data, []))))
        facts.round_trips += 1
        stats = _section(facts, "stats")
        if stats is not None:
            _parse_stats(facts, stats)
    return facts


def _swarm_round2(facts: HostFacts) -> str:
    """On an active swarm node: the swarm's own state file (its listen address) and the TCP
    sockets listening in dockerd's network namespace."""
    info = facts.values.get("info") or {}
    if (info.get("Swarm") or {}).get("LocalNodeState") != "active" or "dockerd" not in facts.values:
        return ""
    state = shlex.quote(str(PurePosixPath(info.get("DockerRootDir") or "/var/lib/docker") / "swarm/docker-state.json"))
    pid = facts.values["dockerd"]["pid"]
    return (f"run swarm_state cat {state}\n"
            f"run dockerd_listen sh -c 'cat /proc/{pid}/net/tcp; cat /proc/{pid}/net/tcp6 2>/dev/null; true'\n")


def _parse_swarm(facts: HostFacts) -> None:
    if "swarm_state" in facts.sections:
        _json_section(facts, "swarm_state", "swarm state file is not JSON")
    if "dockerd_listen" in facts.sections:
        out = _section(facts, "dockerd_listen")
        if out is not None:
            facts.values["dockerd_listen"] = _listening(out)


def _listening(out: str) -> list[tuple[str, int]]:
    """(address, port) of the sockets in LISTEN state of /proc/net/tcp and tcp6."""
    import ipaddress
    import socket
    import struct

    found = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 4 or parts[3] != "0A" or ":" not in parts[1]:
            continue
        addr_hex, port_hex = parts[1].split(":")
        raw = bytes.fromhex(addr_hex)
        # the kernel prints each 32-bit word in host (little-endian) order
        words = b"".join(struct.pack(">I", struct.unpack("<I", raw[i:i + 4])[0]) for i in range(0, len(raw), 4))
        addr = socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, words)
        found.append((str(ipaddress.ip_address(addr)), int(port_hex, 16)))
    return found


def _parse_round2(facts: HostFacts, data: dict[str, Any], config_path: str | None) -> None:
    certs = _section(facts, "certs", fact="registry_certs")
    if certs is not None:
        facts.values["registry_certs"] = [c for c in certs.splitlines() if c]
    stats = _section(facts, "stats")
    if stats is not None:
        _parse_stats(facts, stats)
    root = _section(facts, "realroot", fact="docker_root")
    if root is not None:
        facts.values["docker_root"] = root.strip() or data["_docker_root"]
    if config_path:
        raw = _section(facts, "daemon_json")
        if raw is not None:
            facts.values["daemon_json"] = {"path": config_path, "raw": None if raw.strip() == "@@ABSENT" else raw}


def effective(facts: HostFacts):
    """The running daemon's effective configuration (FactError if it cannot be known)."""
    if "effective" not in facts.values:
        dockerd = facts.need("dockerd")
        info = facts.need("info")
        file = facts.need("daemon_json")
        try:
            parsed = parse_daemon_json(file["raw"])
        except ValueError as err:
            raise FactError(f"{file['path']} is not valid JSON ({err}); dockerd would refuse it") from None
        facts.values["effective"] = effective_config(dockerd["argv"], parsed, info)
    return facts.values["effective"]


def _tls_paths(facts: HostFacts) -> list[str]:
    try:
        eff = effective(facts)
    except FactError:
        return []
    return [eff.get(k) for k in ("tlscacert", "tlscert", "tlskey") if isinstance(eff.get(k), str) and eff.get(k)]
