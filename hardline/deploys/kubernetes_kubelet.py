"""The kubelet's settings (CIS Kubernetes 4.2): keys of the config file the running kubelet uses,
a contradicting flag removed from the layout's flag files (the flag would win), the kernel
settings protectKernelDefaults needs set and persisted first; then the kubelet is restarted and
waited for (its health URL), and rolled back with its log tail if it does not come back.

Refused before anything is written: a kubelet that does not run or runs without a config file,
a config-dir drop-in directory (the drop-ins would win), a flag set where the deploy cannot
remove it (the unit itself), a setting its binary does not know, a path that does not exist, a
kernel setting the kernel does not have or that the inventory's sysctl profile contradicts.
"""

from __future__ import annotations

import shlex

import yaml
from pyinfra import host
from pyinfra.api import deploy

from hardline.deploys.common import DEFAULTS
from hardline.deploys.k8s_facts import ComponentHelp
from hardline.deploys.k8s_node import SYSCTL_PERSIST_FILE, flag_file_edit
from hardline.deploys.k8s_plan import plan_kubelet, version_note
from hardline.deploys.k8s_values import effective
from hardline.deploys.kubernetes import K8sHost, k8s_host, op_identity, ops_name, say
from hardline.deploys.operations.kubernetes import kernel_settings, kubelet_files
from hardline.deploys.yamltext import rewrite, set_key


@deploy("Kubernetes kubelet", data_defaults=DEFAULTS)
def kubernetes_kubelet() -> None:
    node = k8s_host()
    if node is None:
        return
    items = []
    for control, params in node.of_kind("kubelet_setting"):
        note = version_note(control, node.view.version)
        if note:
            say(note)
        else:
            items.append((control, params))
    if items:
        _kubelet(node, items)


def _kubelet(node: K8sHost, items: list) -> None:
    view, data = node.view, node.config.data
    spec = view.component("kubelet")
    method = spec.get("deploy", {}).get("method")
    if method != "kubelet_config":
        say(f"[{items[0][0].catalog_key}] kubelet settings are not remediated on this node: layout {view.name} "
                  f"sets them through {method} (reported by verification only)")
        return
    proc = view.proc("kubelet")
    path = view.kubelet_config_path()
    read = view.file(path) if path else None
    problems: list[str] = []
    if proc is None:
        node.fail(["the kubelet is not running: its settings in effect cannot be read, nothing is changed"])
    if not effective(proc["argv"], spec.get("config_flag", "config")) or read is None or path is None:
        node.fail([(f"the kubelet runs without a readable --{spec.get('config_flag', 'config')} file ({path}): "
                   "the deploy edits the config file a kubelet uses, and this one has none")])
    try:
        config = yaml.safe_load(read["text"]) or {}
    except yaml.YAMLError:
        config = None
    if not isinstance(config, dict):
        node.fail([f"{path} is not a YAML mapping: not edited"])
    new_config, removals, out = plan_kubelet(config, proc["argv"], items, view.version)
    for note in out.notes:
        say(note)
    if not out.changes and not out.errors:
        return
    problems += out.errors
    if spec.get("config_dir_flag") and effective(proc["argv"], spec["config_dir_flag"]):
        problems.append(f"the kubelet reads drop-ins from --{spec['config_dir_flag']}, which would win over "
                        f"{path}: not supported by this deploy")
    known = host.get_fact(ComponentHelp, pid=proc["pid"])
    if known is None:
        problems.append("the kubelet's --help could not be read: the settings to write cannot be checked")
    else:
        in_use = {a[2:].split("=", 1)[0] for a in proc["argv"] if a.startswith("--")}
        problems += [f"the kubelet does not know --{f} (its config key is newer than the kubelet): not written"
                     for f in sorted(out.flags - known["flags"] - in_use)]
    problems += [f"{key}: {p} does not exist on the node" for key, p in out.paths.items() if view.stat(p) is None]
    files = [(path, read["text"], _config_text(read["text"], config, new_config, out))]
    files += _flag_files(view, spec, removals, problems)
    sysctl_op = _kernel(node, out.sysctls, problems) if out.sysctls else None
    if problems:
        node.fail(problems)
    if sysctl_op:
        name = ops_name([c for c, p in items if p.get("requires_sysctls") and c.key in out.control_keys()],
                        "kernel settings the kubelet needs: " + ", ".join(f"{k}={v}" for k, v in sorted(out.sysctls.items())))
        with op_identity(0, name):
            kernel_settings(name=name, **sysctl_op)
    health = spec.get("health") or {}
    service = spec["deploy"].get("service", "kubelet")
    log = (f"if [ -d /run/systemd/system ]; then journalctl -u {shlex.quote(service)} -n 25 --no-pager; "
           "elif [ -f /var/log/kubelet.log ]; then tail -n 25 /var/log/kubelet.log; fi")
    name = ops_name([c for c, _ in items if c.key in out.control_keys()], "kubelet: " + ", ".join(w for _, w in out.changes))
    with op_identity(1, name):
        kubelet_files(
            name=name, files=files, service=service, timeout=data["k8s_restart_timeout"],
            backup_dir=data["k8s_backup_dir"], log_command=log,
            health=shlex.join(["curl", "-sf", "--max-time", "10", health.get("url", "http://127.0.0.1:10248/healthz")]),
        )


