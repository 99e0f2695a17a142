"""What the Kubernetes deploy changes, decided from the node's state without touching it.

Given a component's command line (static pods) or the kubelet's config and command line, and the
controls that apply, :func:`plan_flags` and :func:`plan_kubelet` return the new command line or
config and an :class:`Outcome`: the changes (by control key), the notes (verify-only items,
``deploy_when`` off, items the running version cannot express) and the errors (refusals: nothing
of that component is written). Rules: docs/kinds-kubernetes.md ("general rules", each kind's
"Deploy"). A setting that already satisfies its control is left as it is, so a compliant node
gets no change; a ``write`` named by inventory (a certificate path, cipher suites) is converged
to even when the value found passes, so that inventory drives the node.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from hardline.catalog import Control, minor
from hardline.deploys.k8s_values import (
    duration_seconds,
    effective,
    map_value,
    passes,
    remove_flag,
    set_flag,
    set_map_key,
    to_text,
    typed,
    value_type,
)

# flags naming a path the component writes into: its directory is mounted into the static pod
WRITTEN_PATH_FLAGS = {"audit-log-path"}


@dataclass
class Outcome:
    changes: list[tuple[str, str]] = field(default_factory=list)  # (control key, what changes)
    notes: list[str] = field(default_factory=list)  # said, not done
    errors: list[str] = field(default_factory=list)  # refused: nothing of the component is written
    flags: set[str] = field(default_factory=set)  # flags written: the binary must know them
    plugins: set[str] = field(default_factory=set)  # admission plugins named: the binary must know them
    paths: dict[str, str] = field(default_factory=dict)  # flag or key -> a file that must exist (and be mounted)
    written_dirs: dict[str, str] = field(default_factory=dict)  # flag -> directory the component writes into
    sysctls: dict[str, str] = field(default_factory=dict)  # kernel settings needed first (kubelet)

    def control_keys(self) -> list[str]:
        return list(dict.fromkeys(k for k, _ in self.changes))


def version_note(control: Control, running: str | None) -> str | None:
    """Why the running Kubernetes cannot express the item (min_version / max_version), or None."""
    if not running:
        return None
    if control.min_version and minor(running) < minor(control.min_version):
        return f"[{control.key}] needs Kubernetes {control.min_version} or later, the node runs {running}: not applied"
    if control.max_version and minor(running) > minor(control.max_version):
        return f"[{control.key}] is gone after Kubernetes {control.max_version}, the node runs {running}: not applied"
    return None


def _listed(value: Any, n: int = 1) -> list[Any]:
    return list(value) if isinstance(value, list) else [value] * n


def _desired(params: dict[str, Any], name: str | None) -> Any:
    write = params.get("write")
    if isinstance(write, dict):
        return write.get(name) if name in write else None
    if write is not None:
        return write
    return params.get("value")


def _empty(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, list) and not value)


def _converges(params: dict[str, Any], desired: Any, raw: Any, given: bool, kind: str) -> bool:
    """A value the inventory names (``write`` of a set / valid_elements item) that differs from
    the one in effect, although that one passes."""
    if params["op"] not in ("set", "valid_elements") or params.get("write") is None or _empty(desired) or not given:
        return False
    try:
        return typed(raw, kind) != typed(desired, kind)
    except ValueError:
        return True


def _must_change(control: Control, params: dict[str, Any], in_effect: Any, given: bool, desired: Any,
                 out: Outcome) -> bool:
    """The setting fails its item, or the inventory names another value for it; with
    ``deploy_when`` off the deploy says so instead of changing it."""
    kind = value_type(params)
    if passes(params["op"], in_effect, given, params.get("value"), kind) and \
            not _converges(params, desired, in_effect, given, kind):
        return False
    if params.get("deploy_when") is False:
        out.notes.append(f"[{control.key}] not changed: {', '.join(control.vars)} is false (the check still runs)")
        return False
    return True


def _verify_only(control: Control, out: Outcome, what: str) -> None:
    names = ", ".join(control.vars) or "its variable"
    out.notes.append(f"[{control.key}] verify only: {what} is not set by the deploy until {names} is set in inventory")


# ------------------------------------------------------------------------------- static pods


def plan_flags(argv: list[str], items: list[tuple[Control, dict[str, Any]]], env: dict[str, str] | None = None,
               env_prefix: str = "") -> tuple[list[str], Outcome]:
    """The component's new command line for its process_flag and admission_plugin controls.
    ``env``: the container's environment (etcd reads ``ETCD_<FLAG>``; a flag wins over it)."""
    out = Outcome()
    for control, params in items:
        if control.kind == "admission_plugin":
            argv = _plan_plugin(argv, control, params, out)
        else:
            argv = _plan_flag(argv, control, params, out, env or {}, env_prefix)
    return argv, out


