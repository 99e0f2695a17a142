"""The pyinfra side of inventory loading: a host's data layers and merged data as pyinfra sees
them. Runs in the pyinfra child process (hardline.worker) for verification and inside pyinfra for
deploys; it imports nothing else of hardline, so the worker and the inventory rules do not depend
on each other."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any


def _group_source(inventory_file: Path, group: str) -> str:
    for folder in (Path.cwd() / "group_data", inventory_file.parent / "group_data"):
        candidate = folder / f"{group}.py"
        if candidate.exists():
            return str(candidate.relative_to(Path.cwd()) if candidate.is_relative_to(Path.cwd()) else candidate)
    return str(inventory_file)


def pyinfra_sources(inventory, host, inventory_file: str) -> list[tuple[str, dict[str, Any]]]:
    """(file, data) layers of one pyinfra host, lowest precedence first."""
    path = Path(inventory_file)
    layers = [(_group_source(path, "all"), dict(inventory.get_data()))]
    for group in host.groups:
        if group != "all":
            layers.append((_group_source(path, group), dict(inventory.get_group_data(group))))
    layers.append((inventory_file, dict(inventory.get_host_data(host.name))))
    layers.append(("--data override", dict(inventory.get_override_data())))
    return layers


def merged_data(host) -> dict[str, Any]:
    """All data a pyinfra host sees, with pyinfra's precedence applied."""
    return host.data.dict()


def _picklable(value: Any) -> Any:
    try:
        pickle.dumps(value)
        return value
    except Exception:  # a module or function in group data: not ours, keep its description only
        return repr(value)


def read_inventory(inventory_file: str, cwd: str) -> list[tuple[str, list[str], list, dict[str, Any]]]:
    """(name, groups, source layers, merged data) of every host, through pyinfra's own loader.

    Runs in the pyinfra child process (hardline.worker): importing pyinfra_cli monkey-patches the
    standard library for gevent, which deadlocks a process that already runs threads.
    """
    # pyinfra_cli is not a stable API: pyinfra is pinned and tests/test_inventory.py covers this.
    from pyinfra.api import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory

    with ctx_state.use(State()):
        inventory = make_inventory(inventory_file, cwd=cwd)
        return [(host.name, list(host.groups),
                 [(src, {k: _picklable(v) for k, v in layer.items()})
                  for src, layer in pyinfra_sources(inventory, host, inventory_file)],
                 {k: _picklable(v) for k, v in merged_data(host).items()})
                for host in inventory]
