"""Drift: what the deploy would change now, and which controls no longer pass.

``hardline drift INVENTORY`` runs ``pyinfra INVENTORY deploys/harden.py --dry`` (read-only: facts
are gathered, nothing is executed) and ``hardline verify`` on the same hosts. A host has drifted
when an operation would change something on it or a control FAILs there; a host that could not
be planned or verified is an ERROR (never "no drift").

pyinfra's dry run prints a table of the operations that would change; its host column is cut
at 48 characters, so the plan is read from pyinfra's own state instead: pyinfra runs in a child
process (``python -c "from hardline.drift import pyinfra_main; pyinfra_main()" ...``) with its
table printer wrapped to also dump, per operation and host, whether the operation would change
something (``_maybe_is_change``) and whether it is conditional (``_if``). A conditional
operation (e.g. ``systemctl daemon-reload`` after a drop-in changed) cannot be decided in a dry
run; they are listed apart and are not drift by themselves.

Exit codes: 0 no drift, 1 drift (operations would change or controls FAIL), 2 some host could not
be planned or verified, 4 invalid inventory or options. With ``--fail-under N`` a score below N
is drift too.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from junit_xml import TestCase, TestSuite

from hardline.results import ERROR, FAIL, Result, control_sort_key

ROOT = Path(__file__).resolve().parent.parent  # on PYTHONPATH of the pyinfra child, for a checkout
# the packaged deploy file (the same code as a checkout's deploys/harden.py)
DEFAULT_DEPLOY = str(Path(__file__).resolve().parent / "deploys" / "entry.py")
PLAN_ENV = "HARDLINE_DRIFT_PLAN"
RESULTS_ENV = "HARDLINE_PYINFRA_RESULTS"
EXIT_CLEAN, EXIT_DRIFT, EXIT_ERROR = 0, 1, 2


# ------------------------------------------------------------------ inside the pyinfra process


def _dump_plan(state, path: str) -> None:
    from pyinfra_cli.prints import pretty_op_name

    failed = {h.name for h in state.failed_hosts}
    active = [h for h in state.inventory.iter_activated_hosts() if h.name not in failed]
    activated = [h.name for h in active]
    ops = []
    for op_hash in state.get_op_order():
        changes: list[str] = []
        conditional: list[str] = []
        for host in active:
            if op_hash not in state.ops[host]:
                continue
            op_data = state.get_op_data_for_host(host, op_hash)
            if op_data.operation_meta._maybe_is_change:
                (conditional if op_data.global_arguments.get("_if") else changes).append(host.name)
        ops.append({"name": pretty_op_name(state.op_meta[op_hash]), "changes": sorted(changes),
                    "conditional": sorted(conditional)})
    all_hosts = [h.name for h in state.inventory]
    Path(path).write_text(json.dumps({"hosts": all_hosts, "planned": activated, "operations": ops}))


def _dump_results(state, path: str) -> None:
    """After a real run: per host, the operations that changed something and those that failed,
    from the same operation meta pyinfra's results table is printed from."""
    from pyinfra_cli.prints import pretty_op_name

    hosts = {}
    for host in state.inventory.iter_activated_hosts():
        changed, failed, unchanged = [], [], 0
        for op_hash in state.get_op_order():
            if op_hash not in state.ops[host]:
                continue
            meta = state.ops[host][op_hash].operation_meta
            name = pretty_op_name(state.op_meta[op_hash])
            if not meta.did_succeed(_raise_if_not_complete=False):
                failed.append(name)
            elif meta.did_change():
                changed.append(name)
            else:
                unchanged += 1
        hosts[host.name] = {"changed": changed, "failed": failed, "unchanged": unchanged}
    Path(path).write_text(json.dumps({"hosts": hosts, "failed_hosts": sorted(h.name for h in state.failed_hosts)}))


def _then_dump(printer, dump, path: str):
    """pyinfra's printer, then a dump of the state it printed from."""
    def wrapped(state):
        printer(state)
        dump(state, path)

    return wrapped


def pyinfra_main() -> None:
    """pyinfra's CLI with its state also dumped as JSON: the change plan of a dry run to
    $HARDLINE_DRIFT_PLAN, and what a real run changed to $HARDLINE_PYINFRA_RESULTS (read from
    pyinfra's operation meta, not from its printed table).

    Without -y pyinfra would prompt "hosts failed to connect, continue?" (and crash on closed
    stdin); here an unreachable host is left out of the plan and the others are still planned
    (the drift report names it as an error)."""
    import pyinfra_cli.cli as cli_module
    from pyinfra_cli.main import main

    cli_module._set_fail_prompts = lambda state, config: None
    for printer, env, dump in (("print_meta", PLAN_ENV, _dump_plan), ("print_results", RESULTS_ENV, _dump_results)):
        if os.environ.get(env):
            setattr(cli_module, printer, _then_dump(getattr(cli_module, printer), dump, os.environ[env]))
    main()


# ---------------------------------------------------------------------------- the drift run


@dataclass
class Plan:
    """The dry run: per host, the operations that would change and the conditional ones."""

    hosts: list[str]
    planned: list[str]  # hosts pyinfra connected to and prepared
    changes: dict[str, list[str]]  # host -> operation names that would change
    conditional: dict[str, list[str]]  # host -> operations that run only if an earlier one changes
    diffs: list[str] = field(default_factory=list)  # unified diffs the deploy printed (daemon.json)
    returncode: int = 0
    output: str = ""

    @property
    def unplanned(self) -> list[str]:
        return [h for h in self.hosts if h not in self.planned]

    def to_dict(self) -> dict[str, Any]:
        return {"hosts": self.hosts, "planned": self.planned, "changes": self.changes,
                "conditional": self.conditional, "diffs": self.diffs, "pyinfra_exit": self.returncode,
                "unplanned": self.unplanned,
                "pyinfra_output_tail": "" if self.returncode == 0 and not self.unplanned else self.output[-4000:]}


