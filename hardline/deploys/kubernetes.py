"""CIS Kubernetes remediation of a node: file modes and owners, the kubelet's settings, the flags
of the static pods (etcd, API server, controller manager, scheduler).

Everything is decided from one gathered reading of the node (hardline/deploys/k8s_facts.py):
its layout (inventory ``k8s_layout`` or detected), the running Kubernetes version, which picks
the CIS Kubernetes version exactly as verification does unless ``hardline_benchmark_versions``
pins it, and the components' command lines and files. Only that version's controls for the
host's roles are remediated: automated ones, and manual ones named in ``k8s_remediate_manual``;
waived ones never. What a control cannot change (a "" variable, ``deploy_when`` off, an item
the running version cannot express) is said with the reason. Rules: docs/kinds-kubernetes.md.

    pyinfra inventories/cluster.py deploys/harden.py --dry     # the diff of every edit, nothing written
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

import yaml
from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.operations import server

from hardline.catalog import Control, catalog_for, kubernetes_layouts, load_catalog
from hardline.deploys.common import DEFAULTS, HardlineDataError, controls, host_config, op_name
from hardline.deploys.facts import PathStat
from hardline.deploys.k8s_facts import KubeNodeState
from hardline.deploys.k8s_node import NodeView, detect_layout, gather_args
from hardline.deploys.operations.hardening import permissions
from hardline.inventory import HostConfig, applicable_catalogs

BENCHMARK = "cis-kubernetes"
K8S_ROLES = {"k8s_control_plane", "k8s_etcd", "k8s_worker"}
FILE_KINDS = ("file_mode", "file_owner")
NODE_KINDS = (*FILE_KINDS, "process_flag", "admission_plugin", "kubelet_setting")


@dataclass
class K8sHost:
    """One Kubernetes node of this run: its config, its gathered state, the controls to apply."""

    config: HostConfig
    view: NodeView
    version: str  # the CIS Kubernetes version picked
    items: list[tuple[Control, dict[str, Any]]]

    def of_kind(self, *kinds: str) -> list[tuple[Control, dict[str, Any]]]:
        return [(c, p) for c, p in self.items if c.kind in kinds]

    def position(self, control: Control) -> int:
        """The control's place in its catalog: the same number on every host."""
        return load_catalog(control.benchmark, control.version).controls.index(control)

    def fail(self, problems: list[str]) -> NoReturn:
        raise HardlineDataError(f"host {self.config.name}: refused, nothing changed on this host:\n  - "
                                + "\n  - ".join(problems))


@contextmanager
def op_identity(rank: int, name: str) -> Iterator[None]:
    """The operation called inside is identified by its name (and ordered by ``rank``, e.g. a
    control's place in its catalog), the same on every host. pyinfra otherwise identifies an
    operation by its call site and how often it was called there, so when hosts have different
    files or settings the n-th call would be one operation for all of them: its name in the plan,
    and in hardline drift, would be another host's."""
    numbers = [rank, zlib.crc32(name.encode())]
    host.loop_position.extend(numbers)
    try:
        yield
    finally:
        del host.loop_position[-len(numbers):]


def say(text: str) -> None:
    """Tell the operator what the deploy leaves as it is and why (a verify-only item, one the
    running version cannot express): printed at pyinfra's default verbosity, as "[host] text"."""
    logger.info(f"{host.print_prefix}{text}")


def ops_name(items: list[tuple[Control, Any]] | list[Control], text: str) -> str:
    """``[cis-kubernetes:1.20:1.2.20,1.2.21] text``: the keys of every control an operation serves."""
    found = [c[0] if isinstance(c, tuple) else c for c in items]
    if len(found) == 1:
        return op_name(found[0], text)
    return f"[{found[0].catalog_key}:{','.join(dict.fromkeys(c.id for c in found))}] {text}"


def _deployable(control: Control, config: HostConfig) -> bool:
    return control.scope == "node" and (control.automated or control.slug in config.data["k8s_remediate_manual"])


