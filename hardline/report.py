"""The self-contained HTML report: one file, no network, rendered with jinja2.

Template: ``templates/report/report.html.j2`` (its CSS and vanilla JS are included from
``report.css.j2`` and ``report.js.j2``). Built to stay usable for a fleet (50 hosts x 20
containers is about 33,000 results):

- fleet view first, rendered here: the run's metadata and scores; a matrix of hosts x benchmark
  sections with the score of each cell (a host links to its details); the worst controls across
  the fleet (on how many hosts each fails or could not be verified); the score per section;
- then, when present, the drift plan, what changed since a previous run (grouped per host and
  control, the longest lists cut with the count of the rest), the waivers (per host and control,
  with the number of subjects) and the runs merged into this report;
- then the details per host: every result is in one JSON document embedded in the page
  (``hardline.report_data``) and the script renders a host's controls when the host is opened,
  grouped by control, the subjects of a control (containers, images) grouped by identical
  outcome, each with its evidence, "differs from inventory" note, waiver and remediation. The
  filters (status, level, benchmark section, host, text, changed since the previous run, and a
  control picked in the worst-controls table) apply to every result of every host.

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

from hardline import report_data
from hardline.paths import TEMPLATES
from hardline.results import (
    ERROR,
    FAIL,
    PASS,
    STATUSES,
    WAIVED,
    Comparison,
    Result,
    RunResults,
    Score,
    compare,
    control_sort_key,
    control_statuses,
    counts,
    fold,
    result_sort_key,
    score,
)

TEMPLATE_DIR = TEMPLATES / "report"
WORST_SHOWN = 20  # worst controls listed before "show all"
CHANGES_SHOWN = 200  # rows per table of changes; the rest are counted (the filter finds them)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
                             autoescape=jinja2.select_autoescape(["html", "j2"]),
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters["score"] = lambda s: "n/a" if s is None or s.value is None else f"{s.value:.1f}"
    env.filters["pct"] = lambda s: 0 if s is None or s.value is None else round(s.value, 1)
    # a cell's colour: red (0) through amber to green (100); grey when nothing was scored
    env.filters["hue"] = lambda s: 0 if s is None or s.value is None else round(s.value * 1.2)
    return env


def section_id(r: Result) -> str:
    """A section across benchmarks: ``cis-docker 2`` (section numbers repeat between benchmarks)."""
    return f"{r.benchmark} {r.section}"


def _section_order(key: tuple[str, str]) -> tuple:
    benchmark, section = key
    return (benchmark == "hardline-platform", benchmark, control_sort_key(section))


def _sections(results: list[Result]) -> list[dict[str, Any]]:
    """Per benchmark section (as numbered in its catalog, e.g. cis-docker 1.1): title, counts, score."""
    by_section: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        by_section.setdefault((r.benchmark, r.section), []).append(r)
    rows = []
    for key in sorted(by_section, key=_section_order):
        rs = by_section[key]
        c = Counter(control_statuses(rs).values())
        rows.append({"id": section_id(rs[0]), "benchmark": key[0], "section": key[1], "title": rs[0].section_title,
                     "counts": c, "score": score(rs), "controls": len({r.control_key for r in rs})})
    return rows


def _matrix(results: list[Result], sections: list[dict[str, Any]]) -> dict[str, Any]:
    """Hosts x sections: each cell's score and control counts; column groups per benchmark."""
    cells: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        cells.setdefault((r.host, section_id(r)), []).append(r)
    groups: list[dict[str, Any]] = []
    for sec in sections:
        if not groups or groups[-1]["benchmark"] != sec["benchmark"]:
            groups.append({"benchmark": sec["benchmark"], "span": 0})
        groups[-1]["span"] += 1
    scores = {key: (score(rs), Counter(control_statuses(rs).values())) for key, rs in cells.items()}
    return {"groups": groups, "cells": scores}


def _worst(results: list[Result], statuses: dict[tuple[str, str], str]) -> list[dict[str, Any]]:
    """Controls that fail or could not be verified somewhere, the most widespread first: hosts
    failing, hosts in error, subjects not passing, hosts that have the control."""
    per: dict[str, dict[str, Any]] = {}
    for (host, key), status in statuses.items():
        row = per.setdefault(key, {"key": key, "hosts": 0, FAIL: [], ERROR: [], "subjects": 0})
        row["hosts"] += 1
        if status in (FAIL, ERROR):
            row[status].append(host)
    first: dict[str, Result] = {}
    for r in results:
        first.setdefault(r.control_key, r)
        if r.status in (FAIL, ERROR):
            per[r.control_key]["subjects"] += 1
    rows = [dict(row, result=first[key]) for key, row in per.items() if row[FAIL] or row[ERROR]]
    return sorted(rows, key=lambda w: (-len(w[FAIL]) - len(w[ERROR]), -len(w[FAIL]), -w["subjects"],
                                       control_sort_key(w["key"])))


