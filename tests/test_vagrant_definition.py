"""The Vagrant lab's one machine definition (vagrant/machines.yml) is what Vagrant, the inventory,
`pyinfra @vagrant` and the box builder all see (no VM)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from lab import boxes
from lab.vagrant import VAGRANT_DIR, connector_options, machines, variant_of
from tests.support.fixtures import _unavailable

ROOT = Path(__file__).resolve().parent.parent


def test_vagrant_connector_options_follow_machines_yml():
    """vagrant/@vagrant.json (read by `pyinfra @vagrant` in vagrant/) says what machines.yml says."""
    on_disk = json.loads((VAGRANT_DIR / "@vagrant.json").read_text())
    assert on_disk == connector_options(machines())
    assert all("docker_hosts" in m["groups"] for name, m in machines().items() if name.startswith("docker-"))
    assert (VAGRANT_DIR / "group_data").resolve() == (ROOT / "inventories" / "group_data").resolve()


def test_every_local_box_is_one_the_builder_makes():
    assert {variant_of(name) for name in machines()} <= set(boxes.VARIANTS)
    assert boxes.recipe("selinux")["base"] == boxes.recipe("apparmor")["base"]  # one base disk for both
    assert boxes.recipe("selinux") != boxes.recipe("apparmor")


@pytest.mark.parametrize("mode", ["public", "local"])
def test_vagrant_reads_the_vagrantfile(mode, tmp_path):
    if shutil.which("vagrant") is None:
        _unavailable("vagrant is not installed (bash scripts/setup.sh lab)")
    env = {**os.environ, "HARDLINE_VAGRANT_BOXES": mode, "VAGRANT_CHECKPOINT_DISABLE": "1",
           "VAGRANT_DOTFILE_PATH": str(tmp_path / "dotfile"), "VAGRANT_DEFAULT_PROVIDER": "libvirt"}
    proc = subprocess.run(["vagrant", "status", "--machine-readable"], cwd=VAGRANT_DIR, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    states = {line.split(",")[1]: line.split(",")[3] for line in proc.stdout.splitlines()
              if line.count(",") >= 3 and line.split(",")[2] == "state"}
    assert states == {name: "not_created" for name in machines()}
    bad = subprocess.run(["vagrant", "status"], cwd=VAGRANT_DIR, env={**env, "HARDLINE_VAGRANT_BOXES": "mine"},
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "HARDLINE_VAGRANT_BOXES must be local or public" in bad.stdout + bad.stderr
