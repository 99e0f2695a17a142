"""Kubernetes file targets of file_mode / file_owner: ``{k8s_file: KEY}`` (or a list of keys),
``{k8s_dir: KEY}`` and ``{k8s_glob: KEY}``, resolved through the host's layout.

A key with ``from:`` is the file the running component names (flag, etcd variable or config
file, kubelet config and drop-ins), else the layout's path; a layout ``path: null`` or an
``optional`` file that is absent is SKIP with the reason; a glob is every path it matched.
"""

from __future__ import annotations

from typing import Any

from hardline.benchmarks.checks.kubelet import config_sources, from_files
from hardline.benchmarks.gather.core import FactError, HostFacts
from hardline.benchmarks.gather.kubenode import flag_value


def _from_component(facts: HostFacts, frm: dict[str, Any]) -> str | None:
    """The path the running component gives for this key, or None."""
    proc = facts.need("k8s_procs").get(frm["component"])
    if proc is None:
        return None
    given, value, _ = flag_value(facts, proc, frm["flag"])
    if given and value:
        return str(value) if proc.component == "etcd" else proc.file(str(value))
    if frm.get("config") and proc.component != "etcd":
        files, _ = config_sources(facts, proc.component)
        present, value, _ = from_files(files, frm["config"], None)
        if present and value:
            return proc.file(str(value))
    return None


def _key(facts: HostFacts, kind: str, key: str) -> tuple[list[str], str]:
    layout = facts.need("k8s_layout")
    spec = (layout.get(kind) or {}).get(key)
    if spec is None:
        raise FactError(f"layout {layout['name']} has no {kind[:-1]} key {key!r}")
    named = _from_component(facts, spec["from"]) if spec.get("from") else None
    if named:
        return [named], ""
    path = spec.get("path")
    paths = [str(p) for p in path] if isinstance(path, list) else [str(path)] if path else []
    if not paths:
        return [], f"layout {layout['name']} has no {key.replace('_', ' ')}"
    if spec.get("optional") and all(facts.stat(p) is None for p in paths):
        return [], f"{', '.join(paths)} does not exist (optional in layout {layout['name']})"
    return paths, ""


def resolve_k8s(target: dict[str, Any], facts: HostFacts) -> tuple[list[str], str]:
    """(paths, reason): paths to judge, or none and why nothing applies."""
    if "k8s_glob" in target:
        key = target["k8s_glob"]
        files = facts.need("k8s_files")
        if key in files["glob_errors"]:
            raise FactError(files["glob_errors"][key])
        if key not in files["globs"]:
            raise FactError(f"layout glob {key!r} was not listed")
        patterns = (facts.need("k8s_layout").get("globs") or {}).get(key) or []
        found = files["globs"][key]
        return found, "" if found else f"no files match {', '.join(patterns)}"
    kind = "files" if "k8s_file" in target else "dirs"
    keys = target.get("k8s_file") or target["k8s_dir"]
    paths, reasons = [], []
    for key in keys if isinstance(keys, list) else [keys]:
        found, reason = _key(facts, kind, key)
        paths += found
        if reason:
            reasons.append(reason)
    return paths, "; ".join(reasons)
