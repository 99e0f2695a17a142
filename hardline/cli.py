"""hardline command line: verify hosts, render reports, detect drift, list the catalog.

Exit codes (verify): 0 all controls pass (or are skipped/manual/waived), 1 some fail,
2 some could not be verified (unreachable host, failing command), 3 score below --fail-under,
4 bad input (inventory, options, results files).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import threading
import time
from pathlib import Path

from hardline.catalog import ROLES
from hardline.results import (
    ERROR,
    FAIL,
    STATUSES,
    ResultsFileError,
    RunResults,
    counts,
    gate,
    gated_exit_code,
    host_scores,
    load_json,
    merge_runs,
    score,
    write_json,
)

EXIT_USAGE = 4

VERIFY_EPILOG = """\
examples:
  hardline verify inventories/lab.py
  hardline verify inventories/prod.py --junit reports/cis.xml --limit docker_hosts
  hardline verify inventories/prod.py --section 2 --section 3 --show FAIL,ERROR
  hardline verify inventories/prod.py --json reports/cis.json --html reports/cis.html --previous reports/last.json
  hardline verify inventories/prod.py --fail-under 75 -q     # CI promotion gate

statuses: PASS, FAIL (evidence: expected vs found), ERROR (could not verify: unreachable host,
failing command, unreadable file; never counted as a pass), SKIP (not applicable here, or no
automated check yet), MANUAL (needs a person; guidance given), WAIVED (accepted in inventory
hardline_waivers with a reason).

score: 100 * PASS / (PASS + FAIL + ERROR) over controls (per host, and overall); SKIP, MANUAL
and WAIVED are not scored; ERROR counts against it.

exit codes: 0 all pass, 1 some FAIL, 2 some ERROR, 4 invalid inventory or options.
With --fail-under N: 0 when every host and the overall score reach N (failures tolerated),
3 when one does not, 2 on any ERROR (an unverified host never passes a gate).
"""

REPORT_EPILOG = """\
examples:
  hardline report reports/after.json -o reports/after.html --previous reports/before.json
  hardline report web.json db.json -o fleet.html --json fleet.json    # several hosts/runs merge
  hardline report reports/cis.json -o cis.html --fail-under 75

Several files merge: for each host, the results of its latest run are used.
exit codes: 0 written, 4 unreadable results or options; with --fail-under N: 3 when a host's
or the overall score is below N, 2 when some result is ERROR.
"""

DRIFT_EPILOG = """\
examples:
  hardline drift inventories/prod.py --json reports/drift.json --html reports/drift.html
  hardline drift inventories/prod.py --previous reports/baseline.json   # also: newly failing since

