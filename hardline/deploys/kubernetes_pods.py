"""Static pod flags of etcd, the API server, the controller manager and the scheduler (CIS
Kubernetes 1.2-1.4 and 2): each manifest is edited in place (only the flags asked for, and the
volume a new path needs), one component at a time, etcd first, each waited for until it runs
the new command line and is healthy, rolled back with its log tail if it does not.

Refused before anything is written (the deploy stops with every reason): a flag or admission
plugin the running binary does not know (its own ``--help``), a path the component would not
find, a value that would not satisfy its own control, a component that does not run (its flags
cannot be checked), etcd started from a config file.
"""

from __future__ import annotations

import copy
import re
import shlex
from typing import Any

import yaml
from pyinfra import host
from pyinfra.api import deploy

from hardline.deploys.common import DEFAULTS
from hardline.deploys.k8s_facts import ComponentHelp
from hardline.deploys.k8s_plan import Outcome, plan_flags, version_note
from hardline.deploys.k8s_values import effective
from hardline.deploys.kubernetes import K8sHost, k8s_host, op_identity, ops_name, say
from hardline.deploys.operations.kubernetes import static_pod_manifest
from hardline.deploys.yamltext import append_items, replace_sequence, rewrite

ORDER = ("etcd", "apiserver", "controller_manager", "scheduler")
SAFE_GLOB = re.compile(r"^[A-Za-z0-9_./*-]+$")


@deploy("Kubernetes static pods", data_defaults=DEFAULTS)
def kubernetes_static_pods() -> None:
    node = k8s_host()
    if node is None:
        return
    problems: list[str] = []
    planned = []
    for comp in ORDER:
        items = [(c, p) for c, p in node.of_kind("process_flag", "admission_plugin")
                 if p.get("component", "apiserver") == comp]
        for control, _ in items:
            note = version_note(control, node.view.version)
            if note:
                say(note)
        items = [(c, p) for c, p in items if not version_note(c, node.view.version)]
        if items:
            change = _plan_component(node, comp, items, problems)
            if change:
                planned.append(change)
    if problems:
        node.fail(problems)
    data = node.config.data
    for comp, items, out, path, text, new_text, argv, new_argv, health, log_glob in planned:
        name = ops_name([c for c, _ in items if c.key in out.control_keys()],
                        f"{node.view.component(comp)['deploy']['file']}: " + ", ".join(w for _, w in out.changes))
        with op_identity(ORDER.index(comp), name):
            static_pod_manifest(
                name=name,
                path=path, current=text, new=new_text, process=argv[0].rsplit("/", 1)[-1], argv_old=argv,
                argv_new=new_argv, health=health, timeout=data["k8s_restart_timeout"], backup_dir=data["k8s_backup_dir"],
                log_glob=log_glob,
            )


def _plan_component(node: K8sHost, comp: str, items: list, problems: list[str]) -> tuple | None:
    """The manifest edit for one component, or None; refusals go to ``problems``."""
    view = node.view
    spec = view.component(comp)
    method = spec.get("deploy", {}).get("method")
    if method != "static_pod":
        why = spec.get("deploy", {}).get("why") or f"layout {view.name} sets {comp} flags through {method}"
        say(f"[{items[0][0].catalog_key}] {comp} flags are not remediated on this node: {why} "
                  "(reported by verification only)")
        return None
    path = spec["deploy"]["file"]
    read = view.file(path)
    if read is None:
        problems.append(f"{comp}: {path} does not exist, but layout {view.name} runs {comp} as a static pod")
        return None
    try:
        pod = yaml.safe_load(read["text"])
        container = next(c for c in pod["spec"]["containers"] if c.get("name") == spec["deploy"]["container"])
    except (yaml.YAMLError, KeyError, TypeError, StopIteration):
        problems.append(f"{comp}: {path} is not a pod manifest with a container {spec['deploy']['container']}")
        return None
    command, args = list(container.get("command") or []), list(container.get("args") or [])
    argv = command + args
    env = {e["name"]: str(e.get("value", "")) for e in container.get("env") or [] if isinstance(e, dict) and "name" in e}
    new_argv, out = plan_flags(argv, items, env, spec.get("env_prefix", ""))
    for note in out.notes:
        say(note)
    if not out.changes and not out.errors:
        return None
    own = [f"{comp}: {e}" for e in out.errors]
    config_flag = spec.get("config_file_flag")
    if config_flag and (effective(argv, config_flag) or env.get(spec.get("env_prefix", "") + "CONFIG_FILE")):
        own.append(f"{comp} reads its settings from --{config_flag}: its flags and variables are ignored; "
                   "edit that file (not done by this deploy)")
    proc = view.proc(comp)
    if proc is None:
        own.append(f"{comp} is not running: the flags its binary knows cannot be checked, so {path} is not edited")
    else:
        own += _unknown(comp, proc["pid"], out, proc["argv"])
    mounts = _mounts(comp, pod, container, out, view, own)
    if own:
        problems += own
        return None
    expected = copy.deepcopy(pod)
    target = next(c for c in expected["spec"]["containers"] if c.get("name") == spec["deploy"]["container"])
    if args and new_argv[:len(command)] != command:
        problems.append(f"{comp}: the flags to change are in the manifest's command, which also has args: not edited")
        return None
    new_command, new_args = (new_argv[:len(command)], new_argv[len(command):]) if args else (new_argv, [])
    target["command"] = new_command
    edits = [lambda t: replace_sequence(t, command, new_command)]
    if args:
        target["args"] = new_args
        edits.append(lambda t: replace_sequence(t, args, new_args))
    if mounts:
        target.setdefault("volumeMounts", []).extend(m for m, _ in mounts)
        expected["spec"].setdefault("volumes", []).extend(v for _, v in mounts)
        edits.append(lambda t: append_items(t, "volumeMounts", [m for m, _ in mounts]))
        edits.append(lambda t: append_items(t, "volumes", [v for _, v in mounts], indent=2))
    new_text, in_place = rewrite(read["text"], expected, *edits)
    if not in_place:
        say(f"{path}: could not be edited line by line; written from its parsed content (same data, new layout)")
    meta = pod.get("metadata") or {}
    log_glob = f"/var/log/pods/{meta.get('namespace', 'kube-system')}_{meta.get('name', comp)}-*_*/{target['name']}/*.log"
    return (comp, items, out, path, read["text"], new_text, argv, new_argv, _health(comp, spec, new_argv),
            log_glob if SAFE_GLOB.match(log_glob) else "/nonexistent")


