"""testinfra's Host API over pyinfra's connectors, for checks of your own beside the catalogs.

`pytest benchmarks --inventory INV` gives every test that asks for the ``host`` fixture one
testinfra Host per inventory host (``host.file``, ``host.service``, ``host.run``...), reached
exactly as the deploy and the catalog checks reach it: pyinfra's connector, its SSH settings and
host-key policy, ``_sudo`` from host data. A host that cannot be reached makes the test an error.

Example (benchmarks/test_site.py)::

    def test_ntp_is_running(host):
        assert host.service("chrony").is_running
"""

from __future__ import annotations

from typing import Any

import testinfra.host
from testinfra.backend.base import BaseBackend, CommandResult

from hardline.benchmarks.connect import run_command
from hardline.inventory import HostConfig


class PyinfraBackend(BaseBackend):
    """A testinfra backend whose commands run through pyinfra (hardline.benchmarks.remote)."""

    NAME = "pyinfra"

    def __init__(self, config: HostConfig, **kwargs: Any):
        self.config = config
        super().__init__(config.name, **kwargs)

    def get_pytest_id(self) -> str:
        return self.config.name

    def run(self, command: str, *args: str, **kwargs: Any) -> CommandResult:
        cmd = self.get_command(command, *args)
        code, stdout, stderr = run_command(self.config, cmd)
        return self.result(code, self.encode(cmd), stdout, stderr)


def testinfra_host(config: HostConfig) -> testinfra.host.Host:
    backend = PyinfraBackend(config)
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    return host
