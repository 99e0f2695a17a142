"""testinfra's Host API over pyinfra's connectors: a site's own checks in the pytest path reach the
inventory's hosts (@local and a real sshd) with the same rules as the deploy."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SITE_TESTS = '''
def test_passwd_and_exit_codes(host):
    assert host.file("/etc/passwd").exists and host.file("/etc/passwd").user == "root"
    assert host.run("exit 3").rc == 3
    assert host.run("printf 'a\\\\nb\\\\n'").stdout == "a\\nb\\n"
    assert host.check_output("id -u") == "0"
    assert not host.file("/nonexistent/hl").exists
'''


def test_site_checks_use_testinfra_through_pyinfra(sshd, tmp_path):
    inventory = tmp_path / "inv.py"
    bad_keys = tmp_path / "empty_known_hosts"
    bad_keys.write_text("")
    inventory.write_text(f"docker_hosts = ['@local', ('over-ssh', {sshd.pyinfra_data()!r}), "
                         f"('unknown-key', {{**{sshd.pyinfra_data()!r}, 'ssh_known_hosts_file': {str(bad_keys)!r}}})]\n")
    tests = tmp_path / "site" / "test_site.py"
    tests.parent.mkdir()
    tests.write_text(SITE_TESTS)
    (tests.parent / "conftest.py").write_text("from hardline.benchmarks.pytest_plugin import *  # noqa\n")
    junit = tmp_path / "site.xml"
    run = subprocess.run([sys.executable, "-m", "pytest", str(tests), "--inventory", str(inventory), f"--junitxml={junit}",
                          "-q", "-p", "no:cacheprovider", "--rootdir", str(tests.parent)], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path)
    cases = {c.get("name"): c for c in ET.parse(junit).iter("testcase")}
    assert set(cases) == {f"test_passwd_and_exit_codes[{h}]" for h in ("@local", "over-ssh", "unknown-key")}, run.stdout
    assert list(cases["test_passwd_and_exit_codes[@local]"]) == [], run.stdout[-3000:]
    assert list(cases["test_passwd_and_exit_codes[over-ssh]"]) == [], run.stdout[-3000:]
    failed = cases["test_passwd_and_exit_codes[unknown-key]"]
    problem = failed.find("failure") if failed.find("failure") is not None else failed.find("error")
    assert "unknown host key" in problem.get("message") + (problem.text or "") and run.returncode == 1
