"""hardline installs like a Python tool: a wheel with everything under the hardline namespace
(catalogs, defaults, templates as package data), installed into a fresh venv and run from an
unrelated directory with an inventory outside this repository, against a real dockerd."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.support.verify import daemon_data

ROOT = Path(__file__).resolve().parent.parent


def test_the_package_list_names_every_package():
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "hardline").rglob("__init__.py")}
    assert found | {"hardline.templates"} == declared


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                            str(out), str(ROOT)], capture_output=True, text=True, timeout=600, cwd=out)
    assert build.returncode == 0, build.stderr[-2000:]
    (path,) = out.glob("hardline-*.whl")
    return path


def test_wheel_ships_only_the_hardline_namespace_with_its_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"hardline", next(n.split("/")[0] for n in names if ".dist-info" in n)}
    for data in ("hardline/defaults.yml", "hardline/catalogs/cis-docker/1.6.0/benchmark.yml",
                 "hardline/catalogs/cis-kubernetes/1.20/5-policies.yml", "hardline/catalogs/layouts/kubeadm.yml",
                 "hardline/templates/report/report.html.j2", "hardline/templates/etc/docker/daemon.json.j2",
                 "hardline/deploys/entry.py", "hardline/benchmarks/remote.py"):
        assert data in names, data
    assert not any(n.startswith(("benchmarks/", "deploys/", "tests/", "lab/")) for n in names)


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    env = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=300)
    pip = subprocess.run([str(env / "bin" / "pip"), "install", "-q", str(wheel)], capture_output=True, text=True,
                         timeout=900)
    assert pip.returncode == 0, pip.stdout[-2000:] + pip.stderr[-2000:]
    return env


def run(venv: Path, cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    return subprocess.run([str(venv / "bin" / "hardline"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_installed_hardline_verifies_reports_and_plans_a_deploy_from_anywhere(venv, session_daemon_factory,
                                                                               tmp_path):
    daemon = session_daemon_factory({"icc": False})
    elsewhere = tmp_path / "ops"
    (elsewhere / "group_data").mkdir(parents=True)
    inventory = elsewhere / "inventory.py"
    # the sysctl profile limited to keys this machine's kernel has (the deploy refuses unknown ones)
    data = daemon_data(daemon, sysctl_settings={"fs.protected_hardlinks": 1, "kernel.dmesg_restrict": 1})
    inventory.write_text(f"docker_hosts = [('@local', {data!r})]\n")
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import hardline; print(hardline.__file__)"],
                           capture_output=True, text=True, cwd=elsewhere, env={"PATH": os.environ["PATH"]})
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr  # the wheel, not this checkout

    verify = run(venv, elsewhere, "verify", "inventory.py", "--benchmark", "cis-docker", "--section", "2",
                 "--json", "out.json", "-q")
    assert verify.returncode == 1, verify.stdout + verify.stderr  # a default-ish daemon fails some of section 2
    results = json.loads((elsewhere / "out.json").read_text())["results"]
    by_id = {r["control_id"]: r["status"] for r in results}
    assert by_id["2.2"] == "PASS" and by_id["2.14"] == "FAIL"

    report = run(venv, elsewhere, "report", "out.json", "-o", "report.html")
    assert report.returncode == 0 and "<html" in (elsewhere / "report.html").read_text()[:500].lower()

    controls = run(venv, elsewhere, "controls", "--benchmark", "cis-kubernetes:1.20")
    assert controls.returncode == 0 and "cis-kubernetes:1.20:1.2.1" in controls.stdout

    dry = run(venv, elsewhere, "deploy", "inventory.py", "--dry", timeout=600)
    out = dry.stdout + dry.stderr
    assert dry.returncode == 0, out[-3000:]
    assert "Traceback" not in out and "cis-docker:1.6.0:2.x] daemon.json" in out
