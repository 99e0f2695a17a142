"""hardline's one JUnit XML writer (verify, report, drift, the lab), built with junit-xml.

Mapping: one <testsuite> per (host, benchmark version), one <testcase> per result (host,
control, subject). PASS -> passed testcase, FAIL -> <failure> (expected vs found and the
remediation), ERROR -> <error>, SKIP/MANUAL/WAIVED -> <skipped> with the reason; the evidence of
a result that is not a failure or error goes to <system-out>. Suite properties: run_id,
hardline_version, inventory_sha256, benchmark, benchmark_version, score (of the suite), host_score.
Testcase properties, which Jenkins and GitLab show per test and auditors filter on: benchmark,
benchmark_version, cis_id, control (``benchmark:version:id``), slug, level, automated, section,
host, status and, for a result about one subject, subject. ``hardline drift`` adds its "drift"
suite (``hardline.drift.junit_drift_suite``) to the same document through ``write``.

junit-xml 1.9 writes properties on a suite only. ``PropertyTestSuite`` keeps its document and
adds each ``PropertyTestCase``'s properties as the first child of that case's <testcase>
(where the JUnit schema Jenkins and GitLab read puts them). Characters XML 1.0 cannot carry are
dropped (a container's output with terminal escapes would otherwise make the whole file
unreadable to a CI server).
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from junit_xml import TestCase, TestSuite

from hardline.results import ERROR, FAIL, MANUAL, SKIP, WAIVED, Result, host_scores, score

NOT_RUN = (SKIP, MANUAL, WAIVED)


class PropertyTestCase(TestCase):
    """A junit-xml TestCase with testcase properties (name -> value, in order)."""

    def __init__(self, name: str, properties: dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(name, **kwargs)
        self.properties = dict(properties or {})


class PropertyTestSuite(TestSuite):
    """A junit-xml TestSuite whose <testcase> elements carry their PropertyTestCase's properties."""

    def build_xml_doc(self, encoding: str | None = None) -> ET.Element:
        element = super().build_xml_doc(encoding)
        # junit-xml appends one <testcase> per test case, in order
        for case, case_element in zip(self.test_cases, element.findall("testcase"), strict=True):
            properties = getattr(case, "properties", None)
            if properties:
                holder = ET.Element("properties")
                for name, value in properties.items():
                    ET.SubElement(holder, "property", name=str(name), value=str(value))
                case_element.insert(0, holder)
        return element


def result_case(r: Result) -> PropertyTestCase:
    """The testcase of one result (see the module docstring for the mapping)."""
    properties = {"benchmark": r.benchmark, "benchmark_version": r.benchmark_version, "cis_id": r.control_id,
                  "control": r.control_key, "slug": r.slug, "level": r.level,
                  "automated": str(r.automated).lower(), "section": r.section, "host": r.host, "status": r.status}
    if r.subject:
        properties["subject"] = r.subject
    case = PropertyTestCase(r.name, properties, classname=f"{r.benchmark}-{r.benchmark_version}.{r.host}.section-{r.section}",
                            elapsed_sec=r.duration)
    if r.status == FAIL:
        case.add_failure_info((r.found or "failed")[:500],
                              r.message + (f"\nremediation: {r.remediation}" if r.remediation else ""), "FAIL")
    elif r.status == ERROR:
        case.add_error_info((r.found or "error")[:500], r.message, "ERROR")
    elif r.status in NOT_RUN:
        case.add_skipped_info(f"{r.status}: {r.message}"[:1000])
    if r.message and r.status not in (FAIL, ERROR):
        case.stdout = r.message
    return case


def result_suites(results: list[Result], meta: dict[str, Any] | None = None) -> list[TestSuite]:
    """One suite per (host, benchmark version), in the order the results come."""
    run_props: dict[str, Any] = {}
    if meta:
        run_props = {"run_id": meta.get("id"), "hardline_version": meta.get("hardline_version"),
                     "inventory_sha256": (meta.get("inventory") or {}).get("sha256")}
    host_score = host_scores(results)
    by_suite: dict[tuple[str, str, str], list[Result]] = {}
    for r in results:
        by_suite.setdefault((r.host, r.benchmark, r.benchmark_version), []).append(r)
    timestamp = dt.datetime.now().isoformat(timespec="seconds")
    suites: list[TestSuite] = []
    for (host, benchmark, version), rs in by_suite.items():
        props = {**run_props, "benchmark": benchmark, "benchmark_version": version,
                 "score": score(rs).text(), "host_score": host_score[host].text()}
        suites.append(PropertyTestSuite(f"{benchmark} {version} on {host}", [result_case(r) for r in rs],
                                        hostname=host, timestamp=timestamp,
                                        properties={k: v for k, v in props.items() if v is not None}))
    return suites


# characters XML 1.0 cannot carry (tab, newline and carriage return can), and the C1 controls
# and non-characters junit-xml also drops
ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufdd0-\ufddf\ufffe\uffff]")


def document(suites: Iterable[TestSuite], name: str = "hardline") -> ET.Element:
    """<testsuites name=...> with junit-xml's <testsuite> elements and their totals, as
    junit-xml's ``to_xml_report_string`` sums them. That function is not used: it returns one
    string without the root's name, to be parsed again to indent it (or pretty-printed with
    minidom, slower still); at 50 hosts x 20 containers it alone takes as long as this whole
    write or longer (perf/report_scale.py prints both)."""
    root = ET.Element("testsuites", name=name)
    totals = {"disabled": 0, "errors": 0, "failures": 0, "tests": 0}
    time = 0.0
    for suite in suites:
        element = suite.build_xml_doc()
        for key in totals:
            totals[key] += int(element.get(key, 0))
        time += float(element.get("time", 0))
        root.append(element)
    for key, total in totals.items():
        root.set(key, str(total))
    root.set("time", str(time))
    for element in root.iter():  # a host's output may carry terminal escapes: drop, never fail
        if element.text and ILLEGAL_XML.search(element.text):
            element.text = ILLEGAL_XML.sub("", element.text)
        for key, value in element.attrib.items():
            if ILLEGAL_XML.search(value):
                element.set(key, ILLEGAL_XML.sub("", value))
    return root


def write(path: str | Path, suites: Iterable[TestSuite], name: str = "hardline") -> Path:
    """Write suites as one JUnit document (indented, UTF-8)."""
    root = document(suites, name)
    ET.indent(root)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path


def write_junit(results: list[Result], path: str | Path, suite_name: str = "hardline",
                meta: dict[str, Any] | None = None, extra: Iterable[TestSuite] = ()) -> Path:
    """Write the results (plus ``extra`` suites, e.g. drift's) as JUnit XML."""
    return write(path, [*result_suites(results, meta), *extra], suite_name)
