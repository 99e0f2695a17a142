"""The self-contained HTML report: one file, no network, rendered with jinja2.

Template: ``templates/report/report.html.j2`` (CSS and vanilla JS inline). It shows the run's
metadata (when, hardline and benchmark versions, inventory sha256), the score overall, per
host and per section, filters by status, level, section and host, every control with its
evidence, remediation and waiver, the drift plan when the run is a drift run, and, given a
previous run, what changed since (newly failing, fixed, other changes, score deltas).

Example::

    from hardline.results import load_json
    from hardline.report import write_html
    write_html(load_json("reports/after.json"), "reports/after.html", previous=load_json("reports/before.json"))
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import jinja2

from hardline.paths import TEMPLATES
from hardline.results import (
    ERROR, FAIL, MANUAL, PASS, SKIP, STATUSES, WAIVED, Comparison, Result, RunResults, compare,
    control_sort_key, control_statuses, counts, host_scores, result_sort_key, score,
)

TEMPLATE_DIR = TEMPLATES / "report"


_id_key = control_sort_key


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
                             autoescape=jinja2.select_autoescape(["html", "j2"]),
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters["score"] = lambda s: "n/a" if s is None or s.value is None else f"{s.value:.1f}"
    env.filters["pct"] = lambda s: 0 if s is None or s.value is None else round(s.value, 1)
    return env


def section_id(r: Result) -> str:
    """A section across benchmarks: ``cis-docker 2`` (section numbers repeat between benchmarks)."""
    return f"{r.benchmark} {r.section}"


def _sections(results: list[Result]) -> list[dict[str, Any]]:
    """Per benchmark section (as numbered in its catalog, e.g. cis-docker 1.1): title, counts, score."""
    by_section: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        by_section.setdefault((r.benchmark, r.section), []).append(r)
    rows = []
    for benchmark, section in sorted(by_section, key=lambda k: (k[0] == "hardline-platform", k[0], _id_key(k[1]))):
        rs = by_section[(benchmark, section)]
        c = Counter(control_statuses(rs).values())
        rows.append({"id": section_id(rs[0]), "title": rs[0].section_title, "counts": c, "score": score(rs),
                     "controls": len({r.control_key for r in rs})})
    return rows


def context(run: RunResults, previous: RunResults | None = None, title: str | None = None) -> dict[str, Any]:
    results = sorted(run.results, key=result_sort_key)
    comparison: Comparison | None = compare(previous, run) if previous else None
    changed = {}
    if comparison:
        for kind, items in (("newly-failing", comparison.newly_failing), ("fixed", comparison.fixed),
                            ("changed", comparison.other)):
            for ch in items:
                changed[ch.key] = (kind, ch.before)
    benchmark = run.meta.get("benchmark") or {}
    hosts = host_scores(results)
    host_counts = {h: Counter(s for (hh, _), s in control_statuses(results).items() if hh == h) for h in hosts}
    waivers = [r for r in results if r.waiver]
    return {
        "title": title or f"hardline report: {benchmark.get('title', '')} {benchmark.get('version', '')}".strip(),
        "meta": run.meta, "benchmark": benchmark, "results": results, "statuses": STATUSES,
        "overall": score(results), "hosts": hosts, "host_counts": host_counts,
        "subject_counts": counts(results), "control_counts": Counter(control_statuses(results).values()),
        "sections": _sections(results), "levels": sorted({r.level for r in results}),
        "waivers": waivers, "comparison": comparison, "changed": changed, "previous": previous,
        "drift": run.meta.get("drift"), "runs": run.meta.get("runs") or [],
        "PASS": PASS, "FAIL": FAIL, "ERROR": ERROR, "WAIVED": WAIVED,
    }


def render_html(run: RunResults, previous: RunResults | None = None, title: str | None = None) -> str:
    return _environment().get_template("report.html.j2").render(**context(run, previous, title))


def write_html(run: RunResults, path: str | Path, previous: RunResults | None = None, title: str | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(run, previous, title), encoding="utf-8")
    return path
