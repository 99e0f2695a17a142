"""Run hardline and pyinfra against the test fleet as a user would (whole processes), and read
back what they said per host.

    run = hardline_run("verify", inventory, "--json", out, timeout=180)
    run.results["h01"]["2.2"].status
"""

from __future__ import annotations

import json
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PROGRESS = re.compile(r"gathered (\S+)\s+([\d.]+)s\s+(.*?)\s+\[(\d+)/(\d+)\]$")


@dataclass
class Run:
    """One finished (or timed-out) command: exit code, output, wall and CPU seconds."""

    argv: list[str]
    returncode: int | None  # None: killed at the timeout
    stdout: str
    stderr: str
    seconds: float
    cpu_seconds: float  # user + system of the process and its children
    json: dict[str, Any] | None = None
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # host -> control id -> result

    @property
    def timed_out(self) -> bool:
        return self.returncode is None

    def progress(self) -> list[tuple[str, float, str, int, int]]:
        """(host, seconds, state, done, total) of every non-terminal progress line on stderr."""
        return [(m[1], float(m[2]), m[3], int(m[4]), int(m[5]))
                for line in self.stderr.splitlines() if (m := PROGRESS.search(line.strip()))]

    def output(self, limit: int = 3000) -> str:
        return f"$ {' '.join(self.argv)}\nexit {self.returncode}\n{self.stdout[-limit:]}\n{self.stderr[-limit:]}"


def _run(argv: list[str], timeout: float) -> Run:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    try:
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        rc, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        rc = None
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run([str(a) for a in argv], rc, out, err, seconds, cpu)


def hardline_run(*args: Any, json_out: Path | None = None, timeout: float = 300) -> Run:
    """``python -m hardline.cli ARGS [--json json_out]``; results parsed when the file exists."""
    argv = [sys.executable, "-m", "hardline.cli", *map(str, args)]
    if json_out is not None:
        argv += ["--json", str(json_out)]
    run = _run(argv, timeout)
    if json_out is not None and json_out.exists() and not run.timed_out:
        run.json = json.loads(json_out.read_text())
        for r in run.json["results"]:
            run.results.setdefault(r["host"], {})[r["control_id"]] = SimpleNamespace(**r)
    return run


def pyinfra_cli() -> str:
    """The ``pyinfra`` console script next to this Python. Not ``python -m pyinfra``: that entry
    (pyinfra 3.10) hangs while connecting through an ssh_config ProxyCommand (gevent)."""
    beside = Path(sys.executable).parent / "pyinfra"
    return str(beside) if beside.exists() else (shutil.which("pyinfra") or "pyinfra")


def pyinfra_run(inventory: Path, *args: Any, timeout: float = 300) -> Run:
    """``pyinfra -y INVENTORY ARGS`` (the CLI of the installed pyinfra)."""
    return _run([pyinfra_cli(), "-y", str(inventory), *map(str, args)], timeout)


def pyinfra_outputs(run: Run) -> dict[str, list[str]]:
    """Lines a pyinfra exec printed per host ("[h01] uid=0(root) ...")."""
    found: dict[str, list[str]] = {}
    for line in (run.stdout + "\n" + run.stderr).splitlines():
        m = re.match(r"^\[([^\]]+)\]\s+(.*)$", line)  # command output is not indented, status lines are
        if m:
            found.setdefault(m[1], []).append(m[2])
    return found


def pyinfra_connected(run: Run) -> set[str]:
    """Hosts pyinfra reported as connected."""
    return set(re.findall(r"^\s+\[([^\]]+)\] Connected", run.stdout + run.stderr, re.M))


def statuses(run: Run, host: str, ids: tuple[str, ...]) -> dict[str, str]:
    """Status of each of ``ids`` on ``host`` ("missing" when the run has no such result)."""
    got = run.results.get(host, {})
    return {cid: got[cid].status if cid in got else "missing" for cid in ids}
