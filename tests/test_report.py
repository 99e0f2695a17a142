"""Results as data and reports: score, gate, JSON round trip, merging and comparing runs, the
HTML report, and the CLI (`verify --json/--html/--fail-under`, `report`) over real SSH hosts,
including an expired waiver end to end."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hardline.cli import Progress
from hardline import report_data
from hardline.report import context as report_context, render_html
from hardline.results import (
    ERROR, FAIL, MANUAL, PASS, SKIP, WAIVED, Result, ResultsFileError, RunResults, compare, gate,
    gated_exit_code, host_scores, inventory_fingerprint, load_json, merge_runs, score, write_json,
)
from tests.support.report_fleet import fleet_runs
from tests.test_verify_cli import fleet  # noqa: F401  (module fixture: three SSH hosts)

ROOT = Path(__file__).resolve().parent.parent


def res(host: str, cid: str, status: str, subject: str = "", section: str = "2", level: int = 1,
        benchmark: str = "cis-docker", version: str = "1.6.0", **kw) -> Result:
    return Result(host=host, benchmark=benchmark, benchmark_version=version, control_id=cid, slug=f"slug_{cid}",
                  title=f"title {cid}", section=section, section_title=f"section {section}", level=level,
                  automated=True, status=status, subject=subject, **kw)


def replace_status(r: Result, status: str) -> Result:
    return dataclasses.replace(r, status=status)


def run_of(results, started="2026-01-01T00:00:00+00:00", label="") -> RunResults:
    return RunResults.new(results, started=started, label=label)


# --------------------------------------------------------------------------------------- score


def test_score_counts_controls_and_leaves_out_skip_manual_waived():
    results = [res("a", "1", PASS), res("a", "2", PASS), res("a", "3", FAIL), res("a", "4", SKIP),
               res("a", "5", MANUAL), res("a", "6", WAIVED)]
    s = score(results)
    assert (s.passed, s.failed, s.scored) == (2, 1, 3)
    assert s.text() == "66.7"


def test_error_never_raises_the_score():
    base = [res("a", "1", PASS), res("a", "2", FAIL)]
    assert score(base).value == 50
    assert score(base + [res("a", "3", ERROR)]).value < 50  # an unverifiable control counts against
    assert score([res("a", "1", ERROR)]).value == 0


def test_subjects_fold_to_the_worst_status_per_control():
    results = [res("a", "5.1", PASS, "c1"), res("a", "5.1", FAIL, "c2"), res("a", "5.1", PASS, "c3"),
               res("a", "5.2", PASS, "c1"), res("a", "5.2", PASS, "c2")]
    s = score(results)
    assert (s.passed, s.failed) == (1, 1)  # three containers do not weigh three times


def test_nothing_scored_is_not_a_pass_of_the_gate():
    only_manual = [res("a", "1", MANUAL), res("a", "2", SKIP)]
    assert score(only_manual).value is None and score(only_manual).text() == "n/a"
    assert gate(only_manual, 10)


def test_gate_per_host_and_overall():
    results = [res("good", "1", PASS), res("good", "2", PASS), res("good", "3", PASS), res("good", "4", FAIL),
               res("bad", "1", PASS), res("bad", "2", FAIL)]
    assert host_scores(results)["good"].value == 75 and host_scores(results)["bad"].value == 50
    assert gate(results, 75) == ["bad scores 50.0 < 75", "overall score 66.7 < 75"]
    assert gate(results, 50) == []
    assert gated_exit_code(results, 50) == 0  # failures are tolerated by a met gate
    assert gated_exit_code(results, 75) == 3
    assert gated_exit_code(results, None) == 1
    assert gated_exit_code(results + [res("bad", "9", ERROR)], 0) == 2  # errors are worse than a missed gate


# ------------------------------------------------------------------------ JSON, merge, compare


def test_json_round_trip_with_metadata(tmp_path):
    inv = tmp_path / "inv.py"
    inv.write_text("hosts = ['a']\n")
    (tmp_path / "group_data").mkdir()
    (tmp_path / "group_data" / "all.py").write_text("x = 1\n")
    waiver = {"reason": "r", "approved_by": "me", "expires": "2099-01-01", "expired": False, "underlying_status": FAIL}
    run = RunResults.new([res("a", "2.2", PASS, evidence=["e1"]), res("a", "2.12", WAIVED, waiver=waiver)],
                         started="2026-01-01T00:00:00+00:00", inventory=str(inv), hosts=["a"])
    path = write_json(run, tmp_path / "out.json")
    raw = json.loads(path.read_text())
    assert raw["format"] == "hardline-results/2"
    meta = raw["run"]
    assert meta["hardline_version"] and meta["benchmark"] == {"id": "cis-docker", "title": "CIS Docker Benchmark",
                                                              "version": "1.6.0"}
    assert meta["benchmarks"] == [meta["benchmark"]]
    assert raw["results"][0]["benchmark_version"] == "1.6.0"
    assert [f["path"].rsplit("/", 1)[-1] for f in meta["inventory"]["files"]] == ["inv.py", "all.py"]
    assert re.fullmatch(r"[0-9a-f]{64}", meta["inventory"]["sha256"])
    assert raw["summary"]["overall"]["score"] == 100.0 and raw["summary"]["hosts"]["a"]["WAIVED"] == 1
    back = load_json(path)
    assert back.results == run.results and back.meta == run.meta


def test_inventory_hash_changes_with_group_data(tmp_path):
    inv = tmp_path / "inv.py"
    inv.write_text("hosts = ['a']\n")
    (tmp_path / "group_data").mkdir()
    (tmp_path / "group_data" / "all.py").write_text("x = 1\n")
    first = inventory_fingerprint(inv)["sha256"]
    (tmp_path / "group_data" / "all.py").write_text("x = 2\n")
    assert inventory_fingerprint(inv)["sha256"] != first


def test_load_json_refuses_other_files(tmp_path):
    (tmp_path / "x.json").write_text('{"a": 1}')
    with pytest.raises(ResultsFileError, match="not a hardline results file"):
        load_json(tmp_path / "x.json")
    with pytest.raises(ResultsFileError, match="cannot read"):
        load_json(tmp_path / "missing.json")


def test_merge_takes_each_hosts_latest_run():
    old = run_of([res("a", "1", FAIL), res("b", "1", FAIL)], "2026-01-01T00:00:00+00:00", "old")
    new = run_of([res("a", "1", PASS)], "2026-01-02T00:00:00+00:00", "new")
    other = run_of([res("c", "1", ERROR)], "2026-01-01T12:00:00+00:00", "other")
    merged = merge_runs([new, old, other])
    assert {(r.host, r.status) for r in merged.results} == {("a", PASS), ("b", FAIL), ("c", ERROR)}
    assert merged.meta["hosts"] == ["a", "b", "c"]
    assert [r["label"] for r in merged.meta["runs"]] == ["old", "other", "new"]
    assert merged.meta["runs"][0]["hosts_used"] == ["b"]


def test_compare_newly_failing_fixed_and_other():
    before = run_of([res("a", "1", PASS), res("a", "2", FAIL), res("a", "3", FAIL), res("a", "4", PASS),
                     res("z", "1", FAIL)])
    after = run_of([res("a", "1", FAIL), res("a", "2", PASS), res("a", "3", WAIVED), res("a", "4", PASS),
                    res("a", "5", ERROR)])
    diff = compare(before, after)
    assert [c.key[1] for c in diff.newly_failing] == ["cis-docker:1.6.0:1", "cis-docker:1.6.0:5"]  # new control erroring
    assert [c.key[1] for c in diff.fixed] == ["cis-docker:1.6.0:2"]
    assert [(c.key[1], c.before, c.after) for c in diff.other] == [("cis-docker:1.6.0:3", FAIL, WAIVED)]
    assert "z" not in diff.scores_before  # hosts of the current run only


def test_changes_are_in_natural_control_order():
    ids = ["1.1.10", "2.16", "1.1.3", "HL-1.1", "2.2"]
    diff = compare(run_of([res("a", i, FAIL) for i in ids]), run_of([res("a", i, PASS) for i in ids]))
    assert [c.key[1].rpartition(":")[2] for c in diff.fixed] == ["1.1.3", "1.1.10", "2.2", "2.16", "HL-1.1"]


# --------------------------------------------------------------------------------------- HTML


def test_html_is_self_contained_and_complete():
    waiver = {"reason": "no plugin", "approved_by": "sec team", "expires": "2020-01-01", "expired": True,
              "underlying_status": FAIL}
    before = run_of([res("a", "2.2", PASS), res("a", "3.18", FAIL, section="3"), res("b", "2.2", PASS)], label="before")
    after = run_of([res("a", "2.2", FAIL, expected="icc = false", found="icc = true", remediation="set icc false"),
                    res("a", "3.18", PASS, section="3"), res("a", "2.12", FAIL, waiver=waiver),
                    res("b", "2.2", PASS, level=2), res("b", "5.1", PASS, "container <web>", section="5"),
                    res("b", "2.13", PASS, section="2", differs="differs from inventory: log-driver = \"syslog\"")],
                   "2026-01-02T00:00:00+00:00", label="after")
    html = render_html(after, previous=before)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "no external resources"
    assert "<script>" in html and "<style>" in html
    assert "no plugin" in html and "sec team" in html and "expired: counts again" in html  # the waivers table
    assert "<web>" not in html  # escaped, in the page and in its embedded data
    assert 'id="changes-newly-failing"' in html and 'id="changes-fixed"' in html
    for status in ("PASS", "FAIL", "ERROR", "SKIP", "MANUAL", "WAIVED"):
        assert f'data-status="{status}"' in html  # a filter button for each
    assert 'id="filter-level"' in html and 'id="filter-section"' in html and 'id="filter-host"' in html
    assert 'id="filter-changed"' in html and 'id="filter-text"' in html
    # every result, with its evidence, remediation, waiver, change and note, is in the embedded data
    document = report_data.loads(html)
    by_key = {(r["host"], r["control_id"], r["subject"]): r for r in report_data.expand(document)}
    assert len(by_key) == len(after.results) == 6
    icc = by_key[("a", "2.2", "")]
    assert (icc["expected"], icc["found"], icc["change"], icc["before"]) == ("icc = false", "icc = true", "newly-failing", PASS)
    assert {c[0]: c[10] for c in document["controls"]}["cis-docker:1.6.0:2.2"] == "set icc false"
    assert by_key[("a", "3.18", "")]["change"] == "fixed"
    assert by_key[("a", "2.12", "")]["waiver"] == waiver
    assert by_key[("b", "5.1", "container <web>")]["status"] == PASS
    assert by_key[("b", "2.13", "")]["differs"].startswith("differs from inventory")
    # the fleet view: hosts x sections, worst controls
    # columns: sections 2, 3, 5; a has 2 and 3, b has 2 and 5
    assert html.count('<td class="num cell') == 4 and html.count('<td class="cell empty">') == 2
    assert '<tr data-control="cis-docker:1.6.0:2.2">' in html and '<tr data-control="cis-docker:1.6.0:2.12">' in html


def test_worst_controls_rank_by_hosts_failing_and_changes_group_subjects():
    results = [res(h, "5.4", FAIL, f"container c{n}", section="5") for h in "abc" for n in range(3)]
    results += [res("a", "2.2", FAIL), res("b", "2.2", ERROR), res("c", "2.2", PASS), res("a", "2.3", FAIL)]
    ctx = report_context(run_of(results), run_of([replace_status(r, PASS) for r in results]))
    assert [(w["key"].rsplit(":", 1)[1], len(w["FAIL"]), len(w["ERROR"]), w["subjects"]) for w in ctx["worst"]] == [
        ("5.4", 3, 0, 9), ("2.2", 1, 1, 2), ("2.3", 1, 0, 1)]
    newly = next(t for t in ctx["changes"] if t["css"] == "newly-failing")
    assert newly["count"] == 12  # results (a control on a host, or one of its subjects)
    rows = {(g["host"], g["key"].rsplit(":", 1)[1]): g for g in newly["rows"]}
    assert len(rows) == 6 and rows[("a", "5.4")]["subjects"] == ["container c0", "container c1", "container c2"]
    assert (rows[("b", "2.2")]["before"], rows[("b", "2.2")]["after"]) == (PASS, ERROR)


def test_fleet_report_embeds_every_result_once_and_stays_small():
    """SYNTHESIZED results (tests/support/report_fleet.py): a rendering test, not a check test."""
    before, after = fleet_runs(hosts=50, containers=20)
    html = render_html(after, previous=before)
    expanded = report_data.expand(report_data.loads(html))
    assert sorted((r["host"], r["control"], r["subject"], r["status"]) for r in expanded) == \
        sorted((r.host, r.control_key, r.subject, r.status) for r in after.results)
    assert len(html) < 4_000_000, f"{len(html)} bytes for {len(expanded)} results"
    assert html.count("<details") < 500  # hosts and lists, never one element per result


# -------------------------------------------------------------------------------------- progress


class FakeStream:
    def __init__(self, tty: bool):
        self.tty, self.text = tty, ""

    def isatty(self):
        return self.tty

    def write(self, s):
        self.text += s

    def flush(self):
        pass


class Facts:
    round_trips = 2


def test_progress_is_one_updating_line_on_a_tty_and_plain_lines_otherwise():
    tty = FakeStream(True)
    p = Progress(3, stream=tty)
    p("h1", Facts(), 1.0)
    p("h2", RuntimeError("refused"), 0.5)
    p("h3", Facts(), 2.0)
    assert tty.text.count("\r\033[K") >= 3 and "3/3 hosts, 1 unreachable" in tty.text
    assert "  h2: unreachable: refused\n" in tty.text and tty.text.endswith("\n")
    plain = FakeStream(False)
    p = Progress(2, stream=plain)
    p("h1", Facts(), 1.0)
    p("h2", RuntimeError("refused"), 0.5)
    assert "\r" not in plain.text and plain.text.count("\n") == 2 and "[2/2]" in plain.text
    quiet = FakeStream(True)
    Progress(1, quiet=True, stream=quiet)("h1", Facts(), 1.0)
    assert quiet.text == ""


# ------------------------------------------------------------------------------- CLI, real hosts


def hardline(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "hardline.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_verify_writes_json_and_html_and_gates(fleet, tmp_path):  # noqa: F811
    out = tmp_path / "r.json"
    html = tmp_path / "r.html"
    run = hardline("verify", str(fleet), "--limit", "compliant", "--limit", "default", "--benchmark", "cis-docker", "--section", "2",
                   "--json", str(out), "--html", str(html))
    assert run.returncode == 1, run.stdout + run.stderr
    data = json.loads(out.read_text())
    scores = {h: s["score"] for h, s in data["summary"]["hosts"].items()}
    assert scores["compliant"] == 100.0 and scores["default"] < 75
    assert data["run"]["hosts"] == ["compliant", "default"] and data["run"]["sections"] == ["2"]
    assert data["run"]["inventory"]["path"] == str(fleet)
    assert "compliant: score 100.0" in run.stdout
    assert len(report_data.loads(html.read_text())["results"]) == len(data["results"])
    # the gate: the seed's "score 75 to promote"; every host must reach it, not only the average
    assert data["summary"]["overall"]["score"] > 75
    gated = hardline("verify", str(fleet), "--limit", "compliant", "--limit", "default", "--benchmark", "cis-docker", "--section", "2",
                     "--fail-under", "75", "-q")
    assert gated.returncode == 3 and "NOT met" in gated.stdout and "default scores" in gated.stdout
    assert "FAIL   default" not in gated.stdout  # quiet: no per-control details
    met = hardline("verify", str(fleet), "--limit", "compliant", "--benchmark", "cis-docker", "--section", "2", "--fail-under", "75", "-q")
    assert met.returncode == 0 and "gate --fail-under 75: met" in met.stdout
    with_error = hardline("verify", str(fleet), "--benchmark", "cis-docker", "--section", "2", "--fail-under", "0", "-q")
    assert with_error.returncode == 2  # the unreachable host: never promoted
    assert hardline("verify", str(fleet), "--fail-under", "120").returncode == 4


def test_expired_waiver_fails_and_says_so(fleet, tmp_path):  # noqa: F811
    inv = tmp_path / "inv.py"
    inv.write_text(fleet.read_text())
    (tmp_path / "group_data").mkdir()
    (tmp_path / "group_data" / "all.py").write_text(
        'hardline_waivers = [{"id": "2.12", "reason": "no authz plugin", "approved_by": "qa", "expires": "2099-01-01"},\n'
        '                    {"id": "2.2", "reason": "legacy app needs icc", "approved_by": "cab", "expires": "2020-01-31"}]\n')
    out = tmp_path / "r.json"
    run = hardline("verify", str(inv), "--limit", "default", "--benchmark", "cis-docker", "--section", "2", "--json", str(out), "--html",
                   str(tmp_path / "r.html"))
    assert run.returncode == 1, run.stdout + run.stderr
    results = {r["control_id"]: r for r in json.loads(out.read_text())["results"]}
    icc = results["2.2"]
    assert icc["status"] == "FAIL"
    assert icc["waiver"] == {"reason": "legacy app needs icc", "approved_by": "cab", "expires": "2020-01-31",
                             "expired": True, "underlying_status": "FAIL"}
    assert any("waiver expired on 2020-01-31" in e for e in icc["evidence"])
    assert "waiver expired on 2020-01-31: the control counts again" in run.stdout
    assert results["2.12"]["status"] == "WAIVED"
    html = (tmp_path / "r.html").read_text()
    assert "legacy app needs icc" in html and "expired: counts again" in html  # the waivers table
    # an expired waiver counts in the score: same score as no waiver at all
    (tmp_path / "group_data" / "all.py").write_text(
        'hardline_waivers = [{"id": "2.12", "reason": "no authz plugin", "approved_by": "qa", "expires": "2099-01-01"}]\n')
    plain = tmp_path / "plain.json"
    hardline("verify", str(inv), "--limit", "default", "--benchmark", "cis-docker", "--section", "2", "--json", str(plain))
    assert json.loads(plain.read_text())["summary"]["overall"] == json.loads(out.read_text())["summary"]["overall"]


def test_report_merges_runs_compares_and_gates(fleet, tmp_path):  # noqa: F811
    a, b = tmp_path / "compliant.json", tmp_path / "default.json"
    assert hardline("verify", str(fleet), "--limit", "compliant", "--benchmark", "cis-docker", "--section", "2", "--json", str(a), "-q").returncode == 0
    assert hardline("verify", str(fleet), "--limit", "default", "--benchmark", "cis-docker", "--section", "2", "--json", str(b), "-q").returncode == 1
    html, merged = tmp_path / "fleet.html", tmp_path / "fleet.json"
    run = hardline("report", str(a), str(b), "-o", str(html), "--json", str(merged), "--previous", str(a))
    assert run.returncode == 0, run.stderr
    data = json.loads(merged.read_text())
    assert sorted(data["summary"]["hosts"]) == ["compliant", "default"] and len(data["run"]["runs"]) == 2
    text = html.read_text()
    assert 'id="runs"' in text and 'id="changes"' in text
    gated = hardline("report", str(a), str(b), "-o", str(html), "--fail-under", "75")
    assert gated.returncode == 3 and "default scores" in gated.stdout
    assert hardline("report", str(a), "-o", str(html), "--fail-under", "75").returncode == 0
    (tmp_path / "junk.json").write_text("[]")
    bad = hardline("report", str(tmp_path / "junk.json"), "-o", str(html))
    assert bad.returncode == 4 and "not a hardline results file" in bad.stderr


def test_one_host_keeps_the_results_of_each_benchmark_through_report(fleet, tmp_path):  # noqa: F811
    docker, platform, again = tmp_path / "docker.json", tmp_path / "platform.json", tmp_path / "again.json"
    hardline("verify", str(fleet), "--limit", "compliant", "--benchmark", "cis-docker", "--json", str(docker), "-q")
    hardline("verify", str(fleet), "--limit", "compliant", "--benchmark", "hardline-platform", "--json", str(platform), "-q")
    merged = tmp_path / "merged.json"
    assert hardline("report", str(docker), str(platform), "-o", str(tmp_path / "m.html"), "--json", str(merged)).returncode == 0
    data = json.loads(merged.read_text())
    by_benchmark = {b: {r["control_id"] for r in data["results"] if r["benchmark"] == b} for b in
                    ("cis-docker", "hardline-platform")}
    assert len(by_benchmark["cis-docker"]) == 117 and len(by_benchmark["hardline-platform"]) == 15
    assert [b["id"] for b in data["run"]["benchmarks"]] == ["cis-docker", "hardline-platform"]
    # a later run of one benchmark replaces only that benchmark's results of the host
    hardline("verify", str(fleet), "--limit", "compliant", "--benchmark", "cis-docker", "--section", "2",
             "--json", str(again), "-q")
    hardline("report", str(docker), str(platform), str(again), "-o", str(tmp_path / "m.html"), "--json", str(merged))
    data = json.loads(merged.read_text())
    docker_ids = {r["control_id"] for r in data["results"] if r["benchmark"] == "cis-docker"}
    assert docker_ids and all(cid.startswith("2.") for cid in docker_ids)
    assert len({r["control_id"] for r in data["results"] if r["benchmark"] == "hardline-platform"}) == 15


def test_junit_carries_run_metadata(fleet, tmp_path):  # noqa: F811
    junit = tmp_path / "r.xml"
    hardline("verify", str(fleet), "--limit", "compliant", "--benchmark", "cis-docker", "--section", "2", "--junit", str(junit), "-q")
    suite = ET.parse(junit).getroot().find("testsuite")
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["score"] == "100.0" and props["benchmark_version"] == "1.6.0"
    assert re.fullmatch(r"[0-9a-f]{64}", props["inventory_sha256"])
