"""What every hardening deploy needs: the validated host config and the controls to apply."""

from __future__ import annotations

import sys
from pathlib import Path

from pyinfra import host, inventory
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.util import get_template

from hardline.catalog import Control, defaults, load_catalog
from hardline.inventory import HostConfig, InventoryError, check_host, pyinfra_sources
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


def controls(config: HostConfig, *kinds: str) -> list[Control]:
    """Automated controls of these kinds that apply: waived ones are not remediated."""
    waived = {cid for cid, w in config.waivers.items() if not w.expired()}
    return [c for c in load_catalog().of_kind(*kinds) if c.id not in waived]


def op_name(control: Control, text: str) -> str:
    """Operation names start with the control id, so output and logs can be searched by CIS id."""
    return f"[{control.benchmark} {control.id}] {text}"


def render(template: str, **values: object) -> str:
    """A template of templates/ rendered as pyinfra's files.template renders it (jinja2, strict)."""
    return get_template(str(TEMPLATES / template)).render(**values)