def _plan_flag(argv: list[str], control: Control, params: dict[str, Any], out: Outcome, env: dict[str, str],
               env_prefix: str) -> list[str]:
    op, kind, key = params["op"], value_type(params), params.get("key")
    boolean = kind == "bool" and not key
    for flag in _listed(params["flag"]):
        raw = effective(argv, flag, boolean)
        from_env = env.get(env_prefix + flag.upper().replace("-", "_")) if env_prefix else None
        current = raw if raw is not None else from_env
        if key:
            current = map_value(current, key) if current is not None else None
        given = current is not None
        desired = _desired(params, flag)
        if not _must_change(control, params, current if given else params.get("default"), given, desired, out):
            continue
        if op == "unset":
            if from_env is not None:
                out.errors.append(f"[{control.key}] --{flag} comes from {env_prefix}{flag.upper().replace('-', '_')} "
                                  "in the manifest's environment: remove it there")
                continue
            argv = remove_flag(argv, flag, boolean)
            out.changes.append((control.key, f"remove --{flag}"))
            continue
        if op in ("has", "nothave"):
            new = _list_edit(op, raw, params, desired)
            if new is None:
                out.errors.append(f"[{control.key}] removing {params['value']} would leave --{flag} empty")
                continue
        elif key:
            new = set_map_key(raw, key, to_text(desired))
        elif _empty(desired):
            _verify_only(control, out, f"--{flag}")
            continue
        else:
            new = to_text(desired)
        check = map_value(new, key) if key else new
        if not passes(op, check, True, params.get("value"), kind):
            out.errors.append(f"[{control.key}] the inventory's --{flag}={new} would not satisfy the item "
                              f"({op} {params.get('value')}): fix {', '.join(control.vars) or 'the value'}")
            continue
        argv = set_flag(argv, flag, new, boolean)
        out.flags.add(flag)
        out.changes.append((control.key, f"--{flag}={new}"))
        if params.get("path_exists"):
            out.paths[flag] = new
        if flag in WRITTEN_PATH_FLAGS and new != "-":
            out.written_dirs[flag] = new.rsplit("/", 1)[0] or "/"
    return argv


def _list_edit(op: str, raw: str | None, params: dict[str, Any], write: Any) -> str | None:
    """has: add the missing elements; nothave: remove them. A flag not given (its default is in
    effect) or left empty takes ``write``: authorization-mode's default AlwaysAllow is replaced,
    not edited. None: nothing sensible to write."""
    elements = _listed(params["value"])
    has_write = params.get("write") is not None
    if raw is None:
        if has_write:
            return to_text(write)
        return ",".join(elements) if op == "has" else None
    current = [e.strip() for e in raw.split(",") if e.strip()]
    new = current + [e for e in elements if e not in current] if op == "has" else [e for e in current if e not in elements]
    if not new:
        return to_text(write) if has_write else None
    return ",".join(new)


def _plan_plugin(argv: list[str], control: Control, params: dict[str, Any], out: Outcome) -> list[str]:
    plugin, enabled, default_on = params["plugin"], params["enabled"], params["default_on"]
    if effective(argv, "admission-control") is not None:
        out.errors.append(f"[{control.key}] the API server uses the deprecated --admission-control list: replace it "
                          "with --enable-admission-plugins / --disable-admission-plugins first")
        return argv
    enable = [p for p in (effective(argv, "enable-admission-plugins") or "").split(",") if p]
    disable = [p for p in (effective(argv, "disable-admission-plugins") or "").split(",") if p]
    if enabled:
        ok = plugin in enable or (default_on and plugin not in disable) or \
            any(a in enable for a in params.get("alternatives") or [])
    else:
        ok = plugin not in enable and (not default_on or plugin in disable)
    if ok:
        return argv
    if params.get("deploy_when") is False:
        out.notes.append(f"[{control.key}] not changed: {', '.join(control.vars)} is false (the check still runs)")
        return argv
    if enabled and params.get("needs_config") and not effective(argv, "admission-control-config-file"):
        out.errors.append(f"[{control.key}] {plugin} needs its configuration in --admission-control-config-file, "
                          "which the API server does not have: write it first")
        return argv
    if enabled:
        disable = [p for p in disable if p != plugin]
        if not default_on:
            enable.append(plugin)
    else:
        enable = [p for p in enable if p != plugin]
        if default_on:
            disable.append(plugin)
    for flag, plugins in (("enable-admission-plugins", enable), ("disable-admission-plugins", disable)):
        if effective(argv, flag) == ",".join(plugins) or (not plugins and effective(argv, flag) is None):
            continue
        argv = set_flag(argv, flag, ",".join(plugins)) if plugins else remove_flag(argv, flag)
        out.flags.add(flag)
    out.plugins.add(plugin)
    out.changes.append((control.key, f"{plugin} {'enabled' if enabled else 'disabled'}"))
    return argv


