"""The main job on the built-in lab: `python3 -m lab demo` (what `bash scripts/lab-run.sh` runs).

Boots a fresh lab VM, verifies it (baseline), hardens it with pyinfra, hardens it again (which
must change nothing), verifies again, and writes the JUnit reports; prints before/after counts
and the time of every step. Reports for before and after: JUnit XML, JSON results and a
self-contained HTML report (``reports/{before,after}.{xml,json,html}``); after.html shows what
changed since before. Exit code: that of the final verify (0 when everything passes).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from hardline.junit import write_junit
from hardline.results import FAIL, PASS, STATUSES, RunResults, counts, exit_code, score, write_json
from lab import qemu
from lab.common import ROOT, LabError
from lab.deploy import run_pyinfra

INVENTORY = ROOT / "inventories" / "lab.py"


def _step(title: str) -> float:
    print(f"\n==> {title}", flush=True)
    return time.monotonic()


def _verify(label: str, reports: Path, previous: RunResults | None = None) -> RunResults:
    """Verify the lab VM; write reports/<label>.xml, .json and .html (compared with ``previous``)."""
    import datetime as dt

    from hardline.benchmarks.engine import verify_hosts
    from hardline.inventory import load_hosts
    from hardline.report import write_html

    started_at = dt.datetime.now(dt.timezone.utc).astimezone().isoformat(timespec="seconds")
    started = time.monotonic()
    hosts = load_hosts(str(INVENTORY))
    results = verify_hosts(hosts)
    run = RunResults.new(results, started=started_at, duration=time.monotonic() - started,
                         inventory=str(INVENTORY),
                         hosts=[h.name for h in hosts], command=["python3", "-m", "lab", "demo"], label=label)
    write_junit(results, reports / f"{label}.xml", meta=run.meta)
    write_json(run, reports / f"{label}.json")
    write_html(run, reports / f"{label}.html", previous=previous)
    c = counts(results)
    print(f"    {label}: score {score(results).text()}  " + "  ".join(f"{s} {c[s]}" for s in STATUSES))
    for ext in ("xml", "json", "html"):
        path = reports / f"{label}.{ext}"
        print(f"    {path} ({path.stat().st_size} bytes)")
    return run


def demo(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m lab demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", default=str(ROOT / "reports"),
                        help="directory for the JUnit, JSON and HTML reports (default: %(default)s)")
    parser.add_argument("--reuse", action="store_true", help="reuse a running lab VM instead of a fresh one")
    parser.add_argument("--keep", action="store_true", help="leave the VM running at the end")
    args = parser.parse_args(argv)
    reports = Path(args.reports)
    times: dict[str, float] = {}
    t = _step("lab VM up" + ("" if args.reuse else " (fresh disks)"))
    try:
        qemu.up(fresh=not args.reuse)
    except LabError as err:
        print(f"hardline: {err}", file=sys.stderr)
        return 2
    times["lab up (build if needed + boot)"] = time.monotonic() - t
    try:
        t = _step("verify (baseline)")
        before_run = _verify("before", reports)
        before = before_run.results
        times["verify before"] = time.monotonic() - t
        changed2 = None
        for title, label in (("harden: pyinfra -y inventories/lab.py deploys/harden.py", "deploy"),
                             ("harden again (must change nothing)", "re-deploy")):
            t = _step(title)
            run = run_pyinfra(INVENTORY)
            times[label] = time.monotonic() - t
            if run.returncode != 0:
                print(run.stdout[-4000:])
                return 2
            changed2 = run.changed  # raises when pyinfra did not report its results
            print(f"    pyinfra exit {run.returncode}, {changed2} operations changed")
        t = _step("verify (after)")
        after_run = _verify("after", reports, previous=before_run)
        after = after_run.results
        times["verify after"] = time.monotonic() - t
    finally:
        if not args.keep:
            qemu.down()
    print("\n==> summary")
    for label, results in (("before", before), ("after", after)):
        scored = [r for r in results if r.control_id.split(".")[0] in ("1", "2", "3", "HL-1")]
        c = counts(scored)
        print(f"    sections 1-3 + HL {label:<6}: PASS {c[PASS]:>3}  FAIL {c[FAIL]:>3}  (of {len(scored)} items)")
    from hardline.results import compare

    diff = compare(before_run, after_run)
    print(f"    score {score(before).text()} -> {score(after).text()}: {len(diff.fixed)} fixed, "
          f"{len(diff.newly_failing)} newly failing, {len(diff.other)} other changes (see {reports / 'after.html'})")
    print(f"    second deploy changed {changed2} operations" + (" (idempotent)" if changed2 == 0 else " (NOT idempotent)"))
    for label, seconds in times.items():
        print(f"    {label:<32} {seconds:7.1f} s")
    if changed2:
        return 1
    return exit_code(after)
