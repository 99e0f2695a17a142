"""Facts about the Docker engine: the running dockerd (pid, argv, docker info), its units and
binaries, containers with their /proc, images, overlay networks, and in later rounds the paths,
daemon.json and swarm state that round 1 revealed.

Round 1 asks the daemon: with python3 on the host, one process of the Engine API client
(:mod:`hardline.benchmarks.gather.dockerapi`) answers every daemon fact it wants; without, the
docker CLI does (docker info, docker inspect: one call each for all containers and all images).
Round 2 stats and reads the paths round 1 named (daemon.json the daemon really uses,
sockets, unit files, binaries, data root); round 3 exists only on hosts with TLS or registry
certificates, which are only known after round 2.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import socket
import struct
from pathlib import Path, PurePosixPath
from typing import Any

from hardline.benchmarks.dockerd import effective_config, parse_daemon_json
from hardline.benchmarks.gather.core import (
    INCOMPLETE,
    TIMED_OUT,
    Fact,
    FactError,
    HostFacts,
    builtin,
    json_section,
    parse_stats,
    program,
    section,
    shell,
    stat_line,
)

BINARIES = ("dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v1", "containerd-shim-runc-v2", "runc")
UNITS = ("docker.service", "docker.socket")
UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")
NO_SUCH = re.compile(r"no such (object|image|container|network)", re.I)

PID = ("{ read -r p || [ -n \"$p\" ]; } 2>/dev/null < \"$1\" || p=$(pidof dockerd) || exit 1; set -- $p; "
       "[ $# -eq 1 ] || { echo 'several dockerd processes, set docker_pidfile' >&2; exit 1; }; "
       "[ -r /proc/$1/cmdline ] || { echo \"dockerd pid $1 not running\" >&2; exit 1; }; "
       "echo $1; readlink /proc/$1/cwd; exec tr '\\0' '\\n' < /proc/$1/cmdline")
# State.Pid leads each line so that the next section can read the /proc of running containers.
CONTAINERS = ("ids=$(docker -H \"unix://$1\" ps -aq --no-trunc) || exit; [ -n \"$ids\" ] || exit 0; "
              "docker -H \"unix://$1\" inspect --format '{{.State.Pid}} {{json .}}' $ids > \"$HLT/c\"; rc=$?; "
              "cat \"$HLT/c\"; exit $rc")
# each container's init: ids, capabilities, no_new_privs, seccomp mode and uid map; then every
# process whose cgroup names a container id (pid id), and the command names of all of them
CPROCS = ("pids=$(cut -d' ' -f1 \"$HLT/c\" 2>/dev/null | grep -x '[1-9][0-9]*'); [ -n \"$pids\" ] || exit 0; "
          "grep -sH -E '^(Uid|CapEff|NoNewPrivs|Seccomp):|^ *[0-9]+ +[0-9]+ +[0-9]+ *$' "
          "$(for p in $pids; do echo /proc/$p/status /proc/$p/uid_map; done); echo '### cgroups'; "
          "grep -sHm1 -E '[0-9a-f]{64}' /proc/[0-9]*/cgroup | "
          "sed -n 's#^/proc/\\([0-9]*\\)/cgroup:.*\\([0-9a-f]\\{64\\}\\).*#\\1 \\2#p' > \"$HLT/p\"; cat \"$HLT/p\"; "
          "echo '### comms'; grep -sH '' $(for p in $pids $(cut -d' ' -f1 \"$HLT/p\"); do echo /proc/$p/comm; done); true")
IMAGES = ("ids=$(docker -H \"unix://$1\" image ls -q --no-trunc | sort -u) || exit; [ -n \"$ids\" ] || exit 0; "
          "docker -H \"unix://$1\" image inspect --format '{{json .}}' $ids")
OVERLAYS = ("ids=$(docker -H \"unix://$1\" network ls -q --no-trunc --filter driver=overlay) || exit; "
            "[ -n \"$ids\" ] || exit 0; docker -H \"unix://$1\" network inspect --format '{{json .}}' $ids")
# grep itself (the script's shell expands the glob); exit 1 (no match) and 2 (a file missing) are fine
CONTENT_TRUST = ("run content_trust grep -sH DOCKER_CONTENT_TRUST /etc/environment /etc/profile /etc/profile.d/*.sh "
                 "/etc/bash.bashrc /etc/zsh/zshenv")
# ausearch parses every record of every log it reads (~2.5 ms of CPU per MB measured here); with
# auditd_exec_search_start (-ts) it skips the logs that end before that time. Without it, one
# grep -F over the same files first asks whether any record carries the key at all (key="KEY",
# or in hex when a rule has several keys): when none does (grep exit 1, every file read), the
# answer is ausearch's own for no match (exit 1, nothing printed) without running it.
# Arguments: key, key in hex, start (may be empty), then -if FILE or --input-logs.
EXEC_AUDIT = r"""command -v ausearch >/dev/null || { echo ausearch is not installed >&2; exit 127; }
key=$1 hex=$2 ts=$3; shift 3
if [ "$1" = -if ]; then one=$2; set -- "$2"; else one=; l=/var/log/audit/audit.log
  while IFS='= ' read -r k v; do [ "$k" = log_file ] && l=$v; done 2>/dev/null < /etc/audit/auditd.conf
  set -- "$l" "$l".[0-9]*; fi
