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

from benchmarks.dockerd import effective_config, parse_daemon_json

MARK = "@@HL"
BINARIES = ("dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v1", "containerd-shim-runc-v2", "runc")
UNITS = ("docker.service", "docker.socket")
UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")
SYSCTL_DIRS = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d")


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
        f"run() {{ n=$1; shift; e=$(mktemp); echo '{MARK} '$n; \"$@\" 2>\"$e\"; rc=$?; "
        f"echo; echo '{MARK}-RC '$rc; cat \"$e\"; rm -f \"$e\"; }}",
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
        f"run audit_files sh -c 'for f in /etc/audit/rules.d/*.rules /etc/audit/audit.rules {q(data['auditd_rules_file'])}; "
        "do [ -f \"$f\" ] && { echo \"### $f\"; cat \"$f\"; }; done; true'",
        "run group getent group docker",
        "run passwd getent passwd",
        "run mounts findmnt -rn -o TARGET,SOURCE,FSTYPE",
        "run sysctl_runtime sh -c '" + "; ".join(
            f"printf \"%s=%s\\n\" {k} \"$(cat /proc/sys/{k.replace('.', '/')} 2>/dev/null || echo @@MISSING)\""
            for k in data["sysctl_settings"]) + "; true'",
        "run sysctl_files sh -c 'for f in " + " ".join(f"{d}/*.conf" for d in SYSCTL_DIRS)
        + f" /etc/sysctl.conf {q(data['sysctl_persist_file'])}; do [ -f \"$f\" ] && {{ echo \"### $f\"; cat \"$f\"; }}; done; true'",
    ]
    return "\n".join(lines) + "\n"


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
    out = _section(facts, "info")
    if out is not None:
        try:
            facts.values["info"] = json.loads(out)
        except ValueError:
            facts.errors["info"] = f"docker info printed no JSON: {out[:200]}"
    out = _section(facts, "bridge")
    if out is not None:
        try:
            facts.values["bridge"] = json.loads(out) or {}
        except ValueError:
            facts.errors["bridge"] = f"unparseable: {out[:200]}"
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
        f"run() {{ n=$1; shift; e=$(mktemp); echo '{MARK} '$n; \"$@\" 2>\"$e\"; rc=$?; "
        f"echo; echo '{MARK}-RC '$rc; cat \"$e\"; rm -f \"$e\"; }}",
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
    facts.sections.update(parse_sections(run_script(host, _script_round2(paths, config_path, data, [cert_glob]))))
    facts.round_trips += 1
    _parse_round2(facts, data, config_path)
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
