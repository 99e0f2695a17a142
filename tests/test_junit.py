"""The one JUnit writer (hardline/junit.py, through junit-xml): testcase properties that
junit-xml 1.9 does not write by itself, the status mapping, characters XML cannot carry, and
drift's suite in the same document as the controls' suites."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from junit_xml import TestCase as JunitXmlCase

from hardline.drift import Drift, Plan, junit_drift_suite
from hardline.junit import PropertyTestCase, PropertyTestSuite, write, write_junit
from hardline.results import ERROR, FAIL, MANUAL, PASS, SKIP, WAIVED, Result


def res(host: str, cid: str, status: str, subject: str = "", **kw) -> Result:
    return Result(host=host, benchmark="cis-docker", benchmark_version="1.6.0", control_id=cid, slug=f"slug_{cid}",
                  title=f"title {cid}", section=cid.split(".")[0], section_title="s", level=2, automated=True,
                  status=status, subject=subject, **kw)


def props(element) -> dict[str, str]:
    holder = element.find("properties")
    return {p.get("name"): p.get("value") for p in holder} if holder is not None else {}


def test_every_testcase_carries_its_properties_first(tmp_path):
    results = [res("web-1", "2.2", PASS, duration=0.25), res("web-1", "5.4", FAIL, "container api (nginx) 0123456789ab",
                                                              expected="not privileged", found="Privileged = true",
                                                              remediation="drop --privileged"),
               res("db-1", "2.2", ERROR, found="host could not be verified: timeout")]
    meta = {"id": "run1", "hardline_version": "0.1.0", "inventory": {"sha256": "ab" * 32}}
    root = ET.parse(write_junit(results, tmp_path / "r.xml", meta=meta)).getroot()
    assert root.tag == "testsuites" and root.get("name") == "hardline"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("3", "1", "1")
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["cis-docker 1.6.0 on web-1", "cis-docker 1.6.0 on db-1"]
    assert props(suites[0]) == {"run_id": "run1", "hardline_version": "0.1.0", "inventory_sha256": "ab" * 32,
                                "benchmark": "cis-docker", "benchmark_version": "1.6.0", "score": "50.0",
                                "host_score": "50.0"}
    assert suites[0].get("hostname") == "web-1"
    cases = suites[0].findall("testcase")
    assert [c[0].tag for c in cases] == ["properties", "properties"]  # the JUnit schema's place for them
    assert props(cases[1]) == {"benchmark": "cis-docker", "benchmark_version": "1.6.0", "cis_id": "5.4",
                               "control": "cis-docker:1.6.0:5.4", "slug": "slug_5.4", "level": "2",
                               "automated": "true", "section": "5", "host": "web-1", "status": "FAIL",
                               "subject": "container api (nginx) 0123456789ab"}
    assert "subject" not in props(cases[0]) and cases[0].get("time") == "0.250000"
    failure = cases[1].find("failure")
    assert failure.get("type") == "FAIL" and failure.get("message") == "Privileged = true"
    assert failure.text == "expected: not privileged\nfound: Privileged = true\nremediation: drop --privileged"
    assert suites[1].find("testcase/error").get("message") == "host could not be verified: timeout"


def test_skip_manual_waived_are_skipped_with_the_reason(tmp_path):
    waiver = {"reason": "r", "approved_by": "a", "expires": None, "expired": False, "underlying_status": FAIL}
    results = [res("a", "1", SKIP, found="no TCP listener, nothing to judge"), res("a", "2", MANUAL, found="review it"),
               res("a", "3", WAIVED, waiver=waiver, found="icc = true")]
    root = ET.parse(write_junit(results, tmp_path / "r.xml")).getroot()
    cases = root.findall("testsuite/testcase")
    assert [c.find("skipped").get("message") for c in cases] == [
        "SKIP: found: no TCP listener, nothing to judge", "MANUAL: found: review it", "WAIVED: found: icc = true"]
    assert cases[0].find("system-out").text == "found: no TCP listener, nothing to judge"
    assert root.find("testsuite").get("skipped") == "3"


def test_characters_xml_cannot_carry_are_dropped_not_fatal(tmp_path):
    """Evidence read from a host may hold terminal escapes; ElementTree would write them raw and
    the file would be unreadable to every CI server."""
    path = write_junit([res("a", "1", FAIL, found="\x1b[31mred\x1b[0m \x00nul")], tmp_path / "r.xml")
    failure = ET.parse(path).getroot().find("testsuite/testcase/failure")
    assert failure.get("message") == "[31mred[0m nul"


def test_drift_suite_is_written_by_the_same_writer(tmp_path):
    plan = Plan(["a", "b", "c"], ["a", "b"], {"a": ["files.file marker"], "b": []}, {"a": [], "b": []},
                output="ssh: connect to host c port 22: Connection refused")
    drift = Drift(plan, [res("a", "1", PASS), res("b", "1", PASS)], ["a", "b", "c"])
    root = ET.parse(write_junit(drift.results, tmp_path / "d.xml", extra=[junit_drift_suite(drift)])).getroot()
    suite = root.findall("testsuite")[-1]
    assert suite.get("name") == "drift (pyinfra dry run)"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "1")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert cases["deploy would change nothing on a"].find("failure").text == "files.file marker"
    assert cases["deploy would change nothing on b"].find("failure") is None
    assert "Connection refused" in cases["deploy would change nothing on c"].find("error").text
    assert root.get("tests") == "5"  # the totals count drift's testcases too


def test_property_suite_takes_plain_junit_xml_cases(tmp_path):
    suite = PropertyTestSuite("mixed", [JunitXmlCase("plain"), PropertyTestCase("with", {"k": "v <&>"})])
    root = ET.parse(write(tmp_path / "m.xml", [suite], name="x")).getroot()
    plain, with_props = root.findall("testsuite/testcase")
    assert plain.find("properties") is None and props(with_props) == {"k": "v <&>"}
