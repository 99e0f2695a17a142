"""kubelet_setting and proxy_setting: a setting as the component applies it, and which source
won (docs/kinds-kubernetes.md).

kubelet: (1) the flag on its command line (systemd already expanded kubeadm-flags.env and
/etc/default/kubelet into it), (2) the ``--config-dir`` drop-ins, the last file in lexical
order that sets the key, (3) the ``--config`` file, (4) the built-in default, which differs with
and without a config file. Feature gates merge key by key (a flag's gate over the files').

kube-proxy: with ``--config`` the file alone (kube-proxy ignores the flags a config file
covers), else the flag; then the default.
"""

from __future__ import annotations

from typing import Any

from hardline.benchmarks.checks.kubecompare import (
    BadValue,
    expectation,
    parse_duration,
    select_key,
    show,
)
from hardline.benchmarks.checks.kubeflags import as_list, judge_setting, running
from hardline.benchmarks.gather.core import HostFacts
from hardline.benchmarks.gather.kubenode import config, lookup
from hardline.benchmarks.gather.kubernetes import Proc
from hardline.results import FAIL, PASS, Verdict


def _pairs(params: dict[str, Any]) -> list[tuple[str | None, str | None]]:
    flags, keys = as_list(params.get("flag")), as_list(params.get("config"))
    count = max(len(flags), len(keys))
    return [(flags[i] if i < len(flags) else None, keys[i] if i < len(keys) else None) for i in range(count)]


def config_sources(facts: HostFacts, component: str) -> tuple[list[tuple[str, dict[str, Any]]], bool]:
    """(file label, document) of the component's config sources, lowest precedence first, and
    whether a --config file is in use (which picks the built-in defaults)."""
    main = config(facts, f"{component}.config")
    files = [(main["path"], main["doc"])] if main else []
    dropins = config(facts, f"{component}.dropin")
    if dropins:
        files += [(f"{dropins['path']}/{name}", doc) for name, doc in dropins.get("docs") or ()]
    return files, main is not None


def unset_in_file(value: Any) -> bool:
    """A config file value the component's defaulting replaces as if it were absent: an empty
    string (authorization.mode: "" is Webhook) or a zero duration (the kubelet defaults every
    duration that is 0: streamingConnectionIdleTimeout: 0s is 4h, and kubeadm writes 0s)."""
    if value is None or value == "":
        return True
    if isinstance(value, str) and value[-1:] in "smh" and value[:1].isdigit():
        try:
            return parse_duration(value) == 0
        except BadValue:
            return False
    return False


def from_files(files: list[tuple[str, dict[str, Any]]], key: str, gate: str | None) -> tuple[bool, Any, str]:
    """The last file (highest precedence) that sets the key (or the gate within it)."""
    for label, doc in reversed(files):
        present, value = lookup(doc, key)
        if present and gate:
            present, value = select_key(value or {}, gate)
        if present and not gate and unset_in_file(value):
            continue  # as if absent: the component applies its default
        if present:
            where = f"{key}" + (f".{gate}" if gate else "")
            return True, value, f"{where}: {show(value)} ({label})"
    return False, None, ""


def _kubelet_value(proc: Proc, files: list[tuple[str, dict[str, Any]]], flag: str | None, key: str | None,
                   gate: str | None) -> tuple[bool, Any, str, str]:
    """(given, value, source, overridden) of one kubelet setting; ``overridden`` names a config
    value the winning flag hides."""
    in_files = from_files(files, key, gate) if key else (False, None, "")
    if flag and flag in proc.flags:
        value = proc.flags[flag]
        present = True
        if gate:
            present, value = select_key(value, gate)
        if present:
            source = f"flag --{flag}" + (f" {gate}" if gate else "") + f"={show(value)} ({proc.source})"
            hidden = f"it overrides {in_files[2]}" if in_files[0] else ""
            return True, value, source, hidden
    if in_files[0]:
        return True, in_files[1], in_files[2], ""
    where = [f"--{flag}" if flag else "", f"{key}" if key else ""]
    zero = [f"{key}: {show(v)} in {label} counts as unset" for label, doc in files if key
            for present, v in [lookup(doc, key)] if present and not gate and unset_in_file(v)]
    return False, None, f"{' / '.join(w for w in where if w)}{' ' + gate if gate else ''} given nowhere ({proc.source}" \
        + (f", {', '.join(label for label, _ in files)}" if files else ", no config file") + ")" \
        + (f" ({zero[-1]}: the kubelet applies its default)" if zero else ""), ""


def check_kubelet_setting(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    """Each setting (flag/config pair) meets the control in the running kubelet."""
    proc = running(facts, "kubelet")
    if isinstance(proc, Verdict):
        return proc
    files, with_config = config_sources(facts, "kubelet")
    defaults = params.get("defaults") or {}
    default = defaults.get("config_file" if with_config else "flags_only")
    results, notes = [], []
    for flag, key in _pairs(params):
        given, value, source, hidden = _kubelet_value(proc, files, flag, key, params.get("key"))
        ok, line = judge_setting(params, facts, proc, given, value, source + (f" ({hidden})" if hidden else ""), default)
        if hidden and not ok:
            notes.append(f"the flag --{flag} is the cause: remove it from the kubelet's flags")
        results.append((ok, line))
    ok = all(r[0] for r in results)
    names = [f"{k or '--' + str(f)}" for f, k in _pairs(params)]
    key = f" {params['key']}" if params.get("key") else ""
    return Verdict(PASS if ok else FAIL, expected=" and ".join(n + key for n in names) + f" {expectation(params)}",
                   found="; ".join(r[1] for r in results), evidence=notes)


def check_proxy_setting(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    """The setting in the running kube-proxy: its --config file when it has one, else the flag."""
    proc = running(facts, "proxy")
    if isinstance(proc, Verdict):
        return proc
    files, with_config = config_sources(facts, "proxy")
    defaults = params.get("defaults") or {}
    flag, key = params.get("flag"), params.get("config")
    notes = []
    if with_config:
        given, value, source = from_files(files, key, None) if key else (False, None, "")
        if not given:
            source = f"{key} not in {files[0][0]} (pid {proc.pid})"
        if flag and flag in proc.flags:
            notes.append(f"--{flag}={proc.flags[flag]} is on the command line but ignored: kube-proxy takes "
                         f"its settings from --config {files[0][0]}")
        default = defaults.get("config_file")
    else:
        given = bool(flag) and flag in proc.flags
        value = proc.flags.get(flag) if flag else None
        source = f"flag --{flag}={value} ({proc.source})" if given else f"--{flag} not given and no --config ({proc.source})"
        default = defaults.get("flags_only")
    ok, line = judge_setting(params, facts, proc, given, value, source, default)
    return Verdict(PASS if ok else FAIL, expected=f"{key or '--' + str(flag)} {expectation(params)}", found=line,
                   evidence=notes)