if [ -z "$ts" ] && [ -f "$1" ]; then
  for f do shift; [ -f "$f" ] && set -- "$@" "$f"; done
  grep -qsF -e "key=\"$key\"" -e "$hex" -- "$@"
  [ $? -eq 1 ] && exit 1
fi
set -- --raw -m EXECVE -k "$key"; [ -z "$ts" ] || set -- "$@" -ts "$ts"
[ -n "$one" ] && exec ausearch -if "$one" "$@"
exec ausearch --input-logs "$@"
"""


def _sock(data: dict[str, Any]) -> str:
    return str(data["docker_socket_path"])


# the daemon's facts, in the order the client and the CLI lines print them; each CLI line is
# what answers the fact on a host without python3
DAEMON_CLI = {
    "info": lambda sock: shell("info", 'docker -H "unix://$1" info --format "{{json .}}"', sock),
    "bridge": lambda sock: shell("bridge", 'docker -H "unix://$1" network inspect bridge --format "{{json .}}"', sock),
    "containers": lambda sock: shell("containers", CONTAINERS, sock),
    "container_procs": lambda sock: shell("container_procs", CPROCS),
    "images": lambda sock: shell("images", IMAGES, sock),
    "overlay_networks": lambda sock: shell("overlay_networks", OVERLAYS, sock),
}


def client_source() -> str:
    """The Engine API client, sent as it is (``python3 -c``)."""
    global _CLIENT
    if _CLIENT is None:
        _CLIENT = (Path(__file__).parent / "dockerapi.py").read_text()
    return _CLIENT


_CLIENT: str | None = None


def _daemon_lines(data: dict[str, Any], facts: HostFacts) -> list[str]:
    """One client process for every daemon fact wanted, or the docker CLI without python3."""
    wanted = [name for name in DAEMON_CLI if name in facts.gathered]
    if not wanted:
        return []
    client = (f"runs daemon_api python3 -I -S -c {shlex.quote(client_source())} {shlex.quote(_sock(data))} "
              f"\"$HLTO\" {' '.join(wanted)}")
    how = data.get("hardline_docker_client", "auto")
    if how == "cli":
        return [DAEMON_CLI[name](_sock(data)) for name in wanted]
    if how == "api":
        return [client]
    return [f"if command -v python3 >/dev/null 2>&1; then {client}; else",
            *(DAEMON_CLI[name](_sock(data)) for name in wanted), "fi"]


def _parse_daemon(facts: HostFacts, data: dict[str, Any]) -> None:
    """When the client ran: a section it could not finish (stopped at the time limit, crashed)
    gets the client's exit code and complaint."""
    if "daemon_api" not in facts.sections:
        return
    rc, _, err = facts.sections["daemon_api"]
    for name in DAEMON_CLI:
        if name in facts.gathered and facts.sections.get(name, (INCOMPLETE,))[0] == INCOMPLETE:
            facts.sections[name] = (rc if rc else INCOMPLETE, "", err or "the Docker API client stopped early")


def _parse_dockerd(facts: HostFacts, data: dict[str, Any]) -> None:
    out = section(facts, "dockerd")
    if out is not None:
        pid, cwd, *argv = out.splitlines()
        facts.values["dockerd"] = {"pid": int(pid), "cwd": cwd, "argv": [a for a in argv if a]}