DIFF_START = re.compile(r"^--- \S+:\S+")


def extract_diffs(output: str) -> list[str]:
    """Unified diffs in pyinfra's output ("--- host:path" / "+++ desired" / hunks)."""
    diffs, current = [], None
    for line in output.splitlines():
        if DIFF_START.match(line):
            current = [line]
            diffs.append(current)
        elif current is not None and (line[:1] in ("+", "-", " ", "@") and line.strip()):
            current.append(line)
        else:
            current = None
    return ["\n".join(d) for d in diffs if len(d) > 2]


def plan(inventory: str, limit: list[str] | None = None, deploy: str = DEFAULT_DEPLOY,
         timeout: float = 3600) -> Plan:
    """Run the deploy in dry mode; read which operations would change on which host."""
    with tempfile.TemporaryDirectory(prefix="hardline-drift-") as tmp:
        plan_file = Path(tmp) / "plan.json"
        cmd = [sys.executable, "-c", "from hardline.drift import pyinfra_main; pyinfra_main()",
               str(inventory), deploy, "--dry"]
        for item in limit or ():
            cmd += ["--limit", item]
        env = {**os.environ, PLAN_ENV: str(plan_file), "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
        # no -y: with -y pyinfra skips change detection; stdin closed: nothing can prompt
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        output = proc.stdout + proc.stderr
        raw = json.loads(plan_file.read_text()) if plan_file.exists() else {"hosts": [], "planned": [], "operations": []}
    changes: dict[str, list[str]] = {h: [] for h in raw["planned"]}
    conditional: dict[str, list[str]] = {h: [] for h in raw["planned"]}
    for op in raw["operations"]:
        for h in op["changes"]:
            changes[h].append(op["name"])
        for h in op["conditional"]:
            conditional[h].append(op["name"])
    return Plan(raw["hosts"], raw["planned"], changes, conditional, extract_diffs(output), proc.returncode, output)


@dataclass
class Drift:
    plan: Plan
    results: list[Result]
    hosts: list[str]

    def failing(self, host: str | None = None) -> list[Result]:
        """Controls that do not pass (FAIL or ERROR), on one host or all."""
        return [r for r in self.results if r.status in (FAIL, ERROR) and (host is None or r.host == host)]

    def differing(self, host: str | None = None) -> list[Result]:
        """Passing controls whose value is not the inventory's (the deploy would change it back)."""
        return [r for r in self.results if r.differs and (host is None or r.host == host)]

    def host_state(self, host: str) -> str:
        """"error", "drift" or "clean"."""
        if (host in self.plan.unplanned or host not in self.plan.planned
                or any(r.status == ERROR for r in self.results if r.host == host)):
            return "error"
        if (self.plan.changes.get(host) or self.differing(host)
                or any(r.status == FAIL for r in self.results if r.host == host)):
            return "drift"
        return "clean"

    def exit_code(self) -> int:
        states = {self.host_state(h) for h in self.hosts}
        if "error" in states:
            return EXIT_ERROR
        return EXIT_DRIFT if "drift" in states else EXIT_CLEAN

    def to_dict(self) -> dict[str, Any]:
        return {**self.plan.to_dict(), "states": {h: self.host_state(h) for h in self.hosts},
                "failing": {h: sorted({r.control_key for r in self.failing(h)}, key=control_sort_key) for h in self.hosts},
                "differs": {h: sorted(f"{r.control_key}: {r.differs}" for r in self.differing(h)) for h in self.hosts}}

    def text(self) -> str:
        """The terminal report: per host, what would change and what no longer passes."""
        lines = []
        for host in self.hosts:
            state = self.host_state(host)
            lines.append(f"{host}: {state.upper() if state != 'clean' else 'no drift'}")
            if host not in self.plan.planned:
                lines.append("  could not be planned by pyinfra (unreachable, or the deploy failed):")
                lines += [f"    {line}" for line in self.plan.output.strip().splitlines()[-8:]]
            for name in self.plan.changes.get(host, []):
                lines.append(f"  would change: {name}")
            for name in self.plan.conditional.get(host, []) if self.plan.changes.get(host) else []:
                lines.append(f"  may also run: {name}")
            for r in self.failing(host):
                what = f"{r.control_key} {r.title}" + (f" [{r.subject}]" if r.subject else "")
                lines.append(f"  {r.status.lower():<5} {what}" + (f": {r.found}" if r.found else ""))
            for r in self.differing(host):
                lines.append(f"  differs {r.control_key}: {r.differs[0].lower() + r.differs[1:]}")
        for diff in self.plan.diffs:
            lines.append("")
            lines += diff.splitlines()
        return "\n".join(lines)


def junit_drift_suite(drift: Drift) -> TestSuite:
    """The "drift" JUnit testsuite (written by ``hardline.junit`` beside the controls' suites):
    one testcase per host, failing with the operations that would change, an error when the host
    could not be planned."""
    cases = []
    for host in drift.hosts:
        case = TestCase(f"deploy would change nothing on {host}", classname=f"drift.{host}")
        if host not in drift.plan.planned:
            case.add_error_info("could not be planned", drift.plan.output[-2000:], "ERROR")
        elif drift.plan.changes.get(host):
            ops = drift.plan.changes[host]
            case.add_failure_info(f"{len(ops)} operation(s) would change", "\n".join(ops), "DRIFT")
        cases.append(case)
    return TestSuite("drift (pyinfra dry run)", cases)
