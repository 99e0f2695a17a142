"""The main job on the built-in lab: `hardline lab demo`.

Boots a fresh lab VM, verifies it (baseline), hardens it with pyinfra, hardens it again (which
must change nothing), verifies again, and writes the JUnit reports; prints before/after counts
and the time of every step. Reports for before and after: JUnit XML, JSON results and a
self-contained HTML report (``reports/{before,after}.{xml,json,html}``); after.html shows what
changed since before. Exit code: that of the final verify (0 when everything passes).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

from hardline.junit import write_junit
from hardline.results import FAIL, PASS, STATUSES, RunResults, counts, exit_code, score, write_json

ROOT = Path(__file__).resolve().parent.parent
INVENTORY = ROOT / "inventories" / "lab.py"


def _step(title: str) -> float:
    print(f"\n==> {title}", flush=True)
    return time.monotonic()


def deploy(inventory: Path, dry: bool = False) -> tuple[int, int, str]:
    """Run pyinfra; returns (exit code, number of changed operations, output)."""
    # no -y with --dry: pyinfra skips change detection when both are given
    cmd = ["pyinfra", str(inventory), "deploys/harden.py", "--dry"] if dry else ["pyinfra", "-y", str(inventory), "deploys/harden.py"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    return proc.returncode, changed_operations(output), output


def changed_operations(output: str) -> int:
    """Sum of the "Success" column (operations that changed something) of pyinfra's results table."""
    _, _, table = output.partition("--> Results:")
    lines = [line for line in table.splitlines() if line.strip()]
    if not lines:
        return -1  # no results table: the run did not get that far
    header = re.split(r"\s{2,}", lines[0].strip())
    column = header.index("Success") if "Success" in header else None
    changed = 0
    for line in lines[1:]:
        cells = re.split(r"\s{2,}", line.strip())
        if column is None or len(cells) != len(header) or cells[0] == "Grand total":
            continue
        changed += int(cells[column]) if cells[column].isdigit() else 0
    return changed


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
                         hosts=[h.name for h in hosts], command=["hardline", "lab", "demo"], label=label)
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
    parser = argparse.ArgumentParser(prog="hardline lab demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", default=str(ROOT / "reports"),
                        help="directory for the JUnit, JSON and HTML reports (default: %(default)s)")
    parser.add_argument("--reuse", action="store_true", help="reuse a running lab VM instead of a fresh one")
    parser.add_argument("--keep", action="store_true", help="leave the VM running at the end")
    args = parser.parse_args(argv)
    from hardline import lab

    reports = Path(args.reports)
    times: dict[str, float] = {}
    t = _step("lab VM up" + ("" if args.reuse else " (fresh disks)"))
    try:
        lab.up(fresh=not args.reuse)
    except lab.LabError as err:
        print(f"hardline: {err}", file=sys.stderr)
        return 2
    times["lab up (build if needed + boot)"] = time.monotonic() - t
    try:
        t = _step("verify (baseline)")
        before_run = _verify("before", reports)
        before = before_run.results
        times["verify before"] = time.monotonic() - t
        t = _step("harden: pyinfra -y inventories/lab.py deploys/harden.py")
        rc, changed, out = deploy(INVENTORY)
        times["deploy"] = time.monotonic() - t
        print(f"    pyinfra exit {rc}, {changed} operations changed")
        if rc != 0:
            print(out[-4000:])
            return 2
        t = _step("harden again (must change nothing)")
        rc2, changed2, out2 = deploy(INVENTORY)
        times["re-deploy"] = time.monotonic() - t
        print(f"    pyinfra exit {rc2}, {changed2} operations changed")
        t = _step("verify (after)")
        after_run = _verify("after", reports, previous=before_run)
        after = after_run.results
        times["verify after"] = time.monotonic() - t
    finally:
        if not args.keep:
            lab.down()
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
    if changed2 or rc2:
        return 1
    return exit_code(after)