def _unknown(comp: str, pid: int, out: Outcome, running: list[str]) -> list[str]:
    """Flags and admission plugins the running binary does not know: not in its --help (which
    hides deprecated flags) nor on the command line it runs with."""
    known = host.get_fact(ComponentHelp, pid=pid)
    if known is None:
        return [f"{comp}: its --help could not be read, so the flags to write cannot be checked"]
    in_use = {a[2:].split("=", 1)[0] for a in running if a.startswith("--")}
    problems = [f"{comp} does not know --{f} (not in its --help): not written"
                for f in sorted(out.flags - known["flags"] - in_use)]
    problems += [f"{comp} does not know the admission plugin {p}: not enabled" for p in
                 sorted(out.plugins - known["admission_plugins"])]
    return problems


def _covering(path: str, pod: dict[str, Any], container: dict[str, Any]) -> tuple[str, str] | None:
    """(mountPath, hostPath) of the hostPath volume through which the container sees ``path``."""
    volumes = {v.get("name"): (v.get("hostPath") or {}).get("path") for v in pod["spec"].get("volumes") or []}
    best = None
    for mount in container.get("volumeMounts") or []:
        where = str(mount.get("mountPath", "")).rstrip("/") or "/"
        inside = path == where or path.startswith(where.rstrip("/") + "/")
        if inside and volumes.get(mount.get("name")) and (best is None or len(where) > len(best[0])):
            best = (where, str(volumes[mount.get("name")]))
    return best


def _mounts(comp: str, pod: dict[str, Any], container: dict[str, Any], out: Outcome, view, problems: list[str]) -> list:
    """Volumes a new path needs: a file the component reads must exist on the node and is
    mounted read-only unless a hostPath mount shows it already; a directory it writes into
    (the audit log's) is mounted read-write, created if missing."""
    names = {v.get("name") for v in pod["spec"].get("volumes") or []}
    added: list = []
    wanted = [(flag, path, "File", True) for flag, path in out.paths.items()]
    wanted += [(flag, path, "DirectoryOrCreate", False) for flag, path in out.written_dirs.items()]
    for flag, path, kind, read_only in wanted:
        if kind == "File" and view.stat(path) is None:
            problems.append(f"{comp}: --{flag}={path} does not exist on the node")
            continue
        covered = _covering(path, pod, container)
        if covered:
            if covered[0] != covered[1]:
                problems.append(f"{comp}: --{flag}={path} is seen through a mount of {covered[1]} at {covered[0]}: "
                                "give the path as the node has it and mount it at the same place")
            continue
        name = base = f"hardline-{flag}"[:63]
        n = 1
        while name in names:
            n += 1
            name = f"{base[:60]}-{n}"
        names.add(name)
        mount = {"mountPath": path, "name": name, **({"readOnly": True} if read_only else {})}
        added.append((mount, {"hostPath": {"path": path, "type": kind}, "name": name}))
    return added


def _health(comp: str, spec: dict[str, Any], argv: list[str]) -> str:
    """A shell command (quoted words) that succeeds when the component serves healthy."""
    health = spec.get("health") or {}
    q = shlex.join
    if health.get("scheme") == "etcdctl":
        urls = [u for u in (effective(argv, "listen-client-urls") or "https://127.0.0.1:2379").split(",") if u]
        url = next((u for u in urls if "://127.0.0.1" in u or "://localhost" in u), urls[0])
        tls = {k: effective(argv, f) for k, f in (("cacert", "trusted-ca-file"), ("cert", "cert-file"), ("key", "key-file"))}
        etcdctl = ["etcdctl", f"--endpoints={url}", "--dial-timeout=5s", "--command-timeout=10s",
                   *[f"--{k}={v}" for k, v in tls.items() if v and url.startswith("https")], "endpoint", "health"]
        curl = ["curl", "-sf", "--max-time", "10", *[a for k, v in tls.items() if v and url.startswith("https")
                                                    for a in (f"--{k}", v)], f"{url.rstrip('/')}/health"]
        return f"if command -v etcdctl >/dev/null 2>&1; then ETCDCTL_API=3 {q(etcdctl)}; else {q(curl)}; fi"
    port = effective(argv, health.get("port_flag", "secure-port")) or str(health.get("default_port", 443))
    bind = effective(argv, "bind-address") or "127.0.0.1"
    address = "127.0.0.1" if bind in ("0.0.0.0", "::", "") else f"[{bind}]" if ":" in bind else bind
    cert: list[str] = []
    client_cert, client_key = effective(argv, "kubelet-client-certificate"), effective(argv, "kubelet-client-key")
    if comp == "apiserver" and client_cert and client_key:
        # the API server's client certificate for kubelets (kubeadm: system:masters): /readyz answers
        # it also when anonymous requests are off (CIS 1.2.1)
        cert = ["--cert", client_cert, "--key", client_key]
    return q(["curl", "-sfk", "--max-time", "10", *cert, f"https://{address}:{port}{health.get('path', '/healthz')}"])
