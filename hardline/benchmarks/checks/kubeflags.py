"""process_flag, admission_plugin and encryption_config: control plane and etcd settings read
from the running processes (docs/kinds-kubernetes.md "Node kinds").

The value in effect is found as the component finds it (hardline.benchmarks.gather.kubenode
flag_value: etcd's config file, else the command line, else etcd's ETCD_* environment); a
setting given nowhere is judged by the control's ``default``, named as such in the evidence.
"""

from __future__ import annotations

from typing import Any

from hardline.benchmarks.checks.kubecompare import (
    expectation,
    judge,
    parse_list,
    select_key,
    show,
)
from hardline.benchmarks.gather.core import FactError, HostFacts
from hardline.benchmarks.gather.kubenode import flag_value
from hardline.benchmarks.gather.kubernetes import Proc, component
from hardline.results import FAIL, PASS, SKIP, Verdict

NAMES = {"apiserver": "the API server", "controller_manager": "the controller manager", "scheduler": "the scheduler",
         "etcd": "etcd", "kubelet": "the kubelet", "proxy": "kube-proxy"}


def running(facts: HostFacts, name: str) -> Proc | Verdict:
    """The component's process, or a SKIP verdict saying it does not run on this host."""
    proc = component(facts, name)
    if proc is not None:
        return proc
    layout = facts.need("k8s_layout")
    names = ", ".join((layout["components"].get(name) or {}).get("processes") or ()) or "none"
    return Verdict(SKIP, found=f"{NAMES.get(name, name)} is not running on this host "
                               f"(layout {layout['name']}: process {names} not found in /proc)")


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def missing_paths(facts: HostFacts, proc: Proc, value: Any) -> list[str]:
    """Paths of a path-valued setting that do not exist where the process looks for them (its
    mount namespace: a static pod's container paths resolve there)."""
    missing = []
    for path in parse_list(value):
        if facts.stat(proc.path(path)) is None:  # not stat'ed: FactError, never a pass
            missing.append(path)
    return missing


def judge_setting(params: dict[str, Any], facts: HostFacts, proc: Proc | None, given: bool, value: Any,
                  source: str, default: Any = None) -> tuple[bool, str]:
    """(passes, one evidence line) for one setting: its value in effect and where it comes from
    (``source``), or, when given nowhere, the built-in ``default``."""
    if given:
        ok, why = judge(params, True, value)
        line = source
    else:
        ok, why = judge(params, False, default)
        shows_default = default is not None and params["op"] not in ("set", "unset")
        line = source + (f"; built-in default {show(default)}" if shows_default else "")
    if ok and given and params.get("path_exists") and params["op"] == "set" and proc is not None:
        gone = missing_paths(facts, proc, value)
        if gone:
            return False, f"{line}: {', '.join(gone)} does not exist in pid {proc.pid}'s mount namespace"
        line += " (file exists)"
    return ok, line if ok else f"{line}: {why}"


