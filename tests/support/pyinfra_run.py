"""Run pyinfra as a user does (its CLI, in a child process) and read what happened from its state.

The child runs pyinfra's own CLI with two additions, written as JSON to ``$HLD_PYINFRA_REPORT``
at exit, whatever the outcome:

* per host, every command sent to it (``run_shell_command``) and every file uploaded or
  downloaded, counted where pyinfra hands them to the connector: the machine-independent cost of
  a deploy;
* per host, the operations that changed something (after a real run, from each operation's
  ``did_change()``) or would change (``--dry``, from pyinfra's change detection), read from
  pyinfra's state, never from its printed table.

:func:`deploy` raises when the report is missing or the state was never read, so an idempotence
check can never pass vacuously.

    run = deploy(tmp_path, [("@docker/abc", {"docker_trusted_users": []})], "from hardline.deploys.harden import harden\\nharden()")
    run.changed["@docker/abc"]  # ["[cis-docker 3.6] /etc/docker mode 755 or stricter", ...]
    run.commands["@docker/abc"]  # 3
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
REPORT_ENV = "HLD_PYINFRA_REPORT"


# ------------------------------------------------------------------ inside the pyinfra process


def _ops(state: Any, executed: bool) -> dict[str, dict[str, list[str]]]:
    """Per host: operations that changed (or would: --dry), and in a dry run those that would
    run only if an earlier one changes (``_if``), which a plan cannot decide."""
    from pyinfra_cli.prints import pretty_op_name

    out: dict[str, dict[str, list[str]]] = {}
    for host in state.inventory.iter_activated_hosts():
        names = out.setdefault(host.name, {"changed": [], "conditional": []})
        for op_hash in state.get_op_order():
            if op_hash not in state.ops[host]:
                continue
            op_data = state.ops[host][op_hash]
            meta = op_data.operation_meta
            name = pretty_op_name(state.op_meta[op_hash])
            if executed:
                if meta.is_complete() and meta.did_succeed(_raise_if_not_complete=False) and meta.did_change():
                    names["changed"].append(name)
            elif meta._maybe_is_change:
                names["conditional" if op_data.global_arguments.get("_if") else "changed"].append(name)
    return out


def main() -> None:
    """pyinfra's CLI, counting commands per host and dumping the changed operations."""
    import pyinfra_cli.cli as cli_module
    from pyinfra.api.host import Host
    from pyinfra_cli.main import main as pyinfra_cli_main

    report: dict[str, Any] = {"commands": Counter(), "uploads": Counter(), "downloads": Counter(),
                              "command_list": {}, "timings": {}, "changed": None, "stage": "start",
                              "started": time.monotonic()}

    def counting(method: str, counter: str) -> None:
        original = getattr(Host, method)

        def wrapper(self: Host, *args: Any, **kwargs: Any) -> Any:
            report[counter][self.name] += 1
            command = args[0] if args else kwargs.get("command")
            text = str(command.get_masked_value()) if command is not None and hasattr(command, "get_masked_value") \
                else str(command)
            if method == "run_shell_command":
                report["command_list"].setdefault(self.name, []).append(text[:300])
            began = time.monotonic()
            try:
                return original(self, *args, **kwargs)
            finally:  # seconds the host (and the connection) took, per command or transfer
                report["timings"].setdefault(self.name, []).append([method, time.monotonic() - began, text[:120]])

        setattr(Host, method, wrapper)

    counting("run_shell_command", "commands")
    counting("put_file", "uploads")
    counting("get_file", "downloads")

    original_meta, original_results = cli_module.print_meta, cli_module.print_results

    def print_meta(state: Any) -> None:
        original_meta(state)
        report["changed"], report["stage"] = _ops(state, executed=False), "planned"

    def print_results(state: Any) -> None:
        original_results(state)
        report["changed"], report["stage"] = _ops(state, executed=True), "executed"

    cli_module.print_meta, cli_module.print_results = print_meta, print_results

    def dump() -> None:
        report["seconds"] = time.monotonic() - report.pop("started")
        Path(os.environ[REPORT_ENV]).write_text(json.dumps(report))

    atexit.register(dump)
    pyinfra_cli_main()


# ------------------------------------------------------------------------------ in the test


