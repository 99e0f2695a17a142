"""The per-result data of the HTML report as one compact JSON document embedded in the page.

A fleet run has tens of thousands of results (50 hosts x 20 containers x the per-container
controls); one server-rendered table row each made a 30 MB page a browser needs many seconds to
lay out. The report's script renders a host's controls from this document when the host is
opened (and only then), grouped by control, with identical outcomes of several subjects shown
once. The document repeats nothing: each control's metadata once, every text once (results
point at them by index), results as arrays::

    {"statuses": [...], "hosts": [...], "controls": [[key, id, benchmark, version, slug, title,
     section, section_title, level, automated, remediation], ...], "strings": ["", ...],
     "waivers": [{reason, approved_by, expires, expired, underlying_status}, ...],
     "results": [[host, control, status, subject, expected, found, evidence, differs, waiver,
                  change, before, duration], ...]}

host, control, status, waiver and before are indexes (-1: none; before -1 with a change: the
result was not in the previous run); subject, expected, found, evidence (its lines joined with
newlines) and differs index ``strings`` (0 is ""); change is 0 (none), 1 newly failing, 2 fixed,
3 another status change. Results come sorted by host, control and subject.
"""

from __future__ import annotations

import json
from typing import Any

from hardline.results import STATUSES, Result

CHANGES = ("", "newly-failing", "fixed", "changed")


class _Interned:
    def __init__(self) -> None:
        self.items: list[Any] = []
        self.index: dict[Any, int] = {}

    def __call__(self, value: Any) -> int:
        key = json.dumps(value, sort_keys=True) if isinstance(value, dict) else value
        found = self.index.get(key)
        if found is None:
            found = self.index[key] = len(self.items)
            self.items.append(value)
        return found


def build(results: list[Result], hosts: list[str], changed: dict[tuple[str, str, str], tuple[str, str | None]]) -> dict:
    """The document for ``results`` (already sorted); ``changed``: key -> (change kind, status before)."""
    strings, controls, waivers = _Interned(), _Interned(), _Interned()
    strings("")
    host_index = {h: i for i, h in enumerate(hosts)}
    status_index = {s: i for i, s in enumerate(STATUSES)}
    control_rows: dict[str, list] = {}
    rows = []
    for r in results:
        key = r.control_key
        if key not in control_rows:
            control_rows[key] = [key, r.control_id, r.benchmark, r.benchmark_version, r.slug, r.title, r.section,
                                 r.section_title, r.level, r.automated, r.remediation]
        kind, before = changed.get(r.key, ("", None))
        rows.append([host_index[r.host], controls(key), status_index[r.status], strings(r.subject), strings(r.expected),
                     strings(r.found), strings("\n".join(r.evidence)), strings(r.differs),
                     waivers(r.waiver) if r.waiver else -1, CHANGES.index(kind),
                     status_index[before] if before else -1, round(r.duration, 4)])
    return {"statuses": list(STATUSES), "hosts": hosts, "controls": [control_rows[k] for k in controls.items],
            "strings": strings.items, "waivers": waivers.items, "results": rows}


def dumps(document: dict) -> str:
    """JSON safe inside <script type="application/json">: no "<" can close the element or open a
    comment (it only occurs inside strings, where \\u003c means the same)."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c")


def loads(html: str) -> dict:
    """The document embedded in a rendered report (for tests and tools that read reports)."""
    start = html.index('<script type="application/json" id="report-data">') + len(
        '<script type="application/json" id="report-data">')
    return json.loads(html[start:html.index("</script>", start)])


def expand(document: dict) -> list[dict[str, Any]]:
    """The embedded results as one dict each (host, control key, status, subject, texts, waiver,
    change, before), e.g. to check a report holds every result of its run."""
    s, statuses = document["strings"], document["statuses"]
    out = []
    for h, c, st, subj, exp, found, ev, diff, w, ch, before, duration in document["results"]:
        control = document["controls"][c]
        out.append({"host": document["hosts"][h], "control": control[0], "control_id": control[1], "status": statuses[st],
                    "subject": s[subj], "expected": s[exp], "found": s[found], "evidence": s[ev].split("\n") if s[ev] else [],
                    "differs": s[diff], "waiver": document["waivers"][w] if w >= 0 else None, "change": CHANGES[ch],
                    "before": statuses[before] if before >= 0 else None, "duration": duration})
    return out
