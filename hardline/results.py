"""The result model of a verification run and its JUnit XML form.

One Result per (host, control). Status is one of PASS, FAIL, ERROR, SKIP, MANUAL, WAIVED.
JUnit mapping: PASS -> passed testcase, FAIL -> <failure> (expected vs found), ERROR -> <error>,
SKIP/MANUAL/WAIVED -> <skipped> with the reason. Every testcase carries the properties
cis_id, slug, level, automated, section, host and status.

Exit codes: 0 every control passed (or was skipped, manual or waived), 1 some failed,
2 some could not be verified (errors win over failures: an unverified host is worse than a
known failure).
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

PASS, FAIL, ERROR, SKIP, MANUAL, WAIVED = "PASS", "FAIL", "ERROR", "SKIP", "MANUAL", "WAIVED"
STATUSES = (PASS, FAIL, ERROR, SKIP, MANUAL, WAIVED)
EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2


@dataclass
class Verdict:
    """What a check found: the status and the evidence an auditor reads."""

    status: str
    expected: str = ""
    found: str = ""
    evidence: list[str] = field(default_factory=list)
    subject: str = ""  # what the verdict is about when a control has several (e.g. "container web (nginx:1.25)")

    @property
    def message(self) -> str:
        parts = []
        if self.expected:
            parts.append(f"expected: {self.expected}")
        if self.found:
            parts.append(f"found: {self.found}")
        parts += self.evidence
        return "\n".join(parts)


@dataclass
class Result:
    host: str
    benchmark: str
    control_id: str
    slug: str
    title: str
    section: str
    section_title: str
    level: int
    automated: bool
    status: str
    expected: str = ""
    found: str = ""
    evidence: list[str] = field(default_factory=list)
    remediation: str = ""
    waiver: dict | None = None
    duration: float = 0.0
    subject: str = ""

    @property
    def name(self) -> str:
        return f"{self.control_id} {self.title}" + (f" [{self.subject}]" if self.subject else "")

    @property
    def message(self) -> str:
        return Verdict(self.status, self.expected, self.found, self.evidence).message

    def to_dict(self) -> dict:
        return asdict(self)


def exit_code(results: list[Result]) -> int:
    statuses = {r.status for r in results}
    if ERROR in statuses:
        return EXIT_ERROR
    if FAIL in statuses:
        return EXIT_FAILED
    return EXIT_OK


def counts(results: list[Result]) -> Counter:
    return Counter(r.status for r in results)


def write_junit(results: list[Result], path: str | Path, suite_name: str = "hardline") -> Path:
    """Write JUnit XML: one <testsuite> per host, one <testcase> per control.

    junit-xml (the package) cannot attach properties to a testcase, which Jenkins and GitLab
    show per test, so the XML is built with ElementTree.
    """
    root = ET.Element("testsuites", name=suite_name)
    by_host: dict[str, list[Result]] = {}
    for r in results:
        by_host.setdefault(r.host, []).append(r)
    for host, host_results in by_host.items():
        c = counts(host_results)
        suite = ET.SubElement(
            root, "testsuite", name=f"{host_results[0].benchmark} on {host}", tests=str(len(host_results)),
            failures=str(c[FAIL]), errors=str(c[ERROR]), skipped=str(c[SKIP] + c[MANUAL] + c[WAIVED]),
            time=f"{sum(r.duration for r in host_results):.3f}", timestamp=dt.datetime.now().isoformat(timespec="seconds"),
            hostname=host,
        )
        for r in host_results:
            case = ET.SubElement(suite, "testcase", name=r.name,
                                 classname=f"{r.benchmark}.{host}.section-{r.section}", time=f"{r.duration:.3f}")
            props = ET.SubElement(case, "properties")
            for key, value in (("cis_id", r.control_id), ("slug", r.slug), ("level", r.level),
                               ("automated", str(r.automated).lower()), ("section", r.section),
                               ("host", host), ("status", r.status)) + ((("subject", r.subject),) if r.subject else ()):
                ET.SubElement(props, "property", name=key, value=str(value))
            if r.status == FAIL:
                ET.SubElement(case, "failure", message=(r.found or "failed")[:500], type="FAIL").text = \
                    r.message + (f"\nremediation: {r.remediation}" if r.remediation else "")
            elif r.status == ERROR:
                ET.SubElement(case, "error", message=(r.found or "error")[:500], type="ERROR").text = r.message
            elif r.status in (SKIP, MANUAL, WAIVED):
                ET.SubElement(case, "skipped", message=f"{r.status}: {r.message}"[:1000])
            if r.message and r.status not in (FAIL, ERROR):
                ET.SubElement(case, "system-out").text = r.message
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path
