"""Helpers for the CIS Kubernetes verification tests on the real test nodes (tests/support/k8s).

* inventory: HostConfigs for a cluster's nodes (control plane cp1 in k8s_control_plane, k8s_etcd
  and k8s_workers; workers in k8s_workers), reached over SSH as any host;
* ``gather`` / ``judge``: the real gathering through pyinfra, then one control's raw verdict (a
  manual item's check too: its verdict before the engine turns it into MANUAL);
* ``manifest_changed`` / ``kubelet_changed``: change a static pod manifest or the kubelet's
  config and flags, wait until the real component runs with it, and put everything back (and
  wait for health) afterwards, so the shared session cluster stays as kubeadm made it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import yaml

from hardline.benchmarks.checks import KINDS
from hardline.benchmarks.engine import gather_host, plan
from hardline.benchmarks.gather.core import HostFacts
from hardline.benchmarks.select import Selection
from hardline.catalog import find_control
from hardline.inventory import HostConfig, check_host
from hardline.results import Verdict

CONTROL_PLANE_GROUPS = ("k8s_control_plane", "k8s_etcd", "k8s_workers")
BACKOFF_WAIT = 420  # the kubelet's crash-loop back-off tops out at 5 minutes
COMM = {"kube-apiserver": "kube-apiserver", "kube-controller-manager": "kube-controller", "kube-scheduler": "kube-scheduler",
        "etcd": "etcd"}


def node_config(node, groups: tuple[str, ...], name: str | None = None, **data: Any) -> HostConfig:
    """A validated inventory host for a test node (SSH, host key checked)."""
    config = check_host(name or node.name, list(groups), [("test inventory", data)], {**node.pyinfra_data(), **data})
    assert config.valid, config.error
    return config


def cluster_configs(cluster, **data: Any) -> dict[str, HostConfig]:
    """Every node of a cluster as inventory: the control plane also runs etcd and a kubelet."""
    return {name: node_config(node, CONTROL_PLANE_GROUPS if node.role == "control-plane" else ("k8s_workers",),
                              k8s_cluster=cluster.id, **data)
            for name, node in cluster.nodes.items()}


def gather(config: HostConfig, needs: set[str] | None = None, cluster_duty: bool = False,
           selection: Selection | None = None) -> HostFacts:
    """Facts as a verify gathers them: ``needs``, or what every selected control needs."""
    if needs is None:
        hp = plan(config, selection or Selection(benchmarks=("cis-kubernetes",)), cluster_duty)
        needs, paths = hp.needs, hp.paths
    else:
        paths = set()
    facts = gather_host(config, set(needs), paths)
    assert not isinstance(facts, Exception), facts
    return facts


def judge(key: str, facts: HostFacts, config: HostConfig, **params: Any) -> Verdict:
    """The raw verdict of one control's check (params overridden by ``params``)."""
    control = find_control(key)
    assert control is not None and control.kind, key
    resolved = {**control.resolve(config.data), **params}
    return KINDS[control.kind].check(resolved, facts, config.data)


def needs_of(*keys: str, data: dict[str, Any] | None = None) -> set[str]:
    found: set[str] = set()
    for key in keys:
        control = find_control(key)
        found |= KINDS[control.kind].needs(control.resolve(data or {}))
    return found