def _parse_info(facts: HostFacts, data: dict[str, Any]) -> None:
    json_section(facts, "info", "docker info printed no JSON")


def _parse_bridge(facts: HostFacts, data: dict[str, Any]) -> None:
    """The default bridge network's Options (its inspect document is gathered)."""
    json_section(facts, "bridge", "unparseable")
    if "bridge" in facts.values:  # a bridge without options has null
        facts.values["bridge"] = (facts.values["bridge"] or {}).get("Options") or {}


def _parse_units(facts: HostFacts, data: dict[str, Any]) -> None:
    out = section(facts, "units")
    if out is None:
        return
    units, unit_id = {}, None
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key == "Id":
            unit_id = value
        elif key == "FragmentPath" and unit_id and value:
            units[unit_id] = value
    facts.values["units"] = units


def _parse_binaries(facts: HostFacts, data: dict[str, Any]) -> None:
    out = section(facts, "binaries")
    if out is not None:
        facts.values["binaries"] = {b: (p if p.startswith("/") else None) for b, p in zip(BINARIES, out.splitlines())}


def _json_lines(facts: HostFacts, name: str, pid_prefix: bool = False) -> None:
    """A section of one JSON document per line (docker inspect --format '{{json .}}'). An object
    removed between `ls` and `inspect` (exit 1, "No such object") is not an error."""
    rc, out, err = facts.sections.get(name, (127, "", "section missing from gather output"))
    if rc != 0 and not (rc == 1 and err and all(NO_SUCH.search(e) for e in err.splitlines() if e.strip())):
        section(facts, name)
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


def _parse_procs(facts: HostFacts, data: dict[str, Any]) -> None:
    """/proc facts of container processes: init pid -> status fields and uid map; container id ->
    [(pid, command name)] of every process in its cgroup."""
    out = section(facts, "container_procs")
    if out is None:
        return
    init: dict[int, dict[str, Any]] = {}
    members: dict[int, str] = {}
    comms: dict[int, str] = {}
    part = "status"
    for line in out.splitlines():
        if line.startswith("### "):
            part = line[4:].strip()
            continue
        if part == "cgroups":
            pid_text, _, cid = line.partition(" ")
            if pid_text.isdigit():
                members[int(pid_text)] = cid
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
    facts.values["container_procs"] = {"init": init, "processes": processes}


def _parse_content_trust(facts: HostFacts, data: dict[str, Any]) -> None:
    out = section(facts, "content_trust", allow_rc=(0, 1, 2))
    if out is not None:
        facts.values["content_trust"] = [tuple(line.split(":", 1)) for line in out.splitlines() if ":" in line]


def _parse_docker_cli(facts: HostFacts, data: dict[str, Any]) -> None:
    rc, out, _ = facts.sections.get("docker_cli", (1, "", ""))
    facts.values["docker_cli"] = out.strip() if rc == 0 and out.strip() else None


def _parse_exec_audit(facts: HostFacts, data: dict[str, Any]) -> None:
    rc, out, err = facts.sections.get("exec_audit", (127, "", "section missing"))
    if rc in TIMED_OUT or rc == INCOMPLETE:  # a search stopped part way proves nothing
        section(facts, "exec_audit")
        return
    # ausearch: 0 found, 1 nothing found (or no log), anything else an error; the check decides
    facts.values["exec_audit"] = {"rc": rc, "out": out, "err": err.strip()}


def _exec_audit_lines(data: dict[str, Any], facts: HostFacts) -> list[str]:
    key = str(data["auditd_exec_key"])
    logs = ["-if", str(data["auditd_log_file"])] if data.get("auditd_log_file") else ["--input-logs"]
    start = str(data["auditd_exec_search_start"])
    return [shell("exec_audit", EXEC_AUDIT, key, key.encode().hex().upper(), start, *logs)]


# ------------------------------------------------------------------------------- round 2 and 3


def configured_root(info: dict[str, Any]) -> str:
    """The data root as configured: with userns-remap, docker info reports a per-mapping
    subdirectory (<data-root>/<uid>.<gid>) that is not what CIS 1.1.1 and 1.1.5 mean."""
    root = info.get("DockerRootDir") or "/var/lib/docker"
    if "name=userns" in (info.get("SecurityOptions") or []):
        root = re.sub(r"/\d+\.\d+$", "", root)
    return root


