"""Drift end to end on the lab VM hardened by the session's hardening scenario (snapshot
"hardened", tests/support/labs.py): `hardline drift` is clean (exit 0); tamper with three things
the controls cover (daemon.json edited, its mode loosened, a sysctl changed); the drift run
names exactly those operations and controls, and nothing else (exit 1).

Set HARDLINE_LAB_DIR / HARDLINE_LAB_SSH_PORT to run it beside another lab VM."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab import qemu as lab

ROOT = Path(__file__).resolve().parent.parent
INVENTORY = "inventories/lab.py"
pytestmark = pytest.mark.lab

TAMPER = {
    # what is done on the VM -> (operation the deploy would run, key of the control that no longer passes)
    "daemon.json: icc set to true": (
        "python3 -c \"import json; p = '/etc/docker/daemon.json'; d = json.load(open(p)); d['icc'] = True; "
        "open(p, 'w').write(json.dumps(d, indent=2))\"",
        "Docker daemon | [cis-docker:1.6.0:2.x] daemon.json: ", "cis-docker:1.6.0:2.2"),
    "daemon.json mode 666": (
        "chmod 666 /etc/docker/daemon.json",
        "Docker file permissions | [cis-docker:1.6.0:3.18] /etc/docker/daemon.json mode 644 or stricter",
        "cis-docker:1.6.0:3.18"),
    "sysctl send_redirects=1": (
        "sysctl -qw net.ipv4.conf.all.send_redirects=1",
        "Kernel parameters | [hardline-platform:1:HL-1.1] sysctl net.ipv4.conf.all.send_redirects=0",
        "hardline-platform:1:HL-1.1"),
}


def hardline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hardline.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=1800)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, lab_hardened, qemu_lab):
    out = tmp_path_factory.mktemp("drift")
    times: dict[str, float] = {}
    t = time.monotonic()
    qemu_lab.restore("hardened")
    times["restore hardened"] = time.monotonic() - t
    t = time.monotonic()
    clean = hardline("drift", INVENTORY, "--json", str(out / "clean.json"))
    times["drift (clean)"] = time.monotonic() - t
    for what, (command, _, _) in TAMPER.items():
        done = lab.run_ssh(command)
        assert done.returncode == 0, (what, done.stderr)
    t = time.monotonic()
    tampered = hardline("drift", INVENTORY, "--previous", str(out / "clean.json"), "--json", str(out / "tampered.json"),
                        "--html", str(out / "tampered.html"), "--junit", str(out / "tampered.xml"))
    times["drift (tampered)"] = time.monotonic() - t
    print("\nlab drift timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in times.items()))
    return {"clean": clean, "tampered": tampered, "out": out, "times": times}


def drift_of(path: Path) -> dict:
    return json.loads(path.read_text())["run"]["drift"]


def test_hardened_vm_has_no_drift(scenario):
    clean = scenario["clean"]
    assert clean.returncode == 0, clean.stdout[-4000:] + clean.stderr[-2000:]
    assert "lab-vm: no drift" in clean.stdout
    drift = drift_of(scenario["out"] / "clean.json")
    assert drift["changes"] == {"lab-vm": []} and drift["failing"] == {"lab-vm": []}


def test_drift_names_exactly_the_tampering(scenario):
    run = scenario["tampered"]
    assert run.returncode == 1, run.stdout[-4000:] + run.stderr[-2000:]
    drift = drift_of(scenario["out"] / "tampered.json")
    changes = drift["changes"]["lab-vm"]
    expected_ops = [op for _, op, _ in TAMPER.values()]
    assert len(changes) == len(expected_ops), changes
    for op in expected_ops:
        assert sum(name.startswith(op) for name in changes) == 1, (op, changes)
    assert sorted(drift["failing"]["lab-vm"]) == sorted(cid for _, _, cid in TAMPER.values())
    assert sorted(drift["newly_failing"]) == sorted(f"lab-vm {cid}" for _, _, cid in TAMPER.values())
    assert drift["diffs"] and '-  "icc": true,' in drift["diffs"][0] and '+  "icc": false,' in drift["diffs"][0]
    for _, op, cid in TAMPER.values():
        assert f"would change: {op}" in run.stdout
    assert "lab-vm: DRIFT" in run.stdout


def test_drift_reports_for_ci(scenario):
    out = scenario["out"]
    html = (out / "tampered.html").read_text()
    assert 'id="drift"' in html and 'id="changes-newly-failing"' in html and "[cis-docker:1.6.0:3.18]" in html
    suites = {s.get("name"): s for s in ET.parse(out / "tampered.xml").iter("testsuite")}
    drift_suite = suites["drift (pyinfra dry run)"]
    assert drift_suite.get("failures") == "1"
    failure = drift_suite.find("testcase").find("failure")
    assert failure is not None and "[hardline-platform:1:HL-1.1]" in failure.text
    statuses = {p.get("value") for c in ET.parse(out / "tampered.xml").iter("testcase") for p in c.iter("property")
                if p.get("name") == "status"}
    assert "FAIL" in statuses
