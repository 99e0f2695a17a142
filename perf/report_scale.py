#!/usr/bin/env python3
"""Reports of a fleet: the HTML, JSON and JUnit of 10 and 50 hosts x 20 containers, measured in
one run: generation time and size of each, the HTML's load time in Debian's headless Chromium
(navigation start to the end of the load event, as the page measures it) and the time to open
every host, and the ratios (50 vs 10 hosts; HTML vs JSON; hardline's JUnit writer vs junit-xml's
own whole-document serializer).

    python3 perf/report_scale.py                       # 10 and 50 hosts, 20 containers each
    python3 perf/report_scale.py --hosts 50 --containers 100 --keep reports/

The results are SYNTHESIZED (tests/support/report_fleet.py: real verify results of test
daemons spread over the hosts): this measures the reports, not verification. Nothing is
asserted: the machine may be shared, compare the ratios.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from junit_xml import to_xml_report_string  # noqa: E402

from hardline.junit import result_suites, write_junit  # noqa: E402
from hardline.report import write_html  # noqa: E402
from hardline.results import write_json  # noqa: E402
from tests.support.browser import chromium, chromium_binary  # noqa: E402
from tests.support.report_fleet import fleet_runs  # noqa: E402


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - started, value


def measure(hosts: int, containers: int, out: Path, junit_xml: bool) -> dict[str, float]:
    before, after = fleet_runs(hosts=hosts, containers=containers)
    figures: dict[str, float] = {"results": len(after.results)}
    figures["html_s"], html = timed(write_html, after, out / f"fleet-{hosts}.html", previous=before)
    figures["json_s"], json_path = timed(write_json, after, out / f"fleet-{hosts}.json")
    figures["junit_s"], junit = timed(write_junit, after.results, out / f"fleet-{hosts}.xml", meta=after.meta)
    for name, path in (("html", html), ("json", json_path), ("junit", junit)):
        figures[f"{name}_mb"] = path.stat().st_size / 1e6
    if junit_xml:  # junit-xml's own writer, the same suites (not pretty-printed: minidom is far slower)
        figures["junit_xml_s"], _ = timed(lambda: to_xml_report_string(result_suites(after.results, after.meta),
                                                                       prettyprint=False))
    return figures


def browser(paths: dict[int, Path]) -> dict[int, tuple[float, float, int]]:
    """Per report: load time, time to open every host (drawn), elements then."""
    binary = chromium_binary()
    if not binary:
        print("chromium not installed (scripts/setup.sh installs it): no browser figures")
        return {}
    found = {}
    with chromium(binary) as cdp:
        for hosts, path in paths.items():
            load = cdp.load(path.as_uri())
            opened = cdp.js("new Promise(done => { const t = performance.now();"
                            " document.getElementById('expand-all').click();"
                            " setTimeout(() => { document.body.offsetHeight; done(performance.now() - t); }, 0); })") / 1000
            found[hosts] = (load, opened, cdp.js("document.getElementsByTagName('*').length"))
        problems = cdp.problems()
        if problems:
            print(f"browser problems: {problems[:3]}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", default="10,50", help="host counts, comma separated (default 10,50)")
    parser.add_argument("--containers", type=int, default=20)
    parser.add_argument("--keep", metavar="DIR", help="keep the reports in DIR")
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    counts = [int(n) for n in args.hosts.split(",")]
    with tempfile.TemporaryDirectory(prefix="hl-report-scale-") as tmp:
        out = Path(args.keep or tmp)
        out.mkdir(parents=True, exist_ok=True)
        rows = {n: measure(n, args.containers, out, junit_xml=n == max(counts)) for n in counts}
        loads = {} if args.no_browser else browser({n: out / f"fleet-{n}.html" for n in counts})
        print(f"reports of a synthesized fleet, {args.containers} containers per host")
        print(f"{'hosts':>6} {'results':>8} | {'HTML s':>7} {'MB':>6} | {'JSON s':>7} {'MB':>6} | {'JUnit s':>7} {'MB':>6}"
              f" | {'load s':>6} {'open all s':>10} {'elements':>9}")
        for n, f in rows.items():
            load = loads.get(n)
            shown = f"{load[0]:6.2f} {load[1]:10.2f} {load[2]:9d}" if load else f"{'-':>6} {'-':>10} {'-':>9}"
            print(f"{n:6d} {f['results']:8.0f} | {f['html_s']:7.2f} {f['html_mb']:6.2f} | {f['json_s']:7.2f} "
                  f"{f['json_mb']:6.2f} | {f['junit_s']:7.2f} {f['junit_mb']:6.2f} | {shown}")
        big, small = max(counts), min(counts)
        f = rows[big]
        print(f"HTML bytes per result ({big} hosts): {f['html_mb'] * 1e6 / f['results']:.0f};"
              f" HTML / JSON size: {f['html_mb'] / f['json_mb']:.3f}; HTML / JSON time: {f['html_s'] / f['json_s']:.2f}")
        if big != small:
            s = rows[small]
            print(f"{big} vs {small} hosts: results x{f['results'] / s['results']:.2f}, HTML time x{f['html_s'] / s['html_s']:.2f},"
                  f" HTML size x{f['html_mb'] / s['html_mb']:.2f}"
                  + (f", load x{loads[big][0] / loads[small][0]:.2f}" if big in loads and small in loads else ""))
        print(f"JUnit ({big} hosts): hardline.junit {f['junit_s']:.2f} s written;"
              f" junit-xml's to_xml_report_string {f['junit_xml_s']:.2f} s to a string only"
              f" (ratio {f['junit_s'] / f['junit_xml_s']:.2f})")
        if args.keep:
            print(f"reports kept in {out}")


if __name__ == "__main__":
    main()