def wait_for(what: str, ready: Callable[[], Any], timeout: float = 180, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = ready()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {timeout:g}s")
        time.sleep(every)


def _restarted(node, component: str, old: set[int], predicate: Callable[[list[str]], bool]) -> Callable[[], bool]:
    def ready() -> bool:
        pids = set(node.pids(COMM[component]))
        argv = node.argv(COMM[component])
        return bool(pids) and not pids & old and argv is not None and predicate(argv)
    return ready


@contextlib.contextmanager
def manifest_changed(node, component: str, command: Callable[[list[str]], list[str]] | None = None,
                     env: list[dict[str, str]] | None = None) -> Iterator[list[str]]:
    """Run a control plane component with a changed command (and container env); yields the
    new argv once the kubelet restarted it (and the control plane is healthy again)."""
    path = node.manifest(component)
    original = path.read_text()
    pod = yaml.safe_load(original)
    container = pod["spec"]["containers"][0]
    new_command = command(list(container["command"])) if command else list(container["command"])
    container["command"] = new_command
    if env is not None:
        container["env"] = env
    old = set(node.pids(COMM[component]))
    _write_atomically(path, yaml.safe_dump(pod, sort_keys=False))
    try:
        wait_for(f"{component} restarted with {new_command[1:]}", _restarted(node, component, old, lambda a: a == new_command))
        node.wait_healthy()
        yield new_command
    finally:
        before = set(node.pids(COMM[component]))
        _write_atomically(path, original)
        back = yaml.safe_load(original)["spec"]["containers"][0]["command"]
        # the original manifest is the original pod: the kubelet may hold it in crash-loop
        # back-off (up to 5 minutes) from earlier API server restarts, which stop the controller
        # manager and scheduler when they cannot renew their leases
        wait_for(f"{component} back to its own command", _restarted(node, component, before, lambda a: a == back),
                 timeout=BACKOFF_WAIT)
        node.wait_healthy()


def _write_atomically(path, text: str) -> None:
    """The kubelet watches the manifest directory: a half-written file is a parse error there
    (it skips hidden files, so the new text is written next to it and renamed over it)."""
    tmp = path.with_name(f".{path.name}.hl")
    tmp.write_text(text)
    tmp.chmod(path.stat().st_mode & 0o7777)
    os.replace(tmp, path)


def wait_control_plane(node) -> None:
    """Until etcd, the API server, the controller manager and the scheduler all run with their
    manifests' commands (and the node is healthy)."""
    def running() -> bool:
        for component, comm in COMM.items():
            command = yaml.safe_load(node.manifest(component).read_text())["spec"]["containers"][0]["command"]
            if node.argv(comm) != command:
                return False
        return True
    wait_for("the control plane running its manifests", running, timeout=BACKOFF_WAIT, every=2)
    node.wait_healthy()


def kubelet_config_path(node) -> Any:
    return node.path("/var/lib/kubelet/config.yaml")


@contextlib.contextmanager
def kubelet_changed(node, config: dict[str, Any] | None = None, extra_args: str = "") -> Iterator[None]:
    """Restart the node's kubelet with config keys changed (dotted keys, None removes) and
    KUBELET_EXTRA_ARGS in /etc/default/kubelet; put both back afterwards."""
    path = kubelet_config_path(node)
    original = path.read_text()
    defaults = node.path("/etc/default/kubelet")
    had_defaults = defaults.exists()
    old_defaults = defaults.read_text() if had_defaults else ""
    doc = yaml.safe_load(original)
    for dotted, value in (config or {}).items():
        *parents, leaf = dotted.split(".")
        where = doc
        for part in parents:
            where = where.setdefault(part, {})
        if value is None:
            where.pop(leaf, None)
        else:
            where[leaf] = value
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    if extra_args:
        defaults.write_text(f"KUBELET_EXTRA_ARGS={extra_args}\n")
    try:
        _restart_kubelet(node, lambda a: all(x in a for x in extra_args.split()))
        yield
    finally:
        path.write_text(original)
        if had_defaults:
            defaults.write_text(old_defaults)
        elif defaults.exists():
            defaults.unlink()
        _restart_kubelet(node, lambda a: not any(x in a for x in extra_args.split()))


def _restart_kubelet(node, predicate: Callable[[list[str]], bool]) -> None:
    old = set(node.pids("kubelet"))
    node.restart_kubelet()
    wait_for("kubelet restarted", lambda: (set(node.pids("kubelet")) - old) and predicate(node.argv("kubelet") or []),
             timeout=90, every=0.5)
    node.wait_healthy()


def apply(node, manifest: str) -> None:
    """kubectl apply on the control plane node (the real API server)."""
    done = node.kubectl("apply", "-f", "-", input=manifest, timeout=120)
    assert done.returncode == 0, done.stderr