def k8s_host() -> K8sHost | None:
    """This host as a Kubernetes node (None without a Kubernetes role), gathered once per run."""
    cached = host.data.get("_hardline_k8s")
    if cached is not None:
        return cached or None
    config = host_config()
    if not set(config.roles) & K8S_ROLES:
        host.data._hardline_k8s = False
        return None
    data = config.data
    asked = data["k8s_layout"]
    known = kubernetes_layouts()
    if asked != "auto" and asked not in known:
        raise HardlineDataError(f"host {config.name}: k8s_layout: unknown layout {asked!r} "
                                f"(known: {', '.join(known)}, or auto)")
    candidates = list(known) if asked == "auto" else [asked]
    catalogs = [c for c in applicable_catalogs(config.roles, data["hardline_benchmark_versions"]) if c.benchmark == BENCHMARK]
    every = [(c, c.resolve(data)) for cat in catalogs for c in cat.of_kind(*NODE_KINDS) if _deployable(c, config)]
    owners = [(p["owner"], p["group"]) for c, p in every if c.kind == "file_owner"]
    layouts = [known[name] for name in candidates]
    detect = [p for layout in layouts for p in layout.get("detect", [])]
    state = host.get_fact(KubeNodeState, **gather_args(layouts, every, detect=detect, users=[o for o, _ in owners],
                                                        groups=[g for _, g in owners]))
    if state is None:
        raise HardlineDataError(f"host {config.name}: could not read the node's Kubernetes state (the gathering "
                                "script failed): nothing is changed on a node that could not be read")
    name = asked if asked != "auto" else detect_layout(candidates, state["exists"])
    if name is None:
        raise HardlineDataError(f"host {config.name}: no Kubernetes layout detected (none of "
                                f"{', '.join(detect)} exists); set k8s_layout")
    view = NodeView(known[name], state)
    version = _pick_version(config, catalogs, view)
    items = [(c, c.resolve(data)) for c in controls(config, *NODE_KINDS, versions={BENCHMARK: version})
             if c.benchmark == BENCHMARK and _deployable(c, config)]
    found = K8sHost(config, view, version, items)
    host.data._hardline_k8s = found
    return found


def _pick_version(config: HostConfig, catalogs: list, view: NodeView) -> str:
    """The CIS Kubernetes version for this node: the pinned one, the only one, or the one
    written for the Kubernetes the node runs (its API server's version, else its kubelet's)."""
    versions = {c.version: c for c in catalogs}
    if len(versions) == 1:
        return next(iter(versions))
    if not view.version:
        raise HardlineDataError(f"host {config.name}: cannot pick the {BENCHMARK} version: no Kubernetes version "
                                "found (no running API server, kubelet or kube-proxy answered --version); set "
                                f'hardline_benchmark_versions ({BENCHMARK}: one of {", ".join(sorted(versions))})')
    return catalog_for(list(versions.values()), view.version).version


# ------------------------------------------------------------------------------ file permissions


@deploy("Kubernetes file permissions", data_defaults=DEFAULTS)
def kubernetes_files() -> None:
    """Owners and modes of manifests, kubeconfigs, PKI, kubelet config and CA, the etcd data
    directory (its owner is created as a system user where it does not exist yet)."""
    node = k8s_host()
    if node is None:
        return
    view = node.view
    config_values = _kubelet_config_values(view)
    for control, params in node.of_kind("file_owner"):
        for kind, name in (("group", params["group"]), ("user", params["owner"])):
            if node.view.state[f"{kind}s"].get(name) is False:
                _system_account(control, kind, name, params["group"])
    wanted = []
    for control, params in node.of_kind(*FILE_KINDS):
        for path in view.target_paths(params["target"], config_values):
            if control.kind == "file_owner":
                args = {"name": op_name(control, f"{path} owned by {params['owner']}:{params['group']}"),
                        "owner": params["owner"], "group": params["group"]}
            else:
                args = {"name": op_name(control, f"{path} mode {params['max_mode']} or stricter"),
                        "max_mode": params["max_mode"]}
            wanted.append((node.position(control), path, args))
    for rank, path, args in sorted(wanted, key=lambda w: (w[0], w[1])):
        stat = view.path_stat(path) if view.known(path) or view.glob_entry(path) else host.get_fact(PathStat, path=path)
        with op_identity(rank, args["name"]):
            permissions(path=path, stat=stat, **args)


def _system_account(control: Control, kind: str, name: str, group: str) -> None:
    """A system group or user (no login, no home) that an owner names and that is missing."""
    if host.data.get(f"_hardline_made_{kind}_{name}"):
        return
    setattr(host.data, f"_hardline_made_{kind}_{name}", True)
    name_ = op_name(control, f"system {kind} {name}")
    with op_identity(0, name_):
        if kind == "group":
            server.group(name=name_, group=name, system=True)
        else:
            server.user(name=name_, user=name, group=group, system=True, shell="/usr/sbin/nologin", home="/nonexistent",
                        create_home=False, ensure_home=False)


def _kubelet_config_values(view: NodeView) -> dict[str, str]:
    """Dotted keys of the kubelet's config file, for file targets the layout resolves from it."""
    path = view.kubelet_config_path()
    read = view.file(path) if path else None
    try:
        config = yaml.safe_load(read["text"]) if read else None
    except yaml.YAMLError:
        return {}
    out: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        elif isinstance(node, str):
            out[prefix[:-1]] = node

    walk(config, "")
    return out

