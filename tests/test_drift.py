"""`hardline drift` without the lab VM: a real pyinfra dry run over SSH (a small deploy file of
the test's own, so the machine running the tests is only read) plus a real verify of a real
daemon; the plan is read per host from pyinfra's state; exit codes 0 clean, 1 drift, 2 error."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from hardline.drift import Drift, Plan, extract_diffs
from hardline.results import ERROR, FAIL, PASS, Result
from tests.test_verify_cli import fleet  # noqa: F401  (module fixture: SSH hosts with real daemons)

ROOT = Path(__file__).resolve().parent.parent


def hardline(*args):
    return subprocess.run([sys.executable, "-m", "hardline.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def deploy_file(tmp_path: Path, marker: Path) -> Path:
    deploy = tmp_path / "small_deploy.py"
    deploy.write_text(
        "from pyinfra.operations import files, server\n"
        f"marker = files.file(name='marker file 600', path={str(marker)!r}, mode='600', touch=False)\n"
        "server.shell(name='reload after marker', commands=['true'], _if=marker.did_change)\n")
    return deploy


def test_drift_names_the_operation_that_would_change_then_clean(fleet, tmp_path):  # noqa: F811
    marker = tmp_path / "marker"
    deploy = deploy_file(tmp_path, marker)
    out, junit, html = tmp_path / "drift.json", tmp_path / "drift.xml", tmp_path / "drift.html"
    run = hardline("drift", str(fleet), "--limit", "compliant", "--benchmark", "cis-docker", "--section", "2", "--deploy", str(deploy),
                   "--json", str(out), "--junit", str(junit), "--html", str(html))
    assert run.returncode == 1, run.stdout + run.stderr
    assert "compliant: DRIFT" in run.stdout and "would change: marker file 600" in run.stdout
    assert not marker.exists()  # a dry run
    drift = json.loads(out.read_text())["run"]["drift"]
    assert drift["changes"] == {"compliant": ["marker file 600"]}
    assert drift["conditional"] == {"compliant": ["reload after marker"]}
    assert drift["states"] == {"compliant": "drift"} and drift["failing"] == {"compliant": []}
    cases = {c.get("name"): c for c in ET.parse(junit).iter("testcase")}
    assert cases["deploy would change nothing on compliant"].find("failure").text == "marker file 600"
    assert 'id="drift"' in html.read_text() and "marker file 600" in html.read_text()

    marker.write_text("")
    marker.chmod(0o600)
    clean = hardline("drift", str(fleet), "--limit", "compliant", "--benchmark", "cis-docker", "--section", "2", "--deploy", str(deploy), "-q")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "compliant: no drift" in clean.stdout and "may also run" not in clean.stdout

    marker.chmod(0o644)
    loose = hardline("drift", str(fleet), "--limit", "compliant", "--benchmark", "cis-docker", "--section", "2", "--deploy", str(deploy), "-q")
    assert loose.returncode == 1 and "would change: marker file 600" in loose.stdout
    assert "may also run: reload after marker" in loose.stdout


def test_failing_controls_are_drift_and_unreachable_hosts_are_errors(fleet, tmp_path):  # noqa: F811
    marker = tmp_path / "marker"
    marker.write_text("")
    marker.chmod(0o600)
    deploy = deploy_file(tmp_path, marker)
    run = hardline("drift", str(fleet), "--benchmark", "cis-docker", "--section", "2", "--deploy", str(deploy), "--json", str(tmp_path / "d.json"))
    assert run.returncode == 2, run.stdout + run.stderr
    drift = json.loads((tmp_path / "d.json").read_text())["run"]["drift"]
    assert drift["states"] == {"compliant": "clean", "default": "drift", "unreachable": "error"}
    assert "unreachable" in drift["unplanned"]
    assert "cis-docker:1.6.0:2.2" in drift["failing"]["default"] and drift["changes"]["default"] == []
    assert "unreachable: ERROR" in run.stdout and "could not be planned" in run.stdout


def result(host: str, cid: str, status: str, **kw) -> Result:
    return Result(host, "cis-docker", cid, "s", "t", "2", "s2", 1, True, status, benchmark_version="1.6.0", **kw)


def test_drift_states_and_exit_codes():
    plan = Plan(["a", "b", "c", "d"], ["a", "b", "c"], {"a": [], "b": ["op"], "c": []}, {"a": ["cond"], "b": [], "c": []})
    results = [result("a", "2.2", PASS), result("b", "2.2", PASS), result("c", "2.2", FAIL)]
    d = Drift(plan, results, ["a", "b", "c"])
    assert [d.host_state(h) for h in "abc"] == ["clean", "drift", "drift"]
    assert d.exit_code() == 1
    assert Drift(plan, results + [result("a", "2.3", ERROR)], ["a"]).exit_code() == 2
    assert Drift(plan, [], ["d"]).exit_code() == 2  # not planned: never "no drift"
    assert Drift(plan, results[:1], ["a"]).exit_code() == 0  # conditional operations alone are not drift


def test_a_passing_value_other_than_the_inventory_is_drift():
    plan = Plan(["a"], ["a"], {"a": []}, {"a": []})
    note = 'differs from inventory: log-driver = "syslog", inventory says "journald"'
    d = Drift(plan, [result("a", "2.13", PASS, differs=note), result("a", "2.2", PASS)], ["a"])
    assert d.host_state("a") == "drift" and d.exit_code() == 1
    assert d.to_dict()["differs"] == {"a": [f"cis-docker:1.6.0:2.13: {note}"]}
    assert f"  differs cis-docker:1.6.0:2.13: {note}" in d.text()


def test_extract_diffs():
    out = ("noise\n--- lab-vm:/etc/docker/daemon.json\n+++ desired\n@@ -1,3 +1,3 @@\n {\n-  \"icc\": true,\n"
           "+  \"icc\": false,\n }\n\n    [lab-vm] Ready\n")
    diffs = extract_diffs(out)
    assert len(diffs) == 1 and diffs[0].startswith("--- lab-vm:/etc/docker/daemon.json") and diffs[0].endswith(" }")


def test_nightly_workflow_runs_drift_and_keeps_reports():
    import yaml

    workflow = yaml.safe_load((ROOT / ".github/workflows/nightly-drift.yml").read_text())
    assert workflow[True]["schedule"]  # YAML reads the key "on" as True
    steps = workflow["jobs"]["drift"]["steps"]
    script = "\n".join(s.get("run", "") for s in steps)
    assert "hardline drift" in script and "--json reports/drift.json" in script and "--junit reports/drift.xml" in script
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and upload["with"]["path"] == "reports/"
    gitlab = (ROOT / "docs/ci.md").read_text().split("```yaml\n", 1)[1].split("```", 1)[0]
    job = yaml.safe_load(gitlab)["nightly-drift"]
    assert job["artifacts"]["when"] == "always" and job["artifacts"]["reports"]["junit"] == "reports/drift.xml"
    assert any("hardline drift" in line for line in job["script"])