def check_process_flag(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    """Every flag named meets ``op``/``value`` in the running component (flag over environment
    over default, etcd's config file alone when it has one)."""
    proc = running(facts, params["component"])
    if isinstance(proc, Verdict):
        return proc
    results = []
    for flag in as_list(params["flag"]):
        given, value, source = flag_value(facts, proc, flag)
        if params.get("key") and given:
            present, value = select_key(value, params["key"])
            source = (f"{params['key']}={show(value)} in {source}" if present
                      else f"{params['key']} not in {source}")
            given = present
        results.append(judge_setting(params, facts, proc, given, value, source, params.get("default")))
    ok = all(r[0] for r in results)
    key = f" {params['key']}" if params.get("key") else ""
    expected = " and ".join(f"--{f}{key}" for f in as_list(params["flag"])) + f" {expectation(params)}"
    evidence = []
    if proc.others:
        evidence.append(f"{len(proc.others)} more {proc.name} process(es) ({', '.join(map(str, proc.others))}); "
                        f"judged pid {proc.pid}, the oldest")
    return Verdict(PASS if ok else FAIL, expected=expected, found="; ".join(r[1] for r in results), evidence=evidence)


def check_admission_plugin(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    """Whether the plugin is in effect as the API server applies its flags: the deprecated
    --admission-control list alone when given, else --enable-admission-plugins plus the plugins on
    by default that --disable-admission-plugins does not name."""
    proc = running(facts, "apiserver")
    if isinstance(proc, Verdict):
        return proc
    flags = proc.flags
    plugin, wanted = params["plugin"], bool(params["enabled"])
    if "admission-control" in flags:
        listed = set(parse_list(flags["admission-control"]))
        how = f"--admission-control={flags['admission-control']} (replaces the defaults)"

        def on(name: str, default_on: bool = False) -> bool:
            return name in listed
    else:
        enabled = set(parse_list(flags.get("enable-admission-plugins", "")))
        disabled = set(parse_list(flags.get("disable-admission-plugins", "")))
        how = (f"--enable-admission-plugins={flags.get('enable-admission-plugins', '(not given)')}, "
               f"--disable-admission-plugins={flags.get('disable-admission-plugins', '(not given)')}")

        def on(name: str, default_on: bool = False) -> bool:
            return name in enabled or (default_on and name not in disabled)
    this = on(plugin, bool(params.get("default_on")))
    alternatives = [a for a in params.get("alternatives") or () if on(a)]
    ok = (this or bool(alternatives)) if wanted else not this
    state = "enabled" if this else "not enabled"
    if not this and params.get("default_on") and "admission-control" not in flags:
        state += " (on by default, but disabled)"
    elif this and not flags.get("enable-admission-plugins", "").count(plugin) and "admission-control" not in flags:
        state += " (on by default)"
    found = f"{plugin} {state}" + (f"; {', '.join(alternatives)} enabled instead" if alternatives and not this else "")
    evidence = [f"{how} ({proc.source})"]
    if params.get("needs_config"):
        conf = flags.get("admission-control-config-file")
        evidence.append(f"--admission-control-config-file={conf}" if conf else "--admission-control-config-file not given")
    alt = f" (or {' / '.join(params['alternatives'])})" if params.get("alternatives") and wanted else ""
    return Verdict(PASS if ok else FAIL, expected=f"{plugin}{alt} {'enabled' if wanted else 'not enabled'}",
                   found=found, evidence=evidence)


def check_encryption_config(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    """The first provider (the one new objects are written with) of each resource named is a
    strong one, in the EncryptionConfiguration the running API server reads."""
    proc = running(facts, "apiserver")
    if isinstance(proc, Verdict):
        return proc
    expected = f"first provider of {', '.join(params['resources'])} is one of {', '.join(params['providers'])}"
    path = proc.flags.get("encryption-provider-config")
    if not path:
        return Verdict(FAIL, expected=expected, found="--encryption-provider-config is not set: every resource is "
                       f"stored unencrypted (identity) ({proc.source})")
    entry = facts.need("k8s_encryption")
    if entry is None or "error" in entry:
        raise FactError((entry or {}).get("error") or f"{path} was not read")
    rules = (entry["doc"] or {}).get("resources") or []
    bad, lines = [], []
    for resource in params["resources"]:
        first = _first_provider(rules, resource)
        if first is None:
            bad.append(resource)
            lines.append(f"{resource}: no entry, stored unencrypted (identity)")
            continue
        lines.append(f"{resource}: first provider {first}")
        if first not in params["providers"]:
            bad.append(resource)
    return Verdict(FAIL if bad else PASS, expected=expected, found="; ".join(lines),
                   evidence=[f"EncryptionConfiguration {path} (pid {proc.pid}'s mount namespace;"
                             " secret values redacted on the host)"])


def _first_provider(rules: list[dict[str, Any]], resource: str) -> str | None:
    """The first provider of the first entry naming the resource (``secrets``), its group
    wildcard (``*.``: the core group) or every resource (``*.*``)."""
    group = resource.partition(".")[2]
    for rule in rules:
        names = set(rule.get("resources") or ())
        if resource in names or f"*.{group}" in names or "*.*" in names:
            providers = rule.get("providers") or []
            if not providers or not isinstance(providers[0], dict) or not providers[0]:
                return "(none)"
            return next(iter(providers[0]))
    return None