# ------------------------------------------------------------------------------------ kubelet


def get_dotted(config: dict[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    node = config
    *parents, last = key.split(".")
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = value


def defaulted_in_file(value: Any) -> bool:
    """A config file value the kubelet's defaulting replaces as if it were absent: an empty
    string, or a zero duration (kubeadm writes ``streamingConnectionIdleTimeout: 0s``, which the
    kubelet runs as its default 4h)."""
    if value == "":
        return True
    if isinstance(value, str) and value[:1].isdigit() and value[-1:] in "smh":
        try:
            return duration_seconds(value) == 0
        except ValueError:
            return False
    return False


def yaml_value(desired: Any, kind: str) -> Any:
    """The value as the KubeletConfiguration field holds it."""
    if kind in ("bool", "int"):
        return typed(desired, kind)
    if kind == "list":
        return list(desired) if isinstance(desired, list) else [e.strip() for e in str(desired).split(",") if e.strip()]
    return to_text(desired)


def plan_kubelet(config: dict[str, Any], argv: list[str], items: list[tuple[Control, dict[str, Any]]],
                 running: str | None) -> tuple[dict[str, Any], list[tuple[str, bool]], Outcome]:
    """The kubelet's new config (a copy) and the flags to remove from its flag files, as
    (flag, boolean). The value in effect is the flag, else the config file, else the default
    for a kubelet with a config file (the deploy edits only kubelets that have one)."""
    config = copy.deepcopy(config)
    removals: list[tuple[str, bool]] = []
    out = Outcome()
    for control, params in items:
        flags, keys = params.get("flag"), params.get("config")
        n = len(flags) if isinstance(flags, list) else len(keys) if isinstance(keys, list) else 1
        op, kind, mapkey = params["op"], value_type(params), params.get("key")
        boolean = kind == "bool" and not mapkey
        for flag, key in zip(_listed(flags, n), _listed(keys, n)):
            flag_raw = effective(argv, flag, boolean) if flag else None
            conf_raw = get_dotted(config, key) if key else None
            if mapkey:
                flag_raw = map_value(flag_raw, mapkey) if flag_raw is not None else None
                conf_raw = map_value(conf_raw, mapkey) if isinstance(conf_raw, dict) else None
            if defaulted_in_file(conf_raw):
                conf_raw = None
            raw = flag_raw if flag_raw is not None else conf_raw
            given = raw is not None
            desired = _desired(params, key if isinstance(params.get("write"), dict) and key in params["write"] else flag)
            in_effect = raw if given else (params.get("defaults") or {}).get("config_file")
            if not _must_change(control, params, in_effect, given, desired, out):
                continue
            if key is None:
                if op == "unset":
                    removals.append((flag, boolean))
                    out.changes.append((control.key, f"remove --{flag}"))
                else:
                    out.errors.append(f"[{control.key}] --{flag} has no config key: not deployable")
                continue
            if _empty(desired):
                _verify_only(control, out, key)
                continue
            new = yaml_value(desired, kind)
            if not passes(op, to_text(new), True, params.get("value"), kind):
                out.errors.append(f"[{control.key}] the inventory's {key}: {to_text(new)} would not satisfy the item "
                                  f"({op} {params.get('value')}): fix {', '.join(control.vars) or 'the value'}")
                continue
            target = f"{key}.{mapkey}" if mapkey else key
            set_dotted(config, target, new)
            out.changes.append((control.key, f"{target}: {to_text(new)}"))
            if flag:
                out.flags.add(flag)
                if flag_raw is not None:
                    removals.append((flag, boolean))
            if params.get("path_exists"):
                out.paths[key] = to_text(new)
            if new is True and params.get("requires_sysctls"):
                out.sysctls.update({k: str(v) for k, v in params["requires_sysctls"].items()})
            gate = params.get("feature_gate")
            if gate and running and minor(running) < minor(str(gate["until"])):
                set_dotted(config, f"featureGates.{gate['name']}", True)
    return config, list(dict.fromkeys(removals)), out