def _grouped_changes(items: list) -> list[dict[str, Any]]:
    """Changes per (host, control): subjects together, in the comparison's order."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for ch in items:
        r = ch.result or ch.previous
        g = groups.setdefault((ch.key[0], ch.key[1]), {"host": ch.key[0], "key": ch.key[1], "title": r.title,
                                                      "before": set(), "after": set(), "subjects": []})
        g["before"].add(ch.before)
        g["after"].add(ch.after)
        if ch.key[2]:
            g["subjects"].append(ch.key[2])
    return [dict(g, before=_fold_or_none(g["before"]), after=_fold_or_none(g["after"])) for g in groups.values()]


def _fold_or_none(statuses: set[str | None]) -> str | None:
    present = {s for s in statuses if s}
    return fold(present) if present else None


def _waivers(results: list[Result]) -> list[dict[str, Any]]:
    """Waivers per (host, control, waiver): subjects counted, the control's status folded."""
    groups: dict[tuple, dict[str, Any]] = {}
    for r in results:
        if r.waiver:
            w = r.waiver
            key = (r.host, r.control_key, w.get("reason"), w.get("approved_by"), w.get("expires"), w.get("expired"))
            g = groups.setdefault(key, {"host": r.host, "result": r, "waiver": w, "statuses": set(), "subjects": 0})
            g["statuses"].add(r.status)
            g["subjects"] += 1 if r.subject else 0
    return [dict(g, status=fold(g["statuses"])) for g in groups.values()]


def context(run: RunResults, previous: RunResults | None = None, title: str | None = None) -> dict[str, Any]:
    results = sorted(run.results, key=result_sort_key)
    comparison: Comparison | None = compare(previous, run) if previous else None
    changed: dict[tuple[str, str, str], tuple[str, str | None]] = {}
    changes = []
    if comparison:
        for kind, label, items in (("newly-failing", "Newly failing", comparison.newly_failing),
                                   ("fixed", "Fixed", comparison.fixed), ("changed", "Other changes", comparison.other)):
            for ch in items:
                changed[ch.key] = (kind, ch.before)
            grouped = _grouped_changes(items)
            changes.append({"css": kind, "label": label, "count": len(items), "rows": grouped[:CHANGES_SHOWN],
                            "more": max(0, len(grouped) - CHANGES_SHOWN)})
    benchmark = run.meta.get("benchmark") or {}
    statuses = control_statuses(results)
    by_host: dict[str, list[Result]] = {}
    for r in results:
        by_host.setdefault(r.host, []).append(r)
    hosts: dict[str, Score] = {h: score(rs) for h, rs in sorted(by_host.items())}
    host_counts: dict[str, Counter] = {h: Counter() for h in hosts}
    for (h, _), s in statuses.items():
        host_counts[h][s] += 1
    sections = _sections(results)
    document = report_data.build(results, list(hosts), changed)
    return {
        "title": title or f"hardline report: {benchmark.get('title', '')} {benchmark.get('version', '')}".strip(),
        "meta": run.meta, "benchmark": benchmark, "results": results, "statuses": STATUSES,
        "overall": score(results), "hosts": hosts, "host_counts": host_counts,
        "subject_counts": counts(results), "control_counts": Counter(statuses.values()),
        "sections": sections, "matrix": _matrix(results, sections), "levels": sorted({r.level for r in results}),
        "worst": _worst(results, statuses), "worst_shown": WORST_SHOWN,
        "waivers": _waivers(results), "comparison": comparison, "changes": changes, "previous": previous,
        "drift": run.meta.get("drift"), "runs": run.meta.get("runs") or [],
        "data": report_data.dumps(document), "PASS": PASS, "FAIL": FAIL, "ERROR": ERROR, "WAIVED": WAIVED,
    }


def render_html(run: RunResults, previous: RunResults | None = None, title: str | None = None) -> str:
    return _environment().get_template("report.html.j2").render(**context(run, previous, title))


def write_html(run: RunResults, path: str | Path, previous: RunResults | None = None, title: str | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(run, previous, title), encoding="utf-8")
    return path
