"""CIS Docker section 5 (and 4.1): one verdict per running container.

Two kinds: ``container_setting`` compares one field of `docker inspect` with a value (data
driven: the catalog names the field, the operator and the fix), ``container_rule`` runs a named
rule of RULES for items that need more than one field or the container's /proc (the real
uid, no_new_privs, seccomp mode and user namespace of its init process, its processes).
Each failing verdict carries the `docker run` flag and the compose key that fix it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hardline.benchmarks.gather.core import FactError, HostFacts
from hardline.benchmarks.gather.docker import effective
from hardline.results import ERROR, FAIL, MANUAL, PASS, SKIP, Verdict

NO_CONTAINERS = "no running containers"
HOST_WIDE_UID_MAP = (0, 0, 4294967295)


@dataclass
class Container:
    raw: dict[str, Any]
    proc: dict[str, Any] | None  # /proc/<init>/status fields and uid_map, if readable
    processes: list[tuple[int, str]]

    @property
    def id(self) -> str:
        return self.raw["Id"]

    @property
    def name(self) -> str:
        return self.raw.get("Name", "").lstrip("/") or self.id[:12]

    @property
    def image(self) -> str:
        return (self.raw.get("Config") or {}).get("Image") or self.raw.get("Image", "")[:19]

    @property
    def subject(self) -> str:
        return f"container {self.name} ({self.image}) {self.id[:12]}"

    @property
    def host(self) -> dict[str, Any]:
        return self.raw.get("HostConfig") or {}

    def field(self, path: str) -> Any:
        value: Any = self.raw
        for key in path.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        return value

    def status(self, key: str) -> str | None:
        values = (self.proc or {}).get(key)
        return values[0] if values else None


def running(facts: HostFacts) -> list[Container]:
    """The running containers, by name (built once per host: some thirty checks read them)."""
    if "running_containers" not in facts.values:
        procs = facts.need("container_procs")
        out = []
        for raw in facts.need("containers"):
            if not (raw.get("State") or {}).get("Running"):
                continue
            out.append(Container(raw, procs["init"].get(raw["_pid"]), procs["processes"].get(raw["Id"], [])))
        facts.values["running_containers"] = sorted(out, key=lambda c: c.name)
    return list(facts.values["running_containers"])


def per_container(facts: HostFacts, expected: str, judge: Callable[[Container], tuple[bool, str]],
                  fix: str | Callable[[Container], str]) -> list[Verdict]:
    """Judge every running container: (ok, found). A failing verdict gets the fix as evidence."""
    containers = running(facts)
    if not containers:
        return [Verdict(SKIP, expected=expected, found=NO_CONTAINERS + ": nothing to judge")]
    verdicts = []
    for c in containers:
        try:
            ok, found = judge(c)
        except FactError as err:  # this container could not be judged: never a pass
            verdicts.append(Verdict(ERROR, expected=expected, found=str(err), subject=c.subject))
            continue
        evidence = [] if ok else [f"fix: {fix(c) if callable(fix) else fix}"]
        verdicts.append(Verdict(PASS if ok else FAIL, expected=expected, found=found, evidence=evidence, subject=c.subject))
    return verdicts


# ---- container_setting: one inspect field against a value ------------------------------------

OPS: dict[str, Callable[[Any, Any], bool]] = {
    "falsy": lambda actual, want: not actual,
    "truthy": lambda actual, want: bool(actual),
    "positive": lambda actual, want: isinstance(actual, (int, float)) and actual > 0,
    "ne": lambda actual, want: actual != want,
    "in": lambda actual, want: (actual or "") in want,
}


def check_container_setting(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> list[Verdict]:
    """params: field (dotted path in docker inspect), op (OPS), value, expected (text), fix."""
    field, op, want = params["field"], params["op"], params.get("value")
    return per_container(facts, params["expected"],
                         lambda c: (OPS[op](c.field(field), want), f"{field} = {_show(c.field(field))}"), params["fix"])


def _show(value: Any) -> str:
    import json

    return json.dumps(value)


# ---- container_rule: named rules ---------------------------------------------------------------

def _security_options(facts: HostFacts) -> list[str]:
    return facts.need("info").get("SecurityOptions") or []


def rule_apparmor(params, facts, data):
    if "name=apparmor" not in _security_options(facts):
        return [Verdict(SKIP, found="AppArmor is not enabled on this host (docker info SecurityOptions lacks "
                                    "name=apparmor): no profile can apply")]
    return per_container(
        facts, "an AppArmor profile other than unconfined",
        lambda c: (c.raw.get("AppArmorProfile") not in ("", None, "unconfined"),
                   f"AppArmorProfile = {_show(c.raw.get('AppArmorProfile'))}"),
        "docker run --security-opt apparmor=docker-default (compose: security_opt: [\"apparmor=docker-default\"]); "
        "do not use --privileged or apparmor=unconfined")


def rule_selinux(params, facts, data):
    if "name=selinux" not in _security_options(facts):
        return [Verdict(SKIP, found="SELinux is not enabled in the daemon (docker info SecurityOptions lacks "
                                    "name=selinux): no label can apply")]

    def judge(c):
        opts = c.host.get("SecurityOpt") or []
        disabled = [o for o in opts if o.replace(":", "=") == "label=disable"]
        label = c.raw.get("ProcessLabel") or ""
        return (not disabled and bool(label)), f"ProcessLabel = {label!r}, SecurityOpt = {_show(opts)}"

    return per_container(facts, "an SELinux process label (label confinement not disabled)", judge,
                         "remove --security-opt label=disable (compose: security_opt); set e.g. "
                         "--security-opt label=type:container_t")


def _caps(values: list[str] | None) -> list[str]:
    return sorted({v.upper().removeprefix("CAP_") for v in values or []})


def rule_capabilities(params, facts, data):
    allowed = set(_caps(data.get("docker_container_allowed_caps")))

    def judge(c):
        added = _caps(c.host.get("CapAdd"))
        extra = [cap for cap in added if cap not in allowed]
        found = f"CapAdd = {added or 'none'}, CapDrop = {_caps(c.host.get('CapDrop')) or 'none'}"
        if c.status("CapEff"):
            found += f", effective capabilities 0x{c.status('CapEff')}"
        if c.host.get("Privileged"):
            return False, found + ", privileged (every capability)"
        return not extra, found + (f"; not allowed by inventory: {extra}" if extra else "")

    return per_container(facts, f"no capability added beyond {sorted(allowed) or 'none'} (docker_container_allowed_caps)",
                         judge, "docker run --cap-drop=ALL --cap-add=<only what the process needs> "
                                "(compose: cap_drop: [ALL], cap_add: [...]); or add it to docker_container_allowed_caps")


def _binds(c: Container) -> list[dict[str, Any]]:
    return [m for m in c.raw.get("Mounts") or [] if m.get("Type") == "bind"]


def _under(path: str, directory: str) -> bool:
    directory = directory.rstrip("/") or "/"
    return directory == "/" or path == directory or path.startswith(directory + "/")


def rule_sensitive_mounts(params, facts, data):
    dirs = [d.rstrip("/") or "/" for d in data["docker_sensitive_host_dirs"]]

    def judge(c):
        bad = []
        for m in _binds(c):
            src = m.get("Source", "").rstrip("/") or "/"
            mode = "rw" if m.get("RW") else "ro"
            if src in dirs:
                bad.append(f"{src} -> {m.get('Destination')} ({mode})")
            elif m.get("RW") and any(_under(src, d) for d in dirs if d != "/"):
                bad.append(f"{src} -> {m.get('Destination')} (rw, inside {next(d for d in dirs if d != '/' and _under(src, d))})")
        binds = ", ".join(f"{m.get('Source')}:{m.get('Destination')}:{'rw' if m.get('RW') else 'ro'}" for m in _binds(c))
        return not bad, ("sensitive host paths mounted: " + "; ".join(bad)) if bad else f"bind mounts: {binds or 'none'}"

    return per_container(facts, f"no bind mount of {', '.join(dirs)}, nor read-write below them", judge,
                         "remove the -v/--mount of the host directory (compose: volumes); mount only the "
                         "specific file needed, read-only (-v /etc/localtime:/etc/localtime:ro)")


SSH_DAEMONS = ("sshd", "dropbear")


def rule_no_sshd(params, facts, data):
    def judge(c):
        procs = list(c.processes)
        if c.proc and c.proc.get("comm") and all(p != c.raw["_pid"] for p, _ in procs):
            procs.append((c.raw["_pid"], c.proc["comm"]))
        if not procs:
            raise FactError(f"no process of container {c.name} found in /proc (cgroup lookup failed)")
        ssh = [f"{name} (pid {pid})" for pid, name in procs if name in SSH_DAEMONS or name.startswith("sshd")]
        names = sorted({name for _, name in procs})
        return not ssh, (f"SSH daemon running: {', '.join(ssh)}" if ssh else f"processes: {', '.join(names)}")

    return per_container(facts, "no SSH daemon among the container's processes", judge,
                         "remove sshd from the image and use docker exec for access")


def _published(c: Container) -> list[tuple[str, str, str]]:
    """(container port, host ip, host port) of every published port."""
    ports = ((c.raw.get("NetworkSettings") or {}).get("Ports") or {})
    return [(port, b.get("HostIp", ""), b.get("HostPort", "")) for port, binds in sorted(ports.items()) for b in binds or []]


def _fmt_ports(items) -> str:
    return ", ".join(f"{ip or '*'}:{hp}->{cp}" for cp, ip, hp in items) or "none published"


def rule_privileged_ports(params, facts, data):
    def judge(c):
        bad = [p for p in _published(c) if p[2].isdigit() and int(p[2]) < 1024]
        return not bad, (f"privileged host ports: {_fmt_ports(bad)}" if bad else f"published: {_fmt_ports(_published(c))}")

    return per_container(facts, "no published host port below 1024", judge,
                         "publish on a host port above 1024, e.g. -p 8080:80 (compose: ports: [\"8080:80\"])")


WILDCARD = ("", "0.0.0.0", "::")


def rule_bound_interface(params, facts, data):
    def judge(c):
        bad = [p for p in _published(c) if p[1] in WILDCARD]
        return not bad, (f"bound to every interface: {_fmt_ports(bad)}" if bad else f"published: {_fmt_ports(_published(c))}")

    return per_container(facts, "published ports bound to a specific host address", judge,
                         "publish with an address, e.g. -p 10.0.0.5:8080:80 (compose: ports: [\"10.0.0.5:8080:80\"])")


def rule_cpu(params, facts, data):
    def judge(c):
        h = c.host
        shares, nano, quota = h.get("CpuShares") or 0, h.get("NanoCpus") or 0, h.get("CpuQuota") or 0
        found = f"CpuShares = {shares}, NanoCpus = {nano}, CpuQuota = {quota}"
        return (shares not in (0, 1024) or nano > 0 or quota > 0), found

    return per_container(facts, "CPU shares set (not 0/1024) or a CPU limit (--cpus, --cpu-quota)", judge,
                         "docker run --cpu-shares 512 or --cpus 1.5 (compose: cpu_shares / cpus)")


def rule_restart_policy(params, facts, data):
    limit = data["docker_container_max_restarts"]

    def judge(c):
        policy = c.host.get("RestartPolicy") or {}
        name, count = policy.get("Name") or "no", policy.get("MaximumRetryCount") or 0
        found = f"restart policy {name}" + (f":{count}" if name == "on-failure" else "")
        if name in ("no", ""):
            return True, found
        if name == "on-failure":
            return 0 < count <= limit, found + ("" if count else " (0 = unlimited retries)")
        return False, found

    return per_container(facts, f"restart policy no, or on-failure with 1 to {limit} retries", judge,
                         f"docker run --restart on-failure:{limit} (compose: restart: \"on-failure:{limit}\"; "
                         f"swarm: deploy.restart_policy.max_attempts: {limit})")


def rule_propagation(params, facts, data):
    def judge(c):
        shared = [f"{m.get('Source')} -> {m.get('Destination')} ({m.get('Propagation')})"
                  for m in c.raw.get("Mounts") or [] if m.get("Propagation") in ("shared", "rshared")]
        return not shared, ("shared propagation: " + "; ".join(shared)) if shared else "no shared mount propagation"

    return per_container(facts, "no mount with shared or rshared propagation", judge,
                         "drop the :shared/:rshared option (-v src:dst, or --mount ...,bind-propagation=rprivate)")


def rule_seccomp(params, facts, data):
    def judge(c):
        opts = [o.replace(":", "=", 1) for o in c.host.get("SecurityOpt") or []]
        mode = c.status("Seccomp")
        if mode is not None:  # the kernel's word: 0 disabled, 2 filtering
            causes = [o for o in opts if o == "seccomp=unconfined"] + (["privileged"] if c.host.get("Privileged") else [])
            if mode == "0" and not causes:
                causes = ["the daemon's default profile (seccomp-profile in daemon.json)"]
            return mode != "0", f"init process Seccomp mode {mode}" + (f" ({', '.join(causes)})" if mode == "0" else "")
        unconfined = "seccomp=unconfined" in opts or c.host.get("Privileged")
        return not unconfined, f"SecurityOpt = {_show(c.host.get('SecurityOpt'))}"

    return per_container(facts, "seccomp filtering active (Seccomp mode 2)", judge,
                         "remove --security-opt seccomp=unconfined (compose: security_opt) and --privileged; "
                         "a custom profile is --security-opt seccomp=/path/profile.json")


def rule_no_new_privileges(params, facts, data):
    def judge(c):
        nnp = c.status("NoNewPrivs")
        if nnp is not None:
            return nnp == "1", f"init process NoNewPrivs {nnp}"
        opts = c.host.get("SecurityOpt") or []
        on = any(o.replace(":", "=") in ("no-new-privileges", "no-new-privileges=true") for o in opts)
        daemon_default = effective(facts).get("no-new-privileges") is True
        return on or daemon_default, f"SecurityOpt = {_show(opts)}, daemon no-new-privileges = {daemon_default}"

    return per_container(facts, "no_new_privs set on the container's processes", judge,
                         "docker run --security-opt no-new-privileges (compose: security_opt: [\"no-new-privileges:true\"]) "
                         "or \"no-new-privileges\": true in daemon.json")


def rule_health(params, facts, data):
    def judge(c):
        health = (c.raw.get("State") or {}).get("Health")
        test = ((c.raw.get("Config") or {}).get("Healthcheck") or {}).get("Test") or []
        if health and test[:1] != ["NONE"]:
            return True, f"health {health.get('Status')} ({' '.join(test)})"
        return False, "no health check" + (" (disabled with --no-healthcheck)" if test[:1] == ["NONE"] else "")

    return per_container(facts, "a health check runs", judge,
                         "docker run --health-cmd '<probe>' --health-interval 30s (compose: healthcheck:), "
                         "or a HEALTHCHECK in the image")


def rule_host_userns(params, facts, data):
    remapped = "name=userns" in _security_options(facts)

    def judge(c):
        uid_map = [tuple(m) for m in (c.proc or {}).get("uid_map") or []]
        mode = c.host.get("UsernsMode") or ""
        if uid_map:
            shared = uid_map == [HOST_WIDE_UID_MAP]
            cause = ("--userns=host" if mode == "host" else "the daemon does not remap users (userns-remap, CIS 2.9)")
            found = f"uid_map {' '.join(map(str, uid_map[0]))}" + (f": host user namespace ({cause})" if shared else "")
            return not shared, found
        return (mode != "host" and remapped), f"UsernsMode = {mode!r}, daemon remaps users = {remapped}"

    return per_container(facts, "a user namespace of its own (container root is not host root)", judge,
                         lambda c: "remove --userns=host (compose: userns_mode)" if c.host.get("UsernsMode") == "host"
                         else "enable userns-remap in daemon.json (CIS 2.9; hardline deploys it)")


def _socket_paths(facts: HostFacts, data: dict[str, Any]) -> set[str]:
    paths = {data["docker_socket_path"], "/var/run/docker.sock", "/run/docker.sock"}
    try:
        paths |= {h[len("unix://"):] for h in effective(facts).get("hosts") or [] if h.startswith("unix://")}
    except FactError:
        pass
    return paths


def rule_docker_socket(params, facts, data):
    sockets = _socket_paths(facts, data)

    def judge(c):
        bad = []
        for m in c.raw.get("Mounts") or []:
            src = (m.get("Source") or "").rstrip("/") or "/"
            exposed = [s for s in sockets if s == src or _under(s, src)]
            if exposed or (m.get("Destination") or "").endswith("docker.sock"):
                what = "the Docker socket" if src in sockets else f"the directory holding {min(exposed or [src])}"
                bad.append(f"{src} -> {m.get('Destination')} ({what})")
        return not bad, ("daemon socket reachable: " + "; ".join(bad)) if bad else "no mount exposes the daemon socket"

    return per_container(facts, f"no mount of the daemon socket ({', '.join(sorted(sockets))}) or its directory", judge,
                         "remove the -v of docker.sock (compose: volumes); give tools a scoped API proxy instead")


def rule_non_root_user(params, facts, data):
    def judge(c):
        user = (c.raw.get("Config") or {}).get("User") or ""
        uid = c.status("Uid")
        if c.proc and len(c.proc.get("Uid") or []) > 1:
            host_euid = int(c.proc["Uid"][1])
            inside = next((host_euid - out + inner for inner, out, n in (c.proc.get("uid_map") or [])
                           if out <= host_euid < out + n), None)
            found = f"init runs as uid {inside} in the container (host uid {host_euid}); Config.User = {user!r}"
            return inside not in (0, None), found
        root = user.split(":")[0] in ("", "root", "0")
        return not root, f"Config.User = {user!r}" + (f" (uid {uid})" if uid else "")

    return per_container(facts, "the container's process runs as a non-root user", judge,
                         "add USER <name> to the Dockerfile, or docker run --user 1000:1000 (compose: user: \"1000:1000\")")


RULES = {
    "apparmor": rule_apparmor, "selinux": rule_selinux, "capabilities": rule_capabilities,
    "sensitive_mounts": rule_sensitive_mounts, "no_sshd": rule_no_sshd, "privileged_ports": rule_privileged_ports,
    "bound_interface": rule_bound_interface, "cpu": rule_cpu, "restart_policy": rule_restart_policy,
    "propagation": rule_propagation, "seccomp": rule_seccomp, "no_new_privileges": rule_no_new_privileges,
    "health": rule_health, "host_userns": rule_host_userns, "docker_socket": rule_docker_socket,
    "non_root_user": rule_non_root_user,
}


def check_container_rule(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> list[Verdict]:
    return RULES[params["rule"]](params, facts, data)


# ---- informational rules of manual items: MANUAL, with what an auditor needs to decide ------

def _listing(facts: HostFacts, expected: str, show: Callable[[Container], str]) -> list[Verdict]:
    containers = running(facts)
    if not containers:
        return [Verdict(MANUAL, expected=expected, found=NO_CONTAINERS)]
    return [Verdict(MANUAL, expected=expected, found=show(c), subject=c.subject) for c in containers]


INFO = {
    "ports": ("only the ports the application needs are published",
              lambda c: f"published: {_fmt_ports(_published(c))}; PublishAllPorts = {c.host.get('PublishAllPorts')}"),
    "devices": ("only justified host devices are mapped",
                lambda c: f"devices: {_show(c.host.get('Devices') or [])}, rules: {_show(c.host.get('DeviceCgroupRules'))}"),
    "ulimits": ("ulimit overrides only where needed", lambda c: f"ulimits: {_show(c.host.get('Ulimits') or [])}"),
    "image_pinned": ("images pinned by tag or digest, not latest",
                     lambda c: f"image {c.image}" + (" (latest/untagged)" if ":" not in c.image.rsplit("/", 1)[-1]
                                                    or c.image.endswith(":latest") else "")),
    "default_bridge": ("workloads on user-defined networks, not the default bridge",
                       lambda c: "networks: " + ", ".join(sorted((c.raw.get("NetworkSettings") or {}).get("Networks") or {}))
                       + (" (default bridge)"
                          if "bridge" in ((c.raw.get("NetworkSettings") or {}).get("Networks") or {}) else "")),
}


def check_container_info(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> list[Verdict]:
    """A manual item: the facts per running container, reported as MANUAL (never PASS)."""
    expected, show = INFO[params["info"]]
    return _listing(facts, expected, show)


# ---- 5.23 / 5.24: docker exec invocations from the audit trail -------------------------------

def _argv(record: str) -> list[str]:
    """Arguments of an EXECVE audit record: a0="docker" quoted, or hex-encoded when they
    contain spaces, quotes or control characters."""
    import re

    args: dict[int, str] = {}
    for index, quoted, hexed in re.findall(r'\ba(\d+)=(?:"([^"]*)"|([0-9A-Fa-f]+|\(null\)))', record):
        if quoted or not hexed:
            args[int(index)] = quoted
        else:
            try:
                args[int(index)] = bytes.fromhex(hexed).decode(errors="replace")
            except ValueError:
                args[int(index)] = hexed
    return [args[i] for i in sorted(args)]


def _exec_options(argv: list[str]) -> tuple[bool, str | None] | None:
    """(privileged, user) of a `docker ... exec ...` command line, None if it is not an exec."""
    words = argv[1:]
    if "exec" not in words:
        return None
    words = words[words.index("exec") + 1:]
    privileged, user = False, None
    i = 0
    while i < len(words) and words[i].startswith("-"):
        word = words[i]
        name, eq, value = word.partition("=")
        if name == "--privileged":
            privileged = value.lower() not in ("false", "0") if eq else True
        elif name in ("-u", "--user"):
            user = value if eq else (words[i + 1] if i + 1 < len(words) else "")
            i += 0 if eq else 1
        elif word.startswith("-u") and len(word) > 2:
            user = word[2:]
        elif name in ("-e", "--env", "-w", "--workdir", "--env-file", "--detach-keys") and not eq:
            i += 1
        i += 1
    return privileged, user


def check_exec_audit(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    """params flag: privileged (5.23) or root (5.24). Reads the EXECVE records that the audit rule
    on the docker client (key auditd_exec_key) left; SKIP with the reason when there is no trail."""
    key = data["auditd_exec_key"]
    audit = facts.need("exec_audit")  # ERROR when the search was stopped (hardline_command_timeout)
    rules = facts.values.get("audit_rules") or []
    cli = facts.values.get("docker_cli")
    ruled = [r for r in rules if f"key={key}" in r or f"-k {key}" in r]
    expected = "no docker exec " + ("--privileged" if params["flag"] == "privileged" else "--user root/0")
    rc, out = audit["rc"], audit["out"]
    if rc == 127 or (rc not in (0, 1)):
        return Verdict(SKIP, expected=expected, found=f"no audit trail to read: {audit['err'] or f'ausearch exit {rc}'}")
    if rc == 1 and not ruled:
        reason = audit["err"] or "no matching records"
        return Verdict(SKIP, expected=expected, found=f"docker client executions are not audited (no loaded rule with key "
                       f"{key}; {reason}); deploy the rule with auditd_docker_client_exec or add "
                       f"-w {cli or '/usr/bin/docker'} -p x -k {key}")
    execs, bad = 0, []
    for record in out.splitlines():
        if "type=EXECVE" not in record:
            continue
        opts = _exec_options(_argv(record))
        if opts is None:
            continue
        execs += 1
        privileged, user = opts
        stamp = record.split("msg=audit(", 1)[-1].split(")", 1)[0]
        hit = privileged if params["flag"] == "privileged" else (user is not None and user.split(":")[0] in ("root", "0"))
        if hit:
            bad.append(f"audit({stamp}): {' '.join(_argv(record))}")
    found = f"{execs} docker exec invocations in the audit trail (key {key})"
    if bad:
        found += f", {len(bad)} with " + ("--privileged" if params["flag"] == "privileged" else "--user root")
    status = (FAIL if bad else PASS) if params["flag"] == "privileged" else MANUAL
    return Verdict(status, expected=expected, found=found, evidence=bad[:20])