def _absolute(path: str, cwd: str) -> str:
    return path if path.startswith("/") else str(PurePosixPath(cwd) / path)


def config_path(facts: HostFacts) -> str | None:
    """The daemon.json the running dockerd reads (--config-file, relative to its cwd)."""
    if "dockerd" not in facts.values:
        return None
    eff = effective_config(facts.values["dockerd"]["argv"], None, facts.values.get("info"))
    return _absolute(eff.config_file or "/etc/docker/daemon.json", facts.values["dockerd"]["cwd"])


def _docker_path_list(data: dict[str, Any], facts: HostFacts) -> list[str]:
    """Paths the Docker file checks stat: configuration, sockets, unit files, binaries, data root."""
    paths = {data["docker_config_dir"], data["docker_default_file"], data["docker_sysconfig_file"],
             data["containerd_socket_path"], "/run/containerd", "/etc/containerd/config.toml", data["docker_socket_path"]}
    units = facts.values.get("units", {})
    for unit in UNITS:
        if unit in units:
            paths.add(units[unit])
        else:  # no systemd running (or unit unknown to it): look where packages put unit files
            paths.update(f"{d}/{unit}" for d in UNIT_DIRS)
    paths.update(p for p in facts.values.get("binaries", {}).values() if p)
    path = config_path(facts)
    if path:
        paths.add(path)
        eff = effective_config(facts.values["dockerd"]["argv"], None, facts.values.get("info"))
        paths.update(h[len("unix://"):] for h in eff.flag_hosts if h.startswith("unix://"))
    paths.add(configured_root(facts.values.get("info") or {}))
    return sorted(paths)


def _parse_docker_paths(facts: HostFacts, data: dict[str, Any]) -> None:
    parse_stats(facts, "docker_stats", _docker_path_list(data, facts))
    if "docker_stats" not in facts.errors:
        facts.values["docker_paths"] = True
    else:
        facts.errors["docker_paths"] = facts.errors["docker_stats"]


def _daemon_json_lines(data: dict[str, Any], facts: HostFacts) -> list[str]:
    path = config_path(facts)
    if not path:
        return []
    return [shell("daemon_json", 'if [ -e "$1" ]; then exec cat "$1"; else echo @@ABSENT; fi', path)]


def _parse_daemon_json(facts: HostFacts, data: dict[str, Any]) -> None:
    path = config_path(facts)
    if not path:
        facts.errors["daemon_json"] = facts.errors.get("dockerd", "dockerd is not running")
        return
    raw = section(facts, "daemon_json")
    if raw is not None:
        facts.values["daemon_json"] = {"path": path, "raw": None if raw.strip() == "@@ABSENT" else raw}


def _docker_root_lines(data: dict[str, Any], facts: HostFacts) -> list[str]:
    return [program("realroot", "readlink", "-f", configured_root(facts.values.get("info") or {}))]


def _parse_docker_root(facts: HostFacts, data: dict[str, Any]) -> None:
    root = section(facts, "realroot", allow_rc=(0, 1), fact="docker_root")  # 1: does not resolve
    if root is not None:
        facts.values["docker_root"] = root.strip() or configured_root(facts.values.get("info") or {})


def _certs_lines(data: dict[str, Any], facts: HostFacts) -> list[str]:
    return [shell("certs", 'for f in "$1"/certs.d/*/*; do [ -e "$f" ] && printf "%s\\n" "$f"; done; true',
                  str(data["docker_config_dir"]))]


def _parse_certs(facts: HostFacts, data: dict[str, Any]) -> None:
    certs = section(facts, "certs", fact="registry_certs")
    if certs is not None:
        facts.values["registry_certs"] = [c for c in certs.splitlines() if c]


def _swarm_lines(data: dict[str, Any], facts: HostFacts) -> list[str]:
    """On an active swarm node: the swarm's own state file (its listen address) and the TCP
    sockets listening in dockerd's network namespace."""
    info = facts.values.get("info") or {}
    if (info.get("Swarm") or {}).get("LocalNodeState") != "active" or "dockerd" not in facts.values:
        return []
    state = str(PurePosixPath(info.get("DockerRootDir") or "/var/lib/docker") / "swarm/docker-state.json")
    pid = str(facts.values["dockerd"]["pid"])
    return [shell("swarm_state", 'cat "$1"', state),
            shell("dockerd_listen", 'cat /proc/$1/net/tcp; cat /proc/$1/net/tcp6 2>/dev/null; true', pid)]