@dataclass
class DeployRun:
    """One pyinfra run: exit code, output and what its state says."""

    returncode: int
    output: str
    stage: str  # "executed" (real run), "planned" (--dry) or where it stopped
    changed: dict[str, list[str]] = field(default_factory=dict)  # host -> operations that (would) change
    conditional: dict[str, list[str]] = field(default_factory=dict)  # host -> would run if an earlier one changes
    commands: dict[str, int] = field(default_factory=dict)  # host -> commands sent
    uploads: dict[str, int] = field(default_factory=dict)
    command_list: dict[str, list[str]] = field(default_factory=dict)
    timings: dict[str, list[tuple[str, float, str]]] = field(default_factory=dict)  # host -> (kind, seconds, what)
    seconds: float = 0.0  # the pyinfra process from start to exit

    def host_seconds(self, host: str) -> float:
        """Seconds spent waiting on one host's commands and transfers."""
        return sum(t for _, t, _ in self.timings.get(host, []))

    def sent(self, host: str) -> int:
        """Commands plus file transfers sent to one host."""
        return self.commands.get(host, 0) + self.uploads.get(host, 0)

    def tail(self, n: int = 4000) -> str:
        return self.output[-n:]


def inventory_text(hosts: list[tuple[str, dict[str, Any]]]) -> str:
    return "docker_hosts = [\n" + "".join(f"    ({name!r}, {data!r}),\n" for name, data in hosts) + "]\n"


def deploy(workdir: Path, hosts: list[tuple[str, dict[str, Any]]] | Path, deploy_code: str | Path, *, dry: bool = False,
           env: dict[str, str] | None = None, prefix: list[str] | None = None, timeout: float = 600,
           expect_state: bool = True, extra_args: list[str] | None = None, pythonpath: list[str] | None = None,
           cwd: Path | None = None) -> DeployRun:
    """Run ``pyinfra [-y|--dry] INVENTORY DEPLOY`` in a child process (``prefix`` wraps it, e.g.
    ``unshare --mount ...``) and read its report. ``hosts`` and ``deploy_code`` are written to
    ``workdir`` unless they are files already; ``pythonpath`` goes before this checkout (to run
    another checkout's deploys). With ``expect_state`` a run that never got to pyinfra's results
    (or plan, with ``dry``) raises: its change count cannot be read."""
    workdir.mkdir(parents=True, exist_ok=True)
    inventory = hosts if isinstance(hosts, Path) else workdir / "inventory.py"
    entry = deploy_code if isinstance(deploy_code, Path) else workdir / "deploy_under_test.py"
    report = workdir / "report.json"
    if not isinstance(hosts, Path):
        inventory.write_text(inventory_text(hosts))
    if not isinstance(deploy_code, Path):
        entry.write_text(deploy_code)
    report.unlink(missing_ok=True)
    path = [*(pythonpath or []), str(ROOT), (env or os.environ).get("PYTHONPATH", "")]
    child_env = {**os.environ, **(env or {}), REPORT_ENV: str(report), "PYTHONPATH": os.pathsep.join(filter(None, path))}
    argv = [sys.executable, str(Path(__file__).resolve())]  # by path: another checkout's tests/ may come first
    argv += [str(inventory), str(entry), "--dry"] if dry else ["-y", str(inventory), str(entry)]
    proc = subprocess.run((prefix or []) + argv + (extra_args or []), cwd=cwd or workdir, env=child_env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    output = proc.stdout + proc.stderr
    if not report.exists():
        raise AssertionError(f"pyinfra left no report (exit {proc.returncode}): {output[-3000:]}")
    data = json.loads(report.read_text())
    ops = data["changed"] or {}
    run = DeployRun(proc.returncode, output, data["stage"], {h: v["changed"] for h, v in ops.items()},
                    {h: v["conditional"] for h, v in ops.items()}, dict(data["commands"]), dict(data["uploads"]),
                    data["command_list"], {h: [tuple(t) for t in ts] for h, ts in data["timings"].items()},
                    data.get("seconds", 0.0))
    if expect_state and run.stage != ("planned" if dry else "executed"):
        raise AssertionError(f"pyinfra stopped before its {'plan' if dry else 'results'} (stage {run.stage}, "
                             f"exit {proc.returncode}): the change count cannot be read\n{output[-3000:]}")
    return run


if __name__ == "__main__":
    main()
