"""hardline command line: verify hosts, list the catalog, run the lab.

Exit codes (verify): 0 all controls pass (or are skipped/manual/waived), 1 some fail,
2 some could not be verified (unreachable host, failing command), 4 bad input (inventory,
options).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from hardline.results import ERROR, FAIL, STATUSES, counts, exit_code, write_junit

EXIT_USAGE = 4

VERIFY_EPILOG = """\
examples:
  hardline verify inventories/lab.py
  hardline verify inventories/prod.py --junit reports/cis.xml --limit docker_hosts
  hardline verify inventories/prod.py --section 2 --section 3 --show FAIL,ERROR

statuses: PASS, FAIL (evidence: expected vs found), ERROR (could not verify: unreachable host,
failing command, unreadable file; never counted as a pass), SKIP (not applicable here, or no
automated check yet), MANUAL (needs a person; guidance given), WAIVED (accepted in inventory
hardline_waivers with a reason).

exit codes: 0 all pass, 1 some FAIL, 2 some ERROR, 4 invalid inventory or options.
"""


def _progress(quiet: bool):
    def report(host: str, facts, seconds: float) -> None:
        if quiet:
            return
        state = f"unreachable: {facts}" if isinstance(facts, Exception) else f"{facts.round_trips} round trips"
        print(f"  gathered {host:<30} {seconds:5.1f}s  {state}", file=sys.stderr, flush=True)
    return report


def cmd_verify(args: argparse.Namespace) -> int:
    from benchmarks.engine import verify_hosts
    from hardline.inventory import InventoryError, load_hosts

    try:
        hosts = load_hosts(args.inventory, args.limit)
    except (InventoryError, FileNotFoundError) as err:
        print(f"hardline: {err}", file=sys.stderr)
        return EXIT_USAGE
    started = time.monotonic()
    if not args.quiet:
        print(f"verifying {len(hosts)} host(s) against {args.benchmark} ...", file=sys.stderr)
    results = verify_hosts(hosts, args.benchmark, args.parallel, args.section, _progress(args.quiet))
    elapsed = time.monotonic() - started
    show = set(args.show.split(",")) if args.show else {FAIL, ERROR}
    for r in results:
        if r.status in show:
            print(f"{r.status:<6} {r.host}  {r.control_id:<7} {r.title}")
            for line in r.message.splitlines():
                print(f"         {line}")
    if args.junit:
        write_junit(results, args.junit)
    print(summary(results, elapsed))
    if args.junit:
        print(f"JUnit XML: {args.junit}")
    return exit_code(results)


def summary(results, elapsed: float) -> str:
    lines = []
    hosts = sorted({r.host for r in results})
    for host in hosts:
        c = counts(r for r in results if r.host == host)
        lines.append(f"{host}: " + "  ".join(f"{s} {c[s]}" for s in STATUSES))
    total = counts(results)
    lines.append(f"total ({len(hosts)} hosts, {elapsed:.1f}s): " + "  ".join(f"{s} {total[s]}" for s in STATUSES))
    return "\n".join(lines)


def cmd_controls(args: argparse.Namespace) -> int:
    from hardline.catalog import load_catalog

    catalog = load_catalog(args.benchmark)
    print(f"{catalog.title} {catalog.version}: {len(catalog.controls)} controls")
    for c in catalog.controls:
        kind = c.kind or ("manual" if not c.automated else "-")
        print(f"{c.id:<8} L{c.level} {c.assessment:<9} {kind:<14} {c.slug:<40} {c.title}")
    return 0


def cmd_variables(args: argparse.Namespace) -> int:
    from hardline.catalog import tunables

    for t in tunables().values():
        print(f"{t.name} ({t.type}, default {t.default!r})\n    {t.doc}")
    return 0


def cmd_lab(argv: list[str]) -> int:
    if argv[:1] == ["demo"]:
        from hardline.labrun import demo

        return demo(argv[1:])
    from hardline import lab

    return lab.cli(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hardline",
        description="Harden container hosts with pyinfra and prove it with CIS benchmark checks.",
        epilog="Deploy with: pyinfra INVENTORY deploys/harden.py  (--dry shows what would change)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    verify = sub.add_parser("verify", help="check every host of a pyinfra inventory against a benchmark",
                            description="Gather facts from every host (in parallel, a few round trips per host) and "
                            "evaluate every control of the benchmark; expected values come from the same inventory "
                            "data the deploy uses.", epilog=VERIFY_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    verify.add_argument("inventory", help="pyinfra inventory file (group_data/ beside it is read too)")
    verify.add_argument("--benchmark", default="cis-docker", help="benchmark catalog (default: %(default)s)")
    verify.add_argument("--junit", metavar="PATH", help="write JUnit XML (one testcase per host and control)")
    verify.add_argument("--limit", action="append", metavar="HOST", help="only this host or group (repeatable)")
    verify.add_argument("--section", action="append", metavar="N", help="only this section, e.g. 2 or 1.1 (repeatable)")
    verify.add_argument("--parallel", type=int, default=16, help="hosts gathered at once (default: %(default)s)")
    verify.add_argument("--show", metavar="STATUSES", help=f"statuses to list in detail, comma separated "
                        f"(default: FAIL,ERROR; any of {','.join(STATUSES)})")
    verify.add_argument("-q", "--quiet", action="store_true", help="no progress lines (CI)")
    verify.set_defaults(func=cmd_verify)
    controls = sub.add_parser("controls", help="list the controls of a benchmark catalog")
    controls.add_argument("--benchmark", default="cis-docker")
    controls.set_defaults(func=cmd_controls)
    variables = sub.add_parser("variables", help="list every inventory variable with its type and default")
    variables.set_defaults(func=cmd_variables)
    sub.add_parser("lab", help="the QEMU lab VM: up, down, status, ssh, build, and demo (the main job: "
                   "baseline verify, harden, re-harden, verify)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/ beside the package
    if argv[:1] == ["lab"]:
        return cmd_lab(argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
