"""A pyinfra run whose outcome is read from pyinfra's own state, not from its printed table.

pyinfra runs in a child process through ``hardline.drift.pyinfra_main`` (the mechanism
``hardline drift`` uses for its dry-run plan); after a real run it dumps, per host, the
operations that changed something and those that failed (``$HARDLINE_PYINFRA_RESULTS``). When
that dump is missing (pyinfra stopped before its results: a deploy error, a crash), names no
host (pyinfra exits 0 on an inventory it cannot load) or a host failed, the number of changed
operations is unknown and asking for it raises: an idempotence check can then never pass on a
run that did not report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardline.drift import RESULTS_ENV
from lab.common import ROOT, LabError

PYINFRA_MAIN = "from hardline.drift import pyinfra_main; pyinfra_main()"


class ChangeCountUnknown(LabError):
    """pyinfra did not report its results: what it changed cannot be told."""


@dataclass
class DeployRun:
    """One pyinfra run: exit code, output (stderr after stdout) and the state it dumped."""

    argv: list[str]
    returncode: int
    stdout: str
    results: dict[str, Any] | None = field(default=None, repr=False)

    def _hosts(self) -> dict[str, Any]:
        if self.results is None:
            raise ChangeCountUnknown(
                f"pyinfra (exit {self.returncode}) did not dump its results, so the changed operations are "
                f"unknown; last output:\n{self.stdout[-3000:]}")
        if not self.results["hosts"]:
            # pyinfra exits 0 with an empty results table when the inventory names no host it can
            # load: nothing reported is not "nothing changed"
            raise ChangeCountUnknown(f"pyinfra (exit {self.returncode}) ran on no host; last output:\n"
                                     f"{self.stdout[-3000:]}")
        if self.results["failed_hosts"]:
            raise ChangeCountUnknown(f"pyinfra could not finish on {', '.join(self.results['failed_hosts'])}: what "
                                     f"it would have changed there is unknown; last output:\n{self.stdout[-3000:]}")
        return self.results["hosts"]

    @property
    def changed(self) -> int:
        """Operations that changed something, summed over hosts (pyinfra's "Success" column)."""
        return sum(len(h["changed"]) for h in self._hosts().values())

    def changed_on(self, host: str) -> list[str]:
        """Names of the operations that changed something on ``host``."""
        hosts = self._hosts()
        if host not in hosts:
            raise ChangeCountUnknown(f"pyinfra reported no results for host {host} (has: {', '.join(hosts)})")
        return hosts[host]["changed"]

    @property
    def failed(self) -> dict[str, list[str]]:
        """Host -> operations that failed there."""
        return {name: h["failed"] for name, h in self._hosts().items() if h["failed"]}


def run_pyinfra(inventory: str | Path, *args: str, deploy: str = "deploys/harden.py", cwd: Path = ROOT,
                prefix: Sequence[str] = (), env: dict[str, str] | None = None, timeout: float = 1800) -> DeployRun:
    """``pyinfra [-y] INVENTORY DEPLOY ARGS`` with its results read from its state.

    With ``--dry`` there is no -y (pyinfra skips change detection, and so the daemon.json diff,
    when both are given) and no results (nothing ran). ``prefix`` runs it under another command,
    e.g. ``ip netns exec hlv`` for hosts inside the Vagrant lab's namespace."""
    yes = [] if "--dry" in args else ["-y"]
    with tempfile.TemporaryDirectory(prefix="hardline-pyinfra-") as tmp:
        results_file = Path(tmp) / "results.json"
        argv = [*prefix, sys.executable, "-c", PYINFRA_MAIN, *yes, str(inventory), deploy, *args]
        pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        full_env = {**os.environ, **(env or {}), RESULTS_ENV: str(results_file), "PYTHONPATH": pythonpath}
        try:
            proc = subprocess.run(argv, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            return DeployRun(argv, 124, out + f"\npyinfra timed out after {timeout:.0f} s")
        results = json.loads(results_file.read_text()) if results_file.exists() else None
    return DeployRun(argv, proc.returncode, proc.stdout + proc.stderr, results)