def _config_text(text: str, config: dict, new_config: dict, out) -> str:
    edits = [lambda t, k=key, v=value: set_key(t, k, v) for key, value in _changed_keys(config, new_config)]
    new_text, in_place = rewrite(text, new_config, *edits)
    if not in_place:
        say("the kubelet config could not be edited line by line; written from its parsed content")
    return new_text


def _changed_keys(old: dict, new: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Dotted keys whose value differs (a new or changed map is descended into)."""
    found = []
    for key, value in new.items():
        before = old.get(key) if isinstance(old, dict) else None
        if isinstance(value, dict) and value and isinstance(before, dict):
            found += _changed_keys(before, value, f"{prefix}{key}.")
        elif before != value:
            found.append((f"{prefix}{key}", value))
    return found


def _flag_files(view, spec: dict, removals: list[tuple[str, bool]], problems: list[str]) -> list[tuple[str, str, str]]:
    """The layout's flag files without the flags that contradict the config."""
    if not removals:
        return []
    done: set[str] = set()
    files = []
    for entry in spec["deploy"].get("flag_files", []):
        read = view.file(entry["path"])
        if read is None:
            continue
        new, removed = flag_file_edit(read["text"], entry["variable"], removals)
        done |= set(removed)
        if new != read["text"]:
            files.append((entry["path"], read["text"], new))
    flag_files = ", ".join(f["path"] for f in spec["deploy"].get("flag_files", []))
    problems += [f"the kubelet gets --{flag} from its unit (not from {flag_files}): remove it there"
                 for flag, _ in removals if flag not in done]
    return files


def _kernel(node: K8sHost, wanted: dict[str, str], problems: list[str]) -> dict | None:
    """The kernel_settings operation's arguments, or None with the reason in ``problems``."""
    live = node.view.state["sysctls"]
    missing = [k for k in wanted if live.get(k) is None]
    profile = node.config.data.get("sysctl_settings") or {}
    clash = [k for k, v in wanted.items() if k in profile and str(profile[k]) != v]
    problems += [f"the kernel has no {k} (needed by protectKernelDefaults)" for k in missing]
    problems += [f"sysctl_settings sets {k}={profile[k]}, the kubelet's protectKernelDefaults needs {wanted[k]}"
                 for k in clash]
    if missing or clash:
        return None
    current = node.view.file(SYSCTL_PERSIST_FILE)
    text = "# hardline: kernel settings the kubelet requires with protectKernelDefaults (CIS Kubernetes)\n"
    text += "".join(f"{k} = {v}\n" for k, v in sorted(wanted.items()))
    return {"path": SYSCTL_PERSIST_FILE, "current": current["text"] if current else None, "new": text,
            "live": {k: live.get(k) for k in wanted}, "wanted": wanted}
