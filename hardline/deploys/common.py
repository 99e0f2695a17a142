"""What every hardening deploy needs: the validated host config and the controls to apply."""

from __future__ import annotations

import sys
from pathlib import Path

from pyinfra import host, inventory
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.util import get_template

from hardline.catalog import Control, defaults
from hardline.inventory import HostConfig, InventoryError, applicable_catalogs, check_host
from hardline.inventory_pyinfra import pyinfra_sources
from hardline.paths import TEMPLATES

DEFAULTS = defaults()  # handed to pyinfra as data_defaults: host > group > these


class HardlineDataError(PyinfraError):
    """Inventory data refused before any operation runs (pyinfra prints it without traceback)."""


def _inventory_file() -> str:
    # pyinfra's CLI does not expose the inventory path; it is its first positional argument.
    for arg in sys.argv[1:]:
        if not arg.startswith("-") and Path(arg).is_file() and arg.endswith(".py"):
            return arg
    return "inventory"


def host_config() -> HostConfig:
    """This host's tunables after validation (cached per host for the run)."""
    cached = host.data.get("_hardline_config")
    if cached is not None:
        return cached
    try:
        config = check_host(host.name, host.groups, pyinfra_sources(inventory, host, _inventory_file()),
                            host.data.dict())
    except InventoryError as err:
        raise HardlineDataError(str(err)) from None
    host.data._hardline_config = config
    return config


def controls(config: HostConfig, *kinds: str, versions: dict[str, str] | None = None) -> list[Control]:
    """Controls of these kinds that apply to the host's roles: waived ones are not remediated.
    ``versions`` pins benchmark versions beyond the inventory's (one picked from the host)."""
    waived = {key for key, w in config.waivers.items() if not w.expired()}
    pinned = {**config.data["hardline_benchmark_versions"], **(versions or {})}
    return [c for cat in applicable_catalogs(config.roles, pinned)
            for c in cat.of_kind(*kinds) if c.applies_to(config.roles) and c.key not in waived]


def op_name(control: Control, text: str) -> str:
    """Operation names start with the control key, so output and logs can be searched by it."""
    return f"[{control.key}] {text}"


def render(template: str, **values: object) -> str:
    """A template of templates/ rendered as pyinfra's files.template renders it (jinja2, strict)."""
    return get_template(str(TEMPLATES / template)).render(**values)