Drift = operations `pyinfra INVENTORY deploys/harden.py --dry` would change, plus controls
that FAIL. Conditional operations (run only if an earlier one changes) are listed, not counted.
exit codes: 0 no drift, 1 drift, 2 a host could not be planned or verified, 4 invalid inventory
or options.
"""


class Progress:
    """Per-host progress while facts are gathered (on stderr): one line that updates in place on
    a terminal, one plain line per host otherwise (CI logs), nothing when quiet."""

    def __init__(self, total: int, quiet: bool = False, stream=None):
        self.total, self.quiet, self.stream = total, quiet, stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = self.unreachable = 0
        self.started = time.monotonic()
        self.lock = threading.Lock()

    def __call__(self, host: str, facts, seconds: float) -> None:
        if self.quiet:
            return
        with self.lock:
            self.done += 1
            failed = isinstance(facts, Exception)
            self.unreachable += failed
            state = f"unreachable: {facts}" if failed else f"{facts.round_trips} round trips"
            if self.tty:
                bad = f", {self.unreachable} unreachable" if self.unreachable else ""
                line = (f"gathering facts: {self.done}/{self.total} hosts{bad} ({time.monotonic() - self.started:.0f}s)"
                        f" last: {host} {seconds:.1f}s")
                width = 200
                try:
                    import shutil

                    width = shutil.get_terminal_size((200, 20)).columns - 1
                except OSError:
                    pass
                self.stream.write("\r\033[K" + line[:width])
                if self.done == self.total:
                    self.stream.write("\n")
                if failed:  # an unreachable host keeps its own line above the progress line
                    self.stream.write(f"\r\033[K  {host}: {state}\n")
                    if self.done != self.total:
                        self.stream.write(line[:width])
            else:
                self.stream.write(f"  gathered {host:<30} {seconds:5.1f}s  {state}  [{self.done}/{self.total}]\n")
            self.stream.flush()


def _progress(quiet: bool, total: int = 0):
    return Progress(total, quiet)


def _now() -> str:
    return dt.datetime.now(dt.UTC).astimezone().isoformat(timespec="seconds")


def _load_previous(path: str | None) -> RunResults | None:
    return load_json(path) if path else None


def write_outputs(run: RunResults, args: argparse.Namespace, previous: RunResults | None = None,
                  junit_extra: tuple = ()) -> list[str]:
    """Write the --junit/--json/--html files a command was asked for; returns lines naming them.
    ``junit_extra``: more JUnit suites for the same document (drift's)."""
    written = []  # each writer imported only when asked for (jinja2 alone is ~50 ms of start-up)
    if getattr(args, "junit", None):
        from hardline.junit import write_junit

        write_junit(run.results, args.junit, meta=run.meta, extra=junit_extra)
        written.append(f"JUnit XML: {args.junit}")
    if getattr(args, "json", None):
        write_json(run, args.json)
        written.append(f"JSON: {args.json}")
    if getattr(args, "html", None):
        from hardline.report import write_html

        write_html(run, args.html, previous=previous)
        written.append(f"HTML: {args.html}" + (" (with changes since the previous run)" if previous else ""))
    return written


def _gate_lines(results, threshold: float | None) -> list[str]:
    if threshold is None:
        return []
    misses = gate(results, threshold)
    if misses:
        return [f"gate --fail-under {threshold:g}: NOT met: " + "; ".join(misses)]
    return [f"gate --fail-under {threshold:g}: met (overall score {score(results).text()})"]


def _selection(args: argparse.Namespace):
    from hardline.benchmarks.select import Selection

    selection = Selection(tuple(args.benchmark or ()), args.level, tuple(args.section or ()))
    selection.check()
    return selection


def _load(args: argparse.Namespace):
    """Hosts, selection and previous results of verify/drift, or a usage error (exit 4)."""
    from hardline.benchmarks.select import SelectionError
    from hardline.inventory import InventoryError, load_hosts

    try:
        selection = _selection(args)
        hosts = load_hosts(args.inventory, args.limit)
        previous = _load_previous(args.previous)
    except (InventoryError, FileNotFoundError, ResultsFileError, SelectionError) as err:
        print(f"hardline: {err}", file=sys.stderr)
        return None
    for h in hosts:  # verified anyway: ERROR for this host, the others go on
        if not h.valid:
            print(f"hardline: host {h.name} is not verified, {h.error}", file=sys.stderr)
    return hosts, selection, previous


def _benchmark_line(hosts) -> str:
    from collections import Counter

    roles = Counter(r for h in hosts for r in h.roles)
    return ", ".join(f"{n} {role}" for role, n in sorted(roles.items())) or "no roles"


def _start_worker() -> None:
    """The pyinfra child (hardline.worker) starts before this process imports the engine and the
    checks: its ~0.3 s of start-up (pyinfra, gevent, the inventory) then overlaps with ours."""
    from hardline import worker

    worker.start()


def cmd_verify(args: argparse.Namespace) -> int:
    if args.fail_under is not None and not 0 <= args.fail_under <= 100:
        print("hardline: --fail-under takes a score from 0 to 100", file=sys.stderr)
        return EXIT_USAGE
    _start_worker()
    from hardline.benchmarks.engine import verify_hosts

    loaded = _load(args)
    if loaded is None:
        return EXIT_USAGE
    hosts, selection, previous = loaded
    started_at, started = _now(), time.monotonic()
    if not args.quiet:
        print(f"verifying {len(hosts)} host(s) ({_benchmark_line(hosts)}) ...", file=sys.stderr)
    results = verify_hosts(hosts, selection, args.parallel, _progress(args.quiet, len(hosts)))
    elapsed = time.monotonic() - started
    run = RunResults.new(results, started=started_at, duration=elapsed, inventory=args.inventory,
                         hosts=[h.name for h in hosts], command=["hardline", *args.argv], sections=args.section,
                         level=args.level)
    if not args.quiet:
        print_details(results, args.show)
    written = write_outputs(run, args, previous)
    print(summary(results, elapsed))
    for line in _gate_lines(results, args.fail_under) + written:
        print(line)
    return gated_exit_code(results, args.fail_under)


def print_details(results, show: str | None) -> None:
    wanted = set(show.split(",")) if show else {FAIL, ERROR}
    for r in results:
        if r.status in wanted:
            print(f"{r.status:<6} {r.host}  {r.control_key:<24} {r.title}" + (f" [{r.subject}]" if r.subject else ""))
            for line in r.message.splitlines():
                print(f"         {line}")


def summary(results, elapsed: float | None = None) -> str:
    """Terminal summary: score and counts per host, then the total."""
    lines = []
    scores = host_scores(results)
    width = max((len(h) for h in scores), default=4)
    by_host: dict[str, list] = {}
    for r in results:
        by_host.setdefault(r.host, []).append(r)
    for host, s in scores.items():
        c = counts(by_host.get(host, ()))
        lines.append(f"{host + ':':<{width + 1}} score {s.text():>5}  " + "  ".join(f"{st} {c[st]}" for st in STATUSES))
    total = counts(results)
    took = f", {elapsed:.1f}s" if elapsed is not None else ""
    lines.append(f"total ({len(scores)} hosts{took}): score {score(results).text()}  "
                 + "  ".join(f"{st} {total[st]}" for st in STATUSES))
    return "\n".join(lines)


def cmd_report(args: argparse.Namespace) -> int:
    """Render saved results (one or several runs, merged) as HTML/JSON/JUnit."""
    if args.fail_under is not None and not 0 <= args.fail_under <= 100:
        print("hardline: --fail-under takes a score from 0 to 100", file=sys.stderr)
        return EXIT_USAGE
    if not (args.output or args.json or args.junit):
        print("hardline report: nothing to write: give -o report.html (and/or --json, --junit)", file=sys.stderr)
        return EXIT_USAGE
    try:
        runs = [load_json(p) for p in args.results]
        previous = _load_previous(args.previous)
    except ResultsFileError as err:
        print(f"hardline: {err}", file=sys.stderr)
        return EXIT_USAGE
    run = merge_runs(runs)
    args.html = args.output
    written = write_outputs(run, args, previous)
    if not args.quiet:
        print(summary(run.results))
    for line in _gate_lines(run.results, args.fail_under) + written:
        print(line)
    return gated_exit_code(run.results, args.fail_under) if args.fail_under is not None else 0


def cmd_drift(args: argparse.Namespace) -> int:
    _start_worker()
    from hardline.benchmarks.engine import verify_hosts
    from hardline.drift import DEFAULT_DEPLOY, Drift, junit_drift_suite, plan

    loaded = _load(args)
    if loaded is None:
        return EXIT_USAGE
    hosts, selection, previous = loaded
    started_at, started = _now(), time.monotonic()
    if not args.quiet:
        print(f"drift: pyinfra {args.inventory} {args.deploy or 'deploys/harden.py'} --dry on {len(hosts)} host(s) ...",
              file=sys.stderr, flush=True)
    dry = plan(args.inventory, args.limit, args.deploy or DEFAULT_DEPLOY)
    if not args.quiet:
        print(f"drift: dry run done ({time.monotonic() - started:.0f}s); verifying ...", file=sys.stderr, flush=True)
    results = verify_hosts(hosts, selection, args.parallel, _progress(args.quiet, len(hosts)))
    drift = Drift(dry, results, [h.name for h in hosts])
    run = RunResults.new(results, started=started_at, duration=time.monotonic() - started, inventory=args.inventory,
                         hosts=drift.hosts, command=["hardline", *args.argv], sections=args.section,
                         level=args.level, label="drift")
    run.meta["drift"] = drift.to_dict()
    if previous is not None:
        from hardline.results import compare

        newly = compare(previous, run).newly_failing
        run.meta["drift"]["newly_failing"] = sorted(f"{c.key[0]} {c.key[1]}" + (f" [{c.key[2]}]" if c.key[2] else "")
                                                    for c in newly)
    written = write_outputs(run, args, previous, junit_extra=(junit_drift_suite(drift),))
    print(drift.text())
    if previous is not None:
        newly = run.meta["drift"]["newly_failing"]
        print(f"newly failing since {previous.meta.get('started')}: " + (", ".join(newly) if newly else "none"))
    print(summary(results, time.monotonic() - started))
    for line in written:
        print(line)
    return drift.exit_code()


DEPLOY_HELP = """\
usage: hardline deploy INVENTORY [PYINFRA OPTIONS...]

Harden the inventory's hosts: runs pyinfra with hardline's own deploy (the code of a checkout's
deploys/harden.py, shipped in the package), so an installed hardline needs no checkout. Every
option is pyinfra's own and passed through unchanged:

  hardline deploy inventories/prod.py --dry          # what would change (nothing is changed)
  hardline deploy inventories/prod.py -y             # harden without asking
  hardline deploy inventories/prod.py --limit web1 --diff

Inventory data is validated for every host before any operation (file, host and key named).
Exit code: pyinfra's (0 success, non-zero when a host failed or the data was refused).
"""


def cmd_deploy(argv: list[str]) -> int:
    """Replace this process with pyinfra running the packaged hardening deploy."""
    import os

    from hardline.drift import DEFAULT_DEPLOY

    if not argv or argv[0] in ("-h", "--help"):
        print(DEPLOY_HELP, end="")
        return 0 if argv else EXIT_USAGE
    inventory, options = argv[0], argv[1:]
    if not Path(inventory).is_file() and not inventory.startswith("@"):
        print(f"hardline: inventory file not found: {inventory}", file=sys.stderr)
        return EXIT_USAGE
    code = "import sys; from pyinfra_cli.main import main; sys.argv[0] = 'pyinfra'; sys.exit(main())"
    os.execv(sys.executable, [sys.executable, "-c", code, *options, inventory, DEFAULT_DEPLOY])
    return 0  # not reached


def cmd_controls(args: argparse.Namespace) -> int:
    from hardline.benchmarks.select import SelectionError
    from hardline.catalog import all_catalogs

    try:
        selection = _selection(args)
    except SelectionError as err:
        print(f"hardline: {err}", file=sys.stderr)
        return EXIT_USAGE
    for catalog in all_catalogs():
        if not selection.wants_catalog(catalog):
            continue
        controls = [c for c in catalog.controls if selection.wants(c) and (not args.role or args.role in c.roles)]
        print(f"{catalog.title} {catalog.version} ({catalog.key}): {len(controls)} controls")
        for c in controls:
            kind = c.kind or ("manual" if not c.automated else "-")
            roles = "cluster" if c.scope == "cluster" else ",".join(c.roles)
            print(f"  {c.key:<30} L{c.level} {c.assessment:<9} {kind:<22} {roles:<20} {c.slug:<40} {c.title}")
    return 0


def cmd_variables(args: argparse.Namespace) -> int:
    from hardline.catalog import tunables

    for t in tunables().values():
        print(f"{t.name} ({t.type}, default {t.default!r})\n    {t.doc}")
    return 0


def cmd_k8s_manifest(args: argparse.Namespace) -> int:
    from hardline.incluster import ManifestError, render

    try:
        text = render(args.image, args.namespace, args.cluster, args.reports_dir, args.interval)
    except ManifestError as err:
        print(f"hardline: {err}", file=sys.stderr)
        return EXIT_USAGE
    if args.output:
        Path(args.output).write_text(text)
    else:
        print(text, end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hardline",
        description="Harden container hosts with pyinfra and prove it with CIS benchmark checks.",
        epilog="Harden with: hardline deploy INVENTORY (or, in a checkout: pyinfra INVENTORY deploys/harden.py); "
        "--dry shows what would change.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    verify = sub.add_parser("verify", help="check every host of a pyinfra inventory against a benchmark",
                            description="Gather facts from every host (in parallel, a few round trips per host) and "
                            "evaluate every control of the benchmark; expected values come from the same inventory "
                            "data the deploy uses.", epilog=VERIFY_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    verify.add_argument("inventory", help="pyinfra inventory file (group_data/ beside it is read too)")
    _selection_args(verify)
    verify.add_argument("--junit", metavar="PATH", help="write JUnit XML (one testcase per host and control)")
    verify.add_argument("--limit", action="append", metavar="HOST", help="only this host or group (repeatable)")
    verify.add_argument("--parallel", type=int, default=16, help="hosts gathered at once (default: %(default)s)")
    verify.add_argument("--show", metavar="STATUSES", help=f"statuses to list in detail, comma separated "
                        f"(default: FAIL,ERROR; any of {','.join(STATUSES)})")
    _output_args(verify)
    verify.add_argument("--fail-under", type=float, metavar="N", help="score gate: exit 3 when a host's or the "
                        "overall score is below N (0-100); failures alone then do not fail the run")
    verify.add_argument("-q", "--quiet", action="store_true",
                        help="CI mode: no progress and no per-control details, only the summary and the gate")
    verify.set_defaults(func=cmd_verify)
    report = sub.add_parser("report", help="render saved JSON results (several runs merge) as a self-contained HTML report",
                            description="Render one or more results files written by `hardline verify --json` "
                            "(or drift) into one HTML report, optionally compared with a previous run.",
                            epilog=REPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    report.add_argument("results", nargs="+", metavar="RESULTS.json", help="results files (hardline-results/1 JSON)")
    report.add_argument("-o", "--output", metavar="PATH", help="HTML report to write")
    report.add_argument("--previous", metavar="OLD.json", help="earlier results: show what changed since")
    report.add_argument("--json", metavar="PATH", help="also write the merged results as JSON")
    report.add_argument("--junit", metavar="PATH", help="also write the merged results as JUnit XML")
    report.add_argument("--fail-under", type=float, metavar="N", help="exit 3 when a host's or the overall score is below N")
    report.add_argument("-q", "--quiet", action="store_true", help="no summary, only the files written and the gate")
    report.set_defaults(func=cmd_report)
    drift = sub.add_parser("drift", help="pyinfra dry run of the deploy + verify: what would change, what no longer passes",
                           description="Run the hardening deploy in dry mode (nothing is changed) and verify every "
                           "host; report the operations that would change and the controls that fail.",
                           epilog=DRIFT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    drift.add_argument("inventory", help="pyinfra inventory file")
    drift.add_argument("--limit", action="append", metavar="HOST", help="only this host or group (repeatable)")
    drift.add_argument("--deploy", help="deploy file to dry-run (default: hardline's own hardening deploy, "
                       "the code of deploys/harden.py)")
    _selection_args(drift, " (the dry run covers the whole deploy)")
    drift.add_argument("--parallel", type=int, default=16, help="hosts verified at once (default: %(default)s)")
    drift.add_argument("--junit", metavar="PATH", help="write JUnit XML (controls, plus a drift testsuite per host)")
    _output_args(drift)
    drift.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    drift.set_defaults(func=cmd_drift)
    controls = sub.add_parser("controls", help="list the controls of every benchmark (key, level, kind, roles, slug)",
                              description="List the catalogs' controls: key (benchmark:version:id), level, "
                              "automated/manual, kind, node roles (or cluster), slug and title.")
    _selection_args(controls)
    controls.add_argument("--role", choices=ROLES, help="only controls for this node role")
    controls.set_defaults(func=cmd_controls)
    manifest = sub.add_parser("k8s-manifest", help="print the DaemonSets that verify every Kubernetes node from "
                              "inside the cluster (hostPID, read-only host root, @chroot)",
                              description="Render the in-cluster node verification (hardline/incluster.py): one "
                              "DaemonSet for control-plane nodes, one for the others; each pod writes "
                              "<reports-dir>/<node>.json and .xml on its node.")
    manifest.add_argument("--image", required=True, help="an image with hardline installed (pip install hardline)")
    manifest.add_argument("--namespace", default="hardline", help="namespace to create (default: %(default)s)")
    manifest.add_argument("--cluster", default="kubernetes", help="k8s_cluster of the results (default: %(default)s)")
    manifest.add_argument("--reports-dir", default="/var/log/hardline", help="node directory for the results "
                          "(default: %(default)s)")
    manifest.add_argument("--interval", type=int, default=86400, help="seconds between verifications; 0 = once, "
                          "then exit (default: %(default)s)")
    manifest.add_argument("-o", "--output", metavar="PATH", help="write the manifest here instead of stdout")
    manifest.set_defaults(func=cmd_k8s_manifest)
    variables = sub.add_parser("variables", help="list every inventory variable with its type and default")
    variables.set_defaults(func=cmd_variables)
    sub.add_parser("deploy", help="harden the inventory's hosts: pyinfra with hardline's packaged deploy "
                   "(pyinfra options pass through, e.g. --dry)", add_help=False)
    return parser


def _selection_args(parser: argparse.ArgumentParser, note: str = "") -> None:
    parser.add_argument("--benchmark", action="append", metavar="NAME[:VERSION]",
                        help="only this benchmark, e.g. cis-docker or cis-kubernetes:1.20 (repeatable; default: every "
                        "benchmark that applies to each host's roles)" + note)
    parser.add_argument("--level", type=int, choices=(1, 2), help="CIS profile level: 1 = level-1 items only, "
                        "2 = level 1 and 2 (default: all)")
    parser.add_argument("--section", action="append", metavar="N", help="only this section, e.g. 2 or 1.1 (repeatable)")


def _output_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="PATH", help="write the results and run metadata as JSON (input of `hardline report`)")
    parser.add_argument("--html", metavar="PATH", help="write a self-contained HTML report")
    parser.add_argument("--previous", metavar="OLD.json",
                        help="results of an earlier run: the HTML report shows what changed since")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["deploy"]:
        return cmd_deploy(argv[1:])
    args = build_parser().parse_args(argv)
    args.argv = argv
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