def _parse_swarm(facts: HostFacts, data: dict[str, Any]) -> None:
    if "swarm_state" in facts.sections:
        json_section(facts, "swarm_state", "swarm state file is not JSON")
    if "dockerd_listen" in facts.sections:
        out = section(facts, "dockerd_listen")
        if out is not None:
            facts.values["dockerd_listen"] = _listening(out)


def _listening(out: str) -> list[tuple[str, int]]:
    """(address, port) of the sockets in LISTEN state of /proc/net/tcp and tcp6."""
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


def _tls_files(facts: HostFacts) -> list[str]:
    try:
        eff = effective(facts)
    except FactError:
        tls = []
    else:
        tls = [eff.get(k) for k in ("tlscacert", "tlscert", "tlskey") if isinstance(eff.get(k), str) and eff.get(k)]
    return [p for p in tls + facts.values.get("registry_certs", []) if p not in facts.stats]


def _tls_stats_lines(data: dict[str, Any], facts: HostFacts) -> list[str]:
    """TLS files named in daemon.json and registry certificates are only known after round 2:
    stat them in one more round trip, which only hosts that have such files pay."""
    extra = _tls_files(facts)
    return [stat_line("tls_stats", extra)] if extra else []


def _parse_tls_stats(facts: HostFacts, data: dict[str, Any]) -> None:
    if "tls_stats" in facts.sections:
        parse_stats(facts, "tls_stats", _tls_files(facts))
    facts.values["tls_stats"] = True


FACTS = [
    Fact("daemon", _daemon_lines, _parse_daemon),  # serves the daemon facts (DAEMON_CLI)
    Fact("dockerd", lambda d, f: [shell("dockerd", PID, str(d["docker_pidfile"]))], _parse_dockerd),
    Fact("info", lambda d, f: [], _parse_info, requires=("daemon",)),
    Fact("bridge", lambda d, f: [], _parse_bridge, requires=("daemon",)),
    Fact("units", lambda d, f: [shell("units", "command -v systemctl >/dev/null && [ -d /run/systemd/system ] && "
                                               "systemctl show -p Id -p FragmentPath \"$@\" || true", *UNITS)], _parse_units),
    Fact("binaries", lambda d, f: builtin("binaries", 'for b in "$@"; do command -v "$b" || echo MISSING; done; return 0',
                                          *BINARIES), _parse_binaries),
    Fact("containers", lambda d, f: [], lambda f, d: _json_lines(f, "containers", pid_prefix=True),
         requires=("daemon",)),
    Fact("container_procs", lambda d, f: [], _parse_procs, requires=("containers",)),
    Fact("images", lambda d, f: [], lambda f, d: _json_lines(f, "images"), requires=("daemon",)),
    Fact("overlay_networks", lambda d, f: [], lambda f, d: _json_lines(f, "overlay_networks"), requires=("daemon",)),
    Fact("content_trust", lambda d, f: [CONTENT_TRUST], _parse_content_trust),
    Fact("docker_cli", lambda d, f: builtin("docker_cli", "command -v docker"), _parse_docker_cli),
    Fact("exec_audit", _exec_audit_lines, _parse_exec_audit),
    Fact("docker_paths", lambda d, f: [stat_line("docker_stats", _docker_path_list(d, f))], _parse_docker_paths, round=2,
         requires=("units", "binaries", "dockerd", "info")),
    Fact("daemon_json", _daemon_json_lines, _parse_daemon_json, round=2, requires=("dockerd", "info")),
    Fact("docker_root", _docker_root_lines, _parse_docker_root, round=2, requires=("info",)),
    Fact("registry_certs", _certs_lines, _parse_certs, round=2),
    Fact("swarm", _swarm_lines, _parse_swarm, round=2, requires=("info", "dockerd")),
    Fact("tls_stats", _tls_stats_lines, _parse_tls_stats, round=3, requires=("daemon_json", "registry_certs", "docker_paths")),
]
